import Checkpoints
import Codecs
import Dispatch
import Foundation
import HDF5
import Platform
import Synchronization

/// Writes the Tessera HDF5 store (Schemas/hdf5-store.md) for a target layout: chunks
/// aligned to the layout's shards, compressed (byte shuffle + zstd) on all cores outside
/// the HDF5 lock and landed with `H5Dwrite_chunk`; or, uncompressed, contiguous datasets
/// filled in place so readers can map them.
struct HDF5Writer {
    let plan: ConversionPlan
    let streamer: TensorStreamer
    let progress: @Sendable (Int) -> Void
    /// zstd level; nil writes uncompressed contiguous datasets.
    let level: Int32?
    var threads = 2
    /// Target size of one chunk.
    static let chunkBytes = 2 << 20

    /// The chunk shape of a tensor: the stored layout's rank-0 shard, cut along its
    /// first dimension into whole divisors of about `chunkBytes`.
    static func chunkShape(_ t: TargetTensor, tp: Int) throws(TesseraError) -> [Int] {
        var c = try t.rule.parts(global: t.shape, tp: tp, rank: 0)[0].shape
        guard let rows = c.first, rows > 0 else { return c }
        let rowBytes = c.dropFirst().reduce(1, *) * t.dtype.size
        var best = 1
        var k = 1
        while k <= rows {
            if rows % k == 0, k * rowBytes <= chunkBytes { best = k }
            k += 1
        }
        c[0] = best
        return c
    }

    func write(to path: String, configText: String, artifacts: [(String, [UInt8])]) throws(TesseraError) {
        // Compressed, each tensor's digest is taken as its bytes are compressed (and recorded
        // before the file is closed); uncompressed, as they are copied.
        var digests = [String?](repeating: nil, count: plan.tensors.count)
        var contiguous: [(Int, Int)] = []
        do {
            let file = try HDF5File.create(path, direct: level != nil)
            let layout: [String: Any] = ["tp": plan.layout.tp, "pp": plan.layout.pp, "key_spelling": plan.layout.spelling.rawValue,
                                         "stage_layers": plan.stages]
            let provenance: [String: Any] = ["tool": "tessera", "tool_version": TesseraVersion.string,
                                             "source": plan.source.container.displayPath,
                                             "source_format": plan.source.format.rawValue,
                                             "created": ISO8601DateFormatter().string(from: Date())]
            try file.setStringAttribute("format", HDF5Store.formatName)
            try file.setStringAttribute("format_version", String(HDF5Store.formatVersion))
            try file.setStringAttribute("layout", try json(layout))
            try file.setStringAttribute("provenance", try json(provenance))
            try file.setStringAttribute("model_config_yaml", configText)
            try file.setStringAttribute("compression", level.map { "zstd:\($0)" } ?? "none")
            var jobs: [TensorJob] = []
            for (i, t) in plan.tensors.enumerated() {
                let dpath = HDF5Store.path(t.name, under: "/weights")
                let chunk = level == nil ? nil : try Self.chunkShape(t, tp: plan.layout.tp)
                let ds = try file.createDataset(dpath, type: HDF5File.storedType(t.dtype), shape: t.shape, chunk: chunk, zstdLevel: level)
                try ds.setStringAttribute("dtype", t.dtype.rawValue)
                try ds.setStringAttribute("role", t.rule.role.rawValue)
                if let chunk {
                    jobs.append(TensorJob(tensor: i, chunk: chunk))
                } else if let offset = try ds.datasetInfo().contiguousOffset {
                    contiguous.append((i, offset))
                }
            }
            if let level {
                // Largest tensors first: the workers end together, on small ones.
                jobs.sort { plan.tensors[$0.tensor].source.byteCount > plan.tensors[$1.tensor].source.byteCount }
                for (job, digest) in zip(jobs, try writeChunks(jobs, file: file, level: level)) {
                    try file.setStringAttribute("sha256", digest, at: HDF5Store.path(plan.tensors[job.tensor].name, under: "/weights"))
                }
            }
            for object in plan.source.objects {
                let o = try object.resolved(cache: streamer.cache)
                let bytes = o.bytes ?? []
                let ds = try file.createDataset(HDF5Store.path(o.name, under: "/objects"), type: HDF5File.storedType(.uint8),
                                                shape: [bytes.count], chunk: nil, zstdLevel: nil)
                try ds.setStringAttribute("kind", o.kind)
                try withBytes(bytes) { (b) throws(TesseraError) in try file.write(ds, memoryType: HDF5File.storedType(.uint8), bytes: b) }
            }
            for (name, bytes) in artifacts {
                let ds = try file.createDataset("/artifacts/" + name, type: HDF5File.storedType(.uint8), shape: [bytes.count],
                                                chunk: nil, zstdLevel: nil)
                try withBytes(bytes) { (b) throws(TesseraError) in try file.write(ds, memoryType: HDF5File.storedType(.uint8), bytes: b) }
            }
            try file.close()
        }
        if !contiguous.isEmpty {
            // Uncompressed: fill the allocated contiguous datasets in place.
            var out = try OutputFile(updating: path)
            for (i, offset) in contiguous {
                let t = plan.tensors[i]
                var at = offset
                var h = SHA256Stream()
                try streamer.forEachRun(of: t.source, region: Box(offset: t.shape.map { _ in 0 }, shape: t.shape)) { (run) throws(TesseraError) in
                    h.update(run)
                    try out.write(run, at: at)
                    at += run.count
                    progress(run.count)
                }
                digests[i] = h.finalizeHex()
            }
            try out.close()
            let file = try HDF5File.openForUpdate(path)
            for (i, t) in plan.tensors.enumerated() {
                guard let digest = digests[i] else { continue }
                try file.setStringAttribute("sha256", digest, at: HDF5Store.path(t.name, under: "/weights"))
            }
            try file.close()
        }
    }

