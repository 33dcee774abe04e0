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

    /// Calls `body` with consecutive byte runs that together are the bytes, in C order,
    /// of the box `region` (default: the whole tensor) of tensor `t`, read from `pieces`
    /// (default: its main cover). Elements of the box beyond the tensor's shape read as
    /// zeros (vocabulary padding grown for a new layout).
    ///
    /// A run's memory is valid only while `body` runs: it may be a mapped file's pages (released
    /// as the sweep passes), a decoded chunk (freed), a gather buffer (reused) or the zero pages.
    /// Copy what must outlive the call.
    public func forEachRun(of t: GlobalTensor, pieces: [Piece]? = nil, region: Box? = nil,
                           _ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        let pieces = pieces ?? t.pieces
        let region = region ?? Box(offset: [Int](repeating: 0, count: t.shape.count), shape: t.shape)
        guard region.shape.allSatisfy({ $0 > 0 }) else { return }
        let sources = try PieceSources(t, pieces: pieces, region: region, streamer: self)
        defer { sources.decoder.releaseAll() }
        guard !t.shape.isEmpty else {
            // A scalar: one element of the first piece.
            guard let p = pieces.first else { return }
            let v = try sources.decoder.view(0, row: 0, tensor: t.name), esize = t.dtype.size
            try body(UnsafeRawBufferPointer(rebasing: v[(p.storageOffset * esize)..<((p.storageOffset + 1) * esize)]))
            return
        }
        var out = RunJoiner()
        var sinceRelease = 0
        try RunPlan(tensor: t.name, shape: t.shape, pieces: pieces, region: region).forEachRow { (outer, segments) throws(TesseraError) in
            for segment in segments {
                switch segment {
                case .zeros(let count):
                    try out.emitZeros(count * t.dtype.size, body)
                case .piece(let i, let element, let width, let stride):
                    try sources.read(i, element: element, width: width, stride: stride, row: outer.first ?? 0, into: &out, body)
                    sinceRelease += width * t.dtype.size
                }
            }
            if let row = outer.first, sources.decoder.hasFinished(before: row + 1) {
                try out.flush(body)   // pending runs may point into the chunks dropped now
                sources.decoder.drop(before: row + 1)
            }
            if sinceRelease >= releaseEvery {
                try out.flush(body)
                sources.releaseRead()
                sinceRelease = 0
            }
        }
        try out.flush(body)
        sources.releaseRead()
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
