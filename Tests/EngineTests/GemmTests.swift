import CKernels
import Engine
import Platform
import TestSupport
import Testing

/// Deterministic values in (-1, 1).
func testValues(_ count: Int, seed: UInt32) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 1_664_525 &+ 1_013_904_223
        return Float(Int32(bitPattern: state) >> 8) / Float(1 << 23)
    }
}

private func bf16(_ v: UInt16) -> Double { Double(Float(bitPattern: UInt32(v) << 16)) }

/// Shapes that exercise the 6-token tiles' and 64-column panels' edges, odd K, K shorter
/// than and longer than one 128-element slice, several token blocks on every class (2100
/// tokens: more than any class's block, MC_MAX; a block must start on a whole tile), and amx's
/// groups of 32 tokens that keep their accumulators in tiles over a range of slices (whole
/// pairs of 16): with a short last slice and a rest of 6 tokens, and over two ranges.
private let shapes: [(t: Int, n: Int, k: Int)] = [
    (1, 1, 1), (1, 1, 2), (3, 5, 31), (6, 64, 256), (7, 65, 257), (13, 130, 33), (5, 200, 600), (2100, 17, 40),
    (70, 130, 288), (40, 66, 2112),
]

/// The three products: BF16 x BF16, FP32 x FP32 and FP32 x BF16 weights (widened).
enum Product: CaseIterable, Sendable { case bf16, f32, f32WithBF16Weights }

/// The operands of one shape, with padded leading dimensions that must stay untouched.
private struct Operands {
    let t: Int, n: Int, k: Int, lda: Int, ldw: Int, ldc: Int
    var qa: [UInt16], qw: [UInt16], fa: [Float], fw: [Float]
    init(_ shape: (t: Int, n: Int, k: Int)) {
        (t, n, k) = shape
        (lda, ldw, ldc) = (k + 3, k + 1, n + 2)
        qa = [UInt16](repeating: 0, count: t * lda)
        qw = [UInt16](repeating: 0, count: n * ldw)
        tessera_f32_to_bf16(isa(.best), testValues(qa.count, seed: 12345), &qa, qa.count)
        tessera_f32_to_bf16(isa(.best), testValues(qw.count, seed: 777), &qw, qw.count)
        // FP32 operands hold the same (BF16-representable) values, so one reference serves all.
        fa = qa.map { Float(bf16($0)) }
        fw = qw.map { Float(bf16($0)) }
    }

    /// C (+)= A W^T on `path`, rows `rows` of A only (into the same rows of C) and output
    /// columns `cols` only.
    func gemm(_ product: Product, _ path: KernelPath, _ c: inout [Float], rows: Range<Int>? = nil, cols: Range<Int>? = nil,
              accumulate: Bool) -> Int32 {
        let r = rows ?? 0..<t, j = cols ?? 0..<n, acc: Int32 = accumulate ? 1 : 0, isa = EngineTests.isa(path)
        return c.withUnsafeMutableBufferPointer { cb in
            let cp = cb.baseAddress! + r.lowerBound * ldc + j.lowerBound, w = j.lowerBound * ldw
            switch product {
            case .bf16: return tessera_gemm_bf16_nt(isa, Array(qa[(r.lowerBound * lda)...]), lda, Array(qw[w...]), ldw, cp, ldc, r.count, j.count, k, acc)
            case .f32:
                return tessera_gemm_f32_nt(isa, Array(fa[(r.lowerBound * lda)...]), lda, Array(fw[w...]), 0, ldw, cp, ldc, r.count, j.count, k, acc)
            case .f32WithBF16Weights:
                return tessera_gemm_f32_nt(isa, Array(fa[(r.lowerBound * lda)...]), lda, Array(qw[w...]), 1, ldw, cp, ldc, r.count, j.count, k, acc)
            }
        }
    }

    func reference(_ i: Int, _ j: Int) -> Double { (0..<k).reduce(0.0) { $0 + bf16(qa[i * lda + $1]) * bf16(qw[j * ldw + $1]) } }
}

