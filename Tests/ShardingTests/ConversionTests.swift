import Checkpoints
import Foundation
import Platform
import Sharding
import TestSupport
import Testing

/// Random valid layouts of synthetic models, in every format, read back bit-identical;
/// converting back to TP1/PP1 gives the original again.
@Test(arguments: [(UInt64(1), false), (UInt64(2), true), (UInt64(3), false), (UInt64(4), true)])
func randomLayoutsRoundTrip(seed: UInt64, gated: Bool) throws {
    let scratch = try TemporaryFolder("conv")
    var model = SyntheticModel()
    model.seed = try TestSeed.value("randomLayoutsRoundTrip gated \(gated)", fallback: seed)
    model.gated = gated
    model.layers = [4, 6, 8][Int(model.seed % 3)]
    let (_, source) = try model.make(in: scratch)
    let cache = MappingCache()
    let original = try digests(source, cache: cache)
    var rng = SplitMix(seed: model.seed)
    for step in 0..<3 {
        let r = rng.next()
        let tp = [1, 2][Int(r >> 40) % 2]
        let pps = (1...model.layers).filter { model.layers % $0 == 0 }
        let pp = pps[Int(r >> 20) % pps.count]
        let format = OutputFormat.allCases[(Int(r >> 50) + step) % 3]
        let dst = scratch.file("\(step)-\(tp)x\(pp)-\(format.rawValue)")
        try Converter.convert(source, to: dst, layout: TargetLayout(tp: tp, pp: pp, format: format), force: false, cache: cache)
        let written = try Checkpoint.open(dst, cache: cache)
        if format == .nemo {
            #expect(written.tp == tp && written.pp == pp)
        }
        #expect(try digests(written, cache: cache) == original, "\(tp)x\(pp) \(format.rawValue)")
        let back = scratch.file("\(step)-back")
        try Converter.convert(written, to: back, layout: TargetLayout(tp: 1, pp: 1, format: .nemo), force: false, cache: cache)
        #expect(try digests(try Checkpoint.open(back, cache: cache), cache: cache) == original)
    }
}

@Test func unevenPipelineStagesAreWrittenAndReadBack() throws {
    let scratch = try TemporaryFolder("conv")
    var model = SyntheticModel()
    model.layers = 5
    let (_, source) = try model.make(in: scratch)
    let cache = MappingCache()
    let dst = scratch.file("uneven")
    try Converter.convert(source, to: dst, layout: TargetLayout(tp: 2, pp: 2, format: .nemo, stageLayers: [2, 3]),
                          force: false, cache: cache)
    let back = try Checkpoint.open(dst, cache: cache)
    #expect(back.pp == 2)
    #expect(try digests(back, cache: cache) == digests(source, cache: cache))
}

@Test func invalidLayoutsAreRefusedBeforeAnythingIsWritten() throws {
    let scratch = try TemporaryFolder("conv")
    let (_, source) = try SyntheticModel().make(in: scratch)
    let cache = MappingCache()
    for (tp, pp) in [(3, 1), (8, 1), (1, 3), (0, 1)] {
        let dst = scratch.file("bad-\(tp)x\(pp)")
        #expect(throws: TesseraError.self) {
            try Converter.convert(source, to: dst, layout: TargetLayout(tp: tp, pp: pp, format: .nemo), force: false, cache: cache)
        }
        #expect(!FileManager.default.fileExists(atPath: dst))
    }
}

@Test func existingDestinationNeedsForce() throws {
    let scratch = try TemporaryFolder("conv")
    let (dir, source) = try SyntheticModel().make(in: scratch)
    let cache = MappingCache()
    let layout = TargetLayout(tp: 1, pp: 1, format: .nemo)
    do {
        try Converter.convert(source, to: dir, layout: layout, force: false, cache: cache)
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("--force"))
    }
    let dst = scratch.file("forced")
    try FileManager.default.createDirectory(atPath: dst, withIntermediateDirectories: true)
    try Converter.convert(source, to: dst, layout: layout, force: true, cache: cache)
    #expect(FileManager.default.fileExists(atPath: dst + "/model_weights.ckpt"))
}

