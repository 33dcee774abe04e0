import Checkpoints
import Foundation
import Platform
import TestSupport
import Testing

private let formats = ["legacy": "nemo-legacy", "zarr": "dist-zarr", "torch_dist": "dist-torch"]

@Test func manifestListsEveryFormAndLayout() throws {
    let fx = try Fixtures.checkpoints()
    #expect(Set(fx.map(\.format)).isSuperset(of: ["legacy", "zarr", "torch_dist"]))
    #expect(fx.contains { $0.container == "tar" })
    #expect(Set(fx.map { "\($0.tp)x\($0.pp)" }).isSuperset(of: ["1x1", "2x1", "1x2", "2x2", "4x1"]))
}

/// Every fixture, in every layout and format, is the same global model: same canonical
/// names in the same order, shapes, dtypes and digests as megatron-core's TP1/PP1 state.
@Test(arguments: try Fixtures.checkpoints().map(\.relativePath))
func fixtureMatchesTheReferenceTensors(_ rel: String) throws {
    let entry = try Fixtures.checkpoint { $0.relativePath == rel }
    let reference = try #require(try Fixtures.json("tiny/reference/tensors.json")[entry.dtype] as? [String: [String: Any]])
    let cache = MappingCache()
    let cat = try Checkpoint.open(entry.path, cache: cache)
    #expect(cat.format.rawValue == formats[entry.format])
    #expect(cat.tp == entry.tp)
    #expect(cat.pp == entry.pp)
    #expect(Set(cat.tensors.map(\.name)) == Set(reference.keys))
    let digests = try TensorStreamer(cache: cache).digests(cat.tensors)
    for (t, digest) in zipSameCount(cat.tensors, digests, "tensors and digests") {
        let ref = try #require(reference[t.name], "unexpected tensor \(t.name)")
        #expect(t.shape == ref["shape"] as? [Int], "shape of \(t.name)")
        #expect(t.dtype.rawValue == ref["dtype"] as? String, "dtype of \(t.name)")
        #expect(digest == ref["sha256"] as? String, "digest of \(t.name)")
    }
    #expect(cat.config?.paddedVocabSize == 512)
    #expect(cat.config?.rewardOutputs == 9)
}

@Test func tensorsComeInCanonicalOrder() throws {
    let names = try Checkpoint.open(try Fixtures.checkpoints()[0].path).tensors.map(\.name)
    #expect(names.first == "embedding.word_embeddings.weight")
    #expect(names.suffix(5) == ["decoder.final_layernorm.weight", "decoder.final_layernorm.bias",
                                "output_layer.weight", "rm_head.weight", "rm_head.bias"])
    let layers = names.compactMap { CanonicalName.layerParts($0)?.0 }
    #expect(layers == layers.sorted())
}

@Test func teFixturesCarryTheirExtraStateAsObjects() throws {
    let te = try Fixtures.checkpoints().filter { $0.keySpelling == "te" && $0.container == "folder" }
    for f in try requireCases(te, "TE-spelled folder fixtures") {
        let cat = try Checkpoint.open(f.path)
        #expect(!cat.objects.isEmpty, "\(f.relativePath)")
        #expect(cat.objects.allSatisfy { $0.name.hasSuffix("._extra_state") })
        #expect(cat.spelling == .transformerEngine)
    }
}
