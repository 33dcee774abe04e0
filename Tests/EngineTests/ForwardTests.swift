import Checkpoints
import Engine
import Foundation
import Platform
import Synchronization
import Testing

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

private struct Reference {
    var ids: [[Int]]
    var outputs: [String: [[String: [Double]]]]
    static let shared: Reference? = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/tiny/reference/outputs.json"),
              let d = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let seqs = d["sequences"] as? [[String: Any]] else { return nil }
        var outs: [String: [[String: [Double]]]] = [:]
        for p in ["fp32", "bf16"] { outs[p] = d[p] as? [[String: [Double]]] }
        return Reference(ids: seqs.compactMap { $0["ids"] as? [Int] }, outputs: outs)
    }()
}

private func fixtureList() -> [(path: String, dtype: String)] {
    guard let data = FileManager.default.contents(atPath: fixtures + "/tiny/manifest.json"),
          let m = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
          let list = m["fixtures"] as? [[String: Any]] else { return [] }
    return list.compactMap { f in
        guard let p = f["path"] as? String, let d = f["dtype"] as? String else { return nil }
        return (p, d)
    }
}

/// The engine over the fixture at `rel` (relative to the fixtures folder).
private func model(_ rel: String) throws -> Model {
    let cache = MappingCache()
    return try Model(try Checkpoint.open(fixtures + "/" + rel, cache: cache), cache: cache)
}

/// The engine over the first fixture stored in `dtype` (any dtype when nil).
private func model(dtype: String?) throws -> Model {
    try model(try #require(fixtureList().first { dtype == nil || $0.dtype == dtype }?.path))
}

private func maxDiff(_ a: [Float], _ b: [Double]) -> Double {
    zip(a, b).map { abs(Double($0) - $1) }.max() ?? .infinity
}

/// Every fixture, in every format and layout, gives megatron-core's outputs: FP32 weights to
/// within 1e-4 in FP32; BF16 weights to within 0.1 (a few BF16 steps) in BF16.
@Test(arguments: fixtureList().map(\.path))
func forwardMatchesMegatronCore(_ rel: String) throws {
    let ref = try #require(Reference.shared)
    let dtype = fixtureList().first { $0.path == rel }?.dtype ?? "bf16"
    let model = try model(rel)
    let precision: Precision = dtype == "fp32" ? .fp32 : .bf16
    let tolerance = dtype == "fp32" ? 1e-4 : 0.1
    let expected = try #require(ref.outputs[dtype])
    for (i, ids) in ref.ids.enumerated() where [0, 3, 4].contains(i) {
        let r = try model.forward(tokens: ids, precision: precision)
        #expect(maxDiff(r.hidden, expected[i]["final_ln"]!) < tolerance, "final_ln of sequence \(i)")
        #expect(maxDiff(try #require(r.logits), expected[i]["logits"]!) < tolerance, "logits of sequence \(i)")
        #expect(maxDiff(try #require(r.reward), expected[i]["rewards"]!) < tolerance, "reward of sequence \(i)")
    }
}

@Test func fp32IsCloserToTheReferenceThanBF16() throws {
    let ref = try #require(Reference.shared)
    let model = try model(dtype: "fp32")
    let ids = ref.ids[3]
    let exact = try model.forward(tokens: ids, precision: .fp32)
    let rounded = try model.forward(tokens: ids, precision: .bf16)
    let truth = ref.outputs["fp32"]![3]["rewards"]!
    #expect(maxDiff(exact.reward!, truth) < maxDiff(rounded.reward!, truth))
}

@Test func tokensOutsideTheVocabularyAreRefused() throws {
    let model = try model(dtype: nil)
    #expect(throws: TesseraError.self) { _ = try model.forward(tokens: [1, 100_000]) }
    #expect(throws: TesseraError.self) { _ = try model.forward(tokens: []) }
}

/// The outputs at a token appended to a cached prefix equal a full forward over both.
@Test func cachedPrefixGivesTheSameOutputsAsAFullForward() throws {
    let ref = try #require(Reference.shared)
    let model = try model(dtype: "fp32")
    let ids = ref.ids[3]
    let kv = try model.prefill(tokens: ids, precision: .fp32)
    for cut in [1, 10, ids.count - 1] {
        let full = try model.forward(tokens: Array(ids.prefix(cut)) + [6], precision: .fp32)
        let step = try model.forward(next: 6, after: kv, prefix: cut, precision: .fp32)
        #expect(maxDiff(step.reward!, full.reward!.map(Double.init)) < 1e-5)
        #expect(maxDiff(step.hidden, full.hidden.map(Double.init)) < 1e-5)
    }
}

/// Sequences of different lengths run together give what each gives alone (no padding).
@Test func batchesOfDifferentLengthsEqualSingleRuns() throws {
    let ref = try #require(Reference.shared)
    let model = try model(dtype: "fp32")
    let seqs = [ref.ids[3], ref.ids[0], ref.ids[1]]
    let together = try model.forward(batch: seqs.map { Model.Segment(ids: $0) }, precision: .fp32)
    for (seq, r) in zip(seqs, together) {
        let alone = try model.forward(tokens: seq, precision: .fp32)
        #expect(maxDiff(r.reward!, alone.reward!.map(Double.init)) < 1e-5)
        #expect(maxDiff(r.logits!, alone.logits!.map(Double.init)) < 1e-5)
    }
}

/// In BF16 the cache holds the BF16 keys and values the run computed: a cached step matches
/// the full forward within BF16 rounding (the GEMMs see other shapes).
@Test func bf16CacheStepEqualsTheFullForward() throws {
    let ref = try #require(Reference.shared)
    let model = try model(dtype: "bf16")
    let ids = ref.ids[3]
    let kv = try model.prefill(tokens: ids, precision: .bf16)
    let step = try model.forward(next: 6, after: kv, prefix: 20, precision: .bf16)
    let full = try model.forward(tokens: Array(ids.prefix(20)) + [6], precision: .bf16)
    #expect(maxDiff(step.reward!, full.reward!.map(Double.init)) < 0.05)
}

@Test func logitsCanBeSkippedWithoutChangingTheReward() throws {
    let ref = try #require(Reference.shared)
    let model = try model(dtype: "fp32")
    let with = try model.forward(batch: [Model.Segment(ids: ref.ids[1])], precision: .fp32)[0]
    let without = try model.forward(batch: [Model.Segment(ids: ref.ids[1])], precision: .fp32, logits: false)[0]
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
