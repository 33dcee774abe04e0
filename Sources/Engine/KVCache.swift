import CKernels
import Platform

/// Keys (after rotary embedding) and values of every layer for a run of positions, so a
/// longer sequence sharing that prefix need not recompute it. A BF16 run keeps them as BF16
/// (exactly what it computed), an FP32 run as FP32: a step after a cached prefix sees the very
/// values a full run computes, so its outputs are the same bits.
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
        x.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { tessera_f32_to_bf16(KernelPath.best.isa, xb.baseAddress!, $0.baseAddress!, x.count) }
        }
        return out
    }

    /// Writes the first `n` values of layer `layer` into `k` and `v` (FP32), and the keys' BF16
    /// bits into `keyBits` when given (straight from a BF16 cache, which holds exactly those).
    func copy(layer: Int, first n: Int, keys k: UnsafeMutablePointer<Float>, values v: UnsafeMutablePointer<Float>,
              keyBits: UnsafeMutablePointer<UInt16>? = nil, kernels: Kernels) {
        if !keys16.isEmpty {
            keys16[layer].withUnsafeBufferPointer { kb in
                kernels.widen(kb.baseAddress!, into: k, n)
                keyBits?.update(from: kb.baseAddress!, count: n)
            }
            values16[layer].withUnsafeBufferPointer { kernels.widen($0.baseAddress!, into: v, n) }
        } else {
            keys[layer].withUnsafeBufferPointer { k.update(from: $0.baseAddress!, count: n) }
            values[layer].withUnsafeBufferPointer { v.update(from: $0.baseAddress!, count: n) }
            if let keyBits { kernels.toBF16(k, keyBits, n) }
        }
    }
}
