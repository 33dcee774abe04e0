import CKernels
import Platform
import Foundation
import Synchronization

/// The numeric kernels of one forward pass over FP32 activations, on one kernel path and a
/// number of worker threads. Work is split over the threads by rows or output columns only,
/// never inside a sum, so the thread count never changes a result.
public struct Kernels: Sendable {
    /// The instruction-set class every kernel call runs on.
    public let path: KernelPath
    /// Worker threads (at least 1).
    public let threads: Int

    /// All cores, the number of worker threads by default.
    public static var cores: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    public init(path: KernelPath, threads: Int = Kernels.cores) {
        self.path = path
        self.threads = max(1, threads)
    }

    var isa: Int32 { path.isa }

    /// The kernels a command runs on: the path `TESSERA_ISA` names (else the best this CPU
    /// supports; one it lacks is refused) and `threads` workers (nil: every core; at least 1).
    public static func configured(threads: Int?) throws(TesseraError) -> Kernels {
        if let threads, threads < 1 { throw TesseraError(.invalidArgument, "--threads takes a positive number, not \(threads)") }
        return Kernels(path: try KernelPath.fromEnvironment(), threads: threads ?? cores)
    }

    /// "CPU model, kernel path P, N threads": what benchmarks and --timing print.
    public var description: String { "\(KernelPath.cpuModel), kernel path \(path.rawValue), \(threads) threads" }