@Test func vocabularyIsRepaddedWithZeroRowsForANewTPSize() throws {
    var model = SyntheticModel()
    model.vocab = 80          // padded for TP=1 with divisor 16 ...
    model.divisor = 16        // ... but TP=2 needs a multiple of 32: 96
    let scratch = try TemporaryFolder("conv")
    let (_, source) = try model.make(in: scratch)
    let cache = MappingCache()
    let dst = scratch.file("repad")
    let report = try Converter.convert(source, to: dst, layout: TargetLayout(tp: 2, pp: 1, format: .nemo), force: false, cache: cache)
    #expect(report.notes.contains { $0.contains("80 -> 96") })
    let written = try Checkpoint.open(dst, cache: cache)
    let emb = try #require(written.tensor("embedding.word_embeddings.weight"))
    #expect(emb.shape == [96, 32])
    var bytes: [UInt8] = []
    try TensorStreamer(cache: cache).forEachRun(of: emb, region: Box(offset: [80, 0], shape: [16, 32])) { bytes += $0 }
    #expect(bytes.count == 16 * 32 * 2)
    #expect(bytes.allSatisfy { $0 == 0 })
    var head: [UInt8] = []
    try TensorStreamer(cache: cache).forEachRun(of: emb, region: Box(offset: [0, 0], shape: [80, 32])) { head += $0 }
    let src = try #require(source.tensor("embedding.word_embeddings.weight"))
    var orig: [UInt8] = []
    try TensorStreamer(cache: cache).forEachRun(of: src) { orig += $0 }
    #expect(head == orig)
}

@Test func nemoTarOutputIsReadInPlace() throws {
    let scratch = try TemporaryFolder("conv")
    let (_, source) = try SyntheticModel().make(in: scratch)
    let cache = MappingCache()
    let dst = scratch.file("model.nemo")
    try Converter.convert(source, to: dst, layout: TargetLayout(tp: 2, pp: 2, format: .nemo), force: false, cache: cache)
    let tar = try Checkpoint.open(dst, cache: cache)
    #expect(tar.container is TarContainer)
    #expect(try digests(tar, cache: cache) == digests(source, cache: cache))
    let name = URL(fileURLWithPath: dst).lastPathComponent
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path)
        .filter { $0.contains(name) && $0.contains("tessera-partial") }
    #expect(leftovers.isEmpty)
}

@Test func unwritableDestinationLeavesNothing() throws {
    let scratch = try TemporaryFolder("conv")
    let (_, source) = try SyntheticModel().make(in: scratch)
    let dst = "/proc/tessera-cannot-write-here"
    do {
        try Converter.convert(source, to: dst, layout: TargetLayout(tp: 1, pp: 1, format: .nemo), force: false, cache: MappingCache())
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .io)
    }
    #expect(!FileManager.default.fileExists(atPath: dst))
}

/// TP need not divide the hidden size, but the reward head splits it: hidden 30 with 4 heads of
/// 8 at TP4 is refused in every sharded format before anything is written, naming rm_head.weight; the
/// same model at TP2 converts (every split tensor divides) and reads back bit-identical.
@Test func aSplitThatDoesNotDivideIsRefusedNamingTheTensor() throws {
    let scratch = try TemporaryFolder("conv")
    var model = SyntheticModel()
    (model.hidden, model.heads, model.groups, model.kvChannels) = (30, 4, 2, 8)
    let (_, source) = try model.make(in: scratch)
    let cache = MappingCache()
    let sharded = OutputFormat.allCases.filter { $0 != .hf }   // an HF folder is never split
    #expect(sharded.count == 4)
    for format in sharded {
        let dst = scratch.file("tp4-\(format.rawValue)")
        do {
            try Converter.convert(source, to: dst, layout: TargetLayout(tp: 4, pp: 1, format: format), force: false, cache: cache)
            Issue.record("\(format.rawValue): rm_head.weight [9, 30] was split over 4 ranks")
        } catch {
            #expect(error.tensor == "rm_head.weight", "\(format.rawValue): \(error)")
            #expect(error.message.contains("tensor-parallel size 4"), "\(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: dst))
    }
    let two = scratch.file("tp2")
    try Converter.convert(source, to: two, layout: TargetLayout(tp: 2, pp: 1, format: .distTorch), force: false, cache: cache)
    #expect(try digests(try Checkpoint.open(two, cache: cache), cache: cache) == (try digests(source, cache: cache)))
}
