import Foundation
import Platform
import Testing
@testable import TorchFormat

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// The TP1/PP1 bf16 rank file of a TE-spelled fixture with BytesIO extra state.
private var rankFile: String? {
    let dir = (try? FileManager.default.contentsOfDirectory(atPath: fixtures + "/tiny")) ?? []
    return dir.sorted().first { $0.contains("tp1pp1") && $0.contains("bf16") && $0.contains("bytesio") }
        .map { fixtures + "/tiny/" + $0 + "/model_weights.ckpt" }
}

private func slice(_ path: String) throws -> FileSlice {
    FileSlice(path: path, offset: 0, count: try MappedFile(path: path).count)
}

@Test func zipRecordsAreStoredAndAligned() throws {
    let path = try #require(rankFile)
    let zip = try ZipArchive(try slice(path))
    let data = zip.entries.filter { $0.name.contains("/data/") }
    #expect(!data.isEmpty)
    for e in data {
        #expect(e.method == 0)
        #expect(e.data.offset % 64 == 0, "torch.save aligns records to 64 bytes: \(e.name)")
    }
    #expect(zip.entries.first?.name.hasSuffix("data.pkl") == true)
}

@Test func stateDictTensorsPointIntoTheFile() throws {
    let path = try #require(rankFile)
    let archive = try TorchArchive(try slice(path), cache: MappingCache())
    let sd = try #require(archive.stateDict)
    #expect(sd.ordered)
    #expect(sd.attributes.contains { $0.key.string == "_metadata" })
    let qkv = try #require(sd["model.decoder.layers.0.self_attention.linear_qkv.weight"]?.tensor)
    #expect(qkv.dtype == .bfloat16)
    #expect(qkv.shape == [128, 64])
    #expect(qkv.isContiguous)
    #expect(qkv.storage.bytes.path == path)
    // Every TE linear carries a BytesIO extra state holding a torch.save archive (a zip).
    let extra = try #require(sd["model.decoder.layers.0.self_attention.linear_qkv._extra_state"]?.object)
    #expect(extra.name == "BytesIO")
    guard case .tuple(let state)? = extra.state, case .bytes(let inner)? = state.first else {
        Issue.record("BytesIO state is not (bytes, pos, dict)")
        return
    }
    #expect(inner.prefix(2) == [0x50, 0x4B])
}

@Test func truncatedArchiveIsCorrupt() throws {
    let path = try #require(rankFile)
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let copy = NSTemporaryDirectory() + "tessera-trunc-\(UUID().uuidString).ckpt"
    try data.prefix(data.count - 30).write(to: URL(fileURLWithPath: copy))
    let s = try slice(copy)
    do {
        _ = try TorchArchive(s, cache: MappingCache())
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .corrupt)
        #expect(error.file == copy)
    }
}

@Test func forbiddenGlobalInACheckpointIsRefusedByName() throws {
    let bad = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures + "/bad")) ?? [])
        .filter { $0.contains("global") || $0.contains("evil") }
    try #require(!bad.isEmpty, "the bad-input fixtures include a forbidden-global pickle")
    for name in bad {
        var path = fixtures + "/bad/" + name
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { path += "/model_weights.ckpt" }
        let s = try slice(path)
        do {
            _ = try TorchArchive(s, cache: MappingCache())
            Issue.record("\(name) was accepted")
        } catch {
            #expect(error.code == .forbiddenGlobal)
            #expect(error.file == path)
        }
    }
}
