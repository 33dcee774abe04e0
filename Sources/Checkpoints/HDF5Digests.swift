import Codecs
import Dispatch
import Platform
import Synchronization

/// The HDF5 store's way of digesting its tensors: their compressed chunks decoded band by band
/// straight into C order, two tensors hashed at once (``HDF5Store/bandDigests(_:cache:threads:groupBytes:depth:progress:)``).
/// It applies when every tensor is stored as compressed chunks.
struct HDF5ChunkDigests: DigestStrategy {
    func digests(_ tensors: [GlobalTensor], streamer: TensorStreamer, threads: Int,
                 progress: (@Sendable (Int) -> Void)?) throws(TesseraError) -> [String]? {
        try HDF5Store.bandDigests(tensors, cache: streamer.cache, threads: threads, progress: progress)
    }
}

extension HDF5Store {
    /// Digests of tensors stored as compressed chunks (nil when some tensor is not, and the
    /// general path applies), checked against the recorded ones. Each of `threads` workers
    /// carries two tensors at a time, each slot fed by its own ``BandStream`` (chunks read
    /// around the page cache, ahead of use). A band (a row of chunks) is decompressed and
    /// unshuffled straight into its place in C order, and both slots' bands go through the
    /// SHA unit together.
    /// `groupBytes` and `depth` size each slot's reads (``BandStream``).
    static func bandDigests(_ tensors: [GlobalTensor], cache: MappingCache?, threads: Int, groupBytes: Int = 4 << 20, depth: Int = 3,
                            progress: (@Sendable (Int) -> Void)?) throws(TesseraError) -> [String]? {
        var plans: [ChunkBands] = []
        for t in tensors {
            guard let bands = ChunkBands(t) else { return nil }
            plans.append(bands)
        }
        guard !plans.isEmpty else { return nil }
        var readers: [String: DirectReader] = [:]
        for path in Set(tensors.flatMap { $0.pieces.map(\.storage.path) }) { readers[path] = try DirectReader(path: path) }
        let work = BandDigestWork(plans: plans, readers: readers, cache: cache, groupBytes: groupBytes, depth: depth, progress: progress)
        DispatchQueue.concurrentPerform(iterations: max(1, min(threads, plans.count))) { _ in work.run() }
        var out: [String] = []
        for (plan, result) in zip(plans, work.outcomes) {
            let t = plan.tensor, digest = try result.get()
            if let recorded = t.recordedDigest, recorded != digest {
                try damagedChunk(of: plan, cache: cache ?? MappingCache())
                throw TesseraError(.corrupt, "data does not match its recorded SHA-256 (recorded \(recorded), computed \(digest))",
                                   file: t.pieces.first?.storage.path, tensor: t.name)
            }
            out.append(digest)
        }
        return out
    }

    /// Decodes every chunk of a tensor checking the zstd frames' checksums, and throws an
    /// error naming the first chunk that fails (stores written without checksums pass).
    static func damagedChunk(of plan: ChunkBands, cache: MappingCache) throws(TesseraError) {
        let z = ZstdDecompressor(), scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: plan.decodedBytes, alignment: 64)
        defer { scratch.deallocate() }
        for p in plan.tensor.pieces {
            let input = try PieceView(p, in: cache, tensor: plan.tensor.name).bytes
            do { _ = try ChunkDecoder.unpack(input, p.encoding, scratch: scratch, z: z) } catch { throw p.damaged(error, tensor: plan.tensor.name) }
        }
    }
}

/// One ``HDF5Store/bandDigests(_:cache:threads:groupBytes:depth:progress:)`` call: the tensors'
/// bands, where their chunks are read from, and each tensor's outcome; ``run()`` is one worker.
private final class BandDigestWork: @unchecked Sendable {
    let plans: [ChunkBands]
    let orders: [[(band: Int, piece: Int)]]
    let readers: [String: DirectReader]
    let cache: MappingCache?
    let groupBytes: Int, depth: Int
    let progress: (@Sendable (Int) -> Void)?
    let bandBytes: Int, decodedBytes: Int
    /// Tensors in the order they are handed out: largest first, so that the last ones, which
    /// one slot may finish alone, are small.
    private let claimOrder: [Int]
    private let next = Atomic<Int>(0)
    /// Each tensor's digest or failure, written once by the worker that had it.
    private let results: UnsafeMutableBufferPointer<Result<String, TesseraError>?>

