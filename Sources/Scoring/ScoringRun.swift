import Codecs
import Foundation
import Platform

/// One scoring run: an input's lines (all, or one shard's) scored in batches and appended in
/// input order to a resumable output, a bad line either stopping the run or recorded as an
/// error record. A run resumed after any interruption writes what the uninterrupted run
/// would have: the output is the same, byte for byte.
public struct ScoringRun {
    public let annotator: Annotator
    /// Conversations run together.
    public var batch = 8
    /// Write `{"error": ..., "line": N}` for a bad line and go on, instead of stopping.
    public var skipBadLines = false

    public init(annotator: Annotator) { self.annotator = annotator }

    /// What a run did.
    public struct Summary: Sendable, Equatable {
        /// Conversations scored by this run.
        public var written = 0
        /// Lines found already done in the output.
        public var skipped = 0
        /// Bad lines recorded.
        public var bad = 0
        /// Tokens run by the model.
        public var tokens = 0
    }

    /// What the output already holds: the lines to skip.
    struct Done {
        /// Plain outputs: conversation records by the digest of their `Annotator.key`, counted
        /// (duplicates in the input are each written, so each is skipped once), and error
        /// records by line. The key is every turn's text: kept whole, the set held the text of
        /// everything already scored.
        var keys: [KeyDigest: Int] = [:]
        var errorLines: Set<Int> = []
        /// Shard outputs: the input lines whose records are there.
        var lines: Set<Int> = []

        /// Takes `line` (with `key`, nil for a bad line) off what is done; true if it was.
        /// The key is built only when records are there to match it (not on a fresh run).
        mutating func take(_ line: Int, key: @autoclosure () -> String?, shard: Bool) -> Bool {
            if shard { return lines.contains(line) }
            if keys.isEmpty && errorLines.isEmpty { return false }
            guard let key = key() else { return errorLines.contains(line) }
            let digest = KeyDigest(key)
            guard let n = keys[digest], n > 0 else { return false }
            keys[digest] = n - 1
            return true
        }
    }

    /// 128 bits of the SHA-256 of a conversation's key: equal keys give equal digests, and two
    /// different keys the same one with odds of 2^-128 per pair.
    struct KeyDigest: Hashable {
        let high: UInt64, low: UInt64