    /// A tensor to compress and the chunk shape of its dataset.
    struct TensorJob: Sendable {
        var tensor: Int
        var chunk: [Int]
    }

    /// What a worker hands to the thread that lands chunks in the file.
    enum Landing: @unchecked Sendable {
        case chunk(tensor: Int, offset: [Int], buffer: UnsafeMutableRawBufferPointer, size: Int, rawBytes: Int)
        case failed(TesseraError)
        case finished
    }

    /// The state the workers and the landing thread share: the next tensor to take, a pool of
    /// compressed-chunk buffers (bounding memory) and the queue of chunks to land, in order.
    final class Pipeline: @unchecked Sendable {
        let next = Atomic<Int>(0)
        let cancelled = Atomic<Bool>(false)
        private let pool: Mutex<[UncheckedSendable<UnsafeMutableRawBufferPointer>]>
        private let poolCount: DispatchSemaphore
        private let queue = Mutex<[Landing]>([])
        private let queueCount = DispatchSemaphore(value: 0)
        private let all: [UnsafeMutableRawBufferPointer]

        init(buffers: Int, bytes: Int) {
            all = (0..<buffers).map { _ in .allocate(byteCount: bytes, alignment: 64) }
            pool = Mutex(all.map { UncheckedSendable($0) })
            poolCount = DispatchSemaphore(value: buffers)
        }
        deinit { for b in all { b.deallocate() } }

        /// A free compressed-chunk buffer, waiting for the landing thread to return one.
        func take() -> UnsafeMutableRawBufferPointer {
            poolCount.wait()
            return pool.withLock { $0.removeLast() }.value
        }
        func give(_ b: UnsafeMutableRawBufferPointer) {
            let b = UncheckedSendable(b)
            pool.withLock { $0.append(b) }
            poolCount.signal()
        }
        func land(_ l: Landing) {
            queue.withLock { $0.append(l) }
            queueCount.signal()
        }
        /// The next landing, in the order they were handed over.
        func nextLanding() -> Landing {
            queueCount.wait()
            return queue.withLock { $0.removeFirst() }
        }
    }

