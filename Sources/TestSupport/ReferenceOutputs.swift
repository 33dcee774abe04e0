/// megatron-core's outputs for the tiny fixture model (`tiny/reference/outputs.json`).
public struct ReferenceOutputs: Sendable {
    /// One reference sequence: its token ids, and the prompt text they encode (random ids have none).
    public struct Input: Sendable {
        /// The prompt text, when the ids are a prompt's.
        public let text: String?
        /// The token ids.
        public let ids: [Int]
    }

    /// What the model gives for one sequence.
    public struct Outputs: Sendable {
        /// The final layer norm's output, the logits and the rewards, flattened.
        public let finalLN: [Double], logits: [Double], rewards: [Double]
    }

    /// The sequences, in file order; at least one.
    public let sequences: [Input]
    /// The outputs of each sequence (same order), by precision (`fp32`, `bf16`).
    public let outputs: [String: [Outputs]]

    /// The outputs of every sequence in `precision` (a `Precision` raw value).
    public func outputs(_ precision: String) throws -> [Outputs] {
        guard let list = outputs[precision] else { throw TestInputError("no reference outputs in \(precision)") }
        return list
    }

    /// Reads the reference file, checking that every precision has outputs for every sequence.
    public static func load() throws -> ReferenceOutputs {
        let file = "tiny/reference/outputs.json"
        let d = try Fixtures.json(file)
        guard let seqs = d["sequences"] as? [[String: Any]] else { throw TestInputError("\(file) has no sequences") }
        let sequences = try requireCases(try seqs.map { s in
            guard let ids = s["ids"] as? [Int] else { throw TestInputError("\(file): a sequence lacks its ids") }
            return Input(text: s["text"] as? String, ids: ids)
        }, "reference sequences in \(file)")
        var outputs: [String: [Outputs]] = [:]
        for precision in ["fp32", "bf16"] {
            guard let list = d[precision] as? [[String: [Double]]], list.count == sequences.count else {
                throw TestInputError("\(file): \(precision) outputs do not match the \(sequences.count) sequences")
            }
            outputs[precision] = try list.map { o in
                guard let h = o["final_ln"], let l = o["logits"], let r = o["rewards"] else { throw TestInputError("\(file): incomplete \(precision) outputs") }
                return Outputs(finalLN: h, logits: l, rewards: r)
            }
        }
        return ReferenceOutputs(sequences: sequences, outputs: outputs)
    }
}
