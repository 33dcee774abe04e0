import Foundation
import Glibc
import Synchronization

/// Writes full buffers on a background thread, so filling the next buffer (reading the
/// source) overlaps with the kernel's copy into the page cache.
final class BackgroundWriter: @unchecked Sendable {
    let fd: Int32
    /// The same file opened with O_DIRECT, for whole buffers at aligned offsets (-1 when unavailable).
    let directFD: Int32
    let path: String
    private let queue = DispatchQueue(label: "tessera.output")
    /// Buffers being written, across every output file: bounds memory however many files
    /// are finishing in the background, and keeps several writes in flight for the disk.
    private static let slots = DispatchSemaphore(value: 8)
    private let lock = NSLock()
    /// Buffers shared by every output file, so none is allocated (and first touched) per file.
    private static let pool = Mutex<[UncheckedSendable<UnsafeMutableRawBufferPointer>]>([])
    private var failure: TesseraError?
    /// Set on the queue once `directFD` is closed by a background finish.
    private var directClosed = false

    /// True for a new file (all zeros until written): all-zero blocks are left as holes.
    let sparse: Bool

    init(fd: Int32, path: String, direct: Bool, sparse: Bool) {
        self.fd = fd
        self.path = path
        self.sparse = sparse
        directFD = direct ? open(path, O_WRONLY | O_CLOEXEC | openDirect) : -1
    }

    /// Writes `count` bytes at `offset`, leaving out the stretches that would only hold zeros
    /// when the file is new (it reads as zeros where nothing was written): whole 4 KiB blocks
    /// become holes, and an all-zero part of a block at a buffer's edge is not written either.
    private func write(_ base: UnsafeRawPointer, _ count: Int, at offset: Int, fd: Int32) throws(TesseraError) {
        guard sparse else { return try OutputFile.writeAll(fd, path, base, count, at: offset) }
        let block = 4096
        var runStart: Int? = nil
        var pos = 0
        while pos < count {
            let end = min(count, (offset + pos) / block * block + block - offset)
            let zero = ZeroPages.isZero(UnsafeRawBufferPointer(start: base + pos, count: end - pos))
            if zero {
                if let s = runStart { try OutputFile.writeAll(fd, path, base + s, pos - s, at: offset + s) }
                runStart = nil
            } else if runStart == nil {
                runStart = pos
            }
            pos = end
        }
        if let s = runStart { try OutputFile.writeAll(fd, path, base + s, count - s, at: offset + s) }
    }

    /// A buffer to fill (waits while every buffer is being written).
    func take() -> UnsafeMutableRawBufferPointer {
        Self.slots.wait()
        return Self.pool.withLock { $0.popLast()?.value } ?? .allocate(byteCount: OutputFile.bufferSize, alignment: 4096)
    }

    /// Returns a buffer to the shared pool.
    static func recycle(_ b: UnsafeMutableRawBufferPointer) {
        pool.withLock { $0.append(UncheckedSendable(b)) }
    }

    /// Returns a buffer from ``take()`` that is not going to be written.
    static func giveBack(_ b: UnsafeMutableRawBufferPointer) {
        recycle(b)
        slots.signal()
    }

    /// Queues `count` bytes of `buffer` for writing at file offset `offset`.
    func submit(_ buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: Int) {
        let b = UncheckedSendable(buffer)
        queue.async { [self] in
            if self.error == nil {
                do throws(TesseraError) {
                    let aligned = count % 4096 == 0 && offset % 4096 == 0
                    let base = UnsafeRawPointer(b.value.baseAddress!)
                    if aligned && directFD >= 0 {
                        do throws(TesseraError) {
                            try write(base, count, at: offset, fd: directFD)
                        } catch {
                            // Some filesystems refuse direct I/O; fall back to the page cache.
                            try write(base, count, at: offset, fd: fd)
                        }
                    } else {
                        try write(base, count, at: offset, fd: fd)
                    }
                } catch {
                    lock.lock(); failure = error; lock.unlock()
                }
            }
            Self.recycle(b.value)
            Self.slots.signal()
        }
    }

    var error: TesseraError? { lock.lock(); defer { lock.unlock() }; return failure }

    /// Waits for every queued write; throws the first failure.
    func drain() throws(TesseraError) {
        queue.sync {}
        if let e = error { throw e }
    }

