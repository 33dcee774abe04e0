import Checkpoints
import Foundation
import Platform
import Sharding
import TestSupport
import Testing

private func files(_ folder: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for f in try FileManager.default.contentsOfDirectory(atPath: folder) {
        out[f] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + f))
    }
    return out
}

/// NeMo -> HF (small shards) -> read back: the same global tensors, QKV fused back from
/// q/k/v pieces pointing into the safetensors files; HF -> every NeMo format and HDF5: the
/// same tensors; HF -> NeMo TP2 -> HF: the same bytes.
@Test(arguments: ["tiny/legacy_tp1pp1_fp32_te_uint8_pickle", "tiny/nemo/dist_zarr_tp2pp2_bf16.nemo"])
func nemoToHFAndBackKeepsEveryByte(_ rel: String) throws {
    let s = try TemporaryFolder("hf")
    let cache = MappingCache()
    let source = try Checkpoint.open(Fixtures.path(rel), cache: cache)
    var layout = TargetLayout(tp: 2, pp: 2, format: .hf)
    layout.shardSize = 100_000
    let hf = s.path + "/hf"
    try Converter.convert(source, to: hf, layout: layout, force: false, cache: cache)
    let shards = try FileManager.default.contentsOfDirectory(atPath: hf).filter { $0.hasPrefix("model-") }
    #expect(shards.count > 1)
    let read = try Checkpoint.open(hf, cache: cache)
    #expect(read.format == .hf)
    let qkv = try #require(read.tensor("decoder.layers.0.self_attention.linear_qkv.weight"))
    #expect(qkv.pieces.count == 3 * 4)   // q, k and v of each of the 4 query groups
    let (a, b) = (try digests(source, cache: cache), try digests(read, cache: cache))
    try #require(a.count == b.count)
    #expect(a == b)
    for format in [OutputFormat.distZarr, .distTorch, .hdf5] {
        let out = s.path + "/from-hf-\(format.rawValue)"
        try Converter.convert(read, to: out, layout: TargetLayout(tp: 2, pp: 2, format: format), force: false, cache: cache)
        #expect(try digests(try Checkpoint.open(out, cache: cache), cache: cache) == a, "\(format.rawValue)")
    }
    let nemo = s.path + "/nemo"
    try Converter.convert(read, to: nemo, layout: TargetLayout(tp: 2, pp: 1, format: .nemo), force: false, cache: cache)
    let back = s.path + "/back"
    try Converter.convert(try Checkpoint.open(nemo, cache: cache), to: back, layout: layout, force: false, cache: cache)
    let (x, y) = (try files(hf), try files(back))
    try #require(x.count == y.count)
    #expect(x.keys.sorted() == y.keys.sorted())
    for (name, data) in x { #expect(y[name] == data, "\(name)") }
}

/// The tiny FP32 fixture exported as an HF folder `hf` of `scratch`; its path.
private func tinyExport(in scratch: TemporaryFolder, cache: MappingCache) throws -> String {
    let hf = scratch.path + "/hf"
    try Converter.convert(try Checkpoint.open(Fixtures.path("tiny/legacy_tp1pp1_fp32_te_uint8_pickle"), cache: cache), to: hf,
                          layout: TargetLayout(tp: 1, pp: 1, format: .hf), force: false, cache: cache)
    return hf
}

/// A folder whose index names a file that is not there is refused, naming the index.
@Test func indexNamingAMissingShardIsRefused() throws {
    let s = try TemporaryFolder("hf")
    let hf = try tinyExport(in: s, cache: MappingCache())
    try FileManager.default.removeItem(atPath: hf + "/model-00001-of-00001.safetensors")
    do {
        _ = try Checkpoint.open(hf)
        Issue.record("accepted")
    } catch {
        #expect(error.code == .missing)
        #expect(error.file?.hasSuffix("model.safetensors.index.json") == true)
    }
}

/// A Hugging Face folder without `tokenizer.model` converts to NeMo with a note saying the output
/// has no tokenizer artifact, and a config that names none (it used to name a missing one).
@Test func aFolderWithoutTokenizerModelIsNotedAndNamesNone() throws {
    let s = try TemporaryFolder("hf")
    let cache = MappingCache()
    let hf = try tinyExport(in: s, cache: cache)
    for name in ["tokenizer.model", "nemo_model_config.yaml"] { try FileManager.default.removeItem(atPath: hf + "/" + name) }
    let nemo = s.path + "/nemo"
    let report = try Converter.convert(try Checkpoint.open(hf, cache: cache), to: nemo, layout: TargetLayout(tp: 2, pp: 1, format: .nemo),
                                       force: false, cache: cache)
    #expect(report.notes.contains { $0.contains("no tokenizer.model") }, "\(report.notes)")
    let config = try String(contentsOfFile: nemo + "/model_config.yaml", encoding: .utf8)
    #expect(!config.contains("tokenizer"), "\(config)")
    let written = try FileManager.default.contentsOfDirectory(atPath: nemo)
    #expect(written.contains("model_config.yaml") && written.allSatisfy { !$0.contains("tokenizer") }, "\(written)")
}

/// A config.json with scaled RoPE (linear, dynamic, yarn, llama3) is refused naming the rope
/// type (it read as default RoPE); the default one, under either key, is read.
@Test func scaledRopeInConfigJSONIsRefused() throws {
    let s = try TemporaryFolder("hf")
    let hf = try tinyExport(in: s, cache: MappingCache())
    try FileManager.default.removeItem(atPath: hf + "/nemo_model_config.yaml") // the config then comes from config.json alone
    let path = hf + "/config.json"
    let original = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    let cases = try requireCases([("rope_scaling", ["rope_type": "linear", "factor": 4.0], "linear"),
                                  ("rope_parameters", ["rope_type": "yarn", "factor": 2.0, "rope_theta": 10000.0], "yarn"),
                                  ("rope_scaling", ["type": "dynamic", "factor": 2.0], "dynamic")], "rope settings")
    for (key, value, kind) in cases {
        var j = original
        j[key] = value
        try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try Checkpoint.open(hf)
        } throws: { error in
            let e = error as? TesseraError
            return e?.code == .unsupported && e?.message.contains("rope_type '\(kind)'") == true
        }
    }
    var j = original
    j["rope_scaling"] = NSNull()
    try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: path))
    _ = try Checkpoint.open(hf)
}

