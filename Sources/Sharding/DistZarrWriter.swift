import Checkpoints
import Foundation
import Platform
import TorchFormat

/// Writes a megatron-core distributed checkpoint with the zarr backend: one zarr v2 array
/// per (layer-stacked) key, uncompressed chunks equal to the target shards, `bfloat16`
/// dtype string, and TransformerEngine `_extra_state` as ShardedObject files.
struct DistZarrWriter {
    let plan: ConversionPlan
    let streamer: TensorStreamer
    let progress: @Sendable (Int) -> Void

    /// The dist-ckpt key of a canonical name and the layer it stacks into (nil when not stacked).
    static func key(_ name: String) -> (key: String, layer: Int?) {
        if let (l, suffix) = CanonicalName.layerParts(name) { return ("model.decoder.layers." + suffix, l) }
        return ("model." + name, nil)
    }

    /// The distinct boxes (one per chunk) that target ranks hold of a tensor.
    static func chunks(_ t: TargetTensor, tp: Int) throws(TesseraError) -> (chunk: [Int], boxes: [Box]) {
        var boxes: [Box] = []
        var seen = Set<[Int]>()
        var chunk: [Int] = []
        for r in 0..<tp {
            for part in try t.rule.parts(global: t.shape, tp: tp, rank: r) {
                if chunk.isEmpty { chunk = part.shape }
                if seen.insert(part.globalOffset).inserted { boxes.append(Box(offset: part.globalOffset, shape: part.shape)) }
            }
        }
        boxes.sort { $0.offset.lexicographicallyPrecedes($1.offset) }
        return (chunk, boxes)
    }

    /// Every tensor's chunk grid, in plan order, and a read-ahead window over their boxes in
    /// the order the distributed writers stream them.
    static func grids(_ plan: ConversionPlan, streamer: TensorStreamer) throws(TesseraError)
        -> (grids: [(chunk: [Int], boxes: [Box])], readAhead: ReadAheadWindow) {
        var grids: [(chunk: [Int], boxes: [Box])] = []
        for t in plan.tensors { grids.append(try chunks(t, tp: plan.layout.tp)) }
        let regions = zip(plan.tensors, grids).flatMap { t, g in g.boxes.map { (t.source, $0) } }
        return (grids, ReadAheadWindow(streamer: streamer, regions: regions))
    }

    func write(into root: String) throws(TesseraError) {
        let dir = root + "/model_weights"
        try Folder.create(dir)
        try writeText(#"{"sharded_backend": "zarr", "sharded_backend_version": 1, "common_backend": "torch", "common_backend_version": 1}"#,
                      to: dir + "/metadata.json")
        try writeCommon(dir)
        let layers = plan.config.numLayers
        var written = Set<String>()
        let (grids, readAhead) = try Self.grids(plan, streamer: streamer)
        let closes = DeferredCloses()
        for (t, (chunk, boxes)) in zip(plan.tensors, grids) {
            let (key, layer) = Self.key(t.name)
            let arrayDir = dir + "/" + key
            if written.insert(key).inserted {
                try Folder.create(arrayDir)
                let shape = layer == nil ? t.shape : [layers] + t.shape
                let chunks = layer == nil ? chunk : [1] + chunk
                try writeText(Self.zarray(shape: shape, chunks: chunks, dtype: t.dtype), to: arrayDir + "/.zarray")
            }
            for box in boxes {
                var index = zip(box.offset, chunk).map { $0 / $1 }
                if let layer { index.insert(layer, at: 0) }
                var out = try OutputFile(creating: arrayDir + "/" + index.map(String.init).joined(separator: "."))
                readAhead.advance()
                try streamer.forEachRun(of: t.source, region: box) { (run) throws(TesseraError) in
                    try out.write(run)
                    progress(run.count)
                }
                try out.close(deferringTo: closes)
            }
        }
        try closes.wait()
        try writeObjects(dir, layers: layers)
    }

    /// `common.pt`: the source's, when it was a distributed checkpoint; else an empty dict.
    func writeCommon(_ dir: String) throws(TesseraError) {
        let c = plan.source.container
        let src = c.join(plan.source.weightsPath, "common.pt")
        if plan.source.format == .distZarr || plan.source.format == .distTorch, c.isFile(src) {
            var out = try OutputFile(creating: dir + "/common.pt")
            let s = try c.slice(src)
            try out.write(try streamer.cache.file(s.path).bytes(offset: s.offset, count: s.count))
            try out.close()
            return
        }
        var w = try TorchSaveWriter(path: dir + "/common.pt", archiveName: "common")
        try w.writeHeader(pickle: [0x80, 0x02, 0x7D, 0x2E])
        try w.finish().close()
    }

    /// One `torch.save(obj)` file per `_extra_state`, at `<key>/shard_<layer>_<layers>.pt`.
    private func writeObjects(_ dir: String, layers: Int) throws(TesseraError) {
        for object in plan.source.objects {
            let o = plan.source.format == .distZarr ? object : try object.resolved(cache: streamer.cache)
            let (key, layer) = Self.key(o.name)
            // NeMo drops attention FP8 state and the reward head's extra state from dist checkpoints.
            if o.name.contains("core_attention") || o.name.hasPrefix("rm_head") || o.name.hasPrefix("output_layer") { continue }
            let objDir = dir + "/" + key
            try Folder.create(objDir)
            let file = objDir + "/" + (layer.map { "shard_\($0)_\(layers).pt" } ?? "shard_0_1.pt")
            if o.kind == "sharded-object", let bytes = o.bytes, plan.source.format == .distZarr {
                var out = try OutputFile(creating: file)
                try out.write(bytes)
                try out.close()
                continue
            }
            var w = try TorchSaveWriter(path: file, archiveName: "archive")
            switch o.kind {
            case "bytesio":
                try w.writeHeader(pickle: PickleWriter.single(.bytesIO(o.bytes ?? [])))
            case "tensor":
                let b = o.bytes ?? []
                try w.writeHeader(pickle: PickleWriter.single(.tensor(dtype: .uint8, shape: [b.count], storageKey: "0")))
                try w.add("data/0", b)
            default:
                try w.writeHeader(pickle: PickleWriter.single(.none))
            }
            try w.finish().close()
        }
    }

    /// `.zarray` as zarr 2.x writes it (indent 4, sorted keys) with megatron's `bfloat16` dtype.
    static func zarray(shape: [Int], chunks: [Int], dtype: DType) -> String {
        func list(_ v: [Int]) -> String { "[\n" + v.map { "        \($0)" }.joined(separator: ",\n") + "\n    ]" }
        let dt: String = switch dtype {
        case .bfloat16: "bfloat16"
        case .float16: "<f2"
        case .float32: "<f4"
        case .float64: "<f8"
        case .int64: "<i8"
        case .int32: "<i4"
        case .int16: "<i2"
        case .int8: "|i1"
        case .uint8: "|u1"
        case .bool: "|b1"
        }
        return """
        {
            "chunks": \(list(chunks)),
            "compressor": null,
            "dtype": "\(dt)",
            "fill_value": null,
            "filters": null,
            "order": "C",
            "shape": \(list(shape)),
            "zarr_format": 2
        }
        """
    }
}

func writeText(_ text: String, to path: String) throws(TesseraError) {
    var out = try OutputFile(creating: path)
    try out.write(Array(text.utf8))
    try out.close()
}
