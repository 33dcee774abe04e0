import Checkpoints
import Engine
import Foundation
import Platform
import Scoring
import TestSupport
import Testing
import Tokenizer

/// The fixture conversations plus two long ones, whose scored turns come after more than 128
/// tokens of prefix (past one slice of the attention's sums over positions).
private func conversations() throws -> [JSONValue] {
    var out = try Fixtures.lines("tiny/reference/conversations.jsonl").map { try JSONValue.parse($0) }
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
}

private func fixture(_ precision: Precision) -> String {
    Fixtures.path("tiny/" + (precision == .fp32 ? "legacy_tp1pp1_fp32_te_uint8_pickle" : "legacy_tp1pp1_bf16_te_bytesio"))
}

/// How one scoring run is made, as `tessera score` options.
private struct Run: CustomStringConvertible {
    var batch = 8, shuffled = false, prefixReuse = true, threads = 2
    var description: String { "batch \(batch)\(shuffled ? " shuffled" : "")\(prefixReuse ? "" : " no-prefix-reuse") threads \(threads)" }
}

/// The output lines of a scoring run over `inputs`, as `tessera score` writes them (batches of
/// `batch` conversations in file order), restored to input order when shuffled with `rng`.
private func score(_ inputs: [JSONValue], _ run: Run, path: KernelPath, precision: Precision, rng: inout SplitMix) throws -> [String] {
    let cache = MappingCache()
    let model = try Model(try Checkpoint.open(fixture(precision), cache: cache), cache: cache,
                          kernels: Kernels(path: path, threads: run.threads))
    var options = ScoringOptions(maxLength: 4096)
    options.precision = precision
    options.prefixReuse = run.prefixReuse
    let tokenizer = try SentencePieceModel(path: Fixtures.path("tiny/tokenizer/tokenizer.model"))
    let annotator = try Annotator(model: model, tokenizer: tokenizer, options: options)
    var order = Array(inputs.indices)
    if run.shuffled { order.shuffle(using: &rng) }
    var lines = [String](repeating: "", count: inputs.count)
    for start in stride(from: 0, to: order.count, by: run.batch) {
        let chunk = Array(order[start..<min(order.count, start + run.batch)])
        let (scored, _) = try annotator.annotate(batch: chunk.map { inputs[$0] })
        for (i, s) in zipSameCount(chunk, scored) { lines[i] = s.python }
    }
    return lines
}

/// Scores are the same bits whatever the batch, the neighbours and their order, prefix reuse
/// or scoring every turn from scratch, and the thread count: on every kernel path this CPU
/// runs, in BF16 and FP32. Each record names its kernel path and precision.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"), try requireCases(Precision.allCases, "precisions"))
func scoresDoNotDependOnBatchCacheOrThreads(path: KernelPath, precision: Precision) throws {
    let inputs = try requireCases(try conversations(), "conversations", atLeast: 10)
    var rng = try TestSeed.generator("scoresDoNotDependOnBatchCacheOrThreads \(path) \(precision)")
    let reference = try score(inputs, Run(batch: 1, threads: 1), path: path, precision: precision, rng: &rng)
    #expect(reference.allSatisfy { $0.contains("\"kernel_path\": \"\(path.rawValue)\"") && $0.contains("\"precision\": \"\(precision.rawValue)\"") })
    let runs = [Run(batch: 2), Run(batch: 5, threads: 1), Run(batch: 3, shuffled: true), Run(batch: 5, prefixReuse: false)]
    for run in runs {
        let lines = try score(inputs, run, path: path, precision: precision, rng: &rng)
        for (i, (a, b)) in zipSameCount(reference, lines).enumerated() {
            #expect(a == b, "\(path) \(precision) \(run): conversation \(i) differs from batch 1, 1 thread")
        }
    }
}