/// Sizes config.json states that transformers checks against the weights are checked too: a
/// `vocab_size`, `num_labels` or `id2label` that does not match the embedding or the score layer
/// was ignored (the folder read, though transformers refuses to load it), and a non-positive
/// `max_position_embeddings` ran as a sequence length.
@Test func configJSONSizesThatDoNotMatchTheWeightsAreRefused() throws {
    let s = try TemporaryFolder("hf")
    let hf = try tinyExport(in: s, cache: MappingCache())
    let path = hf + "/config.json"
    let original = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    let labels = try #require(original["id2label"] as? [String: Any]).count
    let cases: [(String, Any?, String)] = try requireCases([
        ("vocab_size", 1_000_000_000_000_000, "vocab_size is 1000000000000000, but the embedding has"),
        ("num_labels", labels + 1, "states \(labels + 1) labels"),
        ("num_labels", nil, ""), // id2label alone says how many: it matches
        ("max_position_embeddings", -5, "'encoder_seq_length' is -5, outside 1...1073741824"),
    ], "config.json sizes")
    for (key, value, expected) in cases {
        var j = original
        j[key] = value
        try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: path))
        if expected.isEmpty {
            _ = try Checkpoint.open(hf)
            continue
        }
        #expect {
            _ = try Checkpoint.open(hf)
        } throws: { error in
            (error as? TesseraError)?.message.contains(expected) == true
        }
    }
    var j = original
    j.removeValue(forKey: "num_labels")
    j["id2label"] = Dictionary(uniqueKeysWithValues: (0..<(labels + 3)).map { ("\($0)", "x\($0)") })
    try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: path))
    #expect(throws: TesseraError.self) { _ = try Checkpoint.open(hf) }
}