    /// Gives the file its final size (a hole at the end was never written).
    static func setSize(_ fd: Int32, _ path: String, _ size: Int) throws(TesseraError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TesseraError.system("cannot stat", file: path, errorNumber: errno) }
        guard st.st_mode & S_IFMT == S_IFREG, Int(st.st_size) < size else { return }
        guard ftruncate(fd, off_t(size)) == 0 else {
            throw TesseraError.system("cannot extend to \(size) bytes", file: path, errorNumber: errno)
        }
    }

    /// After the queued writes, gives the file its `size`, closes `fd` (and the direct
    /// descriptor) and reports any failure to `closes`, without waiting.
    func finishInBackground(closing fd: Int32, size: Int, into closes: DeferredCloses) {
        closes.group.enter()
        queue.async { [self] in
            if let e = self.error { closes.record(e) }
            do throws(TesseraError) { try Self.setSize(fd, path, size) } catch { closes.record(error) }
            if Glibc.close(fd) != 0 {
                closes.record(TesseraError.system("closing failed", file: path, errorNumber: errno))
            }
            if directFD >= 0 { Glibc.close(directFD) }
            directClosed = true
            closes.group.leave()
        }
    }

    // Queued blocks hold the writer, so it goes away only once they have run.
    deinit {
        if directFD >= 0 && !directClosed { close(directFD) }
    }
}

/// Output files finishing in the background: each one's last writes and close happen while
/// the next file is being filled; ``wait()`` reports the first failure once all are done.
public final class DeferredCloses: Sendable {
    let group = DispatchGroup()
    private let firstError = Mutex<TesseraError?>(nil)

    public init() {}

    func record(_ e: TesseraError) { firstError.withLock { if $0 == nil { $0 = e } } }

    /// Waits for every file handed over; throws the first write or close failure.
    public func wait() throws(TesseraError) {
        group.wait()
        if let e = firstError.withLock({ $0 }) { throw e }
    }
}

/// A file being written, owned: bytes are gathered into large buffers written on a
/// background thread; flushed and closed when the owner goes away (call ``close()`` to
/// see errors).
public struct OutputFile: ~Copyable {
    public let path: String
    private let fd: Int32
    /// Bytes written so far (the append position, buffered bytes included).
    public private(set) var position: Int = 0
    private let writer: BackgroundWriter
    private var buffer: UnsafeMutableRawBufferPointer?
    private var buffered = 0
    /// File offset of the first byte in `buffer`.
    private var bufferStart = 0
    private var closed = false
    /// The background writer owns the descriptor (``close(deferringTo:)``).
    private var handedOff = false
    static let bufferSize = 4 << 20

