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

    /// Chunk boxes covering `shape` in C order.
    static func boxes(shape: [Int], chunk: [Int]) -> [Box] {
        guard shape.allSatisfy({ $0 > 0 }) else { return [] }
        let grid = zip(shape, chunk).map { ($0 + $1 - 1) / $1 }
        var out: [Box] = []
        var index = [Int](repeating: 0, count: shape.count)
        for _ in 0..<grid.reduce(1, *) {
            let off = zip(index, chunk).map(*)
            out.append(Box(offset: off, shape: shape.indices.map { min(chunk[$0], shape[$0] - off[$0]) }))
            var d = index.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < grid[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return out
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
        var contiguous: [(TargetTensor, Int)] = []
        var largest = 0
        if level != nil {
            for t in plan.tensors { largest = max(largest, try Self.chunkShape(t, tp: plan.layout.tp).reduce(1, *) * t.dtype.size) }
        }
        // Two workspaces: one is compressed into while the other is hashed and written.
        let workspaces = (Workspace(slots: threads * 4, chunkBytes: max(largest, 1)),
                          Workspace(slots: threads * 4, chunkBytes: max(largest, 1)))
        for ws in [workspaces.0, workspaces.1] { ws.contexts = (0..<threads).map { _ in ZstdCompressor(level: level ?? 1) } }
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
            for t in plan.tensors {
                let dpath = HDF5Store.path(t.name, under: "/weights")
                let chunk = level == nil ? nil : try Self.chunkShape(t, tp: plan.layout.tp)
                let ds = try file.createDataset(dpath, type: HDF5File.storedType(t.dtype), shape: t.shape, chunk: chunk, zstdLevel: level)
                try ds.setStringAttribute("dtype", t.dtype.rawValue)
                try ds.setStringAttribute("role", t.rule.role.rawValue)
                if let chunk, let level {
                    let digest = try writeCompressed(t, dataset: ds, file: file, chunk: chunk, level: level, workspaces: workspaces)
                    try ds.setStringAttribute("sha256", digest)
                } else if let offset = ds.datasetInfo().contiguousOffset {
                    contiguous.append((t, offset))
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
            file.flush()
        }
        if !contiguous.isEmpty {
            // Uncompressed: fill the allocated contiguous datasets in place, then record their digests.
            var digests: [String: String] = [:]
            var out = try OutputFile(updating: path)
            for (t, offset) in contiguous {
                var h = SHA256Hasher()
                var at = offset
                try streamer.forEachRun(of: t.source, region: Box(offset: t.shape.map { _ in 0 }, shape: t.shape)) { (run) throws(TesseraError) in
                    try out.write(run, at: at)
                    h.update(run)
                    at += run.count
                    progress(run.count)
                }
                digests[t.name] = h.finalizeHex()
            }
            try out.close()
            let file = try HDF5File.openForUpdate(path)
            for (t, _) in contiguous {
                try file.setStringAttribute("sha256", digests[t.name]!, at: HDF5Store.path(t.name, under: "/weights"))
            }
        }
    }

    /// Compresses a tensor's chunks on `threads` threads and lands them in order; returns its digest.
    /// Each worker owns its buffers and zstd context for the whole tensor: nothing is
    /// allocated (or first touched) per chunk.
    private func writeCompressed(_ t: TargetTensor, dataset: borrowing HDF5Object, file: borrowing HDF5File, chunk: [Int],
                                 level: Int32, workspaces: (Workspace, Workspace)) throws(TesseraError) -> String {
        let boxes = Self.boxes(shape: t.shape, chunk: chunk)
        // Chunks spanning whole rows come in C order, so the digest can follow the writes.
        let wholeRows = Array(chunk.dropFirst()) == Array(t.shape.dropFirst())
        var hasher = SHA256Hasher()
        let esize = t.dtype.size
        let slots = workspaces.0.raw.count
        let source = t.source, streamer = self.streamer, workers = threads
        /// Starts compressing `group` into `ws` on the worker threads.
        func compress(_ group: [Box], into ws: Workspace) -> DispatchGroup {
            let done = DispatchGroup()
            let w = UncheckedSendable(ws)
            DispatchQueue.global().async(group: done) {
                let ws = w.value
                ws.failures.initialize(repeating: nil)
                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                    let z = ws.contexts[worker]
                    for k in stride(from: worker, to: group.count, by: workers) {
                        do throws(TesseraError) {
                            var at = 0
                            let dst = ws.raw[k]
                            try streamer.forEachRun(of: source, region: group[k]) { (run) throws(TesseraError) in
                                dst.baseAddress!.advanced(by: at).copyMemory(from: run.baseAddress!, byteCount: run.count)
                                at += run.count
                            }
                            let n = group[k].elementCount * esize
                            byteShuffle(UnsafeRawBufferPointer(rebasing: dst[0..<n]),
                                        into: UnsafeMutableRawBufferPointer(rebasing: ws.shuffled[k][0..<n]), elementSize: esize)
                            ws.sizes[k] = try z.compress(UnsafeRawBufferPointer(rebasing: ws.shuffled[k][0..<n]), into: ws.packed[k])
                        } catch {
                            ws.failures[k] = error
                        }
                    }
                }
            }
            return done
        }
        var inflight: (DispatchGroup, [Box], Workspace)?
        var batch = 0
        for start in stride(from: 0, to: boxes.count + slots, by: slots) {
            var next: (DispatchGroup, [Box], Workspace)?
            if start < boxes.count {
                let group = Array(boxes[start..<min(start + slots, boxes.count)])
                let ws = batch % 2 == 0 ? workspaces.0 : workspaces.1
                next = (compress(group, into: ws), group, ws)
                batch += 1
            }
            if let (done, group, ws) = inflight {
                done.wait()
                for k in group.indices {
                    if let e = ws.failures[k] { next?.0.wait(); throw e.forTensor(t.name) }
                    let n = group[k].elementCount * esize
                    if wholeRows { hasher.update(UnsafeRawBufferPointer(rebasing: ws.raw[k][0..<n])) }
                    do {
                        try file.writeChunk(dataset, offset: group[k].offset, bytes: UnsafeRawBufferPointer(rebasing: ws.packed[k][0..<ws.sizes[k]]))
                    } catch {
                        next?.0.wait()
                        throw error
                    }
                    progress(n)
                }
            }
            inflight = next
        }
        if wholeRows { return hasher.finalizeHex() }
        var h = SHA256Hasher()
        try streamer.forEachRun(of: t.source, region: Box(offset: t.shape.map { _ in 0 }, shape: t.shape)) { (run) throws(TesseraError) in
            h.update(run)
        }
        return h.finalizeHex()
    }

    private func json(_ obj: [String: Any]) throws(TesseraError) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) else {
            throw TesseraError(.io, "cannot encode JSON")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
