import ArgumentParser
import Checkpoints
import Foundation
import Platform
import Sharding
import Engine
import Verification
import Scoring
import Tokenizer

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Walk through Tessera on the small reward checkpoint that ships in the repository.",
        discussion: """
        Reads the shipped .nemo (a tiny Nemotron-4-architecture reward model saved by megatron-core \
        at TP=2 PP=2), reshards it to other layouts and formats, and proves each result holds the \
        same global tensors, bit for bit.
        """
    )

    @Option(help: "The checkpoint to use.")
    var checkpoint = "Tests/Fixtures/tiny/nemo/legacy_tp2pp2_bf16_te_bytesio.nemo"

    func run() throws {
        let steps = DemoSteps(cache: MappingCache(), work: NSTemporaryDirectory() + "tessera-demo-\(getpid())")
        defer { try? FileManager.default.removeItem(atPath: steps.work) }
        try say("== inspect \(checkpoint)")
        let cat = try Checkpoint.open(checkpoint, cache: steps.cache)
        let reference = try steps.inspect(cat)
        try say("\n== reshard")
        try steps.reshard(cat, reference: reference)
        try steps.backFromHDF5(reference: reference)
        try say("\n== forward (the reward model on one host; FP32 and BF16)")
        let model = try Model(cat, cache: steps.cache)
        try steps.forward(model)
        try say("\n== score conversations as NeMo-Aligner's attribute_annotate.py would (tokenizer from the checkpoint)")
        try steps.score(model, tokenizer: try SentencePieceModel.forScoring(path: nil, catalogue: cat))
        try say("\n== verify every converted checkpoint against the original (weights and outputs)")
        try steps.verify(cat)
    }
}

/// One line of the demo's output.
private func say(_ line: String) throws(TesseraError) { try OutputSink.standardOutput.writeLine(line) }

/// `text` padded with spaces to `width` characters (a column of the demo's tables).
private func column(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }

/// The demo's steps, writing their copies of the checkpoint into the folder `work`.
private struct DemoSteps {
    let cache: MappingCache
    let work: String

    /// The conversions made, by the name of their output.
    static let copies: [(String, TargetLayout)] = [
        ("tp1pp1.nemo", TargetLayout(tp: 1, pp: 1, format: .nemo)),
        ("tp4pp1-local", TargetLayout(tp: 4, pp: 1, format: .nemo, spelling: .local)),
        ("tp2pp1-zarr", TargetLayout(tp: 2, pp: 1, format: .distZarr)),
        ("tp1pp4-torch_dist", TargetLayout(tp: 1, pp: 4, format: .distTorch)),
        ("tp2pp1.h5", TargetLayout(tp: 2, pp: 1, format: .hdf5)),
    ]
    /// The copy converted back from the HDF5 store.
    static let fromStore = "from-h5-tp2pp2"

    /// Every tensor's SHA-256 by name.
    func digests(_ cat: Catalogue) throws(TesseraError) -> [String: String] {
        Dictionary(uniqueKeysWithValues: zip(cat.tensors.map(\.name), try TensorStreamer(cache: cache).digests(cat.tensors)))
    }

    /// Prints what `inspect --digests` prints; returns the digests.
    func inspect(_ cat: Catalogue) throws(TesseraError) -> [String: String] {
        let sums = try TensorStreamer(cache: cache).digests(cat.tensors)
        try say(InspectReport(cat, digests: sums).text())
        return Dictionary(uniqueKeysWithValues: zip(cat.tensors.map(\.name), sums))
    }

    /// Converts the checkpoint to every layout of ``copies``, each checked against `reference`.
    func reshard(_ cat: Catalogue, reference: [String: String]) throws(TesseraError) {
        for (name, layout) in Self.copies {
            let dst = work + "/" + name
            let start = Date()
            let report = try Converter.convert(cat, to: dst, layout: layout, force: true, cache: cache)
            let back = try Checkpoint.open(dst, cache: cache)
            let same = try digests(back) == reference
            let ms = Int(Date().timeIntervalSince(start) * 1000)
            try say(column(name, 20) + "TP=\(layout.tp) PP=\(layout.pp) " + column(layout.format.rawValue, 11)
                    + "\(formatBytes(report.bytesWritten)) in \(ms) ms, \(back.tensors.count) tensors "
                    + (same ? "bit-identical to the source" : "DIFFERENT FROM THE SOURCE"))
            for n in report.notes { try say("  note: \(n)") }
            guard same else { throw TesseraError(.inconsistent, "resharded checkpoint differs from the source", file: dst) }
        }
    }

