import CISAL
import CShims
import Foundation
import Glibc
import Synchronization

/// Outputs being written right now, so an interrupted run can remove them.
public enum PartialOutputs {
    private static let paths = Mutex<Set<String>>([])

    static func add(_ path: String) { _ = paths.withLock { $0.insert(path) } }
    static func remove(_ path: String) { _ = paths.withLock { $0.remove(path) } }

    /// Deletes every partial output (called when the process is interrupted).
    public static func removeAll() {
        for p in paths.withLock({ Array($0) }) {
            try? FileManager.default.removeItem(atPath: p)
            try? FileManager.default.removeItem(atPath: p + ".d")
        }
    }
}

/// A file being written, owned: small writes are gathered into large ones; flushed and
/// closed when the owner goes away (call ``close()`` to see errors).
public struct OutputFile: ~Copyable {
    public let path: String
    private let fd: Int32
    /// Bytes written so far (the append position, buffered bytes included).
    public private(set) var position: Int = 0
    private var buffer: UnsafeMutableRawBufferPointer?
    private var buffered = 0
    private var closed = false
    /// Writes at least this large bypass the buffer.
    static let bufferSize = 4 << 20

    /// Creates (truncating) the file at `path`.
    public init(creating path: String) throws(TesseraError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TesseraError(.io, "cannot create: \(String(cString: strerror(errno)))", file: path)
        }
        self.path = path
        self.fd = fd
    }

    /// Opens an existing file for writing in place (nothing is truncated).
    public init(updating path: String) throws(TesseraError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw TesseraError(.io, "cannot open for writing: \(String(cString: strerror(errno)))", file: path)
        }
        self.path = path
        self.fd = fd
    }

    private func writeAll(_ base: UnsafeRawPointer, _ count: Int, at offset: Int?) throws(TesseraError) {
        var done = 0
        while done < count {
            let n = offset.map { pwrite(fd, base + done, count - done, off_t($0 + done)) } ?? Glibc.write(fd, base + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw TesseraError(.io, "write failed: \(String(cString: strerror(errno)))", file: path)
            }
            done += n
        }
    }

    /// Writes out the gathered bytes.
    public mutating func flush() throws(TesseraError) {
        guard buffered > 0, let b = buffer else { return }
        let n = buffered
        buffered = 0
        try writeAll(b.baseAddress!, n, at: nil)
    }

    /// Appends `bytes`.
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        guard let src = bytes.baseAddress, bytes.count > 0 else { return }
        position += bytes.count
        if bytes.count >= Self.bufferSize / 2 {
            try flush()
            try writeAll(src, bytes.count, at: nil)
            return
        }
        if buffer == nil { buffer = .allocate(byteCount: Self.bufferSize, alignment: 4096) }
        if buffered + bytes.count > Self.bufferSize { try flush() }
        buffer!.baseAddress!.advanced(by: buffered).copyMemory(from: src, byteCount: bytes.count)
        buffered += bytes.count
    }

    /// Appends `bytes`.
    public mutating func write(_ bytes: [UInt8]) throws(TesseraError) {
        try withBytes(bytes) { (b) throws(TesseraError) in try write(b) }
    }

    /// Writes `bytes` at `offset` without moving the append position.
    public mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(TesseraError) {
        try flush()
        guard let base = bytes.baseAddress else { return }
        try writeAll(base, bytes.count, at: offset)
    }

    /// Overwrites bytes at `offset` (already written) without moving the append position.
    public mutating func patch(_ bytes: [UInt8], at offset: Int) throws(TesseraError) {
        try withBytes(bytes) { (b) throws(TesseraError) in try write(b, at: offset) }
    }

    /// Flushes the data to the disk.
    public mutating func sync() throws(TesseraError) {
        try flush()
        guard fsync(fd) == 0 else { throw TesseraError(.io, "fsync failed: \(String(cString: strerror(errno)))", file: path) }
    }

    /// Writes out what is gathered and closes the file, reporting any failure (a full disk).
    public consuming func close() throws(TesseraError) {
        defer { closed = true }
        try flush()
        guard Glibc.close(fd) == 0 else {
            throw TesseraError(.io, "closing failed: \(String(cString: strerror(errno)))", file: path)
        }
    }

    deinit {
        if !closed {
            if buffered > 0, let b = buffer { try? writeAll(b.baseAddress!, buffered, at: nil) }
            Glibc.close(fd)
        }
        buffer?.deallocate()
    }
}

/// Running CRC-32 (the zip checksum, reflected IEEE polynomial) over ISA-L's
/// carry-less-multiply kernels.
public struct CRC32: Sendable {
    public private(set) var value: UInt32 = 0
    public init() {}
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        value = crc32_gzip_refl(value, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }
}

/// An output folder or file written under a temporary name next to its destination and
/// renamed into place only when complete, so a failed or interrupted run never leaves
/// something that looks valid.
public struct AtomicDestination: Sendable {
    /// The final path.
    public let path: String
    /// Where the output is written until `commit()`.
    public let temporaryPath: String

    /// Prepares `path`; refuses an existing destination unless `force`.
    public init(_ path: String, force: Bool) throws(TesseraError) {
        var p = path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        if FileManager.default.fileExists(atPath: p), !force {
            throw TesseraError(.invalidArgument, "destination exists (use --force to replace it)", file: p)
        }
        let url = URL(fileURLWithPath: p)
        self.path = p
        self.temporaryPath = url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent).tessera-partial-\(getpid())").path
        try? FileManager.default.removeItem(atPath: temporaryPath)
        PartialOutputs.add(temporaryPath)
    }

    /// Moves the finished output into place (replacing an old one when forced), once its
    /// data is on the disk: a crash never leaves a valid-looking but incomplete output.
    public func commit() throws(TesseraError) {
        let fd = open(temporaryPath, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            let rc = syncfs(fd)
            close(fd)
            guard rc == 0 else { throw TesseraError(.io, "syncing the output failed: \(String(cString: strerror(errno)))", file: path) }
        }
        if FileManager.default.fileExists(atPath: path) {
            do { try FileManager.default.removeItem(atPath: path) } catch {
                throw TesseraError(.io, "cannot replace the old destination: \(error)", file: path)
            }
        }
        guard rename(temporaryPath, path) == 0 else {
            throw TesseraError(.io, "cannot rename \(temporaryPath) into place: \(String(cString: strerror(errno)))", file: path)
        }
        PartialOutputs.remove(temporaryPath)
    }

    /// Removes the partial output.
    public func abandon() {
        try? FileManager.default.removeItem(atPath: temporaryPath)
        PartialOutputs.remove(temporaryPath)
    }
}
