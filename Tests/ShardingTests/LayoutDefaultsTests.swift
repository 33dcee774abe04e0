import Checkpoints
import Foundation
import Platform
import Sharding
import Testing
import TestSupport

private let tinyFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/tiny").path

private func source(_ name: String, _ cache: MappingCache = MappingCache()) throws -> Catalogue {
    try Checkpoint.open(tinyFixtures + "/" + name, cache: cache)
}

/// With nothing asked for, the target is the source's own layout and key spelling.
@Test func absentOptionsKeepTheSourcesLayout() throws {
    let cat = try source("legacy_tp2pp2_bf16_local_none")
    let layout = try TargetLayout(converting: cat, tp: nil, pp: nil, format: .nemo, spelling: nil, stageLayers: nil)
    #expect(layout == TargetLayout(tp: 2, pp: 2, format: .nemo, spelling: .local, stageLayers: cat.stageLayers))
    #expect(cat.stageLayers == [2, 2])
}

/// What is given wins; the source's pipeline split is kept only while the pipeline size is.
@Test func givenOptionsWin() throws {
    let cat = try source("legacy_tp2pp2_bf16_te_bytesio")
    let tpOnly = try TargetLayout(converting: cat, tp: 4, pp: nil, format: .distZarr, spelling: .local, stageLayers: nil)
    #expect(tpOnly == TargetLayout(tp: 4, pp: 2, format: .distZarr, spelling: .local, stageLayers: [2, 2]))
    let ppToo = try TargetLayout(converting: cat, tp: nil, pp: 4, format: .nemo, spelling: nil, stageLayers: nil)
    #expect(ppToo == TargetLayout(tp: 2, pp: 4, format: .nemo, spelling: .transformerEngine, stageLayers: nil))
    let split = try TargetLayout(converting: cat, tp: nil, pp: nil, format: .nemo, spelling: nil, stageLayers: [1, 3])
    #expect(split.stageLayers == [1, 3] && split.pp == 2)
}

/// A source that does not tell its key spelling is written with TransformerEngine's names.
@Test func unknownSpellingMeansTransformerEngine() throws {
    var cat = try source("legacy_tp1pp1_bf16_local_none")
    cat.spelling = nil
    let layout = try TargetLayout(converting: cat, tp: nil, pp: nil, format: .nemo, spelling: nil, stageLayers: nil)
    #expect(layout.spelling == .transformerEngine)
}

/// An HDF5 store goes back to the layout it records, its uneven pipeline split included.
@Test func anHDF5StoreGoesBackToItsRecordedLayout() throws {
    let temporary = try TemporaryFolder("layout"), folder = temporary.path
    let cache = MappingCache()
    try Converter.convert(try source("legacy_tp2pp2_bf16_te_bytesio", cache), to: folder + "/store.h5",
                          layout: TargetLayout(tp: 2, pp: 2, format: .hdf5, stageLayers: [1, 3]), force: false, cache: cache)
    let store = try Checkpoint.open(folder + "/store.h5", cache: cache)
    let layout = try TargetLayout(converting: store, tp: nil, pp: nil, format: .distTorch, spelling: nil, stageLayers: nil)
    #expect(layout.tp == 2 && layout.pp == 2 && layout.stageLayers == [1, 3])
}

/// A Hugging Face folder holds the whole model: only TP=1/PP=1 may be asked for.
@Test func hfRefusesAnotherLayout() throws {
    let cat = try source("legacy_tp2pp2_bf16_te_bytesio")
    #expect(throws: TesseraError.self) {
        try TargetLayout(converting: cat, tp: 2, pp: nil, format: .hf, spelling: nil, stageLayers: nil)
    }
    #expect(throws: TesseraError.self) {
        try TargetLayout(converting: cat, tp: nil, pp: 2, format: .hf, spelling: nil, stageLayers: nil)
    }
    let whole = try TargetLayout(converting: cat, tp: 1, pp: 1, format: .hf, spelling: nil, stageLayers: nil)
    #expect(whole.tp == 1 && whole.pp == 1)
}

