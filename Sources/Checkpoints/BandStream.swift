import Dispatch
import Platform

/// The compressed chunks one digest worker's slot goes through: those of the tensors it
/// claims one after another, band by band, read from the disk around the page cache
/// (``DirectReader``) in groups of about `groupBytes`, `depth` groups ahead of the chunk being
/// decoded. Each slot reading ahead on its own keeps several large reads in flight for the
/// disk while the cores decompress and hash, and no slot ever waits on another's progress.
/// A group already in the page cache is used where it lies in the file's mapping instead.
final class BandStream: @unchecked Sendable {
    /// One chunk ready to decode: piece `piece` of band `band` of tensor `tensor`, with its
    /// encoded bytes or why they could not be read.
    struct Chunk {
        let tensor: Int
        let band: Int
        let piece: Int
        let bytes: Result<UnsafeRawBufferPointer, TesseraError>
    }

    /// Chunks `chunks` (positions in the tensor's band-by-band order) being read into a buffer.
    private final class GroupRead: @unchecked Sendable {
        let tensor: Int
        let chunks: Range<Int>
        let buffer: Int
        /// Encoded bytes of the group's chunks.
        let bytes: Int
        let done = DispatchSemaphore(value: 0)
        /// Where each chunk's bytes landed, in `chunks` order.
        var views: Result<[UnsafeRawBufferPointer], TesseraError> = .success([])
        /// The mapped pages used in place (let go once the group is decoded).
        var mapped: [(MappedFile, Range<Int>)] = []
        init(tensor: Int, chunks: Range<Int>, buffer: Int, bytes: Int) {
            self.tensor = tensor
            self.chunks = chunks
            self.buffer = buffer
            self.bytes = bytes
        }
    }

    private let plans: [ChunkBands]
    /// Each tensor's chunks in decoding order: (band, piece index).
    private let orders: [[(band: Int, piece: Int)]]
    private let source: ChunkSource
    private let claim: @Sendable () -> Int?
    private let groupBytes: Int
    private let queue = DispatchQueue(label: "tessera.band-reads")
    private var buffers: [UnsafeMutableRawBufferPointer]
    private var free: [Int]
    private var reads: [GroupRead] = []
    private var current: GroupRead?
    private var position = 0
    /// The tensor and chunk position the next group to read starts at (nil: claim a tensor).
    private var cursor: (tensor: Int, position: Int)?
    private var exhausted = false
    private var failed: Set<Int> = []
    /// Encoded bytes of the groups read or being read and not yet decoded.
    private var inFlight = 0
    /// A group that would have overrun the read-ahead budget, submitted once there is room.
    private var held: (tensor: Int, chunks: Range<Int>, bytes: Int)?

