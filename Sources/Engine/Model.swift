import Checkpoints
import CKernels
import Dispatch
import Foundation
import Platform
import Synchronization

/// Arithmetic precision of a forward pass.
public enum Precision: String, Sendable, CaseIterable {
    /// The accurate reference: FP32 activations and accumulation.
    case fp32
    /// As NeMo runs a BF16 model: activations rounded to BF16 after every operation,
    /// FP32 accumulation and layer-norm statistics.
    case bf16
}

/// What a forward pass returns for one sequence.
public struct ForwardResult: Sendable, Codable {
    /// Output of the final layer norm at the last position.
    public var hidden: [Float]
    /// Output layer at the last position (all padded rows); nil without an output layer.
    public var logits: [Float]?
    /// Reward head outputs at the last position; nil without a reward head.
    public var reward: [Float]?
}

/// Seconds of a forward pass by kind of step (for --timing and benchmarks).
public struct StepTimes: Sendable {
    /// Linear layers: packing and matrix products (and their rounding and bias).
    public var products = 0.0
    /// Attention: RoPE, scores, softmax, context.
    public var attention = 0.0
    /// The whole pass.
    public var total = 0.0
    /// Everything else: embeddings, layer norms, residual adds, the MLP activation.
    public var elementwise: Double { max(0, total - products - attention) }

    static var now: Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
}

/// A NeMo GPT decoder (Nemotron-4 and its relatives) run straight from a catalogue of any
/// format and layout: each linear layer is computed piece by piece as its tensor-parallel
/// shards lie on disk (column-parallel pieces write disjoint outputs, row-parallel pieces
/// are partial products summed in rank order).
///
/// Calls may come from several threads; they run one at a time, each using every core inside.
/// Each call owns its scratch; the step times of the last call are kept for `--timing`.
public final class Model: Sendable {
    public let config: ModelConfig
    /// The config's activation, normalization and position embedding, checked.
    let architecture: Architecture
    let weights: WeightReader
    let hasRewardHead: Bool
    let hasOutputLayer: Bool
    /// Drop each layer's mapped weight pages once used, so resident memory stays about one
    /// layer whatever the model's size (the pages stay in the page cache while memory allows).
    /// Off by default: repeated runs (scoring batch after batch) then find the weights mapped.
    public var releaseWeights: Bool {
        get { releasing.withLock { $0 } }
        set { releasing.withLock { $0 = newValue } }
    }
    private let releasing = Mutex(false)
    /// Held for the length of a call: concurrent calls wait their turn (the cores are shared).
    private let calls = Mutex(())
    /// The kernel path and worker threads every step runs on.
    public let kernels: Kernels
    /// Where the time of the last forward pass went.
    public var times: StepTimes { stepTimes.withLock { $0 } }
    private let stepTimes = Mutex(StepTimes())

    /// Adds the seconds since `start` to one kind of step of the current pass.
    func record(_ step: WritableKeyPath<StepTimes, Double>, since start: Double) {
        let now = StepTimes.now
        stepTimes.withLock { $0[keyPath: step] += now - start }
    }

    /// The engine over `catalogue`, on `kernels` (default: the path `TESSERA_ISA` names, else the
    /// best this CPU supports, on every core). A path this CPU lacks is refused.
    public init(_ catalogue: Catalogue, cache: MappingCache, kernels: Kernels? = nil) throws(TesseraError) {
        guard let config = catalogue.config else {
            throw TesseraError(.missing, "the checkpoint has no model_config.yaml; the engine needs the architecture",
                               file: catalogue.container.displayPath)
        }
        self.config = config
        weights = WeightReader(catalogue: catalogue, streamer: TensorStreamer(cache: cache))
        hasRewardHead = catalogue.tensor("rm_head.weight") != nil
        hasOutputLayer = catalogue.tensor("output_layer.weight") != nil
            || (config.shareEmbeddingsAndOutputWeights && catalogue.tensor("embedding.word_embeddings.weight") != nil)
        let chosen: Kernels
        if let kernels { chosen = kernels } else { chosen = Kernels(path: try KernelPath.fromEnvironment()) }
        try chosen.path.requireSupported()
        self.kernels = chosen
        architecture = try Architecture(config, file: catalogue.container.displayPath)
        if let norm = catalogue.tensors.first(where: { $0.name.hasSuffix("_attention.q_layernorm.weight") || $0.name.hasSuffix("_attention.k_layernorm.weight") }) {
            throw TesseraError(.unsupported, "the engine does not run query/key layer norms (qk_layernorm)", file: catalogue.container.displayPath,
                               tensor: norm.name)
        }
        guard architecture.positionEmbedding == .rope || catalogue.tensor("embedding.position_embeddings.weight") != nil else {
            throw TesseraError(.missing, "learned absolute position embeddings without embedding.position_embeddings.weight",
                               file: catalogue.container.displayPath)
        }
    }

