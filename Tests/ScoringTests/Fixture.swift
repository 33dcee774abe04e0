import Checkpoints
import Engine
import Foundation
import Platform
import Scoring
import TestSupport
import Tokenizer

/// The annotator of the tiny fixture reward model (FP32 legacy checkpoint, fixture tokenizer).
func setup(precision: Precision = .fp32, maxLength: Int = 4096) throws -> Annotator {
    let cache = MappingCache()
    let cat = try Checkpoint.open(Fixtures.path("tiny/legacy_tp1pp1_fp32_te_uint8_pickle"), cache: cache)
    let model = try Model(cat, cache: cache)
    let sp = try SentencePieceModel(path: Fixtures.path("tiny/tokenizer/tokenizer.model"))
    var options = ScoringOptions(maxLength: maxLength)
    options.precision = precision
    return try Annotator(model: model, tokenizer: sp, options: options)
}

/// `count` conversations of very different lengths (the fixture's, lengthened), with an empty
/// line and a repeated conversation among them, as JSONL.
func variedConversations(_ count: Int) throws -> String {
    let base = try Fixtures.lines("tiny/reference/conversations.jsonl")
    var lines: [String] = []
    for i in 0..<count {
        var obj = try JSONValue.parse(base[i % base.count])
        var turns = obj["conversations"]!.array!
        turns[0].set("value", .string(turns[0]["value"]!.string! + String(repeating: " more", count: i * 7 % 23)))
        obj.set("conversations", .array(turns))
        lines.append(obj.python)
        if i == 3 { lines.append("") }
        if i == 5 { lines.append(lines[lines.count - 2]) }
    }
    return lines.joined(separator: "\n") + "\n"
}
