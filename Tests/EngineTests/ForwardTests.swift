import Checkpoints
import Engine
import Foundation
import Platform
import Synchronization
import TestSupport
import Testing

/// The engine over the fixture at `path`.
private func model(_ path: String) throws -> Model {
    let cache = MappingCache()
    return try Model(try Checkpoint.open(path, cache: cache), cache: cache)
}

/// The engine over the first fixture stored in `dtype` (any dtype when nil).
private func model(dtype: String?) throws -> Model {
    try model(try Fixtures.checkpoint { dtype == nil || $0.dtype == dtype }.path)
}

/// The reference ids of sequence `i` (of at least five).
private func referenceIDs(_ ref: ReferenceOutputs, _ i: Int) throws -> [Int] {
    try requireCases(ref.sequences, "reference sequences", atLeast: 5)[i].ids
}

/// Every fixture, in every format and layout, gives megatron-core's outputs: FP32 weights to
/// within 1e-4 in FP32; BF16 weights to within 0.1 (a few BF16 steps) in BF16.
@Test(arguments: try Fixtures.checkpoints().map(\.relativePath))
func forwardMatchesMegatronCore(_ rel: String) throws {
    let ref = try ReferenceOutputs.load()
    let fixture = try Fixtures.checkpoint { $0.relativePath == rel }
    let model = try model(fixture.path)
    let precision: Precision = fixture.dtype == "fp32" ? .fp32 : .bf16
    let tolerance = fixture.dtype == "fp32" ? 1e-4 : 0.1
    let expected = try ref.outputs(fixture.dtype)
    for i in [0, 3, 4] {
        let r = try model.forward(tokens: try referenceIDs(ref, i), precision: precision)
        expectElementsClose(r.hidden, expected[i].finalLN, tolerance: tolerance, "final_ln of sequence \(i)")
        expectElementsClose(try #require(r.logits), expected[i].logits, tolerance: tolerance, "logits of sequence \(i)")
        expectElementsClose(try #require(r.reward), expected[i].rewards, tolerance: tolerance, "reward of sequence \(i)")
    }
}

@Test func fp32IsCloserToTheReferenceThanBF16() throws {
    let ref = try ReferenceOutputs.load()
    let model = try model(dtype: "fp32")
    let ids = try referenceIDs(ref, 3)
    let exact = try model.forward(tokens: ids, precision: .fp32)
    let rounded = try model.forward(tokens: ids, precision: .bf16)
    let truth = try ref.outputs("fp32")[3].rewards
    #expect(maxDifference(try #require(exact.reward), truth) < maxDifference(try #require(rounded.reward), truth))
}

@Test func tokensOutsideTheVocabularyAreRefused() throws {
    let model = try model(dtype: nil)
    #expect(throws: TesseraError.self) { _ = try model.forward(tokens: [1, 100_000]) }
    #expect(throws: TesseraError.self) { _ = try model.forward(tokens: []) }
}

/// The outputs at a token appended to a cached prefix equal a full forward over both.
@Test func cachedPrefixGivesTheSameOutputsAsAFullForward() throws {
    let model = try model(dtype: "fp32")
    let ids = try referenceIDs(try ReferenceOutputs.load(), 3)
    let kv = try model.prefill(tokens: ids, precision: .fp32)
    for cut in [1, 10, ids.count - 1] {
        let full = try model.forward(tokens: Array(ids.prefix(cut)) + [6], precision: .fp32)
        let step = try model.forward(next: 6, after: kv, prefix: cut, precision: .fp32)
        expectElementsClose(try #require(step.reward), try #require(full.reward), tolerance: 1e-5, "reward after \(cut)")
        expectElementsClose(step.hidden, full.hidden, tolerance: 1e-5, "hidden state after \(cut)")
    }
}

/// Sequences of different lengths run together give what each gives alone (no padding).
@Test func batchesOfDifferentLengthsEqualSingleRuns() throws {
    let ref = try ReferenceOutputs.load()
    let model = try model(dtype: "fp32")
    let seqs = try [3, 0, 1].map { try referenceIDs(ref, $0) }
    let together = try model.forward(batch: seqs.map { Model.Segment(ids: $0) }, precision: .fp32)
    for (seq, r) in zipSameCount(seqs, together, "sequences and results") {
        let alone = try model.forward(tokens: seq, precision: .fp32)
        expectElementsClose(try #require(r.reward), try #require(alone.reward), tolerance: 1e-5, "reward")
        expectElementsClose(try #require(r.logits), try #require(alone.logits), tolerance: 1e-5, "logits")
    }
}

/// In BF16 the cache holds the BF16 keys and values the run computed: a cached step matches
/// the full forward within BF16 rounding (the GEMMs see other shapes).
@Test func bf16CacheStepEqualsTheFullForward() throws {
    let model = try model(dtype: "bf16")
    let ids = try referenceIDs(try ReferenceOutputs.load(), 3)
    let kv = try model.prefill(tokens: ids, precision: .bf16)
    let step = try model.forward(next: 6, after: kv, prefix: 20, precision: .bf16)
    let full = try model.forward(tokens: Array(ids.prefix(20)) + [6], precision: .bf16)
    expectElementsClose(try #require(step.reward), try #require(full.reward), tolerance: 0.05, "reward")
}

@Test func logitsCanBeSkippedWithoutChangingTheReward() throws {
    let model = try model(dtype: "fp32")
    let ids = try referenceIDs(try ReferenceOutputs.load(), 1)
    let with = try model.forward(batch: [Model.Segment(ids: ids)], precision: .fp32)[0]
    let without = try model.forward(batch: [Model.Segment(ids: ids)], precision: .fp32, logits: false)[0]
    #expect(with.logits != nil && without.logits == nil)
    #expect(with.reward! == without.reward!)
}

/// `Model` is Sendable: forward calls from several threads at once give what the same calls
/// give one after another (they share a scratch block, so they take turns).
@Test func concurrentForwardCallsMatchSerialOnes() throws {
    let m = try model(dtype: "bf16")
    let sequences = [[5, 6, 7, 8], [9, 10], [11, 12, 13], [1, 2, 3, 4, 5, 6]]
    let serial = try sequences.map { try m.forward(tokens: $0, precision: .fp32) }
    #expect(serial.count == sequences.count)
    let results = Mutex<[Int: ForwardResult]>([:])
    DispatchQueue.concurrentPerform(iterations: sequences.count * 2) { i in
        let r = try? m.forward(tokens: sequences[i % sequences.count], precision: .fp32)
        results.withLock { $0[i] = r }
    }
    let all = results.withLock { $0 }
    #expect(all.count == sequences.count * 2)
    for (i, r) in all { #expect(r.hidden == serial[i % sequences.count].hidden) }
}
