import Platform

/// What a model config implies for one tensor: its whole shape, or (for the tables whose rows
/// are a padded vocabulary) only its number of columns, and the config keys behind it in words.
struct ShapeExpectation {
    var shape: [Int]?
    var columns: Int?
    var reason: String
}

extension ModelConfig {
    /// The expectation for the canonical tensor `name`, or nil for a name the config says
    /// nothing about.
    func expectation(for name: String) -> ShapeExpectation? {
        let h = hiddenSize, d = kvChannels, hidden = "hidden_size \(hiddenSize)"
        func exactly(_ shape: [Int], _ reason: String) -> ShapeExpectation { ShapeExpectation(shape: shape, columns: nil, reason: reason) }
        if let (_, suffix) = CanonicalName.layerParts(name) {
            let qkvRows = (numAttentionHeads + 2 * numQueryGroups) * d, fc1Rows = ffnHiddenSize * (gatedLinearUnit ? 2 : 1)
            let qkv = "(num_attention_heads \(numAttentionHeads) + 2 x num_query_groups \(numQueryGroups)) x kv_channels \(d) rows"
            let fc1 = "ffn_hidden_size \(ffnHiddenSize)\(gatedLinearUnit ? " x 2 (activation \(activation) is gated)" : "") rows"
            switch suffix {
            case "self_attention.linear_qkv.weight": return exactly([qkvRows, h], qkv + ", " + hidden)
            case "self_attention.linear_qkv.bias": return exactly([qkvRows], qkv)
            case "self_attention.linear_proj.weight":
                return exactly([h, numAttentionHeads * d], "num_attention_heads \(numAttentionHeads) x kv_channels \(d) columns, " + hidden)
            case "self_attention.q_layernorm.weight", "self_attention.q_layernorm.bias",
                 "self_attention.k_layernorm.weight", "self_attention.k_layernorm.bias": return exactly([d], "kv_channels \(d)")
            case "mlp.linear_fc1.weight": return exactly([fc1Rows, h], fc1 + ", " + hidden)
            case "mlp.linear_fc1.bias": return exactly([fc1Rows], fc1)
            case "mlp.linear_fc2.weight": return exactly([h, ffnHiddenSize], "ffn_hidden_size \(ffnHiddenSize) columns, " + hidden)
            case "self_attention.linear_qkv.layer_norm_weight", "self_attention.linear_qkv.layer_norm_bias",
                 "self_attention.linear_proj.bias", "mlp.linear_fc1.layer_norm_weight", "mlp.linear_fc1.layer_norm_bias",
                 "mlp.linear_fc2.bias": return exactly([h], hidden)
            default: return nil
            }
        }
        // NeMo-Aligner builds the reward head with regression.num_attributes outputs.
        func head(_ n: Int) -> String { "regression.num_attributes \(n) rows" }
        switch name {
        case "decoder.final_layernorm.weight", "decoder.final_layernorm.bias": return exactly([h], hidden)
        case "embedding.word_embeddings.weight", "embedding.position_embeddings.weight", "output_layer.weight":
            return ShapeExpectation(shape: nil, columns: h, reason: hidden)
        case "rm_head.weight":
            return rewardOutputs.map { exactly([$0, h], head($0) + ", " + hidden) } ?? ShapeExpectation(shape: nil, columns: h, reason: hidden)
        case "rm_head.bias": return rewardOutputs.map { exactly([$0], head($0)) }
        default: return nil
        }
    }
}

extension Catalogue {
    /// Refuses a checkpoint whose tensors do not have the shapes its model config implies (a
    /// config edited or taken from another model): every reader, converter and the engine would
    /// otherwise split or run the tensors by the wrong sizes. Names the tensor, both shapes and
    /// the config keys behind the expectation.
    public func checkShapesAgainstConfig() throws(TesseraError) {
        guard let config else { return }
        for t in tensors {
            guard let expected = config.expectation(for: t.name) else { continue }
            let want: String
            if let shape = expected.shape {
                guard shape != t.shape else { continue }
                want = "\(shape)"
            } else if let columns = expected.columns {
                guard t.shape.count != 2 || t.shape[1] != columns else { continue }
                want = "[rows, \(columns)]"
            } else {
                continue
            }
            // The file the config came from: NeMo's YAML, a Hugging Face config.json, else the
            // checkpoint itself (an HDF5 store's attribute, a model_weights/ folder's parent).
            let source = ["model_config.yaml", "config.json"].first(where: container.isFile).map(container.describe) ?? container.displayPath
            throw TesseraError(.inconsistent, "has shape \(t.shape), but the model config implies \(want) (\(expected.reason))",
                               file: source, tensor: t.name)
        }
    }
}
