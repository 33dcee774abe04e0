import Checkpoints
import Foundation
import Platform
import Tokenizer

/// Writes a Hugging Face folder for transformers' `Nemotron*` classes: `config.json`,
/// safetensors shards of at most `shardSize` bytes with `model.safetensors.index.json`,
/// the reward head's bias in ``HFNames/scoreBiasFile``, the tokenizer, and the NeMo config.
struct HFWriter {
    let plan: ConversionPlan
    let streamer: TensorStreamer
    let shardSize: Int
    let progress: @Sendable (Int) -> Void

    /// One HF tensor: rows of a target tensor.
    struct Entry {
        var name: String
        var tensor: TargetTensor
        var boxes: [Box]
        var shape: [Int]
        var bytes: Int { shape.reduce(tensor.dtype.size, *) }
    }

    /// Every HF tensor in canonical order, the score bias apart.
    func entries() throws(TesseraError) -> (weights: [Entry], bias: Entry?) {
        var out: [Entry] = [], bias: Entry?
        for t in plan.tensors {
            guard let parts = HFNames.parts(of: t.name, rows: t.shape.first ?? 1, config: plan.config) else {
                throw TesseraError(.unsupported, "transformers' Nemotron has no place for this tensor", tensor: t.name)
            }
            let rest = Array(t.shape.dropFirst())
            for p in parts {
                let boxes = p.rows.map { Box(offset: [$0.lowerBound] + rest.map { _ in 0 }, shape: [$0.count] + rest) }
                let e = Entry(name: p.name, tensor: t, boxes: boxes, shape: [p.rowCount] + rest)
                if p.name == HFNames.scoreBias { bias = e } else { out.append(e) }
            }
        }
        return (out, bias)
    }

    /// Consecutive entries grouped into shards of at most `shardSize` bytes (a larger tensor alone).
    static func shards(_ entries: [Entry], limit: Int) -> [[Entry]] {
        var out: [[Entry]] = [[]]
        var size = 0
        for e in entries {
            if size + e.bytes > limit, !out[out.count - 1].isEmpty { out.append([]); size = 0 }
            out[out.count - 1].append(e)
            size += e.bytes
        }
        return out
    }

    func write(into folder: String, configYAML: String, tokenizer: [UInt8]?) throws(TesseraError) {
        try HFNames.checkSupported(plan.config, file: plan.source.container.displayPath)
        let (weights, bias) = try entries()
        let groups = Self.shards(weights, limit: shardSize)
        let names = groups.indices.map { "model-\(pad($0 + 1, 5))-of-\(pad(groups.count, 5)).safetensors" }
        let readAhead = ReadAheadWindow(streamer: streamer, regions: weights.flatMap { e in e.boxes.map { (e.tensor.source, $0) } })
        let closes = DeferredCloses()
        for (name, group) in zip(names, groups) {
            try writeFile(folder + "/" + name, group, readAhead: readAhead, closes: closes)
        }
        var biasValues: [Float]?
        if let bias {
            try writeFile(folder + "/" + HFNames.scoreBiasFile, [bias], readAhead: nil, closes: closes)
            biasValues = try values(bias)
        }
        try closes.wait()
        var map: [String] = []
        for (name, group) in zip(names, groups) { map += group.map { "    \(JSONText.string($0.name)): \(JSONText.string(name))" } }
        let index = "{\n  \"metadata\": {\"total_size\": \(weights.reduce(0) { $0 + $1.bytes })},\n  \"weight_map\": {\n"
            + map.joined(separator: ",\n") + "\n  }\n}\n"
        try save(index, folder + "/model.safetensors.index.json")
        var ids = HFConfig.TokenIDs(bos: nil, eos: nil, pad: nil)
        if let tokenizer {
            try save(tokenizer, folder + "/tokenizer.model")
            let model = try SentencePieceModel(bytes: tokenizer, file: "tokenizer.model")
            let special = HFTokenizer.specialIDs(model)
            ids = HFConfig.TokenIDs(bos: special.bos, eos: special.eos, pad: special.pad)
            if let files = HFTokenizer.files(model) {
                try save(files.tokenizer, folder + "/tokenizer.json")
                try save(files.config, folder + "/tokenizer_config.json")
            }
        }
        let embedding = plan.tensors.first { $0.name == "embedding.word_embeddings.weight" }
        let config = HFConfig.json(plan.config, vocabRows: embedding?.shape[0] ?? 0, dtype: embedding?.dtype ?? .bfloat16,
                                   labels: plan.tensors.first { $0.name == "rm_head.weight" }?.shape[0],
                                   bias: biasValues, tokens: ids)
        try save(config, folder + "/config.json")
        try save(configYAML, folder + "/" + HFReader.nemoConfigFile)
    }

    /// One safetensors file: the header, then each tensor's bytes streamed from the source.
    private func writeFile(_ path: String, _ group: [Entry], readAhead: ReadAheadWindow?, closes: DeferredCloses) throws(TesseraError) {
        var out = try OutputFile(creating: path)
        let meta = ["format": "pt"]
        try out.write(SafetensorsHeader.encode(group.map { ($0.name, $0.tensor.dtype, $0.shape) }, metadata: meta))
        for e in group {
            for box in e.boxes {
                readAhead?.advance()
                try streamer.forEachRun(of: e.tensor.source, region: box) { (run) throws(TesseraError) in
                    try out.write(run)
                    progress(run.count)
                }
            }
        }
        try out.close(deferringTo: closes)
    }

    /// The elements of a small floating-point tensor.
    private func values(_ e: Entry) throws(TesseraError) -> [Float] {
        var bytes: [UInt8] = []
        for box in e.boxes {
            try streamer.forEachRun(of: e.tensor.source, region: box) { (run) throws(TesseraError) in bytes += run }
        }
        return try withBytes(bytes) { (b) throws(TesseraError) -> [Float] in
            switch e.tensor.dtype {
            case .float32: return (0..<b.count / 4).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            case .bfloat16: return (0..<b.count / 2).map { Float(bitPattern: UInt32(b.le(UInt16.self, at: 2 * $0)) << 16) }
            case .float16: return (0..<b.count / 2).map { Float(Float16(bitPattern: b.le(UInt16.self, at: 2 * $0))) }
            default: throw TesseraError(.unsupported, "the reward head's bias is \(e.tensor.dtype.rawValue), not floating point", tensor: e.tensor.name)
            }
        }
    }

    private func save(_ text: String, _ path: String) throws(TesseraError) { try save(Array(text.utf8), path) }

    private func save(_ bytes: [UInt8], _ path: String) throws(TesseraError) {
        var out = try OutputFile(creating: path)
        try out.write(bytes)
        try out.close()
    }
}
