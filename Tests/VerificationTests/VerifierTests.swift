import Checkpoints
import Foundation
import Platform
import Sharding
import TestSupport
import Testing
import Verification
import Scoring
import Tokenizer

private func open(_ path: String, _ cache: MappingCache) throws -> Catalogue {
    try Checkpoint.open(path, cache: cache)
}

/// The paths of the fixtures stored in `dtype`.
private func fixtures(_ dtype: String) throws -> [String] {
    try requireCases(try Fixtures.checkpoints().filter { $0.dtype == dtype }.map(\.path), "\(dtype) fixtures")
}

/// Every pair of fixture layouts and formats of one dtype holds identical weights.
@Test(arguments: ["bf16", "fp32"])
func everyPairOfFixturesIsEquivalent(_ dtype: String) throws {
    var list = try requireCases(try fixtures(dtype), "\(dtype) fixtures", atLeast: 2)
    let cache = MappingCache()
    let scratch = try TemporaryFolder("pairs")
    // And the same model as HDF5 stores, compressed and contiguous.
    for (tp, level) in [(2, Int32(1)), (1, nil)] as [(Int, Int32?)] {
        let h5 = scratch.file("tp\(tp).h5")
        var layout = TargetLayout(tp: tp, pp: 1, format: .hdf5)
        layout.compressionLevel = level
        try Converter.convert(try open(list[0], cache), to: h5, layout: layout, force: false, cache: cache)
        list.append(h5)
    }
    let catalogues = try list.map { try open($0, cache) }
    for i in catalogues.indices {
        for j in catalogues.indices where j > i {
            let r = try Verifier(cache: cache).verify(catalogues[i], catalogues[j], weightsOnly: true)
            #expect(r.equivalent, "\(list[i]) vs \(list[j])")
            #expect(r.tensors.count == catalogues[i].tensors.count)
            #expect(r.tensors.allSatisfy { $0.status == .identical })
        }
    }
}

/// Outputs agree along a chain of layouts and formats, an HDF5 store included.
@Test func outputsAgreeAcrossLayoutsAndAnHDF5Store() throws {
    let cache = MappingCache()
    let list = try requireCases(try fixtures("bf16"), "bf16 fixtures", atLeast: 3)
    let scratch = try TemporaryFolder("verify")
    let h5 = scratch.file("store.h5")
    try Converter.convert(try open(list[0], cache), to: h5, layout: TargetLayout(tp: 2, pp: 1, format: .hdf5), force: false, cache: cache)
    let chain = [list[0], list[list.count / 2], list[list.count - 1], h5]
    for (x, y) in adjacentPairs(chain) {
        let r = try Verifier(cache: cache).verify(try open(x, cache), try open(y, cache), weightsOnly: false)
        #expect(r.equivalent, "\(x) vs \(y)")
        #expect(r.outputs.count == 3)
        #expect(r.outputs.allSatisfy { ($0.rewardMaxDiff ?? 1) < 1e-4 })
    }
}

@Test func fp32AgainstBF16IsEqualAfterRoundingNotIdentical() throws {
    let cache = MappingCache()
    let a = try open(try fixtures("fp32")[0], cache)
    let b = try open(try fixtures("bf16")[0], cache)
    let r = try Verifier(cache: cache).verify(a, b, weightsOnly: true)
    #expect(r.equivalent)
    #expect(r.tensors.count == a.tensors.count)
    #expect(r.tensors.allSatisfy { $0.status == .equalAfterRounding })
}

/// The TP1/PP1 FP32 legacy fixture and a copy of it in `folder` whose bytes `edit` may change.
private func editedCopy(in folder: TemporaryFolder, _ edit: (Catalogue, inout [UInt8]) throws -> Void) throws -> (String, String) {
    let original = try Fixtures.checkpoint { $0.format == "legacy" && $0.dtype == "fp32" && $0.tp == 1 && $0.pp == 1 }.path
    let dir = try folder.copy(original)
    let cat = try Checkpoint.open(dir, cache: MappingCache())
    let file = dir + "/model_weights.ckpt"
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
    try edit(cat, &bytes)
    try Data(bytes).write(to: URL(fileURLWithPath: file))
    return (original, dir)
}

@Test func oneChangedElementIsFoundAndNamed() throws {
    let scratch = try TemporaryFolder("verify")
    let (original, changed) = try editedCopy(in: scratch) { cat, bytes in
        let p = try #require(cat.tensor("decoder.layers.2.mlp.linear_fc2.weight")?.pieces.first)
        // Element [5, 7] of a [64, 256] FP32 tensor.
        let at = p.storage.offset + (p.storageOffset + 5 * p.strides[0] + 7) * 4
        bytes[at + 2] ^= 0x40
    }
    let cache = MappingCache()
    let r = try Verifier(cache: cache).verify(try open(original, cache), try open(changed, cache), weightsOnly: true)
    #expect(!r.equivalent)
    let diff = try #require(r.tensors.first { $0.status == .different })
    #expect(diff.name == "decoder.layers.2.mlp.linear_fc2.weight")
    #expect(diff.firstDifference == [5, 7])
    #expect(diff.valueA != diff.valueB)
    #expect(r.tensors.filter { $0.status == .different }.count == 1)
}

