import CSystemShims
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

/// An output folder or file written under a temporary name next to its destination and
/// renamed into place only when complete, so a failed or interrupted run never leaves
/// something that looks valid.
public struct AtomicDestination: Sendable {
    /// The final path.
    public let path: String
    /// Where the output is written until `commit()`.
    public let temporaryPath: String

    /// Prepares `path`, creating its parent folders as `mkdir -p` would; refuses an existing
    /// destination unless `force`.
    public init(_ path: String, force: Bool) throws(TesseraError) {
        var p = path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        var info = stat()
        if stat(p, &info) == 0 {
            guard force else { throw TesseraError(.invalidArgument, "destination exists (use --force to replace it)", file: p) }
            guard info.st_mode & S_IFMT == S_IFREG || info.st_mode & S_IFMT == S_IFDIR else {
                throw TesseraError(.invalidArgument, "will not replace something that is not a file or folder (a device, pipe or socket)", file: p)
            }
        }
        let url = URL(fileURLWithPath: p)
        try Folder.createParent(of: p)
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
            guard rc == 0 else { throw TesseraError.system("syncing the output failed", file: path, errorNumber: errno) }
        }
        if FileManager.default.fileExists(atPath: path) {
            do { try FileManager.default.removeItem(atPath: path) } catch {
                // Foundation's error carries the system's reason as its underlying POSIX error.
                let underlying = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? any Error).map { $0 as NSError }
                let number = underlying?.domain == NSPOSIXErrorDomain ? Int32(underlying!.code) : EIO
                throw TesseraError.system("cannot replace the old destination", file: path, errorNumber: number)
            }
        }
        guard rename(temporaryPath, path) == 0 else {
            throw TesseraError.system("cannot rename \(temporaryPath) into place", file: path, errorNumber: errno)
        }
        PartialOutputs.remove(temporaryPath)
    }

    /// Removes the partial output.
    public func abandon() {
        try? FileManager.default.removeItem(atPath: temporaryPath)
        PartialOutputs.remove(temporaryPath)
    }
}
