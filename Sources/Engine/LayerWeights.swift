import Checkpoints
import Platform

/// A linear layer's tensors, looked up once: the weight ([out][in]) and its bias, if any.
struct LinearWeights: Sendable {
    let weight: GlobalTensor
    let bias: GlobalTensor?

    /// `prefix.weight` and `prefix.bias` of the catalogue; the weight must exist.
    init(_ prefix: String, in weights: WeightReader) throws(TesseraError) {
        weight = try weights.tensor(prefix + ".weight")
        bias = weights.catalogue.tensor(prefix + ".bias")
    }
}

/// A layer norm's tensors: the scale and, where the model has one, the shift.
struct NormWeights: Sendable {
    let gamma: GlobalTensor
    let beta: GlobalTensor?

    init(weight: String, bias: String, in weights: WeightReader) throws(TesseraError) {
        gamma = try weights.tensor(weight)
        beta = weights.catalogue.tensor(bias)
    }

    /// The norm fused into the linear layer `prefix` (`prefix.layer_norm_weight`, `_bias`).
    init(fusedInto prefix: String, in weights: WeightReader) throws(TesseraError) {
        try self.init(weight: prefix + ".layer_norm_weight", bias: prefix + ".layer_norm_bias", in: weights)
    }
}

/// One decoder layer's tensors, resolved once before its steps run.
struct LayerWeights: Sendable {
    /// The norms before attention and before the MLP.
    let attentionNorm, mlpNorm: NormWeights
    /// Attention's input and output projections, the MLP's two layers.
    let qkv, proj, fc1, fc2: LinearWeights

    /// The tensors of layer `layer` (`decoder.layers.N.…`, Megatron-core names).
    init(layer: Int, in weights: WeightReader) throws(TesseraError) {
        let p = "decoder.layers.\(layer)."
        attentionNorm = try NormWeights(fusedInto: p + "self_attention.linear_qkv", in: weights)
        qkv = try LinearWeights(p + "self_attention.linear_qkv", in: weights)
        proj = try LinearWeights(p + "self_attention.linear_proj", in: weights)
        mlpNorm = try NormWeights(fusedInto: p + "mlp.linear_fc1", in: weights)
        fc1 = try LinearWeights(p + "mlp.linear_fc1", in: weights)
        fc2 = try LinearWeights(p + "mlp.linear_fc2", in: weights)
    }
}
