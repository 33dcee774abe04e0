import Platform

/// The Hugging Face (transformers `Nemotron*`) names of NeMo's tensors: one table, read by the
/// HF reader to assemble global tensors and by the HF writer to cut them.
public enum HFNames {
    /// One HF tensor: rows of a canonical global tensor, stacked in order.
    public struct Part: Sendable, Equatable {
        public var name: String
        /// Row ranges of the global tensor (dimension 0), stacked to make the HF tensor.
        public var rows: [Range<Int>]
        /// Rows of the HF tensor.
        public var rowCount: Int { rows.reduce(0) { $0 + $1.count } }
    }

    /// The file holding the reward head's bias, which `NemotronForSequenceClassification`'s
    /// bias-free `score` layer has no place for.
    public static let scoreBiasFile = "score_bias.safetensors"
    /// The HF name of the reward head's bias inside ``scoreBiasFile``.
    public static let scoreBias = "score.bias"

    static let layerNames: [String: String] = [
        "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
        "self_attention.linear_qkv.layer_norm_bias": "input_layernorm.bias",
        "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
        "self_attention.linear_proj.bias": "self_attn.o_proj.bias",
        "mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
        "mlp.linear_fc1.layer_norm_bias": "post_attention_layernorm.bias",
        "mlp.linear_fc1.weight": "mlp.up_proj.weight",
        "mlp.linear_fc1.bias": "mlp.up_proj.bias",
        "mlp.linear_fc2.weight": "mlp.down_proj.weight",
        "mlp.linear_fc2.bias": "mlp.down_proj.bias",
    ]

    static let topNames: [String: String] = [
        "embedding.word_embeddings.weight": "model.embed_tokens.weight",
        "decoder.final_layernorm.weight": "model.norm.weight",
        "decoder.final_layernorm.bias": "model.norm.bias",
        "output_layer.weight": "lm_head.weight",
        "rm_head.weight": "score.weight",
        "rm_head.bias": scoreBias,
    ]

    /// The HF tensors that canonical tensor `name` of `rows` rows becomes, or nil when HF's
    /// Nemotron has no place for it. QKV (NeMo's order: per query group, its query heads,
    /// then one key head, then one value head) is split into `q_proj`, `k_proj`, `v_proj`.
    public static func parts(of name: String, rows: Int, config c: ModelConfig) -> [Part]? {
        if let hf = topNames[name] { return [Part(name: hf, rows: [0..<rows])] }
        guard let (layer, suffix) = CanonicalName.layerParts(name) else { return nil }
        let prefix = "model.layers.\(layer)."
        if let hf = layerNames[suffix] { return [Part(name: prefix + hf, rows: [0..<rows])] }
        guard suffix.hasPrefix("self_attention.linear_qkv."), let kind = suffix.split(separator: ".").last else { return nil }
        let g = c.numQueryGroups, kv = c.kvChannels, perGroup = c.numAttentionHeads / max(g, 1)
        let block = (perGroup + 2) * kv
        func blocks(_ start: Int, _ count: Int) -> [Range<Int>] { (0..<g).map { $0 * block + start ..< $0 * block + start + count } }
        return [Part(name: prefix + "self_attn.q_proj.\(kind)", rows: blocks(0, perGroup * kv)),
                Part(name: prefix + "self_attn.k_proj.\(kind)", rows: blocks(perGroup * kv, kv)),
                Part(name: prefix + "self_attn.v_proj.\(kind)", rows: blocks((perGroup + 1) * kv, kv))]
    }

    /// Every canonical tensor name of a model with this config (reward head included when
    /// `rewardHead`), in canonical order, for reading an HF folder.
    public static func canonicalNames(_ c: ModelConfig, rewardHead: Bool) -> [String] {
        var names = ["embedding.word_embeddings.weight"]
        for l in 0..<c.numLayers {
            let p = "decoder.layers.\(l)."
            names += ["self_attention.linear_qkv.layer_norm_weight", "self_attention.linear_qkv.layer_norm_bias",
                      "self_attention.linear_qkv.weight"].map { p + $0 }
            if c.bias { names += [p + "self_attention.linear_qkv.bias"] }
            names += [p + "self_attention.linear_proj.weight"] + (c.bias ? [p + "self_attention.linear_proj.bias"] : [])
            names += ["mlp.linear_fc1.layer_norm_weight", "mlp.linear_fc1.layer_norm_bias", "mlp.linear_fc1.weight"].map { p + $0 }
            if c.bias { names += [p + "mlp.linear_fc1.bias"] }
            names += [p + "mlp.linear_fc2.weight"] + (c.bias ? [p + "mlp.linear_fc2.bias"] : [])
        }
        names += ["decoder.final_layernorm.weight", "decoder.final_layernorm.bias"]
        if !c.shareEmbeddingsAndOutputWeights { names.append("output_layer.weight") }
        if rewardHead { names += ["rm_head.weight", "rm_head.bias"] }
        return names
    }

    /// Refuses a model HF's Nemotron classes cannot express.
    public static func checkSupported(_ c: ModelConfig, file: String) throws(TesseraError) {
        var problems: [String] = []
        if c.gatedLinearUnit { problems.append("gated activation '\(c.activation)' (Nemotron has a single up_proj)") }
        if c.normalization != "layernorm1p" && !(c.normalization == "layernorm" && c.layernormZeroCenteredGamma) {
            problems.append("normalization '\(c.normalization)' (Nemotron uses LayerNorm1P)")
        }
        if c.positionEmbeddingType != "rope" { problems.append("position embedding '\(c.positionEmbeddingType)' (Nemotron uses RoPE)") }
        if !["squared-relu", "relu2"].contains(c.activation) { problems.append("activation '\(c.activation)' (Nemotron uses relu2)") }
        if !c.unrunSettings.isEmpty { problems.append(c.unrunSettings.joined(separator: ", ")) }
        guard problems.isEmpty else {
            throw TesseraError(.unsupported, "transformers' Nemotron cannot express: " + problems.joined(separator: "; "), file: file)
        }
    }
}