@Test(arguments: [("none", nil), ("zstd", 1), ("zstd:5", 5), ("zstd:-7", -7), ("zstd:22", 22)] as [(String, Int32?)])
func compressionSpecsGiveTheirLevel(_ text: String, _ level: Int32?) throws {
    #expect(try TargetLayout.compressionLevel(parsing: text) == level)
}

@Test(arguments: ["zstd:23", "zstd:-8", "gzip", "zstd:1:2", "zstd:x", "", "ZSTD"])
func badCompressionSpecsAreRefused(_ text: String) {
    do throws(TesseraError) {
        _ = try TargetLayout.compressionLevel(parsing: text)
        Issue.record("'\(text)' was accepted")
    } catch {
        #expect(error.code == .invalidArgument && error.message.contains("'\(text)'"), "\(error)")
    }
}

/// TP must divide what megatron-core splits (heads, FFN size), and divide the query groups or
/// be a multiple of them (megatron-core 0.16), not the hidden size: only a reward head splits
/// that, and its own tensor rule refuses it (Tools/layout_interop.py proves these against
/// megatron-core).
@Test func tensorParallelRulesAreMegatronCores() throws {
    func config(heads: Int, groups: Int, ffn: Int) throws -> ModelConfig {
        try ModelConfig(yaml: "num_layers: 2\nhidden_size: 66\nffn_hidden_size: \(ffn)\nnum_attention_heads: \(heads)\nnum_query_groups: \(groups)\n",
                        file: "model_config.yaml")
    }
    let accepted: [(Int, ModelConfig, Int)] = [(4, try config(heads: 8, groups: 4, ffn: 260), 0), (8, try config(heads: 8, groups: 2, ffn: 256), 1)]
    for (tp, c, notes) in accepted {
        let layout = TargetLayout(tp: tp, pp: 1, format: .nemo)
        try layout.validate(c)
        #expect(layout.notes(c).count == notes, "TP\(tp): \(layout.notes(c))")
    }
    // Each refusal names what does not split and the sizes that would.
    let refused: [(Int, ModelConfig, String)] = [(3, try config(heads: 8, groups: 4, ffn: 258), "8 attention heads (this model takes TP 1, 2)"),
                                                 (8, try config(heads: 8, groups: 4, ffn: 260), "260 ffn hidden size (this model takes TP 1, 2, 4)"),
                                                 (2, try config(heads: 12, groups: 3, ffn: 256), "3 query groups nor is a multiple of them (this model takes TP 1)")]
    #expect(!refused.isEmpty)
    for (tp, c, what) in refused {
        do {
            try TargetLayout(tp: tp, pp: 1, format: .nemo).validate(c)
            Issue.record("TP\(tp) accepted; expected a refusal naming the \(what)")
        } catch { #expect(error.message.contains(what), "\(error.message)") }
    }
}

/// A pipeline size that does not divide the layers is refused with the option that splits them
/// unevenly and a split that works, or why none can.
@Test func anIndivisiblePipelineNamesTheUnevenSplit() throws {
    let cases = try requireCases([(4, 3, "an uneven split takes --stage-layers, e.g. 2,1,1"), (96, 5, "e.g. 20,19,19,19,19"),
                                  (4, 5, "4 layers cannot fill 5 stages")], "pipeline sizes")
    for (layers, pp, hint) in cases {
        do {
            _ = try TargetLayout(tp: 1, pp: pp, format: .nemo).stages(layers: layers)
            Issue.record("\(layers) layers into \(pp) stages")
        } catch {
            #expect(error.code == .invalidArgument && error.message.contains(hint), "\(error.message)")
        }
        if layers >= pp {
            let example = hint.split(separator: " ").last.map(String.init)!.split(separator: ",").map { Int($0)! }
            #expect(try TargetLayout(tp: 1, pp: pp, format: .nemo, stageLayers: example).stages(layers: layers) == example)
        }
    }
}