    /// Bytes of the largest layer's weights as stored (what one layer maps at a time).
    public var largestLayerBytes: Int {
        (0..<config.numLayers).map { layer in
            weights.catalogue.tensors.filter { $0.name.hasPrefix("decoder.layers.\(layer).") }
                .reduce(0) { $0 + $1.elementCount * $1.dtype.size }
        }.max() ?? 0
    }

    /// An upper estimate of the activation memory of a batch of `tokens` tokens whose longest
    /// sequence (with its past) has `longest` positions: the FP32 arrays alive at once in a
    /// layer, their BF16 copies and the attention scratch.
    public func activationBytes(tokens: Int, longest: Int) -> Int {
        let h = config.hiddenSize, d = config.kvChannels
        let qkv = (config.numAttentionHeads + 2 * config.numQueryGroups) * d, ctx = config.numAttentionHeads * d
        let ffn = config.ffnHiddenSize * (config.gatedLinearUnit ? 2 : 1)
        let perToken = (4 * h + qkv + 3 * ctx + ffn + config.ffnHiddenSize) * 4 + max(ffn, qkv) * 2
        return tokens * perToken + 2 * longest * config.numQueryGroups * d * 4 + kernels.threads * (64 + d) * longest * 4
    }

    /// The layer norm `prefix.layer_norm_*` (or `prefix.weight/bias` for the final norm).
    /// The layer norm as the input of the linear layer after it (BF16 bits in a BF16 product).
    func normInput(_ n: NormWeights, _ x: [Float], tokens: Int, precision: Precision) throws(TesseraError) -> LayerInput {
        guard bitsInput(precision) else { return .values(try norm(n, x, tokens: tokens, precision: precision)) }
        let (gamma, beta) = try normValues(n, precision: precision)
        return .bf16(kernels.normBF16(x, rows: tokens, width: config.hiddenSize, gamma: gamma, beta: beta,
                                      eps: Float(config.layernormEpsilon), rms: architecture.normalization.rms))
    }

    func normValues(_ n: NormWeights, precision: Precision) throws(TesseraError) -> ([Float], [Float]?) {
        var gamma = try weights.vector(n.gamma.name)
        if config.layernormZeroCenteredGamma {
            // NeMo adds the 1 in the weights' dtype (BF16 in a BF16 model).
            gamma = gamma.map { precision == .bf16 ? Kernels.bf16($0 + 1) : $0 + 1 }
        }
        return (gamma, try n.beta.map { (b) throws(TesseraError) in try weights.vector(b.name) })
    }

    func norm(_ n: NormWeights, _ x: [Float], tokens: Int, precision: Precision) throws(TesseraError) -> [Float] {
        let (gamma, beta) = try normValues(n, precision: precision)
        return kernels.norm(x, rows: tokens, width: config.hiddenSize, gamma: gamma, beta: beta, eps: Float(config.layernormEpsilon),
                            rms: architecture.normalization.rms, round: precision == .bf16)
    }

    /// One sequence of a batch: new tokens placed after the first `pastCount` positions of
    /// `past` (its keys and values), or at position 0.
    public struct Segment: Sendable {
        public var ids: [Int]
        public var past: KVCache?
        public var pastCount: Int
        public init(ids: [Int], past: KVCache? = nil, pastCount: Int = 0) {
            self.ids = ids
            self.past = past
            self.pastCount = pastCount
        }
    }

    /// Runs the model on one token sequence (no BOS/EOS added).
    public func forward(tokens ids: [Int], precision: Precision = .bf16) throws(TesseraError) -> ForwardResult {
        try forward(batch: [Segment(ids: ids)], precision: precision)[0]
    }

    /// Runs several sequences together: their tokens share every linear layer's GEMMs (no
    /// padding), attention stays within each sequence. Outputs are at each one's last token;
    /// `logits: false` skips the output layer (a vocabulary-sized GEMM) when only the reward
    /// head is wanted.
    public func forward(batch: [Segment], precision: Precision = .bf16, logits: Bool = true) throws(TesseraError) -> [ForwardResult] {
        try calls.withLock { (_) throws(TesseraError) -> [ForwardResult] in
            stepTimes.withLock { $0 = StepTimes() }
            let start = StepTimes.now
            defer { record(\.total, since: start) }
            let (finals, _) = try run(batch, keepCache: false, precision: precision)
            return try heads(finals, precision: precision, logits: logits)
        }
    }

