import Foundation
import Platform
import Yams

/// The architecture and parallel layout of a NeMo GPT model, from `model_config.yaml`
/// (with or without a top-level `model:` key).
public struct ModelConfig: Sendable, Equatable, Codable {
    public var numLayers: Int
    public var hiddenSize: Int
    public var ffnHiddenSize: Int
    public var numAttentionHeads: Int
    public var numQueryGroups: Int
    public var kvChannels: Int
    /// Set from the embedding's row count when the weights are read.
    public var paddedVocabSize: Int?
    public var makeVocabSizeDivisibleBy: Int
    /// The largest `make_vocab_size_divisible_by` read.
    public static let largestVocabMultiple = 1 << 16
    /// `override_vocab_size`: when set, NeMo builds the vocabulary from it, not from the tokenizer.
    public var overrideVocabSize: Int?
    public var seqLength: Int?
    public var activation: String
    public var normalization: String
    public var layernormZeroCenteredGamma: Bool
    public var layernormEpsilon: Double
    public var bias: Bool
    public var positionEmbeddingType: String
    public var rotaryPercentage: Double
    public var rotaryBase: Double
    public var shareEmbeddingsAndOutputWeights: Bool
    public var tensorModelParallelSize: Int
    public var pipelineModelParallelSize: Int
    public var precision: String?
    /// Outputs of a regression reward head (`regression.num_attributes`), when the model has one.
    public var rewardOutputs: Int?
    /// The tokenizer file inside the checkpoint, with the `nemo:` prefix removed.
    public var tokenizerModel: String?
    public var distCkptFormat: String?
    /// Settings the config has that change the model's arithmetic from the plain GPT the engine
    /// runs (`rotary_interleaved: true`, a `seq_len_interpolation_factor`, `qk_layernorm`, ...),
    /// as "key: value" for a message; empty for Nemotron and the other models the engine runs.
    /// Conversions carry them through; the engine refuses a model that has any.
    public var unrunSettings: [String] = []

    /// True when fc1 holds a gate and an up projection (`*glu` activations).
    public var gatedLinearUnit: Bool { activation.hasSuffix("glu") }

    enum CodingKeys: String, CodingKey {
        case numLayers = "num_layers", hiddenSize = "hidden_size", ffnHiddenSize = "ffn_hidden_size"
        case numAttentionHeads = "num_attention_heads", numQueryGroups = "num_query_groups"
        case kvChannels = "kv_channels", paddedVocabSize = "padded_vocab_size"
        case makeVocabSizeDivisibleBy = "make_vocab_size_divisible_by", seqLength = "encoder_seq_length"
        case overrideVocabSize = "override_vocab_size"
        case activation, normalization, layernormZeroCenteredGamma = "layernorm_zero_centered_gamma"
        case layernormEpsilon = "layernorm_epsilon", bias, positionEmbeddingType = "position_embedding_type"
        case rotaryPercentage = "rotary_percentage", rotaryBase = "rotary_base"
        case shareEmbeddingsAndOutputWeights = "share_embeddings_and_output_weights"
        case tensorModelParallelSize = "tensor_model_parallel_size"
        case pipelineModelParallelSize = "pipeline_model_parallel_size"
        case precision, rewardOutputs = "reward_outputs", tokenizerModel = "tokenizer_model"
        case distCkptFormat = "dist_ckpt_format"
    }

