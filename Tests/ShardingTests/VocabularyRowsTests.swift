import Checkpoints
import Foundation
import Platform
import Sharding
import TestSupport
import Testing

/// The tiny reward model (every one of its 512 embedding and output rows trained: random)
/// with its 500-piece tokenizer artifact replaced by a 104-piece one, and optionally
/// `override_vocab_size` in its config: the case of a converter silently dropping weights.
private func smallTokenizerModel(in scratch: TemporaryFolder, override: Int?) throws -> String {
    let src = Fixtures.path("tiny/legacy_tp1pp1_bf16_te_bytesio")
    let dst = scratch.path + "/source"
    try FileManager.default.copyItem(atPath: src, toPath: dst)
    let configPath = dst + "/model_config.yaml"
    var config = try String(contentsOfFile: configPath, encoding: .utf8)
    let tokenizer = try #require(config.split(separator: "\n").first { $0.contains("model: nemo:") })
        .split(separator: ":").last.map(String.init)!
    try FileManager.default.removeItem(atPath: dst + "/" + tokenizer)
    try FileManager.default.copyItem(atPath: Fixtures.path("tiny/tokenizer/unigram.model"), toPath: dst + "/" + tokenizer)
    if let override { config += "override_vocab_size: \(override)\n" }
    try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    return dst
}

private func embeddingDigest(_ c: Catalogue, cache: MappingCache) throws -> (rows: Int, digest: String) {
    let t = try #require(c.tensor("embedding.word_embeddings.weight"))
    return (t.shape[0], try TensorStreamer(cache: cache).sha256(t))
}

/// With `override_vocab_size` the 512 rows are the true vocabulary: every row is kept, in
/// every output format, at any TP.
@Test(arguments: try requireCases(OutputFormat.allCases, "output formats"))
func overrideVocabSizeKeepsEveryRow(_ format: OutputFormat) throws {
    #expect(OutputFormat.allCases.count == 5)
    let scratch = try TemporaryFolder("vocab")
    let cache = MappingCache()
    let source = try Checkpoint.open(try smallTokenizerModel(in: scratch, override: 512), cache: cache)
    #expect(source.tokenizerVocabulary(cache: cache) == 104)
    #expect(source.trueVocabulary(cache: cache) == 512)
    let dst = scratch.path + "/out-\(format.rawValue)"
    let report = try Converter.convert(source, to: dst, layout: TargetLayout(tp: 2, pp: 1, format: format), force: false, cache: cache)
    #expect(report.vocabulary == "unchanged")
    let written = try Checkpoint.open(dst, cache: cache)
    let (a, b) = (try embeddingDigest(source, cache: cache), try embeddingDigest(written, cache: cache))
    #expect(b.rows == 512)
    #expect(a.digest == b.digest)
}

/// Without the override, rows 128..<512 lie beyond the 104-piece tokenizer's padded
/// vocabulary and hold weights: the conversion stops, names the tensor and the first such
/// row, and leaves nothing behind; `--vocab-rows keep` and `truncate` say what they do.
@Test func rowsHoldingWeightsAreNeverDroppedSilently() throws {
    let scratch = try TemporaryFolder("vocab")
    let cache = MappingCache()
    let source = try Checkpoint.open(try smallTokenizerModel(in: scratch, override: nil), cache: cache)
    for format in OutputFormat.allCases {
        let dst = scratch.path + "/refused-\(format.rawValue)"
        do {
            try Converter.convert(source, to: dst, layout: TargetLayout(tp: 1, pp: 1, format: format), force: false, cache: cache)
            Issue.record("\(format.rawValue): rows holding weights were dropped")
        } catch {
            #expect(error.tensor == "embedding.word_embeddings.weight" || error.tensor == "output_layer.weight")
            #expect(error.message.contains("row 128"), "\(error.message)")
            #expect(error.message.contains("104 pieces") && error.message.contains("--vocab-rows keep"))
        }
        #expect(!FileManager.default.fileExists(atPath: dst))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.contains("tessera-partial") }
        #expect(leftovers.isEmpty)
    }
    var keep = TargetLayout(tp: 1, pp: 1, format: .hdf5)
    keep.vocabularyRows = .keep
    let kept = try Converter.convert(source, to: scratch.path + "/kept.h5", layout: keep, force: false, cache: cache)
    #expect(kept.vocabulary == "kept")
    #expect(try embeddingDigest(try Checkpoint.open(kept.destination, cache: cache), cache: cache).rows == 512)
    var cut = TargetLayout(tp: 1, pp: 1, format: .nemo)
    cut.vocabularyRows = .truncate
    let truncated = try Converter.convert(source, to: scratch.path + "/cut", layout: cut, force: false, cache: cache)
    #expect(truncated.vocabulary == "truncated")
    #expect(try embeddingDigest(try Checkpoint.open(truncated.destination, cache: cache), cache: cache).rows == 128)
}

