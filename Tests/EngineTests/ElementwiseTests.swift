import CKernels
import Engine
import Foundation
import Platform
import TestSupport
import Testing

/// The kernels' code of a path (its place among the cases).
func isa(_ path: KernelPath) -> Int32 { Int32(KernelPath.allCases.firstIndex(of: path)!) }

/// Every activation, gated (`[gate; up]` rows) or not, as FP32, rounded FP32 and BF16 bits, on
/// every kernel path this CPU runs, against the formulas computed here in Double.
@Test(arguments: [TESSERA_SQUARED_RELU, TESSERA_RELU, TESSERA_GELU, TESSERA_SILU].map { Int32($0) }, try requireCases(KernelPath.supported, "kernel paths"))
func activationsMatchTheirFormulas(kind: Int32, path: KernelPath) {
    for gated in [false, true] { checkActivation(kind: kind, gated: gated, isa: isa(path)) }
}

private func checkActivation(kind: Int32, gated: Bool, isa: Int32) {
    let rows = 3, f = 37, width = gated ? 2 * f : f
    let y = (0..<(rows * width)).map { Float(($0 * 7919) % 200 - 100) / 25 }
    func reference(_ v: Double) -> Double {
        switch Int(kind) {
        case Int(TESSERA_SQUARED_RELU): return v > 0 ? v * v : 0
        case Int(TESSERA_RELU): return max(v, 0)
        case Int(TESSERA_GELU): return 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
        default: return v / (1 + exp(-v))
        }
    }
    var plain = [Float](repeating: 0, count: rows * f), rounded = plain
    var bits = [UInt16](repeating: 0, count: rows * f)
    tessera_activation(isa, kind, y, rows, f, gated ? 1 : 0, 0, &plain, nil)
    tessera_activation(isa, kind, y, rows, f, gated ? 1 : 0, 1, &rounded, nil)
    tessera_activation(isa, kind, y, rows, f, gated ? 1 : 0, 1, nil, &bits)
    for t in 0..<rows {
        for j in 0..<f {
            let v = Double(y[t * width + j]), up = gated ? Double(y[t * width + f + j]) : 1
            let expected = reference(v) * up, i = t * f + j
            #expect(abs(Double(plain[i]) - expected) <= 1e-5 * max(1, abs(expected)), "\(kind) gated \(gated) at \(t), \(j)")
            #expect(rounded[i] == plain[i].bfloat16Rounded)
            #expect(Float(bitPattern: UInt32(bits[i]) << 16) == rounded[i])
        }
    }
}

/// Softmax on every path against Double, rows longer and shorter than the 16 lanes; masked tail zero.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func softmaxMatchesItsFormula(path: KernelPath) {
    for visible in [1, 5, 16, 37, 200] {
        let input = testValues(visible + 3, seed: UInt32(visible)).map { $0 * 30 }
        var row = input
        tessera_causal_softmax(isa(path), &row, visible, visible + 3, 0.7, 0, nil)
        let scaled = input.prefix(visible).map { Double($0) * Double(Float(0.7)) }
        let m = scaled.max()!, sum = scaled.reduce(0) { $0 + exp($1 - m) }
        for s in 0..<visible { #expect(abs(Double(row[s]) - exp(scaled[s] - m) / sum) < 2e-6, "\(path) visible \(visible) at \(s)") }
        #expect(row[visible...].allSatisfy { $0 == 0 })
        // BF16 output: the bits of the rounded in-place result, zeros up to the total.
        var rounded = input, scratch = input, bits = [UInt16](repeating: 0xffff, count: visible + 3)
        tessera_causal_softmax(isa(path), &rounded, visible, visible + 3, 0.7, 1, nil)
        tessera_causal_softmax(isa(path), &scratch, visible, visible + 3, 0.7, 1, &bits)
        #expect(bits.count == rounded.count)
        #expect(bits.map { Float(bitPattern: UInt32($0) << 16) } == rounded, "\(path) visible \(visible): BF16 bits")
    }
}

/// Layer norm on every path against Double, a row alone equal to the same row among others.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func layerNormMatchesItsFormulaAndIgnoresOtherRows(path: KernelPath) {
    let width = 200, rows = 5
    let x = testValues(rows * width, seed: 3).map { $0 * 4 + 1 }, gamma = testValues(width, seed: 4), beta = testValues(width, seed: 5)
    var out = [Float](repeating: 0, count: rows * width), single = [Float](repeating: 0, count: width)
    tessera_norm(isa(path), x, rows, width, gamma, beta, 1e-5, 0, 0, &out, nil)
    for r in 0..<rows {
        let row = x[(r * width)..<((r + 1) * width)].map(Double.init)
        let mean = row.reduce(0, +) / Double(width), v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
        for i in 0..<width {
            let expected = (row[i] - mean) / (v + 1e-5).squareRoot() * Double(gamma[i]) + Double(beta[i])
            #expect(abs(Double(out[r * width + i]) - expected) < 1e-5, "\(path) row \(r) at \(i)")
        }
        Array(x[(r * width)..<((r + 1) * width)]).withUnsafeBufferPointer { xb in
            tessera_norm(isa(path), xb.baseAddress!, 1, width, gamma, beta, 1e-5, 0, 0, &single, nil)
        }
        #expect(single == Array(out[(r * width)..<((r + 1) * width)]), "\(path) row \(r) alone")
    }
}
