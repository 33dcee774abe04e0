import Synchronization

/// A byte range inside a file on disk: the unit every reader points into.
public struct FileSlice: Sendable, Hashable, Codable {
    public var path: String
    public var offset: Int
    public var count: Int

    public init(path: String, offset: Int, count: Int) {
        self.path = path
        self.offset = offset
        self.count = count
    }

    /// The sub-range `[from, from + count)` of this slice, bounds-checked.
    public func subslice(from: Int, count n: Int) throws(TesseraError) -> FileSlice {
        guard from >= 0, n >= 0, from <= count, n <= count - from else {
            throw TesseraError(.outOfBounds,
                "range \(from)..<\(from + n) lies outside an entry of \(count) bytes at offset \(offset)", file: path)
        }
        return FileSlice(path: path, offset: offset + from, count: n)
    }
}

/// Little-endian reads from unaligned raw memory.
extension UnsafeRawBufferPointer {
    @inlinable public func le<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// `bytes.withUnsafeBytes` for a body that throws `TesseraError`, keeping the error typed.
public func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(TesseraError) -> R) throws(TesseraError) -> R {
    let result: Result<R, TesseraError> = bytes.withUnsafeBytes { b in
        do throws(TesseraError) { return .success(try body(b)) } catch { return .failure(error) }
    }
    return try result.get()
}

/// Hands raw buffers to worker threads that touch disjoint parts of them.
public struct UncheckedSendable<T>: @unchecked Sendable {
    public var value: T
    public init(_ value: T) { self.value = value }
}

/// Reusable page-aligned buffers, so hot loops neither allocate nor first-touch memory
/// per chunk (and glibc's heap does not grow behind our back).
public enum BufferPool {
    private static let free = Mutex<[Int: [UncheckedSendable<UnsafeMutableRawBufferPointer>]]>([:])

    /// A buffer of exactly `count` bytes.
    public static func take(_ count: Int) -> UnsafeMutableRawBufferPointer {
        free.withLock { $0[count]?.popLast()?.value } ?? .allocate(byteCount: max(count, 1), alignment: 4096)
    }

    /// Returns a buffer obtained from ``take(_:)``; a few of each size are kept.
    public static func give(_ b: UnsafeMutableRawBufferPointer) {
        let keep = free.withLock { table -> Bool in
            // A buffer given twice would later have two owners writing into it.
            precondition(!table[b.count, default: []].contains { $0.value.baseAddress == b.baseAddress },
                         "BufferPool: a buffer was given back twice")
            guard table[b.count, default: []].count < 16 else { return false }
            table[b.count, default: []].append(UncheckedSendable(b))
            return true
        }
        if !keep { b.deallocate() }
    }
}
