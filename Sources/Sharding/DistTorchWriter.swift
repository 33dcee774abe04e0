import Checkpoints
import Foundation
import Platform
import TorchFormat

/// Writes a megatron-core distributed checkpoint with the torch_dist backend: every
/// target shard a `torch.save` item in a `.distcp` file, located by the pickled
/// torch.distributed.checkpoint `.metadata`.
struct DistTorchWriter {
    let plan: ConversionPlan
    let streamer: TensorStreamer
    let progress: @Sendable (Int) -> Void

    func write(into root: String) throws(TesseraError) {
        let dir = root + "/model_weights"
        try Folder.create(dir)
        try writeText(#"{"sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch", "common_backend_version": 1}"#,
                      to: dir + "/metadata.json")
        try DistZarrWriter(plan: plan, streamer: streamer, progress: progress).writeCommon(dir)
        let layers = plan.config.numLayers
        let fileName = "__0_0.distcp"
        var out = try OutputFile(creating: dir + "/" + fileName)
        var entries: [String: DCPTensor] = [:]
        var order: [String] = []
        let (grids, readAhead) = try DistZarrWriter.grids(plan, streamer: streamer)
        for (t, (_, boxes)) in zip(plan.tensors, grids) {
            let (key, layer) = DistZarrWriter.key(t.name)
            if entries[key] == nil {
                order.append(key)
                entries[key] = DCPTensor(fqn: key, dtype: t.dtype, size: layer == nil ? t.shape : [layers] + t.shape, chunks: [])
            }
            for box in boxes {
                let shape = layer == nil ? box.shape : [1] + box.shape
                let offsets = layer == nil ? box.offset : [layer!] + box.offset
                let start = out.position
                var w = TorchSaveWriter(appendingTo: out, archiveName: "archive")
                try w.writeHeader(pickle: PickleWriter.single(.tensor(dtype: t.dtype, shape: shape, storageKey: "0")))
                try w.begin("data/0", size: box.elementCount * t.dtype.size)
                readAhead.advance()
                try streamer.forEachRun(of: t.source, region: box) { (run) throws(TesseraError) in
                    try w.append(run)
                    progress(run.count)
                }
                try w.end()
                out = try w.finish()
                entries[key]!.chunks.append((offsets, shape, DCPItem(path: fileName, offset: start, count: out.position - start)))
            }
        }
        var byteItems: [(fqn: String, item: DCPItem)] = []
        for object in plan.source.objects {
            let o = try object.resolved(cache: streamer.cache)
            let (key, layer) = DistZarrWriter.key(o.name)
            if o.name.contains("core_attention") || o.name.hasPrefix("rm_head") || o.name.hasPrefix("output_layer") { continue }
            let fqn = key + "/" + (layer.map { "shard_\($0)_\(layers)" } ?? "shard_0_1")
            let start = out.position
            var w = TorchSaveWriter(appendingTo: out, archiveName: "archive")
            switch o.kind {
            case "bytesio": try w.writeHeader(pickle: PickleWriter.list(.bytesIO(o.bytes ?? [])))
            case "tensor":
                let b = o.bytes ?? []
                try w.writeHeader(pickle: PickleWriter.list(.tensor(dtype: .uint8, shape: [b.count], storageKey: "0")))
                try w.add("data/0", b)
            default: try w.writeHeader(pickle: PickleWriter.list(.none))
            }
            out = try w.finish()
            byteItems.append((fqn, DCPItem(path: fileName, offset: start, count: out.position - start)))
        }
        try out.close()
        let meta = DCPMetadataWriter.pickle(tensors: order.map { entries[$0]! }, bytes: byteItems)
        var m = try OutputFile(creating: dir + "/.metadata")
        try m.write(meta)
        try m.close()
    }
}
