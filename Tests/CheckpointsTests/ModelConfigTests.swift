import Checkpoints
import Platform
import Testing

private let body = """
num_layers: 96
hidden_size: 18432
ffn_hidden_size: 73728
num_attention_heads: 96
num_query_groups: 8
kv_channels: null
activation: squared-relu
normalization: layernorm1p
bias: false
rotary_percentage: 0.5
share_embeddings_and_output_weights: false
tensor_model_parallel_size: 8
pipeline_model_parallel_size: 2
regression:
  num_attributes: 9
tokenizer:
  library: sentencepiece
  model: nemo:29e0db5f7dd14bcf9f32727ff482502b_nemotron_2_256k.model
"""

@Test func readsNemotronFieldsAndDefaults() throws {
    let c = try ModelConfig(yaml: body, file: "model_config.yaml")
    #expect(c.numLayers == 96)
    #expect(c.kvChannels == 192)          // null -> hidden / heads
    #expect(c.numQueryGroups == 8)
    #expect(c.layernormZeroCenteredGamma)
    #expect(!c.gatedLinearUnit)
    #expect(c.rewardOutputs == 9)
    #expect(c.tokenizerModel == "29e0db5f7dd14bcf9f32727ff482502b_nemotron_2_256k.model")
    #expect(c.tensorModelParallelSize == 8)
    #expect(c.paddedVocab(trueVocab: 256000, tp: 8) == 256000)
    #expect(c.paddedVocab(trueVocab: 256000, tp: 3) == 256128)
}

@Test func acceptsATopLevelModelKey() throws {
    let nested = "model:\n" + body.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")
    let c = try ModelConfig(yaml: nested, file: "model_config.yaml")
    #expect(c.hiddenSize == 18432)
    #expect(c.pipelineModelParallelSize == 2)
}

@Test func missingRequiredFieldNamesIt() {
    do {
        _ = try ModelConfig(yaml: "hidden_size: 64\nnum_attention_heads: 8\n", file: "x/model_config.yaml")
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .missing)
        #expect(error.message.contains("num_layers"))
        #expect(error.file == "x/model_config.yaml")
    }
}

@Test func gatedActivationsAreRecognised() throws {
    let c = try ModelConfig(yaml: "num_layers: 2\nhidden_size: 8\nnum_attention_heads: 2\nactivation: fast-swiglu\n", file: "m")
    #expect(c.gatedLinearUnit)
}

/// What the engine cannot run is refused when the config is read (an unknown activation used
/// to run silently as SiLU), and sizes that drive allocations are bounded.
@Test(arguments: ["activation: swish-ish\n", "normalization: batchnorm\n", "num_layers: 0\n", "hidden_size: -8\n",
                  "num_attention_heads: 100000000\n", "ffn_hidden_size: 999999999999\n", "make_vocab_size_divisible_by: 1000000000000\n"])
func refusesWhatTheEngineCannotRun(_ line: String) throws {
    let yaml = "num_layers: 2\nhidden_size: 8\nnum_attention_heads: 2\n" + line
    #expect(throws: TesseraError.self) { try ModelConfig(yaml: yaml, file: "m") }
}

/// A mapping key that is itself a mapping or a list (`? [a]: b`) made Yams trap while building
/// a dictionary (found by Tools/fuzz.sh); it is a named error now.
@Test(arguments: ["? [a, b]\n: 1\nnum_layers: 2\n", "model:\n  ? {x: 1}\n  : 2\n", "list:\n  - ? [c]\n    : d\n"])
func nonScalarKeysAreRefusedNotTrappedOn(_ yaml: String) {
    do {
        _ = try ModelConfig(yaml: yaml, file: "m/model_config.yaml")
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .corrupt)
        #expect(error.message.contains("mapping key"), "\(error.message)")
        #expect(error.file == "m/model_config.yaml")
    }
}

/// Configs that took the process down before any error could be printed: nesting thousands of
/// levels deep overflowed the stack (exit 139, flow and block forms), and aliases of aliases ten
/// deep expanded to 10^9 values while memory grew. Each is a named error now, found before the
/// YAML library recurses or expands.
private let deepFlow: String = "a: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
private let deepBlock: String = "a:\n" + String(repeating: "- ", count: 5000) + "x"
private let deepIndent: String = "a:\n" + (0..<300).map { (i: Int) -> String in String(repeating: " ", count: i) + "k\(i):\n" }.joined() + "  x"
private let aliasBomb: String = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + (1..<10).map { (i: Int) -> String in
    "l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 10).joined(separator: ", ") + "]\n"
}.joined()

@Test(arguments: [(deepFlow, "may nest 5003 levels deep"), (deepBlock, "may nest 5002 levels deep"), (deepIndent, "levels deep"),
                  (aliasBomb, "more than 1000000 values once its aliases are expanded")])
func configsThatWouldExhaustTheStackOrMemoryAreRefused(_ yaml: String, _ expected: String) {
    do {
        _ = try ModelConfig(yaml: yaml, file: "m/model_config.yaml")
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .corrupt)
        #expect(error.message.contains(expected), "\(error.message)")
        #expect(error.file == "m/model_config.yaml")
    }
}

/// A real config's nesting bound is far below the limit, and a config that uses anchors and
/// aliases a few times is read as written.
@Test func configsWithModestNestingAndAliasesAreRead() throws {
    let yaml = body + "\noptim:\n  sched: &s {name: CosineAnnealing, warmup_steps: [[1, 2], {a: [3]}]}\n  again: *s\n"
        + "data:\n  - - - {x: 'quoted [[[[ # not a comment', y: \"esc \\\" [[\"}\n"
    let c = try ModelConfig(yaml: yaml, file: "model_config.yaml")
    #expect(c.numLayers == 96)
}

@Test func acceptsEveryKnownActivationAndNormalization() throws {
    #expect(ModelConfig.activations.count == 7 && ModelConfig.normalizations.count == 3)
    for a in ModelConfig.activations {
        for n in ModelConfig.normalizations.map({ $0 == "rmsnorm" ? "RMSNorm" : $0 }) {
            let c = try ModelConfig(yaml: "num_layers: 2\nhidden_size: 8\nnum_attention_heads: 2\nactivation: \(a)\nnormalization: \(n)\n", file: "m")
            #expect(c.activation == a)
        }
    }
}

/// Values no model megatron-core builds can have are refused when the config is read, naming
/// the key (query groups that do not divide the heads had run as if they did).
@Test(arguments: [("num_query_groups: 4\n", "num_attention_heads 6 is not a multiple of num_query_groups 4"),
                  ("rotary_percentage: 1.5\n", "rotary_percentage must be in (0, 1]"),
                  ("rotary_percentage: 0\n", "rotary_percentage must be in (0, 1]"),
                  ("rotary_base: -10\n", "rotary_base must be a positive number"),
                  ("layernorm_epsilon: -1\n", "layernorm_epsilon must be a non-negative number"),
                  ("layernorm_epsilon: .nan\n", "layernorm_epsilon must be a non-negative number")])
func refusesImpossibleRelations(_ line: String, _ message: String) {
    let yaml = "num_layers: 2\nhidden_size: 12\nnum_attention_heads: 6\n" + line
    do {
        _ = try ModelConfig(yaml: yaml, file: "m/model_config.yaml")
        Issue.record("accepted \(line)")
    } catch {
        #expect(error.code == .corrupt && error.file == "m/model_config.yaml")
        #expect(error.message.contains(message), "\(error.message)")
    }
}
