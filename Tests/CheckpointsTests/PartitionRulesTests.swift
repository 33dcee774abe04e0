import Checkpoints
import Platform
import Testing

@Test func rolesOfTheNemotronTensors() {
    let r = { (n: String) in PartitionRule.rule(for: n, gated: false)?.role }
    #expect(r("embedding.word_embeddings.weight") == .vocabParallel)
    #expect(r("decoder.layers.7.self_attention.linear_qkv.weight") == .columnParallel)
    #expect(r("decoder.layers.7.self_attention.linear_qkv.layer_norm_weight") == .replicated)
    #expect(r("decoder.layers.7.self_attention.linear_proj.weight") == .rowParallel)
    #expect(r("decoder.layers.7.mlp.linear_fc2.weight") == .rowParallel)
    #expect(r("rm_head.weight") == .rowParallel)
    #expect(r("rm_head.bias") == .replicated)
    #expect(r("decoder.layers.7.mystery.weight") == nil)
    #expect(PartitionRule.rule(for: "decoder.layers.7.mlp.linear_fc1.weight", gated: true)?.role == .gatedColumnParallel)
    #expect(PartitionRule.rule(for: "decoder.layers.7.mlp.linear_fc1.weight", gated: false)?.placement == .layer(7))
    #expect(PartitionRule.rule(for: "output_layer.weight", gated: false)?.placement == .last)
}

@Test func columnAndRowSplitsAreContiguous() throws {
    let col = PartitionRule(role: .columnParallel, placement: .layer(0))
    let p = try col.parts(global: [21504, 18432], tp: 8, rank: 3)
    #expect(p == [ShardPart(localOffset: [0, 0], globalOffset: [8064, 0], shape: [2688, 18432])])
    let row = PartitionRule(role: .rowParallel, placement: .last)
    #expect(try row.parts(global: [9, 18432], tp: 8, rank: 7).first?.globalOffset == [0, 16128])
    #expect(row.globalShape(local: [9, 2304], tp: 8) == [9, 18432])
}

@Test func gatedFc1RanksHoldTheirGateAndUpHalves() throws {
    let g = PartitionRule(role: .gatedColumnParallel, placement: .layer(0))
    let parts = try g.parts(global: [16, 4], tp: 2, rank: 1)
    #expect(parts.count == 2)
    #expect(parts[0] == ShardPart(localOffset: [0, 0], globalOffset: [4, 0], shape: [4, 4]))
    #expect(parts[1] == ShardPart(localOffset: [4, 0], globalOffset: [12, 0], shape: [4, 4]))
}

@Test func indivisibleLayoutsAreRefused() {
    let col = PartitionRule(role: .columnParallel, placement: .first)
    #expect(throws: TesseraError.self) { _ = try col.parts(global: [10, 4], tp: 4, rank: 0) }
}

@Test func canonicalNamesUseTheTESpelling() {
    let (name, spelling) = CanonicalName.canonical("model.decoder.layers.3.input_layernorm.weight")
    #expect(name == "decoder.layers.3.self_attention.linear_qkv.layer_norm_weight")
    #expect(spelling == .local)
    #expect(CanonicalName.canonical("model.decoder.layers.3.pre_mlp_layernorm.bias").name
            == "decoder.layers.3.mlp.linear_fc1.layer_norm_bias")
    #expect(CanonicalName.spelled("decoder.layers.3.mlp.linear_fc1.layer_norm_bias", .local)
            == "decoder.layers.3.pre_mlp_layernorm.bias")
    #expect(CanonicalName.canonical("model.rm_head.weight").name == "rm_head.weight")
}
