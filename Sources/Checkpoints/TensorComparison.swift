import Dispatch
import Glibc
import Platform
import Synchronization

extension TensorStreamer {
    /// True when tensors `a` and `b` (same dtype and shape) hold the same bytes. The two are
    /// streamed band by band in step, so runs of zeros on both sides (holes of sparse files,
    /// unwritten chunks) are compared without being read or hashed; a band of `a` that holds
    /// data is gathered into `buffer` (at least one band of `a`) and `b`'s runs are compared
    /// with it as they come.
    public func sameBytes(_ a: GlobalTensor, _ b: GlobalTensor, buffer: UnsafeMutableRawBufferPointer) throws(TesseraError) -> Bool {
        guard a.dtype == b.dtype, a.shape == b.shape else { return false }
        guard !a.shape.isEmpty else { return try sha256(a) == sha256(b) }
        let rowBytes = a.shape.dropFirst().reduce(1, *) * a.dtype.size
        let rowsPerBand = max(1, buffer.count / max(rowBytes, 1))
        precondition(rowsPerBand * rowBytes <= buffer.count, "sameBytes: the buffer holds less than one row")
        let base = buffer.baseAddress!
        var row = 0
        while row < a.shape[0] {
            var region = Box(offset: a.shape.map { _ in 0 }, shape: a.shape)
            region.offset[0] = row
            region.shape[0] = min(rowsPerBand, a.shape[0] - row)
            // a's band: nothing gathered while it is all zeros.
            var at = 0, aZero = true
            try forEachRun(of: a, region: region) { (run) throws(TesseraError) in
                defer { at += run.count }
                if ZeroPages.contains(run) {
                    if !aZero { (base + at).initializeMemory(as: UInt8.self, repeating: 0, count: run.count) }
                    return
                }
                if aZero {
                    base.initializeMemory(as: UInt8.self, repeating: 0, count: at)
                    aZero = false
                }
                (base + at).copyMemory(from: run.baseAddress!, byteCount: run.count)
            }
            var same = true
            at = 0
            try forEachRun(of: b, region: region) { (run) throws(TesseraError) in
                defer { at += run.count }
                guard same else { return }
                if aZero {
                    same = ZeroPages.isZero(run)
                } else if ZeroPages.contains(run) {
                    same = ZeroPages.isZero(UnsafeRawBufferPointer(start: base + at, count: run.count))
                } else {
                    same = memcmp(base + at, run.baseAddress!, run.count) == 0
                }
            }
            guard same else { return false }
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
