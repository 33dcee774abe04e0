import Foundation
import Platform

/// The files of a checkpoint, wherever they live: a folder on disk or the members of a
/// `.nemo` tar read in place. Paths are relative, `/`-separated, without a leading `./`.
public protocol Container: Sendable {
    /// What to call the container in messages.
    var displayPath: String { get }
    /// True when `path` is a regular file.
    func isFile(_ path: String) -> Bool
    /// True when `path` is a folder (the root is "").
    func isDirectory(_ path: String) -> Bool
    /// Names directly inside the folder `path`, sorted.
    func children(_ path: String) -> [String]
    /// Where the bytes of the file `path` lie.
    func slice(_ path: String) throws(TesseraError) -> FileSlice
}

extension Container {
    /// Reads a small file whole.
    public func read(_ path: String) throws(TesseraError) -> [UInt8] {
        let s = try slice(path)
        return try ReadOnlyFile(path: s.path).read(s.offset, s.count)
    }

    /// `a/b` joined, with "" as the root.
    public func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : a + "/" + b }

    /// A human path for `path` inside this container.
    public func describe(_ path: String) -> String {
        path.isEmpty ? displayPath : displayPath + "/" + path
    }
}

/// A checkpoint folder on disk.
public struct DirectoryContainer: Container {
    public let root: String
    public var displayPath: String { root }

    public init(root: String) {
        var r = root
        while r.count > 1, r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    private func full(_ path: String) -> String { path.isEmpty ? root : root + "/" + path }

    public func isFile(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: full(path), isDirectory: &dir) && !dir.boolValue
    }

    public func isDirectory(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: full(path), isDirectory: &dir) && dir.boolValue
    }

    public func children(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: full(path))) ?? []).sorted()
    }

    public func slice(_ path: String) throws(TesseraError) -> FileSlice {
        let p = full(path)
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: p),
              let size = (attrs[.size] as? NSNumber)?.intValue else {
            throw TesseraError(.missing, "file not found", file: p)
        }
        return FileSlice(path: p, offset: 0, count: size)
    }
}

/// The members of an uncompressed tar (a `.nemo` archive), located without extracting.
public struct TarContainer: Container {
    public let path: String
    private let files: [String: FileSlice]
    private let directories: [String: [String]]
    public var displayPath: String { path }

    /// Indexes the tar at `path` (ustar, GNU long names and pax path records), reading
    /// only the member headers.
    public init(path: String) throws(TesseraError) {
        self.path = path
        let file = try ReadOnlyFile(path: path)
        if file.size >= 2 {
            let magic = try file.read(0, 2)
            if magic == [0x1F, 0x8B] {
                throw TesseraError(.unsupported,
                    "gzip-compressed .nemo archives (NeMo < 1.7) cannot be read in place; unpack it with 'tar xzf' and pass the folder",
                    file: path)
            }
        }
        var index = TarIndex()
        var pos = 0
        var longName: String?
        while pos + 512 <= file.size {
            let h = try file.read(pos, 512)
            if h.allSatisfy({ $0 == 0 }) { break }   // end-of-archive block
            let header = try TarHeader(h, at: pos, archiveSize: file.size, archive: path)
            let dataStart = pos + 512, size = header.size
            switch header.type {
            case UInt8(ascii: "L"):
                longName = String(decoding: try file.read(dataStart, size).prefix(while: { $0 != 0 }), as: UTF8.self)
            case UInt8(ascii: "x"):
                let text = String(decoding: try file.read(dataStart, size), as: UTF8.self)
                for rec in text.split(separator: "\n") {
                    if let r = rec.range(of: " path=") { longName = String(rec[r.upperBound...]) }
                }
            case UInt8(ascii: "g"):
                break
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                let n = TarIndex.normalize(longName ?? header.name)
                longName = nil
                if n.split(separator: "/").contains(where: { $0 == ".." }) || n.hasPrefix("/") { break }
                index.files[n] = FileSlice(path: path, offset: dataStart, count: size)
                index.register(n, isDir: false)
            case UInt8(ascii: "5"):
                let n = TarIndex.normalize(longName ?? header.name)
                longName = nil
                if !n.isEmpty { index.register(n, isDir: true) }
            default:
                longName = nil   // links and devices are skipped, as NeMo's safe extraction does
            }
            pos = dataStart + (size + 511) / 512 * 512
        }
        self.files = index.files
        self.directories = index.directories.mapValues { $0.sorted() }
    }

