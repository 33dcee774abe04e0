import Checkpoints
import CHDF5
import Dispatch
import Foundation
import Platform

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

    /// Per-slot buffers (raw, shuffled, compressed), allocated once for the whole store.
    final class Workspace: @unchecked Sendable {
        let raw: [UnsafeMutableRawBufferPointer]
        let shuffled: [UnsafeMutableRawBufferPointer]
        let packed: [UnsafeMutableRawBufferPointer]
        let sizes: UnsafeMutableBufferPointer<Int>
        let failures: UnsafeMutableBufferPointer<TesseraError?>
        /// One compression context per worker, reused for every chunk.
        var contexts: [ZstdCompressor] = []
        init(slots: Int, chunkBytes: Int) {
            raw = (0..<slots).map { _ in .allocate(byteCount: chunkBytes, alignment: 64) }
            shuffled = (0..<slots).map { _ in .allocate(byteCount: chunkBytes, alignment: 64) }
            packed = (0..<slots).map { _ in .allocate(byteCount: ZstdCompressor.bound(chunkBytes), alignment: 64) }
            sizes = .allocate(capacity: slots)
            failures = .allocate(capacity: slots)
            failures.initialize(repeating: nil)
        }
        deinit {
            for b in raw + shuffled + packed { b.deallocate() }
            sizes.deallocate()
            failures.deallocate()
        }
    }

    func write(to path: String, configText: String, artifacts: [(String, [UInt8])]) throws(TesseraError) {
        // The digests are taken from the source on their own thread, in C order, while the
        // chunks are compressed and written.
        let digests = UncheckedSendable(UnsafeMutableBufferPointer<Result<String, TesseraError>?>.allocate(capacity: plan.tensors.count))
        digests.value.initialize(repeating: nil)
        defer { digests.value.deallocate() }
        let hashing = DispatchGroup()
        let tensors = plan.tensors, streamer = self.streamer
        DispatchQueue.global().async(group: hashing) {
            for (i, t) in tensors.enumerated() {
                var h = SHA256Hasher()
                do throws(TesseraError) {
                    try streamer.forEachRun(of: t.source, region: Box(offset: t.shape.map { _ in 0 }, shape: t.shape)) { run in h.update(run) }
                    digests.value[i] = .success(h.finalizeHex())
                } catch {
                    digests.value[i] = .failure(error)
                }
            }
        }
        defer { hashing.wait() }
        var contiguous: [(Int, Int)] = []
        do {
            let file = try HDF5File.create(path)
            let layout: [String: Any] = ["tp": plan.layout.tp, "pp": plan.layout.pp, "key_spelling": plan.layout.spelling.rawValue,
                                         "stage_layers": plan.stages]
            let provenance: [String: Any] = ["tool": "tessera", "source": plan.source.container.displayPath,
                                             "source_format": plan.source.format.rawValue,
                                             "created": ISO8601DateFormatter().string(from: Date())]
            try file.setStringAttribute("format", HDF5Store.formatName)
            try file.setStringAttribute("format_version", String(HDF5Store.formatVersion))
            try file.setStringAttribute("layout", try json(layout))
            try file.setStringAttribute("provenance", try json(provenance))
            try file.setStringAttribute("model_config_yaml", configText)
            try file.setStringAttribute("compression", level.map { "zstd:\($0)" } ?? "none")
            var jobs: [(tensor: Int, box: Box)] = []
            for (i, t) in plan.tensors.enumerated() {
                let dpath = HDF5Store.path(t.name, under: "/weights")
                let chunk = level == nil ? nil : try Self.chunkShape(t, tp: plan.layout.tp)
                let ds = try file.createDataset(dpath, type: HDF5File.storedType(t.dtype), shape: t.shape, chunk: chunk, zstdLevel: level)
                try ds.setStringAttribute("dtype", t.dtype.rawValue)
                try ds.setStringAttribute("role", t.rule.role.rawValue)
                if let chunk {
                    jobs += Box.grid(shape: t.shape, chunk: chunk).map { (i, $0.box) }
                } else if let offset = ds.datasetInfo().contiguousOffset {
                    contiguous.append((i, offset))
                }
            }
            if let level { try writeChunks(jobs, file: file, level: level) }
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
            file.flush()
        }
        if !contiguous.isEmpty {
            // Uncompressed: fill the allocated contiguous datasets in place.
            var out = try OutputFile(updating: path)
            for (i, offset) in contiguous {
                let t = plan.tensors[i]
                var at = offset
                try streamer.forEachRun(of: t.source, region: Box(offset: t.shape.map { _ in 0 }, shape: t.shape)) { (run) throws(TesseraError) in
                    try out.write(run, at: at)
                    at += run.count
                    progress(run.count)
                }
            }
            try out.close()
        }
        hashing.wait()
        let file = try HDF5File.openForUpdate(path)
        for (i, t) in plan.tensors.enumerated() {
            guard let result = digests.value[i] else { continue }
            try file.setStringAttribute("sha256", try result.get(), at: HDF5Store.path(t.name, under: "/weights"))
        }
    }

    /// Compresses every chunk on `threads` threads and lands them in order with
    /// `H5Dwrite_chunk`: while one batch is written, the next is compressed. Each worker owns
    /// its buffers and zstd context for the whole store: nothing is allocated per chunk.
    private func writeChunks(_ jobs: [(tensor: Int, box: Box)], file: borrowing HDF5File, level: Int32) throws(TesseraError) {
        var largest = 1
        for j in jobs { largest = max(largest, j.box.elementCount * plan.tensors[j.tensor].dtype.size) }
        let workspaces = (Workspace(slots: threads * 4, chunkBytes: largest), Workspace(slots: threads * 4, chunkBytes: largest))
        for ws in [workspaces.0, workspaces.1] { ws.contexts = (0..<threads).map { _ in ZstdCompressor(level: level) } }
        let slots = workspaces.0.raw.count
        let tensors = plan.tensors, streamer = self.streamer, workers = threads
        func compress(_ group: ArraySlice<(tensor: Int, box: Box)>, into ws: Workspace) -> DispatchGroup {
            let done = DispatchGroup()
            let w = UncheckedSendable(ws), batch = Array(group)
            DispatchQueue.global().async(group: done) {
                let ws = w.value
                ws.failures.initialize(repeating: nil)
                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                    let z = ws.contexts[worker]
                    for k in stride(from: worker, to: batch.count, by: workers) {
                        let t = tensors[batch[k].tensor], box = batch[k].box, esize = t.dtype.size
                        do throws(TesseraError) {
                            var at = 0
                            let dst = ws.raw[k]
                            try streamer.forEachRun(of: t.source, region: box) { (run) throws(TesseraError) in
                                dst.baseAddress!.advanced(by: at).copyMemory(from: run.baseAddress!, byteCount: run.count)
                                at += run.count
                            }
                            let n = box.elementCount * esize
                            byteShuffle(UnsafeRawBufferPointer(rebasing: dst[0..<n]),
                                        into: UnsafeMutableRawBufferPointer(rebasing: ws.shuffled[k][0..<n]), elementSize: esize)
                            ws.sizes[k] = try z.compress(UnsafeRawBufferPointer(rebasing: ws.shuffled[k][0..<n]), into: ws.packed[k])
                        } catch {
                            ws.failures[k] = error.forTensor(t.name)
                        }
                    }
                }
            }
            return done
        }
        // Datasets stay open while their chunks arrive.
        var openIndex = -1
        var openDataset: HDF5Object?
        var inflight: (DispatchGroup, ArraySlice<(tensor: Int, box: Box)>, Workspace)?
        var batch = 0
        for start in stride(from: 0, to: jobs.count + slots, by: slots) {
            var next: (DispatchGroup, ArraySlice<(tensor: Int, box: Box)>, Workspace)?
            if start < jobs.count {
                let group = jobs[start..<min(start + slots, jobs.count)]
                let ws = batch % 2 == 0 ? workspaces.0 : workspaces.1
                next = (compress(group, into: ws), group, ws)
                batch += 1
            }
            if let (done, group, ws) = inflight {
                done.wait()
                do throws(TesseraError) {
                    for (k, job) in group.enumerated() {
                        if let e = ws.failures[k] { throw e }
                        if openIndex != job.tensor {
                            openDataset = try file.openDataset(HDF5Store.path(tensors[job.tensor].name, under: "/weights"))
                            openIndex = job.tensor
                        }
                        try file.writeChunk(openDataset!, offset: job.box.offset,
                                            bytes: UnsafeRawBufferPointer(rebasing: ws.packed[k][0..<ws.sizes[k]]))
                        progress(job.box.elementCount * tensors[job.tensor].dtype.size)
                    }
                } catch {
                    next?.0.wait()
                    throw error
                }
            }
            inflight = next
        }
    }

    private func json(_ obj: [String: Any]) throws(TesseraError) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) else {
            throw TesseraError(.io, "cannot encode JSON")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
