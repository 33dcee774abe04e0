import Foundation
import Glibc

/// Packs a folder into an uncompressed tar the way NeMo writes `.nemo` files
/// (`tarfile.open(path, "w:")` with `arcname="."`): members named `./...`.
public enum TarWriter {
    /// Writes the tree under `folder` into a new tar at `path`; `progress` gets bytes copied.
    /// With `removingPacked`, each file is deleted once it is in the tar, so the disk holds
    /// the tar and at most one member twice, not the whole checkpoint twice.
    public static func pack(folder: String, to path: String, removingPacked: Bool = false,
                            progress: (Int) -> Void = { _ in }) throws(TesseraError) {
        var out = try OutputFile(creating: path)
        try out.write(header(name: "./", size: 0, directory: true))
        guard let walker = FileManager.default.enumerator(atPath: folder) else {
            throw TesseraError(.io, "cannot list the folder", file: folder)
        }
        var entries: [String] = []
        while let rel = walker.nextObject() as? String { entries.append(rel) }
        for rel in entries.sorted() {
            let full = folder + "/" + rel
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: full, isDirectory: &isDir)
            if isDir.boolValue {
                try out.write(header(name: "./" + rel + "/", size: 0, directory: true))
                continue
            }
            let file = try MappedFile(path: full)
            try out.write(header(name: "./" + rel, size: file.count, directory: false))
            // Holes of the member stay holes in the tar (its data start on 512-byte records).
            var offset = 0
            while offset < file.count {
                let n = min(8 << 20, file.count - offset)
                try file.forEachRun(offset..<(offset + n)) { (run) throws(TesseraError) in try out.write(run) }
                file.release(offset..<(offset + n))
                progress(n)
                offset += n
            }
            let pad = (512 - file.count % 512) % 512
            if pad > 0 { try out.write([UInt8](repeating: 0, count: pad)) }
            if removingPacked {
                // Its bytes must be in the tar on disk before the only other copy goes.
                try out.flush()
                try out.sync()
                guard unlink(full) == 0 else {
                    throw TesseraError(.io, "cannot remove after packing: \(String(cString: strerror(errno)))", file: full)
                }
            }
        }
        try out.write([UInt8](repeating: 0, count: 1024))
        try out.close()
    }

    static func header(name: String, size: Int, directory: Bool) throws(TesseraError) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        var nameBytes = Array(name.utf8)
        var prefix: [UInt8] = []
        if nameBytes.count > 100 {
            // ustar: split at a slash into prefix (<= 155) and name (<= 100).
            guard let cut = nameBytes.indices.last(where: { nameBytes[$0] == 0x2F && $0 <= 155 && nameBytes.count - $0 - 1 <= 100 }) else {
                throw TesseraError(.invalidArgument, "path too long for a tar member: \(name)")
            }
            prefix = Array(nameBytes[..<cut])
            nameBytes = Array(nameBytes[(cut + 1)...])
        }
        func put(_ bytes: [UInt8], _ at: Int) { for (i, b) in bytes.enumerated() { h[at + i] = b } }
        func octal(_ v: Int, _ width: Int) -> [UInt8] {
            let s = String(v, radix: 8)
            return Array((String(repeating: "0", count: max(0, width - 1 - s.count)) + s).utf8) + [0]
        }
        put(nameBytes, 0)
        put(octal(directory ? 0o755 : 0o644, 8), 100)
        put(octal(0, 8), 108)
        put(octal(0, 8), 116)
        if size < 0o77777777777 {
            put(octal(size, 12), 124)
        } else {
            // GNU base-256 for members of 8 GiB and more.
            h[124] = 0x80
            for i in 0..<8 { h[135 - i] = UInt8((size >> (8 * i)) & 0xFF) }
        }
        put(octal(Int(time(nil)), 12), 136)
        h[156] = directory ? UInt8(ascii: "5") : UInt8(ascii: "0")
        put(Array("ustar".utf8) + [0], 257)
        put(Array("00".utf8), 263)
        put(prefix, 345)
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(octal(sum, 7) + [0x20], 148)
        return h
    }
}