    public func isFile(_ p: String) -> Bool { files[p] != nil }
    public func isDirectory(_ p: String) -> Bool { directories[p] != nil }
    public func children(_ p: String) -> [String] { directories[p] ?? [] }
    public func slice(_ p: String) throws(TesseraError) -> FileSlice {
        guard let s = files[p] else { throw TesseraError(.missing, "member '\(p)' not found in the archive", file: path) }
        return s
    }
}

/// One 512-byte tar header block, checked: its member's name (ustar prefix included), size
/// and type.
private struct TarHeader {
    let name: String
    let size: Int
    let type: UInt8

    /// Reads the header block `h` found at byte `pos` of the tar `archive` of `archiveSize`
    /// bytes; a damaged header, or a size the archive cannot hold, is an error naming it.
    init(_ h: [UInt8], at pos: Int, archiveSize: Int, archive: String) throws(TesseraError) {
        guard let size = Self.octal(h, 124, 12) else {
            throw TesseraError(.corrupt, "bad tar header at byte \(pos)", file: archive)
        }
        // Checksum over the header with the checksum field as spaces.
        var sum = 0
        for i in 0..<512 { sum += (148..<156).contains(i) ? 32 : Int(h[i]) }
        guard let stored = Self.octal(h, 148, 8), stored == sum else {
            throw TesseraError(.corrupt, "tar header checksum mismatch at byte \(pos); the archive is damaged", file: archive)
        }
        type = h[156]
        var name = Self.field(h, 0, 100)
        if Self.field(h, 257, 6).hasPrefix("ustar") {
            let prefix = Self.field(h, 345, 155)
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        let dataStart = pos + 512
        // Sizes are untrusted: a negative one would walk the archive backwards for ever.
        guard size >= 0 else { throw TesseraError(.corrupt, "tar member '\(name)' has size \(size)", file: archive) }
        guard size <= archiveSize - dataStart else {
            throw TesseraError(.corrupt,
                "tar member '\(name)' needs \(size) bytes but the archive ends after \(archiveSize - dataStart); it is truncated",
                file: archive)
        }
        if type == UInt8(ascii: "L") || type == UInt8(ascii: "x"), size > 1 << 20 {
            throw TesseraError(.corrupt, "tar name record at byte \(pos) claims \(size) bytes", file: archive)
        }
        self.name = name
        self.size = size
    }

    /// The NUL-terminated text of the field of `len` bytes at `at`.
    static func field(_ h: [UInt8], _ at: Int, _ len: Int) -> String {
        var end = at
        while end < at + len, h[end] != 0 { end += 1 }
        return String(decoding: h[at..<end], as: UTF8.self)
    }

    /// The number in the field of `len` bytes at `at`: octal text, or base-256 when the
    /// first byte's high bit is set; nil when it is neither (or too large).
    static func octal(_ h: [UInt8], _ at: Int, _ len: Int) -> Int? {
        if h[at] & 0x80 != 0 {   // base-256
            var v = 0
            for i in (at + 1)..<(at + len) {
                guard v <= Int.max >> 8 else { return nil }
                v = (v << 8) | Int(h[i])
            }
            return v
        }
        let s = field(h, at, len).trimmingCharacters(in: .whitespaces)
        return s.isEmpty ? 0 : Int(s, radix: 8)
    }
}

/// The members of a tar found so far: its files, and each folder's children.
private struct TarIndex {
    var files: [String: FileSlice] = [:]
    var directories: [String: Set<String>] = ["": []]

    /// A member name without leading `./` and trailing `/` ("" for the root).
    static func normalize(_ name: String) -> String {
        var n = name
        while n.hasPrefix("./") { n.removeFirst(2) }
        while n.hasSuffix("/") { n.removeLast() }
        return n == "." ? "" : n
    }

    /// Records `name` and every folder above it (and `name` itself when it is a folder).
    mutating func register(_ name: String, isDir: Bool) {
        let parts = name.split(separator: "/").map(String.init)
        var parent = ""
        for (i, part) in parts.enumerated() {
            directories[parent, default: []].insert(part)
            let here = parent.isEmpty ? part : parent + "/" + part
            if i < parts.count - 1 || isDir { directories[here] = directories[here] ?? [] }
            parent = here
        }
    }
}
