import Foundation
import Platform

/// What a checkpoint from outside NeMo (a Hugging Face folder) gives a NeMo conversion: the
/// `model_config.yaml` text and the artifacts to write next to the weights.
public struct ForeignSource: Sendable {
    /// The NeMo config (the one Tessera stored with an export, else made from `config.json`).
    public var configYAML: String
    /// Artifacts: the name to write in a NeMo folder and the file inside the container.
    public var artifacts: [(name: String, path: String)]
}

/// Reads a transformers Nemotron folder (`config.json`, safetensors files, optionally
/// `model.safetensors.index.json`): every safetensors file mapped in place, QKV fused back
/// into NeMo's grouped order as pieces pointing into `q_proj`, `k_proj` and `v_proj`.
public enum HFReader {
    /// The NeMo config Tessera stores in its exports, returned unchanged by a conversion back.
    public static let nemoConfigFile = "nemo_model_config.yaml"

    /// True when the container looks like a Hugging Face model folder.
    public static func detect(_ c: any Container) -> Bool {
        c.isFile("config.json") && (c.isFile("model.safetensors") || c.isFile("model.safetensors.index.json"))
    }

    /// The catalogue of the HF folder `c` (TP=1/PP=1, canonical names): the reward head's bias
    /// from ``HFNames/scoreBiasFile`` when present; without `lm_head` (a classification-only
    /// save) the model has no output layer.
    /// The sizes `config.json` states that transformers checks against the weights when it
    /// loads them: `vocab_size` against the embedding's rows, and the labels (`num_labels`, else
    /// `id2label`'s count) against the score layer's rows when there is one.
    static func checkSizes(_ json: [String: Any], vocabRows: Int?, labels: Int?, file: String) throws(TesseraError) {
        if let rows = vocabRows, let stated = (json["vocab_size"] as? NSNumber)?.intValue, stated != rows {
            throw TesseraError(.inconsistent, "vocab_size is \(stated), but the embedding has \(rows) rows", file: file,
                               tensor: "model.embed_tokens.weight")
        }
        let stated = (json["num_labels"] as? NSNumber)?.intValue ?? (json["id2label"] as? [String: Any])?.count
        if let labels, let stated, stated != labels {
            throw TesseraError(.inconsistent, "states \(stated) labels (num_labels or id2label), but the score layer has \(labels) rows",
                               file: file, tensor: "score.weight")
        }
    }

