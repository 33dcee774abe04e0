import Foundation

/// A file read around the page cache: positioned reads of large runs straight into aligned
/// buffers (O_DIRECT where the file system allows it, plain reads elsewhere). For data read
/// once, this spares the kernel filling and copying out of the page cache, which on a fast
/// disk costs as much CPU as decompressing what was read.
public final class DirectReader: Sendable {
    /// Alignment of buffers, offsets and lengths of direct reads.
    public static let alignment = 4096
    /// The file, for plain reads.
    private let file: ReadOnlyFile
    /// The file opened with O_DIRECT (-1 when unavailable).
    private let directFD: Int32
    public var path: String { file.path }
    /// File size in bytes.
    public var size: Int { file.size }

    public init(path: String) throws(TesseraError) {
        file = try ReadOnlyFile(path: path)
        directFD = (try? ReadOnlyFile.open(path, flags: openDirect).0) ?? -1
    }

    /// Bytes a buffer needs to receive `range` through ``read(_:into:)``.
    public static func span(_ range: Range<Int>) -> Int {
        let lo = range.lowerBound & ~(alignment - 1)
        return (range.upperBound - lo + alignment - 1) & ~(alignment - 1)
    }

    /// Reads the bytes of `range` into `buffer` (aligned to ``alignment`` and at least
    /// ``span(_:)`` long) and returns the offset in `buffer` where `range` begins.
    public func read(_ range: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws(TesseraError) -> Int {
        guard range.lowerBound >= 0, range.upperBound <= size else {
            throw TesseraError(.outOfBounds, "byte range \(range) lies outside the file (\(size) bytes)", file: path)
        }
        let lo = range.lowerBound & ~(Self.alignment - 1), count = Self.span(range)
        precondition(buffer.count >= count && Int(bitPattern: buffer.baseAddress) % Self.alignment == 0,
                     "DirectReader.read: buffer too small or misaligned")
        var done = 0, direct = directFD >= 0
        while lo + done < range.upperBound {
            let n = pread(direct ? directFD : file.fd, buffer.baseAddress! + done, count - done, off_t(lo + done))
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EINVAL, direct {
                direct = false
                continue
            }
            guard n > 0 else {
                let reason = n == 0 ? "the file ends at \(size) bytes" : String(cString: strerror(errno))
                throw TesseraError(.io, "read failed at byte \(lo + done): \(reason)", file: path)
            }
            done += n
            // After a short read the next offset may be unaligned: finish with plain reads.
            if done % Self.alignment != 0 { direct = false }
        }
        return range.lowerBound - lo
    }

    deinit {
        if directFD >= 0 { close(directFD) }
    }
}
