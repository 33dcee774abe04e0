import CShims
import Testing

/// The BF16 dot-product GEMM (AVX-512 BF16 where the CPU has it) against a double-precision
/// sum of the same BF16 values, over shapes that exercise the 4x4 blocks' edges and K tails.
@Test(arguments: [(1, 1, 2), (3, 5, 31), (4, 4, 64), (7, 9, 96), (5, 130, 200)])
func bf16GemmMatchesADoublePrecisionSum(t: Int, n: Int, k: Int) {
    var state: UInt32 = 12345
    func next() -> Float {
        state = state &* 1_664_525 &+ 1_013_904_223
        return Float(Int32(bitPattern: state) >> 8) / Float(1 << 23)
    }
    let a = (0..<(t * k)).map { _ in next() }, w = (0..<(n * k)).map { _ in next() }
    var qa = [UInt16](repeating: 0, count: a.count), qw = [UInt16](repeating: 0, count: w.count)
    tessera_f32_to_bf16(a, &qa, a.count)
    tessera_f32_to_bf16(w, &qw, w.count)
    func f(_ v: UInt16) -> Double { Double(Float(bitPattern: UInt32(v) << 16)) }
    var c = [Float](repeating: 1, count: t * n)
    tessera_bf16_gemm_nt(qa, k, qw, k, &c, n, t, n, k, 0)
    var worst = 0.0
    for i in 0..<t {
        for j in 0..<n {
            var s = 0.0
            for x in 0..<k { s += f(qa[i * k + x]) * f(qw[j * k + x]) }
            worst = max(worst, abs(s - Double(c[i * n + j])))
        }
    }
    #expect(worst < 1e-3 * Double(k))
    // accumulate = 1 adds to what is there.
    var twice = c
    tessera_bf16_gemm_nt(qa, k, qw, k, &twice, n, t, n, k, 1)
    #expect(zip(twice, c).allSatisfy { abs($0 - 2 * $1) <= 1e-4 * max(1, abs($1)) })
}

@Test func bf16RoundingIsNearestEven() {
    var out = [UInt16](repeating: 0, count: 3)
    // 1 + 2^-8 is halfway between two BF16 values: rounds to even (1.0); 1 + 3*2^-9 rounds up.
    tessera_f32_to_bf16([1.0, 1.0 + 1.0 / 256, 1.0 + 3.0 / 512], &out, 3)
    #expect(out[0] == 0x3F80)
    #expect(out[1] == 0x3F80)
    #expect(out[2] == 0x3F81)
}
