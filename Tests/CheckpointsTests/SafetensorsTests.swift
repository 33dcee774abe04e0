import Checkpoints
import Foundation
import Platform
import TestSupport
import Testing

/// A safetensors file with the given header JSON (padded to 8 bytes) and `data` bytes.
private func file(_ scratch: TemporaryFolder, _ name: String, header: String, data: Int, length: UInt64? = nil) throws -> String {
    var json = Array(header.utf8)
    while json.count % 8 != 0 { json.append(0x20) }
    let n = length ?? UInt64(json.count)
    let bytes = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + json + [UInt8](repeating: 7, count: data)
    let path = scratch.path + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

private func entry(_ name: String, _ begin: Int, _ end: Int, shape: [Int] = [2]) -> String {
    "\"\(name)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\(begin),\(end)]}"
}

@Test func wellFormedHeaderIsReadInOffsetOrder() throws {
    let s = try TemporaryFolder("safetensors")
    let path = try file(s, "ok.safetensors", header: "{" + entry("b", 8, 16) + "," + entry("a", 0, 8) + "}", data: 16)
    let h = try SafetensorsHeader.read(path: path)
    try #require(h.entries.count == 2)
    #expect(h.entries.map(\.name) == ["a", "b"])
    #expect(h.dataStart % 8 == 0)
}

/// Damaged headers are refused as the safetensors library refuses them, naming the file.
@Test(arguments: [
    ("past-end", "{" + entry("a", 0, 8) + "," + entry("b", 8, 16) + "}", 12, nil, TesseraError.Code.outOfBounds),
    ("overlap", "{" + entry("a", 0, 8) + "," + entry("b", 4, 12) + "}", 12, nil, .corrupt),
    ("gap", "{" + entry("a", 0, 8) + "," + entry("b", 12, 20) + "}", 20, nil, .corrupt),
    ("wrong-size", "{" + entry("a", 0, 12) + "}", 12, nil, .corrupt),
    ("huge-length", "{}", 0, UInt64(1) << 40, .corrupt),
    ("length-past-end", "{}", 0, 4096, .outOfBounds),
    ("not-json", "[1, 2]", 0, nil, .corrupt),
    ("bad-dtype", "{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, nil, .unsupported),
    ("trailing-data", "{" + entry("a", 0, 8) + "}", 16, nil, .corrupt),
] as [(String, String, Int, UInt64?, TesseraError.Code)])
func damagedHeaderIsRefusedNamingTheFile(_ c: (String, String, Int, UInt64?, TesseraError.Code)) throws {
    let s = try TemporaryFolder("safetensors")
    let path = try file(s, c.0 + ".safetensors", header: c.1, data: c.2, length: c.3)
    do {
        _ = try SafetensorsHeader.read(path: path)
        Issue.record("\(c.0): accepted")
    } catch {
        #expect(error.code == c.4, "\(c.0): \(error)")
        #expect(error.file == path)
    }
}

/// A damaged shard inside an HF folder stops `Checkpoint.open` with the shard named.
@Test func damagedShardInAFolderIsNamed() throws {
    let s = try TemporaryFolder("safetensors")
    try Data("{\"model_type\":\"nemotron\"}".utf8).write(to: URL(fileURLWithPath: s.path + "/config.json"))
    let path = try file(s, "model.safetensors", header: "{" + entry("a", 0, 8) + "," + entry("b", 8, 16) + "}", data: 12)
    do {
        _ = try Checkpoint.open(s.path)
        Issue.record("accepted")
    } catch {
        #expect(error.file == path)
        #expect(error.tensor == "b")
    }
}

@Test func encodedHeaderReadsBackAligned() throws {
    let s = try TemporaryFolder("safetensors")
    let tensors: [(name: String, dtype: DType, shape: [Int])] = [("x", .bfloat16, [3]), ("y\"q", .float32, [2, 2])]
    let header = SafetensorsHeader.encode(tensors, metadata: ["format": "pt"])
    #expect(header.count % 8 == 0)
    let path = s.path + "/enc.safetensors"
    try Data(header + [UInt8](repeating: 0, count: 22)).write(to: URL(fileURLWithPath: path))
    let h = try SafetensorsHeader.read(path: path)
    try #require(h.entries.count == 2)
    #expect(h.entries.map(\.name) == ["x", "y\"q"])
    #expect(h.entries.map(\.range) == [0..<6, 6..<22])
    #expect(h.metadata == ["format": "pt"])
}