    /// Converts the HDF5 store back to NeMo's own form, checked against `reference`.
    func backFromHDF5(reference: [String: String]) throws(TesseraError) {
        let back = work + "/" + Self.fromStore
        try Converter.convert(try Checkpoint.open(work + "/tp2pp1.h5", cache: cache), to: back,
                              layout: TargetLayout(tp: 2, pp: 2, format: .nemo), force: true, cache: cache)
        let sameBack = try digests(try Checkpoint.open(back, cache: cache)) == reference
        try say("from-h5-tp2pp2      TP=2 PP=2 nemo       from the HDF5 store, " + (sameBack ? "bit-identical to the source" : "DIFFERENT FROM THE SOURCE"))
        guard sameBack else { throw TesseraError(.inconsistent, "HDF5 -> NeMo differs from the source", file: back) }
    }

    /// The reward of one token sequence in each precision.
    func forward(_ model: Model) throws(TesseraError) {
        for precision in Precision.allCases {
            let r = try model.forward(tokens: [4, 436, 7, 18, 5, 90, 321, 6], precision: precision)
            try say("\(precision.rawValue)  reward " + (r.reward ?? []).map { String(format: "%+.3f", $0) }.joined(separator: " "))
        }
    }

    /// Three conversations annotated, a line per scored turn.
    func score(_ model: Model, tokenizer: SentencePieceModel) throws(TesseraError) {
        let conversations = try [
            #"{"conversations": [{"value": "What is 2+2?", "from": "User", "label": null}, {"value": "4", "from": "Assistant", "label": "helpfulness:-1"}], "mask": "User"}"#,
            #"{"conversations": [{"value": "Name a colour.", "from": "User", "label": null}, {"value": "Blue.", "from": "Assistant", "label": "x"}, "#
                + #"{"value": "Another?", "from": "User", "label": null}, {"value": "Green, like grass.", "from": "Assistant", "label": "x"}], "mask": "User"}"#,
            #"{"conversations": [{"value": "Say hi.", "from": "User", "label": null}, {"value": "Hi!", "from": "Assistant", "label": "x"}], "mask": "User"}"#,
        ].map { (text) throws(TesseraError) -> JSONValue in try JSONValue.parse(text) }
        var options = ScoringOptions(maxLength: 4096)
        options.scalarWeights = SteerLMTemplate.modelCardWeights
        let annotator = try Annotator(model: model, tokenizer: tokenizer, options: options)
        for scored in try annotator.annotate(batch: conversations).0 {
            for turn in scored["conversations"]?.array ?? [] where turn["rewards"] != nil {
                try say(column("\(turn["value"]?.string ?? "")", 20) + (turn["label"]?.string ?? ""))
            }
        }
    }

    /// Every copy verified against the original, weights and outputs.
    func verify(_ cat: Catalogue) throws(TesseraError) {
        for name in Self.copies.map(\.0) + [Self.fromStore] {
            let copy = try Checkpoint.open(work + "/" + name, cache: cache)
            let verdict = try Verifier(cache: cache).verify(cat, copy, weightsOnly: false)
            let worst = verdict.outputs.compactMap(\.rewardMaxDiff).max() ?? 0
            try say(column(name, 20) + "\(verdict.tensors.filter { $0.status == .identical }.count)/\(verdict.tensors.count) tensors identical, "
                    + "largest reward difference \(String(format: "%.1e", worst)) on \(verdict.outputs.count) probes: "
                    + (verdict.equivalent ? "EQUIVALENT" : "NOT EQUIVALENT"))
            guard verdict.equivalent else { throw TesseraError(.inconsistent, "a converted checkpoint is not equivalent", file: name) }
        }
    }
}
