import CISAL
import CZlib
import Platform

/// Running CRC-32 (the zip checksum, reflected IEEE polynomial) over ISA-L's
/// carry-less-multiply kernels; runs of zeros (views of ``ZeroPages``) are added in
/// O(log n) with zlib's `crc32_combine`, without reading them.
public struct CRC32: Sendable {
    public private(set) var value: UInt32 = 0
    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if ZeroPages.contains(bytes) { appendZeros(bytes.count); return }
        value = crc32_gzip_refl(value, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    /// CRC-32 of 2^k zero bytes, k = 0..<62 (each the previous one combined with itself).
    private static let zeroPowers: [UInt] = {
        var out: [UInt] = []
        var zero: UInt8 = 0
        var c = crc32(0, &zero, 1)
        for k in 0..<62 {
            out.append(c)
            c = crc32_combine(c, c, 1 << k)
        }
        return out
    }()

    /// Extends the checksum by `count` zero bytes without reading any.
    public mutating func appendZeros(_ count: Int) {
        var rest = count, k = 0
        var c = UInt(value)
        while rest > 0 {
            if rest & 1 != 0 { c = crc32_combine(c, Self.zeroPowers[k], 1 << k) }
            rest >>= 1
            k += 1
        }
        value = UInt32(c)
    }
}
