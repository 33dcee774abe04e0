import CKernels
import Platform
import Foundation

/// Numeric kernels over FP32 activations (matrix products in CKernels; OpenBLAS where the CPU lacks AVX512-BF16).
enum Kernels {
    /// True when the CPU runs Tessera's AVX-512 GEMMs; otherwise products go through OpenBLAS.
    static let hasNativeGEMM = tessera_has_avx512bf16() != 0 && ProcessInfo.processInfo.environment["TESSERA_PORTABLE_GEMM"] == nil

    /// Worker threads of the engine: one per core. OpenBLAS, where used, runs single-threaded
    /// inside them (its own pool would spin against ours for the same cores).
    static let workers = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs `body(start, end)` over `count` items split into one contiguous range per worker,
    /// range boundaries on multiples of `granule`.
    static func parallel(_ count: Int, granule: Int = 1, _ body: @Sendable (Int, Int) -> Void) {
        let units = (count + granule - 1) / granule
        let parts = max(1, min(workers, units))
        guard parts > 1 else { body(0, count); return }
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lo = min(count, units * part / parts * granule), hi = min(count, units * (part + 1) / parts * granule)
            if lo < hi { body(lo, hi) }
        }
    }

    /// Rounds every value to the nearest BF16 (ties to even), as BF16 storage would, over the cores.
    static func roundToBF16(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        let x = UncheckedSendable(x)
        parallel(n, granule: 1 << 14) { lo, hi in tessera_round_bf16(x.value + lo, hi - lo) }
    }

    @inline(__always) static func bf16(_ f: Float) -> Float { f.bfloat16Rounded }

    /// An array of `count` elements left unset, for buffers that are written in full before
    /// being read (zero-filling tens of MB per layer would run on one core).
    static func uninitialized<T: BitwiseCopyable>(_: T.Type, _ count: Int) -> [T] {
        [T](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    /// BF16 bit patterns of `n` floats (nearest, ties to even), over the cores.
    static func toBF16(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, _ n: Int) {
        let (x, out) = (UncheckedSendable(x), UncheckedSendable(out))
        parallel(n, granule: 1 << 14) { lo, hi in tessera_f32_to_bf16(x.value + lo, out.value + lo, hi - lo) }
    }

    /// `a + b`, rounded to BF16 when `round`.
    static func add(_ a: [Float], _ b: [Float], round: Bool) -> [Float] {
        [Float](unsafeUninitializedCapacity: a.count) { out, count in
            a.withUnsafeBufferPointer { ab in
                b.withUnsafeBufferPointer { bb in
                    let (ap, bp, op) = (UncheckedSendable(ab.baseAddress!), UncheckedSendable(bb.baseAddress!), UncheckedSendable(out.baseAddress!))
                    parallel(a.count, granule: 1 << 14) { lo, hi in tessera_add(ap.value + lo, bp.value + lo, op.value + lo, hi - lo, round ? 1 : 0) }
                }
            }
            count = a.count
        }
    }

    /// LayerNorm (or RMSNorm) over rows of `width`, statistics in FP32, rounded to BF16 when `round`.
    static func norm(_ x: [Float], rows: Int, width: Int, gamma: [Float], beta: [Float]?, eps: Float, rms: Bool, round: Bool) -> [Float] {
        [Float](unsafeUninitializedCapacity: x.count) { out, count in
            norm(x, rows: rows, width: width, gamma: gamma, beta: beta, eps: eps, rms: rms, round: round, out: out.baseAddress, bits: nil)
            count = x.count
        }
    }

    /// The same norm as BF16 bits, the input of a BF16 matrix product.
    static func normBF16(_ x: [Float], rows: Int, width: Int, gamma: [Float], beta: [Float]?, eps: Float, rms: Bool) -> [UInt16] {
        [UInt16](unsafeUninitializedCapacity: x.count) { out, count in
            norm(x, rows: rows, width: width, gamma: gamma, beta: beta, eps: eps, rms: rms, round: true, out: nil, bits: out.baseAddress)
            count = x.count
        }
    }

    private static func norm(_ x: [Float], rows: Int, width: Int, gamma: [Float], beta: [Float]?, eps: Float, rms: Bool, round: Bool,
                             out: UnsafeMutablePointer<Float>?, bits: UnsafeMutablePointer<UInt16>?) {
        x.withUnsafeBufferPointer { xb in
            gamma.withUnsafeBufferPointer { gb in
                (beta ?? []).withUnsafeBufferPointer { bb in
                    let (xp, gp, bp) = (UncheckedSendable(xb.baseAddress!), UncheckedSendable(gb.baseAddress!),
                                        UncheckedSendable(beta == nil ? nil : bb.baseAddress))
                    let (op, hp) = (UncheckedSendable(out), UncheckedSendable(bits))
                    parallel(rows, granule: 8) { lo, hi in
                        tessera_norm(xp.value + lo * width, hi - lo, width, gp.value, bp.value, eps, rms ? 1 : 0, round ? 1 : 0,
                                     op.value.map { $0 + lo * width }, hp.value.map { $0 + lo * width })
                    }
                }
            }
        }
    }

    /// The MLP activation of fc1's output rows (`[gate; up]` halves when gated), rounded to BF16 when `round`.
    static func activation(_ kind: Int32, _ y: [Float], rows: Int, f: Int, gated: Bool, round: Bool) -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * f) { out, count in
            activation(kind, y, rows: rows, f: f, gated: gated, round: round, out: out.baseAddress, bits: nil)
            count = rows * f
        }
    }

    /// The same activation as BF16 bits, the input of a BF16 matrix product.
    static func activationBF16(_ kind: Int32, _ y: [Float], rows: Int, f: Int, gated: Bool) -> [UInt16] {
        [UInt16](unsafeUninitializedCapacity: rows * f) { out, count in
            activation(kind, y, rows: rows, f: f, gated: gated, round: true, out: nil, bits: out.baseAddress)
            count = rows * f
        }
    }

    private static func activation(_ kind: Int32, _ y: [Float], rows: Int, f: Int, gated: Bool, round: Bool,
                                   out: UnsafeMutablePointer<Float>?, bits: UnsafeMutablePointer<UInt16>?) {
        y.withUnsafeBufferPointer { yb in
            let (yp, op, hp) = (UncheckedSendable(yb.baseAddress!), UncheckedSendable(out), UncheckedSendable(bits))
            let width = gated ? 2 * f : f
            parallel(rows, granule: 8) { lo, hi in
                tessera_activation(kind, yp.value + lo * width, hi - lo, f, gated ? 1 : 0, round ? 1 : 0,
                                   op.value.map { $0 + lo * f }, hp.value.map { $0 + lo * f })
            }
        }
    }
}
