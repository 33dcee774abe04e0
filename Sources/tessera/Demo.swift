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
        do {
            let cache = MappingCache()
            let streamer = TensorStreamer(cache: cache)
            try OutputSink.standardOutput.writeLine("== inspect \(checkpoint)")
            let cat = try Checkpoint.open(checkpoint, cache: cache)
            let sums = try streamer.digests(cat.tensors)
            try OutputSink.standardOutput.writeLine(InspectReport(cat, digests: sums).text())
            let reference = Dictionary(uniqueKeysWithValues: zip(cat.tensors.map(\.name), sums))

            let work = NSTemporaryDirectory() + "tessera-demo-\(getpid())"
            defer { try? FileManager.default.removeItem(atPath: work) }
            let steps: [(String, TargetLayout)] = [
                ("tp1pp1.nemo", TargetLayout(tp: 1, pp: 1, format: .nemo)),
                ("tp4pp1-local", TargetLayout(tp: 4, pp: 1, format: .nemo, spelling: .local)),
                ("tp2pp1-zarr", TargetLayout(tp: 2, pp: 1, format: .distZarr)),
                ("tp1pp4-torch_dist", TargetLayout(tp: 1, pp: 4, format: .distTorch)),
                ("tp2pp1.h5", TargetLayout(tp: 2, pp: 1, format: .hdf5)),
            ]
            try OutputSink.standardOutput.writeLine("\n== reshard")
            for (name, layout) in steps {
                let dst = work + "/" + name
                let start = Date()
                let report = try Converter.convert(cat, to: dst, layout: layout, force: true, cache: cache)
                let back = try Checkpoint.open(dst, cache: cache)
                let again = Dictionary(uniqueKeysWithValues: zip(back.tensors.map(\.name), try streamer.digests(back.tensors)))
                let same = again == reference
                let ms = Int(Date().timeIntervalSince(start) * 1000)
                try OutputSink.standardOutput.writeLine(name.padding(toLength: 20, withPad: " ", startingAt: 0)
                      + "TP=\(layout.tp) PP=\(layout.pp) " + layout.format.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                      + "\(formatBytes(report.bytesWritten)) in \(ms) ms, \(back.tensors.count) tensors "
                      + (same ? "bit-identical to the source" : "DIFFERENT FROM THE SOURCE"))
                for n in report.notes { try OutputSink.standardOutput.writeLine("  note: \(n)") }
                guard same else { throw TesseraError(.inconsistent, "resharded checkpoint differs from the source", file: dst) }
            }

            // And back from the HDF5 store to NeMo's own form.
            let back = work + "/from-h5-tp2pp2"
            try Converter.convert(try Checkpoint.open(work + "/tp2pp1.h5", cache: cache), to: back,
                                  layout: TargetLayout(tp: 2, pp: 2, format: .nemo), force: true, cache: cache)
            let again = try Checkpoint.open(back, cache: cache)
            let sameBack = Dictionary(uniqueKeysWithValues: zip(again.tensors.map(\.name), try streamer.digests(again.tensors))) == reference
            try OutputSink.standardOutput.writeLine("from-h5-tp2pp2      TP=2 PP=2 nemo       from the HDF5 store, " + (sameBack ? "bit-identical to the source" : "DIFFERENT FROM THE SOURCE"))
            guard sameBack else { throw TesseraError(.inconsistent, "HDF5 -> NeMo differs from the source", file: back) }

            try OutputSink.standardOutput.writeLine("\n== forward (the reward model on one host; FP32 and BF16)")
            let model = try Model(cat, cache: cache)
            let tokens = [4, 436, 7, 18, 5, 90, 321, 6]
            for precision in Precision.allCases {
                let r = try model.forward(tokens: tokens, precision: precision)
                try OutputSink.standardOutput.writeLine("\(precision.rawValue)  reward " + (r.reward ?? []).map { String(format: "%+.3f", $0) }.joined(separator: " "))
            }

            try OutputSink.standardOutput.writeLine("\n== score conversations as NeMo-Aligner's attribute_annotate.py would (tokenizer from the checkpoint)")
            let conversations = try [
                #"{"conversations": [{"value": "What is 2+2?", "from": "User", "label": null}, {"value": "4", "from": "Assistant", "label": "helpfulness:-1"}], "mask": "User"}"#,
                #"{"conversations": [{"value": "Name a colour.", "from": "User", "label": null}, {"value": "Blue.", "from": "Assistant", "label": "x"}, "#
                    + #"{"value": "Another?", "from": "User", "label": null}, {"value": "Green, like grass.", "from": "Assistant", "label": "x"}], "mask": "User"}"#,
                #"{"conversations": [{"value": "Say hi.", "from": "User", "label": null}, {"value": "Hi!", "from": "Assistant", "label": "x"}], "mask": "User"}"#,
            ].map { (text) throws(TesseraError) -> JSONValue in try JSONValue.parse(text) }
            var options = ScoringOptions(maxLength: 4096)
            options.scalarWeights = SteerLMTemplate.modelCardWeights
            let annotator = try Annotator(model: model, tokenizer: try SentencePieceModel.forScoring(path: nil, catalogue: cat), options: options)
            for scored in try annotator.annotate(batch: conversations).0 {
                for turn in scored["conversations"]?.array ?? [] where turn["rewards"] != nil {
                    try OutputSink.standardOutput.writeLine("\(turn["value"]?.string ?? "")".padding(toLength: 20, withPad: " ", startingAt: 0) + (turn["label"]?.string ?? ""))
                }
            }

            try OutputSink.standardOutput.writeLine("\n== verify every converted checkpoint against the original (weights and outputs)")
            for name in steps.map(\.0) + ["from-h5-tp2pp2"] {
                let copy = try Checkpoint.open(work + "/" + name, cache: cache)
                let verdict = try Verifier(cache: cache).verify(cat, copy, weightsOnly: false)
                let worst = verdict.outputs.compactMap(\.rewardMaxDiff).max() ?? 0
                try OutputSink.standardOutput.writeLine(name.padding(toLength: 20, withPad: " ", startingAt: 0)
                      + "\(verdict.tensors.filter { $0.status == .identical }.count)/\(verdict.tensors.count) tensors identical, "
                      + "largest reward difference \(String(format: "%.1e", worst)) on \(verdict.outputs.count) probes: "
                      + (verdict.equivalent ? "EQUIVALENT" : "NOT EQUIVALENT"))
                guard verdict.equivalent else { throw TesseraError(.inconsistent, "a converted checkpoint is not equivalent", file: name) }
            }
        }
    }
}
