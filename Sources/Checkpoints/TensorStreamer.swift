import Dispatch
import Platform
import Synchronization

/// Streams the bytes of global tensors in C order straight from their pieces,
/// without assembling them: contiguous runs are handed out as views of the mapped
/// files; only strided views are gathered through a small buffer.
public struct TensorStreamer: Sendable {
    public let cache: MappingCache
    /// Pages of the mapped sources are released after this many bytes, bounding memory.
    public var releaseEvery = 64 << 20

    public init(cache: MappingCache) { self.cache = cache }

    /// Calls `body` with consecutive byte runs that together are the bytes, in C order,
    /// of the box `region` (default: the whole tensor) of tensor `t`, read from `pieces`
    /// (default: its main cover). Elements of the box beyond the tensor's shape read as
    /// zeros (vocabulary padding grown for a new layout).
    public func forEachRun(of t: GlobalTensor, pieces: [Piece]? = nil, region: Box? = nil,
                           _ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        let pieces = pieces ?? t.pieces
        let region = region ?? Box(offset: [Int](repeating: 0, count: t.shape.count), shape: t.shape)
        let esize = t.dtype.size
        let files = try pieces.map { (p: Piece) throws(TesseraError) -> MappedFile in try cache.file(p.storage.path) }
        var views: [UnsafeRawBufferPointer] = []
        for (p, f) in zip(pieces, files) {
            do { views.append(try f.bytes(offset: p.storage.offset, count: p.storage.count)) } catch {
                throw error.forTensor(t.name)
            }
        }
        var watermark = [Int](repeating: 0, count: pieces.count)
        var sinceRelease = 0
        var pending: UnsafeRawBufferPointer?
        var scratch: [UInt8] = []
        var zeros: [UInt8] = []
        func flush() throws(TesseraError) {
            if let p = pending, p.count > 0 { try body(p) }
            pending = nil
        }
        func emit(_ run: UnsafeRawBufferPointer) throws(TesseraError) {
            if let p = pending, let pe = p.baseAddress, pe + p.count == run.baseAddress {
                pending = UnsafeRawBufferPointer(start: pe, count: p.count + run.count)
            } else {
                try flush()
                pending = run
            }
            if pending!.count >= (8 << 20) { try flush() }
        }
        func emitZeros(_ count: Int) throws(TesseraError) {
            guard count > 0 else { return }
            try flush()
            if zeros.count < count { zeros = [UInt8](repeating: 0, count: count) }
            try withBytes(zeros) { (z) throws(TesseraError) in try body(UnsafeRawBufferPointer(rebasing: z[0..<count])) }
        }
        let n = t.shape.count
        guard region.shape.allSatisfy({ $0 > 0 }) else { return }
        if n == 0 {
            guard let p = pieces.first else { return }
            try body(UnsafeRawBufferPointer(rebasing: views[0][(p.storageOffset * esize)..<((p.storageOffset + 1) * esize)]))
            return
        }
        let last = n - 1
        let colStart = region.offset[last], colEnd = colStart + region.shape[last]
        let rows = region.shape[..<last].reduce(1, *)
        var outer = Array(region.offset[..<last])
        // Pieces sorted by their offset in the last dimension, so a row's segments come in order.
        let order = pieces.indices.sorted { pieces[$0].globalOffset[last] < pieces[$1].globalOffset[last] }
        for _ in 0..<rows {
            let rowInside = (0..<last).allSatisfy { outer[$0] < t.shape[$0] }
            var col = colStart
            if rowInside {
                for i in order {
                    let p = pieces[i]
                    let pStart = p.globalOffset[last], pEnd = pStart + p.shape[last]
                    guard pEnd > col, pStart < min(colEnd, t.shape[last]) else { continue }
                    var inside = true
                    for d in 0..<last where outer[d] < p.globalOffset[d] || outer[d] >= p.globalOffset[d] + p.shape[d] {
                        inside = false
                        break
                    }
                    guard inside else { continue }
                    guard pStart <= col else {
                        throw TesseraError(.missing, "no piece covers row \(outer) from column \(col)", tensor: t.name)
                    }
                    let segEnd = min(pEnd, colEnd)
                    var elem = p.storageOffset + (col - pStart) * p.strides[last]
                    for d in 0..<last { elem += (outer[d] - p.globalOffset[d]) * p.strides[d] }
                    let width = segEnd - col
                    let stride = p.strides[last]
                    if stride == 1 || width == 1 {
                        let start = elem * esize
                        try emit(UnsafeRawBufferPointer(rebasing: views[i][start..<(start + width * esize)]))
                        watermark[i] = max(watermark[i], start + width * esize)
                    } else {
                        try flush()
                        scratch.removeAll(keepingCapacity: true)
                        for j in 0..<width {
                            let s = (elem + j * stride) * esize
                            scratch.append(contentsOf: views[i][s..<(s + esize)])
                            watermark[i] = max(watermark[i], s + esize)
                        }
                        try withBytes(scratch, body)
                    }
                    col = segEnd
                    sinceRelease += width * esize
                    if col >= colEnd { break }
                }
                let inTensor = min(colEnd, t.shape[last])
                guard col >= inTensor else {
                    throw TesseraError(.missing, "pieces cover columns \(colStart)..<\(col) of \(colStart)..<\(inTensor) in row \(outer)",
                                       tensor: t.name)
                }
            }
            try emitZeros((colEnd - col) * esize)
            if sinceRelease >= releaseEvery {
                try flush()
                for i in pieces.indices { files[i].release(pieces[i].storage.offset..<(pieces[i].storage.offset + watermark[i])) }
                sinceRelease = 0
            }
            var d = last - 1
            while d >= 0 {
                outer[d] += 1
                if outer[d] < region.offset[d] + region.shape[d] { break }
                outer[d] = region.offset[d]
                d -= 1
            }
        }
        try flush()
        for i in pieces.indices { files[i].release(pieces[i].storage.offset..<(pieces[i].storage.offset + watermark[i])) }
    }

