import Checkpoints
import Foundation
import Platform
import Testing

private let formats = ["legacy": "nemo-legacy", "zarr": "dist-zarr", "torch_dist": "dist-torch"]

@Test func manifestListsEveryFormAndLayout() {
    let fx = Fixtures.checkpoints
    let forms = Set(fx.compactMap { $0["format"] as? String })
    #expect(forms.isSuperset(of: ["legacy", "zarr", "torch_dist"]))
    #expect(fx.contains { $0["container"] as? String == "tar" })
    let layouts = Set(fx.compactMap { f -> String? in
        guard let tp = f["tp"] as? Int, let pp = f["pp"] as? Int else { return nil }
        return "\(tp)x\(pp)"
    })
    #expect(layouts.isSuperset(of: ["1x1", "2x1", "1x2", "2x2", "4x1"]))
}

/// Every fixture, in every layout and format, is the same global model: same canonical
/// names in the same order, shapes, dtypes and digests as megatron-core's TP1/PP1 state.
@Test(arguments: Fixtures.checkpointPaths)
func fixtureMatchesTheReferenceTensors(_ rel: String) throws {
    let entry = try #require(Fixtures.checkpoints.first { $0["path"] as? String == rel })
    let dtype = try #require(entry["dtype"] as? String)
    let reference = try #require(try Fixtures.json("tiny/reference/tensors.json")[dtype] as? [String: [String: Any]])
    let cache = MappingCache()
    let cat = try Checkpoint.open(Fixtures.path(rel), cache: cache)
    #expect(cat.format.rawValue == formats[entry["format"] as? String ?? ""])
    #expect(cat.tp == entry["tp"] as? Int)
    #expect(cat.pp == entry["pp"] as? Int)
    #expect(Set(cat.tensors.map(\.name)) == Set(reference.keys))
    let digests = try TensorStreamer(cache: cache).digests(cat.tensors)
    for (t, digest) in zip(cat.tensors, digests) {
        let ref = try #require(reference[t.name], "unexpected tensor \(t.name)")
        #expect(t.shape == ref["shape"] as? [Int], "shape of \(t.name)")
        #expect(t.dtype.rawValue == ref["dtype"] as? String, "dtype of \(t.name)")
        #expect(digest == ref["sha256"] as? String, "digest of \(t.name)")
    }
    #expect(cat.config?.paddedVocabSize == 512)
    #expect(cat.config?.rewardOutputs == 9)
}

@Test func tensorsComeInCanonicalOrder() throws {
    let rel = try #require(Fixtures.checkpointPaths.first)
    let names = try Checkpoint.open(Fixtures.path(rel)).tensors.map(\.name)
    #expect(names.first == "embedding.word_embeddings.weight")
    #expect(names.suffix(5) == ["decoder.final_layernorm.weight", "decoder.final_layernorm.bias",
                                "output_layer.weight", "rm_head.weight", "rm_head.bias"])
    let layers = names.compactMap { CanonicalName.layerParts($0)?.0 }
    #expect(layers == layers.sorted())
}

@Test func teFixturesCarryTheirExtraStateAsObjects() throws {
    for f in Fixtures.checkpoints where (f["key_spelling"] as? String) == "te" && f["container"] as? String == "folder" {
        let cat = try Checkpoint.open(Fixtures.path(f["path"] as! String))
        #expect(!cat.objects.isEmpty, "\(f["path"]!)")
        #expect(cat.objects.allSatisfy { $0.name.hasSuffix("._extra_state") })
        #expect(cat.spelling == .transformerEngine)
    }
}