    /// Creates (truncating) the file at `path`.
    public init(creating path: String) throws(TesseraError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TesseraError.system("cannot create", file: path, errorNumber: errno)
        }
        self.path = path
        self.fd = fd
        writer = BackgroundWriter(fd: fd, path: path, direct: true, sparse: true)
    }

    /// Opens an existing file for writing in place (nothing is truncated).
    public init(updating path: String) throws(TesseraError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw TesseraError.system("cannot open for writing", file: path, errorNumber: errno)
        }
        self.path = path
        self.fd = fd
        writer = BackgroundWriter(fd: fd, path: path, direct: false, sparse: false)
    }

    /// Opens `path` (creating it and its folders) to append after its first `keeping` bytes:
    /// anything past them is cut off first, so a resumed output continues from whole records only.
    public init(appending path: String, keeping: Int) throws(TesseraError) {
        try Folder.createParent(of: path)
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TesseraError.system("cannot open for appending", file: path, errorNumber: errno) }
        guard ftruncate(fd, off_t(keeping)) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw TesseraError(.io, "cannot cut the file back to \(keeping) bytes: \(reason)", file: path)
        }
        self.path = path
        self.fd = fd
        position = keeping
        bufferStart = keeping
        writer = BackgroundWriter(fd: fd, path: path, direct: false, sparse: false)
    }

    static func writeAll(_ fd: Int32, _ path: String, _ base: UnsafeRawPointer, _ count: Int, at offset: Int?) throws(TesseraError) {
        var done = 0
        while done < count {
            let n = offset.map { pwrite(fd, base + done, count - done, off_t($0 + done)) } ?? Glibc.write(fd, base + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw TesseraError.system("write failed", file: path, errorNumber: errno)
            }
            done += n
        }
    }

    /// Hands the gathered bytes to the background writer.
    private mutating func submit() throws(TesseraError) {
        if let e = writer.error { throw e }
        guard let b = buffer else { return }
        buffer = nil
        guard buffered > 0 else { BackgroundWriter.giveBack(b); return }
        writer.submit(b, count: buffered, at: bufferStart)
        bufferStart += buffered
        buffered = 0
    }

    /// Writes out everything gathered so far and waits for it.
    public mutating func flush() throws(TesseraError) {
        try submit()
        try writer.drain()
    }

    /// Appends `count` zero bytes. In a new file, zeros past the next 4 KiB boundary are
    /// not written at all: they stay a hole, which reads as zeros.
    public mutating func writeZeros(_ count: Int) throws(TesseraError) {
        guard count > 0 else { return }
        guard writer.sparse, count >= 64 << 10 else {
            var left = count
            while left > 0 {
                let n = min(left, ZeroPages.size)
                try copy(ZeroPages.run(n))
                left -= n
            }
            return
        }
        // Zeros up to the next block boundary go with the buffered bytes; the rest is a hole.
        let head = min(count, (4096 - position % 4096) % 4096)
        if head > 0 { try copy(ZeroPages.run(head)) }
        try submit()
        position += count - head
        bufferStart = position
    }

    /// Appends `bytes` (a view of ``ZeroPages`` as ``writeZeros(_:)``).
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        if ZeroPages.contains(bytes) { return try writeZeros(bytes.count) }
        try copy(bytes)
    }

    /// Gathers `bytes` into the buffers.
    private mutating func copy(_ bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        guard var src = bytes.baseAddress, bytes.count > 0 else { return }
        position += bytes.count
        var left = bytes.count
        while left > 0 {
            if buffer == nil { buffer = writer.take() }
            // A buffer that starts off a 4 KiB boundary ends at the next boundary short of full
            // size, so the buffers after it are aligned and go to the disk directly (O_DIRECT).
            let capacity = Self.bufferSize - bufferStart % 4096
            let n = min(left, capacity - buffered)
            buffer!.baseAddress!.advanced(by: buffered).copyMemory(from: src, byteCount: n)
            buffered += n
            left -= n
            src += n
            if buffered == capacity { try submit() }
        }
    }

    /// Waits until everything written so far is on the disk (after ``flush()``).
    public func sync() throws(TesseraError) {
        guard fsync(fd) == 0 else {
            throw TesseraError(.io, "syncing failed: \(String(cString: strerror(errno)))", file: path)
        }
    }

    /// Appends `bytes`.
    public mutating func write(_ bytes: [UInt8]) throws(TesseraError) {
        try withBytes(bytes) { (b) throws(TesseraError) in try write(b) }
    }

    /// Writes `bytes` at `offset` without moving the append position.
    public mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(TesseraError) {
        try flush()
        bufferStart = position
        guard let base = bytes.baseAddress else { return }
        try Self.writeAll(fd, path, base, bytes.count, at: offset)
    }

    /// Hands the rest of the file to the background: its last buffers are written and the
    /// file closed while the caller goes on; `closes.wait()` reports any failure.
    public consuming func close(deferringTo closes: DeferredCloses) throws(TesseraError) {
        try submit()
        handedOff = true
        writer.finishInBackground(closing: fd, size: position, into: closes)
    }

    /// Writes out what is gathered and closes the file, reporting any failure (a full disk).
    public consuming func close() throws(TesseraError) {
        defer { closed = true }
        try flush()
        do throws(TesseraError) { try BackgroundWriter.setSize(fd, path, position) } catch {
            Glibc.close(fd)
            throw error
        }
        guard Glibc.close(fd) == 0 else {
            throw TesseraError.system("closing failed", file: path, errorNumber: errno)
        }
    }

    deinit {
        if let b = buffer {
            if !closed, buffered > 0 { writer.submit(b, count: buffered, at: bufferStart) } else { BackgroundWriter.giveBack(b) }
        }
        guard !handedOff else { return }
        try? writer.drain()
        if !closed { Glibc.close(fd) }
    }
}
