import Checkpoints
import Engine
import Foundation
import Platform
import Scoring
import TestSupport
import Testing
import Tokenizer

private let conversation = #"{"conversations": [{"value": "What is 2+2?", "from": "User", "label": null}, {"value": "4", "from": "Assistant", "label": "helpfulness:4"}, {"value": "And 3+3? caf\u00e9 \ud83d\ude80", "from": "User", "label": null}, {"value": "6, of course.", "from": "Assistant", "label": "helpfulness:-1"}], "mask": "User", "system": ""}"#

/// The numbers of a scored turn's `rewards` array (every element must be one).
private func rewards(_ turn: JSONValue) throws -> [Double] {
    try #require(turn["rewards"]?.array).map { v in
        guard case .number(let text) = v, let n = Double(text) else { throw TestInputError("a reward is not a number: \(v.python)") }
        return n
    }
}

@Test func labelsAreClippedAndRoundedHalfToEven() {
    #expect(SteerLMTemplate.label([4.6, -1, 2.5, 1.5, 0.5, 3.49, 2.51, 0, 4]) ==
            "quality:4,toxicity:0,humor:2,creativity:2,helpfulness:0,correctness:3,coherence:3,complexity:0,verbosity:4")
}

@Test func jsonIsWrittenAsPythonJSONDumpsWritesIt() throws {
    let v = try JSONValue.parse(conversation)
    #expect(v.python == conversation)
    #expect(JSONValue.double(1.2971807718276978).python == "1.2971807718276978")
}

/// The megatron-core reference prompt (the SteerLM template ending in <extra_id_2>) tokenises
/// to the same ids and scores to the same reward.
@Test func referencePromptTokenisesAndScoresAsNeMo() throws {
    let ref = try ReferenceOutputs.load()
    let seq = try #require(ref.sequences.last)
    let a = try setup()
    #expect(a.tokenizer.encode(try #require(seq.text)).ids == seq.ids)
    let reward = try #require(try a.model.forward(tokens: seq.ids, precision: .fp32).reward)
    let expected = try #require(try ref.outputs("fp32").last).rewards
    expectElementsClose(reward, expected, tolerance: 1e-4, "reward")
}

