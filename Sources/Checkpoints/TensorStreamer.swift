import Codecs
import Dispatch
import Platform
import Synchronization

/// Streams the bytes of global tensors in C order straight from their pieces,
/// without assembling them: contiguous runs are handed out as views of the mapped
/// files; only strided views are gathered through a small buffer.
public struct TensorStreamer: Sendable {
    public let cache: MappingCache
    /// Pages of the mapped sources are released after this many bytes, bounding memory.
    public var releaseEvery = 16 << 20

    /// Bytes of each piece asked for ahead of use.
    public var prefetchLimit = 256 << 20
    /// Threads used to decode compressed chunks ahead of use.
    public var decodeThreads = 2

    public init(cache: MappingCache) { self.cache = cache }

    /// Starts reading, on a background thread, the stored bytes of `regions` (tensor regions
    /// in the order they will be streamed), so the disk works ahead of the consumer.
    public func prefetch(_ regions: [(GlobalTensor, Box)]) {
        var ranges: [(String, Range<Int>)] = []
        for (t, box) in regions {
            for p in t.pieces where p.intersects(box) { ranges.append((p.storage.path, Self.storedRange(of: p, in: box, dtype: t.dtype))) }
        }
        let cache = self.cache, todo = ranges
        Self.prefetchQueue.async {
            for (path, range) in todo { (try? cache.file(path))?.willNeed(range) }
        }
    }

    /// The file bytes of piece `p` that hold its part of `box`: the span of the outermost
    /// rows the box touches (the whole stored piece when it is encoded).
    static func storedRange(of p: Piece, in box: Box, dtype: DType) -> Range<Int> {
        let whole = p.storage.offset..<(p.storage.offset + p.storage.count)
        guard p.encoding == .raw, !p.shape.isEmpty, p.shape.allSatisfy({ $0 > 0 }) else { return whole }
        let lo = max(box.offset[0], p.globalOffset[0]) - p.globalOffset[0]
        let hi = min(box.offset[0] + box.shape[0], p.globalOffset[0] + p.shape[0]) - p.globalOffset[0]
        guard hi > lo else { return whole.lowerBound..<whole.lowerBound }
        let rowExtent = p.shape.indices.dropFirst().reduce(1) { $0 + (p.shape[$1] - 1) * p.strides[$1] }
        let first = p.storageOffset + lo * p.strides[0], last = p.storageOffset + (hi - 1) * p.strides[0] + rowExtent
        let range = (p.storage.offset + first * dtype.size)..<(p.storage.offset + last * dtype.size)
        return range.clamped(to: whole)
    }

    private static let prefetchQueue = DispatchQueue(label: "tessera.prefetch")

    /// Frees decoded chunks the sweep has passed, flushing pending runs that may point into them.
    private func flushIfDropping(_ d: ChunkDecoder, row: Int, _ flush: () throws(TesseraError) -> Void) throws(TesseraError) {
        if d.hasFinished(before: row + 1) {
            try flush()
            d.drop(before: row + 1)
        }
    }

