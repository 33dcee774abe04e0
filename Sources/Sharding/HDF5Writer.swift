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

    func write(to path: String, configText: String, artifacts: [(String, [UInt8])]) throws(TesseraError) {
        var contiguous: [(TargetTensor, Int)] = []
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
                    let digest = try writeCompressed(t, dataset: ds, file: file, chunk: chunk, level: level)
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
    private func writeCompressed(_ t: TargetTensor, dataset: borrowing HDF5Object, file: borrowing HDF5File, chunk: [Int],
                                 level: Int32) throws(TesseraError) -> String {
        let boxes = Self.boxes(shape: t.shape, chunk: chunk)
        // Chunks spanning whole rows come in C order, so the digest can follow the writes.
        let wholeRows = Array(chunk.dropFirst()) == Array(t.shape.dropFirst())
        var hasher = SHA256Hasher()
        let esize = t.dtype.size
        let batch = 4 * threads
        for start in stride(from: 0, to: boxes.count, by: batch) {
            let group = Array(boxes[start..<min(start + batch, boxes.count)])
            let raw = UncheckedSendable(group.map { UnsafeMutableRawBufferPointer.allocate(byteCount: $0.elementCount * esize, alignment: 64) })
            let sizes = UncheckedSendable(UnsafeMutableBufferPointer<Int>.allocate(capacity: group.count))
            let failures = UncheckedSendable(UnsafeMutableBufferPointer<TesseraError?>.allocate(capacity: group.count))
            failures.value.initialize(repeating: nil)
            let compressedBox = UncheckedSendable(UnsafeMutablePointer<[UInt8]>.allocate(capacity: group.count))
            compressedBox.value.initialize(repeating: [], count: group.count)
            defer {
                for r in raw.value { r.deallocate() }
                sizes.value.deallocate()
                failures.value.deallocate()
                compressedBox.value.deinitialize(count: group.count)
                compressedBox.value.deallocate()
            }
            let source = t.source, streamer = self.streamer
            DispatchQueue.concurrentPerform(iterations: group.count) { k in
                do throws(TesseraError) {
                    var at = 0
                    let dst = raw.value[k]
                    try streamer.forEachRun(of: source, region: group[k]) { (run) throws(TesseraError) in
                        dst.baseAddress!.advanced(by: at).copyMemory(from: run.baseAddress!, byteCount: run.count)
                        at += run.count
                    }
                    let shuffled = UnsafeMutableRawBufferPointer.allocate(byteCount: dst.count, alignment: 64)
                    defer { shuffled.deallocate() }
                    byteShuffle(UnsafeRawBufferPointer(dst), into: shuffled, elementSize: esize)
                    let z = ZstdCompressor(level: level)
                    sizes.value[k] = try z.compress(UnsafeRawBufferPointer(shuffled), into: &compressedBox.value[k])
                } catch {
                    failures.value[k] = error
                }
            }
            for k in group.indices {
                if let e = failures.value[k] { throw e.forTensor(t.name) }
                if wholeRows { hasher.update(UnsafeRawBufferPointer(raw.value[k])) }
                let n = sizes.value[k]
                try withBytes(compressedBox.value[k]) { (b) throws(TesseraError) in
                    try file.writeChunk(dataset, offset: group[k].offset, bytes: UnsafeRawBufferPointer(rebasing: b[0..<n]))
                }
                progress(raw.value[k].count)
            }
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
