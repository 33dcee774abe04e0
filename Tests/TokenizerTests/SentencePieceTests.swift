import Foundation
import Platform
import TestSupport
import Testing
import Tokenizer

private let tokenizerDir = Fixtures.path("tiny/tokenizer")

private func model() throws -> SentencePieceModel {
    try SentencePieceModel(path: tokenizerDir + "/tokenizer.model")
}

/// Encodes every string of a golden file (made by the sentencepiece library) and compares ids.
private func checkGolden(_ sp: SentencePieceModel, _ file: String, count: Int) throws {
    let text = try String(contentsOfFile: tokenizerDir + "/" + file, encoding: .utf8)
    var checked = 0, mismatches: [String] = []
    for line in text.split(separator: "\n") {
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let input = try #require(obj["text"] as? String), expected = try #require(obj["ids"] as? [Int])
        let got = sp.encode(input).ids
        if got != expected && mismatches.count < 5 { mismatches.append("\(input.debugDescription): \(got) vs \(expected)") }
        if let decoded = obj["decoded"] as? String, sp.decode(expected) != decoded, mismatches.count < 5 {
            mismatches.append("decode \(expected): \(sp.decode(expected).debugDescription) vs \(decoded.debugDescription)")
        }
        checked += 1
    }
    #expect(checked == count)
    #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n"))")
}

/// Token ids equal to the sentencepiece library's on 10,000 strings (unicode, whitespace runs,
/// tabs, newlines, the extra-id symbols, digits, emoji, empty).
@Test func idsEqualTheSentencePieceLibrary() throws {
    try checkGolden(try model(), "golden.jsonl", count: 10_000)
}

@Test func readsTheModelFacts() throws {
    let sp = try model()
    #expect(sp.count == 500)
    #expect(sp.modelType == .bpe)
    #expect(sp.byteFallback)
    #expect(sp.id(of: "<extra_id_1>") == 5)
    #expect(sp.id(of: "<0x0A>") == 18)
}

@Test func promptTemplatePiecesAreSymbols() throws {
    let sp = try model()
    let (ids, pieces) = sp.encode("<extra_id_1>User\n")
    #expect(ids.contains(5))
    #expect(pieces.contains("<0x0A>"))
    #expect(pieces.first == "▁")
}

@Test func damagedModelsAreRefused() {
    #expect(throws: TesseraError.self) { _ = try SentencePieceModel(bytes: [0x0A, 0x40, 0x01], file: "bad.model") }
    #expect(throws: TesseraError.self) { _ = try SentencePieceModel(bytes: [], file: "empty.model") }
}

/// A BPE model with the nmt_nfkc normaliser (precompiled character map) gives the library's ids.
@Test func nfkcNormaliserMatchesTheSentencePieceLibrary() throws {
    let sp = try SentencePieceModel(path: tokenizerDir + "/nfkc.model")
    #expect(sp.normalizerName == "nmt_nfkc")
    try checkGolden(sp, "nfkc-golden.jsonl", count: 2000)
}

/// sentencepiece's defaults (unigram, nmt_nfkc, no byte fallback): ids and decoded text equal
/// the library's on 10,000 strings.
@Test func unigramDefaultsMatchTheSentencePieceLibrary() throws {
    let sp = try SentencePieceModel(path: tokenizerDir + "/unigram.model")
    #expect(sp.modelType == .unigram)
    try checkGolden(sp, "unigram-golden.jsonl", count: 10_000)
}
