import Foundation
import Platform

/// One tensor of a safetensors file: where its bytes lie, relative to the data section.
public struct SafetensorsEntry: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Byte range inside the data section (after the 8-byte length and the JSON header).
    public var range: Range<Int>

    /// An entry of `shape` elements of `dtype` at `range` of the data section.
    public init(name: String, dtype: DType, shape: [Int], range: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.range = range
    }
}

/// The header of a safetensors file, read and checked as the safetensors library checks it,
/// or built for writing.
public struct SafetensorsHeader: Sendable {
    /// Tensors in file order (by offset).
    public var entries: [SafetensorsEntry]
    /// The `__metadata__` strings.
    public var metadata: [String: String]
    /// File offset of the data section.
    public var dataStart: Int

    /// The largest header the safetensors library accepts (100 MB).
    public static let maxHeaderBytes = 100_000_000

    /// safetensors' dtype names.
    static let names: [DType: String] = [.bfloat16: "BF16", .float16: "F16", .float32: "F32", .float64: "F64",
                                         .int64: "I64", .int32: "I32", .int16: "I16", .int8: "I8", .uint8: "U8", .bool: "BOOL"]

    /// Reads the header of the safetensors file at `path` and checks it: the header length
    /// inside the file and at most 100 MB, a JSON object, known dtypes, each tensor's byte
    /// count equal to its elements times the dtype size, and the tensors tiling the data
    /// section exactly (no gaps, no overlaps, nothing past the end).
    public static func read(path: String) throws(TesseraError) -> SafetensorsHeader {
        let file = try ReadOnlyFile(path: path)
        guard file.size >= 8 else {
            throw TesseraError(.corrupt, "safetensors file of \(file.size) bytes has no 8-byte header length", file: path)
        }
        let n = try withBytes(try file.read(0, 8)) { (b) throws(TesseraError) in Int(clamping: b.le(UInt64.self, at: 0)) }
        guard n <= maxHeaderBytes else {
            throw TesseraError(.corrupt, "header length \(n) exceeds the safetensors limit of \(maxHeaderBytes) bytes", file: path)
        }
        guard n <= file.size - 8 else {
            throw TesseraError(.outOfBounds, "header length \(n) runs past the end of the \(file.size)-byte file", file: path)
        }
        let text = try file.read(8, n)
        guard text.first == UInt8(ascii: "{"),
              let json = try? JSONSerialization.jsonObject(with: Data(text)) as? [String: Any] else {
            throw TesseraError(.corrupt, "the header is not a JSON object", file: path)
        }
        let header = try parse(json, path: path)
        var entries = header.entries
        try checkTiling(&entries, dataBytes: file.size - 8 - n, path: path)
        return SafetensorsHeader(entries: entries, metadata: header.metadata, dataStart: 8 + n)
    }

    /// The entries and metadata of a decoded header object, each entry checked on its own.
    private static func parse(_ json: [String: Any], path: String) throws(TesseraError) -> (entries: [SafetensorsEntry], metadata: [String: String]) {
        var entries: [SafetensorsEntry] = []
        var metadata: [String: String] = [:]
        let byName = Dictionary(uniqueKeysWithValues: names.map { ($1, $0) })
        for (name, value) in json {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else {
                    throw TesseraError(.corrupt, "__metadata__ must map strings to strings", file: path)
                }
                metadata = m
                continue
            }
            guard let info = value as? [String: Any], let ds = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
                throw TesseraError(.corrupt, "expected {dtype, shape, data_offsets: [begin, end]}", file: path, tensor: name)
            }
            guard let dtype = byName[ds] else {
                throw TesseraError(.unsupported, "dtype '\(ds)' is not supported", file: path, tensor: name)
            }
            var count = dtype.size
            for d in shape {
                let (m, overflow) = count.multipliedReportingOverflow(by: d)
                guard d >= 0, !overflow else {
                    throw TesseraError(.corrupt, "shape \(shape) is negative or overflows", file: path, tensor: name)
                }
                count = m
            }
            guard offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] - offsets[0] == count else {
                throw TesseraError(.corrupt,
                    "data_offsets \(offsets) hold \(offsets[1] - offsets[0]) bytes; shape \(shape) of \(ds) needs \(count)",
                    file: path, tensor: name)
            }
            entries.append(SafetensorsEntry(name: name, dtype: dtype, shape: shape, range: offsets[0]..<offsets[1]))
        }
        return (entries, metadata)
    }

    /// Sorts `entries` by offset and requires them to tile `[0, dataBytes)` exactly.
    static func checkTiling(_ entries: inout [SafetensorsEntry], dataBytes: Int, path: String) throws(TesseraError) {
        entries.sort { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }
        var end = 0
        for e in entries {
            guard e.range.upperBound <= dataBytes else {
                throw TesseraError(.outOfBounds,
                    "data_offsets end at \(e.range.upperBound), past the \(dataBytes) bytes of data in the file", file: path, tensor: e.name)
            }
            guard e.range.lowerBound == end else {
                let what = e.range.lowerBound < end ? "overlaps the tensor before it (which ends at \(end))" : "leaves a gap after byte \(end)"
                throw TesseraError(.corrupt, "data_offsets start at \(e.range.lowerBound) and \(what)", file: path, tensor: e.name)
            }
            end = e.range.upperBound
        }
        guard end == dataBytes else {
            throw TesseraError(.corrupt, "the tensors cover \(end) of the \(dataBytes) data bytes", file: path)
        }
    }

    /// The bytes of a safetensors header (length + JSON) for tensors laid out one after
    /// another in the given order, padded with spaces so the data starts 8-byte aligned.
    public static func encode(_ tensors: [(name: String, dtype: DType, shape: [Int])], metadata: [String: String] = [:]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.sorted { $0.key < $1.key }.map { "\(JSONText.string($0.key)):\(JSONText.string($0.value))" }
            parts.append("\"__metadata__\":{\(m.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let bytes = t.shape.reduce(t.dtype.size, *)
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(JSONText.string(t.name)):{\"dtype\":\"\(names[t.dtype]!)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var json = Array("{\(parts.joined(separator: ","))}".utf8)
        while (8 + json.count) % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = [UInt8](repeating: 0, count: 8)
        let n = UInt64(json.count)
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
        return out + json
    }
}
