import Engine
import Platform

/// Pairwise evaluation as RewardBench counts it: a pair is won when the chosen response's
/// scalar reward is strictly above the rejected one's.
public struct PairwiseResult: Sendable, Codable {
    public struct Subset: Sendable, Codable {
        public var name: String
        public var pairs: Int
        public var wins: Int
        public var accuracy: Double { pairs == 0 ? 0 : Double(wins) / Double(pairs) }
    }
    public var pairs: Int
    public var wins: Int
    public var accuracy: Double { pairs == 0 ? 0 : Double(wins) / Double(pairs) }
    public var subsets: [Subset]
}

extension Annotator {
    /// The scalar reward (weighted outputs) of `response` to `prompt` as a one-turn conversation.
    public func scalarReward(prompt: String, response: String, weights: [Double]) throws(TesseraError) -> Double {
        let conv = JSONValue.object([
            ("conversations", .array([
                .object([("value", .string(prompt)), ("from", .string("User")), ("label", .null)]),
                .object([("value", .string(response)), ("from", .string("Assistant")), ("label", .string(""))]),
            ])),
            ("mask", .string("User")),
        ])
        let scored = try annotate(conv).0
        let values = (scored["conversations"]?.array?.last?["rewards"]?.array ?? []).compactMap { v -> Double? in
            if case .number(let n) = v { return Double(n) } else { return nil }
        }
        return zip(weights, values).reduce(0) { $0 + $1.0 * $1.1 }
    }

    /// The tokens scoring a pair runs (prompt with each response), to balance shards.
    public func pairCost(_ item: JSONValue) -> Int {
        let prompt = item["prompt"]?.string ?? ""
        return [item["chosen"]?.string, item["rejected"]?.string].reduce(1) { sum, response in
            sum + tokenizer.encodeIDs(SteerLMTemplate.user(prompt) + SteerLMTemplate.assistant(response ?? "")).count
        }
    }

    /// The outcome of one `{prompt, chosen, rejected[, subset]}` object.
    public func pair(_ item: JSONValue, weights: [Double] = SteerLMTemplate.modelCardWeights) throws(TesseraError) -> PairOutcome {
        guard let prompt = item["prompt"]?.string, let chosen = item["chosen"]?.string, let rejected = item["rejected"]?.string else {
            throw TesseraError(.corrupt, "expected an object with the strings 'prompt', 'chosen' and 'rejected'")
        }
        return PairOutcome(subset: item["subset"]?.string ?? "all",
                           chosen: try scalarReward(prompt: prompt, response: chosen, weights: weights),
                           rejected: try scalarReward(prompt: prompt, response: rejected, weights: weights))
    }

    /// Scores every `{prompt, chosen, rejected[, subset]}` line of `input`, a line at a time;
    /// `progress` is told how many are done. A bad line is an error naming the file and line.
    public func pairwise(_ input: ConversationInput, weights: [Double] = SteerLMTemplate.modelCardWeights,
                         progress: (Int) -> Void = { _ in }) throws(TesseraError) -> PairwiseResult {
        var outcomes: [PairOutcome] = []
        for (n, line) in input.lines.enumerated() {
            let text = try input.text(line)
            do throws(TesseraError) { outcomes.append(try pair(try JSONValue.parse(text), weights: weights)) } catch {
                throw TesseraError(.corrupt, "line \(line.number): \(error.message)", file: input.path)
            }
            progress(n + 1)
        }
        return PairwiseResult(outcomes)
    }
}

/// One pair scored: a win when the chosen response's reward is strictly above the rejected one's.
public struct PairOutcome: Sendable, Equatable {
    public var subset: String
    public var chosen: Double
    public var rejected: Double
    public var won: Bool { chosen > rejected }

    public init(subset: String, chosen: Double, rejected: Double) {
        self.subset = subset
        self.chosen = chosen
        self.rejected = rejected
    }

    /// The record a pairwise shard output keeps for it.
    public var json: JSONValue {
        .object([("subset", .string(subset)), ("chosen", .double(chosen)), ("rejected", .double(rejected))])
    }

    /// Reads ``json`` back (the doubles are written as Python's repr, which reads back exactly).
    public init?(_ v: JSONValue) {
        guard let subset = v["subset"]?.string, case .number(let c)? = v["chosen"], case .number(let r)? = v["rejected"],
              let chosen = Double(c), let rejected = Double(r) else { return nil }
        self.init(subset: subset, chosen: chosen, rejected: rejected)
    }
}

extension PairwiseResult {
    /// Counts `outcomes`, subsets in order of first appearance.
    public init(_ outcomes: [PairOutcome]) {
        var bySubset: [String: (Int, Int)] = [:]
        var order: [String] = []
        for o in outcomes {
            if bySubset[o.subset] == nil { order.append(o.subset) }
            bySubset[o.subset, default: (0, 0)].0 += 1
            if o.won { bySubset[o.subset]!.1 += 1 }
        }
        self.init(pairs: outcomes.count, wins: outcomes.filter(\.won).count,
                  subsets: order.map { Subset(name: $0, pairs: bySubset[$0]!.0, wins: bySubset[$0]!.1) })
    }

    /// The object `pairwise --json` prints (`Schemas/pairwise.schema.json`).
    public var json: JSONValue {
        .object([("pairs", .number("\(pairs)")), ("wins", .number("\(wins)")), ("accuracy", .double(accuracy)),
                 ("subsets", .array(subsets.map { s in .object([("name", .string(s.name)), ("pairs", .number("\(s.pairs)")),
                                                                 ("wins", .number("\(s.wins)")), ("accuracy", .double(s.accuracy))]) }))])
    }
}
