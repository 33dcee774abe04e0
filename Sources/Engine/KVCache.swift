import CKernels
import Platform

/// Keys (after rotary embedding) and values of every layer for a run of positions, so a
/// longer sequence sharing that prefix need not recompute it. A BF16 run keeps them as BF16
/// (exactly what it computed), an FP32 run as FP32: a step after a cached prefix sees the very
/// values a full run computes, so its outputs are the same bits.
public struct KVCache: Sendable {
    /// Per layer, in the form its run computed them.
    var layers: [LayerKV] = []
    /// Positions held.
    public internal(set) var count: Int

    init(count: Int) { self.count = count }

    /// Stores one layer's keys and values.
    mutating func append(_ layer: LayerKV) { layers.append(layer) }

    /// Writes the first `n` keys and values of layer `layer` into `o`'s keys and values, as BF16
    /// bits when `bf16`, else as floats: straight from a cache of that form; from the other form
    /// widened (exactly) or rounded to the nearest BF16.
    func copy(layer: Int, first n: Int, into o: AttentionOperands, bf16: Bool, kernels: Kernels) {
        switch layers[layer] {
        case .bf16(let keys, let values):
            for (held, into) in [(keys, o.keys), (values, o.values)] {
                held.withUnsafeBufferPointer { h in
                    if bf16 {
                        into.copyMemory(from: h.baseAddress!, byteCount: n * MemoryLayout<UInt16>.stride)
                    } else {
                        kernels.widen(h.baseAddress!, into: into.assumingMemoryBound(to: Float.self), n)
                    }
                }
            }
        case .fp32(let keys, let values):
            for (held, into) in [(keys, o.keys), (values, o.values)] {
                held.withUnsafeBufferPointer { h in
                    if bf16 {
                        kernels.toBF16(h.baseAddress!, into.assumingMemoryBound(to: UInt16.self), n)
                    } else {
                        into.copyMemory(from: h.baseAddress!, byteCount: n * MemoryLayout<Float>.stride)
                    }
                }
            }
        }
    }
}

/// One layer's keys and values of every position of a sequence ([position][group][d]) as its run
/// computed them: BF16 bits in a BF16 run, floats in an FP32 run.
enum LayerKV {
    case bf16(keys: [UInt16], values: [UInt16])
    case fp32(keys: [Float], values: [Float])
}