    /// A stream over the tensors `claim` hands out (nil when none is left), reading groups
    /// of about `groupBytes` encoded bytes (a larger chunk alone), `depth` of them at a time;
    /// with a `cache`, groups whose pages are all in the page cache are used from its mappings.
    init(plans: [ChunkBands], orders: [[(band: Int, piece: Int)]], readers: [String: DirectReader],
         cache: MappingCache? = nil, groupBytes: Int = 4 << 20, depth: Int = 3, claim: @escaping @Sendable () -> Int?) {
        self.plans = plans
        self.orders = orders
        source = ChunkSource(readers: readers, cache: cache)
        self.groupBytes = groupBytes
        self.claim = claim
        buffers = (0..<max(2, depth)).map { _ in UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        free = Array(buffers.indices)
    }

    /// Each tensor's chunks in the order a stream delivers them: band by band.
    static func orders(_ plans: [ChunkBands]) -> [[(band: Int, piece: Int)]] {
        plans.map { plan in plan.bands.enumerated().flatMap { b, pieces in pieces.map { (b, $0) } } }
    }

    deinit {
        // Reads still in flight write into the buffers: wait for them first.
        for r in reads { r.done.wait() }
        for b in buffers where b.baseAddress != nil { b.deallocate() }
    }

    /// The next chunk, band by band within each tensor; nil when every claimed tensor is
    /// done. After a failed read the rest of that tensor is skipped.
    func next() -> Chunk? {
        while true {
            if let g = current, position < g.chunks.upperBound, !failed.contains(g.tensor) {
                defer { position += 1 }
                let (band, piece) = orders[g.tensor][position]
                return Chunk(tensor: g.tensor, band: band, piece: piece,
                             bytes: g.views.map { $0[position - g.chunks.lowerBound] })
            }
            if let g = current {
                for (file, range) in g.mapped { file.release(range) }
                free.append(g.buffer)
                inFlight -= g.bytes
                current = nil
            }
            fill()
            guard !reads.isEmpty else { return nil }
            let g = reads.removeFirst()
            g.done.wait()
            current = g
            position = g.chunks.lowerBound
            if case .failure(let e) = g.views, !failed.contains(g.tensor) {
                failed.insert(g.tensor)
                let (band, piece) = orders[g.tensor][position]
                return Chunk(tensor: g.tensor, band: band, piece: piece, bytes: .failure(e))
            }
        }
    }

    /// Skips the rest of tensor `k` (its data could not be decoded).
    func abandon(_ k: Int) { failed.insert(k) }

    /// Starts reads until every buffer is busy, the read-ahead budget (`depth` groups' worth
    /// of bytes) is used, or no tensor is left. A group larger than the budget (one huge
    /// chunk) is read alone, so memory stays a few chunks whatever the chunk size.
    private func fill() {
        while !free.isEmpty {
            guard let next = held ?? nextGroup() else { break }
            if (current != nil || !reads.isEmpty), inFlight + next.bytes > groupBytes * buffers.count {
                held = next
                break
            }
            held = nil
            inFlight += next.bytes
            submit(GroupRead(tensor: next.tensor, chunks: next.chunks, buffer: free.removeLast(), bytes: next.bytes))
        }
    }

    /// The chunk positions of the next group to read, claiming a tensor when the last one is done.
    private func nextGroup() -> (tensor: Int, chunks: Range<Int>, bytes: Int)? {
        if cursor == nil {
            guard !exhausted, let k = claim() else {
                exhausted = true
                return nil
            }
            cursor = (k, 0)
        }
        let (k, start) = cursor!
        let order = orders[k], pieces = plans[k].tensor.pieces
        var end = start + 1, total = pieces[order[start].piece].storage.count
        while end < order.count, total + pieces[order[end].piece].storage.count <= groupBytes {
            total += pieces[order[end].piece].storage.count
            end += 1
        }
        cursor = end == order.count ? nil : (k, end)
        return (k, start..<end, total)
    }

    /// Reads a group's chunks into its buffer on the stream's queue: runs of chunks at most
    /// 64 KiB apart in the same file are read together.
    private func submit(_ g: GroupRead) {
        let t = plans[g.tensor].tensor, order = orders[g.tensor]
        let members = g.chunks.sorted {
            let (a, b) = (t.pieces[order[$0].piece].storage, t.pieces[order[$1].piece].storage)
            return (a.path, a.offset) < (b.path, b.offset)
        }
        var runs: [ChunkSource.Run] = []
        for m in members {
            let s = t.pieces[order[m].piece].storage
            guard s.count > 0 else { continue }   // a chunk never written: nothing to read
            if let last = runs.last, last.path == s.path, s.offset - last.range.upperBound <= 64 << 10 {
                runs[runs.count - 1].range = last.range.lowerBound..<max(last.range.upperBound, s.offset + s.count)
                runs[runs.count - 1].members.append(m - g.chunks.lowerBound)
            } else {
                runs.append((s.path, s.offset..<(s.offset + s.count), [m - g.chunks.lowerBound]))
            }
        }
        reads.append(g)
        let storage = g.chunks.map { t.pieces[order[$0].piece].storage }
        if let (views, mapped) = source.residentViews(runs, storage: storage) {
            g.mapped = mapped
            g.views = .success(views)
            g.done.signal()
            return
        }
        let needed = runs.reduce(0) { $0 + DirectReader.span($1.range) }
        if buffers[g.buffer].count < needed {
            if buffers[g.buffer].baseAddress != nil { buffers[g.buffer].deallocate() }
            buffers[g.buffer] = .allocate(byteCount: needed, alignment: DirectReader.alignment)
        }
        let buffer = UncheckedSendable(buffers[g.buffer]), source = source
        let runList = UncheckedSendable(runs), name = t.name
        queue.async {
            do throws(TesseraError) {
                g.views = .success(try source.read(runList.value, into: buffer.value, storage: storage))
            } catch {
                g.views = .failure(error.forTensor(name))
            }
            g.done.signal()
        }
    }
}

/// Where a stream's chunks are read from: the files' mappings when every page of a group is
/// in the page cache, otherwise the disk around the cache (``DirectReader``) into a buffer.
struct ChunkSource: Sendable {
    /// Chunks lying close together in one file, read as one: the byte range and the chunks'
    /// positions in their group.
    typealias Run = (path: String, range: Range<Int>, members: [Int])

    let readers: [String: DirectReader]
    let cache: MappingCache?

    /// Views of the chunks `storage` (read as `runs`) in the files' mappings, and the mapped
    /// ranges to let go once used, when every page of the runs is in the page cache (nil
    /// otherwise, or without a cache).
    func residentViews(_ runs: [Run], storage: [FileSlice]) -> ([UnsafeRawBufferPointer], [(MappedFile, Range<Int>)])? {
        guard let cache else { return nil }
        var views = [UnsafeRawBufferPointer](repeating: UnsafeRawBufferPointer(start: nil, count: 0), count: storage.count)
        var mapped: [(MappedFile, Range<Int>)] = []
        for run in runs {
            guard let file = try? cache.file(run.path), run.range.upperBound <= file.count, file.isResident(run.range) else { return nil }
            for m in run.members {
                views[m] = UnsafeRawBufferPointer(rebasing: file.bytes[storage[m].offset..<(storage[m].offset + storage[m].count)])
            }
            mapped.append((file, run.range))
        }
        return (views, mapped)
    }

    /// Reads `runs` one after another into `buffer` (each its aligned span) and returns views
    /// of the chunks `storage` in it.
    func read(_ runs: [Run], into buffer: UnsafeMutableRawBufferPointer, storage: [FileSlice]) throws(TesseraError) -> [UnsafeRawBufferPointer] {
        var views = [UnsafeRawBufferPointer](repeating: UnsafeRawBufferPointer(start: nil, count: 0), count: storage.count)
        var at = 0
        for run in runs {
            guard let reader = readers[run.path] else { throw TesseraError(.missing, "no reader for the file", file: run.path) }
            let span = DirectReader.span(run.range)
            let base = at + (try reader.read(run.range, into: UnsafeMutableRawBufferPointer(rebasing: buffer[at..<(at + span)])))
            for m in run.members {
                let s = storage[m]
                views[m] = UnsafeRawBufferPointer(rebasing: buffer[(base + s.offset - run.range.lowerBound)...].prefix(s.count))
            }
            at += span
        }
        return views
    }
}
