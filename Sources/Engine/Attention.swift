import Checkpoints
import CKernels
import Foundation
import Platform

/// Causal grouped-query attention with rotary embeddings over the new positions
/// `start..<start+T` of one sequence, after `start` positions whose keys and values are given.
/// qkv rows are grouped per query group as `[q heads of the group, k, v]`.
///
/// Every query row is computed the same way whatever T is (a whole sequence, or one token
/// after a cached prefix): scores by a GEMM over the head dimension, softmax over the visible
/// positions, context by a GEMM over positions (later positions contribute exact zeros), so a
/// cached step gives the same bits as the full run. A BF16 run multiplies BF16 operands.
struct Attention {
    let heads: Int, groups: Int, d: Int
    /// Rotated dimensions of each head (the first `rot`), and whether RoPE applies at all.
    let rot: Int, useRope: Bool
    let rotaryBase: Double
    let round: Bool
    let kernels: Kernels
    /// Query positions per block of the score GEMM (a block sees the keys up to its last
    /// position). 32 rather than 64: fewer products past a row's last position; on amx at 4 x 512
    /// tokens attention's share of the forward went from 8.8-10.1% to 8.1-8.9% of the products'
    /// time (5 interleaved runs), while 128 and 256 were slower (0.36-0.50 s against 0.33-0.42 s).
    static let block = 32

    init(_ config: ModelConfig, _ architecture: Architecture, precision: Precision, kernels: Kernels) {
        heads = config.numAttentionHeads
        groups = config.numQueryGroups
        d = config.kvChannels
        rot = Int(Double(d) * config.rotaryPercentage)
        useRope = architecture.positionEmbedding == .rope && rot > 0
        rotaryBase = config.rotaryBase
        round = precision == .bf16
        self.kernels = kernels
    }

    var hpg: Int { heads / groups }
    var qkvWidth: Int { (heads + 2 * groups) * d }
    var half: Int { max(rot / 2, 1) }

    /// cos and sin of every new position and rotary frequency (emb = cat(freqs, freqs)): the
    /// same for every layer, so a pass computes them once per sequence.
    func ropeTables(start: Int, tokens T: Int) -> RopeTables {
        var cosT = [Float](repeating: 1, count: T * half), sinT = [Float](repeating: 0, count: T * half)
        guard useRope else { return RopeTables(cos: cosT, sin: sinT) }
        for f in 0..<half {
            let invFreq = Float(1.0 / pow(rotaryBase, Double(2 * f) / Double(rot)))
            for t in 0..<T {
                let angle = Float(start + t) * invFreq
                cosT[t * half + f] = cos(angle)
                sinT[t * half + f] = sin(angle)
            }
        }
        return RopeTables(cos: cosT, sin: sinT)
    }

    /// The C kernels' view of one sequence's step of `T` new positions after `start`.
    func shape(tokens T: Int, start: Int) -> tessera_attention_shape {
        tessera_attention_shape(tokens: T, start: start, groups: groups, heads_per_group: hpg, head_dim: d,
                                rotary_half: useRope ? half : 0, round: round ? 1 : 0)
    }

    /// Splits qkv rows into queries [group][token][head of the group][d] (a group's rows one
    /// matrix) and keys and values [position][group][d] at positions start..<start+T, rotating
    /// queries and keys, in the operands' form (BF16 bits in a BF16 run, else floats).
    func split(_ qkv: UnsafePointer<Float>, tokens T: Int, start: Int, rope tables: RopeTables, into o: AttentionOperands) {
        tables.cos.withUnsafeBufferPointer { cb in
            tables.sin.withUnsafeBufferPointer { sb in
                let (src, cp, sp, out, isa) = (UncheckedSendable(qkv), UncheckedSendable(cb.baseAddress!), UncheckedSendable(sb.baseAddress!),
                                               UncheckedSendable(o), kernels.isa)
                let geometry = shape(tokens: T, start: start)
                kernels.parallel(T, granule: 8) { t0, t1 in
                    let o = out.value
                    tessera_attention_split(isa, geometry, src.value, t0, t1, cp.value, sp.value, o.queries, o.keys, o.values)
                }
            }
        }
    }

