import Checkpoints
import Foundation
import Platform
import TorchFormat

/// Writes legacy per-rank `torch.save` files, as NeMo names and megatron-core fills them.
struct LegacyWriter {
    let plan: ConversionPlan
    let streamer: TensorStreamer
    let progress: @Sendable (Int) -> Void

    /// The rank folder (relative) of rank (`tp`, `pp`); "" for a TP1/PP1 checkpoint.
    static func rankFolder(tp: Int, pp: Int, layout: TargetLayout) -> String {
        if layout.tp * layout.pp == 1 { return "" }
        if layout.pp == 1 { return "mp_rank_" + pad(tp, 2) }
        return "tp_rank_" + pad(tp, 2) + "_pp_rank_" + pad(pp, 3)
    }

    func write(into root: String) throws(TesseraError) {
        let ranks = (0..<plan.layout.pp).flatMap { p in (0..<plan.layout.tp).map { t in (t, p) } }
        var regions: [(GlobalTensor, Box)] = []
        for (t, p) in ranks {
            for lt in try plan.rankTensors(tp: t, pp: p) { regions += lt.parts.map { (lt.tensor.source, $0) } }
        }
        let readAhead = ReadAheadWindow(streamer: streamer, regions: regions)
        let closes = DeferredCloses()
        for (t, p) in ranks {
            let folder = Self.rankFolder(tp: t, pp: p, layout: plan.layout)
            let dir = folder.isEmpty ? root : root + "/" + folder
            try Folder.create(dir)
            try writeRank(tp: t, pp: p, path: dir + "/model_weights.ckpt", readAhead: readAhead, closes: closes)
        }
        try closes.wait()
    }

    private enum Storage { case tensor(LocalTensor), bytes([UInt8]) }

    private func writeRank(tp: Int, pp: Int, path: String, readAhead: ReadAheadWindow, closes: DeferredCloses) throws(TesseraError) {
        let tensors = try plan.rankTensors(tp: tp, pp: pp)
        var entries: [(String, StateValue)] = []
        var storages: [Storage] = []
        for lt in tensors {
            entries.append((lt.key, .tensor(dtype: lt.tensor.dtype, shape: lt.localShape, storageKey: String(storages.count))))
            storages.append(.tensor(lt))
        }
        // _extra_state objects of this stage, each after the last tensor of its module.
        for object in plan.source.objects {
            let o = try object.resolved(cache: streamer.cache)
            guard let placement = Self.placement(of: o.module), plan.stage(of: placement) == pp else { continue }
            let key = "model." + plan.legacyName(o.name, pp: pp)
            let value: StateValue
            switch o.kind {
            case "bytesio": value = .bytesIO(o.bytes ?? [])
            case "tensor":
                let b = o.bytes ?? []
                value = .tensor(dtype: .uint8, shape: [b.count], storageKey: String(storages.count))
                storages.append(.bytes(b))
            default: value = .none
            }
            let modulePrefix = "model." + plan.legacyName(o.module, pp: pp) + "."
            let at = (entries.lastIndex { $0.0.hasPrefix(modulePrefix) }).map { $0 + 1 } ?? entries.count
            entries.insert((key, value), at: at)
        }
        let modules = Self.modules(of: entries.map(\.0))
        var w = try TorchSaveWriter(path: path, archiveName: "model_weights")
        try w.writeHeader(pickle: PickleWriter.stateDict(entries, modules: modules))
        for (k, s) in storages.enumerated() {
            switch s {
            case .tensor(let lt):
                try w.begin("data/\(k)", size: lt.byteCount)
                for part in lt.parts {
                    readAhead.advance()
                    try streamer.forEachRun(of: lt.tensor.source, region: part) { (run) throws(TesseraError) in
                        try w.append(run)
                        progress(run.count)
                    }
                }
                try w.end()
            case .bytes(let b):
                try w.add("data/\(k)", b)
            }
        }
        try w.finish().close(deferringTo: closes)
    }

    /// Where an object's module lives.
    static func placement(of module: String) -> StagePlacement? {
        if let (l, _) = CanonicalName.layerParts(module + ".x") { return .layer(l) }
        if module.hasPrefix("embedding") { return .first }
        if module.hasPrefix("output_layer") || module.hasPrefix("rm_head") || module.hasPrefix("decoder.final") { return .last }
        return nil
    }

    /// Module paths for the state dict's `_metadata`: "" and every prefix of every key.
    static func modules(of keys: [String]) -> [String] {
        var seen: Set<String> = [""]
        var out = [""]
        for k in keys {
            let parts = k.split(separator: ".")
            var prefix = ""
            for p in parts.dropLast() {
                prefix = prefix.isEmpty ? String(p) : prefix + "." + p
                if seen.insert(prefix).inserted { out.append(prefix) }
            }
        }
        return out
    }
}

func pad(_ i: Int, _ width: Int) -> String {
    let s = String(i)
    return String(repeating: "0", count: max(0, width - s.count)) + s
}
