import Checkpoints
import Foundation
import Platform
import TestSupport
import Testing

/// Opens (and digests) `path`, expecting a TesseraError.
private func failure(_ path: String, digests: Bool = false) -> TesseraError? {
    do {
        let cache = MappingCache()
        let cat = try Checkpoint.open(path, cache: cache)
        if digests { _ = try TensorStreamer(cache: cache).digests(cat.tensors) }
        return nil
    } catch {
        return error
    }
}

/// The error opening a copy of the folder fixture of `format` at TP=`tp`, PP=`pp` after
/// `damage` (given the copy's path) changed it.
private func failureOfDamagedCopy(_ format: String, tp: Int, pp: Int, _ damage: (String) throws -> Void) throws -> TesseraError {
    let scratch = try TemporaryFolder("bad-input")
    let dir = try scratch.copy(try Fixtures.checkpoint(format: format, tp: tp, pp: pp).path)
    try damage(dir)
    return try #require(failure(dir), "the damaged copy was read")
}

private func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Cuts the file at `path` to `keep` of its bytes (given its size).
private func shorten(_ path: String, keep: (Int) -> Int) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    try data.prefix(keep(data.count)).write(to: URL(fileURLWithPath: path))
}

@Test func truncatedRankFileIsACorruptZipNamingTheFile() throws {
    let e = try failureOfDamagedCopy("legacy", tp: 2, pp: 1) { try shorten($0 + "/mp_rank_01/model_weights.ckpt") { $0 / 2 } }
    #expect(e.code == .corrupt)
    #expect(e.file?.hasSuffix("mp_rank_01/model_weights.ckpt") == true)
}

@Test func missingRankFolderIsNamed() throws {
    let e = try failureOfDamagedCopy("legacy", tp: 2, pp: 2) { try FileManager.default.removeItem(atPath: $0 + "/tp_rank_01_pp_rank_001") }
    #expect(e.code == .missing)
    #expect(e.message.contains("tp_rank_01_pp_rank_001"))
}

@Test func missingMpRankAgainstTheConfigIsReported() throws {
    let e = try failureOfDamagedCopy("legacy", tp: 2, pp: 1) { try FileManager.default.removeItem(atPath: $0 + "/mp_rank_01") }
    #expect(e.code == .missing)
    #expect(e.message.contains("TP=2"))
}

@Test func ranksThatDisagreeOnAShapeAreNamed() throws {
    // A TP=1 rank file dropped in as TP rank 1 of a TP=2 checkpoint: every sharded tensor doubles.
    let whole = try Fixtures.checkpoint(format: "legacy", tp: 1, pp: 1).path + "/model_weights.ckpt"
    let e = try failureOfDamagedCopy("legacy", tp: 2, pp: 1) { dir in
        try FileManager.default.removeItem(atPath: dir + "/mp_rank_01/model_weights.ckpt")
        try FileManager.default.copyItem(atPath: whole, toPath: dir + "/mp_rank_01/model_weights.ckpt")
    }
    #expect(e.code == .inconsistent)
    #expect(e.tensor != nil)
    #expect(e.message.contains("disagree"))
}

@Test func replicatedTensorsThatDifferBetweenRanksAreFound() throws {
    let scratch = try TemporaryFolder("bad-input")
    let dir = try scratch.copy(try Fixtures.checkpoint(format: "legacy", tp: 2, pp: 1).path)
    let cat = try Checkpoint.open(dir)
    let norm = try #require(cat.tensor("decoder.layers.1.mlp.linear_fc1.layer_norm_weight"))
    let copy = try #require(norm.replicas.first?.first)
    #expect(copy.storage.path.contains("mp_rank_01"))
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: copy.storage.path)))
    bytes[copy.storage.offset + copy.storageOffset * copy.dtype.size] ^= 0x01
    try write(bytes, to: copy.storage.path)
    #expect(failure(dir) == nil, "metadata-only reading does not touch the values")
    let e = try #require(failure(dir, digests: true))
    #expect(e.code == .inconsistent)
    #expect(e.tensor == "decoder.layers.1.mlp.linear_fc1.layer_norm_weight")
}

