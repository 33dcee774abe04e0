import Foundation
import Testing
import Tokenizer

private func tinyTokenizer() throws -> SentencePieceModel {
    try SentencePieceModel(path: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny/tokenizer/tokenizer.model").path)
}

private let texts = ["Hello world", "", "Café ☕ or thé?", "a b c", "  leading and trailing  ", "x\ny", "Hello world"]

/// Whatever the threads, each text's ids are those of encoding it alone, in the texts' order.
@Test(arguments: [0, 1, 2, 3, 16])
func encodingOnThreadsKeepsOrderAndResults(_ threads: Int) throws {
    let sp = try tinyTokenizer()
    let alone = texts.map { sp.encodeIDs($0) }
    #expect(sp.encodeIDs(texts, threads: threads) { $0 } == alone)
    #expect(sp.encodeIDs(texts, threads: threads) { $0.count } == alone.map(\.count))
    #expect(sp.encodeIDs([], threads: threads) { $0 }.isEmpty)
}

@Test func theBenchmarkCountsTextsBytesAndTokens() throws {
    let sp = try tinyTokenizer()
    let b = EncodingBenchmark(sp, texts: texts, threads: 3)
    #expect(b.texts == texts.count && b.threads == 3)
    #expect(b.bytes == texts.reduce(0) { $0 + $1.utf8.count })
    #expect(b.tokens == texts.reduce(0) { $0 + sp.encodeIDs($1).count })
    #expect(b.seconds >= 0)
    #expect(EncodingBenchmark(sp, texts: texts, threads: 0).threads == 1)
}