    /// SHA-256 of a tensor's bytes in C order (for `pieces`, defaulting to its main cover).
    public func sha256(_ t: GlobalTensor, pieces: [Piece]? = nil) throws(TesseraError) -> String {
        var h = SHA256Hasher()
        try forEachRun(of: t, pieces: pieces) { (run) throws(TesseraError) in h.update(run) }
        return h.finalizeHex()
    }

    /// Digests of every tensor, computed on `threads` threads; replicated copies are
    /// checked to be identical to the main copy.
    public func digests(_ tensors: [GlobalTensor], threads: Int = 2,
                        progress: (@Sendable (Int) -> Void)? = nil) throws(TesseraError) -> [String] {
        let results = Mutex<[Int: Result<String, TesseraError>]>([:])
        let next = Atomic<Int>(0)
        let workers = max(1, min(threads, tensors.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < tensors.count else { return }
                let t = tensors[i]
                let r: Result<String, TesseraError>
                do {
                    let main = try sha256(t)
                    for (k, replica) in t.replicas.enumerated() {
                        let other = try sha256(t, pieces: replica)
                        if other != main {
                            throw TesseraError(.inconsistent,
                                "replicated tensor differs between ranks: copy \(k + 1) (\(replica.first?.origin ?? "?")) is not equal to \(t.pieces.first?.origin ?? "?")",
                                tensor: t.name)
                        }
                    }
                    r = .success(main)
                } catch let e as TesseraError {
                    r = .failure(e)
                } catch {
                    r = .failure(TesseraError(.io, "\(error)", tensor: t.name))
                }
                results.withLock { $0[i] = r }
                progress?(t.byteCount)
            }
        }
        return try results.withLock { (table) throws(TesseraError) -> [String] in
            var out: [String] = []
            for i in tensors.indices { out.append(try table[i]!.get()) }
            return out
        }
    }
}

/// A rectangular region of a tensor: where it starts and its extent in each dimension.
public struct Box: Sendable, Equatable {
    public var offset: [Int]
    public var shape: [Int]
    public init(offset: [Int], shape: [Int]) {
        self.offset = offset
        self.shape = shape
    }
    public var elementCount: Int { shape.reduce(1, *) }
}
