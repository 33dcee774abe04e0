import ArgumentParser
import Checkpoints
import Engine
import Foundation
import Platform
import Scoring
import Tokenizer

/// The tokenizer file given, or the one inside the checkpoint.
func loadTokenizer(_ path: String?, catalogue: Catalogue?, cache: MappingCache) throws(TesseraError) -> SentencePieceModel {
    if let path { return try SentencePieceModel(path: path) }
    guard let c = catalogue, let name = c.config?.tokenizerModel, c.container.isFile(name) else {
        throw TesseraError(.missing, "the checkpoint carries no tokenizer; pass --tokenizer", file: catalogue?.container.displayPath)
    }
    return try SentencePieceModel(bytes: try c.container.read(name), file: c.container.describe(name))
}

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
        try runReportingErrors {
            let sp = try SentencePieceModel(path: tokenizer)
            var texts: [String] = []
            if let text { texts.append(text) }
            if let input {
                guard var content = try? String(contentsOfFile: input, encoding: .utf8) else {
                    throw TesseraError(.io, "cannot read", file: input)
                }
                try content.withUTF8 { try Self.readTexts($0, file: input, into: &texts) }
            }
            guard !texts.isEmpty else { throw TesseraError(.invalidArgument, "give --text or --input") }
            let inputs = texts, workers = max(1, threads)
            if benchmark {
                let start = Date()
                let counts = UncheckedSendable(UnsafeMutableBufferPointer<Int>.allocate(capacity: workers))
                defer { counts.value.deallocate() }
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    var count = 0
                    for i in stride(from: w, to: inputs.count, by: workers) { count += sp.encodeIDs(inputs[i]).count }
                    counts.value[w] = count
                }
                let secs = Date().timeIntervalSince(start)
                let count = counts.value.reduce(0, +)
                let mb = Double(texts.reduce(0) { $0 + $1.utf8.count }) / 1e6
                FileHandle.standardError.write(Data("\(texts.count) texts, \(String(format: "%.2f", mb)) MB, \(count) tokens in \(String(format: "%.3f", secs)) s on \(workers) threads: \(String(format: "%.1f", mb / secs)) MB/s\n".utf8))
                return
            }
            // Each text's output line is made on the thread that encodes it.
            let spellings = PieceSpellings(sp, json: json)
            let lines = UncheckedSendable(UnsafeMutableBufferPointer<[UInt8]>.allocate(capacity: texts.count))
            lines.value.initialize(repeating: [])
            defer { lines.value.deinitialize(); lines.value.deallocate() }
            let json = self.json
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for i in stride(from: w, to: inputs.count, by: workers) {
                    lines.value[i] = spellings.line(sp.encodeIDs(inputs[i]), json: json)
                }
            }
            var out: [UInt8] = []
            for line in lines.value {
                out += line
                if out.count >= 1 << 20 { FileHandle.standardOutput.write(Data(out)); out.removeAll(keepingCapacity: true) }
            }
            FileHandle.standardOutput.write(Data(out))
        }
    }

    /// The texts of a file of JSON strings, one a line (empty lines skipped). A line that is
    /// a quoted string without escapes is taken as it is; any other is parsed as JSON.
    static func readTexts(_ bytes: UnsafeBufferPointer<UInt8>, file: String, into texts: inout [String]) throws(TesseraError) {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var start = 0, n = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
            n += 1
            defer { start = end + 1 }
            if end == start { continue }
            let line = UnsafeBufferPointer(rebasing: bytes[start..<end])
            let inner = line.count >= 2 ? line[1..<(line.count - 1)] : line[0..<0]
            if line.count >= 2, line.first == quote, line.last == quote, !inner.contains(where: { $0 == quote || $0 == backslash }) {
                texts.append(String(decoding: UnsafeBufferPointer(rebasing: inner), as: UTF8.self))
                continue
            }
            guard let s = try? JSONValue.parse(String(decoding: line, as: UTF8.self)).string else {
                throw TesseraError(.corrupt, "line \(n) is not a JSON string", file: file)
            }
            texts.append(s)
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

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Annotate NeMo-Aligner conversation JSONL with the reward model's per-turn attribute scores.",
        discussion: """
        Writes each input object with every turn whose label is not null labelled as NeMo-Aligner's \
        attribute_annotate.py does (quality:X,toxicity:X,... over all nine attributes, clipped to \
        0..4, rounded half to even), plus the raw floats in "rewards". Lines already in the output \
        are skipped (resume); each line is flushed as it is written. Turns of a conversation share \
        the computation of their common prefix.
        """
    )

    @Argument(help: "The reward-model checkpoint.") var checkpoint: String
    @Option(help: "NeMo-Aligner conversation JSONL.") var input: String
    @Option(help: "Where to append the annotated JSONL.") var output: String
    @Option(help: "SentencePiece model (default: the checkpoint's).") var tokenizer: String?
    @Option(help: "bf16 or fp32.") var precision: Precision = .bf16
    @Option(help: "Maximum tokens per scored string (default: the model's sequence length).") var maxLength: Int?
    @Flag(help: "Keep the end of over-long conversations (NeMo-Aligner keeps the start).") var keepEnd = false
    @Flag(help: "Add the model card's scalar reward (weights 0,0,0,0,0.3,0.74,0.46,0.47,-0.33) as \"reward\".") var scalar = false
    @Option(help: "Conversations run together (their tokens share every GEMM; no padding).") var batch = 8
    @Flag(help: "Score every turn's string from scratch instead of sharing the conversation's prefix.") var noPrefixReuse = false
    @Flag(help: "Write an error record ({\"error\": ..., \"line\": N}) for a bad line and go on, instead of stopping.") var skipBadLines = false
    @Option(help: "Worker threads (default: every core). Results do not depend on it, nor on --batch or prefix reuse.") var threads: Int?

    func run() throws {
        try runReportingErrors {
            let cache = MappingCache()
            let cat = try Checkpoint.open(checkpoint, cache: cache)
            let model = try Model(cat, cache: cache, kernels: try Kernels.configured(threads: threads))
            let sp = try loadTokenizer(tokenizer, catalogue: cat, cache: cache)
            var options = ScoringOptions(maxLength: maxLength ?? cat.config?.seqLength ?? 4096)
            options.precision = precision
            options.keepEnd = keepEnd
            options.scalarWeights = scalar ? SteerLMTemplate.modelCardWeights : nil
            options.prefixReuse = !noPrefixReuse
            let annotator = try Annotator(model: model, tokenizer: sp, options: options)
            guard let content = try? String(contentsOfFile: input, encoding: .utf8) else { throw TesseraError(.io, "cannot read", file: input) }
            var done = Set<String>()
            if let existing = try? String(contentsOfFile: output, encoding: .utf8) {
                for line in existing.split(separator: "\n") { if let o = try? JSONValue.parse(String(line)) { done.insert(Annotator.key(o)) } }
            }
            if !FileManager.default.fileExists(atPath: output) { _ = FileManager.default.createFile(atPath: output, contents: nil) }
            guard let out = FileHandle(forWritingAtPath: output) else { throw TesseraError(.io, "cannot open for appending", file: output) }
            defer { try? out.close() }
            _ = try? out.seekToEnd()
            let lines = content.split(separator: "\n").map(String.init)
            let bar = Progress(total: lines.count, label: "score", enabled: true)
            var tokens = 0, written = 0, skipped = 0
            let start = Date()
            var pending: [(line: Int, obj: JSONValue)] = []
            func flushBatch() throws(TesseraError) {
                guard !pending.isEmpty else { return }
                let (scored, t): ([JSONValue], Int)
                do throws(TesseraError) { (scored, t) = try annotator.annotate(batch: pending.map(\.obj)) } catch {
                    throw error.inFile("\(input):\(pending[0].line + 1)-\(pending.last!.line + 1)")
                }
                for s in scored { out.write(Data((s.python + "\n").utf8)) }
                tokens += t
                written += scored.count
                bar.advance(scored.count)
                pending.removeAll()
            }
            var bad = 0
            for (n, line) in lines.enumerated() {
                let obj: JSONValue
                do throws(TesseraError) {
                    obj = try JSONValue.parse(line)
                    try Annotator.validate(obj)
                } catch {
                    let e = TesseraError(.corrupt, "line \(n + 1): \(error.message)", file: input)
                    // Whatever came before the bad line is scored and written first.
                    try flushBatch()
                    guard skipBadLines else { throw e }
                    let record = JSONValue.object([("error", .string(e.message)), ("line", .number(String(n + 1)))])
                    out.write(Data((record.python + "\n").utf8))
                    bad += 1
                    bar.advance(1)
                    continue
                }
                if done.contains(Annotator.key(obj)) { skipped += 1; bar.advance(1); continue }
                pending.append((n, obj))
                if pending.count >= max(batch, 1) { try flushBatch() }
            }
            try flushBatch()
            bar.finish()
            let secs = Date().timeIntervalSince(start)
            FileHandle.standardError.write(Data(("scored \(written) conversations (\(skipped) already in the output"
                + (bad > 0 ? ", \(bad) bad lines recorded" : "") + "), \(tokens) tokens in \(String(format: "%.2f", secs)) s, "
                + "\(Int(Double(tokens) / max(secs, 1e-9))) tokens/s\n").utf8))
        }
    }
}