/// Real zero padding is still added and dropped: with `make_vocab_size_divisible_by: 256`,
/// TP4 pads the 500-token vocabulary to 1024 rows with zeros; with 128 again, going back to
/// TP1 drops those zero rows, giving the original bytes.
@Test func zeroPaddingIsAddedAndDroppedAsBefore() throws {
    let scratch = try TemporaryFolder("vocab")
    let cache = MappingCache()
    let original = Fixtures.path("tiny/legacy_tp1pp1_bf16_te_bytesio")
    let copy = scratch.path + "/div256"
    try FileManager.default.copyItem(atPath: original, toPath: copy)
    func setDivisor(_ folder: String, _ d: Int) throws {
        let path = folder + "/model_config.yaml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try ConfigText.set("make_vocab_size_divisible_by", to: String(d), in: text).write(toFile: path, atomically: true, encoding: .utf8)
    }
    try setDivisor(copy, 256)
    let wide = try Converter.convert(try Checkpoint.open(copy, cache: cache), to: scratch.path + "/tp4",
                                     layout: TargetLayout(tp: 4, pp: 1, format: .distTorch), force: false, cache: cache)
    #expect(wide.vocabulary == "padded")
    try setDivisor(wide.destination, 128)
    let padded = try Checkpoint.open(wide.destination, cache: MappingCache())
    #expect(try embeddingDigest(padded, cache: cache).rows == 1024)
    let back = try Converter.convert(padded, to: scratch.path + "/tp1", layout: TargetLayout(tp: 1, pp: 1, format: .nemo),
                                     force: false, cache: cache)
    #expect(back.vocabulary == "dropped-zero-padding")
    let source = try Checkpoint.open(original, cache: cache)
    let (a, b) = (try embeddingDigest(source, cache: cache), try embeddingDigest(try Checkpoint.open(back.destination, cache: cache), cache: cache))
    #expect(b.rows == 512)
    #expect(a.digest == b.digest)
}

/// `override_vocab_size` is the exact number of rows NeMo builds at every TP (NeMo-Aligner:
/// `vocab_size=cfg.get("override_vocab_size", padded_vocab_size)`), not a vocabulary to pad:
/// 514 gives 514 rows at TP2 (2 zero rows added, where padding would have given 768 that NeMo
/// cannot load), TP4 is refused before anything is written, and `--vocab-rows keep` under a
/// smaller override writes every row with the config's override saying so.
@Test func overrideVocabSizeIsTheRowCountAtEveryTP() throws {
    let scratch = try TemporaryFolder("vocab")
    let cache = MappingCache()
    let source = try Checkpoint.open(try smallTokenizerModel(in: scratch, override: 514), cache: cache)
    let two = try Converter.convert(source, to: scratch.path + "/tp2", layout: TargetLayout(tp: 2, pp: 1, format: .nemo),
                                    force: false, cache: cache)
    #expect(two.vocabulary == "padded")
    let written = try Checkpoint.open(two.destination, cache: cache)
    #expect(try embeddingDigest(written, cache: cache).rows == 514)
    #expect(written.config?.overrideVocabSize == 514)
    do {
        try Converter.convert(source, to: scratch.path + "/tp4", layout: TargetLayout(tp: 4, pp: 1, format: .distTorch),
                              force: false, cache: cache)
        Issue.record("TP4 does not divide override_vocab_size 514, yet the conversion ran")
    } catch {
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("override_vocab_size 514"), "\(error.message)")
    }
    #expect(!FileManager.default.fileExists(atPath: scratch.path + "/tp4"))

    let other = try TemporaryFolder("vocab")
    let smaller = try Checkpoint.open(try smallTokenizerModel(in: other, override: 256), cache: cache)
    var keep = TargetLayout(tp: 4, pp: 1, format: .nemo)
    keep.vocabularyRows = .keep
    let kept = try Converter.convert(smaller, to: scratch.path + "/kept", layout: keep, force: false, cache: cache)
    #expect(kept.vocabulary == "kept")
    let keptCheckpoint = try Checkpoint.open(kept.destination, cache: cache)
    #expect(try embeddingDigest(keptCheckpoint, cache: cache).rows == 512)
    #expect(keptCheckpoint.config?.overrideVocabSize == 512)
}

/// An override far beyond the embedding (10^12 rows over 512) had convert writing zero rows for
/// minutes on end (terabytes, as holes); it is refused before anything is written, naming the
/// sizes. An override a few rows above the embedding still pads (the test above).
@Test func anOverrideFarBeyondTheEmbeddingIsRefused() throws {
    let scratch = try TemporaryFolder("vocab")
    let cache = MappingCache()
    let source = try Checkpoint.open(try smallTokenizerModel(in: scratch, override: 1_000_000_000_000), cache: cache)
    let dst = scratch.path + "/out"
    do {
        try Converter.convert(source, to: dst, layout: TargetLayout(tp: 1, pp: 1, format: .nemo), force: false, cache: cache)
        Issue.record("padded 512 rows to 10^12")
    } catch {
        #expect(error.code == .inconsistent)
        #expect(error.message.contains("from the embedding's 512 rows to 1000000000000"), "\(error.message)")
    }
    #expect(!FileManager.default.fileExists(atPath: dst))
}