    public static func read(_ c: any Container, cache: MappingCache) throws(TesseraError) -> Catalogue {
        let json = try object(c, "config.json")
        let files = try weightFiles(c)
        var headers: [String: (path: String, header: SafetensorsHeader)] = [:]
        for f in Set(files.values) {
            let s = try c.slice(f)
            guard s.offset == 0 else { throw TesseraError(.unsupported, "safetensors files must be plain files", file: c.describe(f)) }
            headers[f] = (s.path, try SafetensorsHeader.read(path: s.path))
        }
        if c.isFile(HFNames.scoreBiasFile) {
            let s = try c.slice(HFNames.scoreBiasFile)
            headers[HFNames.scoreBiasFile] = (s.path, try SafetensorsHeader.read(path: s.path))
        }
        let located = try locate(headers, index: files, container: c)
        let labels = located["score.weight"]?.entry.shape.first
        let yamlFromJSON = try HFConfig.yaml(json, rewardOutputs: labels, tokenizer: c.isFile("tokenizer.model"), file: c.describe("config.json"))
        var yaml = yamlFromJSON
        if c.isFile(nemoConfigFile) { yaml = String(decoding: try c.read(nemoConfigFile), as: UTF8.self) }
        var config = try ModelConfig(yaml: yaml, file: c.describe(c.isFile(nemoConfigFile) ? nemoConfigFile : "config.json"))
        let fromJSON = try ModelConfig(yaml: yamlFromJSON, file: c.describe("config.json"))
        try checkAgree(config, fromJSON, file: c.describe(nemoConfigFile))
        try HFNames.checkSupported(config, file: c.describe("config.json"))
        var builder = CatalogueBuilder()
        var used: Set<String> = []
        for name in HFNames.canonicalNames(config, rewardHead: labels != nil) {
            // A bias-free score layer, or a classification-only save without lm_head: reported by verify, not fatal.
            if name == "rm_head.bias", located[HFNames.scoreBias] == nil { continue }
            if name == "output_layer.weight", located["lm_head.weight"] == nil, labels != nil { continue }
            guard let rows = try globalRows(name, config: config, located: located) else {
                throw TesseraError(.missing, "the tensor is missing from every safetensors file", file: c.displayPath,
                                   tensor: HFNames.parts(of: name, rows: 1, config: config)?.first?.name ?? name)
            }
            for part in HFNames.parts(of: name, rows: rows, config: config) ?? [] {
                guard let at = located[part.name] else {
                    throw TesseraError(.missing, "the tensor is missing from every safetensors file", file: c.displayPath, tensor: part.name)
                }
                used.insert(part.name)
                try addPieces(part, of: name, globalRows: rows, at: at, to: &builder)
            }
        }
        let ignored: Set<String> = ["lm_head.weight"]
        if let extra = located.keys.sorted().first(where: { !used.contains($0) && !ignored.contains($0) && !$0.hasSuffix("rotary_emb.inv_freq") }) {
            throw TesseraError(.unsupported, "Tessera does not know where this tensor belongs in a Nemotron model",
                               file: located[extra]!.path, tensor: extra)
        }
        let tensors = try builder.finish()
        if let emb = tensors.first(where: { $0.name == "embedding.word_embeddings.weight" }) { config.paddedVocabSize = emb.shape[0] }
        try checkSizes(json, vocabRows: config.paddedVocabSize, labels: labels, file: c.describe("config.json"))
        var artifacts: [(String, String)] = []
        if c.isFile("tokenizer.model") {
            artifacts.append((config.tokenizerModel ?? "tokenizer.model", "tokenizer.model"))
            config.tokenizerModel = "tokenizer.model"
        } else {
            config.tokenizerModel = nil
        }
        var cat = Catalogue(format: .hf, tp: 1, pp: 1, config: config, tensors: tensors, objects: [], spelling: nil,
                            container: c, weightsPath: "")
        cat.foreign = ForeignSource(configYAML: yaml, artifacts: artifacts)
        return cat
    }

    /// Where each tensor lies; a name in two files, or not in the file the index names, is refused.
    static func locate(_ headers: [String: (path: String, header: SafetensorsHeader)], index: [String: String],
                       container c: any Container) throws(TesseraError) -> [String: (path: String, dataStart: Int, entry: SafetensorsEntry)] {
        var located: [String: (path: String, dataStart: Int, entry: SafetensorsEntry)] = [:]
        for (file, h) in headers.sorted(by: { $0.key < $1.key }) {
            for e in h.header.entries {
                if let other = located[e.name] {
                    throw TesseraError(.inconsistent, "the tensor is also in \(other.path)", file: h.path, tensor: e.name)
                }
                if let named = index[e.name], named != file {
                    throw TesseraError(.inconsistent, "model.safetensors.index.json places it in \(named)", file: h.path, tensor: e.name)
                }
                located[e.name] = (h.path, h.header.dataStart, e)
            }
        }
        for (name, file) in index where name != "*" && located[name] == nil {
            throw TesseraError(.missing, "model.safetensors.index.json places it in \(file), which does not hold it",
                               file: c.describe(file), tensor: name)
        }
        return located
    }