/// Each product on every kernel path this CPU runs, against a double-precision sum of the same
/// values: overwriting and accumulating, padding columns never written.
@Test(arguments: shapes.indices, try requireCases(KernelPath.supported, "kernel paths"))
func gemmMatchesADoublePrecisionSum(shape: Int, path: KernelPath) {
    let o = Operands(shapes[shape])
    for product in Product.allCases {
        let initial = testValues(o.t * o.ldc, seed: 99)
        var c = initial, accumulated = initial
        #expect(o.gemm(product, path, &c, accumulate: false) == 0)
        #expect(o.gemm(product, path, &accumulated, accumulate: true) == 0)
        var worst = 0.0, worstAccumulated = 0.0
        for i in 0..<o.t {
            for j in 0..<o.ldc {
                guard j < o.n else {
                    #expect(c[i * o.ldc + j] == initial[i * o.ldc + j], "\(product) on \(path) wrote padding column \(j)")
                    continue
                }
                let s = o.reference(i, j)
                worst = max(worst, abs(s - Double(c[i * o.ldc + j])))
                worstAccumulated = max(worstAccumulated, abs(s + Double(initial[i * o.ldc + j]) - Double(accumulated[i * o.ldc + j])))
            }
        }
        #expect(worst < 1e-5 * Double(o.k), "\(product) \(shapes[shape]) on \(path)")
        #expect(worstAccumulated < 1e-5 * Double(o.k) + 1e-6, "\(product) \(shapes[shape]) on \(path) accumulating")
    }
}

/// A row's results do not depend on the other rows of the product: every row computed alone,
/// and the rows in two uneven parts, give the bits of the whole product.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func gemmRowsDoNotDependOnTheBatch(path: KernelPath) {
    for shape in [(t: 13, n: 130, k: 300), (t: 800, n: 17, k: 40), (t: 9, n: 70, k: 257)] {
        let o = Operands(shape)
        for product in Product.allCases {
            var whole = [Float](repeating: 0, count: o.t * o.ldc), alone = whole, parts = whole
            _ = o.gemm(product, path, &whole, accumulate: false)
            for i in 0..<o.t { _ = o.gemm(product, path, &alone, rows: i..<(i + 1), accumulate: false) }
            _ = o.gemm(product, path, &parts, rows: 0..<5, accumulate: false)
            _ = o.gemm(product, path, &parts, rows: 5..<o.t, accumulate: false)
            #expect(alone == whole, "\(product) \(shape) on \(path): rows alone differ from the batch")
            #expect(parts == whole, "\(product) \(shape) on \(path): rows in two parts differ from the batch")
        }
    }
}

/// Activations packed in two parts (as two threads pack them) and multiplied by output columns
/// in two parts give the bits of the plain product; rounding in the kernel is rounding the result.
@Test(arguments: shapes.indices, try requireCases(KernelPath.supported, "kernel paths"))
func packedProductsEqualThePlainOne(shape: Int, path: KernelPath) {
    let o = Operands(shapes[shape]), isa = EngineTests.isa(path)
    for product in Product.allCases {
        let bf16: Int32 = product == .bf16 ? 1 : 0, wBF16: Int32 = product == .f32 ? 0 : 1
        var plain = [Float](repeating: 0, count: o.t * o.ldc)
        _ = o.gemm(product, path, &plain, accumulate: false)
        var packed = [UInt8](repeating: 0, count: tessera_gemm_packed_bytes(isa, o.t, o.k, bf16))
        let g = tessera_gemm_pack_granule(), split = min(o.t, (o.t / 2) / g * g), cols = (o.n / 2) / 64 * 64
        for round: Int32 in [0, 1] {
            var c = [Float](repeating: 0, count: o.t * o.ldc)
            func run(_ a: UnsafeRawPointer, _ w: UnsafeRawPointer, _ es: Int) {
                packed.withUnsafeMutableBytes { p in
                    tessera_gemm_pack_activations(isa, a, o.lda, o.t, o.k, bf16, 0, split, p.baseAddress!)
                    tessera_gemm_pack_activations(isa, a, o.lda, o.t, o.k, bf16, split, o.t, p.baseAddress!)
                    c.withUnsafeMutableBufferPointer { cb in
                        _ = tessera_gemm_packed_nt(isa, a, o.lda, bf16, p.baseAddress!, w, wBF16, o.ldw, cb.baseAddress!, o.ldc, o.t, cols, o.k, 0, round)
                        _ = tessera_gemm_packed_nt(isa, a, o.lda, bf16, p.baseAddress!, w + cols * o.ldw * es, wBF16, o.ldw, cb.baseAddress! + cols,
                                                   o.ldc, o.t, o.n - cols, o.k, 0, round)
                    }
                }
            }
            switch product {
            case .bf16: o.qa.withUnsafeBytes { a in o.qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!, 2) } }
            case .f32: o.fa.withUnsafeBytes { a in o.fw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!, 4) } }
            case .f32WithBF16Weights: o.fa.withUnsafeBytes { a in o.qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!, 2) } }
            }
            #expect(c == (round == 1 ? plain.map { $0.bfloat16Rounded } : plain), "\(product) \(shapes[shape]) on \(path), round \(round)")
        }
    }
}

