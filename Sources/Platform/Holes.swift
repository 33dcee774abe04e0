import CISAL
import Glibc

/// A large read-only mapping of zeros that costs no memory (every page is the kernel's
/// zero page). Byte runs that lie in a hole of a sparse file are handed out as views of
/// it, so that readers need not fault the hole in and writers can tell, by address alone,
/// that a run is zeros and leave a hole in their output too.
public enum ZeroPages {
    /// Bytes available in one view.
    public static let size = 1 << 30
    nonisolated(unsafe) private static let base: UnsafeRawPointer = {
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("cannot reserve \(size) bytes of address space for zero pages") }
        return UnsafeRawPointer(p)
    }()

    /// `count` zero bytes (at most ``size``).
    public static func run(_ count: Int) -> UnsafeRawBufferPointer {
        precondition(count >= 0 && count <= size, "ZeroPages: \(count) bytes asked for, \(size) available")
        return UnsafeRawBufferPointer(start: base, count: count)
    }

    /// True when `bytes` is a view handed out by ``run(_:)`` (non-empty).
    public static func contains(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let p = bytes.baseAddress, bytes.count > 0 else { return false }
        return p >= base && p + bytes.count <= base + size
    }

    /// True when every byte of `bytes` is zero (a view of the zero pages is known to be).
    public static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let p = bytes.baseAddress, bytes.count > 0 else { return true }
        if contains(bytes) { return true }
        return isal_zero_detect(UnsafeMutableRawPointer(mutating: p), bytes.count) == 0
    }
}

/// `SEEK_DATA` and `SEEK_HOLE` (Linux; Glibc exports them only under _GNU_SOURCE).
private let seekData: Int32 = 3
private let seekHole: Int32 = 4

/// Where a file holds data and where it has holes (`SEEK_DATA`/`SEEK_HOLE`), as sorted,
/// disjoint byte ranges of data. A file system without hole reporting gives one range.
public struct FileExtents: Sendable {
    /// The data ranges, in order.
    public let data: [Range<Int>]
    /// The file's size.
    public let size: Int

    /// Reads the extents of the open file `fd` of `size` bytes.
    init(fd: Int32, size: Int) {
        self.size = size
        var out: [Range<Int>] = []
        var at = 0
        while at < size {
            let d = lseek(fd, off_t(at), seekData)
            if d < 0 {
                // ENXIO: no data after `at`; anything else: holes are not reported here.
                if errno != ENXIO { out = [0..<size] }
                break
            }
            var h = Int(lseek(fd, d, seekHole))
            if h < 0 || h > size { h = size }
            guard h > Int(d) else { break }
            out.append(Int(d)..<h)
            at = h
        }
        data = out
    }

    /// Extents of a file with no holes.
    public init(dense size: Int) {
        self.size = size
        data = size > 0 ? [0..<size] : []
    }

    /// True when the whole file is data.
    public var isDense: Bool { data.count == 1 && data[0] == 0..<size || size == 0 }

    /// Bytes the data ranges hold.
    public var dataBytes: Int { data.reduce(0) { $0 + $1.count } }

    /// Index of the first data range that ends after `offset`.
    private func first(after offset: Int) -> Int {
        var lo = 0, hi = data.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if data[mid].upperBound <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The data ranges inside `range`, clipped to it.
    public func dataRanges(in range: Range<Int>) -> [Range<Int>] {
        if isDense { return range.isEmpty ? [] : [range.clamped(to: 0..<size)] }
        var out: [Range<Int>] = []
        var i = first(after: range.lowerBound)
        while i < data.count, data[i].lowerBound < range.upperBound {
            let r = data[i].clamped(to: range)
            if !r.isEmpty { out.append(r) }
            i += 1
        }
        return out
    }

    /// True when no byte of `range` is data.
    public func isHole(_ range: Range<Int>) -> Bool {
        if range.isEmpty { return false }
        if isDense { return false }
        let i = first(after: range.lowerBound)
        return i == data.count || data[i].lowerBound >= range.upperBound
    }

    /// Calls `body` with consecutive pieces of `range` in order, each all data or all hole.
    public func forEachSegment<E: Error>(in range: Range<Int>, _ body: (Range<Int>, _ isData: Bool) throws(E) -> Void) throws(E) {
        guard !range.isEmpty else { return }
        if isDense { try body(range, true); return }
        var at = range.lowerBound
        var i = first(after: at)
        while at < range.upperBound {
            if i < data.count, data[i].lowerBound <= at {
                let end = min(data[i].upperBound, range.upperBound)
                try body(at..<end, true)
                at = end
                i += 1
            } else {
                let end = min(i < data.count ? data[i].lowerBound : range.upperBound, range.upperBound)
                try body(at..<end, false)
                at = end
            }
        }
    }
}

