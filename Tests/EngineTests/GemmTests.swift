import CKernels
import Platform
import Testing

/// Deterministic values in (-1, 1).
private func values(_ count: Int, seed: UInt32) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 1_664_525 &+ 1_013_904_223
        return Float(Int32(bitPattern: state) >> 8) / Float(1 << 23)
    }
}

private func bf16(_ v: UInt16) -> Double { Double(Float(bitPattern: UInt32(v) << 16)) }

/// Shapes that exercise the 6-token tiles' and 64-column panels' edges, odd K, K shorter
/// than and longer than one 256-input panel, strided operands and several token blocks.
private let shapes: [(t: Int, n: Int, k: Int)] = [
    (1, 1, 1), (1, 1, 2), (3, 5, 31), (6, 64, 256), (7, 65, 257), (13, 130, 33), (5, 200, 600), (800, 17, 40),
]

/// The three products: BF16 x BF16, FP32 x FP32 and FP32 x BF16 weights (widened).
enum Product: CaseIterable, Sendable { case bf16, f32, f32WithBF16Weights }

/// Each GEMM (AVX-512 where the CPU has it, else the portable path) and the portable path
/// itself, against a double-precision sum of the same values, with padded leading dimensions
/// that must stay untouched, overwriting and accumulating.
@Test(arguments: shapes.indices, [false, true])
func gemmMatchesADoublePrecisionSum(shape: Int, portable: Bool) {
    for product in Product.allCases { check(product, shape: shapes[shape], portable: portable) }
}

private func check(_ product: Product, shape: (t: Int, n: Int, k: Int), portable: Bool) {
    let (t, n, k) = shape
    let lda = k + 3, ldw = k + 1, ldc = n + 2
    var qa = [UInt16](repeating: 0, count: t * lda), qw = [UInt16](repeating: 0, count: n * ldw)
    tessera_f32_to_bf16(values(qa.count, seed: 12345), &qa, qa.count)
    tessera_f32_to_bf16(values(qw.count, seed: 777), &qw, qw.count)
    // FP32 operands hold the same (BF16-representable) values, so one reference serves all.
    let fa = qa.map { Float(bf16($0)) }, fw = qw.map { Float(bf16($0)) }
    func gemm(_ c: inout [Float], accumulate: Bool) {
        let acc: Int32 = accumulate ? 1 : 0
        switch (product, portable) {
        case (.bf16, true): tessera_gemm_bf16_nt_portable(qa, lda, qw, ldw, &c, ldc, t, n, k, acc)
        case (.bf16, false): #expect(tessera_gemm_bf16_nt(qa, lda, qw, ldw, &c, ldc, t, n, k, acc) == 0)
        case (.f32, true): tessera_gemm_f32_nt_portable(fa, lda, fw, 0, ldw, &c, ldc, t, n, k, acc)
        case (.f32, false): #expect(tessera_gemm_f32_nt(fa, lda, fw, 0, ldw, &c, ldc, t, n, k, acc) == 0)
        case (.f32WithBF16Weights, true): tessera_gemm_f32_nt_portable(fa, lda, qw, 1, ldw, &c, ldc, t, n, k, acc)
        case (.f32WithBF16Weights, false): #expect(tessera_gemm_f32_nt(fa, lda, qw, 1, ldw, &c, ldc, t, n, k, acc) == 0)
        }
    }
    let initial = values(t * ldc, seed: 99)
    var c = initial
    gemm(&c, accumulate: false)
    if !portable {
        // The same product from activations packed beforehand, in two parts, as two threads do.
        let bf16 = product == .bf16
        var packed = [UInt8](repeating: 0, count: tessera_gemm_packed_bytes(t, k, bf16 ? 1 : 0))
        let split = min(t, (t / 2) / tessera_gemm_pack_granule() * tessera_gemm_pack_granule())
        var fromPacked = initial
        func run(_ a: UnsafeRawPointer, _ w: UnsafeRawPointer) {
            packed.withUnsafeMutableBytes { p in
                tessera_gemm_pack_activations(a, lda, t, k, bf16 ? 1 : 0, 0, split, p.baseAddress!)
                tessera_gemm_pack_activations(a, lda, t, k, bf16 ? 1 : 0, split, t, p.baseAddress!)
                #expect(tessera_gemm_packed_nt(a, lda, bf16 ? 1 : 0, p.baseAddress!, w, product == .f32 ? 0 : 1, ldw, &fromPacked, ldc,
                                               t, n, k, 0, 0) == 0)
                // Rounded as stored: each result to its nearest BF16.
                var rounded = initial
                #expect(tessera_gemm_packed_nt(a, lda, bf16 ? 1 : 0, p.baseAddress!, w, product == .f32 ? 0 : 1, ldw, &rounded, ldc,
                                               t, n, k, 0, 1) == 0)
                for i in 0..<t {
                    for j in 0..<n { #expect(rounded[i * ldc + j] == c[i * ldc + j].bfloat16Rounded || c[i * ldc + j].magnitude < 1e-30) }
                }
            }
        }
        switch product {
        case .bf16: qa.withUnsafeBytes { a in qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
        case .f32: fa.withUnsafeBytes { a in fw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
        case .f32WithBF16Weights: fa.withUnsafeBytes { a in qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
        }
        #expect(fromPacked == c, "\(product) \(shape) from packed activations")
    }
    var accumulated = initial
    gemm(&accumulated, accumulate: true)
    var worst = 0.0, worstAccumulated = 0.0
    for i in 0..<t {
        for j in 0..<ldc {
            guard j < n else {
                // Padding columns of C are never written.
                #expect(c[i * ldc + j] == initial[i * ldc + j], "\(product) wrote padding column \(j)")
                continue
            }
            var s = 0.0
            for x in 0..<k { s += bf16(qa[i * lda + x]) * bf16(qw[j * ldw + x]) }
            worst = max(worst, abs(s - Double(c[i * ldc + j])))
            worstAccumulated = max(worstAccumulated, abs(s + Double(initial[i * ldc + j]) - Double(accumulated[i * ldc + j])))
        }
    }
    #expect(worst < 1e-5 * Double(k), "\(product) \(shape)")
    #expect(worstAccumulated < 1e-5 * Double(k) + 1e-6, "\(product) \(shape) accumulating")
}

@Test func bf16RoundingIsNearestEven() {
    // 1 + 2^-8 is halfway between two BF16 values: rounds to even (1.0); 1 + 3*2^-9 rounds up;
    // a NaN stays a NaN. Twenty values so the vector path and the scalar tail both run.
    let inputs: [Float] = Array(repeating: 1.0 + 1.0 / 256, count: 16) + [1.0, 1.0 + 1.0 / 256, 1.0 + 3.0 / 512, .nan]
    var out = [UInt16](repeating: 0, count: inputs.count)
    tessera_f32_to_bf16(inputs, &out, inputs.count)
    #expect(out[0..<16].allSatisfy { $0 == 0x3F80 })
    #expect(Array(out[16...18]) == [0x3F80, 0x3F80, 0x3F81])
    #expect(Float(bitPattern: UInt32(out[19]) << 16).isNaN)
}