    init(plans: [ChunkBands], readers: [String: DirectReader], cache: MappingCache?, groupBytes: Int, depth: Int,
         progress: (@Sendable (Int) -> Void)?) {
        self.plans = plans
        orders = BandStream.orders(plans)
        self.readers = readers
        self.cache = cache
        self.groupBytes = groupBytes
        self.depth = depth
        self.progress = progress
        bandBytes = plans.map(\.bandBytes).max() ?? 0
        decodedBytes = plans.map(\.decodedBytes).max() ?? 0
        claimOrder = plans.indices.sorted { plans[$0].tensor.byteCount > plans[$1].tensor.byteCount }
        results = .allocate(capacity: plans.count)
        results.initialize(repeating: nil)
    }

    deinit {
        results.deinitialize()
        results.deallocate()
    }

    /// Every tensor's outcome, once all workers have returned.
    var outcomes: [Result<String, TesseraError>] { results.map { $0! } }

    private func claim() -> Int? {
        let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return k < claimOrder.count ? claimOrder[k] : nil
    }

    /// One worker: two slots, each fed by its own stream, their bands hashed together.
    func run() {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: decodedBytes, alignment: 64)
        let buffers = (0..<2).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: bandBytes, alignment: 64) }
        defer { scratch.deallocate(); buffers.forEach { $0.deallocate() } }
        // Frames' checksums are left to the tensors' SHA-256, which covers every byte;
        // a tensor that fails it has its chunks checked one by one to name the bad one.
        let z = ZstdDecompressor(verifyingChecksums: false)
        let streams = (0..<2).map { _ in
            BandStream(plans: plans, orders: orders, readers: readers, cache: cache, groupBytes: groupBytes, depth: depth,
                       claim: { [self] in claim() })
        }
        var slots: [BandSlot?] = [nil, nil]
        var active = [true, true]
        while true {
            for s in slots.indices where active[s] {
                if let slot = slots[s], !slot.pending.isEmpty { continue }
                if let slot = slots[s], slot.band == slot.plan.bands.count {
                    results[slot.index] = .success(slot.sha.finalizeHex())
                    progress?(slot.plan.tensor.byteCount)
                    slots[s] = nil
                }
                active[s] = fill(&slots[s], from: streams[s], into: buffers[s], scratch: scratch, z: z)
            }
            guard slots.contains(where: { $0 != nil }) else { return }
            SHA256Stream.hashPending(slots)
        }
    }

    /// Decodes the chunks `stream` delivers into their places in `buffer` until a band is
    /// whole, and leaves it in the slot to be hashed; false once the stream has no more.
    private func fill(_ slot: inout BandSlot?, from stream: BandStream, into buffer: UnsafeMutableRawBufferPointer,
                      scratch: UnsafeMutableRawBufferPointer, z: ZstdDecompressor) -> Bool {
        while let chunk = stream.next() {
            do throws(TesseraError) {
                let bytes = try chunk.bytes.get()
                if slot?.index != chunk.tensor { slot = BandSlot(plans[chunk.tensor], index: chunk.tensor) }
                let s = slot!
                try s.plan.decode(chunk: chunk.piece, band: chunk.band, input: bytes, into: buffer, scratch: scratch, z: z)
                s.decoded += 1
                if s.decoded == s.plan.bands[s.band].count {
                    s.pending = UnsafeRawBufferPointer(rebasing: buffer[0..<s.plan.byteCount(band: s.band)])
                    s.band += 1
                    s.decoded = 0
                    return true
                }
            } catch {
                results[chunk.tensor] = .failure(error)
                stream.abandon(chunk.tensor)
                slot = nil
            }
        }
        return false
    }
}

/// One tensor a digest worker has in hand: the next band and what of the last band is
/// still to be hashed.
final class BandSlot: PendingDigest {
    let plan: ChunkBands
    let index: Int
    var band = 0
    /// Chunks of `band` decoded so far.
    var decoded = 0
    var sha = SHA256Stream()
    var pending = UnsafeRawBufferPointer(start: nil, count: 0)

    init(_ plan: ChunkBands, index: Int) {
        self.plan = plan
        self.index = index
    }
}
