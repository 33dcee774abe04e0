import Platform

/// How a global tensor is divided among tensor-parallel ranks.
public enum TensorRole: String, Sendable, Codable {
    /// Every rank holds the whole tensor (layer norms, row-parallel biases).
    case replicated
    /// Rows split contiguously (column-parallel weights: QKV by whole query groups, fc1).
    case columnParallel
    /// Vocabulary rows split contiguously (embedding, output layer); padded per layout.
    case vocabParallel
    /// Columns (dim 1) split contiguously (row-parallel weights: proj, fc2, reward head).
    case rowParallel
    /// Gated fc1: each rank holds `[gate_r; up_r]`, the global tensor is `[gate; up]`.
    case gatedColumnParallel
}

/// Which pipeline stage holds a tensor.
public enum StagePlacement: Sendable, Equatable {
    case first
    case last
    /// A transformer layer, by global index.
    case layer(Int)
}

/// One rectangular part of a rank's local tensor and where it sits in the global tensor.
public struct ShardPart: Sendable, Equatable {
    /// Start of the part in the rank's local tensor.
    public var localOffset: [Int]
    /// Start of the part in the global tensor.
    public var globalOffset: [Int]
    public var shape: [Int]

    public init(localOffset: [Int], globalOffset: [Int], shape: [Int]) {
        self.localOffset = localOffset
        self.globalOffset = globalOffset
        self.shape = shape
    }
}

/// The partition rule of every NeMo GPT tensor: one table, read by the readers to
/// assemble global tensors and by the writers to cut them again.
public struct PartitionRule: Sendable, Equatable {
    public var role: TensorRole
    public var placement: StagePlacement

    public init(role: TensorRole, placement: StagePlacement) {
        self.role = role
        self.placement = placement
    }

    /// The rule for a canonical tensor name, or nil for a name the table does not know.
    public static func rule(for name: String, gated: Bool) -> PartitionRule? {
        if let (layer, suffix) = CanonicalName.layerParts(name) {
            guard let role = layerRoles[suffix] else { return nil }
            let r: TensorRole = (role == .columnParallel && gated && suffix.hasPrefix("mlp.linear_fc1.")) ? .gatedColumnParallel : role
            return PartitionRule(role: r, placement: .layer(layer))
        }
        return topLevel[name]
    }

    static let layerRoles: [String: TensorRole] = [
        "self_attention.linear_qkv.weight": .columnParallel,
        "self_attention.linear_qkv.bias": .columnParallel,
        "self_attention.linear_qkv.layer_norm_weight": .replicated,
        "self_attention.linear_qkv.layer_norm_bias": .replicated,
        "self_attention.linear_proj.weight": .rowParallel,
        "self_attention.linear_proj.bias": .replicated,
        "self_attention.q_layernorm.weight": .replicated,
        "self_attention.q_layernorm.bias": .replicated,
        "self_attention.k_layernorm.weight": .replicated,
        "self_attention.k_layernorm.bias": .replicated,
        "mlp.linear_fc1.weight": .columnParallel,
        "mlp.linear_fc1.bias": .columnParallel,
        "mlp.linear_fc1.layer_norm_weight": .replicated,
        "mlp.linear_fc1.layer_norm_bias": .replicated,
        "mlp.linear_fc2.weight": .rowParallel,
        "mlp.linear_fc2.bias": .replicated,
    ]

    static let topLevel: [String: PartitionRule] = [
        "embedding.word_embeddings.weight": PartitionRule(role: .vocabParallel, placement: .first),
        "embedding.position_embeddings.weight": PartitionRule(role: .replicated, placement: .first),
        "decoder.final_layernorm.weight": PartitionRule(role: .replicated, placement: .last),
        "decoder.final_layernorm.bias": PartitionRule(role: .replicated, placement: .last),
        "output_layer.weight": PartitionRule(role: .vocabParallel, placement: .last),
        "output_layer.bias": PartitionRule(role: .vocabParallel, placement: .last),
        "rm_head.weight": PartitionRule(role: .rowParallel, placement: .last),
        "rm_head.bias": PartitionRule(role: .replicated, placement: .last),
    ]

    /// The global shape assembled from equal local shards of `tp` ranks.
    public func globalShape(local: [Int], tp: Int) -> [Int] {
        var g = local
        switch role {
        case .replicated: break
        case .columnParallel, .vocabParallel, .gatedColumnParallel: g[0] *= tp
        case .rowParallel: g[g.count == 1 ? 0 : 1] *= tp
        }
        return g
    }