    /// Parses `model_config.yaml` text; `file` names it in errors.
    public init(yaml text: String, file: String) throws(TesseraError) {
        let f = try ConfigFields(yaml: text, file: file)
        numLayers = try f.require("num_layers")
        hiddenSize = try f.require("hidden_size")
        numAttentionHeads = try f.require("num_attention_heads")
        ffnHiddenSize = f.int("ffn_hidden_size") ?? 4 * hiddenSize
        numQueryGroups = f.int("num_query_groups") ?? numAttentionHeads
        kvChannels = f.int("kv_channels") ?? hiddenSize / max(numAttentionHeads, 1)
        paddedVocabSize = nil
        makeVocabSizeDivisibleBy = f.int("make_vocab_size_divisible_by") ?? 128
        overrideVocabSize = f.int("override_vocab_size")
        if let v = overrideVocabSize, v <= 0 {
            throw TesseraError(.corrupt, "override_vocab_size must be positive, not \(v)", file: file)
        }
        let seqKey = ["encoder_seq_length", "seq_length", "max_position_embeddings"].first { f.int($0) != nil }
        seqLength = seqKey.flatMap(f.int)
        activation = f.string("activation") ?? "gelu"
        normalization = f.string("normalization") ?? "layernorm"
        guard Self.activations.contains(activation) else {
            throw TesseraError(.unsupported, "unknown activation '\(activation)' (known: \(Self.activations.sorted().joined(separator: ", ")))", file: file)
        }
        guard Self.normalizations.contains(normalization.lowercased()) else {
            throw TesseraError(.unsupported, "unknown normalization '\(normalization)' (known: \(Self.normalizations.sorted().joined(separator: ", ")))",
                               file: file)
        }
        try Self.checkSizes([("num_layers", numLayers, 1 << 16), ("hidden_size", hiddenSize, 1 << 20),
                             ("num_attention_heads", numAttentionHeads, 1 << 16), ("ffn_hidden_size", ffnHiddenSize, 1 << 22),
                             ("num_query_groups", numQueryGroups, 1 << 16), ("kv_channels", kvChannels, 1 << 16),
                             // Padding adds up to this many zero rows per tensor-parallel rank (NeMo's configs use 128 to 512).
                             ("make_vocab_size_divisible_by", makeVocabSizeDivisibleBy, Self.largestVocabMultiple),
                             (seqKey ?? "seq_length", seqLength ?? 1, 1 << 30)], file: file)
        layernormZeroCenteredGamma = f.bool("layernorm_zero_centered_gamma") ?? (normalization == "layernorm1p")
        layernormEpsilon = f.double("layernorm_epsilon") ?? 1e-5
        bias = f.bool("bias") ?? true
        positionEmbeddingType = f.string("position_embedding_type") ?? "learned_absolute"
        rotaryPercentage = f.double("rotary_percentage") ?? 1.0
        rotaryBase = f.double("rotary_base") ?? 10000
        try Self.checkRelations(heads: numAttentionHeads, groups: numQueryGroups, rotaryPercentage: rotaryPercentage,
                                rotaryBase: rotaryBase, epsilon: layernormEpsilon, file: file)
        shareEmbeddingsAndOutputWeights = f.bool("share_embeddings_and_output_weights") ?? true
        tensorModelParallelSize = f.int("tensor_model_parallel_size") ?? 1
        pipelineModelParallelSize = f.int("pipeline_model_parallel_size") ?? 1
        precision = f.root["precision"].map { "\($0)" }
        rewardOutputs = f.rewardOutputs
        tokenizerModel = f.tokenizerModel
        distCkptFormat = f.string("dist_ckpt_format")
        unrunSettings = f.unrunSettings(activation: activation)
    }

    /// The MLP activations the engine runs (NeMo's spellings).
    public static let activations: Set<String> = ["gelu", "geglu", "fast-geglu", "relu", "squared-relu", "swiglu", "fast-swiglu"]
    /// The normalizations the engine runs (compared lower-cased).
    public static let normalizations: Set<String> = ["layernorm", "layernorm1p", "rmsnorm"]

    /// Refuses a size that is not positive or beyond `limit` (sizes from a file are untrusted:
    /// they drive allocations).
    static func checkSizes(_ sizes: [(String, Int, Int)], file: String?) throws(TesseraError) {
        for (key, value, limit) in sizes where value < 1 || value > limit {
            throw TesseraError(.corrupt, "model config '\(key)' is \(value), outside 1...\(limit)", file: file)
        }
    }

    /// Refuses values that no model megatron-core builds can have: query groups that do not
    /// divide the heads, a rotary share outside (0, 1], a non-positive rotary base, a negative
    /// or non-finite layer-norm epsilon.
    static func checkRelations(heads: Int, groups: Int, rotaryPercentage: Double, rotaryBase: Double, epsilon: Double,
                               file: String?) throws(TesseraError) {
        guard heads % groups == 0 else {
            throw TesseraError(.corrupt, "num_attention_heads \(heads) is not a multiple of num_query_groups \(groups)", file: file)
        }
        guard rotaryPercentage > 0, rotaryPercentage <= 1 else {
            throw TesseraError(.corrupt, "rotary_percentage must be in (0, 1], not \(rotaryPercentage)", file: file)
        }
        guard rotaryBase > 0, rotaryBase.isFinite else {
            throw TesseraError(.corrupt, "rotary_base must be a positive number, not \(rotaryBase)", file: file)
        }
        guard epsilon >= 0, epsilon.isFinite else {
            throw TesseraError(.corrupt, "layernorm_epsilon must be a non-negative number, not \(epsilon)", file: file)
        }
    }

    /// The padded vocabulary NeMo builds for `vocab` tokens at tensor-parallel size `tp`.
    public func paddedVocab(trueVocab vocab: Int, tp: Int) -> Int {
        let multiple = makeVocabSizeDivisibleBy * tp
        return (vocab + multiple - 1) / multiple * multiple
    }
}

