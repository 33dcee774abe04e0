import CKernels
import Foundation
import Platform
import Testing

/// Every activation, gated (`[gate; up]` rows) or not, as FP32, rounded FP32 and BF16 bits,
/// against the formulas computed here in Double.
@Test(arguments: [TESSERA_SQUARED_RELU, TESSERA_RELU, TESSERA_GELU, TESSERA_SILU].map { Int32($0) }, [false, true])
func activationsMatchTheirFormulas(kind: Int32, gated: Bool) {
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
    tessera_activation(kind, y, rows, f, gated ? 1 : 0, 0, &plain, nil)
    tessera_activation(kind, y, rows, f, gated ? 1 : 0, 1, &rounded, nil)
    tessera_activation(kind, y, rows, f, gated ? 1 : 0, 1, nil, &bits)
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