@Test func unknownShardedBackendIsRefused() throws {
    let e = try failureOfDamagedCopy("zarr", tp: 1, pp: 1) {
        try write(Array(#"{"sharded_backend": "fancy", "sharded_backend_version": 1}"#.utf8), to: $0 + "/model_weights/metadata.json")
    }
    #expect(e.code == .unsupported)
    #expect(e.message.contains("fancy"))
    #expect(e.file?.hasSuffix("metadata.json") == true)
}

@Test func truncatedZarrChunkIsNamed() throws {
    let e = try failureOfDamagedCopy("zarr", tp: 2, pp: 2) {
        try shorten($0 + "/model_weights/model.decoder.layers.mlp.linear_fc1.weight/0.1.0") { $0 - 2 }
    }
    #expect(e.code == .corrupt)
    #expect(e.file?.hasSuffix("0.1.0") == true)
    #expect(e.tensor == "model.decoder.layers.mlp.linear_fc1.weight")
}

@Test func missingZarrChunkIsNamed() throws {
    let e = try failureOfDamagedCopy("zarr", tp: 2, pp: 2) {
        try FileManager.default.removeItem(atPath: $0 + "/model_weights/model.embedding.word_embeddings.weight/1.0")
    }
    #expect(e.code == .missing)
    #expect(e.message.contains("1.0"))
}

@Test func pieceOutsideItsFileIsAnOutOfBoundsError() throws {
    // Cut the torch_dist data files short: the ranges .metadata names now run past their end.
    let e = try failureOfDamagedCopy("torch_dist", tp: 2, pp: 2) { dir in
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/model_weights").filter { $0.hasSuffix(".distcp") }
        for f in try requireCases(files, ".distcp files") { try shorten(dir + "/model_weights/" + f) { $0 / 2 } }
    }
    #expect(e.code == .outOfBounds)
    #expect(e.file?.hasSuffix(".distcp") == true)
    #expect(e.tensor != nil)
}

@Test func layerCountAgainstTheConfigIsChecked() throws {
    let e = try failureOfDamagedCopy("legacy", tp: 1, pp: 1) { dir in
        let cfg = dir + "/model_config.yaml"
        let text = try String(contentsOfFile: cfg, encoding: .utf8)
        try text.replacingOccurrences(of: "num_layers: 4", with: "num_layers: 6").write(toFile: cfg, atomically: true, encoding: .utf8)
    }
    #expect(e.code == .inconsistent)
    #expect(e.message.contains("num_layers 6"))
}

@Test func committedBadFixturesFailCleanly() throws {
    // unsafe_members.nemo is a readable tar; see ContainerTests.
    let refused = try Fixtures.badInputs().filter { !$0.hasSuffix("unsafe_members.nemo") }
    for rel in try requireCases(refused, "bad inputs to refuse", atLeast: 6) {
        #expect(failure(Fixtures.path(rel), digests: true) != nil, "\(rel) should be refused")
    }
}

@Test func noCheckpointIsAClearError() throws {
    let empty = try TemporaryFolder("empty")
    let e = try #require(failure(empty.path))
    #expect(e.code == .missing)
    #expect(e.message.contains("model_weights.ckpt"))
}

/// A model config that does not describe the checkpoint's tensors (edited, or taken from
/// another model) is refused when the checkpoint is opened, naming the tensor, both shapes and
/// the config keys: before, a gated activation over plain fc1 rows, or other head sizes, ran
/// or converted by the wrong sizes.
@Test(arguments: [("hidden_size: 64", "hidden_size: 96", "embedding.word_embeddings.weight", "[rows, 96]"),
                  ("kv_channels: 8", "kv_channels: 16", "decoder.layers.0.self_attention.linear_qkv.weight", "[256, 64]"),
                  ("ffn_hidden_size: 256", "ffn_hidden_size: 128", "decoder.layers.0.mlp.linear_fc1.weight", "[128, 64]"),
                  ("activation: squared-relu", "activation: swiglu", "decoder.layers.0.mlp.linear_fc1.weight", "[512, 64]"),
                  ("num_attention_heads: 8", "num_attention_heads: 16\nkv_channels: 4", "decoder.layers.0.self_attention.linear_qkv.weight", "[96, 64]"),
                  ("num_attributes: 9", "num_attributes: 5", "rm_head.weight", "[5, 64]")])
func configsThatDoNotDescribeTheTensorsAreRefused(_ line: String, _ edit: String, _ tensor: String, _ expected: String) throws {
    let scratch = try TemporaryFolder("config-shapes")
    let copy = try scratch.copy(Fixtures.path("tiny/dist_zarr_tp1pp1_bf16"))
    let path = copy + "/model_config.yaml"
    var text = try String(contentsOfFile: path, encoding: .utf8)
    if line != "kv_channels: 8", edit.contains("kv_channels") { text = text.replacingOccurrences(of: "kv_channels: 8\n", with: "") }
    #expect(text.contains(line + "\n"), "\(line)")
    text = text.replacingOccurrences(of: line + "\n", with: edit + "\n")
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    do {
        _ = try Checkpoint.open(copy)
        Issue.record("opened with \(edit)")
    } catch {
        #expect(error.code == .inconsistent && error.tensor == tensor, "\(error)")
        #expect(error.message.contains("but the model config implies \(expected)"), "\(error.message)")
        #expect(error.file?.hasSuffix("model_config.yaml") == true)
    }
}