struct Pairwise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy on prompt/chosen/rejected pairs with the scalar reward, counted as RewardBench does.",
        discussion: "A pair is won when the chosen response scores strictly above the rejected one; per subset when items carry \"subset\"."
    )

    @Argument(help: "The reward-model checkpoint.") var checkpoint: String
    @Option(help: "JSONL of {\"prompt\", \"chosen\", \"rejected\"[, \"subset\"]}.") var input: String
    @Option(help: "SentencePiece model (default: the checkpoint's).") var tokenizer: String?
    @Option(help: "bf16 or fp32.") var precision: Precision = .bf16
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let cache = MappingCache()
            let cat = try Checkpoint.open(checkpoint, cache: cache)
            var options = ScoringOptions(maxLength: cat.config?.seqLength ?? 4096)
            options.precision = precision
            let annotator = try Annotator(model: try Model(cat, cache: cache),
                                          tokenizer: try loadTokenizer(tokenizer, catalogue: cat, cache: cache), options: options)
            guard let content = try? String(contentsOfFile: input, encoding: .utf8) else { throw TesseraError(.io, "cannot read", file: input) }
            var items: [JSONValue] = []
            for (n, line) in content.split(separator: "\n").enumerated() {
                do throws(TesseraError) { items.append(try JSONValue.parse(String(line))) } catch {
                    throw TesseraError(.corrupt, "line \(n + 1): \(error.message)", file: input)
                }
            }
            let bar = Progress(total: items.count, label: "pairs", enabled: !json)
            var last = 0
            let r = try annotator.pairwise(items) { n in bar.advance(n - last); last = n }
            bar.finish()
            if json {
                let obj = JSONValue.object([("pairs", .number("\(r.pairs)")), ("wins", .number("\(r.wins)")),
                                            ("accuracy", .double(r.accuracy)),
                                            ("subsets", .array(r.subsets.map { s in .object([("name", .string(s.name)),
                                                ("pairs", .number("\(s.pairs)")), ("wins", .number("\(s.wins)")),
                                                ("accuracy", .double(s.accuracy))]) }))])
                print(obj.python)
            } else {
                for s in r.subsets { print("\(s.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(s.wins)/\(s.pairs)  \(String(format: "%.3f", s.accuracy))") }
                print("overall".padding(toLength: 24, withPad: " ", startingAt: 0) + " \(r.wins)/\(r.pairs)  \(String(format: "%.3f", r.accuracy))")
            }
        }
    }
}
