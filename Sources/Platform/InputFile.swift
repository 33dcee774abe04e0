import Glibc

/// One non-empty line of a text file: its number in the file (from 1) and its bytes' range,
/// without the newline (an empty line keeps its number but is not a line here).
public struct TextLine: Sendable, Equatable {
    public var number: Int
    public var range: Range<Int>

    public init(number: Int, range: Range<Int>) {
        self.number = number
        self.range = range
    }
}

/// Finds the lines of a text given in consecutive chunks: newline-separated, numbered from 1,
/// a last line without a newline counted, a carriage return before a newline kept in its line.
public struct LineSplitter: Sendable {
    /// Where the line being read began (one past the last newline seen).
    public private(set) var lineStart = 0
    private var number = 0
    private var end = 0

    public init() {}

    /// Takes the next chunk (it begins where the last one ended) and calls `emit` with each
    /// non-empty line that ends in it.
    public mutating func feed<E: Error>(_ chunk: UnsafeRawBufferPointer, _ emit: (TextLine) throws(E) -> Void) throws(E) {
        let offset = end
        end += chunk.count
        guard let base = chunk.baseAddress else { return }
        var start = 0
        while start < chunk.count, let p = memchr(base + start, 0x0A, chunk.count - start) {
            let newline = offset + base.distance(to: UnsafeRawPointer(p))
            number += 1
            if newline > lineStart { try emit(TextLine(number: number, range: lineStart..<newline)) }
            lineStart = newline + 1
            start = lineStart - offset
        }
    }

    /// Ends the text, calling `emit` with a last line that has no newline.
    public mutating func finish<E: Error>(_ emit: (TextLine) throws(E) -> Void) throws(E) {
        guard end > lineStart else { return }
        number += 1
        try emit(TextLine(number: number, range: lineStart..<end))
        lineStart = end
    }

    /// The non-empty lines of `bytes`.
    public static func lines(_ bytes: UnsafeRawBufferPointer) -> [TextLine] {
        var splitter = LineSplitter(), lines: [TextLine] = []
        splitter.feed(bytes) { lines.append($0) }
        splitter.finish { lines.append($0) }
        return lines
    }
}

/// What tells a regular file's content apart when it is opened again: its device and inode,
/// length and modification time.
public struct FileIdentity: Sendable, Equatable {
    public let device: UInt64, inode: UInt64, size: Int, seconds: Int, nanoseconds: Int

    init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int(st.st_size)
        seconds = st.st_mtim.tv_sec
        nanoseconds = st.st_mtim.tv_nsec
    }
}

/// An input read in order and then by position, without being held: a regular file is read
/// in chunks each time it is asked for (only the chunk in hand is in memory), a pipe
/// (`--input <(zcat conversations.jsonl.gz)`) is read whole once, bounded by half the
/// machine's memory. A regular file cut short or rewritten in place after it was opened is an
/// error naming it when it is next read (one replaced by a rename is read on as opened).
public final class InputFile: Sendable {
    /// Names the input in messages.
    public let path: String
    /// Its length in bytes when it was opened (a pipe: all it gave).
    public let count: Int
    /// The open regular file, or -1 when the bytes are held.
    private let fd: Int32
    private let held: [UInt8]
    /// The regular file as it was opened (nil for held bytes).
    public let identity: FileIdentity?
    /// Whether reading looks for changes since the file was opened.
    private let watched: Bool

    /// Opens `path`: a missing file is code `missing`, a folder is refused. Unless
    /// `appendedByCaller` (a file this process appends to, whose first `count` bytes stay as
    /// they were), reading it after its length or modification time changed is an error.
    public init(path: String, appendedByCaller: Bool = false) throws(TesseraError) {
        let (fd, st) = try WholeFile.open(path)
        self.path = path
        watched = !appendedByCaller
        if st.st_mode & S_IFMT == S_IFREG {
            self.fd = fd
            count = Int(st.st_size)
            held = []
            identity = FileIdentity(st)
        } else {
            defer { close(fd) }
            held = try WholeFile.readAll(fd, path: path, isRegular: false, size: 0)
            self.fd = -1
            count = held.count
            identity = nil
        }
    }

    /// Opens `path` again, which must still be the file `identity` describes (an error naming
    /// it otherwise): for inputs too many to keep open at once.
    public convenience init(reopening path: String, as identity: FileIdentity) throws(TesseraError) {
        try self.init(path: path)
        guard self.identity == identity else {
            throw TesseraError(.inconsistent, "is no longer the file read earlier in this run (\(identity.size) bytes then, "
                               + "\(count) now, or another file or modification time): it changed while it was read", file: path)
        }
    }

    /// An input of `bytes`, named `path` in messages.
    public init(path: String, bytes: [UInt8]) {
        self.path = path
        fd = -1
        held = bytes
        count = bytes.count
        identity = nil
        watched = false
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The bytes of `range`, read now.
    public func read(_ range: Range<Int>) throws(TesseraError) -> [UInt8] {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw TesseraError(.outOfBounds, "byte range \(range) lies outside the input (\(count) bytes)", file: path)
        }
        if fd < 0 { return Array(held[range]) }
        let out = try readBytes(fd, at: range.lowerBound, count: range.count, path: path, size: count)
        try checkUnchanged()
        return out
    }

