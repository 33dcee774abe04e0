import Platform

/// One record of a zip archive, located in the file that holds the archive.
public struct ZipEntry: Sendable, Hashable {
    /// Name as stored in the central directory.
    public var name: String
    /// Compression method (0 = STORED).
    public var method: UInt16
    /// Where the entry's data lies in the file (absolute offset, stored size).
    public var data: FileSlice
    /// Size once uncompressed.
    public var uncompressedSize: Int
}

/// The central directory of a zip archive found inside a byte range of a file
/// (a whole `.ckpt` file, a tar member, or one item of a `.distcp` file).
///
/// Handles zip64 and the 64-byte-aligned STORED records `torch.save` writes;
/// nothing is decompressed or copied.
public struct ZipArchive: Sendable {
    /// Entries in central-directory order.
    public let entries: [ZipEntry]
    private let index: [String: Int]

    /// Reads the central directory of the archive occupying `slice` of its file (with
    /// positioned reads: only the directory and the local headers are read).
    public init(_ slice: FileSlice) throws(TesseraError) {
        let file = try ReadOnlyFile(path: slice.path)
        guard slice.offset >= 0, slice.count >= 0, slice.offset + slice.count <= file.size else {
            throw TesseraError(.outOfBounds, "zip archive at \(slice.offset)+\(slice.count) lies outside the file (\(file.size) bytes)",
                               file: slice.path)
        }
        do {
            entries = try Self.parse(file, base: slice.offset, count: slice.count)
        } catch {
            throw error.inFile(slice.path)
        }
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() { index[e.name] = i }
        self.index = index
    }

    /// The entry named `name`, if present.
    public func entry(_ name: String) -> ZipEntry? { index[name].map { entries[$0] } }

    private static func corrupt(_ what: String) -> TesseraError {
        TesseraError(.corrupt, "not a valid zip archive (\(what)); the file may be truncated or damaged")
    }

    private static func parse(_ file: borrowing ReadOnlyFile, base: Int, count n: Int) throws(TesseraError) -> [ZipEntry] {
        guard n >= 22 else { throw corrupt("\(n) bytes is shorter than an end-of-central-directory record") }
        // The end-of-central-directory record sits in the last 64 KiB + 22 bytes (a comment may follow it);
        // the zip64 locator and record, when present, just before it.
        let tailStart = max(0, n - 22 - 65_535 - 76)
        let tail = try file.read(base + tailStart, n - tailStart)
        var eocd = -1
        var i = tail.count - 22
        while i >= 0 {
            if le32(tail, i) == 0x0605_4b50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw corrupt("no end-of-central-directory record") }
        var count = Int(le16(tail, eocd + 10))
        var cdSize = Int(le32(tail, eocd + 12))
        var cdOffset = Int(le32(tail, eocd + 16))
        if eocd >= 20, le32(tail, eocd - 20) == 0x0706_4b50 {
            let z64 = Int(clamping: le64(tail, eocd - 20 + 8))
            guard z64 <= n - 56 else { throw corrupt("zip64 end record out of place") }
            let rec = try file.read(base + z64, 56)
            guard le32(rec, 0) == 0x0606_4b50 else { throw corrupt("zip64 end record out of place") }
            count = Int(clamping: le64(rec, 32))
            cdSize = Int(clamping: le64(rec, 40))
            cdOffset = Int(clamping: le64(rec, 48))
        }
        guard cdOffset >= 0, cdSize >= 0, cdOffset <= n, cdSize <= n - cdOffset else {
            throw corrupt("central directory at \(cdOffset)+\(cdSize) outside \(n) bytes")
        }
        // The count is untrusted: each entry takes at least 46 bytes of the directory.
        guard count <= cdSize / 46 else { throw corrupt("\(count) entries cannot fit a \(cdSize)-byte central directory") }
        let cd = try file.read(base + cdOffset, cdSize)
        var entries: [ZipEntry] = []
        entries.reserveCapacity(count)
        var p = 0
        for _ in 0..<count {
            guard p + 46 <= cd.count, le32(cd, p) == 0x0201_4b50 else {
                throw corrupt("bad central directory entry at \(cdOffset + p)")
            }
            let method = le16(cd, p + 10)
            var compSize = Int(le32(cd, p + 20))
            var size = Int(le32(cd, p + 24))
            let nameLen = Int(le16(cd, p + 28))
            let extraLen = Int(le16(cd, p + 30))
            let commentLen = Int(le16(cd, p + 32))
            var local = Int(le32(cd, p + 42))
            guard p + 46 + nameLen + extraLen + commentLen <= cd.count else { throw corrupt("entry name outside the directory") }
            let name = String(decoding: cd[(p + 46)..<(p + 46 + nameLen)], as: UTF8.self)
            // zip64 extended information replaces the fields that are 0xFFFFFFFF, in order.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let tag = le16(cd, e)
                let len = Int(le16(cd, e + 2))
                if tag == 0x0001 {
                    var q = e + 4
                    if size == 0xFFFF_FFFF, q + 8 <= e + 4 + len { size = Int(clamping: le64(cd, q)); q += 8 }
                    if compSize == 0xFFFF_FFFF, q + 8 <= e + 4 + len { compSize = Int(clamping: le64(cd, q)); q += 8 }
                    if local == 0xFFFF_FFFF, q + 8 <= e + 4 + len { local = Int(clamping: le64(cd, q)); q += 8 }
                }
                e += 4 + len
            }
            guard local >= 0, local <= n - 30 else { throw corrupt("local header of '\(name)' missing at \(local)") }
            let header = try file.read(base + local, 30)
            guard le32(header, 0) == 0x0403_4b50 else { throw corrupt("local header of '\(name)' missing at \(local)") }
            let dataStart = local + 30 + Int(le16(header, 26)) + Int(le16(header, 28))
            guard compSize >= 0, dataStart <= n, compSize <= n - dataStart else {
                throw corrupt("data of '\(name)' (\(compSize) bytes at \(dataStart)) runs past the end (\(n) bytes)")
            }
            entries.append(ZipEntry(name: name, method: method,
                                    data: FileSlice(path: file.path, offset: base + dataStart, count: compSize),
                                    uncompressedSize: size))
            p += 46 + nameLen + extraLen + commentLen
        }
        return entries
    }
}

private func le16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
private func le32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(le16(b, i)) | UInt32(le16(b, i + 2)) << 16 }
private func le64(_ b: [UInt8], _ i: Int) -> UInt64 { UInt64(le32(b, i)) | UInt64(le32(b, i + 4)) << 32 }
