import Checkpoints
import Engine
import Foundation
import Platform
import Scoring
import Tokenizer

/// The verdict on one tensor.
public struct TensorComparison: Sendable, Codable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        /// Same bytes.
        case identical
        /// Different dtypes, equal once the wider one is rounded to the narrower.
        case equalAfterRounding = "equal-after-rounding"
        /// Equal over the true vocabulary; only padding rows differ.
        case paddingDiffers = "padding-differs"
        case different
        case missingInA = "missing-in-a"
        case missingInB = "missing-in-b"
    }
    public var name: String
    public var status: Status
    public var detail: String?
    /// Index of the first differing element (global, C order) and both values.
    public var firstDifference: [Int]?
    public var valueA: Double?
    public var valueB: Double?
}

/// The verdict on the engine's outputs for one probe input.
public struct OutputComparison: Sendable, Codable {
    public var probe: [Int]
    public var rewardMaxDiff: Double?
    public var logitsMaxDiff: Double?
    public var hiddenMaxDiff: Double
    public var tolerance: Double
    public var equivalent: Bool
}

/// What `tessera verify` reports (Schemas/verify.schema.json).
public struct VerificationReport: Sendable, Codable {
    public var a: String
    public var b: String
    public var equivalent: Bool
    public var configDifferences: [String]
    /// How each side's tokenizer, `override_vocab_size` and embedding rows relate, and where
    /// they disagree; a different true vocabulary makes the checkpoints not equivalent.
    public var vocabulary: [String]
    public var notes: [String]
    public var tensors: [TensorComparison]
    public var outputs: [OutputComparison]
}

/// Proves two checkpoints (any formats, any layouts) hold the same model.
public struct Verifier {
    public let cache: MappingCache
    public init(cache: MappingCache) { self.cache = cache }

    static let architectureFields: [(String, @Sendable (ModelConfig) -> String)] = [
        ("num_layers", { "\($0.numLayers)" }), ("hidden_size", { "\($0.hiddenSize)" }),
        ("ffn_hidden_size", { "\($0.ffnHiddenSize)" }), ("num_attention_heads", { "\($0.numAttentionHeads)" }),
        ("num_query_groups", { "\($0.numQueryGroups)" }), ("kv_channels", { "\($0.kvChannels)" }),
        ("activation", { $0.activation }), ("normalization", { $0.normalization }),
        ("layernorm_zero_centered_gamma", { "\($0.layernormZeroCenteredGamma)" }),
        ("layernorm_epsilon", { "\($0.layernormEpsilon)" }), ("bias", { "\($0.bias)" }),
        ("position_embedding_type", { $0.positionEmbeddingType }), ("rotary_percentage", { "\($0.rotaryPercentage)" }),
        ("rotary_base", { "\($0.rotaryBase)" }),
        ("share_embeddings_and_output_weights", { "\($0.shareEmbeddingsAndOutputWeights)" }),
        ("reward_outputs", { $0.rewardOutputs.map(String.init) ?? "none" }),
        ("settings the engine does not run", { $0.unrunSettings.isEmpty ? "none" : $0.unrunSettings.joined(separator: ", ") }),
    ]

    /// Conversations (NeMo-Aligner JSONL objects) to score through the scoring path, with the
    /// tokenizer to use, instead of token probes.
    public final class Prompts: Sendable {
        public let conversations: [JSONValue]
        public let tokenizer: SentencePieceModel
        public init(conversations: [JSONValue], tokenizer: SentencePieceModel) {
            self.conversations = conversations
            self.tokenizer = tokenizer
        }
    }

