import CKernels
import COpenBLAS
import Platform
import Foundation

/// Numeric kernels over FP32 activations (matrix products in CKernels; OpenBLAS in attention).
enum Kernels {
    /// Worker threads of the engine: one per core. OpenBLAS runs single-threaded inside them
    /// (its own pool would spin against ours for the same cores).
    static let workers: Int = {
        openblas_set_num_threads(1)
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

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

    /// Rounds every value to the nearest BF16 (ties to even), as BF16 storage would.
    static func roundToBF16(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { x[i] = bf16(x[i]) }
    }

    @inline(__always) static func bf16(_ f: Float) -> Float { f.bfloat16Rounded }

    /// LayerNorm over rows of `width`: (x - mean) / sqrt(var + eps) * gamma + beta, statistics in FP32.
    static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, width: Int, gamma: [Float], beta: [Float]?, eps: Float,
                          rms: Bool, out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let row = x + r * width, o = out + r * width
            var mean: Float = 0
            if !rms {
                for i in 0..<width { mean += row[i] }
                mean /= Float(width)
            }
            var v: Float = 0
            for i in 0..<width { let d = row[i] - mean; v += d * d }
            v /= Float(width)
            let inv = 1 / (v + eps).squareRoot()
            for i in 0..<width { o[i] = (row[i] - mean) * inv * gamma[i] + (beta?[i] ?? 0) }
        }
    }
}

