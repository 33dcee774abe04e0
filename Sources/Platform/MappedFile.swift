import CSystemShims
import Glibc
import Synchronization

/// Owner of a read-only memory mapping; unmapped when the owner goes away.
public struct MappedRegion: ~Copyable, @unchecked Sendable {
    /// Start of the mapping; nil for an empty file.
    public let base: UnsafeRawPointer?
    /// Length of the mapping in bytes.
    public let count: Int

    /// Maps the whole file at `path` read-only.
    public init(path: String) throws(TesseraError) {
        let (fd, size) = try ReadOnlyFile.open(path)
        defer { close(fd) }
        try self.init(fd: fd, size: size, path: path)
    }

    /// Maps the first `size` bytes of the open file `fd` (named `path` in errors) read-only.
    init(fd: Int32, size: Int, path: String) throws(TesseraError) {
        if size == 0 {
            base = nil
            count = 0
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw TesseraError.system("cannot map", file: path, errorNumber: errno)
        }
        base = UnsafeRawPointer(p)
        count = size
    }

    /// The mapped bytes.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// The whole pages `range` touches, clipped to the mapping (nil when none).
    private func pages(_ range: Range<Int>) -> (start: UnsafeMutableRawPointer, count: Int)? {
        guard let base, !range.isEmpty else { return nil }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound / page) * page
        let end = min(count, range.upperBound)
        guard end > start else { return nil }
        return (UnsafeMutableRawPointer(mutating: base + start), end - start)
    }

    /// Tells the kernel the pages in `range` may be dropped from this process (they stay in the page cache).
    public func release(_ range: Range<Int>) {
        guard let (start, count) = pages(range) else { return }
        madvise(start, count, MADV_DONTNEED)
    }

    /// True when every page of `range` is in the page cache, so reading it needs no disk access.
    public func isResident(_ range: Range<Int>) -> Bool {
        guard let (start, count) = pages(range) else { return true }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var resident = [UInt8](repeating: 0, count: (count + page - 1) / page)
        guard mincore(start, count, &resident) == 0 else { return false }
        return resident.allSatisfy { $0 & 1 != 0 }
    }

    /// Tells the kernel not to read ahead around faults: for sparse files, whose data is
    /// asked for explicitly, read-ahead would only fill the page cache with holes' zeros.
    public func adviseRandomAccess() {
        guard let base else { return }
        madvise(UnsafeMutableRawPointer(mutating: base), count, MADV_RANDOM)
    }

    /// Asks the kernel to start reading the pages of `range` now (asynchronously).
    public func willNeed(_ range: Range<Int>) {
        guard let (start, count) = pages(range) else { return }
        madvise(start, count, MADV_WILLNEED)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }
}

/// A mapped file shared by readers; the mapping lives as long as this object. It knows
/// where the file has holes, so that readers never fault a hole in.
public final class MappedFile: Sendable {
    /// The path the file was opened at.
    public let path: String
    private let region: MappedRegion
    /// Kept open for hole queries and page-cache advice.
    private let fd: Int32
    private let extentsCache = Mutex<FileExtents?>(nil)

    /// Maps `path` read-only.
    public init(path: String) throws(TesseraError) {
        self.path = path
        let (fd, size) = try ReadOnlyFile.open(path)
        do { region = try MappedRegion(fd: fd, size: size, path: path) } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Where the file holds data (read once, on first use).
    public var extents: FileExtents {
        if let e = extentsCache.withLock({ $0 }) { return e }
        let e = FileExtents(fd: fd, size: count)
        extentsCache.withLock { $0 = e }
        if !e.isDense { region.adviseRandomAccess() }
        return e
    }

    /// The bytes of `range` in pieces that are each all data or all hole: data as views of
    /// the mapping, holes as views of ``ZeroPages`` (never faulted in from the file).
    public func forEachRun<E: Error>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        try forEachRun(range, extents: extents, body)
    }

    /// ``forEachRun(_:_:)`` with the file's ``extents`` already in hand (hot loops).
    public func forEachRun<E: Error>(_ range: Range<Int>, extents: FileExtents,
                                     _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        let all = bytes
        if extents.isDense { return try body(UnsafeRawBufferPointer(rebasing: all[range])) }
        try extents.forEachSegment(in: range) { (r, isData) throws(E) in
            if isData {
                try body(UnsafeRawBufferPointer(rebasing: all[r]))
            } else {
                var at = r.lowerBound
                while at < r.upperBound {
                    let n = min(ZeroPages.size, r.upperBound - at)
                    try body(ZeroPages.run(n))
                    at += n
                }
            }
        }
    }

    /// The whole file.
    public var bytes: UnsafeRawBufferPointer { region.bytes }
    /// File size in bytes.
    public var count: Int { region.count }

    /// The bytes of `slice`, checked against the file's size.
    public func bytes(offset: Int, count length: Int) throws(TesseraError) -> UnsafeRawBufferPointer {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else {
            throw TesseraError(.outOfBounds,
                "byte range \(offset)..<\(offset + length) lies outside the file (\(count) bytes)", file: path)
        }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
    }