    public func verify(_ a: Catalogue, _ b: Catalogue, weightsOnly: Bool, probes: [[Int]]? = nil, prompts: Prompts? = nil,
                       progress: (@Sendable (Int) -> Void)? = nil) throws(TesseraError) -> VerificationReport {
        var notes: [String] = []
        var configDiffs: [String] = []
        if let ca = a.config, let cb = b.config {
            for (name, get) in Self.architectureFields where get(ca) != get(cb) {
                configDiffs.append("\(name): \(get(ca)) vs \(get(cb))")
            }
        } else if (a.config == nil) != (b.config == nil) {
            notes.append("only one checkpoint has a model config")
        }
        if a.tp != b.tp || a.pp != b.pp { notes.append("layouts differ: TP=\(a.tp) PP=\(a.pp) vs TP=\(b.tp) PP=\(b.pp) (allowed)") }
        let trueVocab = a.trueVocabulary(cache: cache) ?? b.trueVocabulary(cache: cache)
        let (vocabulary, vocabularyAgrees) = vocabularyFindings(a, b)
        let namesA = Set(a.objects.map(\.name)), namesB = Set(b.objects.map(\.name))
        if namesA != namesB {
            notes.append("_extra_state objects differ: \(namesA.subtracting(namesB).count) only in A, \(namesB.subtracting(namesA).count) only in B (not weights)")
        }
        // Weights: tensors of the same dtype and shape are compared byte for byte, both
        // streamed in step (zeros on both sides, such as holes, are never read or hashed);
        // those with replicated copies by digests, which also check the copies agree. Element
        // comparison only where they differ.
        let streamer = TensorStreamer(cache: cache)
        let common = a.tensors.filter { b.tensor($0.name) != nil }
        let stepwise = common.filter { ta in
            let tb = b.tensor(ta.name)!
            return ta.dtype == tb.dtype && ta.shape == tb.shape && ta.replicas.isEmpty && tb.replicas.isEmpty
        }
        let same = try streamer.sameBytes(stepwise.map { ($0, b.tensor($0.name)!) }, progress: progress)
        var identical = Set(zip(stepwise, same).filter(\.1).map(\.0.name))
        let stepNames = Set(stepwise.map(\.name))
        let hashed = common.filter { !stepNames.contains($0.name) }
        // One pool over both checkpoints' tensors: no barrier between A and B.
        let all = try streamer.digests(hashed + hashed.map { b.tensor($0.name)! }, progress: progress)
        for (i, ta) in hashed.enumerated() {
            let tb = b.tensor(ta.name)!
            if ta.dtype == tb.dtype && ta.shape == tb.shape && all[i] == all[hashed.count + i] { identical.insert(ta.name) }
        }
        var tensors: [TensorComparison] = []
        for ta in common {
            if identical.contains(ta.name) {
                tensors.append(TensorComparison(name: ta.name, status: .identical))
                continue
            }
            tensors.append(try compareElements(ta, b.tensor(ta.name)!, trueVocab: trueVocab, streamer: streamer))
        }
        for t in a.tensors where b.tensor(t.name) == nil { tensors.append(TensorComparison(name: t.name, status: .missingInB)) }
        for t in b.tensors where a.tensor(t.name) == nil { tensors.append(TensorComparison(name: t.name, status: .missingInA)) }
        var outputs: [OutputComparison] = []
        if !weightsOnly, configDiffs.isEmpty {
            if let prompts {
                outputs = try comparePrompts(a, b, prompts)
            } else {
                outputs = try compareOutputs(a, b, probes: probes ?? Self.defaultProbes(vocab: trueVocab ?? a.config?.paddedVocabSize ?? 2))
            }
        }
        let weightsOK = tensors.allSatisfy { !$0.status.isDifference }
        let equivalent = configDiffs.isEmpty && weightsOK && vocabularyAgrees && outputs.allSatisfy(\.equivalent)
        return VerificationReport(a: a.container.displayPath, b: b.container.displayPath, equivalent: equivalent,
                                  configDifferences: configDiffs, vocabulary: vocabulary, notes: notes, tensors: tensors,
                                  outputs: outputs)
    }

