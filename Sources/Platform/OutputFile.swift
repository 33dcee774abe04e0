import CZlib
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

/// A file being written, owned: closed when the owner goes away.
public struct OutputFile: ~Copyable {
    public let path: String
    private let fd: Int32
    /// Bytes written so far (the append position).
    public private(set) var position: Int = 0

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

    /// Writes `bytes` at `offset` without moving the append position.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(TesseraError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw TesseraError(.io, "write at \(offset + done) failed: \(String(cString: strerror(errno)))", file: path)
            }
            done += n
        }
    }

    /// Appends `bytes`.
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw TesseraError(.io, "write failed after \(position + done) bytes: \(String(cString: strerror(errno)))", file: path)
            }
            done += n
        }
        position += bytes.count
    }

    /// Appends `bytes`.
    public mutating func write(_ bytes: [UInt8]) throws(TesseraError) {
        try withBytes(bytes) { (b) throws(TesseraError) in try write(b) }
    }

    /// Overwrites bytes at `offset` (already written) without moving the append position.
    public func patch(_ bytes: [UInt8], at offset: Int) throws(TesseraError) {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n == bytes.count else {
            throw TesseraError(.io, "write at \(offset) failed: \(String(cString: strerror(errno)))", file: path)
        }
    }

    /// Flushes the data to the disk.
    public func sync() throws(TesseraError) {
        guard fsync(fd) == 0 else { throw TesseraError(.io, "fsync failed: \(String(cString: strerror(errno)))", file: path) }
    }

    deinit { close(fd) }
}

/// Running CRC-32 (the zip checksum) over zlib.
public struct CRC32: Sendable {
    public private(set) var value: UInt32 = 0
    public init() {}
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, Int(UInt32.max >> 1))
            value = UInt32(crc32(uLong(value), base.assumingMemoryBound(to: Bytef.self) + offset, uInt(n)))
            offset += n
        }
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

    /// Moves the finished output into place (replacing an old one when forced).
    public func commit() throws(TesseraError) {
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