    /// Calls `body` with consecutive byte runs that together are the bytes, in C order,
    /// of the box `region` (default: the whole tensor) of tensor `t`, read from `pieces`
    /// (default: its main cover). Elements of the box beyond the tensor's shape read as
    /// zeros (vocabulary padding grown for a new layout). A run's pointer is valid only inside
    /// `body` (it may be a reused buffer): copy or consume the bytes there.
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
        // Start reading the stored bytes the region touches (not a piece's start when the region
        // lies further in), so disk reads overlap with the work.
        for (p, f) in zip(pieces, files) where p.intersects(region) {
            let r = Self.storedRange(of: p, in: region, dtype: t.dtype)
            f.willNeed(r.lowerBound..<min(r.upperBound, r.lowerBound + prefetchLimit))
        }
        // Each raw piece's file extents, read once: the row loop below is hot.
        let extents = zip(pieces, files).map { p, f in p.encoding == .raw ? f.extents : FileExtents(dense: f.count) }
        let dense = extents.map(\.isDense)
        let decoder = ChunkDecoder(pieces: pieces, encoded: views, threads: decodeThreads, region: region)
        defer { decoder.releaseAll() }
        var watermark = [Int](repeating: 0, count: pieces.count)
        var sinceRelease = 0
        var pending: UnsafeRawBufferPointer?
        var scratch: [UInt8] = []
        func flush() throws(TesseraError) {
            if let p = pending, p.count > 0 { try body(p) }
            pending = nil
        }
        // Adjacent runs are joined: mapped bytes up to 8 MiB, zeros (holes, padding) up to a
        // whole view of the zero pages, so a writer skips them in one step.
        func emit(_ run: UnsafeRawBufferPointer) throws(TesseraError) {
            guard run.count > 0 else { return }
            if let p = pending, ZeroPages.contains(p), ZeroPages.contains(run), p.count + run.count <= ZeroPages.size {
                pending = ZeroPages.run(p.count + run.count)
                return
            }
            if let p = pending, let pe = p.baseAddress, pe + p.count == run.baseAddress, !ZeroPages.contains(p) {
                pending = UnsafeRawBufferPointer(start: pe, count: p.count + run.count)
            } else {
                try flush()
                pending = run
            }
            if pending!.count >= (8 << 20), !ZeroPages.contains(pending!) { try flush() }
        }
        func emitZeros(_ count: Int) throws(TesseraError) {
            var left = count
            while left > 0 {
                let n = min(left, ZeroPages.size)
                try emit(ZeroPages.run(n))
                left -= n
            }
        }
        let n = t.shape.count
        guard region.shape.allSatisfy({ $0 > 0 }) else { return }
        if n == 0 {
            guard let p = pieces.first else { return }
            let v = try decoder.view(0, row: 0, tensor: t.name)
            try body(UnsafeRawBufferPointer(rebasing: v[(p.storageOffset * esize)..<((p.storageOffset + 1) * esize)]))
            return
        }
        let last = n - 1
        let colStart = region.offset[last], colEnd = colStart + region.shape[last]
        let rows = region.shape[..<last].reduce(1, *)
        var outer = Array(region.offset[..<last])
        // The pieces the region touches (a layer of a stacked tensor is a few of hundreds),
        // sorted by their offset in the last dimension, so a row's segments come in order.
        let order = pieces.indices.filter { pieces[$0].intersects(region) }
            .sorted { pieces[$0].globalOffset[last] < pieces[$1].globalOffset[last] }
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
                    let view = try decoder.view(i, row: outer.first ?? 0, tensor: t.name)
                    var elem = p.storageOffset + (col - pStart) * p.strides[last]
                    for d in 0..<last { elem += (outer[d] - p.globalOffset[d]) * p.strides[d] }
                    let width = segEnd - col
                    let stride = p.strides[last]
                    if stride == 1 || width == 1 {
                        let start = elem * esize
                        if p.encoding == .raw && !dense[i] {
                            // Straight from the file: holes come as zeros, never faulted in.
                            let at = p.storage.offset + start
                            try files[i].forEachRun(at..<(at + width * esize), extents: extents[i]) { (run) throws(TesseraError) in
                                try emit(run)
                            }
                        } else {
                            try emit(UnsafeRawBufferPointer(rebasing: view[start..<(start + width * esize)]))
                        }
                        watermark[i] = max(watermark[i], start + width * esize)
                    } else {
                        try flush()
                        scratch.removeAll(keepingCapacity: true)
                        for j in 0..<width {
                            let s = (elem + j * stride) * esize
                            scratch.append(contentsOf: view[s..<(s + esize)])
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
            if let row = outer.first { try flushIfDropping(decoder, row: row, flush) }
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

    /// SHA-256 of a tensor's bytes in C order (for `pieces`, defaulting to its main cover),
    /// checked against the digest the store recorded, if any.
    public func sha256(_ t: GlobalTensor, pieces: [Piece]? = nil) throws(TesseraError) -> String {
        var h = SHA256Stream()
        try forEachRun(of: t, pieces: pieces) { (run) throws(TesseraError) in h.update(run) }
        let digest = h.finalizeHex()
        if let recorded = t.recordedDigest, pieces == nil, recorded != digest {
            throw TesseraError(.corrupt, "data does not match its recorded SHA-256 (recorded \(recorded), computed \(digest))",
                               file: t.pieces.first?.storage.path, tensor: t.name)
        }
        return digest
    }

    /// Digests of every tensor, computed on `threads` threads; replicated copies are
    /// checked to be identical to the main copy. Tensors whose reader has its own way
    /// (``GlobalTensor/digestStrategy``) are digested that way when it applies to them all;
    /// otherwise their streamed runs are hashed.
    public func digests(_ tensors: [GlobalTensor], threads: Int = 2,
                        progress: (@Sendable (Int) -> Void)? = nil) throws(TesseraError) -> [String] {
        if let strategy = tensors.first?.digestStrategy,
           let digests = try strategy.digests(tensors, streamer: self, threads: threads, progress: progress) { return digests }
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

    /// How many chunks a grid of `chunk`-shaped chunks over `shape` has.
    public static func gridCount(shape: [Int], chunk: [Int]) -> Int {
        guard shape.allSatisfy({ $0 > 0 }), chunk.allSatisfy({ $0 > 0 }) else { return 0 }
        return zip(shape, chunk).map { ($0 + $1 - 1) / $1 }.reduce(1, *)
    }

    /// The boxes of a chunk grid covering `shape` in C order of their chunk indices (edge
    /// chunks clipped), each with its index in the grid.
    public static func grid(shape: [Int], chunk: [Int]) -> [(index: [Int], box: Box)] {
        guard shape.allSatisfy({ $0 > 0 }), chunk.allSatisfy({ $0 > 0 }) else { return [] }
        let counts = zip(shape, chunk).map { ($0 + $1 - 1) / $1 }
        var out: [(index: [Int], box: Box)] = []
        var index = [Int](repeating: 0, count: shape.count)
        for _ in 0..<counts.reduce(1, *) {
            let off = zip(index, chunk).map(*)
            out.append((index, Box(offset: off, shape: shape.indices.map { min(chunk[$0], shape[$0] - off[$0]) })))
            var d = index.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < counts[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return out
    }
}
