import Checkpoints
import Foundation
import Platform
import Testing

private func fixture(format: String, tp: Int, pp: Int, container: String = "folder") throws -> String {
    let f = try #require(Fixtures.checkpoints.first {
        $0["format"] as? String == format && $0["tp"] as? Int == tp && $0["pp"] as? Int == pp
            && $0["container"] as? String == container
    })
    return try #require(f["path"] as? String)
}

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

private func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Test func truncatedRankFileIsACorruptZipNamingTheFile() throws {
    let dir = try Fixtures.scratchCopy(try fixture(format: "legacy", tp: 2, pp: 1))
    let file = dir + "/mp_rank_01/model_weights.ckpt"
    let data = try Data(contentsOf: URL(fileURLWithPath: file))
    try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: file))
    let e = try #require(failure(dir))
    #expect(e.code == .corrupt)
    #expect(e.file?.hasSuffix("mp_rank_01/model_weights.ckpt") == true)
}

@Test func missingRankFolderIsNamed() throws {
    let dir = try Fixtures.scratchCopy(try fixture(format: "legacy", tp: 2, pp: 2))
    try FileManager.default.removeItem(atPath: dir + "/tp_rank_01_pp_rank_001")
    let e = try #require(failure(dir))
    #expect(e.code == .missing)
    #expect(e.message.contains("tp_rank_01_pp_rank_001"))
}

@Test func missingMpRankAgainstTheConfigIsReported() throws {
    let dir = try Fixtures.scratchCopy(try fixture(format: "legacy", tp: 2, pp: 1))
    try FileManager.default.removeItem(atPath: dir + "/mp_rank_01")
    let e = try #require(failure(dir))
    #expect(e.code == .missing)
    #expect(e.message.contains("TP=2"))
}

@Test func ranksThatDisagreeOnAShapeAreNamed() throws {
    // A TP=1 rank file dropped in as TP rank 1 of a TP=2 checkpoint: every sharded tensor doubles.
    let dir = try Fixtures.scratchCopy(try fixture(format: "legacy", tp: 2, pp: 1))
    let whole = Fixtures.path(try fixture(format: "legacy", tp: 1, pp: 1)) + "/model_weights.ckpt"
    try FileManager.default.removeItem(atPath: dir + "/mp_rank_01/model_weights.ckpt")
    try FileManager.default.copyItem(atPath: whole, toPath: dir + "/mp_rank_01/model_weights.ckpt")
    let e = try #require(failure(dir))
    #expect(e.code == .inconsistent)
    #expect(e.tensor != nil)
    #expect(e.message.contains("disagree"))
}

@Test func replicatedTensorsThatDifferBetweenRanksAreFound() throws {
    let dir = try Fixtures.scratchCopy(try fixture(format: "legacy", tp: 2, pp: 1))
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
    let dir = try Fixtures.scratchCopy(try fixture(format: "zarr", tp: 1, pp: 1))
    try write(Array(#"{"sharded_backend": "fancy", "sharded_backend_version": 1}"#.utf8),
              to: dir + "/model_weights/metadata.json")
    let e = try #require(failure(dir))
    #expect(e.code == .unsupported)
    #expect(e.message.contains("fancy"))
    #expect(e.file?.hasSuffix("metadata.json") == true)
}

@Test func truncatedZarrChunkIsNamed() throws {
    let dir = try Fixtures.scratchCopy(try fixture(format: "zarr", tp: 2, pp: 2))
    let chunk = dir + "/model_weights/model.decoder.layers.mlp.linear_fc1.weight/0.1.0"
    let data = try Data(contentsOf: URL(fileURLWithPath: chunk))
    try data.prefix(data.count - 2).write(to: URL(fileURLWithPath: chunk))
    let e = try #require(failure(dir))
    #expect(e.code == .corrupt)
    #expect(e.file?.hasSuffix("0.1.0") == true)
    #expect(e.tensor == "model.decoder.layers.mlp.linear_fc1.weight")
}

@Test func missingZarrChunkIsNamed() throws {
    let dir = try Fixtures.scratchCopy(try fixture(format: "zarr", tp: 2, pp: 2))
    try FileManager.default.removeItem(atPath: dir + "/model_weights/model.embedding.word_embeddings.weight/1.0")
    let e = try #require(failure(dir))
    #expect(e.code == .missing)
    #expect(e.message.contains("1.0"))
}

@Test func pieceOutsideItsFileIsAnOutOfBoundsError() throws {
    // Cut the torch_dist data files short: the ranges .metadata names now run past their end.
    let dir = try Fixtures.scratchCopy(try fixture(format: "torch_dist", tp: 2, pp: 2))
    for f in try FileManager.default.contentsOfDirectory(atPath: dir + "/model_weights") where f.hasSuffix(".distcp") {
        let path = dir + "/model_weights/" + f
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
    }
    let e = try #require(failure(dir))
    #expect(e.code == .outOfBounds)
    #expect(e.file?.hasSuffix(".distcp") == true)
    #expect(e.tensor != nil)
}

@Test func layerCountAgainstTheConfigIsChecked() throws {
    let dir = try Fixtures.scratchCopy(try fixture(format: "legacy", tp: 1, pp: 1))
    let cfg = dir + "/model_config.yaml"
    let text = try String(contentsOfFile: cfg, encoding: .utf8)
    try text.replacingOccurrences(of: "num_layers: 4", with: "num_layers: 6").write(toFile: cfg, atomically: true, encoding: .utf8)
    let e = try #require(failure(dir))
    #expect(e.code == .inconsistent)
    #expect(e.message.contains("num_layers 6"))
}

@Test func committedBadFixturesFailCleanly() throws {
    let manifest = try Fixtures.json("tiny/manifest.json")
    let bad = try #require(manifest["bad"] as? [[String: Any]])
    for entry in bad {
        let rel = try #require(entry["path"] as? String)
        if rel.hasSuffix("unsafe_members.nemo") { continue }   // a readable tar; see ContainerTests
        #expect(failure(Fixtures.path(rel), digests: true) != nil, "\(rel) should be refused")
    }
}

@Test func noCheckpointIsAClearError() throws {
    let dir = NSTemporaryDirectory() + "tessera-empty-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let e = try #require(failure(dir))
    #expect(e.code == .missing)
    #expect(e.message.contains("model_weights.ckpt"))
}
