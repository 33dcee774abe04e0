import Platform

extension ModelConfig {
    /// The global shape the config implies for a decoder layer's tensor (its canonical name
    /// after `decoder.layers.<L>.`), or nil for a name it says nothing about.
    public func expectedShape(layerTensor suffix: String) -> [Int]? {
        let h = hiddenSize, d = kvChannels
        let qkvRows = (numAttentionHeads + 2 * numQueryGroups) * d, fc1Rows = ffnHiddenSize * (gatedLinearUnit ? 2 : 1)
        switch suffix {
        case "self_attention.linear_qkv.weight": return [qkvRows, h]
        case "self_attention.linear_qkv.bias": return [qkvRows]
        case "self_attention.linear_proj.weight": return [h, numAttentionHeads * d]
        case "self_attention.q_layernorm.weight", "self_attention.q_layernorm.bias",
             "self_attention.k_layernorm.weight", "self_attention.k_layernorm.bias": return [d]
        case "mlp.linear_fc1.weight": return [fc1Rows, h]
        case "mlp.linear_fc1.bias": return [fc1Rows]
        case "mlp.linear_fc2.weight": return [h, ffnHiddenSize]
        case "self_attention.linear_qkv.layer_norm_weight", "self_attention.linear_qkv.layer_norm_bias",
             "self_attention.linear_proj.bias", "mlp.linear_fc1.layer_norm_weight", "mlp.linear_fc1.layer_norm_bias",
             "mlp.linear_fc2.bias": return [h]
        default: return nil
        }
    }

    /// What the config implies for a top-level tensor: its whole shape, or (for the tables
    /// whose rows are a padded vocabulary or the reward outputs) only its number of columns.
    public func expectedShape(topLevelTensor name: String) -> (shape: [Int]?, columns: Int?)? {
        switch name {
        case "decoder.final_layernorm.weight", "decoder.final_layernorm.bias": return ([hiddenSize], nil)
        case "embedding.word_embeddings.weight", "embedding.position_embeddings.weight", "output_layer.weight":
            return (nil, hiddenSize)
        // NeMo-Aligner builds the head with regression.num_attributes outputs.
        case "rm_head.weight": return rewardOutputs.map { ([$0, hiddenSize], nil) } ?? (nil, hiddenSize)
        case "rm_head.bias": return rewardOutputs.map { ([$0], nil) }
        default: return nil
        }
    }

    /// The expectation the config's sizes give for `name`, in words for an error message.
    func shapeReason(_ name: String) -> String {
        if name.hasSuffix("linear_qkv.weight") || name.hasSuffix("linear_qkv.bias") {
            return "(num_attention_heads \(numAttentionHeads) + 2 x num_query_groups \(numQueryGroups)) x kv_channels \(kvChannels) rows"
        }
        if name.hasSuffix("linear_fc1.weight") || name.hasSuffix("linear_fc1.bias") {
            return "ffn_hidden_size \(ffnHiddenSize)\(gatedLinearUnit ? " x 2 (activation \(activation) is gated)" : "") rows"
        }
        if name.hasSuffix("linear_proj.weight") { return "num_attention_heads \(numAttentionHeads) x kv_channels \(kvChannels) columns" }
        if name.hasSuffix("linear_fc2.weight") { return "ffn_hidden_size \(ffnHiddenSize) columns" }
        if name.hasPrefix("rm_head."), let n = rewardOutputs { return "regression.num_attributes \(n) rows, hidden_size \(hiddenSize)" }
        return "hidden_size \(hiddenSize)"
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
            var expected: [Int]? = nil, columns: Int? = nil
            if let (_, rest) = CanonicalName.layerParts(t.name) {
                expected = config.expectedShape(layerTensor: rest)
            } else if let top = config.expectedShape(topLevelTensor: t.name) {
                (expected, columns) = top
            }
            let want: String
            if let expected {
                guard expected != t.shape else { continue }
                want = "\(expected)"
            } else if let columns {
                guard t.shape.count != 2 || t.shape[1] != columns else { continue }
                want = "[rows, \(columns)]"
            } else {
                continue
            }
            // The file the config came from: NeMo's YAML, a Hugging Face config.json, else the
            // checkpoint itself (an HDF5 store's attribute, a model_weights/ folder's parent).
            let source = ["model_config.yaml", "config.json"].first(where: container.isFile).map(container.describe) ?? container.displayPath
            throw TesseraError(.inconsistent, "has shape \(t.shape), but the model config implies \(want) (\(config.shapeReason(t.name)))",
                               file: source, tensor: t.name)
        }
    }
}