/// Turns scored from one shared prefix equal each string scored on its own.
@Test func prefixReuseEqualsScoringEachStringAlone() throws {
    let a = try setup()
    let (out, tokens) = try a.annotate(try JSONValue.parse(conversation))
    let turns = try #require(out["conversations"]?.array)
    var text = SteerLMTemplate.system(SteerLMTemplate.systemPrompt)
    var checked = 0
    for t in turns {
        let value = t["value"]?.string ?? ""
        text += t["from"]?.string == "User" ? SteerLMTemplate.user(value) : SteerLMTemplate.assistant(value)
        guard t["from"]?.string == "Assistant" else { #expect(t["label"]?.isNull == true); continue }
        let alone = try #require(try a.model.forward(tokens: a.tokenizer.encode(text + "<extra_id_2>").ids, precision: .fp32).reward)
        expectElementsClose(try rewards(t), alone, tolerance: 1e-5, "rewards of turn \(checked)")
        #expect(t["label"]?.string == SteerLMTemplate.label(alone))
        checked += 1
    }
    #expect(checked == 2)
    // One prefill of the whole conversation plus one token per scored turn.
    let fullLength = a.tokenizer.encode(text).ids.count
    #expect(tokens == fullLength + 2)
}

@Test func overLongInputsAreTruncatedAndFlagged() throws {
    let a = try setup(maxLength: 16)
    let (out, _) = try a.annotate(try JSONValue.parse(conversation))
    let scored = try requireCases(try #require(out["conversations"]?.array).filter { $0["from"]?.string == "Assistant" }, "scored turns")
    #expect(scored.allSatisfy { $0["exceeded"] == .bool(true) })
}

@Test func pairwiseCountsStrictWinsPerSubset() throws {
    let a = try setup()
    let same = #"{"prompt": "Hi", "chosen": "Hello!", "rejected": "Hello!", "subset": "ties"}"#
    let r1 = try a.scalarReward(prompt: "Hi", response: "Hello!", weights: SteerLMTemplate.modelCardWeights)
    let r2 = try a.scalarReward(prompt: "Hi", response: "Go away.", weights: SteerLMTemplate.modelCardWeights)
    let better = r1 > r2 ? "Hello!" : "Go away.", worse = r1 > r2 ? "Go away." : "Hello!"
    let items = [same, #"{"prompt": "Hi", "chosen": "\#(better)", "rejected": "\#(worse)", "subset": "chat"}"#,
                 #"{"prompt": "Hi", "chosen": "\#(worse)", "rejected": "\#(better)", "subset": "chat"}"#]
    let r = try a.pairwise(ConversationInput(path: "pairs.jsonl", bytes: Array(items.joined(separator: "\n").utf8)))
    #expect(r.pairs == 3)
    #expect(r.wins == 1)   // a tie is not a win
    #expect(r.subsets.map(\.name) == ["ties", "chat"])
    #expect(r.subsets[1].wins == 1 && r.subsets[1].pairs == 2)

    // A bad line names the file and its line (blank lines counted), not the item's index.
    let bad = ConversationInput(path: "pairs.jsonl", bytes: Array((same + "\n\n" + #"{"prompt": 5, "chosen": "a", "rejected": "b"}"#).utf8))
    #expect { _ = try a.pairwise(bad) } throws: { error in
        (error as? TesseraError)?.description == "pairs.jsonl: line 3: expected an object with the strings 'prompt', 'chosen' and 'rejected' [corrupt]"
    }
}

/// Conversations scored together give what each gives alone.
@Test func batchedConversationsEqualSingleOnes() throws {
    let a = try setup()
    let second = #"{"conversations": [{"value": "Hello", "from": "User", "label": null}, {"value": "Hi there!", "from": "Assistant", "label": "x"}], "mask": "User"}"#
    let objs = [try JSONValue.parse(conversation), try JSONValue.parse(second)]
    let (together, _) = try a.annotate(batch: objs)
    for (obj, t) in zipSameCount(objs, together) {
        let alone = try a.annotate(obj).0
        #expect(t["conversations"]?.array?.compactMap { $0["label"]?.string } == alone["conversations"]?.array?.compactMap { $0["label"]?.string })
        let r1 = try #require(t["conversations"]?.array).filter { $0["rewards"] != nil }.flatMap { try rewards($0) }
        let r2 = try #require(alone["conversations"]?.array).filter { $0["rewards"] != nil }.flatMap { try rewards($0) }
        expectElementsClose(r1, r2, tolerance: 1e-5, "rewards batched and alone")
    }
}

/// Conversations scored by megatron-core on strings built with NeMo-Aligner's own template
/// code (Tools/make_scoring_reference.py): same scoring ids, same floats (FP32 within 1e-4,
/// BF16 within 0.1), and the lines attribute_annotate.py writes.
@Test(arguments: [Precision.fp32, .bf16])
func conversationScoresMatchTheNeMoAlignerReference(_ precision: Precision) throws {
    let ref = try Fixtures.json("tiny/reference/conversations_scored.json")
    let convs = try requireCases(try #require(ref["conversations"] as? [[String: Any]]), "scored reference conversations")
    let inputs = try Fixtures.lines("tiny/reference/conversations.jsonl").map { try JSONValue.parse($0) }
    let cache = MappingCache()
    let dir = precision == .fp32 ? "legacy_tp1pp1_fp32_te_uint8_pickle" : "legacy_tp1pp1_bf16_te_bytesio"
    let model = try Model(try Checkpoint.open(Fixtures.path("tiny/" + dir), cache: cache), cache: cache)
    var options = ScoringOptions(maxLength: 512)
    options.precision = precision
    let a = try Annotator(model: model, tokenizer: try SentencePieceModel(path: Fixtures.path("tiny/tokenizer/tokenizer.model")), options: options)
    let key = precision.rawValue
    let (scored, _) = try a.annotate(batch: inputs)
    var worst = 0.0
    for (c, (conv, output)) in zipSameCount(convs, scored, "reference and scored conversations").enumerated() {
        let turns = try #require(output["conversations"]?.array)
        for s in try requireCases(try #require(conv["scored"] as? [[String: Any]]), "scored turns of conversation \(c)") {
            let turn = try #require(s["turn"] as? Int)
            try #require(turns.indices.contains(turn), "turn \(turn) of conversation \(c)")
            let ids = try #require(s["ids"] as? [Int]), string = try #require(s["scoring_string"] as? String)
            #expect(a.tokenizer.encode(string).ids == ids)
            let expected = try #require(s["rewards_" + key] as? [Double])
            worst = max(worst, maxDifference(try rewards(turns[turn]), expected, "rewards of conversation \(c) turn \(turn)"))
            // attribute_annotate.py's rounding of the reference floats (ties to even included).
            #expect(SteerLMTemplate.label(expected.map(Float.init)) == s["label_" + key] as? String)
        }
        // Without the added raw floats, the line is the one attribute_annotate.py writes.
        if precision == .fp32 {
            guard case .object(let fields) = output else { Issue.record("not an object"); continue }
            #expect(fields.contains { $0.0 == "kernel_path" } && fields.contains { $0.0 == "precision" })
            var line = JSONValue.object(fields.filter { $0.0 != "kernel_path" && $0.0 != "precision" })
            line.set("conversations", .array(turns.map { t in
                guard case .object(let fields) = t else { return t }
                return .object(fields.filter { $0.0 != "rewards" })
            }))
            #expect(line.python == conv["annotated_line_fp32"] as? String)
        }
    }
    #expect(worst < (precision == .fp32 ? 1e-4 : 0.1), "max |reward - reference| = \(worst)")
}