    /// Runs `ids` and returns the keys and values of every position, for ``forward(next:after:prefix:precision:)``.
    public func prefill(tokens ids: [Int], precision: Precision = .bf16) throws(TesseraError) -> KVCache {
        try prefill(batch: [ids], precision: precision)[0]
    }

    /// Prefills several sequences together.
    public func prefill(batch: [[Int]], precision: Precision = .bf16) throws(TesseraError) -> [KVCache] {
        try calls.withLock { (_) throws(TesseraError) -> [KVCache] in
            try run(batch.map { Segment(ids: $0) }, keepCache: true, precision: precision).1.map { $0! }
        }
    }

    /// The outputs at token `id` placed right after the first `prefix` positions of `cache`
    /// (the result equals a full forward over those positions plus `id`).
    public func forward(next id: Int, after cache: KVCache, prefix: Int, precision: Precision = .bf16) throws(TesseraError) -> ForwardResult {
        try forward(batch: [Segment(ids: [id], past: cache, pastCount: prefix)], precision: precision)[0]
    }

    /// Output layer and reward head at each segment's last position, all segments in one GEMM.
    func heads(_ finals: [[Float]], precision: Precision, logits wantLogits: Bool = true) throws(TesseraError) -> [ForwardResult] {
        let h = config.hiddenSize
        let lasts = finals.map { Array($0.suffix(h)) }
        let stacked = Array(lasts.joined())
        var logits: [Float]?, rewards: [Float]?
        if hasOutputLayer && wantLogits {
            let name = weights.catalogue.tensor("output_layer.weight") != nil ? "output_layer" : "embedding.word_embeddings"
            logits = try linear(LinearWeights(name, in: weights), stacked, tokens: lasts.count, k: h, precision: precision)
        }
        if hasRewardHead {
            rewards = try linear(LinearWeights("rm_head", in: weights), stacked, tokens: lasts.count, k: h, precision: precision)
        }
        return lasts.enumerated().map { i, last in
            ForwardResult(hidden: last,
                          logits: logits.map { l in let n = l.count / lasts.count; return Array(l[(i * n)..<((i + 1) * n)]) },
                          reward: rewards.map { r in let n = r.count / lasts.count; return Array(r[(i * n)..<((i + 1) * n)]) })
        }
    }

    /// The decoder over a batch of segments; returns each segment's final-norm output at its
    /// last position (hidden values) and, with `keepCache`, the keys and values of all its positions.
    func run(_ segments: [Segment], keepCache: Bool, precision: Precision) throws(TesseraError) -> ([[Float]], [KVCache?]) {
        guard !segments.isEmpty, segments.allSatisfy({ !$0.ids.isEmpty }) else { throw TesseraError(.invalidArgument, "no tokens to run") }
        for s in segments where s.pastCount > (s.past?.count ?? 0) {
            throw TesseraError(.invalidArgument, "prefix \(s.pastCount) is longer than the cache (\(s.past?.count ?? 0))")
        }
        let h = config.hiddenSize
        let counts = segments.map(\.ids.count)
        let starts = counts.reduce(into: [0]) { $0.append($0.last! + $1) }
        let T = starts.last!
        var rows = T   // the rows x holds: every position, then each segment's last
        var x = try embed(segments, starts: starts, precision: precision)
        var caches: [KVCache?] = segments.map { keepCache ? KVCache(count: $0.pastCount + $0.ids.count) : nil }
        let kvWidth = config.numQueryGroups * config.kvChannels
        let qkvWidth = (config.numAttentionHeads + 2 * config.numQueryGroups) * config.kvChannels
        let ctxWidth = config.numAttentionHeads * config.kvChannels
        let unit = Attention(config, architecture, precision: precision, kernels: kernels)
        let ropes = segments.map { unit.ropeTables(start: $0.pastCount, tokens: $0.ids.count) }
        for layer in 0..<config.numLayers {
            let w = try LayerWeights(layer: layer, in: weights)
            let a = try normInput(w.attentionNorm, x, tokens: T, precision: precision)
            let qkv = try linear(w.qkv, a, tokens: T, k: h, precision: precision)
            var ctx = Kernels.uninitialized(Float.self, T * ctxWidth)   // each segment fills its rows
            let attentionStart = StepTimes.now
            qkv.withUnsafeBufferPointer { qb in
                ctx.withUnsafeMutableBufferPointer { cb in
                    for (si, seg) in segments.enumerated() {
                        let pastKV = seg.past.map { (cache: $0, layer: layer, count: seg.pastCount * kvWidth) }
                        let layerKV = attention(unit, qb.baseAddress! + starts[si] * qkvWidth, tokens: counts[si], start: seg.pastCount,
                                                past: pastKV, rope: ropes[si], into: cb.baseAddress! + starts[si] * ctxWidth)
                        if keepCache { caches[si]!.append(layerKV) }
                    }
                }
            }
            record(\.attention, since: attentionStart)
            if layer == config.numLayers - 1 {
                // Only each segment's last position is read after the last layer (the keys and
                // values of all positions are already in the caches): the rest of the layer runs
                // on those rows alone. Rows do not depend on each other, so they are unchanged.
                let lasts = starts.dropFirst().map { $0 - 1 }
                x = Self.rows(lasts, of: x, width: h)
                ctx = Self.rows(lasts, of: ctx, width: ctxWidth)
                rows = lasts.count
            }
            x = try afterAttention(w, x, context: ctx, tokens: rows, precision: precision)
        }
        let finalNorm = try NormWeights(weight: "decoder.final_layernorm.weight", bias: "decoder.final_layernorm.bias", in: weights)
        let final = try norm(finalNorm, x, tokens: rows, precision: precision)
        return (segments.indices.map { Array(final[($0 * h)..<(($0 + 1) * h)]) }, caches)
    }

