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

/// Keys (after rotary embedding) and values of every layer for a run of positions, so a
/// longer sequence sharing that prefix need not recompute it. A BF16 run keeps them as BF16
/// (exactly what it computed), an FP32 run as FP32.
public struct KVCache: Sendable {
    /// Per layer: positions x query groups x head dim, as FP32 ...
    var keys: [[Float]] = []
    var values: [[Float]] = []
    /// ... or as BF16 bit patterns.
    var keys16: [[UInt16]] = []
    var values16: [[UInt16]] = []
    /// Positions held.
    public internal(set) var count: Int

    init(count: Int) { self.count = count }

    /// Stores one layer's keys and values.
    mutating func append(keys k: [Float], values v: [Float], bf16: Bool) {
        if bf16 {
            keys16.append(Self.bits(k))
            values16.append(Self.bits(v))
        } else {
            keys.append(k)
            values.append(v)
        }
    }

    static func bits(_ x: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xb in out.withUnsafeMutableBufferPointer { tessera_f32_to_bf16(xb.baseAddress!, $0.baseAddress!, x.count) } }
        return out
    }

    /// The first `n` BF16 values of `src` widened into `dst`, over the cores.
    static func widen(_ src: [UInt16], into dst: inout [Float], _ n: Int) {
        src.withUnsafeBufferPointer { sb in
            dst.withUnsafeMutableBufferPointer { db in
                let (s, d) = (UncheckedSendable(sb.baseAddress!), UncheckedSendable(db.baseAddress!))
                Kernels.parallel(n, granule: 1 << 16) { lo, hi in tessera_bf16_to_f32(s.value + lo, d.value + lo, hi - lo) }
            }
        }
    }

    /// Writes the first `n` values of layer `layer` into `keys` and `values` (FP32).
    func copy(layer: Int, first n: Int, keys k: inout [Float], values v: inout [Float]) {
        if !keys16.isEmpty {
            Self.widen(keys16[layer], into: &k, n)
            Self.widen(values16[layer], into: &v, n)
        } else {
            k.replaceSubrange(0..<n, with: keys[layer][0..<n])
            v.replaceSubrange(0..<n, with: values[layer][0..<n])
        }
    }
}

/// A NeMo GPT decoder (Nemotron-4 and its relatives) run straight from a catalogue of any
/// format and layout: each linear layer is computed piece by piece as its tensor-parallel
/// shards lie on disk (column-parallel pieces write disjoint outputs, row-parallel pieces
/// are partial products summed in rank order).
///
/// Sendable: calls may come from several threads; they run one at a time (the scratch block
/// and the weights' page-release setting are shared), each using both cores inside.
public final class Model: @unchecked Sendable {
    public let config: ModelConfig
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
    /// Held for the length of a call that uses `block`: concurrent calls wait their turn.
    private let calls = NSLock()
    /// Scratch for one block of converted weights.
    private let block: UnsafeMutablePointer<Float>
    private let blockCapacity: Int

    public init(_ catalogue: Catalogue, cache: MappingCache) throws(TesseraError) {
        guard let config = catalogue.config else {
            throw TesseraError(.missing, "the checkpoint has no model_config.yaml; the engine needs the architecture",
                               file: catalogue.container.displayPath)
        }
        self.config = config
        weights = WeightReader(catalogue: catalogue, streamer: TensorStreamer(cache: cache))
        hasRewardHead = catalogue.tensor("rm_head.weight") != nil
        hasOutputLayer = catalogue.tensor("output_layer.weight") != nil
            || (config.shareEmbeddingsAndOutputWeights && catalogue.tensor("embedding.word_embeddings.weight") != nil)
        blockCapacity = weights.blockBytes / 4
        block = .allocate(capacity: blockCapacity)
        guard config.positionEmbeddingType == "rope" || catalogue.tensor("embedding.position_embeddings.weight") != nil else {
            throw TesseraError(.unsupported, "position embedding '\(config.positionEmbeddingType)' without position_embeddings weights")
        }
    }

