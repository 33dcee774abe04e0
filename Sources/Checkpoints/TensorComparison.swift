import Dispatch
import Glibc
import Platform
import Synchronization

extension TensorStreamer {
    /// True when tensors `a` and `b` (same dtype and shape) hold the same bytes. The two are
    /// streamed band by band in step. Runs of zeros (holes of sparse files, unwritten
    /// chunks) are kept as spans, never copied or read; `a`'s other runs are gathered into
    /// `buffer` (at least one band of `a`), and `b`'s runs are compared with `a`'s spans as
    /// they come. Work is proportional to the data, not to the tensor's size.
    public func sameBytes(_ a: GlobalTensor, _ b: GlobalTensor, buffer: UnsafeMutableRawBufferPointer) throws(TesseraError) -> Bool {
        guard a.dtype == b.dtype, a.shape == b.shape else { return false }
        guard !a.shape.isEmpty else { return try sha256(a) == sha256(b) }
        let rowBytes = a.shape.dropFirst().reduce(1, *) * a.dtype.size
        let rowsPerBand = max(1, buffer.count / max(rowBytes, 1))
        precondition(rowsPerBand * rowBytes <= buffer.count, "sameBytes: the buffer holds less than one row")
        var row = 0
        var spans: [BandSpan] = []
        while row < a.shape[0] {
            var region = Box(offset: a.shape.map { _ in 0 }, shape: a.shape)
            region.offset[0] = row
            region.shape[0] = min(rowsPerBand, a.shape[0] - row)
            // a's band as spans: zeros, or bytes gathered into the buffer.
            spans.removeAll(keepingCapacity: true)
            var at = 0, used = 0
            try forEachRun(of: a, region: region) { (run) throws(TesseraError) in
                let zero = ZeroPages.contains(run)
                if zero, let last = spans.last, last.stored < 0, last.end == at {
                    spans[spans.count - 1].end += run.count
                } else if zero {
                    spans.append(BandSpan(start: at, end: at + run.count, stored: -1))
                } else {
                    (buffer.baseAddress! + used).copyMemory(from: run.baseAddress!, byteCount: run.count)
                    spans.append(BandSpan(start: at, end: at + run.count, stored: used))
                    used += run.count
                }
                at += run.count
            }
            var same = true, k = 0
            at = 0
            try forEachRun(of: b, region: region) { (run) throws(TesseraError) in
                defer { at += run.count }
                guard same else { return }
                let bZero = ZeroPages.contains(run)
                // Each part of b's run against the span of a that covers it.
                var from = at
                while same, from < at + run.count {
                    while k < spans.count, spans[k].end <= from { k += 1 }
                    guard k < spans.count else { same = false; return }
                    let s = spans[k], to = min(s.end, at + run.count)
                    let part = UnsafeRawBufferPointer(start: run.baseAddress! + (from - at), count: to - from)
                    if s.stored < 0 {
                        same = bZero || ZeroPages.isZero(part)
                    } else {
                        let mine = UnsafeRawBufferPointer(start: buffer.baseAddress! + s.stored + (from - s.start), count: to - from)
                        same = bZero ? ZeroPages.isZero(mine) : memcmp(mine.baseAddress!, part.baseAddress!, part.count) == 0
                    }
                    from = to
                }
            }
            guard same, at == spans.last?.end ?? 0 else { return false }
            row += region.shape[0]
        }
        return true
    }

    /// ``sameBytes(_:_:buffer:)`` for each pair, on `threads` threads, largest first.
    public func sameBytes(_ pairs: [(GlobalTensor, GlobalTensor)], threads: Int = 2, bandBytes: Int = 32 << 20,
                          progress: (@Sendable (Int) -> Void)? = nil) throws(TesseraError) -> [Bool] {
        let results = Mutex<[Int: Result<Bool, TesseraError>]>([:])
        let order = pairs.indices.sorted { pairs[$0].0.byteCount > pairs[$1].0.byteCount }
        let next = Atomic<Int>(0)
        let widest = pairs.map { $0.0.shape.dropFirst().reduce(1, *) * $0.0.dtype.size }.max() ?? 0
        let workers = max(1, min(threads, pairs.count))
        let streamer = self
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bandBytes, widest, 1), alignment: 64)
            defer { buffer.deallocate() }
            while true {
                let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard k < order.count else { return }
                let i = order[k]
                let r: Result<Bool, TesseraError>
                do throws(TesseraError) { r = .success(try streamer.sameBytes(pairs[i].0, pairs[i].1, buffer: buffer)) } catch {
                    r = .failure(error)
                }
                results.withLock { $0[i] = r }
                progress?(pairs[i].0.byteCount + pairs[i].1.byteCount)
            }
        }
        return try results.withLock { (table) throws(TesseraError) -> [Bool] in
            var out: [Bool] = []
            for i in pairs.indices { out.append(try table[i]!.get()) }
            return out
        }
    }
}

/// A stretch of one band of a tensor: zeros (`stored` < 0) or bytes kept at `stored` in the buffer.
private struct BandSpan {
    var start: Int
    var end: Int
    var stored: Int
}