    /// Rows `picked` of a row-major matrix of `width` columns, in that order.
    static func rows(_ picked: [Int], of m: [Float], width: Int) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(picked.count * width)
        for r in picked { out.append(contentsOf: m[(r * width)..<((r + 1) * width)]) }
        return out
    }

    /// The embeddings (plus learned positions, if any) of every segment's tokens, stacked;
    /// rounded to BF16 in BF16 mode.
    func embed(_ segments: [Segment], starts: [Int], precision: Precision) throws(TesseraError) -> [Float] {
        let h = config.hiddenSize, T = starts.last!
        let emb = try weights.tensor("embedding.word_embeddings.weight")
        var x = [Float](repeating: 0, count: T * h)
        let pos = weights.catalogue.tensor("embedding.position_embeddings.weight")
        for (si, seg) in segments.enumerated() {
            for (i, id) in seg.ids.enumerated() {
                guard id >= 0, id < emb.shape[0] else {
                    throw TesseraError(.invalidArgument, "token id \(id) is outside the vocabulary (\(emb.shape[0]) rows)")
                }
                try x.withUnsafeMutableBufferPointer { (b) throws(TesseraError) in
                    try embeddingRow(emb, id, into: b.baseAddress! + (starts[si] + i) * h)
                }
            }
            if let pos {
                var p = [Float](repeating: 0, count: seg.ids.count * h)
                try p.withUnsafeMutableBufferPointer { (b) throws(TesseraError) in
                    try weights.read(pos, region: Box(offset: [seg.pastCount, 0], shape: [seg.ids.count, h]), into: b.baseAddress!)
                }
                for i in 0..<p.count { x[starts[si] * h + i] += p[i] }
            }
        }
        if precision == .bf16 { x.withUnsafeMutableBufferPointer { kernels.roundToBF16($0.baseAddress!, $0.count) } }
        return x
    }

    /// Row `id` of the embedding table as FP32: read straight from its mapped piece when that
    /// is raw BF16 or FP32 (a token at a time through the streamer costs a read-ahead request each).
    func embeddingRow(_ emb: GlobalTensor, _ id: Int, into out: UnsafeMutablePointer<Float>) throws(TesseraError) {
        let h = emb.shape[1]
        if let p = emb.pieces.first(where: { id >= $0.globalOffset[0] && id < $0.globalOffset[0] + $0.shape[0] }),
           p.encoding == .raw, p.shape.count == 2, p.shape[1] == h, p.globalOffset[1] == 0, p.strides[1] == 1,
           emb.dtype == .bfloat16 || emb.dtype == .float32 {
            let bytes = try PieceView(p, in: weights.streamer.cache, tensor: emb.name).bytes
            let element = p.storageOffset + (id - p.globalOffset[0]) * p.strides[0]
            guard (element + h) * emb.dtype.size <= bytes.count else {
                throw TesseraError(.corrupt, "embedding row \(id) lies beyond its stored bytes", file: p.storage.path, tensor: emb.name)
            }
            if emb.dtype == .bfloat16 {
                tessera_bf16_to_f32(bytes.baseAddress!.assumingMemoryBound(to: UInt16.self) + element, out, h)
            } else {
                out.update(from: bytes.baseAddress!.assumingMemoryBound(to: Float.self) + element, count: h)
            }
            return
        }
        try weights.read(emb, region: Box(offset: [id, 0], shape: [1, h]), into: out)
    }

    func add(_ a: [Float], _ b: [Float], _ precision: Precision) -> [Float] {
        kernels.add(a, b, round: precision == .bf16)
    }
}
