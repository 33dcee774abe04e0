import ArgumentParser
import Checkpoints
import Engine
import Foundation
import Platform

extension Precision: ExpressibleByArgument {}

struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the model on token sequences and print the reward, logits and hidden state.",
        discussion: """
        Weights are read where they lie, in any format and layout; each linear layer is computed \
        piece by piece as its tensor-parallel shards are stored. No BOS/EOS is added.

        With --input, every sequence of the file runs in one batch: each layer is applied to all \
        of them before the next layer is read, so the weights pass once whatever the batch size. \
        Results are printed one per line, in input order.

        --max-memory bounds resident memory for models larger than RAM: each layer's weights are \
        dropped once used, and a batch whose activations would not fit is refused before any work.
        """
    )

    @Argument(help: "The checkpoint (any form `inspect` reads).")
    var checkpoint: String

    @OptionGroup var sequences: SequenceOptions

    @Option(help: "bf16 (as NeMo runs a BF16 model) or fp32 (the accurate reference).")
    var precision: Precision = .bf16

    @Option(help: "Resident memory bound, e.g. 512M or 8G: weights are dropped after each layer.")
    var maxMemory: String?

    @Flag(help: "Print {\"reward\": [...], \"logits\": [...], \"hidden\": [...], \"kernel_path\": ..., \"precision\": ...} (one line per sequence).")
    var json = false

    @Flag(help: "Print the CPU, the kernel path, the start-up time and the forward pass's own time and tokens/s on stderr.")
    var timing = false

    @Option(help: "Worker threads (default: every core). Results do not depend on it.")
    var threads: Int?

    func run() throws {
        let sequences = try self.sequences.read()
        let cache = MappingCache()
        let model = try Model(try Checkpoint.open(checkpoint, cache: cache), cache: cache, kernels: try Kernels.configured(threads: threads))
        if let maxMemory {
            try model.boundMemory(try parseByteSize(maxMemory, option: "--max-memory"), named: "--max-memory \(maxMemory)", batch: sequences)
        }
        let start = Date()
        let results = try model.forward(batch: sequences.map { Model.Segment(ids: $0) }, precision: precision)
        if timing { StandardError.write(timingReport(model, start: start, tokens: sequences.reduce(0) { $0 + $1.count })) }
        for r in results { try OutputSink.standardOutput.writeLine(json ? try jsonLine(r, path: model.kernels.path) : text(r)) }
    }

    /// What --timing prints: the CPU, the start-up and forward times and the steps' shares.
    func timingReport(_ model: Model, start: Date, tokens count: Int) -> String {
        let seconds = Date().timeIntervalSince(start)
        return "cpu: \(model.kernels.description)\n" + "start-up: \(String(format: "%.3f", start.timeIntervalSince(processStart))) s (checkpoint opened, "
            + "weights mapped); forward: \(String(format: "%.3f", seconds)) s for \(count) tokens, "
            + "\(String(format: "%.1f", Double(count) / seconds)) tokens/s\n"
            + String(format: "steps: matrix products %.3f s, attention %.3f s, element-wise %.3f s (%.1f%% attention + element-wise)\n",
                     model.times.products, model.times.attention, model.times.elementwise,
                     100 * (model.times.attention + model.times.elementwise) / max(model.times.total, 1e-9))
    }

    func jsonLine(_ r: ForwardResult, path: KernelPath) throws -> String {
        var obj: [String: Any] = ["hidden": r.hidden.map(Double.init), "kernel_path": path.rawValue, "precision": precision.rawValue]
        if let l = r.logits { obj["logits"] = l.map(Double.init) }
        if let w = r.reward { obj["reward"] = w.map(Double.init) }
        return String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self)
    }

    func text(_ r: ForwardResult) -> String {
        var lines: [String] = []
        if let w = r.reward { lines.append("reward  " + w.map { String(format: "%.4f", $0) }.joined(separator: " ")) }
        if let l = r.logits, let best = l.indices.max(by: { l[$0] < l[$1] }) {
            lines.append("logits  \(l.count) rows; argmax \(best) (\(String(format: "%.4f", l[best])))")
        }
        lines.append("hidden  \(r.hidden.count) values, first " + r.hidden.prefix(4).map { String(format: "%.4f", $0) }.joined(separator: " "))
        return lines.joined(separator: "\n")
    }
}

/// The token sequences `forward` runs: one from --tokens, or a file of them from --input.
struct SequenceOptions: ParsableArguments {
    @Option(help: "Comma-separated token ids, e.g. 1,2,3.")
    var tokens: String?

    @Option(help: "A file of sequences, one JSON array of token ids per line, run as one batch.")
    var input: String?

    func validate() throws {
        guard (tokens == nil) != (input == nil) else { throw ValidationError("give exactly one of --tokens and --input") }
    }

    /// The sequences asked for.
    func read() throws(TesseraError) -> [[Int]] {
        if let tokens { return [try parseIntegers(tokens, option: "--tokens", nonEmpty: true)] }
        return try TokenSequenceFile.read(input!)
    }
}
