import Codecs
import Platform

/// Writes a `torch.save` zip archive as torch does: STORED records whose data starts on
/// 64-byte boundaries, each followed by a data descriptor with its CRC, zip64 where sizes
/// or offsets need it, record data streamed in (the file is written strictly in order).
public struct TorchSaveWriter: ~Copyable {
    struct Record {
        var name: String
        var headerOffset: Int
        var size: Int
        var crc: UInt32
        var zip64Local: Bool
    }

    private var out: OutputFile
    /// Where the archive starts in `out` (zip offsets are relative to it).
    private let base: Int
    private let prefix: String
    private var records: [Record] = []
    private var open: (index: Int, written: Int, crc: CRC32)?

    /// Starts an archive at `path` whose records are named `<archiveName>/...`.
    public init(path: String, archiveName: String) throws(TesseraError) {
        out = try OutputFile(creating: path)
        base = 0
        prefix = archiveName + "/"
    }

    /// Starts an archive at the end of `file` (an item of a torch_dist `.distcp` file).
    public init(appendingTo file: consuming OutputFile, archiveName: String) {
        base = file.position
        out = file
        prefix = archiveName + "/"
    }

    /// Bytes of the archive written so far.
    public var position: Int { out.position - base }

    /// Writes the standard leading records: the pickle and the format markers.
    public mutating func writeHeader(pickle: [UInt8]) throws(TesseraError) {
        try add("data.pkl", pickle)
        try add(".format_version", Array("1".utf8))
        try add(".storage_alignment", Array("64".utf8))
        try add("byteorder", Array("little".utf8))
    }

    /// A whole small record.
    public mutating func add(_ name: String, _ data: [UInt8]) throws(TesseraError) {
        try begin(name, size: data.count)
        try withBytes(data) { (b) throws(TesseraError) in try append(b) }
        try end()
    }

    /// Opens record `name` of exactly `size` bytes; its data follows through `append`.
    public mutating func begin(_ name: String, size: Int) throws(TesseraError) {
        precondition(open == nil, "a record is already open")
        let full = Array((prefix + name).utf8)
        let offset = out.position - base
        let zip64 = size >= 0xFFFF_FFFF || offset >= 0xFFFF_FFFF
        var start = offset + 30 + full.count + 4
        if zip64 {
            start += 4
            if size >= 0xFFFF_FFFF { start += 16 }
            if offset >= 0xFFFF_FFFF { start += 8 }
        }
        let pad = (64 - start % 64) % 64
        var extra: [UInt8] = []
        if zip64 {
            var body: [UInt8] = []
            if size >= 0xFFFF_FFFF { body += le64(size) + le64(size) }
            if offset >= 0xFFFF_FFFF { body += le64(offset) }
            extra += le16(1) + le16(body.count) + body
        }
        extra += [0x46, 0x42] + le16(pad) + [UInt8](repeating: 0x5A, count: pad)
        // As torch writes them: general-purpose flag 0x0808 (UTF-8 name; CRC in a data descriptor
        // after the data), so the stream never goes back to patch a header.
        var h: [UInt8] = le32(0x0403_4b50) + le16(zip64 ? 45 : 20) + le16(0x0808) + le16(0) + le16(0) + le16(0x21)
        h += le32(0)
        let small = size >= 0xFFFF_FFFF ? 0xFFFF_FFFF : size
        h += le32(small) + le32(small) + le16(full.count) + le16(extra.count)
        try out.write(h + full + extra)
        records.append(Record(name: prefix + name, headerOffset: offset, size: size, crc: 0, zip64Local: zip64))
        open = (records.count - 1, 0, CRC32())
    }

    /// Appends data to the open record.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        guard var o = open else { preconditionFailure("no record is open") }
        try out.write(bytes)
        o.crc.update(bytes)
        o.written += bytes.count
        open = o
    }

    /// Closes the open record, checking its size and recording its checksum.
    public mutating func end() throws(TesseraError) {
        guard let o = open else { preconditionFailure("no record is open") }
        let r = records[o.index]
        guard o.written == r.size else {
            throw TesseraError(.inconsistent, "record '\(r.name)' got \(o.written) bytes, declared \(r.size)", file: out.path)
        }
        records[o.index].crc = o.crc.value
        // Data descriptor: signature, CRC, sizes (8-byte sizes for zip64 records).
        var d = le32(0x0807_4b50) + le32(Int(o.crc.value))
        d += r.zip64Local ? le64(r.size) + le64(r.size) : le32(r.size) + le32(r.size)
        try out.write(d)
        open = nil
    }

    /// Writes the trailing `version` record and the central directory; returns the file, to
    /// append more to or to ``OutputFile/close()`` (which reports write failures).
    public consuming func finish() throws(TesseraError) -> OutputFile {
        try add("version", Array("3\n".utf8))
        let cdStart = out.position - base
        for r in records {
            let name = Array(r.name.utf8)
            let bigSize = r.size >= 0xFFFF_FFFF, bigOffset = r.headerOffset >= 0xFFFF_FFFF
            var body: [UInt8] = []
            if bigSize { body += le64(r.size) + le64(r.size) }
            if bigOffset { body += le64(r.headerOffset) }
            let extra = body.isEmpty ? [] : le16(1) + le16(body.count) + body
            var e: [UInt8] = le32(0x0201_4b50) + le16(45) + le16(body.isEmpty ? 20 : 45) + le16(0x0808) + le16(0)
            e += le16(0) + le16(0x21) + le32(Int(r.crc))
            e += le32(bigSize ? 0xFFFF_FFFF : r.size) + le32(bigSize ? 0xFFFF_FFFF : r.size)
            e += le16(name.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
            e += le32(bigOffset ? 0xFFFF_FFFF : r.headerOffset)
            try out.write(e + name + extra)
        }
        let cdSize = out.position - base - cdStart
        let needs64 = records.count >= 0xFFFF || cdStart >= 0xFFFF_FFFF || cdSize >= 0xFFFF_FFFF
        if needs64 {
            let eocd64 = out.position - base
            var z: [UInt8] = le32(0x0606_4b50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            z += le64(records.count) + le64(records.count) + le64(cdSize) + le64(cdStart)
            z += le32(0x0706_4b50) + le32(0) + le64(eocd64) + le32(1)
            try out.write(z)
        }
        var end: [UInt8] = le32(0x0605_4b50) + le16(0) + le16(0)
        end += le16(min(records.count, 0xFFFF)) + le16(min(records.count, 0xFFFF))
        end += le32(min(cdSize, 0xFFFF_FFFF)) + le32(min(cdStart, 0xFFFF_FFFF)) + le16(0)
        try out.write(end)
        return out
    }
}

func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
func le64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * $0)) & 0xFF) } }