    /// Compresses the chunks of `jobs` on `threads` workers, each taking whole tensors, two at
    /// a time: a worker streams each tensor band by band (the rows of one row of chunks, in C
    /// order), shuffles its chunks straight out of the band and compresses them with its own
    /// zstd context, then hashes the two tensors' bands together while they are in cache; this
    /// thread lands the chunks with `H5Dwrite_chunk` as they come, into a file whose data go
    /// to the disk with O_DIRECT. Returns the tensors' digests, in the order of `jobs`.
    private func writeChunks(_ jobs: [TensorJob], file: borrowing HDF5File, level: Int32) throws(TesseraError) -> [String] {
        var largestChunk = 1, largestBand = 1
        for j in jobs {
            let t = plan.tensors[j.tensor]
            largestChunk = max(largestChunk, j.chunk.reduce(1, *) * t.dtype.size)
            largestBand = max(largestBand, (j.chunk.first ?? 1) * t.shape.dropFirst().reduce(1, *) * t.dtype.size)
        }
        let workers = max(1, min(threads, jobs.count)), chunkBytes = largestChunk, bandBytes = largestBand
        // Enough compressed chunks in flight that the workers go on while this thread waits
        // for the disk (its direct writes go out 16 MiB at a time).
        let pipeline = Pipeline(buffers: 12 * workers, bytes: ZstdCompressor.bound(largestChunk))
        let digests = UncheckedSendable(UnsafeMutableBufferPointer<String>.allocate(capacity: jobs.count))
        digests.value.initialize(repeating: "")
        defer { digests.value.deinitialize(); digests.value.deallocate() }
        let done = DispatchGroup()
        let writer = self
        let prefetch = ReadAheadWindow(streamer: streamer, tensors: jobs.map { plan.tensors[$0.tensor].source }, window: 512 << 20)
        for _ in 0..<workers {
            DispatchQueue.global().async(group: done) {
                let bands = (0..<2).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: bandBytes, alignment: 64) }
                let shuffled = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkBytes, alignment: 64)
                defer { bands.forEach { $0.deallocate() }; shuffled.deallocate() }
                let z = ZstdCompressor(level: level)
                // Two tensors in hand, so that their bands go through the SHA unit together.
                var slots: [TensorSlot?] = [nil, nil]
                work: while !pipeline.cancelled.load(ordering: .relaxed) {
                    // Each slot gets a band to hash: the next of its tensor, or the first of
                    // the next tensor once its own is done.
                    for s in slots.indices {
                        while true {
                            if slots[s] == nil {
                                let k = pipeline.next.wrappingAdd(1, ordering: .relaxed).oldValue
                                guard k < jobs.count else { break }
                                prefetch.reached(k)
                                slots[s] = TensorSlot(index: k, job: jobs[k], tensor: writer.plan.tensors[jobs[k].tensor], buffer: bands[s])
                            }
                            guard let slot = slots[s], slot.pending.isEmpty else { break }
                            if slot.next == slot.grid.count {
                                digests.value[slot.index] = slot.sha.finalizeHex()
                                slots[s] = nil
                                continue
                            }
                            do throws(TesseraError) {
                                try writer.compressBand(of: slot, pipeline: pipeline, shuffled: shuffled, z: z)
                            } catch {
                                pipeline.land(.failed(error.forTensor(slot.tensor.name)))
                                break work
                            }
                            break
                        }
                    }
                    guard slots.contains(where: { $0 != nil }) else { break }
                    SHA256Stream.hashPending(slots)
                    for case let slot? in slots where slot.pending.isEmpty {
                        if let (file, range) = slot.mapped { file.release(range) }
                        slot.mapped = nil
                    }
                }
                pipeline.land(.finished)
            }
        }
        var finished = 0
        var failure: TesseraError?
        var openIndex = -1
        var openDataset: HDF5Object?
        while finished < workers {
            switch pipeline.nextLanding() {
            case .finished:
                finished += 1
            case .failed(let error):
                failure = failure ?? error
                pipeline.cancelled.store(true, ordering: .relaxed)
            case .chunk(let tensor, let offset, let buffer, let size, let rawBytes):
                if failure == nil {
                    do throws(TesseraError) {
                        if openIndex != tensor {
                            openDataset = try file.openDataset(HDF5Store.path(plan.tensors[tensor].name, under: "/weights"))
                            openIndex = tensor
                        }
                        try file.writeChunk(openDataset!, offset: offset, bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<size]))
                        progress(rawBytes)
                    } catch {
                        failure = error
                        pipeline.cancelled.store(true, ordering: .relaxed)
                    }
                }
                pipeline.give(buffer)
            }
        }
        done.wait()
        if let failure { throw failure }
        return Array(digests.value)
    }

    /// A tensor a worker has in hand: its chunk grid, the first chunk of its next band, and
    /// the bytes of its last band still to be hashed.
    final class TensorSlot: PendingDigest {
        let index: Int
        let job: TensorJob
        let tensor: TargetTensor
        let grid: [(index: [Int], box: Box)]
        /// Holds a band unless the source's own mapped bytes can be used.
        let buffer: UnsafeMutableRawBufferPointer
        var next = 0
        var sha = SHA256Stream()
        var pending = UnsafeRawBufferPointer(start: nil, count: 0)
        /// The source pages the pending band was used from in place, let go once it is hashed.
        var mapped: (file: MappedFile, range: Range<Int>)?

        init(index: Int, job: TensorJob, tensor: TargetTensor, buffer: UnsafeMutableRawBufferPointer) {
            self.index = index
            self.job = job
            self.tensor = tensor
            self.buffer = buffer
            grid = Box.grid(shape: tensor.shape, chunk: job.chunk)
        }
    }

    /// Streams the next band of a slot's tensor (the chunks sharing a first index: a run of
    /// rows in C order), shuffles and compresses its chunks and hands them to the landing
    /// thread; the band's bytes are left in the slot to be hashed.
    private func compressBand(of slot: TensorSlot, pipeline: Pipeline, shuffled: UnsafeMutableRawBufferPointer,
                              z: ZstdCompressor) throws(TesseraError) {
        let t = slot.tensor, shape = t.shape, grid = slot.grid
        var bandStreamer = streamer
        bandStreamer.prefetchLimit = 0   // the whole tensor was asked for by the prefetch window
        let start = slot.next
        var end = start + 1
        while end < grid.count, grid[end].index.first == grid[start].index.first { end += 1 }
        var region = Box(offset: shape.map { _ in 0 }, shape: shape)
        if !shape.isEmpty {
            region.offset[0] = grid[start].box.offset[0]
            region.shape[0] = grid[start].box.shape[0]
        }
        let bandBytes = region.elementCount * t.dtype.size
        // Raw sources stay mapped: a band that is one run of them is used where it is.
        let mapped = t.source.pieces.allSatisfy { $0.encoding == .raw }
        var at = 0
        var direct: UnsafeRawBufferPointer?
        try bandStreamer.forEachRun(of: t.source, region: region) { (run) throws(TesseraError) in
            if at == 0, run.count == bandBytes, mapped {
                direct = run
                for p in t.source.pieces {
                    let f = try streamer.cache.file(p.storage.path), base = f.bytes.baseAddress!
                    if run.baseAddress! >= base, run.baseAddress! + run.count <= base + f.count {
                        let start = run.baseAddress! - base
                        slot.mapped = (f, start..<(start + run.count))
                        break
                    }
                }
            } else {
                (slot.buffer.baseAddress! + at).copyMemory(from: run.baseAddress!, byteCount: run.count)
            }
            at += run.count
        }
        let bytes = direct ?? UnsafeRawBufferPointer(rebasing: slot.buffer[0..<bandBytes])
        try landBand(grid[start..<end], of: region, from: bytes.baseAddress!, job: slot.job, pipeline: pipeline,
                     shuffled: shuffled, z: z)
        slot.pending = bytes
        slot.next = end
    }

    /// Shuffles each chunk of a band out of the band's C-order bytes (segment by segment when
    /// the chunk is narrower than the band), compresses it and hands it over.
    private func landBand(_ chunks: ArraySlice<(index: [Int], box: Box)>, of region: Box, from bytes: UnsafeRawPointer,
                          job: TensorJob, pipeline: Pipeline, shuffled: UnsafeMutableRawBufferPointer,
                          z: ZstdCompressor) throws(TesseraError) {
        let esize = plan.tensors[job.tensor].dtype.size
        var strides = [Int](repeating: 1, count: region.shape.count)
        for k in strides.indices.reversed().dropFirst() { strides[k] = strides[k + 1] * region.shape[k + 1] }
        for (_, box) in chunks {
            // Dimensions after `d` are whole in the chunk, so it is contiguous from `d` on.
            var d = max(0, box.shape.count - 1)
            while d > 0, box.shape[d] == region.shape[d] { d -= 1 }
            let segment = box.shape[d...].reduce(1, *)
            let count = box.elementCount
            var outer = [Int](repeating: 0, count: d)
            var written = 0
            while written < count {
                var element = d < box.offset.count ? (box.offset[d] - region.offset[d]) * strides[d] : 0
                for k in 0..<d { element += (box.offset[k] - region.offset[k] + outer[k]) * strides[k] }
                byteShuffle(bytes + element * esize, count: segment, elementSize: esize,
                            into: shuffled.baseAddress!, chunkElements: count, at: written)
                written += segment
                var k = d - 1
                while k >= 0 {
                    outer[k] += 1
                    if outer[k] < box.shape[k] { break }
                    outer[k] = 0
                    k -= 1
                }
            }
            // An all-zero chunk is not written: the dataset's fill value (zero) stands for it.
            if ZeroPages.isZero(UnsafeRawBufferPointer(rebasing: shuffled[0..<(count * esize)])) {
                progress(count * esize)
                continue
            }
            let buffer = pipeline.take()
            let size: Int
            do {
                size = try z.compress(UnsafeRawBufferPointer(rebasing: shuffled[0..<(count * esize)]), into: buffer)
            } catch {
                pipeline.give(buffer)
                throw error
            }
            pipeline.land(.chunk(tensor: job.tensor, offset: box.offset, buffer: buffer, size: size, rawBytes: count * esize))
        }
    }

    private func json(_ obj: [String: Any]) throws(TesseraError) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) else {
            throw TesseraError(.io, "cannot encode JSON")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
