import Checkpoints
import CKernels
import Platform

extension Model {
    /// The rest of a layer after attention: the output projection and the MLP, each added to
    /// the residual stream `x` (tokens x hidden).
    func afterAttention(_ w: LayerWeights, _ x: [Float], context ctx: [Float], tokens: Int, precision: Precision) throws(TesseraError) -> [Float] {
        let k = config.numAttentionHeads * config.kvChannels
        let y = fusable(w.proj, precision) ? try linearPlusResidual(w.proj, .values(ctx), tokens: tokens, k: k, residual: x)
                                           : add(x, try linear(w.proj, ctx, tokens: tokens, k: k, precision: precision), precision)
        return try mlp(w, y, tokens: tokens, precision: precision)
    }

    /// The MLP (its layer norm, fc1, the activation, gated or not, fc2) added to its input `x`.
    func mlp(_ w: LayerWeights, _ x: [Float], tokens: Int, precision: Precision) throws(TesseraError) -> [Float] {
        let m = try normInput(w.mlpNorm, x, tokens: tokens, precision: precision)
        let act: LayerInput
        if fusable(w.fc1, precision), !architecture.activation.gated {
            // fc1's results go through the activation as the kernel stores them.
            act = .bf16(try linearThenActivation(w.fc1, m, tokens: tokens, k: config.hiddenSize, activation: architecture.activation.kernel))
        } else {
            act = activate(try linear(w.fc1, m, tokens: tokens, k: config.hiddenSize, precision: precision), tokens: tokens, precision: precision)
        }
        if fusable(w.fc2, precision) { return try linearPlusResidual(w.fc2, act, tokens: tokens, k: config.ffnHiddenSize, residual: x) }
        return add(x, try linear(w.fc2, act, tokens: tokens, k: config.ffnHiddenSize, precision: precision), precision)
    }

    /// fc1 output -> activation (squared ReLU, GeLU, or a gated unit over `[gate; up]`).
    func activate(_ y: [Float], tokens: Int, precision: Precision) -> LayerInput {
        let kind = architecture.activation.kernel
        let f = config.ffnHiddenSize, gated = architecture.activation.gated
        if bitsInput(precision) { return .bf16(kernels.activationBF16(kind, y, rows: tokens, f: f, gated: gated)) }
        return .values(kernels.activation(kind, y, rows: tokens, f: f, gated: gated, round: precision == .bf16))
    }
}
