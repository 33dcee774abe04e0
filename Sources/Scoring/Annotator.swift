import Engine
import Foundation
import Platform
import Tokenizer

/// NeMo-Aligner's SteerLM prompt (`examples/nlp/data/steerlm/common.py`).
public enum SteerLMTemplate {
    public static let systemPrompt = "A chat between a curious user and an artificial intelligence assistant. "
        + "The assistant gives helpful, detailed, and polite answers to the user's questions."
    public static let labelPrefix = "<extra_id_2>"
    /// The nine attributes, in the reward head's output order.
    public static let attributes = ["quality", "toxicity", "humor", "creativity", "helpfulness", "correctness",
                                    "coherence", "complexity", "verbosity"]
    /// The model card's scalar reward: weights over the nine outputs.
    public static let modelCardWeights: [Double] = [0, 0, 0, 0, 0.3, 0.74, 0.46, 0.47, -0.33]

    public static func system(_ v: String) -> String { "<extra_id_0>System\n\(v)\n" }
    public static func user(_ v: String) -> String { "<extra_id_1>User\n\(v)\n" }
    public static func assistant(_ v: String) -> String { "<extra_id_1>Assistant\n\(v)\n" }

    /// The label string `attribute_annotate.py` writes: each output clipped to [0, 4],
    /// rounded half to even, all nine attributes.
    public static func label(_ rewards: [Float]) -> String {
        zip(attributes, rewards).map { a, r in
            "\(a):\(Int(min(4.0, max(0.0, Double(r))).rounded(.toNearestOrEven)))"
        }.joined(separator: ",")
    }
}

/// Options of a scoring run.
public struct ScoringOptions: Sendable {
    public var precision: Precision = .bf16
    /// Tokens kept of an over-long input (the model's sequence length).
    public var maxLength: Int
    /// Keep the end of over-long inputs instead of the start (NeMo-Aligner keeps the start).
    public var keepEnd = false
    /// Weights of an added scalar reward; nil adds none.
    public var scalarWeights: [Double]?
    /// Share the work on a conversation's common prefix between its turns (off: score every
    /// string from scratch, as NeMo-Aligner's server does).
    public var prefixReuse = true
    public init(maxLength: Int) { self.maxLength = maxLength }
}

extension ScoringOptions: CustomStringConvertible {
    /// The options that change what is written, as shard outputs record them.
    public var description: String {
        "precision=\(precision.rawValue) max_length=\(maxLength) keep_end=\(keepEnd) prefix_reuse=\(prefixReuse)"
            + " scalar=\(scalarWeights.map { $0.map { "\($0)" }.joined(separator: ",") } ?? "none")"
    }
}

/// Scores conversations as NeMo-Aligner's `attribute_annotate.py` does, on one host: one
/// score per turn whose `label` is not null, read at the `<extra_id_2>` appended to the
/// conversation up to that turn. Turns of one conversation share the work on their common
/// prefix (its keys and values are computed once).
public struct Annotator {
    public let model: Model
    public let tokenizer: SentencePieceModel
    public let options: ScoringOptions
    let labelID: Int

    public init(model: Model, tokenizer: SentencePieceModel, options: ScoringOptions) throws(TesseraError) {
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        if let vocab = model.config.paddedVocabSize, tokenizer.count > vocab {
            throw TesseraError(.inconsistent,
                "the tokenizer has \(tokenizer.count) pieces but the model's embedding has \(vocab) rows: they do not belong together")
        }
        labelID = tokenizer.id(of: SteerLMTemplate.labelPrefix)
        guard tokenizer.pieces[labelID].text == SteerLMTemplate.labelPrefix else {
            throw TesseraError(.unsupported, "the tokenizer has no \(SteerLMTemplate.labelPrefix) symbol; it is not a SteerLM reward tokenizer")
        }
    }

    /// The key `attribute_annotate.py` resumes by: the turns' values concatenated.
    public static func key(_ obj: JSONValue) -> String {
        (obj["conversations"]?.array ?? []).compactMap { $0["value"]?.string }.joined()
    }

    /// Checks a conversation object has what NeMo-Aligner's script reads.
    public static func validate(_ obj: JSONValue) throws(TesseraError) {
        guard let turns = obj["conversations"]?.array else {
            throw TesseraError(.corrupt, "expected a 'conversations' list")
        }
        guard !turns.isEmpty else { throw TesseraError(.corrupt, "the conversation is empty") }
        for (i, t) in turns.enumerated() {
            guard t["from"]?.string != nil, t["value"]?.string != nil else {
                throw TesseraError(.corrupt, "turn \(i + 1) lacks 'from' or 'value' (strings)")
            }
        }
        let user = obj["mask"]?.string ?? "User"
        guard turns.contains(where: { $0["from"]?.string == user }) else {
            throw TesseraError(.corrupt, "no turn is from the mask speaker '\(user)'")
        }
    }

    /// Scores one conversation object; returns it with labels (and raw scores) filled in,
    /// and the number of tokens run.
    public func annotate(_ obj: JSONValue) throws(TesseraError) -> (JSONValue, Int) {
        let (out, tokens) = try annotate(batch: [obj])
        return (out[0], tokens)
    }

