import CKernels
import Foundation
import Platform

/// The instruction-set class the engine's kernels run on. Results are bit-identical within one
/// path whatever the batch, the cache or the thread count; they may differ between paths (and
/// precisions), so every output records the path that made it.
public enum KernelPath: String, Sendable, CaseIterable, Codable {
    /// Plain C: other architectures, and a reference on x86.
    case portable
    /// AVX2 + FMA: 8-wide FP32 FMAs, BF16 widened while packing.
    case avx2
    /// AVX-512 F/BW/VL without BF16: 16-wide FP32 FMAs, BF16 widened while packing.
    case avx512
    /// AVX512-BF16: BF16 products with `vdpbf16ps`, FP32 ones with 16-wide FMAs.
    case avx512bf16
    /// AMX (Sapphire Rapids and later): BF16 products as `tdpbf16ps` on 16 x 16 tiles, FP32
    /// ones as on avx512bf16.
    case amx

    /// The path's code in CKernels.
    var isa: Int32 {
        switch self {
        case .portable: Int32(TESSERA_ISA_PORTABLE)
        case .avx2: Int32(TESSERA_ISA_AVX2)
        case .avx512: Int32(TESSERA_ISA_AVX512)
        case .avx512bf16: Int32(TESSERA_ISA_AVX512BF16)
        case .amx: Int32(TESSERA_ISA_AMX)
        }
    }

    /// Whether this CPU executes the path's instructions.
    public var isSupported: Bool { tessera_isa_supported(isa) != 0 }

    /// The fastest path this CPU supports: the default.
    public static var best: KernelPath { allCases.first { $0.isa == tessera_isa_best() } ?? .portable }

    /// Every path this CPU supports, plainest first.
    public static var supported: [KernelPath] { allCases.filter(\.isSupported) }

    /// The path named by `TESSERA_ISA` (the best supported one when unset), refused with a
    /// clear message when unknown or when this CPU lacks its instructions.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(TesseraError) -> KernelPath {
        guard let name = environment["TESSERA_ISA"], !name.isEmpty else { return best }
        return try named(name)
    }

    /// The path called `name`, if this CPU runs it.
    public static func named(_ name: String) throws(TesseraError) -> KernelPath {
        guard let path = KernelPath(rawValue: name.lowercased()) else {
            throw TesseraError(.invalidArgument, "TESSERA_ISA=\(name) is not a kernel path; use one of "
                               + allCases.map(\.rawValue).joined(separator: ", "))
        }
        try path.requireSupported()
        return path
    }

    /// Refuses a path whose instructions this CPU lacks (before any of them could run).
    public func requireSupported() throws(TesseraError) {
        guard isSupported else {
            throw TesseraError(.unsupported, "kernel path \(rawValue) (TESSERA_ISA): this CPU (\(Self.cpuModel)) lacks its instructions; "
                               + "it supports " + Self.supported.map(\.rawValue).joined(separator: ", "))
        }
    }

    /// The CPU's model name.
    public static let cpuModel: String = {
        var buffer = [CChar](repeating: 0, count: 128)
        tessera_cpu_model(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()
}
