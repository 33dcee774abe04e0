import Checkpoints
import Codecs
import Foundation
import HDF5
import Platform

/// Writes the Tessera HDF5 store (Schemas/hdf5-store.md) for a target layout: chunks
/// aligned to the layout's shards, compressed (byte shuffle + zstd) on all cores outside
/// the HDF5 executor and landed with `H5Dwrite_chunk` in a fixed order; or, uncompressed,
/// contiguous datasets filled in place so readers can map them.
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

    /// Compresses the chunks of `jobs` on `threads` workers and writes them on this thread, in
    /// the fixed order of a ``BandSchedule`` (so where a chunk lands never depends on timing): the
    /// workers encode bands in parallel (``BandEncoder``: rows streamed, chunks shuffled and
    /// compressed), this thread lands their chunks with `H5Dwrite_chunk`, through the HDF5
    /// executor, into a file whose data go to the disk with O_DIRECT, and hashes the bands.
    /// Returns the tensors' digests, in the order of `jobs`.
    private func writeChunks(_ jobs: [TensorJob], file: borrowing HDF5File, level: Int32) throws(TesseraError) -> [String] {
        let tensors = jobs.map { plan.tensors[$0.tensor] }
        let schedule = BandSchedule(bandBytes: zip(jobs, tensors).map { job, t in
            (0..<job.bandCount(t.shape)).map { job.region(band: $0, of: t.shape).elementCount * t.dtype.size }
        })
        let chunkBytes = zip(jobs, tensors).map { $0.chunk.reduce(1, *) * $1.dtype.size }.max() ?? 1
        let workers = max(1, min(threads, schedule.steps.count)), streamer = self.streamer, steps = schedule.steps
        let prefetch = ReadAheadWindow(streamer: streamer, tensors: tensors.map(\.source), window: 512 << 20)
        // A few bands per worker in flight, so that the workers go on while this thread waits
        // for the disk (its direct writes go out 16 MiB at a time).
        let pipeline = OrderedPipeline<EncodedBand>(count: steps.count, workers: workers, window: 6 * workers) {
            let encoder = BandEncoder(streamer: streamer, chunkBytes: chunkBytes, level: level)
            return { (i) throws(TesseraError) -> EncodedBand in
                let step = steps[i], t = tensors[step.job]
                if step.band == 0 { prefetch.reached(step.job) }
                do throws(TesseraError) { return try encoder.encode(band: step.band, of: t, job: jobs[step.job]) } catch { throw error.forTensor(t.name) }
            }
        }
        defer { pipeline.finish() }
        var hasher = BandHasher(jobs: jobs.count)
        var openJob = -1
        var dataset: HDF5Object?
        for (i, step) in steps.enumerated() {
            let band = try pipeline.take(i)
            if openJob != step.job {
                dataset = try file.openDataset(HDF5Store.path(tensors[step.job].name, under: "/weights"))
                openJob = step.job
            }
            for frame in band.frames {
                try file.writeChunk(dataset!, offset: frame.offset, bytes: frame.bytes)
                progress(frame.rawBytes)
            }
            band.dropFrames()
            if band.zeroBytes > 0 { progress(band.zeroBytes) }
            hasher.add(band, for: step)
        }
        return hasher.finish()
    }

    private func json(_ obj: [String: Any]) throws(TesseraError) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) else {
            throw TesseraError(.io, "cannot encode JSON")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
