import Checkpoints
import Engine
import Foundation
import Platform
import TestSupport
import Testing

private func model(_ precision: Precision, path: KernelPath, threads: Int, tp2: Bool = false) throws -> Model {
    let dir = switch (precision, tp2) {
    case (.fp32, false): "legacy_tp1pp1_fp32_te_uint8_pickle"
    case (.fp32, true): "legacy_tp2pp2_fp32_te_bytesio"
    case (.bf16, false): "legacy_tp1pp1_bf16_te_bytesio"
    case (.bf16, true): "legacy_tp2pp2_bf16_te_bytesio"
    }
    let cache = MappingCache()
    return try Model(try Checkpoint.open(Fixtures.path("tiny/" + dir), cache: cache), cache: cache, kernels: Kernels(path: path, threads: threads))
}

/// Sequences of 1 to 300 tokens (past one 128-position slice of the attention sums).
private let sequences: [[Int]] = [1, 7, 40, 150, 300].map { n in (0..<n).map { ($0 * 37 + n) % 500 } }

private func bits(_ r: ForwardResult) -> [UInt32] {
    (r.hidden + (r.logits ?? []) + (r.reward ?? [])).map(\.bitPattern)
}

/// A sequence's hidden state, logits and rewards are the same bits alone, among others of
/// different lengths in either order, with 1 or 2 threads, and (tensor-parallel pieces) in a
/// TP2/PP2 checkpoint's batch: on every kernel path this CPU runs, in BF16 and FP32.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"), try requireCases(Precision.allCases, "precisions"))
func forwardDoesNotDependOnTheBatchOrThreads(path: KernelPath, precision: Precision) throws {
    for tp2 in [false, true] {
        let one = try model(precision, path: path, threads: 1, tp2: tp2), two = try model(precision, path: path, threads: 2, tp2: tp2)
        let alone = try sequences.map { try bits(one.forward(tokens: $0, precision: precision)) }
        let together = try two.forward(batch: sequences.map { Model.Segment(ids: $0) }, precision: precision).map(bits)
        let reversed = try one.forward(batch: sequences.reversed().map { Model.Segment(ids: $0) }, precision: precision).map(bits)
        try #require(together.count == sequences.count && reversed.count == sequences.count)
        for i in sequences.indices {
            #expect(together[i] == alone[i], "\(path) \(precision) tp2 \(tp2): sequence \(i) in a batch differs from alone")
            #expect(reversed[sequences.count - 1 - i] == alone[i], "\(path) \(precision) tp2 \(tp2): sequence \(i) in reversed order differs")
        }
    }
}

/// A token after a cached prefix gives the bits of the full forward over prefix and token,
/// for prefixes shorter and longer than one 128-position slice.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"), try requireCases(Precision.allCases, "precisions"))
func cachedStepEqualsTheFullForwardBitForBit(path: KernelPath, precision: Precision) throws {
    let m = try model(precision, path: path, threads: 2)
    let ids = sequences[4]
    let kv = try m.prefill(tokens: ids, precision: precision)
    for cut in [1, 20, 127, 128, 129, 299] {
        let full = try m.forward(tokens: Array(ids.prefix(cut)) + [6], precision: precision)
        let step = try m.forward(next: 6, after: kv, prefix: cut, precision: precision)
        #expect(bits(step) == bits(full), "\(path) \(precision): step after \(cut) cached positions differs from the full forward")
    }
}

/// A cache made at one precision serves a step at the other (its keys and values widened exactly,
/// or rounded to BF16): the step is close to that precision's full forward, though not its bits.
@Test(arguments: try requireCases(Precision.allCases, "precisions"))
func aCacheOfTheOtherPrecisionServesAStep(precision: Precision) throws {
    let m = try model(precision, path: .best, threads: 2)
    let ids = sequences[4]
    let kv = try m.prefill(tokens: ids, precision: precision == .bf16 ? .fp32 : .bf16)
    for cut in [20, 150] {
        let full = try m.forward(tokens: Array(ids.prefix(cut)) + [6], precision: precision)
        let step = try m.forward(next: 6, after: kv, prefix: cut, precision: precision)
        expectElementsClose(step.hidden, full.hidden, tolerance: 0.1, "\(precision) step after \(cut) positions cached at the other precision")
    }
}

/// Every kernel path gives megatron-core's outputs on every fixture within the tolerances of
/// forwardMatchesMegatronCore (run there on the default path).
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func everyPathMatchesTheReferences(path: KernelPath) throws {
    let ref = try ReferenceOutputs.load()
    for precision in Precision.allCases {
        let expected = try ref.outputs(precision.rawValue)
        let m = try model(precision, path: path, threads: 2, tp2: true)
        let results = try m.forward(batch: ref.sequences.map { Model.Segment(ids: $0.ids) }, precision: precision)
        let tolerance = precision == .fp32 ? 1e-4 : 0.1
        for (i, (r, e)) in zipSameCount(results, expected, "results and references").enumerated() {
            for (key, got, want) in [("final_ln", r.hidden, e.finalLN), ("logits", r.logits ?? [], e.logits), ("rewards", r.reward ?? [], e.rewards)] {
                expectElementsClose(got, want, tolerance: tolerance, "\(path) \(precision) sequence \(i) \(key)")
            }
        }
    }
}
