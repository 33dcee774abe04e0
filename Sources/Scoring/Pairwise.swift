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

    /// Scores every `{prompt, chosen, rejected[, subset]}` object.
    public func pairwise(_ items: [JSONValue], weights: [Double] = SteerLMTemplate.modelCardWeights,
                         progress: (Int) -> Void = { _ in }) throws(TesseraError) -> PairwiseResult {
        var bySubset: [String: (Int, Int)] = [:]
        var order: [String] = []
        var wins = 0
        for (n, item) in items.enumerated() {
            guard let prompt = item["prompt"]?.string, let chosen = item["chosen"]?.string, let rejected = item["rejected"]?.string else {
                throw TesseraError(.corrupt, "item \(n + 1) lacks prompt, chosen or rejected")
            }
            let won = try scalarReward(prompt: prompt, response: chosen, weights: weights)
                > scalarReward(prompt: prompt, response: rejected, weights: weights)
            let subset = item["subset"]?.string ?? "all"
            if bySubset[subset] == nil { order.append(subset) }
            var s = bySubset[subset] ?? (0, 0)
            s.0 += 1
            if won { s.1 += 1; wins += 1 }
            bySubset[subset] = s
            progress(n + 1)
        }
        return PairwiseResult(pairs: items.count, wins: wins,
                              subsets: order.map { PairwiseResult.Subset(name: $0, pairs: bySubset[$0]!.0, wins: bySubset[$0]!.1) })
    }
}
