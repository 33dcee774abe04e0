import ArgumentParser
import Checkpoints
import Foundation
import Platform
import Verification
import Scoring
import Tokenizer

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prove two checkpoints (any formats, any layouts) hold the same model.",
        discussion: """
        Compares the architecture, the set of tensors, every global tensor exactly (SHA-256, then \
        the first differing element), and, unless --weights-only, the engine's outputs on probe \
        inputs. Each checkpoint is computed in its own partitioning, piece by piece as its TP \
        ranks hold it. Exit 0 when equivalent, 1 when not, 2 on bad input.
        """
    )

    @Argument(help: "The first checkpoint.") var a: String
    @Argument(help: "The second checkpoint.") var b: String
    @Flag(help: "Print the report as JSON (Schemas/verify.schema.json).") var json = false
    @Flag(help: "Compare weights only; skip running the model.") var weightsOnly = false
    @Option(help: "Probe token sequences instead of the defaults: ';'-separated lists of comma-separated ids.")
    var probes: String?
    @Option(help: "NeMo-Aligner conversation JSONL to score with both models (through the scoring path) instead of token probes.")
    var prompts: String?
    @Option(help: "SentencePiece model for --prompts (default: A's).")
    var tokenizer: String?
    @Flag(help: "Compute each checkpoint in its own partitioning, as its TP ranks would (always the case: kept for scripts).")
    var emulateTp = false

    func run() throws {
        var equivalent = false
        do {
            let cache = MappingCache()
            let ca = try Checkpoint.open(a, cache: cache), cb = try Checkpoint.open(b, cache: cache)
            let parsed = try probes.map { (text) throws(TesseraError) in try Verifier.probes(parsing: text) }
            let conversations = try prompts.map { (path) throws(TesseraError) in
                Verifier.Prompts(conversations: try Verifier.Prompts.conversations(inFile: path),
                                 tokenizer: try SentencePieceModel.forScoring(path: tokenizer, catalogue: ca))
            }
            let bar = Progress(total: ca.byteCount + cb.byteCount, label: "verify", enabled: !json)
            let report = try Verifier(cache: cache).verify(ca, cb, weightsOnly: weightsOnly, probes: parsed, prompts: conversations) {
                bar.advance($0)
            }
            bar.finish()
            equivalent = report.equivalent
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys]
                enc.keyEncodingStrategy = .convertToSnakeCase
                try OutputSink.standardOutput.writeLine(String(decoding: try enc.encode(report), as: UTF8.self))
            } else {
                try OutputSink.standardOutput.writeLine(text(report, ca, cb))
            }
        }
        if !equivalent { throw ExitCode(1) }
    }

    func text(_ r: VerificationReport, _ ca: Catalogue, _ cb: Catalogue) -> String {
        var out = ["A        \(r.a) (\(ca.format.rawValue), TP=\(ca.tp) PP=\(ca.pp))",
                   "B        \(r.b) (\(cb.format.rawValue), TP=\(cb.tp) PP=\(cb.pp))"]
        out.append("config   " + (r.configDifferences.isEmpty ? "same architecture" : "DIFFERENT: " + r.configDifferences.joined(separator: "; ")))
        let counts = Dictionary(grouping: r.tensors, by: \.status).mapValues(\.count)
        out.append("weights  \(r.tensors.count) tensors: " + TensorComparison.Status.allCases.compactMap { s in
            counts[s].map { "\($0) \(s.rawValue)" } }.joined(separator: ", "))
        if let rounded = counts[.equalAfterRounding] {
            out.append("         note \(rounded) tensors differ in dtype and are equal after rounding to the narrower one (not bit-identical)")
        }
        for t in r.tensors where t.status != .identical && t.status != .equalAfterRounding {
            var line = "         \(t.status.isDifference ? "DIFF" : "note") \(t.name): \(t.status.rawValue)"
            if let i = t.firstDifference, let va = t.valueA, let vb = t.valueB { line += " first at \(i): A \(va) vs B \(vb)" }
            if let d = t.detail { line += " (\(d))" }
            out.append(line)
        }
        if !r.outputs.isEmpty {
            for o in r.outputs {
                let fmt = { (v: Double?) in v.map { String(format: "%.2e", $0) } ?? "-" }
                out.append("outputs  probe of \(o.probe.count) tokens: |d reward| \(fmt(o.rewardMaxDiff)), |d logits| \(fmt(o.logitsMaxDiff)), "
                           + "|d hidden| \(fmt(o.hiddenMaxDiff)) (tolerance \(fmt(o.tolerance))) \(o.equivalent ? "ok" : "DIFFERENT")")
            }
        }
        for v in r.vocabulary { out.append("vocab    \(v)") }
        for n in r.notes { out.append("note     \(n)") }
        out.append("verdict  " + (r.equivalent ? "EQUIVALENT" : "NOT EQUIVALENT"))
        return out.joined(separator: "\n")
    }
}