/// The keys of a `model_config.yaml` (inside its `model:` key when it has one), read leniently
/// as NeMo's configs write them (numbers may be strings, booleans `True`).
private struct ConfigFields {
    let root: [String: Any]
    let file: String

    /// Parses `text`; `file` names it in errors.
    init(yaml text: String, file: String) throws(TesseraError) {
        try YAMLBounds.checkNesting(text, file: file)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw TesseraError(.corrupt, "not valid YAML: \(error)", file: file)
        }
        if let node { try YAMLBounds.checkSize(node, file: file) }
        // Yams turns a mapping into a dictionary by forcing every key to a string, which traps
        // on a key that is itself a mapping or a list (`? [a]: b`): such keys are refused first.
        if let key = node.flatMap(Self.firstNonScalarKey) {
            throw TesseraError(.corrupt, "a mapping key at line \((key.mark?.line).map(String.init) ?? "?") is a mapping or a list; "
                + "a model config's keys are names", file: file)
        }
        guard var root = node?.any as? [String: Any] else {
            throw TesseraError(.corrupt, "expected a mapping at the top level", file: file)
        }
        if let inner = root["model"] as? [String: Any] { root = inner }
        self.root = root
        self.file = file
    }

    /// The first key of a mapping anywhere in `node` that is not a scalar, if any.
    private static func firstNonScalarKey(_ node: Node) -> Node? {
        switch node {
        case .scalar: return nil
        case .sequence(let items): return items.lazy.compactMap(firstNonScalarKey).first
        case .mapping(let pairs):
            for (key, value) in pairs {
                if key.scalar == nil { return key }
                if let inner = firstNonScalarKey(value) { return inner }
            }
            return nil
        }
    }

    func int(_ k: String) -> Int? {
        switch root[k] {
        case let i as Int: i
        case let s as String: Int(s)
        case let d as Double where d == d.rounded(): Int(d)
        default: nil
        }
    }

    func double(_ k: String) -> Double? {
        switch root[k] {
        case let d as Double: d
        case let i as Int: Double(i)
        case let s as String: Double(s)
        default: nil
        }
    }

    func bool(_ k: String) -> Bool? {
        switch root[k] {
        case let b as Bool: b
        case let s as String: ["true", "True", "1"].contains(s)
        default: nil
        }
    }

    func string(_ k: String) -> String? { root[k].flatMap { $0 as? String } }

    /// The integer `k`, which the config must have.
    func require(_ k: String) throws(TesseraError) -> Int {
        guard let v = int(k) else { throw TesseraError(.missing, "model config has no integer '\(k)'", file: file) }
        return v
    }

    /// Whether `k` is present with a value other than null.
    func isSet(_ k: String) -> Bool { root[k].map { !($0 is NSNull) } ?? false }

    /// The settings, among those megatron-core and NeMo read, that change the arithmetic from
    /// the defaults the engine implements (see ModelConfig.unrunSettings).
    func unrunSettings(activation: String) -> [String] {
        var found: [String] = []
        func add(_ k: String) { found.append("\(k): \(root[k].map { "\($0)" } ?? "")") }
        if bool("rotary_interleaved") == true { add("rotary_interleaved") }
        if let factor = double("seq_len_interpolation_factor"), factor != 1 { add("seq_len_interpolation_factor") }
        if bool("scale_positional_embedding") == true { add("scale_positional_embedding") }
        if bool("normalize_attention_scores") == false { add("normalize_attention_scores") }
        if let block = string("transformer_block_type"), block != "pre_ln" { add("transformer_block_type") }
        if bool("headscale") == true { add("headscale") }
        if bool("qk_layernorm") == true { add("qk_layernorm") }
        if isSet("window_size") { add("window_size") }
        if let experts = int("num_moe_experts"), experts > 0 { add("num_moe_experts") }
        if bool("openai_gelu") == true, activation.contains("gelu") { add("openai_gelu") }
        return found
    }

    /// `regression.num_attributes`: the outputs of a reward head.
    var rewardOutputs: Int? { (root["regression"] as? [String: Any])?["num_attributes"] as? Int }

    /// `tokenizer.model` (or `tokenizer.tokenizer_model`) without its `nemo:` prefix.
    var tokenizerModel: String? {
        guard let tok = root["tokenizer"] as? [String: Any] else { return nil }
        let ref = (tok["model"] as? String) ?? (tok["tokenizer_model"] as? String)
        return ref.map { $0.hasPrefix("nemo:") ? String($0.dropFirst(5)) : $0 }
    }
}