    /// The safetensors file of every weight: the index's `weight_map`, else `model.safetensors`.
    static func weightFiles(_ c: any Container) throws(TesseraError) -> [String: String] {
        guard c.isFile("model.safetensors.index.json") else { return ["*": "model.safetensors"] }
        let index = try object(c, "model.safetensors.index.json")
        guard let map = index["weight_map"] as? [String: String] else {
            throw TesseraError(.corrupt, "no weight_map of tensor names to file names", file: c.describe("model.safetensors.index.json"))
        }
        for f in Set(map.values) where f.contains("/") || !c.isFile(f) {
            throw TesseraError(.missing, "the index names '\(f)', which is not a file of the folder",
                               file: c.describe("model.safetensors.index.json"))
        }
        return map
    }

    /// A small JSON object file of the folder.
    static func object(_ c: any Container, _ name: String) throws(TesseraError) -> [String: Any] {
        let s = try c.slice(name)
        guard s.count <= 64 << 20 else { throw TesseraError(.corrupt, "\(s.count) bytes is too large for a JSON config", file: c.describe(name)) }
        guard let j = try? JSONSerialization.jsonObject(with: Data(try c.read(name))) as? [String: Any] else {
            throw TesseraError(.corrupt, "not a JSON object", file: c.describe(name))
        }
        return j
    }

    /// The stored NeMo config must describe the same architecture as `config.json`.
    static func checkAgree(_ a: ModelConfig, _ b: ModelConfig, file: String) throws(TesseraError) {
        let pairs: [(String, Int, Int)] = [("num_layers", a.numLayers, b.numLayers), ("hidden_size", a.hiddenSize, b.hiddenSize),
                                           ("ffn_hidden_size", a.ffnHiddenSize, b.ffnHiddenSize),
                                           ("num_attention_heads", a.numAttentionHeads, b.numAttentionHeads),
                                           ("num_query_groups", a.numQueryGroups, b.numQueryGroups), ("kv_channels", a.kvChannels, b.kvChannels)]
        for (k, x, y) in pairs where x != y {
            throw TesseraError(.inconsistent, "\(k) is \(x) here but \(y) in config.json", file: file)
        }
    }

    /// Rows of the global tensor `name`: QKV's from the config, others from the HF tensor.
    static func globalRows(_ name: String, config c: ModelConfig,
                           located: [String: (path: String, dataStart: Int, entry: SafetensorsEntry)]) throws(TesseraError) -> Int? {
        if name.hasSuffix("linear_qkv.weight") || name.hasSuffix("linear_qkv.bias") {
            return (c.numAttentionHeads + 2 * c.numQueryGroups) * c.kvChannels
        }
        guard let hf = HFNames.parts(of: name, rows: 1, config: c)?.first?.name, let at = located[hf] else { return nil }
        return at.entry.shape.first ?? 1
    }

    /// Pieces of global tensor `name` pointing into the HF tensor of `part`, one per row block.
    static func addPieces(_ part: HFNames.Part, of name: String, globalRows: Int,
                          at: (path: String, dataStart: Int, entry: SafetensorsEntry), to builder: inout CatalogueBuilder) throws(TesseraError) {
        let e = at.entry
        guard let first = e.shape.first, first == part.rowCount else {
            throw TesseraError(.inconsistent, "has shape \(e.shape); the config implies \(part.rowCount) rows", file: at.path, tensor: e.name)
        }
        let rest = Array(e.shape.dropFirst())
        let rowElements = rest.reduce(1, *)
        var strides = [rowElements]
        for d in rest.indices { strides.append(rest[(d + 1)...].reduce(1, *)) }
        let storage = FileSlice(path: at.path, offset: at.dataStart + e.range.lowerBound, count: e.range.count)
        var hfRow = 0
        for r in part.rows {
            let piece = Piece(storage: storage, dtype: e.dtype, storageOffset: hfRow * rowElements, strides: strides,
                              shape: [r.count] + rest, globalOffset: [r.lowerBound] + rest.map { _ in 0 }, origin: "\(at.path):\(e.name)")
            try builder.add(name: name, dtype: e.dtype, globalShape: [globalRows] + rest, piece: piece)
            hfRow += r.count
        }
    }
}
