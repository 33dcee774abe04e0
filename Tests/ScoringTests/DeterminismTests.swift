import Checkpoints
import Engine
import Foundation
import Platform
import Scoring
import Testing
import Tokenizer

/// The fixture conversations plus two long ones, whose scored turns come after more than 128
/// tokens of prefix (past one slice of the attention's sums over positions).
private let inputs: [JSONValue] = {
    let text = (try? String(contentsOfFile: fixtures + "/tiny/reference/conversations.jsonl", encoding: .utf8)) ?? ""
    var out = text.split(separator: "\n").compactMap { try? JSONValue.parse(String($0)) }
    let long = String(repeating: "The quick brown fox jumps over the lazy dog, again and again. ", count: 5)
    for n in 1...2 {
        let turns: [JSONValue] = [
            .object([("value", .string(long)), ("from", .string("User")), ("label", .null)]),
            .object([("value", .string("Answer \(n): " + long)), ("from", .string("Assistant")), ("label", .string("x"))]),
            .object([("value", .string("And then?")), ("from", .string("User")), ("label", .null)]),
            .object([("value", .string("Then it rests.")), ("from", .string("Assistant")), ("label", .string("y"))]),
        ]
        out.append(.object([("conversations", .array(turns)), ("mask", .string("User"))]))
    }
    return out
}()

private let tokenizer = try? SentencePieceModel(path: fixtures + "/tiny/tokenizer/tokenizer.model")

private func fixture(_ precision: Precision) -> String {
    fixtures + "/tiny/" + (precision == .fp32 ? "legacy_tp1pp1_fp32_te_uint8_pickle" : "legacy_tp1pp1_bf16_te_bytesio")
}

/// How one scoring run is made, as `tessera score` options.
private struct Run: CustomStringConvertible {
    var batch = 8, shuffled = false, prefixReuse = true, threads = 2
    var description: String { "batch \(batch)\(shuffled ? " shuffled" : "")\(prefixReuse ? "" : " no-prefix-reuse") threads \(threads)" }
}

/// The output lines of a scoring run over `inputs`, as `tessera score` writes them (batches of
/// `batch` conversations in file order), restored to input order when shuffled.
private func score(_ run: Run, path: KernelPath, precision: Precision) throws -> [String] {
    let cache = MappingCache()
    let model = try Model(try Checkpoint.open(fixture(precision), cache: cache), cache: cache,
                          kernels: Kernels(path: path, threads: run.threads))
    var options = ScoringOptions(maxLength: 4096)
    options.precision = precision
    options.prefixReuse = run.prefixReuse
    let annotator = try Annotator(model: model, tokenizer: try #require(tokenizer), options: options)
    var order = Array(inputs.indices)
    if run.shuffled {
        var rng = SystemRandomNumberGenerator()
        order.shuffle(using: &rng)
    }
    var lines = [String](repeating: "", count: inputs.count)
    for start in stride(from: 0, to: order.count, by: run.batch) {
        let chunk = Array(order[start..<min(order.count, start + run.batch)])
        let (scored, _) = try annotator.annotate(batch: chunk.map { inputs[$0] })
        for (i, s) in zip(chunk, scored) { lines[i] = s.python }
    }
    return lines
}

/// Scores are the same bits whatever the batch, the neighbours and their order, prefix reuse
/// or scoring every turn from scratch, and the thread count: on every kernel path this CPU
/// runs, in BF16 and FP32. Each record names its kernel path and precision.
@Test(arguments: KernelPath.supported, Precision.allCases)
func scoresDoNotDependOnBatchCacheOrThreads(path: KernelPath, precision: Precision) throws {
    let reference = try score(Run(batch: 1, threads: 1), path: path, precision: precision)
    #expect(reference.allSatisfy { $0.contains("\"kernel_path\": \"\(path.rawValue)\"") && $0.contains("\"precision\": \"\(precision.rawValue)\"") })
    let runs = [Run(batch: 2), Run(batch: 5, threads: 1), Run(batch: 3, shuffled: true), Run(batch: 5, prefixReuse: false)]
    for run in runs {
        let lines = try score(run, path: path, precision: precision)
        for (i, (a, b)) in zip(reference, lines).enumerated() {
            #expect(a == b, "\(path) \(precision) \(run): conversation \(i) differs from batch 1, 1 thread")
        }
    }
}
