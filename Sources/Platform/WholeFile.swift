import Foundation
import Glibc

/// Small inputs read whole: token sequence files (`forward --input`, one batch) and prompt files;
/// conversation files and shard outputs go through ``InputFile`` instead.
public enum WholeFile {
    /// The bytes of `path`, a regular file or a pipe (`--input <(zcat conversations.jsonl.gz)`,
    /// read to its end). Failures name the file and the system's reason, a missing file with
    /// code `missing`; a folder is refused, and so is an input larger than half the machine's
    /// memory (a regular file before anything is allocated for it).
    public static func read(_ path: String) throws(TesseraError) -> [UInt8] {
        let (fd, st) = try open(path)
        defer { close(fd) }
        return try readAll(fd, path: path, isRegular: st.st_mode & S_IFMT == S_IFREG, size: Int(st.st_size))
    }

    /// A read-only descriptor of `path` and its status; a missing file is code `missing`, a
    /// folder is refused.
    static func open(_ path: String) throws(TesseraError) -> (Int32, stat) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let number = errno
            if number == ENOENT { throw TesseraError(.missing, "no such file", file: path, errorNumber: number) }
            throw .system("cannot open", file: path, errorNumber: number)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let number = errno
            close(fd)
            throw .system("cannot stat", file: path, errorNumber: number)
        }
        if st.st_mode & S_IFMT == S_IFDIR {
            close(fd)
            throw .system("cannot read", file: path, errorNumber: EISDIR)
        }
        return (fd, st)
    }

    /// The most bytes held in memory for one input: half the machine's memory.
    static var limit: Int { Int(clamping: ProcessInfo.processInfo.physicalMemory / 2) }

    /// The error for an input of `bytes` that is more than ``limit`` to hold.
    static func tooLarge(_ bytes: Int, _ what: String, file: String) -> TesseraError {
        TesseraError(.outOfMemory, String(format: "\(what): %.1f GiB, more than half of this machine's %.1f GiB of memory",
                                          Double(bytes) / Double(1 << 30), Double(limit * 2) / Double(1 << 30)), file: file)
    }

    /// Everything `fd` (named `path`) gives until its end, at most ``limit`` bytes.
    static func readAll(_ fd: Int32, path: String, isRegular: Bool, size: Int) throws(TesseraError) -> [UInt8] {
        let limit = limit
        var out: [UInt8] = []
        if isRegular {
            guard size <= limit else { throw tooLarge(size, "too large to read whole", file: path) }
            out.reserveCapacity(size)
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw .system("cannot read", file: path, errorNumber: errno) }
            if n == 0 { return out }
            guard out.count + n <= limit else { throw tooLarge(out.count + n, "too large to read whole", file: path) }
            out.append(contentsOf: chunk[..<n])
        }
    }
}
