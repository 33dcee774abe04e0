import ArgumentParser
import Checkpoints
import Engine
import Foundation
import Platform

extension Precision: ExpressibleByArgument {}

struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the model on one token sequence and print the reward, logits and hidden state.",
        discussion: """
        Weights are read where they lie, in any format and layout; each linear layer is computed
        piece by piece as its tensor-parallel shards are stored. No BOS/EOS is added.
        """
    )

    @Argument(help: "The checkpoint (any form `inspect` reads).")
    var checkpoint: String

    @Option(help: "Comma-separated token ids, e.g. 1,2,3.")
    var tokens: String

    @Option(help: "bf16 (as NeMo runs a BF16 model) or fp32 (the accurate reference).")
    var precision: Precision = .bf16

    @Flag(help: "Print {\"reward\": [...], \"logits\": [...], \"hidden\": [...]}.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let ids = tokens.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else {
                throw TesseraError(.invalidArgument, "--tokens takes comma-separated integers, not '\(tokens)'")
            }
            let cache = MappingCache()
            let model = try Model(try Checkpoint.open(checkpoint, cache: cache), cache: cache)
            let r = try model.forward(tokens: ids.map { $0! }, precision: precision)
            if json {
                var obj: [String: Any] = ["hidden": r.hidden.map(Double.init)]
                if let l = r.logits { obj["logits"] = l.map(Double.init) }
                if let w = r.reward { obj["reward"] = w.map(Double.init) }
                print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
            } else {
                if let w = r.reward {
                    print("reward  " + w.map { String(format: "%.4f", $0) }.joined(separator: " "))
                }
                if let l = r.logits, let best = l.indices.max(by: { l[$0] < l[$1] }) {
                    print("logits  \(l.count) rows; argmax \(best) (\(String(format: "%.4f", l[best])))")
                }
                print("hidden  \(r.hidden.count) values, first " + r.hidden.prefix(4).map { String(format: "%.4f", $0) }.joined(separator: " "))
            }
        }
    }
}
