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

    @Option(help: "Comma-separated token ids, e.g. 1,2,3.")
    var tokens: String?

    @Option(help: "A file of sequences, one JSON array of token ids per line, run as one batch.")
    var input: String?

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

    func validate() throws {
        guard (tokens == nil) != (input == nil) else { throw ValidationError("give exactly one of --tokens and --input") }
    }

    func run() throws {
        do {
            let sequences = try readSequences()
            let cache = MappingCache()
            let model = try Model(try Checkpoint.open(checkpoint, cache: cache), cache: cache, kernels: try Kernels.configured(threads: threads))
            if let maxMemory {
                let limit = try parseByteSize(maxMemory, option: "--max-memory")
                let longest = sequences.map(\.count).max() ?? 0
                let need = model.largestLayerBytes + model.activationBytes(tokens: sequences.reduce(0) { $0 + $1.count }, longest: longest)
                guard need <= limit else {
                    throw TesseraError(.invalidArgument, "the batch needs about \(formatBytes(need)) (one layer's weights and the "
                                       + "activations of \(sequences.count) sequences), more than --max-memory \(maxMemory); "
                                       + "run fewer or shorter sequences at a time")
                }
                model.releaseWeights = true
            }
            let start = Date()
            let results = try model.forward(batch: sequences.map { Model.Segment(ids: $0) }, precision: precision)
            if timing {
                let seconds = Date().timeIntervalSince(start), count = sequences.reduce(0) { $0 + $1.count }
                let line = "cpu: \(model.kernels.description)\n" + "start-up: \(String(format: "%.3f", start.timeIntervalSince(processStart))) s (checkpoint opened, "
                    + "weights mapped); forward: \(String(format: "%.3f", seconds)) s for \(count) tokens, "
                    + "\(String(format: "%.1f", Double(count) / seconds)) tokens/s\n"
                    + String(format: "steps: matrix products %.3f s, attention %.3f s, element-wise %.3f s (%.1f%% attention + element-wise)\n",
                             model.times.products, model.times.attention, model.times.elementwise,
                             100 * (model.times.attention + model.times.elementwise) / max(model.times.total, 1e-9))
                StandardError.write(line)
            }
            for r in results { try OutputSink.standardOutput.writeLine(json ? try jsonLine(r, path: model.kernels.path) : text(r)) }
        }
    }

    func readSequences() throws(TesseraError) -> [[Int]] {
        if let tokens {
            let ids = tokens.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else {
                throw TesseraError(.invalidArgument, "--tokens takes comma-separated integers, not '\(tokens)'")
            }
            return [ids.map { $0! }]
        }
        let path = input!
        guard let data = FileManager.default.contents(atPath: path) else { throw TesseraError(.missing, "cannot read the input", file: path) }
        var out: [[Int]] = []
        for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let array = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [Any],
                  !array.isEmpty, case let ids = array.compactMap({ ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }),
                  ids.count == array.count else {
                throw TesseraError(.invalidArgument, "line \(n + 1): expected a non-empty JSON array of token ids", file: path)
            }
            out.append(ids)
        }
        guard !out.isEmpty else { throw TesseraError(.invalidArgument, "no sequences in the input", file: path) }
        return out
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

/// Bytes from a size such as 512M, 8G, 1.5GiB or 1000000 (K, M, G, T: powers of 1024).
func parseByteSize(_ text: String, option: String) throws(TesseraError) -> Int {
    let units: [(String, Double)] = [("TIB", 0x1p40), ("GIB", 0x1p30), ("MIB", 0x1p20), ("KIB", 0x1p10), ("TB", 0x1p40), ("GB", 0x1p30),
                                     ("MB", 0x1p20), ("KB", 0x1p10), ("T", 0x1p40), ("G", 0x1p30), ("M", 0x1p20), ("K", 0x1p10), ("B", 1)]
    let upper = text.trimmingCharacters(in: .whitespaces).uppercased()
    let (number, scale) = units.first { upper.hasSuffix($0.0) }.map { (String(upper.dropLast($0.0.count)), $0.1) } ?? (upper, 1)
    guard let value = Double(number.trimmingCharacters(in: .whitespaces)), value > 0 else {
        throw TesseraError(.invalidArgument, "\(option) takes a size such as 512M or 8G, not '\(text)'")
    }
    return Int(value * scale)
}