    /// Bytes per attention operand: a BF16 run multiplies BF16 bits (its queries, keys, values and
    /// probabilities are BF16 values already, so this is exact in the inputs, as NeMo's BF16
    /// matmuls), an FP32 run FP32 values.
    var operandBytes: Int { round ? 2 : 4 }

    /// The kernels' flag for those operands: 1 for BF16 bits (a BF16 product), 0 for FP32.
    var bf16Operands: Int32 { round ? 1 : 0 }

    /// Packs `n` rows of `k` inputs of an attention operand `w` (row stride `ldw`; BF16 bits or
    /// FP32, see operandBytes) once, as the weights of the products of every query block.
    func pack(_ w: UnsafeRawPointer, _ ldw: Int, rows n: Int, k: Int, into packed: UnsafeMutableRawPointer) {
        tessera_gemm_pack_weights(kernels.isa, w, ldw, bf16Operands, n, k, bf16Operands, packed)
    }

    /// Bytes of `pack`'s packing of `n` rows of `k` inputs.
    func packedBytes(rows n: Int, k: Int) -> Int { tessera_gemm_packed_weights_bytes(kernels.isa, n, k, bf16Operands) }

    /// `c = a w^T` over the first `k` inputs of `w`'s packing of `packedK` inputs (`w` itself is
    /// read only for an odd last BF16 input), with the bits of the same product unpacked; rounded
    /// to BF16 (kept in FP32) when `round`.
    func product(_ a: UnsafeRawPointer, _ lda: Int, _ w: UnsafeRawPointer, _ ldw: Int, packed: UnsafeRawPointer, packedK: Int,
                 _ c: UnsafeMutablePointer<Float>, _ ldc: Int, rows: Int, cols: Int, k: Int, round: Bool = false) -> Int32 {
        tessera_gemm_prepacked_nt(kernels.isa, bf16Operands, a, lda, w, bf16Operands, ldw, packed, packedK, c, ldc, rows, cols, k, 0,
                                  round ? 1 : 0)
    }

    /// Per query group, in blocks of query positions that see only the keys up to their last one:
    /// scores = Q K^T * scale for all the group's heads at once (they share the keys), causal
    /// softmax, context = P V. The group's keys and transposed values are packed once, as the
    /// products' weights, and each block reads the part it sees. Each score and context element
    /// sums the same inputs in the same order as a head at a time would.
    func attend(_ o: AttentionOperands, tokens T: Int, start: Int, into ctx: UnsafeMutablePointer<Float>) {
        let total = start + T, scale = 1 / Float(d).squareRoot()
        let (qp, kp, vp, cp, me) = (UncheckedSendable(UnsafeRawPointer(o.queries)), UncheckedSendable(UnsafeRawPointer(o.keys)),
                                    UncheckedSendable(UnsafeRawPointer(o.values)), UncheckedSendable(ctx), self)
        kernels.parallel(groups) { g0, g1 in
            let (d, heads, groups, hpg, es) = (me.d, me.heads, me.groups, me.hpg, me.operandBytes)
            let most = Self.block * hpg
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: most * total)
            let context = UnsafeMutablePointer<Float>.allocate(capacity: most * d)
            let probabilities = UnsafeMutableRawPointer.allocate(byteCount: most * total * es, alignment: 64)
            let vt = UnsafeMutableRawPointer.allocate(byteCount: d * total * es, alignment: 64)
            let packedKeys = UnsafeMutableRawPointer.allocate(byteCount: me.packedBytes(rows: total, k: d), alignment: 64)
            let packedValues = UnsafeMutableRawPointer.allocate(byteCount: me.packedBytes(rows: d, k: total), alignment: 64)
            defer {
                scores.deallocate(); context.deallocate(); probabilities.deallocate(); vt.deallocate()
                packedKeys.deallocate(); packedValues.deallocate()
            }
            for g in g0..<g1 {
                let keys = kp.value + g * d * es
                me.pack(keys, groups * d, rows: total, k: d, into: packedKeys)
                me.transpose(values: vp.value, group: g, total: total, into: vt)
                me.pack(vt, total, rows: d, k: total, into: packedValues)
                var t0 = 0
                while t0 < T {
                    // Rows are (position, head of the group) pairs: position t0 + r / hpg.
                    let positions = min(Self.block, T - t0), rows = positions * hpg, visible = start + t0 + positions
                    var status = me.product(qp.value + (g * T + t0) * hpg * d * es, d, keys, groups * d, packed: packedKeys, packedK: d,
                                            scores, visible, rows: rows, cols: visible, k: d)
                    // A BF16 run's probabilities go straight to BF16 bits, the operand of P V.
                    let bits = me.round ? probabilities.assumingMemoryBound(to: UInt16.self) : nil
                    for r in 0..<rows {
                        tessera_causal_softmax(me.kernels.isa, scores + r * visible, start + t0 + r / hpg + 1, visible, scale, me.round ? 1 : 0,
                                               bits.map { $0 + r * visible })
                    }
                    let p = me.round ? UnsafeRawPointer(probabilities) : UnsafeRawPointer(scores)
                    // The group's heads share the values: one product over all the block's
                    // (position, head) rows (a BF16 run's rounded to BF16), into rows [position]
                    // [head of the group][d], each position's heads then copied to ctx's
                    // [token][head][d], where they lie together.
                    status |= me.product(p, visible, vt, total, packed: packedValues, packedK: total, context, d, rows: rows, cols: d,
                                         k: visible, round: me.round)
                    for position in 0..<positions {
                        (cp.value + ((t0 + position) * heads + g * hpg) * d).update(from: context + position * hpg * d, count: hpg * d)
                    }
                    precondition(status == 0, "out of memory for the attention products' packing buffers")
                    t0 += positions
                }
            }
        }
    }

    /// Group `g`'s values of all positions ([position][group][d] operands) as [d][total] operands.
    func transpose(values: UnsafeRawPointer, group g: Int, total: Int, into vt: UnsafeMutableRawPointer) {
        tessera_attention_values_t(kernels.isa, values, total, groups, d, g, round ? 1 : 0, vt)
    }
}

