import Foundation
import Platform

/// transformers' `NemotronConfig` (`config.json`) written from a NeMo model config, and a NeMo
/// `model_config.yaml` written from a `config.json`.
public enum HFConfig {
    /// SteerLM's nine attribute names, in the order of the reward head's outputs.
    public static let attributes = ["quality", "toxicity", "humor", "creativity", "helpfulness", "correctness",
                                    "coherence", "complexity", "verbosity"]
    /// The `config.json` field holding the reward head's bias (one number per label, the
    /// shortest decimal that reads back as the stored value).
    public static let biasField = "score_bias"

    /// Special token ids written into `config.json`.
    public struct TokenIDs: Sendable {
        public var bos: Int?, eos: Int?, pad: Int?
        /// The ids of `<s>`, `</s>` and `<pad>` (nil: the tokenizer has none).
        public init(bos: Int?, eos: Int?, pad: Int?) { self.bos = bos; self.eos = eos; self.pad = pad }
    }

    /// The `config.json` text for model `c` with `vocabRows` embedding rows stored as `dtype`,
    /// a reward head of `labels` outputs (nil: none) whose bias is `bias`.
    public static func json(_ c: ModelConfig, vocabRows: Int, dtype: DType, labels: Int?, bias: [Float]?,
                            tokens: TokenIDs) -> String {
        func id(_ v: Int?) -> String { v.map(String.init) ?? "null" }
        func num(_ d: Double) -> String { d.isFinite ? "\(d)" : "null" }
        var lines: [String] = [
            "\"architectures\": [\"\(labels == nil ? "NemotronForCausalLM" : "NemotronForSequenceClassification")\"]",
            "\"model_type\": \"nemotron\"",
            "\"vocab_size\": \(vocabRows)",
            "\"hidden_size\": \(c.hiddenSize)",
            "\"intermediate_size\": \(c.ffnHiddenSize)",
            "\"num_hidden_layers\": \(c.numLayers)",
            "\"num_attention_heads\": \(c.numAttentionHeads)",
            "\"num_key_value_heads\": \(c.numQueryGroups)",
            "\"head_dim\": \(c.kvChannels)",
            "\"hidden_act\": \"relu2\"",
            "\"max_position_embeddings\": \(c.seqLength ?? 4096)",
            "\"norm_eps\": \(num(c.layernormEpsilon))",
            "\"rope_theta\": \(num(c.rotaryBase))",
            "\"partial_rotary_factor\": \(num(c.rotaryPercentage))",
            "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": \(num(c.rotaryBase)), \"partial_rotary_factor\": \(num(c.rotaryPercentage))}",
            "\"attention_bias\": \(c.bias)",
            "\"mlp_bias\": \(c.bias)",
            "\"tie_word_embeddings\": \(c.shareEmbeddingsAndOutputWeights)",
            "\"torch_dtype\": \"\(dtype.rawValue)\"",
            "\"bos_token_id\": \(id(tokens.bos))",
            "\"eos_token_id\": \(id(tokens.eos))",
            "\"pad_token_id\": \(id(tokens.pad))",
        ]
        if let labels {
            let names = (0..<labels).map { $0 < attributes.count && labels == attributes.count ? attributes[$0] : "LABEL_\($0)" }
            lines.append("\"num_labels\": \(labels)")
            lines.append("\"id2label\": {" + names.enumerated().map { "\"\($0.offset)\": \"\($0.element)\"" }.joined(separator: ", ") + "}")
            lines.append("\"label2id\": {" + names.enumerated().map { "\"\($0.element)\": \($0.offset)" }.joined(separator: ", ") + "}")
            lines.append("\"problem_type\": \"regression\"")
        }
        if let bias {
            lines.append("\"\(biasField)\": [" + bias.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ", ") + "]")
            lines.append("\"score_bias_file\": \"\(HFNames.scoreBiasFile)\"")
        }
        return "{\n  " + lines.joined(separator: ",\n  ") + "\n}\n"
    }

    /// A NeMo `model_config.yaml` (NeMo 1.0 key names) for the `config.json` object `j`; with
    /// `tokenizer`, its tokenizer section names the folder's `tokenizer.model` as an artifact.
    public static func yaml(_ j: [String: Any], rewardOutputs: Int?, tokenizer: Bool, file: String) throws(TesseraError) -> String {
        func int(_ k: String) -> Int? { (j[k] as? NSNumber)?.intValue }
        func double(_ k: String) -> Double? {
            (j[k] as? NSNumber)?.doubleValue ?? ((j["rope_parameters"] as? [String: Any])?[k] as? NSNumber)?.doubleValue
        }
        func require(_ k: String) throws(TesseraError) -> Int {
            guard let v = int(k) else { throw TesseraError(.missing, "config.json has no integer '\(k)'", file: file) }
            return v
        }
        guard (j["model_type"] as? String) == "nemotron" else {
            throw TesseraError(.unsupported, "model_type '\(j["model_type"] ?? "none")' is not nemotron", file: file)
        }
        let heads = try require("num_attention_heads"), hidden = try require("hidden_size")
        let act = (j["hidden_act"] as? String) ?? "relu2"
        guard act == "relu2" else { throw TesseraError(.unsupported, "hidden_act '\(act)' is not relu2", file: file) }
        // Scaled RoPE (linear, dynamic, yarn, llama3) is another positional arithmetic.
        for key in ["rope_scaling", "rope_parameters"] {
            guard let rope = j[key] as? [String: Any] else { continue }
            let kind = (rope["rope_type"] as? String) ?? (rope["type"] as? String) ?? "default"
            guard kind == "default" else {
                throw TesseraError(.unsupported, "\(key) has rope_type '\(kind)': only the default RoPE is read", file: file)
            }
        }
        let bias = (j["attention_bias"] as? Bool) ?? false
        let dtype = (j["torch_dtype"] as? String) ?? (j["dtype"] as? String) ?? "bfloat16"
        var lines = [
            "num_layers: \(try require("num_hidden_layers"))",
            "hidden_size: \(hidden)",
            "ffn_hidden_size: \(try require("intermediate_size"))",
            "num_attention_heads: \(heads)",
            "num_query_groups: \(int("num_key_value_heads") ?? heads)",
            "kv_channels: \(int("head_dim") ?? hidden / max(heads, 1))",
            "encoder_seq_length: \(int("max_position_embeddings") ?? 4096)",
            "max_position_embeddings: \(int("max_position_embeddings") ?? 4096)",
            "make_vocab_size_divisible_by: 128",
            "activation: squared-relu",
            "normalization: layernorm1p",
            "layernorm_zero_centered_gamma: true",
            "layernorm_epsilon: \(double("norm_eps") ?? 1e-5)",
            "bias: \(bias)",
            "position_embedding_type: rope",
            "rotary_percentage: \(double("partial_rotary_factor") ?? 0.5)",
            "rotary_base: \(double("rope_theta") ?? 10000)",
            "share_embeddings_and_output_weights: \((j["tie_word_embeddings"] as? Bool) ?? false)",
            "tensor_model_parallel_size: 1",
            "pipeline_model_parallel_size: 1",
            "precision: \(dtype == "float32" ? "32" : dtype == "float16" ? "16" : "bf16")",
        ]
        if let n = rewardOutputs {
            lines += ["reward_model_type: regression", "regression:", "  num_attributes: \(n)"]
        }
        if tokenizer { lines += ["tokenizer:", "  library: sentencepiece", "  model: nemo:tokenizer.model"] }
        return lines.joined(separator: "\n") + "\n"
    }
}
