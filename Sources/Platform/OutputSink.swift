import Glibc
import Synchronization

/// The one checked path for text and records written to standard output (files are written
/// through ``OutputFile``; scoring's resumable JSONL output is built on it). Every write is checked: a failure (ENOSPC, EIO, EFBIG, ...)
/// throws a ``TesseraError`` naming the destination with its `errno`; a closed pipe on
/// standard output ends the process quietly, killed by SIGPIPE as other Unix tools are.
///
/// Bytes are gathered up to ``bufferLimit`` and written with `write(2)`; ``flush()`` writes
/// what is gathered, ``synchronize()`` also waits for it to reach the disk. Safe to share
/// between threads (writes are serialised).
public final class OutputSink: Sendable {
    /// The process's standard output.
    public static let standardOutput = OutputSink(descriptor: STDOUT_FILENO, name: "standard output", owned: false)
    /// Gathered bytes are written once there are this many.
    public static let bufferLimit = 1 << 20

    /// How the destination is named in errors.
    public let name: String
    private let fd: Int32
    private let owned: Bool
    private let pending = Mutex<[UInt8]>([])

    private init(descriptor: Int32, name: String, owned: Bool) {
        fd = descriptor
        self.name = name
        self.owned = owned
    }

    /// Appends `bytes`.
    public func write(_ bytes: some Collection<UInt8>) throws(TesseraError) {
        try pending.withLock { (buffer) throws(TesseraError) in
            buffer.append(contentsOf: bytes)
            if buffer.count >= Self.bufferLimit { try writeOut(&buffer) }
        }
    }

    /// Appends the UTF-8 of `text`.
    public func write(_ text: String) throws(TesseraError) { try write(text.utf8) }

    /// Appends `text` and a newline.
    public func writeLine(_ text: String) throws(TesseraError) { try write(text + "\n") }

    /// Writes everything gathered so far.
    public func flush() throws(TesseraError) {
        try pending.withLock { (buffer) throws(TesseraError) in try writeOut(&buffer) }
    }

    /// Writes everything gathered and waits until it is on the disk (files; a pipe or a
    /// terminal only flushes).
    public func synchronize() throws(TesseraError) {
        try flush()
        if fdatasync(fd) != 0, errno != EINVAL, errno != EROFS {
            throw .system("syncing failed", file: name, errorNumber: errno)
        }
    }

    /// Flushes and closes a file sink (standard output stays open); reports any failure.
    public func close() throws(TesseraError) {
        try flush()
        guard owned else { return }
        guard Glibc.close(fd) == 0 else { throw .system("closing failed", file: name, errorNumber: errno) }
    }

    /// Writes `bytes` whole and empties it (called holding the lock, so writes keep their
    /// order). On a failure the unwritten bytes are dropped: the error is final.
    private func writeOut(_ bytes: inout [UInt8]) throws(TesseraError) {
        defer { bytes.removeAll(keepingCapacity: true) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EPIPE, !owned { Termination.brokenPipe() }
                throw .system("write failed", file: name, errorNumber: e)
            }
            done += n
        }
    }
}

/// Best-effort messages on standard error: a failure to write them cannot be reported
/// anywhere, so it is ignored (never a crash).
public enum StandardError {
    /// Writes `text` as it is.
    public static func write(_ text: String) {
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(STDERR_FILENO, $0.baseAddress! + done, $0.count - done) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            done += n
        }
    }
}