    /// Runs `body(start, end)` over `count` items split into `piecesPerWorker` contiguous pieces
    /// per worker (boundaries on multiples of `granule`; no call when `count` is 0), each worker
    /// taking the next piece when it is done. With several pieces per worker a core that a shared
    /// host slows down takes fewer, instead of the others waiting for it (the matrix products: with
    /// one piece per worker, one core ran alone for about 6% of a forward pass on a 2-core EPYC;
    /// with 8, 2%; on a Sapphire Rapids class Xeon under KVM one vCPU's AMX ran at a third of the
    /// other's for minutes at a time). Every step but the products takes 4; the products take
    /// shrinking pieces (below).
    func parallel(_ count: Int, granule: Int = 1, piecesPerWorker: Int = 4, _ body: @Sendable (Int, Int) -> Void) {
        let units = (count + granule - 1) / granule
        let workers = min(threads, units)
        guard workers > 1 else { if count > 0 { body(0, count) }; return }
        let pieces = min(units, workers * piecesPerWorker)
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let piece = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard piece < pieces else { return }
                body(min(count, units * piece / pieces * granule), min(count, units * (piece + 1) / pieces * granule))
            }
        }
    }

    /// Runs `body(start, end)` over `count` items in pieces that shrink as the work runs out
    /// (boundaries on multiples of `granule`; no call when `count` is 0): each worker takes
    /// `largest` granules, or a `2 x workers`-th of what is left when that is less, down to one
    /// granule; one worker takes everything in one call. Large first pieces keep what a call
    /// reuses (the matrix products: a block of activations in L2 passes over every panel of its
    /// piece), and the small last ones let a core that a shared host slows down finish no later
    /// than the others. Measured on a Sapphire
    /// Rapids class Xeon (2 vCPUs, amx, 4 x 512 tokens, hidden 2048), against 32 pieces per worker
    /// (one 64-column panel each, reading the activations again for every panel): forward passes
    /// 1.21x as fast (median of 6 paired runs; avx2 1.04x, avx512bf16 1.04x).
    func parallel(_ count: Int, granule: Int, largest: Int, _ body: @Sendable (Int, Int) -> Void) {
        let units = (count + granule - 1) / granule
        let workers = min(threads, units)
        guard workers > 1 else { if count > 0 { body(0, count) }; return }
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            var start = next.load(ordering: .relaxed)
            while start < units {
                let take = max(1, min(largest, (units - start) / (2 * workers)))
                let (taken, seen) = next.compareExchange(expected: start, desired: start + take, ordering: .relaxed)
                if taken { body(start * granule, min(count, (start + take) * granule)) }
                start = taken ? next.load(ordering: .relaxed) : seen
            }
        }
    }

    /// Rounds every value to the nearest BF16 (ties to even), as BF16 storage would, over the cores.
    func roundToBF16(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        let x = UncheckedSendable(x), isa = isa
        parallel(n, granule: 1 << 14) { lo, hi in tessera_round_bf16(isa, x.value + lo, hi - lo) }
    }

    @inline(__always) static func bf16(_ f: Float) -> Float { f.bfloat16Rounded }

    /// An array of `count` elements left unset, for buffers that are written in full before
    /// being read (zero-filling tens of MB per layer would run on one core).
    static func uninitialized<T: BitwiseCopyable>(_: T.Type, _ count: Int) -> [T] {
        [T](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    /// BF16 bit patterns of `n` floats (nearest, ties to even), over the cores.
    func toBF16(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, _ n: Int) {
        let (x, out) = (UncheckedSendable(x), UncheckedSendable(out))
        parallel(n, granule: 1 << 14) { lo, hi in tessera_f32_to_bf16(isa, x.value + lo, out.value + lo, hi - lo) }
    }

    /// The first `n` BF16 values of `src` widened into `dst`, over the cores.
    func widen(_ src: UnsafePointer<UInt16>, into dst: UnsafeMutablePointer<Float>, _ n: Int) {
        let (s, d) = (UncheckedSendable(src), UncheckedSendable(dst))
        parallel(n, granule: 1 << 16) { lo, hi in tessera_bf16_to_f32(s.value + lo, d.value + lo, hi - lo) }
    }

    /// `a + b`, rounded to BF16 when `round`.
    func add(_ a: [Float], _ b: [Float], round: Bool) -> [Float] {
        let isa = isa
        return [Float](unsafeUninitializedCapacity: a.count) { out, count in
            a.withUnsafeBufferPointer { ab in
                b.withUnsafeBufferPointer { bb in
                    let (ap, bp, op) = (UncheckedSendable(ab.baseAddress!), UncheckedSendable(bb.baseAddress!), UncheckedSendable(out.baseAddress!))
                    parallel(a.count, granule: 1 << 14) { lo, hi in
                        tessera_add(isa, ap.value + lo, bp.value + lo, op.value + lo, hi - lo, round ? 1 : 0)
                    }
                }
            }
            count = a.count
        }
    }

    /// `y[r] += bias` for every row of `width`.
    func addBias(_ y: UnsafeMutablePointer<Float>, rows: Int, width: Int, _ bias: [Float]) {
        tessera_add_bias(isa, y, rows, width, bias)
    }

    /// LayerNorm (or RMSNorm) over rows of `width`, statistics in FP32, rounded to BF16 when `round`.
    func norm(_ x: [Float], rows: Int, width: Int, gamma: [Float], beta: [Float]?, eps: Float, rms: Bool, round: Bool) -> [Float] {
        [Float](unsafeUninitializedCapacity: x.count) { out, count in
            norm(x, rows: rows, width: width, gamma: gamma, beta: beta, eps: eps, rms: rms, round: round, out: out.baseAddress, bits: nil)
            count = x.count
        }
    }

    /// The same norm as BF16 bits, the input of a BF16 matrix product.
    func normBF16(_ x: [Float], rows: Int, width: Int, gamma: [Float], beta: [Float]?, eps: Float, rms: Bool) -> [UInt16] {
        [UInt16](unsafeUninitializedCapacity: x.count) { out, count in
            norm(x, rows: rows, width: width, gamma: gamma, beta: beta, eps: eps, rms: rms, round: true, out: nil, bits: out.baseAddress)
            count = x.count
        }
    }

    private func norm(_ x: [Float], rows: Int, width: Int, gamma: [Float], beta: [Float]?, eps: Float, rms: Bool, round: Bool,
                      out: UnsafeMutablePointer<Float>?, bits: UnsafeMutablePointer<UInt16>?) {
        let isa = isa
        x.withUnsafeBufferPointer { xb in
            gamma.withUnsafeBufferPointer { gb in
                (beta ?? []).withUnsafeBufferPointer { bb in
                    let (xp, gp, bp) = (UncheckedSendable(xb.baseAddress!), UncheckedSendable(gb.baseAddress!),
                                        UncheckedSendable(beta == nil ? nil : bb.baseAddress))
                    let (op, hp) = (UncheckedSendable(out), UncheckedSendable(bits))
                    parallel(rows, granule: 8) { lo, hi in
                        tessera_norm(isa, xp.value + lo * width, hi - lo, width, gp.value, bp.value, eps, rms ? 1 : 0, round ? 1 : 0,
                                     op.value.map { $0 + lo * width }, hp.value.map { $0 + lo * width })
                    }
                }
            }
        }
    }

    /// The MLP activation of fc1's output rows (`[gate; up]` halves when gated), rounded to BF16 when `round`.
    func activation(_ kind: Int32, _ y: [Float], rows: Int, f: Int, gated: Bool, round: Bool) -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * f) { out, count in
            activation(kind, y, rows: rows, f: f, gated: gated, round: round, out: out.baseAddress, bits: nil)
            count = rows * f
        }
    }

    /// The same activation as BF16 bits, the input of a BF16 matrix product.
    func activationBF16(_ kind: Int32, _ y: [Float], rows: Int, f: Int, gated: Bool) -> [UInt16] {
        [UInt16](unsafeUninitializedCapacity: rows * f) { out, count in
            activation(kind, y, rows: rows, f: f, gated: gated, round: true, out: nil, bits: out.baseAddress)
            count = rows * f
        }
    }

    private func activation(_ kind: Int32, _ y: [Float], rows: Int, f: Int, gated: Bool, round: Bool,
                            out: UnsafeMutablePointer<Float>?, bits: UnsafeMutablePointer<UInt16>?) {
        let isa = isa
        y.withUnsafeBufferPointer { yb in
            let (yp, op, hp) = (UncheckedSendable(yb.baseAddress!), UncheckedSendable(out), UncheckedSendable(bits))
            let width = gated ? 2 * f : f
            parallel(rows, granule: 8) { lo, hi in
                tessera_activation(isa, kind, yp.value + lo * width, hi - lo, f, gated ? 1 : 0, round ? 1 : 0,
                                   op.value.map { $0 + lo * f }, hp.value.map { $0 + lo * f })
            }
        }
    }
}
