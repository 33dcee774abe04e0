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

    /// Reads the central directory of the archive occupying `slice` of its file.
    public init(_ slice: FileSlice, in cache: MappingCache) throws(TesseraError) {
        let file = try cache.file(slice.path)
        let bytes = try file.bytes(offset: slice.offset, count: slice.count)
        do {
            entries = try Self.parse(bytes, base: slice.offset, path: slice.path)
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

    private static func parse(_ b: UnsafeRawBufferPointer, base: Int, path: String) throws(TesseraError) -> [ZipEntry] {
        let n = b.count
        guard n >= 22 else { throw corrupt("\(n) bytes is shorter than an end-of-central-directory record") }
        // Find the end-of-central-directory record, scanning back over a possible comment.
        var eocd = -1
        var i = n - 22
        let lowest = max(0, n - 22 - 65_535)
        while i >= lowest {
            if b.le(UInt32.self, at: i) == 0x0605_4b50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw corrupt("no end-of-central-directory record") }
        var count = Int(b.le(UInt16.self, at: eocd + 10))
        var cdSize = Int(b.le(UInt32.self, at: eocd + 12))
        var cdOffset = Int(b.le(UInt32.self, at: eocd + 16))
        // zip64: a locator sits just before the EOCD.
        if eocd >= 20, b.le(UInt32.self, at: eocd - 20) == 0x0706_4b50 {
            let z64 = Int(b.le(UInt64.self, at: eocd - 20 + 8))
            guard z64 >= 0, z64 + 56 <= n, b.le(UInt32.self, at: z64) == 0x0606_4b50 else {
                throw corrupt("zip64 end record out of place")
            }
            count = Int(b.le(UInt64.self, at: z64 + 32))
            cdSize = Int(b.le(UInt64.self, at: z64 + 40))
            cdOffset = Int(b.le(UInt64.self, at: z64 + 48))
        }
        guard cdOffset >= 0, cdSize >= 0, cdOffset <= n, cdSize <= n - cdOffset else {
            throw corrupt("central directory at \(cdOffset)+\(cdSize) outside \(n) bytes")
        }
        var entries: [ZipEntry] = []
        entries.reserveCapacity(count)
        var p = cdOffset
        for _ in 0..<count {
            guard p + 46 <= cdOffset + cdSize, b.le(UInt32.self, at: p) == 0x0201_4b50 else {
                throw corrupt("bad central directory entry at \(p)")
            }
            let method = b.le(UInt16.self, at: p + 10)
            var compSize = Int(b.le(UInt32.self, at: p + 20))
            var size = Int(b.le(UInt32.self, at: p + 24))
            let nameLen = Int(b.le(UInt16.self, at: p + 28))
            let extraLen = Int(b.le(UInt16.self, at: p + 30))
            let commentLen = Int(b.le(UInt16.self, at: p + 32))
            var local = Int(b.le(UInt32.self, at: p + 42))
            guard p + 46 + nameLen + extraLen + commentLen <= n else { throw corrupt("entry name outside the file") }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: b[(p + 46)..<(p + 46 + nameLen)]), as: UTF8.self)
            // zip64 extended information replaces the fields that are 0xFFFFFFFF, in order.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let tag = b.le(UInt16.self, at: e)
                let len = Int(b.le(UInt16.self, at: e + 2))
                if tag == 0x0001 {
                    var q = e + 4
                    if size == 0xFFFF_FFFF, q + 8 <= e + 4 + len { size = Int(b.le(UInt64.self, at: q)); q += 8 }
                    if compSize == 0xFFFF_FFFF, q + 8 <= e + 4 + len { compSize = Int(b.le(UInt64.self, at: q)); q += 8 }
                    if local == 0xFFFF_FFFF, q + 8 <= e + 4 + len { local = Int(b.le(UInt64.self, at: q)); q += 8 }
                }
                e += 4 + len
            }
            guard local >= 0, local + 30 <= n, b.le(UInt32.self, at: local) == 0x0403_4b50 else {
                throw corrupt("local header of '\(name)' missing at \(local)")
            }
            let localName = Int(b.le(UInt16.self, at: local + 26))
            let localExtra = Int(b.le(UInt16.self, at: local + 28))
            let dataStart = local + 30 + localName + localExtra
            guard compSize >= 0, dataStart <= n, compSize <= n - dataStart else {
                throw corrupt("data of '\(name)' (\(compSize) bytes at \(dataStart)) runs past the end (\(n) bytes)")
            }
            entries.append(ZipEntry(name: name, method: method,
                                    data: FileSlice(path: path, offset: base + dataStart, count: compSize),
                                    uncompressedSize: size))
            p += 46 + nameLen + extraLen + commentLen
        }
        return entries
    }
}
