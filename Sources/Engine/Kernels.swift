import COpenBLAS
import Platform
import Foundation

/// Numeric kernels over FP32 activations (OpenBLAS for the matrix products).
enum Kernels {
    /// C[t, c0 + j] (+)= sum_k A[t, a0 + k] * W[j, k] for a block of W (rows x k) — one
    /// column-parallel or row-parallel piece of a linear layer.
    static func linearBlock(a: UnsafePointer<Float>, lda: Int, tokens: Int, w: UnsafePointer<Float>, rows: Int, k: Int,
                            c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(rows), Int32(k), 1, a, Int32(lda),
                    w, Int32(k), accumulate ? 1 : 0, c, Int32(ldc))
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