    /// Drops the pages of `range` from this process's resident set and from the page cache
    /// (a pass over a model larger than memory does not evict the rest of the machine).
    public func release(_ range: Range<Int>) {
        region.release(range)
        guard !range.isEmpty else { return }
        _ = posix_fadvise(fd, off_t(range.lowerBound), off_t(range.count), POSIX_FADV_DONTNEED)
    }

    /// Starts reading the data pages of `range` ahead of use (holes are not read).
    public func willNeed(_ range: Range<Int>) {
        for r in extents.dataRanges(in: range) { region.willNeed(r) }
    }

    /// True when every page of `range` is in the page cache.
    public func isResident(_ range: Range<Int>) -> Bool { region.isResident(range) }
}

/// Opens each file once and hands out shared mappings; safe to use from several threads.
public final class MappingCache: Sendable {
    private let files = Mutex<[String: MappedFile]>([:])

    public init() {}

    /// The mapping of `path`, opening it on first use.
    public func file(_ path: String) throws(TesseraError) -> MappedFile {
        if let f = files.withLock({ $0[path] }) { return f }
        let f = try MappedFile(path: path)
        return files.withLock { table in
            if let existing = table[path] { return existing }
            table[path] = f
            return f
        }
    }

    /// Drops every mapped page from this process's resident set (the mappings stay valid;
    /// pages come back from the page cache when touched again).
    public func releaseAll() {
        for f in files.withLock({ Array($0.values) }) { f.release(0..<f.count) }
    }

}

/// `O_DIRECT` (0o40000 on Linux x86-64 and arm64; Glibc does not export it to Swift): reads
/// and writes between the disk and aligned buffers, sparing the page-cache copy.
let openDirect: Int32 = 0o40000

/// A file opened for small positioned reads (metadata), closed with its owner. Reading
/// metadata this way keeps it out of the process's mapped, resident pages.
public struct ReadOnlyFile: ~Copyable, Sendable {
    public let path: String
    let fd: Int32
    /// File size in bytes.
    public let size: Int

    public init(path: String) throws(TesseraError) {
        (fd, size) = try Self.open(path)
        self.path = path
    }

    /// A read-only descriptor of `path` (closed on exec) and the file's size.
    static func open(_ path: String, flags: Int32 = 0) throws(TesseraError) -> (Int32, Int) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | flags)
        guard fd >= 0 else { throw TesseraError.system("cannot open", file: path, errorNumber: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let number = errno
            close(fd)
            throw TesseraError.system("cannot stat", file: path, errorNumber: number)
        }
        return (fd, Int(st.st_size))
    }

    /// Refuses a path the user named as a file to read in place when it is not a regular
    /// file (a pipe, device or socket), without opening it: opening a FIFO that has no writer
    /// would wait for one.
    public static func requireRegularFile(_ path: String) throws(TesseraError) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw TesseraError.system("cannot open", file: path, errorNumber: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw TesseraError(.unsupported, "not a regular file: a pipe, device or socket cannot be read in place", file: path)
        }
    }

    /// `count` bytes at `offset`, bounds-checked.
    public func read(_ offset: Int, _ count: Int) throws(TesseraError) -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw TesseraError(.outOfBounds, "byte range \(offset)..<\(offset + count) lies outside the file (\(size) bytes)", file: path)
        }
        return try readBytes(fd, at: offset, count: count, path: path, size: size)
    }

    deinit { close(fd) }
}

/// Fills `buffer` from `offset` of the open file `fd` (named `path` in errors), which held
/// `size` bytes when it was opened: one that ends before the buffer is full has changed since.
func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String, size: Int) throws(TesseraError) {
    var done = 0
    while done < buffer.count {
        let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
        if n < 0, errno == EINTR { continue }
        guard n >= 0 else { throw .system("cannot read at byte \(offset + done)", file: path, errorNumber: errno) }
        guard n > 0 else {
            throw TesseraError(.inconsistent, "ends at byte \(offset + done), but held \(size) bytes when it was opened: "
                               + "it changed while it was read", file: path)
        }
        done += n
    }
}

/// `count` bytes at `offset` of the open file `fd`, read as ``readFully(_:into:at:path:size:)`` reads.
func readBytes(_ fd: Int32, at offset: Int, count: Int, path: String, size: Int) throws(TesseraError) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count), failure: TesseraError?
    out.withUnsafeMutableBytes { buffer in
        do throws(TesseraError) { try readFully(fd, into: buffer, at: offset, path: path, size: size) } catch { failure = error }
    }
    if let failure { throw failure }
    return out
}

/// Process-wide limits.
public enum ProcessLimits {
    /// How many files this process may have open (the soft `ulimit -n`; 1024 when unknown).
    public static var openFiles: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 1024 }
        return Int(clamping: limit.rlim_cur)
    }
}

/// Process-wide memory settings.
public enum ProcessMemory {
    /// Serve large allocations from the heap and keep freed memory for reuse (glibc): the
    /// engine allocates and frees activation buffers of tens of MB for every layer, which as
    /// separate mmaps would be page-faulted in again each time (a quarter of a forward pass).
    public static func keepLargeAllocationsInHeap() { tessera_keep_large_allocations_in_heap() }
}