        init(_ key: String) {
            var digest = SHA256Stream()
            var text = key
            text.withUTF8 { digest.update(UnsafeRawBufferPointer($0)) }
            let bytes = digest.finalize()
            high = bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            low = bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) }
        }
    }

    /// Reads what `output` holds. A shard output must begin with this run's `header` (or be
    /// empty); a plain output's records are taken as attribute_annotate.py takes them.
    func done(in output: some ScoringSink, header: ShardHeader?) throws(TesseraError) -> Done {
        var done = Done()
        var k = 0
        try output.forEachExistingLine { (line) throws(TesseraError) in
            k += 1
            if let header {
                if k == 1 {
                    let expected = header.line
                    guard line.count + 1 == expected.count, line.elementsEqual(expected.dropLast()) else {
                        throw TesseraError(.inconsistent, "the output was written for another input, checkpoint, options or shard: "
                            + "it begins \(String(decoding: line.prefix(400), as: UTF8.self)); this run writes "
                            + String(decoding: expected.dropLast(), as: UTF8.self), file: output.path)
                    }
                    return
                }
                guard let r = ShardRecord.decode(Array(line)[...]) else {
                    throw TesseraError(.corrupt, "line \(k) is not a shard record", file: output.path)
                }
                done.lines.insert(r.line)
                return
            }
            if k == 1, (try? ShardHeader(parsing: Array(line)[...], file: output.path)) != nil {
                throw TesseraError(.inconsistent, "is a shard output (its first line is a shard header): resume it with its --shard I/N",
                                   file: output.path)
            }
            guard let o = try? JSONValue.parse(String(decoding: line, as: UTF8.self)) else { return }
            if o["conversations"] == nil, o["error"] != nil, case .number(let n)? = o["line"], let number = Int(n) {
                done.errorLines.insert(number)
            } else {
                done.keys[KeyDigest(Annotator.key(o)), default: 0] += 1
            }
        }
        return done
    }

    /// Scores `lines` of `input` into `output` (a shard's output when `header` is given: the
    /// header first, then each record wrapped with its input line number and tokens).
    /// `progress` is told how many lines were dealt with.
    public func run(_ input: ConversationInput, lines: [ConversationInput.Line], into output: some ScoringSink,
                    header: ShardHeader? = nil, progress: (Int) -> Void = { _ in }) throws(TesseraError) -> Summary {
        var done = try done(in: output, header: header)
        if let header, output.existingBytes == 0 { try output.append(header.line) }
        var summary = Summary()
        var pending: [(line: Int, obj: JSONValue)] = []
        // Error records not yet written: they go out with the next batch (or at 1 MiB, or at the
        // end), in input order. A run stopped before they are written leaves them undone, and
        // its resume writes the same records.
        var unwritten: [UInt8] = []
        func flush() throws(TesseraError) {
            guard !pending.isEmpty else { return }
            let start = Date()
            let (scored, tokens): ([JSONValue], [Int])
            do throws(TesseraError) { (scored, tokens) = try annotator.annotateCounting(batch: pending.map(\.obj)) } catch {
                throw error.inFile("\(input.path):\(pending[0].line)-\(pending.last!.line)")
            }
            let total = max(tokens.reduce(0, +), 1), ms = Int(Date().timeIntervalSince(start) * 1000)
            var out = unwritten
            for (k, s) in scored.enumerated() {
                let text = s.python
                out += header == nil ? Array((text + "\n").utf8)
                    : ShardRecord.encode(line: pending[k].line, tokens: tokens[k], ms: ms * tokens[k] / total, record: text)
            }
            try output.append(out)
            unwritten.removeAll()
            summary.tokens += total
            summary.written += scored.count
            progress(scored.count)
            pending.removeAll()
        }
        for line in lines {
            let obj: JSONValue, text = try input.text(line)
            do throws(TesseraError) {
                obj = try JSONValue.parse(text)
                try Annotator.validate(obj)
            } catch {
                let e = TesseraError(.corrupt, "line \(line.number): \(error.message)", file: input.path)
                // Whatever came before the bad line is scored and written first.
                try flush()
                guard skipBadLines else { throw e }
                progress(1)
                if done.take(line.number, key: nil, shard: header != nil) { summary.skipped += 1; continue }
                let record = JSONValue.object([("error", .string(e.message)), ("line", .number(String(line.number)))]).python
                unwritten += header == nil ? Array((record + "\n").utf8) : ShardRecord.encode(line: line.number, tokens: 0, ms: 0, record: record)
                if unwritten.count >= 1 << 20 { try output.append(unwritten); unwritten.removeAll() }
                summary.bad += 1
                continue
            }
            if done.take(line.number, key: Annotator.key(obj), shard: header != nil) { summary.skipped += 1; progress(1); continue }
            pending.append((line.number, obj))
            if pending.count >= max(batch, 1) { try flush() }
        }
        try flush()
        if !unwritten.isEmpty { try output.append(unwritten) }
        return summary
    }

    /// Scores the pairs of `lines` into a pairwise shard output: the header, then one record a
    /// pair (``PairOutcome/json``), resumed like any shard output.
    public func runPairs(_ input: ConversationInput, lines: [ConversationInput.Line], into output: some ScoringSink,
                         header: ShardHeader, progress: (Int) -> Void = { _ in }) throws(TesseraError) -> Summary {
        let done = try done(in: output, header: header)
        if output.existingBytes == 0 { try output.append(header.line) }
        var summary = Summary()
        for line in lines {
            progress(1)
            if done.lines.contains(line.number) { summary.skipped += 1; continue }
            let start = Date(), text = try input.text(line)
            let outcome: PairOutcome
            do throws(TesseraError) { outcome = try annotator.pair(try JSONValue.parse(text)) } catch {
                throw TesseraError(.corrupt, "line \(line.number): \(error.message)", file: input.path)
            }
            let ms = Int(Date().timeIntervalSince(start) * 1000)
            try output.append(ShardRecord.encode(line: line.number, tokens: 0, ms: ms, record: outcome.json.python))
            summary.written += 1
        }
        return summary
    }
}