    deinit { block.deallocate() }

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
        return tokens * perToken + 2 * longest * config.numQueryGroups * d * 4 + Kernels.workers * (64 + d) * longest * 4
    }

    /// `y = x W^T (+ b)` for the linear layer `name` (x: tokens x k, y: tokens x n).
    func linear(_ name: String, _ x: [Float], tokens: Int, k: Int, precision: Precision) throws(TesseraError) -> [Float] {
        try linear(name, .values(x), tokens: tokens, k: k, precision: precision)
    }

    /// A linear layer's input: FP32 values, or the BF16 bits the step before made for a BF16 product.
    enum LayerInput {
        case values([Float])
        case bf16([UInt16])
    }

    /// Whether the steps before BF16 products hand them BF16 bits directly.
    func bitsInput(_ precision: Precision) -> Bool { precision == .bf16 && Kernels.hasNativeGEMM }

    func linear(_ name: String, _ input: LayerInput, tokens: Int, k: Int, precision: Precision) throws(TesseraError) -> [Float] {
        let t = try weights.tensor(name + ".weight")
        guard t.shape.count == 2, t.shape[1] == k else {
            throw TesseraError(.inconsistent, "expected \(k) input columns, the weight has shape \(t.shape)", tensor: t.name)
        }
        let n = t.shape[0]
        var y = Kernels.uninitialized(Float.self, tokens * n)   // every row is written by the piece that first covers it
        // Pieces in rank order along the input dimension: the first writes, the rest add.
        let pieces = t.pieces.sorted { ($0.globalOffset[1], $0.globalOffset[0]) < ($1.globalOffset[1], $1.globalOffset[0]) }
        var written = [Bool](repeating: false, count: n)
        // BF16 mode multiplies BF16 activations by BF16 weights; FP32 mode FP32 activations by
        // FP32 weights (BF16 ones widened exactly by the kernel).
        var x = [Float](), xq = [UInt16]()
        switch input {
        case .bf16(let bits):
            guard precision == .bf16, Kernels.hasNativeGEMM else {
                throw TesseraError(.invalidArgument, "BF16 input bits for a product that is not BF16", tensor: t.name)
            }
            xq = bits
        case .values(let values):
            x = values
            if precision == .bf16 {
                xq = Kernels.uninitialized(UInt16.self, x.count)
                x.withUnsafeBufferPointer { xb in xq.withUnsafeMutableBufferPointer { Kernels.toBF16(xb.baseAddress!, $0.baseAddress!, x.count) } }
            }
        }
        let inPlace = t.dtype == .bfloat16 || (t.dtype == .float32 && precision == .fp32)
        // BF16 results are rounded as the kernel stores them, by each row's last product, unless
        // a bias is still to be added.
        let roundInKernel = precision == .bf16 && Kernels.hasNativeGEMM && weights.catalogue.tensor(name + ".bias") == nil
        var converted = [UInt16]()
        try x.withUnsafeBufferPointer { (xb) throws(TesseraError) in
            try xq.withUnsafeBufferPointer { (xqb) throws(TesseraError) in
                try y.withUnsafeMutableBufferPointer { (yb) throws(TesseraError) in
                    let operands = Operands(x: xb.baseAddress, xq: xqb.baseAddress, k: k, y: yb.baseAddress!, n: n, tokens: tokens,
                                            precision: precision)
                    // The last piece along the inputs for these rows completes them.
                    func isLast(_ p: Piece, row0: Int, rows: Int) -> Bool {
                        !pieces.contains { q in
                            q.globalOffset[1] > p.globalOffset[1] && q.globalOffset[0] < row0 + rows && row0 < q.globalOffset[0] + q.shape[0]
                        }
                    }
                    // Rows whose weights lie in a hole of the file are zeros: they add nothing
                    // (rows not yet written become zero; finished rows are rounded as the kernel would).
                    func zeroRows(_ p: Piece, row0: Int, rows: Int) {
                        let finishing = roundInKernel && isLast(p, row0: row0, rows: rows)
                        for r in row0..<(row0 + rows) {
                            for tok in 0..<tokens where !written[r] || finishing {
                                yb[tok * n + r] = written[r] ? Kernels.bf16(yb[tok * n + r]) : 0
                            }
                            written[r] = true
                        }
                    }
                    func product(_ p: Piece, _ w: UnsafeRawPointer, bf16Weights: Bool, ldw: Int, row0: Int, rows: Int) throws(TesseraError) {
                        let last = isLast(p, row0: row0, rows: rows)
                        guard operands.product(w, bf16Weights: bf16Weights, ldw: ldw, rows: rows, row0: row0, col0: p.globalOffset[1],
                                               cols: p.shape[1], accumulate: written[row0], round: roundInKernel && last) else {
                            throw TesseraError(.outOfMemory, "cannot allocate the matrix product's packing buffers", tensor: t.name)
                        }
                        for r in row0..<(row0 + rows) { written[r] = true }
                    }
                    for p in pieces {
                        if inPlace, p.encoding == .raw, p.shape.count == 2, p.strides[1] == 1 {
                            // Zero-copy: the weights straight from the mapped file.
                            let file = try weights.streamer.cache.file(p.storage.path)
                            let bytes = try file.bytes(offset: p.storage.offset, count: p.storage.count)
                            let esize = t.dtype.size, ldw = p.strides[0]
                            let base = UnsafeRawPointer(bytes.baseAddress!) + p.storageOffset * esize
                            // Only the rows holding data are multiplied; rows in holes are never read.
                            var r = 0
                            for data in Self.dataRows(of: p, in: file, elementSize: esize) {
                                if data.lowerBound > r { zeroRows(p, row0: p.globalOffset[0] + r, rows: data.lowerBound - r) }
                                try product(p, base + data.lowerBound * ldw * esize, bf16Weights: t.dtype == .bfloat16, ldw: ldw,
                                            row0: p.globalOffset[0] + data.lowerBound, rows: data.count)
                                r = data.upperBound
                            }
                            if r < p.shape[0] { zeroRows(p, row0: p.globalOffset[0] + r, rows: p.shape[0] - r) }
                            if releaseWeights { file.release(p.storage.offset..<(p.storage.offset + p.storage.count)) }
                            continue
                        }
                        // Compressed, strided or other dtypes: FP32 blocks of rows, rounded to BF16 in BF16 mode.
                        let cols = p.shape[1]
                        try weights.forEachBlock(of: t, piece: p, buffer: block, capacity: blockCapacity) { (row, rows, w) throws(TesseraError) in
                            guard precision == .bf16 else {
                                try product(p, UnsafeRawPointer(w), bf16Weights: false, ldw: cols, row0: row, rows: rows)
                                return
                            }
                            if converted.count < rows * cols { converted = [UInt16](repeating: 0, count: rows * cols) }
                            try converted.withUnsafeMutableBufferPointer { (cb) throws(TesseraError) in
                                tessera_f32_to_bf16(w, cb.baseAddress!, rows * cols)
                                try product(p, UnsafeRawPointer(cb.baseAddress!), bf16Weights: true, ldw: cols, row0: row, rows: rows)
                            }
                        }
                    }
                }
            }
        }
        guard written.allSatisfy({ $0 }) else {
            throw TesseraError(.inconsistent, "the pieces do not cover every output row", tensor: t.name)
        }
        return try finishLinear(name, consume y, tokens: tokens, n: n, precision: roundInKernel ? .fp32 : precision)
    }

    /// The rows of a raw 2-D piece (local row ranges, in order) that hold any data in `file`;
    /// the other rows lie wholly in holes and are zeros.
    static func dataRows(of p: Piece, in file: MappedFile, elementSize esize: Int) -> [Range<Int>] {
        let rows = p.shape[0], rowStride = p.strides[0] * esize, used = p.shape[1] * esize
        let start = p.storage.offset + p.storageOffset * esize
        let extents = file.extents
        guard !extents.isDense, rows > 0, rowStride > 0 else { return rows > 0 ? [0..<rows] : [] }
        var out: [Range<Int>] = []
        for d in extents.dataRanges(in: start..<(start + (rows - 1) * rowStride + used)) {
            // Rows whose used bytes [start + r * stride, + used) meet the data range d.
            let first = max(0, (d.lowerBound - start - used + rowStride) / rowStride)
            let end = min(rows, (d.upperBound - start + rowStride - 1) / rowStride)
            guard end > first else { continue }
            if let last = out.last, last.upperBound >= first {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, end)
            } else {
                out.append(first..<end)
            }
        }
        return out
    }

    /// Adds the layer's bias, if any, and rounds to BF16 in BF16 mode (`.fp32` when the
    /// products are already rounded).
    func finishLinear(_ name: String, _ product: consuming [Float], tokens: Int, n: Int, precision: Precision) throws(TesseraError) -> [Float] {
        var y = product
        if let bias = weights.catalogue.tensor(name + ".bias") {
            let b = try weights.vector(bias.name)
            y.withUnsafeMutableBufferPointer { tessera_add_bias($0.baseAddress!, tokens, n, b) }
        }
        if precision == .bf16 { y.withUnsafeMutableBufferPointer { Kernels.roundToBF16($0.baseAddress!, $0.count) } }
        return y
    }

    /// The layer norm `prefix.layer_norm_*` (or `prefix.weight/bias` for the final norm).
    /// The layer norm as the input of the linear layer after it (BF16 bits in a BF16 product).
    func normInput(weight: String, bias: String, _ x: [Float], tokens: Int, precision: Precision) throws(TesseraError) -> LayerInput {
        guard bitsInput(precision) else { return .values(try norm(weight: weight, bias: bias, x, tokens: tokens, precision: precision)) }
        let (gamma, beta) = try normWeights(weight: weight, bias: bias, precision: precision)
        return .bf16(Kernels.normBF16(x, rows: tokens, width: config.hiddenSize, gamma: gamma, beta: beta,
                                      eps: Float(config.layernormEpsilon), rms: config.normalization.lowercased().contains("rms")))
    }

    func normWeights(weight: String, bias: String, precision: Precision) throws(TesseraError) -> ([Float], [Float]?) {
        var gamma = try weights.vector(weight)
        if config.layernormZeroCenteredGamma {
            // NeMo adds the 1 in the weights' dtype (BF16 in a BF16 model).
            gamma = gamma.map { precision == .bf16 ? Kernels.bf16($0 + 1) : $0 + 1 }
        }
        return (gamma, weights.catalogue.tensor(bias) != nil ? try weights.vector(bias) : nil)
    }

    func norm(weight: String, bias: String, _ x: [Float], tokens: Int, precision: Precision) throws(TesseraError) -> [Float] {
        let (gamma, beta) = try normWeights(weight: weight, bias: bias, precision: precision)
        return Kernels.norm(x, rows: tokens, width: config.hiddenSize, gamma: gamma, beta: beta, eps: Float(config.layernormEpsilon),
                            rms: config.normalization.lowercased().contains("rms"), round: precision == .bf16)
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
        calls.lock()
        defer { calls.unlock() }
        let (finals, _) = try run(batch, keepCache: false, precision: precision)
        return try heads(finals, precision: precision, logits: logits)
    }

    /// Runs `ids` and returns the keys and values of every position, for ``forward(next:after:prefix:precision:)``.
    public func prefill(tokens ids: [Int], precision: Precision = .bf16) throws(TesseraError) -> KVCache {
        try prefill(batch: [ids], precision: precision)[0]
    }

    /// Prefills several sequences together.
    public func prefill(batch: [[Int]], precision: Precision = .bf16) throws(TesseraError) -> [KVCache] {
        calls.lock()
        defer { calls.unlock() }
        return try run(batch.map { Segment(ids: $0) }, keepCache: true, precision: precision).1.map { $0! }
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
            logits = try linear(name, stacked, tokens: lasts.count, k: h, precision: precision)
        }
        if hasRewardHead { rewards = try linear("rm_head", stacked, tokens: lasts.count, k: h, precision: precision) }
        return lasts.enumerated().map { i, last in
            ForwardResult(hidden: last,
                          logits: logits.map { l in let n = l.count / lasts.count; return Array(l[(i * n)..<((i + 1) * n)]) },
                          reward: rewards.map { r in let n = r.count / lasts.count; return Array(r[(i * n)..<((i + 1) * n)]) })
        }
    }

    /// The decoder over a batch of segments; returns each segment's final-norm output (its
    /// tokens x hidden) and, with `keepCache`, the keys and values of all its positions.
    func run(_ segments: [Segment], keepCache: Bool, precision: Precision) throws(TesseraError) -> ([[Float]], [KVCache?]) {
        guard !segments.isEmpty, segments.allSatisfy({ !$0.ids.isEmpty }) else { throw TesseraError(.invalidArgument, "no tokens to run") }
        for s in segments where s.pastCount > (s.past?.count ?? 0) {
            throw TesseraError(.invalidArgument, "prefix \(s.pastCount) is longer than the cache (\(s.past?.count ?? 0))")
        }
        let h = config.hiddenSize
        let counts = segments.map(\.ids.count)
        let starts = counts.reduce(into: [0]) { $0.append($0.last! + $1) }
        let T = starts.last!
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
        if precision == .bf16 { x.withUnsafeMutableBufferPointer { Kernels.roundToBF16($0.baseAddress!, $0.count) } }
        var caches: [KVCache?] = segments.map { keepCache ? KVCache(count: $0.pastCount + $0.ids.count) : nil }
        let kvWidth = config.numQueryGroups * config.kvChannels
        let qkvWidth = (config.numAttentionHeads + 2 * config.numQueryGroups) * config.kvChannels
        let ctxWidth = config.numAttentionHeads * config.kvChannels
        for layer in 0..<config.numLayers {
            let p = "decoder.layers.\(layer)."
            let a = try normInput(weight: p + "self_attention.linear_qkv.layer_norm_weight",
                             bias: p + "self_attention.linear_qkv.layer_norm_bias", x, tokens: T, precision: precision)
            let qkv = try linear(p + "self_attention.linear_qkv", a, tokens: T, k: h, precision: precision)
            var ctx = Kernels.uninitialized(Float.self, T * ctxWidth)   // each segment fills its rows
            qkv.withUnsafeBufferPointer { qb in
                ctx.withUnsafeMutableBufferPointer { cb in
                    for (si, seg) in segments.enumerated() {
                        let pastKV = seg.past.map { (cache: $0, layer: layer, count: seg.pastCount * kvWidth) }
                        let (keys, values) = attention(qb.baseAddress! + starts[si] * qkvWidth, tokens: counts[si], start: seg.pastCount,
                                                       past: pastKV, precision: precision, into: cb.baseAddress! + starts[si] * ctxWidth)
                        if keepCache { caches[si]!.append(keys: keys, values: values, bf16: precision == .bf16) }
                    }
                }
            }
            let proj = try linear(p + "self_attention.linear_proj", ctx, tokens: T, k: ctxWidth, precision: precision)
            x = add(x, proj, precision)
            let m = try normInput(weight: p + "mlp.linear_fc1.layer_norm_weight", bias: p + "mlp.linear_fc1.layer_norm_bias",
                             x, tokens: T, precision: precision)
            let fc1 = try linear(p + "mlp.linear_fc1", m, tokens: T, k: h, precision: precision)
            let act = activate(fc1, tokens: T, precision: precision)
            let fc2 = try linear(p + "mlp.linear_fc2", act, tokens: T, k: config.ffnHiddenSize, precision: precision)
            x = add(x, fc2, precision)
        }
        let final = try norm(weight: "decoder.final_layernorm.weight", bias: "decoder.final_layernorm.bias", x, tokens: T,
                             precision: precision)
        return (segments.indices.map { Array(final[(starts[$0] * h)..<(starts[$0 + 1] * h)]) }, caches)
    }

    /// Row `id` of the embedding table as FP32: read straight from its mapped piece when that
    /// is raw BF16 or FP32 (a token at a time through the streamer costs a read-ahead request each).
    func embeddingRow(_ emb: GlobalTensor, _ id: Int, into out: UnsafeMutablePointer<Float>) throws(TesseraError) {
        let h = emb.shape[1]
        if let p = emb.pieces.first(where: { id >= $0.globalOffset[0] && id < $0.globalOffset[0] + $0.shape[0] }),
           p.encoding == .raw, p.shape.count == 2, p.shape[1] == h, p.globalOffset[1] == 0, p.strides[1] == 1,
           emb.dtype == .bfloat16 || emb.dtype == .float32 {
            let file = try weights.streamer.cache.file(p.storage.path)
            let bytes = try file.bytes(offset: p.storage.offset, count: p.storage.count)
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
        Kernels.add(a, b, round: precision == .bf16)
    }

    /// fc1 output -> activation (squared ReLU, GeLU, or a gated unit over `[gate; up]`).
    func activate(_ y: [Float], tokens: Int, precision: Precision) -> LayerInput {
        let kind: Int32
        switch config.activation {
        case "squared-relu": kind = Int32(TESSERA_SQUARED_RELU)
        case "relu": kind = Int32(TESSERA_RELU)
        case "gelu", "geglu", "fast-geglu": kind = Int32(TESSERA_GELU)
        default: kind = Int32(TESSERA_SILU)   // swiglu, fast-swiglu
        }
        let f = config.ffnHiddenSize, gated = config.gatedLinearUnit
        if bitsInput(precision) { return .bf16(Kernels.activationBF16(kind, y, rows: tokens, f: f, gated: gated)) }
        return .values(Kernels.activation(kind, y, rows: tokens, f: f, gated: gated, round: precision == .bf16))
    }

    /// Causal grouped-query attention with rotary embeddings over new positions
    /// `start..<start+T` and `past` keys/values of positions `0..<start`; qkv rows are grouped
    /// per query group as `[q heads of the group, k, v]`. Returns the context and the keys and
    /// values of all positions.
    func attention(_ qkv: UnsafePointer<Float>, tokens T: Int, start: Int, past: (cache: KVCache, layer: Int, count: Int)?,
                   precision: Precision, into ctx: UnsafeMutablePointer<Float>) -> ([Float], [Float]) {
        let heads = config.numAttentionHeads, groups = config.numQueryGroups, d = config.kvChannels
        let hpg = heads / groups, width = (heads + 2 * groups) * d
        let rot = Int(Double(d) * config.rotaryPercentage)
        let useRope = config.positionEmbeddingType == "rope" && rot > 0
        let round = precision == .bf16
        // cos/sin of every new position and rotary frequency (emb = cat(freqs, freqs)).
        let half = max(rot / 2, 1)
        var cosT = [Float](repeating: 1, count: T * half), sinT = [Float](repeating: 0, count: T * half)
        if useRope {
            for f in 0..<half {
                let invFreq = Float(1.0 / pow(config.rotaryBase, Double(2 * f) / Double(rot)))
                for t in 0..<T {
                    let angle = Float(start + t) * invFreq
                    cosT[t * half + f] = cos(angle)
                    sinT[t * half + f] = sin(angle)
                }
            }
        }
        let total = start + T
        // Keys and values of all positions: [position][group][d]; queries [token][head][d].
        // Positions before `start` come from the cache, the rest from qkv; queries and context are all written.
        var keys = Kernels.uninitialized(Float.self, total * groups * d), values = Kernels.uninitialized(Float.self, total * groups * d)
        if let past { past.cache.copy(layer: past.layer, first: past.count, keys: &keys, values: &values) }
        var q = Kernels.uninitialized(Float.self, T * heads * d)
        let scale = 1 / Float(d).squareRoot()
        q.withUnsafeMutableBufferPointer { qb in
            keys.withUnsafeMutableBufferPointer { kb in
                values.withUnsafeMutableBufferPointer { vb in
                    cosT.withUnsafeBufferPointer { cosb in
                        sinT.withUnsafeBufferPointer { sinb in
                            let (src, qp, kp, vp, cp) = (UncheckedSendable(qkv), UncheckedSendable(qb.baseAddress!),
                                                         UncheckedSendable(kb.baseAddress!), UncheckedSendable(vb.baseAddress!),
                                                         UncheckedSendable(ctx))
                            let (cosp, sinp) = (UncheckedSendable(cosb.baseAddress!), UncheckedSendable(sinb.baseAddress!))
                            // Rotate-half RoPE on the first `rot` values of one head vector, in place.
                            @Sendable func rope(_ v: UnsafeMutablePointer<Float>, _ t: Int) {
                                guard useRope else { return }
                                let c = cosp.value + t * half, s = sinp.value + t * half
                                for i in 0..<half {
                                    let a = v[i], b = v[i + half]
                                    let x = a * c[i] - b * s[i], y = b * c[i] + a * s[i]
                                    v[i] = round ? x.bfloat16Rounded : x
                                    v[i + half] = round ? y.bfloat16Rounded : y
                                }
                            }
                            // Split qkv rows ([q heads of the group, k, v] per group) and rotate.
                            Kernels.parallel(T, granule: 8) { t0, t1 in
                                for t in t0..<t1 {
                                    for g in 0..<groups {
                                        let base = src.value + t * width + g * (hpg + 2) * d
                                        for j in 0..<hpg {
                                            let dst = qp.value + (t * heads + g * hpg + j) * d
                                            dst.update(from: base + j * d, count: d)
                                            rope(dst, t)
                                        }
                                        let at = ((start + t) * groups + g) * d
                                        (kp.value + at).update(from: base + hpg * d, count: d)
                                        rope(kp.value + at, t)
                                        (vp.value + at).update(from: base + (hpg + 1) * d, count: d)
                                    }
                                }
                            }
                            // Per head, in blocks of query rows that see only the keys up to their last row:
                            // scores = Q K^T * scale, causal softmax, context = P V (with V transposed once per group).
                            let block = 64
                            Kernels.parallel(heads) { h0, h1 in
                                let scores = UnsafeMutablePointer<Float>.allocate(capacity: block * total)
                                let vt = UnsafeMutablePointer<Float>.allocate(capacity: d * total)
                                defer { scores.deallocate(); vt.deallocate() }
                                var transposed = -1
                                for head in h0..<h1 {
                                    let g = head / hpg
                                    if T < 16 {
                                        // A few new positions (a scored turn after its cached prefix): dot
                                        // products straight over the keys and values, nothing to pack.
                                        for t in 0..<T {
                                            tessera_attend_row(qp.value + (t * heads + head) * d, kp.value + g * d, vp.value + g * d,
                                                               groups * d, start + t + 1, d, scale, round ? 1 : 0, scores,
                                                               cp.value + t * heads * d + head * d)
                                        }
                                        continue
                                    }
                                    if transposed != g {
                                        for pos in 0..<total { for i in 0..<d { vt[i * total + pos] = vp.value[(pos * groups + g) * d + i] } }
                                        transposed = g
                                    }
                                    var t0 = 0
                                    while t0 < T {
                                        let rows = min(block, T - t0), visible = start + t0 + rows
                                        var status = tessera_gemm_f32_nt(qp.value + t0 * heads * d + head * d, heads * d, kp.value + g * d, 0, groups * d,
                                                                scores, visible, rows, visible, d, 0)
                                        for r in 0..<rows {
                                            tessera_causal_softmax(scores + r * visible, start + t0 + r + 1, visible, scale, round ? 1 : 0)
                                        }
                                        status |= tessera_gemm_f32_nt(scores, visible, vt, 0, total, cp.value + t0 * heads * d + head * d, heads * d,
                                                                rows, d, visible, 0)
                                        precondition(status == 0, "out of memory for the attention products' packing buffers")
                                        t0 += rows
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if round { Kernels.roundToBF16(ctx, T * heads * d) }
        return (keys, values)
    }
}

/// The activations and output of one linear layer, for products with its weight pieces.
private struct Operands {
    /// x as FP32 (absent when a BF16 product was handed BF16 bits).
    let x: UnsafePointer<Float>?
    /// x rounded to BF16 (BF16 mode only).
    let xq: UnsafePointer<UInt16>?
    let k: Int
    let y: UnsafeMutablePointer<Float>
    let n: Int
    let tokens: Int
    let precision: Precision

    /// y[:, row0..<row0+rows] (+)= x[:, col0..<col0+cols] w^T, over the cores (split on the
    /// kernels' 64-column panels), rounded to BF16 when `round`. False when the kernels cannot
    /// allocate their buffers.
    func product(_ w: UnsafeRawPointer, bf16Weights: Bool, ldw: Int, rows: Int, row0: Int, col0: Int, cols: Int,
                 accumulate: Bool, round: Bool) -> Bool {
        let failed = UncheckedSendable(UnsafeMutablePointer<Bool>.allocate(capacity: 1))
        defer { failed.value.deallocate() }
        failed.value.pointee = false
        let me = UncheckedSendable(self), wp = UncheckedSendable(w)
        guard Kernels.hasNativeGEMM else {
            Kernels.parallel(rows, granule: 64) { r0, r1 in
                me.value.blasProduct(wp.value + r0 * ldw * (bf16Weights ? 2 : 4), bf16Weights: bf16Weights, ldw: ldw, rows: r1 - r0,
                                     col0: col0, cols: cols, c: me.value.y + row0 + r0, accumulate: accumulate)
            }
            return true
        }
        // The activations are packed once, by both cores, then each core multiplies them by
        // its share of the output columns.
        let bf16 = precision == .bf16
        let a = UncheckedSendable(bf16 ? UnsafeRawPointer(xq! + col0) : UnsafeRawPointer(x! + col0))
        let packed = UncheckedSendable(UnsafeMutableRawPointer.allocate(byteCount: tessera_gemm_packed_bytes(tokens, cols, bf16 ? 1 : 0),
                                                                        alignment: 64))
        defer { packed.value.deallocate() }
        Kernels.parallel(tokens, granule: tessera_gemm_pack_granule()) { t0, t1 in
            tessera_gemm_pack_activations(a.value, me.value.k, me.value.tokens, cols, bf16 ? 1 : 0, t0, t1, packed.value)
        }
        Kernels.parallel(rows, granule: 64) { r0, r1 in
            let o = me.value
            let status = tessera_gemm_packed_nt(a.value, o.k, bf16 ? 1 : 0, packed.value, wp.value + r0 * ldw * (bf16Weights ? 2 : 4),
                                                bf16Weights ? 1 : 0, ldw, o.y + row0 + r0, o.n, o.tokens, r1 - r0, cols,
                                                accumulate ? 1 : 0, round ? 1 : 0)
            if status != 0 { failed.value.pointee = true }
        }
        return !failed.value.pointee
    }

    /// The same product through OpenBLAS's SGEMM, for CPUs without AVX512-BF16 (BF16 weights
    /// widened 64 rows at a time; in BF16 mode the activations already hold BF16 values).
    func blasProduct(_ w: UnsafeRawPointer, bf16Weights: Bool, ldw: Int, rows: Int, col0: Int, cols: Int,
                     c: UnsafeMutablePointer<Float>, accumulate: Bool) {
        guard bf16Weights else {
            tessera_blas_sgemm_nt(x! + col0, k, w.assumingMemoryBound(to: Float.self), ldw, c, n, tokens, rows, cols, accumulate ? 1 : 0)
            return
        }
        let widened = UnsafeMutablePointer<Float>.allocate(capacity: 64 * cols)
        defer { widened.deallocate() }
        let src = w.assumingMemoryBound(to: UInt16.self)
        for r0 in stride(from: 0, to: rows, by: 64) {
            let count = min(64, rows - r0)
            for r in 0..<count { for j in 0..<cols { widened[r * cols + j] = Float(bitPattern: UInt32(src[(r0 + r) * ldw + j]) << 16) } }
            tessera_blas_sgemm_nt(x! + col0, k, widened, cols, c + r0, n, tokens, count, cols, accumulate ? 1 : 0)
        }
    }
}
