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