    /// Scores several conversations together: one batched prefill of every conversation, then
    /// one batched step for every scored turn of all of them.
    public func annotate(batch objs: [JSONValue]) throws(TesseraError) -> ([JSONValue], Int) {
        let (out, tokens) = try annotateCounting(batch: objs)
        return (out, tokens.reduce(0, +))
    }

    /// The strings scored in a conversation: for every turn whose label is not null, the
    /// template text of the conversation up to and including it.
    func scoredPrefixes(_ obj: JSONValue) -> [(turn: Int, text: String)] {
        let turns = obj["conversations"]?.array ?? []
        let user = obj["mask"]?.string ?? "User"
        var text = SteerLMTemplate.system(SteerLMTemplate.systemPrompt)
        var out: [(turn: Int, text: String)] = []
        for (i, t) in turns.enumerated() {
            let value = t["value"]?.string ?? ""
            text += t["from"]?.string == user ? SteerLMTemplate.user(value) : SteerLMTemplate.assistant(value)
            if let label = t["label"], !label.isNull { out.append((i, text)) }
        }
        return out
    }

    /// The work of scoring `obj`, in tokens, as the run with prefix reuse spends it: its text
    /// up to the last scored turn, plus one token per scored turn. Used to balance shards.
    public func cost(_ obj: JSONValue) -> Int {
        let prefixes = scoredPrefixes(obj)
        guard let last = prefixes.last else { return 1 }
        return tokenizer.encodeIDs(last.text).count + prefixes.count
    }

    /// ``annotate(batch:)`` with the tokens run for each conversation.
    public func annotateCounting(batch objs: [JSONValue]) throws(TesseraError) -> ([JSONValue], [Int]) {
        struct Job { var conv: Int; var turn: Int; var ids: [Int]; var withLabel: [Int] }
        var jobs: [Job] = []
        var fulls: [[Int]] = []
        var convTurns: [[JSONValue]] = []
        for (c, obj) in objs.enumerated() {
            try Self.validate(obj)
            convTurns.append(obj["conversations"]!.array!)
            let prefixes = scoredPrefixes(obj)
            for p in prefixes {
                jobs.append(Job(conv: c, turn: p.turn, ids: tokenizer.encodeIDs(p.text),
                                withLabel: tokenizer.encodeIDs(p.text + SteerLMTemplate.labelPrefix)))
            }
            fulls.append(prefixes.last.map { tokenizer.encodeIDs($0.text) } ?? [])
        }
        var tokensRun = [Int](repeating: 0, count: objs.count)
        // One prefill per conversation whose longest scored prefix fits.
        let prefilled = options.prefixReuse ? fulls.indices.filter { !fulls[$0].isEmpty && fulls[$0].count < options.maxLength } : []
        var caches: [Int: KVCache] = [:]
        if !prefilled.isEmpty {
            let kv = try model.prefill(batch: prefilled.map { fulls[$0] }, precision: options.precision)
            for (c, cache) in zip(prefilled, kv) { caches[c] = cache }
            for c in prefilled { tokensRun[c] += fulls[c].count }
        }
        var segments: [Model.Segment] = []
        var exceeded: [Bool] = []
        for job in jobs {
            if let cache = caches[job.conv], job.withLabel == job.ids + [labelID], Array(fulls[job.conv].prefix(job.ids.count)) == job.ids {
                segments.append(Model.Segment(ids: [labelID], past: cache, pastCount: job.ids.count))
                exceeded.append(false)
            } else {
                var run = job.withLabel
                let over = run.count > options.maxLength
                if over { run = options.keepEnd ? Array(run.suffix(options.maxLength)) : Array(run.prefix(options.maxLength)) }
                segments.append(Model.Segment(ids: run))
                exceeded.append(over)
            }
        }
        for (job, segment) in zip(jobs, segments) { tokensRun[job.conv] += segment.ids.count }
        // Scoring needs the reward head only: no vocabulary-sized output layer per turn.
        let results = segments.isEmpty ? [] : try model.forward(batch: segments, precision: options.precision, logits: false)
        for (k, job) in jobs.enumerated() {
            guard let rewards = results[k].reward else {
                throw TesseraError(.unsupported, "the model has no reward head (rm_head)")
            }
            var t = convTurns[job.conv][job.turn]
            t.set("label", .string(SteerLMTemplate.label(rewards)))
            t.set("rewards", .array(rewards.map { .double(Double($0)) }))
            if let w = options.scalarWeights {
                t.set("reward", .double(zip(w, rewards).reduce(0) { $0 + $1.0 * Double($1.1) }))
            }
            if exceeded[k] { t.set("exceeded", .bool(true)) }
            convTurns[job.conv][job.turn] = t
        }
        // Scores are the same bits for any batch, prefix reuse or thread count, but may differ
        // between kernel paths and precisions: each record says which made it.
        let out = objs.enumerated().map { c, obj -> JSONValue in
            var o = obj
            o.set("conversations", .array(convTurns[c]))
            o.set("kernel_path", .string(model.kernels.path.rawValue))
            o.set("precision", .string(options.precision.rawValue))
            return o
        }
        return (out, tokensRun)
    }
}