/// One sequence's attention operands for a step, in the form the products read (BF16 bits in a
/// BF16 run, floats in an FP32 run; see `Attention.operandBytes`): queries [group][token][head of
/// the group][d], keys and values of every position [position][group][d].
struct AttentionOperands {
    let queries: UnsafeMutableRawPointer
    let keys: UnsafeMutableRawPointer
    let values: UnsafeMutableRawPointer
}

/// RoPE's cos and sin per new position and rotary frequency ([position][frequency]).
struct RopeTables {
    let cos: [Float]
    let sin: [Float]
}

extension Model {
    /// Attention of one sequence's new positions `start..<start+T` given the keys and values of
    /// `past` positions `0..<start`; writes the context and returns the keys and values of all
    /// positions, in the run's form.
    func attention(_ unit: Attention, _ qkv: UnsafePointer<Float>, tokens T: Int, start: Int,
                   past: (cache: KVCache, layer: Int, count: Int)?, rope: RopeTables, into ctx: UnsafeMutablePointer<Float>) -> LayerKV {
        let total = start + T, kv = total * unit.groups * unit.d
        let queries = UnsafeMutableRawPointer.allocate(byteCount: T * unit.heads * unit.d * unit.operandBytes, alignment: 64)
        defer { queries.deallocate() }
        // Positions before `start` come from the cache, the rest from qkv. The queries are scratch
        // of this step; the keys and values are returned.
        func run<Element: BitwiseCopyable>(_: Element.Type) -> (keys: [Element], values: [Element]) {
            var keys = Kernels.uninitialized(Element.self, kv), values = Kernels.uninitialized(Element.self, kv)
            keys.withUnsafeMutableBytes { kb in
                values.withUnsafeMutableBytes { vb in
                    let o = AttentionOperands(queries: queries, keys: kb.baseAddress!, values: vb.baseAddress!)
                    if let past { past.cache.copy(layer: past.layer, first: past.count, into: o, bf16: unit.round, kernels: kernels) }
                    unit.split(qkv, tokens: T, start: start, rope: rope, into: o)
                    unit.attend(o, tokens: T, start: start, into: ctx)
                }
            }
            return (keys, values)
        }
        if unit.round {
            let (keys, values) = run(UInt16.self)
            return .bf16(keys: keys, values: values)
        }
        let (keys, values) = run(Float.self)
        return .fp32(keys: keys, values: values)
    }
}
