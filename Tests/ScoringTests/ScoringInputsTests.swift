import Checkpoints
import Foundation
import Codecs
import Platform
@testable import Scoring
import Testing
import TestSupport
import Tokenizer

private let tinyFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/tiny").path

/// A checkpoint's catalogue with its config and files but no tensors.
private func bare(config: ModelConfig?, root: String = tinyFixtures) -> Catalogue {
    Catalogue(format: .nemoLegacy, tp: 1, pp: 1, config: config, tensors: [], objects: [], spelling: nil,
              container: DirectoryContainer(root: root), weightsPath: "")
}

@Test func theTokenizerGivenIsUsed() throws {
    let sp = try SentencePieceModel.forScoring(path: tinyFixtures + "/tokenizer/unigram.model", catalogue: nil)
    #expect(sp.modelType == .unigram)
}

@Test func withoutOneTheCheckpointsTokenizerIsUsed() throws {
    let cat = try Checkpoint.open(tinyFixtures + "/legacy_tp2pp2_bf16_te_bytesio", cache: MappingCache())
    let name = try #require(cat.config?.tokenizerModel)
    let sp = try SentencePieceModel.forScoring(path: nil, catalogue: cat)
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tinyFixtures + "/legacy_tp2pp2_bf16_te_bytesio/" + name)))
    let same = try SentencePieceModel(bytes: bytes, file: name)
    #expect(sp.count == same.count && sp.encodeIDs("Hello world") == same.encodeIDs("Hello world"))
}

@Test func aCheckpointWithoutATokenizerIsNamed() throws {
    let config = try ModelConfig(yaml: "num_layers: 1\nhidden_size: 8\nnum_attention_heads: 2\n", file: "model_config.yaml")
    for (cat, file) in [(bare(config: config), tinyFixtures as String?), (bare(config: nil), tinyFixtures), (nil, nil)] {
        do throws(TesseraError) {
            _ = try SentencePieceModel.forScoring(path: nil, catalogue: cat)
            Issue.record("a tokenizer was found")
        } catch {
            #expect(error.code == .missing && error.message == "the checkpoint carries no tokenizer; pass --tokenizer" && error.file == file)
        }
    }
}

@Test func inputsAreCutToTheModelsSequenceLength() throws {
    let config = try ModelConfig(yaml: "num_layers: 1\nhidden_size: 8\nnum_attention_heads: 2\nencoder_seq_length: 77\n", file: "c.yaml")
    #expect(ScoringOptions(for: bare(config: config)).maxLength == 77)
    #expect(ScoringOptions(for: bare(config: config), maxLength: 12).maxLength == 12)
    #expect(ScoringOptions(for: bare(config: nil)).maxLength == 4096)
    let defaults = ScoringOptions(for: bare(config: config))
    #expect(defaults.precision == ScoringOptions(maxLength: 77).precision && defaults.prefixReuse && !defaults.keepEnd)
}

/// Two shard outputs of a two-line input, made by hand, in a temporary folder.
private struct TwoShards {
    let temporary: TemporaryFolder
    var folder: String { temporary.path }
    let input: ConversationInput
    let records = [#"{"a": 1, "rewards": [0.5]}"#, #"{"a": 2, "rewards": [1.5]}"#]

    init() throws {
        temporary = try TemporaryFolder("merge-files")
        input = ConversationInput(path: temporary.file("in.jsonl"), bytes: Array("{\"a\": 1}\n{\"a\": 2}\n".utf8))
        for i in 0..<2 {
            let header = ShardHeader(shard: ShardSpec(index: i, count: 2), balance: .lines, inputSHA256: input.sha256, inputRecords: 2,
                                     lines: 1, tokens: 1, checkpoint: "sha256:test", options: "test")
            let bytes = header.line + ShardRecord.encode(line: i + 1, tokens: 1, ms: 1, record: records[i])
            try Data(bytes).write(to: URL(fileURLWithPath: shard(i)))
        }
    }

    func shard(_ i: Int) -> String { folder + "/shard-\(i).jsonl" }
}

@Test func aMergeWritesItsOutputAndManifest() throws {
    let s = try TwoShards()
    let merge = try ShardMerge(input: s.input, shardFiles: [s.shard(1), s.shard(0)])
    let output = s.folder + "/merged.jsonl"
    let manifest = try merge.write(output: output, force: false, manifest: nil)
    #expect(manifest == output + ".manifest.json")
    let written = try String(contentsOfFile: output, encoding: .utf8)
    #expect(written == s.records.joined(separator: "\n") + "\n")
    var digest = SHA256Stream()
    Array(written.utf8).withUnsafeBytes { digest.update($0) }
    let recorded = try JSONValue.parse(try String(contentsOfFile: manifest, encoding: .utf8))
    #expect(recorded["output_sha256"]?.string == digest.finalizeHex() && recorded["output"]?.string == output)
    #expect(!FileManager.default.fileExists(atPath: manifest + ".tessera-partial"))
}

@Test func aMergeReplacesAnOutputOnlyWhenForced() throws {
    let s = try TwoShards()
    let merge = try ShardMerge(input: s.input, shardFiles: [s.shard(0), s.shard(1)])
    let output = s.folder + "/merged.jsonl", manifest = s.folder + "/elsewhere.json"
    try "old\n".write(toFile: output, atomically: true, encoding: .utf8)
    #expect(throws: TesseraError.self) { try merge.write(output: output, force: false, manifest: manifest) }
    #expect(try String(contentsOfFile: output, encoding: .utf8) == "old\n")
    #expect(!FileManager.default.fileExists(atPath: manifest))
    #expect(try merge.write(output: output, force: true, manifest: manifest) == manifest)
    #expect(try String(contentsOfFile: output, encoding: .utf8) == s.records.joined(separator: "\n") + "\n")
    #expect(FileManager.default.fileExists(atPath: manifest))
}

/// An input cut into pieces of about N bytes: every line once, in order, each piece at least
/// one line and no more than one line past N bytes.
@Test(arguments: [1, 10, 40, 1000])
func piecesOfAnInputCoverEveryLineInOrder(bytes: Int) throws {
    let text = (0..<25).map { String(repeating: "x", count: $0 % 7) }.joined(separator: "\n")
    let input = ConversationInput(path: "in.jsonl", bytes: Array(text.utf8))
    let pieces = input.pieces(ofAbout: bytes)
    try #require(!pieces.isEmpty)
    #expect(pieces.flatMap { Array($0) } == input.lines)
    for piece in pieces {
        #expect(!piece.isEmpty)
        #expect(piece.dropLast().reduce(0) { $0 + $1.range.count + 1 } < bytes)
    }
}