/// A product whose store puts its rounded results through an epilogue gives the bits of the
/// rounded product then the element-wise step: every MLP activation, and the residual add;
/// overwriting and accumulating, odd K too.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func epiloguesInTheStoreAreTheElementwiseSteps(path: KernelPath) {
    let isa = EngineTests.isa(path)
    for shape in [(t: 7, n: 65, k: 257), (t: 13, n: 130, k: 33), (t: 70, n: 200, k: 600)] {
        let o = Operands(shape)
        let residual = testValues(o.t * o.ldc, seed: 31337).map(\.bfloat16Rounded)
        for product in [Product.bf16, .f32WithBF16Weights] {
            let bf16: Int32 = product == .bf16 ? 1 : 0
            var packed = [UInt8](repeating: 0, count: tessera_gemm_packed_bytes(isa, o.t, o.k, bf16))
            // Activation kinds, then -1 for the residual add.
            for kind in [TESSERA_SQUARED_RELU, TESSERA_RELU, TESSERA_GELU, TESSERA_SILU, -1].map(Int32.init) {
                for accumulate: Int32 in [0, 1] {
                    let initial = testValues(o.t * o.ldc, seed: 4242).map(\.bfloat16Rounded)
                    var plain = initial, scratch = initial
                    var expected = [Float](repeating: 0, count: o.t * o.ldc), fused = expected
                    var expectedBits = [UInt16](repeating: 0, count: o.t * o.ldc), fusedBits = expectedBits
                    func run(_ a: UnsafeRawPointer, _ w: UnsafeRawPointer) {
                        packed.withUnsafeMutableBytes { p in
                            tessera_gemm_pack_activations(isa, a, o.lda, o.t, o.k, bf16, 0, o.t, p.baseAddress!)
                            _ = tessera_gemm_packed_nt(isa, a, o.lda, bf16, p.baseAddress!, w, 1, o.ldw, &plain, o.ldc, o.t, o.n, o.k, accumulate, 1)
                            residual.withUnsafeBufferPointer { r in
                                fused.withUnsafeMutableBufferPointer { f in
                                    fusedBits.withUnsafeMutableBufferPointer { fb in
                                        var e = kind < 0
                                            ? tessera_gemm_epilogue(kind: Int32(TESSERA_EPILOGUE_RESIDUAL), activation: 0, bits: nil,
                                                                    residual: r.baseAddress!, sum: f.baseAddress!, ld: o.ldc)
                                            : tessera_gemm_epilogue(kind: Int32(TESSERA_EPILOGUE_ACTIVATION), activation: kind, bits: fb.baseAddress!,
                                                                    residual: nil, sum: nil, ld: o.ldc)
                                        _ = tessera_gemm_packed_epilogue_nt(isa, a, o.lda, bf16, p.baseAddress!, w, 1, o.ldw, &scratch, o.ldc, o.t, o.n,
                                                                            o.k, accumulate, &e)
                                    }
                                }
                            }
                        }
                        for t in 0..<o.t {
                            let at = t * o.ldc
                            if kind < 0 {
                                tessera_add(isa, Array(residual[at...]), Array(plain[at...]), &expected[at], o.n, 1)
                            } else {
                                tessera_activation(isa, kind, Array(plain[at...]), 1, o.n, 0, 1, nil, &expectedBits[at])
                            }
                        }
                    }
                    switch product {
                    case .bf16: o.qa.withUnsafeBytes { a in o.qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
                    default: o.fa.withUnsafeBytes { a in o.qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
                    }
                    let (got, want) = kind < 0 ? (fused, expected) : (fusedBits.map(Float.init), expectedBits.map(Float.init))
                    #expect(want.contains { $0 != 0 }, "the step must give some non-zero results")
                    expectIdentical(got, want, "\(product) \(shape) epilogue \(kind) accumulate \(accumulate) on \(path)")
                }
            }
        }
    }
}

/// Weights packed once (attention's keys and values) give, for any first rows and first inputs
/// of the packing, the bits of the plain product of those rows and inputs (rounded to BF16 when
/// asked: the same results rounded); more inputs than were packed are refused.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func prepackedWeightsGiveThePlainProductsBits(path: KernelPath) {
    let o = Operands((t: 70, n: 130, k: 300)), isa = EngineTests.isa(path)
    let prefixes = [(n: 130, k: 300), (n: 65, k: 257), (n: 64, k: 129), (n: 1, k: 1), (n: 130, k: 128), (n: 17, k: 299)]
    for product in Product.allCases {
        let bf16: Int32 = product == .bf16 ? 1 : 0, wBF16: Int32 = product == .f32 ? 0 : 1
        func run(_ a: UnsafeRawPointer, _ w: UnsafeRawPointer) {
            let packed = UnsafeMutableRawPointer.allocate(byteCount: tessera_gemm_packed_weights_bytes(isa, o.n, o.k, bf16), alignment: 64)
            defer { packed.deallocate() }
            tessera_gemm_pack_weights(isa, w, o.ldw, wBF16, o.n, o.k, bf16, packed)
            for (n, k) in prefixes {
                var plain = [Float](repeating: 0, count: o.t * o.ldc), prepacked = plain
                let status = plain.withUnsafeMutableBufferPointer { c in
                    bf16 == 1 ? tessera_gemm_bf16_nt(isa, a.assumingMemoryBound(to: UInt16.self), o.lda, w.assumingMemoryBound(to: UInt16.self), o.ldw,
                                                     c.baseAddress!, o.ldc, o.t, n, k, 0)
                              : tessera_gemm_f32_nt(isa, a.assumingMemoryBound(to: Float.self), o.lda, w, wBF16, o.ldw, c.baseAddress!, o.ldc, o.t, n, k, 0)
                }
                let prepackedStatus = prepacked.withUnsafeMutableBufferPointer { c in
                    tessera_gemm_prepacked_nt(isa, bf16, a, o.lda, w, wBF16, o.ldw, packed, o.k, c.baseAddress!, o.ldc, o.t, n, k, 0, 0)
                }
                #expect(status == 0 && prepackedStatus == 0)
                expectIdentical(prepacked, plain, "\(product) first \(n) rows and \(k) inputs of a \(o.n)x\(o.k) packing on \(path)")
                // Rounded in the product's store: the plain product's results rounded to BF16.
                var rounded = [Float](repeating: 0, count: o.t * o.ldc)
                let roundedStatus = rounded.withUnsafeMutableBufferPointer { c in
                    tessera_gemm_prepacked_nt(isa, bf16, a, o.lda, w, wBF16, o.ldw, packed, o.k, c.baseAddress!, o.ldc, o.t, n, k, 0, 1)
                }
                #expect(roundedStatus == 0)
                expectIdentical(rounded, plain.map(\.bfloat16Rounded), "\(product) \(n)x\(k) rounded on \(path)")
            }
            var c = [Float](repeating: 0, count: o.t * o.ldc)
            #expect(tessera_gemm_prepacked_nt(isa, bf16, a, o.lda, w, wBF16, o.ldw, packed, o.k, &c, o.ldc, o.t, o.n, o.k + 1, 0, 0) == -1,
                    "more inputs than were packed must be refused")
        }
        switch product {
        case .bf16: o.qa.withUnsafeBytes { a in o.qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
        case .f32: o.fa.withUnsafeBytes { a in o.fw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
        case .f32WithBF16Weights: o.fa.withUnsafeBytes { a in o.qw.withUnsafeBytes { w in run(a.baseAddress!, w.baseAddress!) } }
        }
    }
}

/// A product long and wide enough that amx cuts it into groups of panels, token sub-blocks and
/// ranges of slices (several of each, the last of each partial) gives the bits of every 64-column
/// panel computed alone and of its rows in two parts, on every path.
@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func longProductsDoNotDependOnHowTheyAreCut(path: KernelPath) {
    let o = Operands((t: 200, n: 520, k: 4100))
    for product in Product.allCases {
        var whole = [Float](repeating: 0, count: o.t * o.ldc), panels = whole
        #expect(o.gemm(product, path, &whole, accumulate: false) == 0)
        for j in stride(from: 0, to: o.n, by: 64) {
            let cols = j..<min(j + 64, o.n)
            #expect(o.gemm(product, path, &panels, rows: 0..<7, cols: cols, accumulate: false) == 0)
            #expect(o.gemm(product, path, &panels, rows: 7..<o.t, cols: cols, accumulate: false) == 0)
        }
        expectIdentical(panels, whole, "\(product) \(o.t)x\(o.n)x\(o.k) on \(path): each panel alone against the whole product (row stride \(o.ldc))")
    }
}

/// FP32 products are the same bits on every path with the same slice length (one FMA per input
/// in the same order), and so is the widened BF16 product on those without BF16 pair instructions
/// (vdpbf16ps, tdpbf16ps).
@Test func fp32ProductsAreTheSameOnPathsWithOneSliceLength() throws {
    let o = Operands((t: 13, n: 130, k: 300))
    let slice = { (p: KernelPath) in tessera_gemm_slice_length(isa(p)) }
    for product in Product.allCases {
        let paths = try requireCases(KernelPath.supported.filter { product != .bf16 || ![.avx512bf16, .amx].contains($0) }, "kernel paths")
        let results = paths.map { path in
            var c = [Float](repeating: 0, count: o.t * o.ldc)
            _ = o.gemm(product, path, &c, accumulate: false)
            return c
        }
        for (path, c) in zipSameCount(paths, results) {
            let first = paths.firstIndex { slice($0) == slice(path) }!
            #expect(c == results[first], "\(product) on \(path) differs from \(paths[first]) (same slice length)")
        }
    }
}

/// The default is the fastest path the CPU runs; names are checked; a path the CPU lacks is refused.
@Test func dispatchPicksTheBestSupportedPath() throws {
    let best = KernelPath.best
    #expect(best.isSupported)
    #expect(KernelPath.allCases.filter { $0.isSupported }.last == best)
    #expect(try KernelPath.fromEnvironment([:]) == best)
    #expect(try KernelPath.fromEnvironment(["TESSERA_ISA": "portable"]) == .portable)
    #expect(throws: TesseraError.self) { _ = try KernelPath.fromEnvironment(["TESSERA_ISA": "sse9"]) }
    for path in KernelPath.allCases where !path.isSupported {
        #expect(throws: TesseraError.self) { _ = try KernelPath.named(path.rawValue) }
    }
    #expect(!KernelPath.cpuModel.isEmpty)
}

@Test(arguments: try requireCases(KernelPath.supported, "kernel paths"))
func bf16RoundingIsNearestEven(path: KernelPath) {
    // 1 + 2^-8 is halfway between two BF16 values: rounds to even (1.0); 1 + 3*2^-9 rounds up;
    // a NaN stays a NaN. Twenty values so a vector path and the scalar tail both run.
    let inputs: [Float] = Array(repeating: 1.0 + 1.0 / 256, count: 16) + [1.0, 1.0 + 1.0 / 256, 1.0 + 3.0 / 512, .nan]
    var out = [UInt16](repeating: 0, count: inputs.count)
    tessera_f32_to_bf16(isa(path), inputs, &out, inputs.count)
    #expect(out.count == 20)
    #expect(out[0..<16].allSatisfy { $0 == 0x3F80 }, "\(path)")
    #expect(Array(out[16...18]) == [0x3F80, 0x3F80, 0x3F81], "\(path)")
    #expect(Float(bitPattern: UInt32(out[19]) << 16).isNaN, "\(path)")
}