    /// The parts that make up rank `rank`'s local tensor, for a global tensor of shape `global`.
    public func parts(global: [Int], tp: Int, rank: Int) throws(TesseraError) -> [ShardPart] {
        let zero = [Int](repeating: 0, count: global.count)
        func split(_ dim: Int) throws(TesseraError) -> [ShardPart] {
            guard dim < global.count, global[dim] % tp == 0 else {
                throw TesseraError(.invalidArgument,
                    "dimension \(dim) of shape \(global) does not divide by tensor-parallel size \(tp)")
            }
            let n = global[dim] / tp
            var shape = global; shape[dim] = n
            var goff = zero; goff[dim] = rank * n
            return [ShardPart(localOffset: zero, globalOffset: goff, shape: shape)]
        }
        switch role {
        case .replicated:
            return [ShardPart(localOffset: zero, globalOffset: zero, shape: global)]
        case .columnParallel, .vocabParallel:
            return try split(0)
        case .rowParallel:
            return try split(global.count == 1 ? 0 : 1)
        case .gatedColumnParallel:
            guard global[0] % (2 * tp) == 0 else {
                throw TesseraError(.invalidArgument, "gated fc1 rows \(global[0]) do not divide by 2 x tensor-parallel size \(tp)")
            }
            let half = global[0] / (2 * tp)
            var shape = global; shape[0] = half
            var gate = zero; gate[0] = rank * half
            var up = zero; up[0] = global[0] / 2 + rank * half
            var upLocal = zero; upLocal[0] = half
            return [ShardPart(localOffset: zero, globalOffset: gate, shape: shape),
                    ShardPart(localOffset: upLocal, globalOffset: up, shape: shape)]
        }
    }
}

/// Canonical tensor names: the TP=1/PP=1 view, global layer numbers, no `model.` prefix,
/// TransformerEngine spelling for the fused layer norms.
public enum CanonicalName {
    /// The spelling a checkpoint used for layer norms.
    public enum Spelling: String, Sendable, Codable {
        case transformerEngine = "te"
        case local = "local"
    }

    /// Splits `decoder.layers.<L>.<suffix>` into its layer and suffix.
    public static func layerParts(_ name: String) -> (Int, String)? {
        let prefix = "decoder.layers."
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        return (layer, String(rest[rest.index(after: dot)...]))
    }

    /// The canonical form of a state-dict key (`model.` stripped, local-spec norms renamed),
    /// and the spelling it was written in when that tells.
    public static func canonical(_ key: String) -> (name: String, spelling: Spelling?) {
        var k = key
        for p in ["model.module.", "model."] where k.hasPrefix(p) { k.removeFirst(p.count); break }
        if let (layer, suffix) = layerParts(k) {
            for (local, te) in [("input_layernorm.", "self_attention.linear_qkv.layer_norm_"),
                                ("pre_mlp_layernorm.", "mlp.linear_fc1.layer_norm_")] where suffix.hasPrefix(local) {
                return ("decoder.layers.\(layer).\(te)\(suffix.dropFirst(local.count))", .local)
            }
            if suffix.contains(".layer_norm_") { return (k, .transformerEngine) }
        }
        return (k, nil)
    }

    /// The key to write for a canonical name in the given spelling (without `model.`).
    public static func spelled(_ name: String, _ spelling: Spelling) -> String {
        guard spelling == .local, let (layer, suffix) = layerParts(name) else { return name }
        for (te, local) in [("self_attention.linear_qkv.layer_norm_", "input_layernorm."),
                            ("mlp.linear_fc1.layer_norm_", "pre_mlp_layernorm.")] where suffix.hasPrefix(te) {
            return "decoder.layers.\(layer).\(local)\(suffix.dropFirst(te.count))"
        }
        return name
    }

    /// Sort key giving the canonical order: embedding, layers in order (each in forward
    /// order), final norm, output layer, reward head.
    public static func order(_ name: String) -> (Int, Int, Int, String) {
        if let (layer, suffix) = layerParts(name) {
            let within = ["self_attention.linear_qkv.layer_norm_weight", "self_attention.linear_qkv.layer_norm_bias",
                          "self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias",
                          "self_attention.linear_proj.weight", "self_attention.linear_proj.bias",
                          "mlp.linear_fc1.layer_norm_weight", "mlp.linear_fc1.layer_norm_bias",
                          "mlp.linear_fc1.weight", "mlp.linear_fc1.bias",
                          "mlp.linear_fc2.weight", "mlp.linear_fc2.bias"].firstIndex(of: suffix) ?? 99
            return (1, layer, within, suffix)
        }
        let top = ["embedding.word_embeddings.weight", "embedding.position_embeddings.weight",
                   "decoder.final_layernorm.weight", "decoder.final_layernorm.bias",
                   "output_layer.weight", "output_layer.bias", "rm_head.weight", "rm_head.bias"]
        guard let i = top.firstIndex(of: name) else { return (3, 0, 0, name) }
        return (i < 2 ? 0 : 2, 0, i, name)
    }
}