    /// True when `path` names this very file (the same device and inode), e.g. an output
    /// named the same as the input, or reached through a link.
    public func isFile(at path: String) -> Bool {
        var other = stat()
        guard let identity, stat(path, &other) == 0 else { return false }
        let theirs = FileIdentity(other)
        return theirs.device == identity.device && theirs.inode == identity.inode
    }

    /// Throws when the open file's length or modification time is no longer what it was
    /// when it was opened: what was read of it (a line table, a digest) no longer describes it.
    public func checkUnchanged() throws(TesseraError) {
        guard fd >= 0, watched, let identity else { return }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system("cannot stat", file: path, errorNumber: errno) }
        guard FileIdentity(st) == identity else {
            throw TesseraError(.inconsistent, "was \(count) bytes when it was opened and is now \(st.st_size), modified since: "
                               + "it changed while it was read", file: path)
        }
    }

    /// Calls `body` with the bytes of `range` (by default all) in order, in chunks of at most
    /// `chunk` bytes.
    public func forEachChunk(_ range: Range<Int>? = nil, chunk: Int = 1 << 20,
                             _ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        let range = range ?? 0..<count
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw TesseraError(.outOfBounds, "byte range \(range) lies outside the input (\(count) bytes)", file: path)
        }
        if fd < 0 {
            try withBytes(held) { (all) throws(TesseraError) in try body(UnsafeRawBufferPointer(rebasing: all[range])) }
            return
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(chunk, range.count)), alignment: 64)
        defer { buffer.deallocate() }
        var at = range.lowerBound
        while at < range.upperBound {
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(buffer.count, range.upperBound - at)])
            try readFully(fd, into: piece, at: at, path: path, size: count)
            try body(UnsafeRawBufferPointer(piece))
            at += piece.count
        }
        try checkUnchanged()
    }

    /// The non-empty lines of the first `end` bytes (by default all), read through once;
    /// `observe` sees every chunk in order (for a digest of the input).
    public func lines(upTo end: Int? = nil, chunk: Int = 1 << 20,
                      observe: (UnsafeRawBufferPointer) -> Void = { _ in }) throws(TesseraError) -> [TextLine] {
        var splitter = LineSplitter(), lines: [TextLine] = []
        try forEachChunk(0..<(end ?? count), chunk: chunk) { chunk in
            observe(chunk)
            splitter.feed(chunk) { lines.append($0) }
        }
        splitter.finish { lines.append($0) }
        return lines
    }

    /// Calls `body` with each non-empty line of the first `end` bytes (by default all), in
    /// order, with its bytes (without the newline). A line longer than half the machine's
    /// memory is an error.
    public func forEachLine(upTo end: Int? = nil, chunk: Int = 1 << 20,
                            _ body: (TextLine, UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        var splitter = LineSplitter()
        var carry: [UInt8] = [], carryStart = 0, offset = 0
        let limit = WholeFile.limit
        func emit(_ line: TextLine, _ chunk: UnsafeRawBufferPointer, _ chunkStart: Int) throws(TesseraError) {
            if line.range.lowerBound >= chunkStart {
                try body(line, UnsafeRawBufferPointer(rebasing: chunk[(line.range.lowerBound - chunkStart)..<(line.range.upperBound - chunkStart)]))
                return
            }
            // The line began in an earlier chunk: its first bytes are carried.
            var whole = Array(carry[(line.range.lowerBound - carryStart)...])
            whole.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[..<(line.range.upperBound - chunkStart)]))
            try withBytes(whole) { (b) throws(TesseraError) in try body(line, b) }
        }
        try forEachChunk(0..<(end ?? count), chunk: chunk) { (chunk) throws(TesseraError) in
            let chunkStart = offset
            try splitter.feed(chunk) { (line) throws(TesseraError) in try emit(line, chunk, chunkStart) }
            offset += chunk.count
            if splitter.lineStart >= chunkStart {
                carry = Array(UnsafeRawBufferPointer(rebasing: chunk[(splitter.lineStart - chunkStart)...]))
                carryStart = splitter.lineStart
            } else {
                carry.append(contentsOf: chunk)
            }
            guard carry.count <= limit else { throw WholeFile.tooLarge(carry.count, "a line too long to hold", file: path) }
        }
        try withBytes(carry) { (rest) throws(TesseraError) in
            try splitter.finish { (line) throws(TesseraError) in try body(line, UnsafeRawBufferPointer(rebasing: rest[(line.range.lowerBound - carryStart)...])) }
        }
    }

    /// Where the last byte equal to `byte` is, searching back from the end (nil when none).
    public func lastIndex(of byte: UInt8, chunk: Int = 1 << 16) throws(TesseraError) -> Int? {
        var end = count
        while end > 0 {
            let start = max(0, end - chunk)
            let bytes = try read(start..<end)
            if let i = bytes.lastIndex(of: byte) { return start + i }
            end = start
        }
        return nil
    }
}