    /// Each side's vocabulary facts (tokenizer pieces, `override_vocab_size`, embedding rows),
    /// mismatches within a side and between the sides; false when the true vocabularies differ.
    func vocabularyFindings(_ a: Catalogue, _ b: Catalogue) -> ([String], Bool) {
        var out: [String] = []
        func facts(_ c: Catalogue, _ side: String) -> (tokenizer: Int?, trueVocab: Int?, rows: Int?) {
            let tokenizer = c.tokenizerVocabulary(cache: cache), trueVocab = c.trueVocabulary(cache: cache)
            let rows = c.tensor("embedding.word_embeddings.weight")?.shape.first
            out.append("\(side): tokenizer \(tokenizer.map { "\($0) pieces" } ?? "absent"), override_vocab_size "
                       + "\(c.config?.overrideVocabSize.map(String.init) ?? "not set"), embedding \(rows.map { "\($0) rows" } ?? "absent")")
            if let tokenizer, let rows, tokenizer > rows {
                out.append("\(side): MISMATCH the tokenizer has \(tokenizer) pieces but the embedding only \(rows) rows")
            }
            if let o = c.config?.overrideVocabSize, let tokenizer, o != tokenizer {
                out.append("\(side): override_vocab_size \(o) differs from the tokenizer's \(tokenizer) pieces (NeMo uses the override)")
            }
            return (tokenizer, trueVocab, rows)
        }
        let fa = facts(a, "A"), fb = facts(b, "B")
        var agrees = true
        if let x = fa.tokenizer, let y = fb.tokenizer, x != y { out.append("MISMATCH tokenizers differ: A has \(x) pieces, B \(y)") }
        if let x = fa.trueVocab, let y = fb.trueVocab, x != y {
            out.append("MISMATCH true vocabularies differ: A \(x), B \(y)")
            agrees = false
        }
        return (out, agrees)
    }

