import ArgumentParser
import Foundation
import Platform
import Scoring
import Tokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text with a SentencePiece model exactly as the sentencepiece library does (no BOS/EOS).")

    @Option(help: "The SentencePiece .model file.") var tokenizer: String
    @Option(help: "The text to encode.") var text: String?
    @Option(help: "A file of texts, one JSON-encoded string per line.") var input: String?
    @Flag(help: "Print {\"ids\": [...], \"pieces\": [...]} (one object per line with --input).") var json = false
    @Option(help: "Threads encoding the texts (the output keeps their order).") var threads = 2
    @Flag(help: "Time the encoding to ids only and print MB/s of text on stderr (for benchmarks; nothing on stdout).") var benchmark = false

    func run() throws {
        do {
            let sp = try SentencePieceModel(path: tokenizer)
            let file = try input.map { (path) throws(TesseraError) in try ConversationInput(path: path) }
            guard text != nil || file?.lines.isEmpty == false else { throw TesseraError(.invalidArgument, "give --text or --input") }
            if benchmark {
                var texts = text.map { [$0] } ?? []
                if let file { texts += try JSONLines.strings(file) }
                let b = EncodingBenchmark(sp, texts: texts, threads: threads), mb = Double(b.bytes) / 1e6
                StandardError.write("\(b.texts) texts, \(String(format: "%.2f", mb)) MB, \(b.tokens) tokens in \(String(format: "%.3f", b.seconds)) s "
                                    + "on \(b.threads) threads: \(String(format: "%.1f", mb / b.seconds)) MB/s\n")
                return
            }
            let spellings = PieceSpellings(sp, json: json), json = self.json
            func encode(_ texts: [String]) throws(TesseraError) {
                var out: [UInt8] = []
                for line in sp.encodeIDs(texts, threads: threads, { spellings.line($0, json: json) }) {
                    out += line
                    if out.count >= 1 << 20 { try OutputSink.standardOutput.write(out); out.removeAll(keepingCapacity: true) }
                }
                try OutputSink.standardOutput.write(out)
            }
            if let text { try encode([text]) }
            // A file is encoded a piece at a time, so its size is not bounded by memory.
            if let file { for piece in file.pieces(ofAbout: 16 << 20) { try encode(try JSONLines.strings(file, piece)) } }
        }
    }
}

/// How `tokenize` writes each piece (JSON-quoted as Python's `json.dumps` does, or as it is),
/// made once for the vocabulary.
struct PieceSpellings: Sendable {
    private var bytes: [UInt8] = []
    private var starts: [Int] = [0]
    private static let jsonStart = Array(#"{"ids": ["#.utf8), jsonMiddle = Array(#"], "pieces": ["#.utf8), jsonEnd = Array("]}".utf8)

    init(_ sp: SentencePieceModel, json: Bool) {
        for p in sp.pieces {
            bytes += Array((json ? JSONValue.string(p.text).python : p.text).utf8)
            starts.append(bytes.count)
        }
    }

    /// The output line of `ids`: `{"ids": [...], "pieces": [...]}` with `json` (what
    /// `JSONValue.python` writes), else the ids and the pieces separated by spaces, a tab between.
    func line(_ ids: [Int], json: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 12 + 32)
        let separator: [UInt8] = json ? [0x2C, 0x20] : [0x20]
        if json { out += Self.jsonStart }
        for (k, id) in ids.enumerated() {
            if k > 0 { out += separator }
            Self.appendDecimal(id, to: &out)
        }
        if json { out += Self.jsonMiddle } else { out.append(0x09) }
        for (k, id) in ids.enumerated() {
            if k > 0 { out += separator }
            out += bytes[starts[id]..<starts[id + 1]]
        }
        if json { out += Self.jsonEnd }
        out.append(0x0A)
        return out
    }

    private static func appendDecimal(_ v: Int, to out: inout [UInt8]) {
        var digits = 1, rest = v / 10
        while rest > 0 { digits += 1; rest /= 10 }
        out.append(contentsOf: repeatElement(0x30, count: digits))
        var x = v, i = out.count - 1
        repeat { out[i] = 0x30 + UInt8(x % 10); x /= 10; i -= 1 } while x > 0
    }
}
