import Checkpoints
@testable import Engine
import Platform
import Testing
import TestSupport

private func config(_ extra: String) throws -> ModelConfig {
    try ModelConfig(yaml: "num_layers: 2\nhidden_size: 64\nffn_hidden_size: 128\nnum_attention_heads: 4\n" + extra, file: "model_config.yaml")
}

@Test func nemotronSpellingsBecomeTheirCases() throws {
    let a = try Architecture(try config("activation: squared-relu\nnormalization: LayerNorm1P\nposition_embedding_type: rope\n"), file: nil)
    #expect(a.activation == .squaredRelu && !a.activation.gated)
    #expect(a.normalization == .layernorm1p && !a.normalization.rms)
    #expect(a.positionEmbedding == .rope)
    #expect(Architecture.Activation.swiglu.gated && Architecture.Normalization.rmsnorm.rms)
}

@Test func positionEmbeddingsTheEngineDoesNotRunAreRefused() throws {
    for kind in try requireCases(["alibi", "kerple", "xpos", "sandwich", "none"], "position embeddings") {
        #expect {
            _ = try Architecture(try config("position_embedding_type: \(kind)\n"), file: "x/model_config.yaml")
        } throws: { error in
            let e = error as? TesseraError
            return e?.code == .unsupported && e?.file == "x/model_config.yaml"
                && e?.message.contains("position_embedding_type '\(kind)'") == true
        }
    }
}

/// Settings that change the arithmetic from the GPT the engine runs are refused, naming each
/// (a model with interleaved RoPE, scaled positions, a sliding window or query/key norms used
/// to run as the plain model); their defaults and nulls are not settings.
@Test func settingsThatChangeTheArithmeticAreRefused() throws {
    let cases = try requireCases([("rotary_interleaved: true", "rotary_interleaved: true"),
                                  ("seq_len_interpolation_factor: 4", "seq_len_interpolation_factor: 4"),
                                  ("scale_positional_embedding: True", "scale_positional_embedding: true"),
                                  ("normalize_attention_scores: false", "normalize_attention_scores: false"),
                                  ("transformer_block_type: post_ln", "transformer_block_type: post_ln"),
                                  ("headscale: true", "headscale: true"), ("qk_layernorm: true", "qk_layernorm: true"),
                                  ("window_size: [128, 0]", "window_size: [128, 0]"), ("num_moe_experts: 8", "num_moe_experts: 8"),
                                  ("openai_gelu: true\nactivation: gelu", "openai_gelu: true")], "settings")
    for (line, named) in cases {
        #expect {
            _ = try Architecture(try config(line + "\n"), file: "x/model_config.yaml")
        } throws: { error in
            let e = error as? TesseraError
            return e?.code == .unsupported && e?.message.contains(named) == true
        }
    }
    let plain = try config("""
        rotary_interleaved: false
        seq_len_interpolation_factor: null
        normalize_attention_scores: true
        transformer_block_type: pre_ln
        window_size: null
        num_moe_experts: null
        openai_gelu: true
        activation: squared-relu
        qk_layernorm: false

        """)
    #expect(plain.unrunSettings.isEmpty, "\(plain.unrunSettings)")
    _ = try Architecture(plain, file: nil)
}