    /// Deterministic probe sequences: lengths 1, 7 and 33 of ids spread over the vocabulary.
    static func defaultProbes(vocab: Int) -> [[Int]] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return [1, 7, 33].map { n in
            (0..<n).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Int((state >> 33) % UInt64(max(vocab, 1)))
            }
        }
    }

    /// Element-wise comparison in row blocks; rounds to the narrower dtype when dtypes differ.
    func compareElements(_ ta: GlobalTensor, _ tb: GlobalTensor, trueVocab: Int?, streamer: TensorStreamer) throws(TesseraError) -> TensorComparison {
        var shapeA = ta.shape, shapeB = tb.shape
        var padding = false
        let vocabTensor = ta.name == "embedding.word_embeddings.weight" || ta.name == "output_layer.weight"
        if shapeA != shapeB {
            guard vocabTensor, shapeA.count == shapeB.count, Array(shapeA.dropFirst()) == Array(shapeB.dropFirst()) else {
                return TensorComparison(name: ta.name, status: .different, detail: "shapes differ: \(ta.shape) vs \(tb.shape)")
            }
            let rows = min(shapeA[0], shapeB[0], trueVocab ?? min(shapeA[0], shapeB[0]))
            shapeA[0] = rows; shapeB[0] = rows
            padding = true
        }
        let rowWidth = shapeA.dropFirst().reduce(1, *)
        let totalRows = shapeA.first ?? 1
        let blockRows = max(1, (1 << 20) / max(rowWidth, 1))
        var a = [Float](), b = [Float]()
        let rounding = ta.dtype != tb.dtype
        let narrow: DType = ta.dtype.size <= tb.dtype.size ? ta.dtype : tb.dtype
        var r = 0
        while r < totalRows {
            let n = min(blockRows, totalRows - r)
            let box = shapeA.isEmpty ? Box(offset: [], shape: []) :
                Box(offset: [r] + Array(repeating: 0, count: shapeA.count - 1), shape: [n] + Array(shapeA.dropFirst()))
            a = try values(ta, box, streamer: streamer)
            b = try values(tb, box, streamer: streamer)
            for i in 0..<a.count {
                var x = a[i], y = b[i]
                if rounding, narrow == .bfloat16 { x = x.bfloat16Rounded; y = y.bfloat16Rounded }
                if rounding, narrow == .float16 { x = Float(Float16(x)); y = Float(Float16(y)) }
                if x.bitPattern != y.bitPattern && !(x.isNaN && y.isNaN) {
                    let flat = r * rowWidth + i
                    var index: [Int] = []
                    var rest = flat
                    for d in shapeA.indices.reversed() { index.insert(rest % shapeA[d], at: 0); rest /= shapeA[d] }
                    return TensorComparison(name: ta.name, status: .different,
                                            detail: rounding ? "differs after rounding to \(narrow.rawValue)" : nil,
                                            firstDifference: index, valueA: Double(a[i]), valueB: Double(b[i]))
                }
            }
            r += n
        }
        if padding {
            return TensorComparison(name: ta.name, status: .paddingDiffers,
                                    detail: "equal over the first \(shapeA[0]) rows (true vocabulary); padded rows \(ta.shape[0]) vs \(tb.shape[0])")
        }
        if rounding {
            return TensorComparison(name: ta.name, status: .equalAfterRounding,
                                    detail: "\(ta.dtype.rawValue) vs \(tb.dtype.rawValue): equal after rounding to \(narrow.rawValue), not bit-identical")
        }
        return TensorComparison(name: ta.name, status: .identical)
    }

    func values(_ t: GlobalTensor, _ box: Box, streamer: TensorStreamer) throws(TesseraError) -> [Float] {
        var out = [Float](repeating: 0, count: max(box.elementCount, 1))
        var at = 0
        try streamer.forEachRun(of: t, region: box.shape.isEmpty ? nil : box) { (run) throws(TesseraError) in
            let n = run.count / t.dtype.size
            for i in 0..<n {
                let v: Float
                switch t.dtype {
                case .float32: v = run.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
                case .bfloat16: v = Float(bitPattern: UInt32(run.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
                case .float16: v = Float(Float16(bitPattern: run.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                case .float64: v = Float(run.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
                default: v = Float(run[i * t.dtype.size])
                }
                out[at + i] = v
            }
            at += n
        }
        return out
    }

    /// Scores the conversations with both models (FP32) through the scoring path and compares
    /// every turn's reward outputs.
    func comparePrompts(_ a: Catalogue, _ b: Catalogue, _ prompts: Prompts) throws(TesseraError) -> [OutputComparison] {
        var options = ScoringOptions(maxLength: a.config?.seqLength ?? 4096)
        options.precision = .fp32
        let sa = try Annotator(model: try Model(a, cache: cache), tokenizer: prompts.tokenizer, options: options)
        let sb = try Annotator(model: try Model(b, cache: cache), tokenizer: prompts.tokenizer, options: options)
        let mixed = Set(a.tensors.map(\.dtype)) != Set(b.tensors.map(\.dtype))
        let tolerance = mixed ? 0.1 : 1e-3
        var out: [OutputComparison] = []
        func rewards(_ v: JSONValue) -> [[Double]] {
            (v["conversations"]?.array ?? []).compactMap { t in
                t["rewards"]?.array?.compactMap { x -> Double? in if case .number(let n) = x { return Double(n) } else { return nil } }
            }
        }
        for conv in prompts.conversations {
            let ra = rewards(try sa.annotate(conv).0), rb = rewards(try sb.annotate(conv).0)
            let diff = zip(ra.joined(), rb.joined()).map { abs($0 - $1) }.max() ?? 0
            let ok = ra.count == rb.count && diff <= tolerance
            out.append(OutputComparison(probe: prompts.tokenizer.encodeIDs(Annotator.key(conv)), rewardMaxDiff: diff,
                                        logitsMaxDiff: nil, hiddenMaxDiff: 0, tolerance: tolerance, equivalent: ok))
        }
        return out
    }

    /// Runs both models in FP32 on the probes and compares rewards, logits (common rows) and
    /// the final hidden state.
    func compareOutputs(_ a: Catalogue, _ b: Catalogue, probes: [[Int]]) throws(TesseraError) -> [OutputComparison] {
        let ma = try Model(a, cache: cache), mb = try Model(b, cache: cache)
        let mixed = Set(a.tensors.map(\.dtype)) != Set(b.tensors.map(\.dtype))
        // Same weights computed in a different partitioning differ only in summation order.
        let tolerance = mixed ? 0.1 : 1e-3
        var out: [OutputComparison] = []
        for p in probes {
            let ra = try ma.forward(tokens: p, precision: .fp32), rb = try mb.forward(tokens: p, precision: .fp32)
            func diff(_ x: [Float]?, _ y: [Float]?) -> Double? {
                guard let x, let y else { return nil }
                return zip(x, y).map { abs(Double($0) - Double($1)) }.max() ?? 0
            }
            let h = diff(ra.hidden, rb.hidden) ?? .infinity
            let rw = diff(ra.reward, rb.reward), lg = diff(ra.logits, rb.logits)
            let ok = h <= tolerance && (rw ?? 0) <= tolerance && (lg ?? 0) <= tolerance
                && (ra.reward == nil) == (rb.reward == nil)
            out.append(OutputComparison(probe: p, rewardMaxDiff: rw, logitsMaxDiff: lg, hiddenMaxDiff: h, tolerance: tolerance, equivalent: ok))
        }
        return out
    }
}