@Test func swappedQueryGroupsFailWeightsAndOutputs() throws {
    let scratch = try TemporaryFolder("verify")
    let (original, swapped) = try editedCopy(in: scratch) { cat, bytes in
        let t = try #require(cat.tensor("decoder.layers.1.self_attention.linear_qkv.weight"))
        let p = try #require(t.pieces.first)
        let config = try #require(cat.config)
        let groupRows = (config.numAttentionHeads / config.numQueryGroups + 2) * config.kvChannels
        let rowBytes = t.shape[1] * 4
        let start = p.storage.offset + p.storageOffset * 4
        let g0 = Array(bytes[start..<(start + groupRows * rowBytes)])
        let g1 = Array(bytes[(start + groupRows * rowBytes)..<(start + 2 * groupRows * rowBytes)])
        bytes.replaceSubrange(start..<(start + groupRows * rowBytes), with: g1)
        bytes.replaceSubrange((start + groupRows * rowBytes)..<(start + 2 * groupRows * rowBytes), with: g0)
    }
    let cache = MappingCache()
    let r = try Verifier(cache: cache).verify(try open(original, cache), try open(swapped, cache), weightsOnly: false)
    #expect(!r.equivalent)
    #expect(r.tensors.contains { $0.name == "decoder.layers.1.self_attention.linear_qkv.weight" && $0.status == .different })
    #expect(r.outputs.contains { !$0.equivalent })
    // Through the scoring path too.
    let sp = try SentencePieceModel(path: Fixtures.path("tiny/tokenizer/tokenizer.model"))
    let conv = try JSONValue.parse(#"{"conversations": [{"value": "Hi", "from": "User", "label": null}, {"value": "Hello!", "from": "Assistant", "label": "x"}], "mask": "User"}"#)
    let prompts = Verifier.Prompts(conversations: [conv], tokenizer: sp)
    let scored = try Verifier(cache: cache).verify(try open(original, cache), try open(swapped, cache), weightsOnly: false, prompts: prompts)
    #expect(scored.outputs.count == 1)
    #expect(!scored.outputs[0].equivalent)
    let same = try Verifier(cache: cache).verify(try open(original, cache), try open(original, cache), weightsOnly: false, prompts: prompts)
    #expect(same.equivalent)
}

@Test func architectureDifferencesAreReported() throws {
    let cache = MappingCache()
    let source = try Fixtures.checkpoints()[0].path
    let scratch = try TemporaryFolder("verify")
    let dir = try scratch.copy(source)
    let cfg = dir + "/model_config.yaml"
    try (try String(contentsOfFile: cfg, encoding: .utf8)).replacingOccurrences(of: "rotary_percentage: 0.5", with: "rotary_percentage: 1.0")
        .write(toFile: cfg, atomically: true, encoding: .utf8)
    let r = try Verifier(cache: cache).verify(try open(source, cache), try open(dir, cache), weightsOnly: false)
    #expect(!r.equivalent)
    #expect(r.configDifferences.contains { $0.hasPrefix("rotary_percentage") })
}

/// A tokenizer that does not match the embedding, or two checkpoints with different true
/// vocabularies, are findings of their own in the report; different true vocabularies are
/// not equivalent.
@Test func vocabularyMismatchesAreFindings() throws {
    let scratch = try TemporaryFolder("vocab-verify")
    let src = Fixtures.path("tiny/legacy_tp1pp1_bf16_te_bytesio")
    let other = try scratch.copy(src, as: "override")
    let config = other + "/model_config.yaml"
    try (try String(contentsOfFile: config, encoding: .utf8) + "override_vocab_size: 512\n")
        .write(toFile: config, atomically: true, encoding: .utf8)
    let cache = MappingCache()
    let r = try Verifier(cache: cache).verify(try open(src, cache), try open(other, cache), weightsOnly: true)
    #expect(r.vocabulary.contains { $0.hasPrefix("A: tokenizer 500 pieces") && $0.contains("embedding 512 rows") })
    #expect(r.vocabulary.contains { $0.hasPrefix("B: override_vocab_size 512 differs from the tokenizer's 500") })
    #expect(r.vocabulary.contains { $0 == "MISMATCH true vocabularies differ: A 500, B 512" })
    #expect(!r.equivalent)
    #expect(!r.tensors.isEmpty)
    #expect(r.tensors.allSatisfy { $0.status == .identical })
    let same = try Verifier(cache: cache).verify(try open(src, cache), try open(src, cache), weightsOnly: true)
    #expect(same.equivalent)
    #expect(!same.vocabulary.contains { $0.contains("MISMATCH") })
}
