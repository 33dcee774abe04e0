import Foundation
import Glibc

/// Small inputs read whole: conversation and token JSONL files, shard outputs, prompts.
public enum WholeFile {
    /// The bytes of `path`, a regular file or a pipe (`--input <(zcat conversations.jsonl.gz)`,
    /// read to its end). Failures name the file and the system's reason, a missing file with
    /// code `missing`; a folder is refused, and so is an input larger than half the machine's
    /// memory (a regular file before anything is allocated for it).
    public static func read(_ path: String) throws(TesseraError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let number = errno
            if number == ENOENT { throw TesseraError(.missing, "no such file", file: path, errorNumber: number) }
            throw .system("cannot open", file: path, errorNumber: number)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system("cannot stat", file: path, errorNumber: errno) }
        if st.st_mode & S_IFMT == S_IFDIR { throw .system("cannot read", file: path, errorNumber: EISDIR) }
        let limit = Int(clamping: ProcessInfo.processInfo.physicalMemory / 2)
        func tooLarge(_ bytes: Int) -> TesseraError {
            TesseraError(.outOfMemory, String(format: "too large to read whole: %.1f GiB, more than half of this machine's %.1f GiB of memory",
                                              Double(bytes) / Double(1 << 30), Double(limit * 2) / Double(1 << 30)), file: path)
        }
        var out: [UInt8] = []
        if st.st_mode & S_IFMT == S_IFREG {
            guard Int(st.st_size) <= limit else { throw tooLarge(Int(st.st_size)) }
            out.reserveCapacity(Int(st.st_size))
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw .system("cannot read", file: path, errorNumber: errno) }
            if n == 0 { return out }
            guard out.count + n <= limit else { throw tooLarge(out.count + n) }
            out.append(contentsOf: chunk[..<n])
        }
    }
}
