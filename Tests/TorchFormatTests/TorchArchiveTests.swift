import Foundation
import Platform
import TestSupport
import Testing
@testable import TorchFormat

/// The TP1/PP1 bf16 rank file of a TE-spelled legacy fixture with BytesIO extra state.
private func rankFile() throws -> String {
    try Fixtures.checkpoint { $0.format == "legacy" && $0.tp == 1 && $0.pp == 1 && $0.dtype == "bf16" && $0.name.hasSuffix("te_bytesio") }
        .path + "/model_weights.ckpt"
}

private func slice(_ path: String) throws -> FileSlice {
    FileSlice(path: path, offset: 0, count: try MappedFile(path: path).count)
}

/// The error reading the torch.save archive at `path`, which must be refused.
private func refusal(_ path: String) throws -> TesseraError {
    let s = try slice(path)
    do {
        _ = try TorchArchive(s, cache: MappingCache())
    } catch {
        return error
    }
    throw TestInputError("\(path) was accepted")
}

@Test func zipRecordsAreStoredAndAligned() throws {
    let path = try rankFile()
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
    let path = try rankFile()
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
    let data = try Data(contentsOf: URL(fileURLWithPath: try rankFile()))
    let folder = try TemporaryFolder("trunc")
    let copy = folder.file("truncated.ckpt")
    try data.prefix(data.count - 30).write(to: URL(fileURLWithPath: copy))
    let error = try refusal(copy)
    #expect(error.code == .corrupt)
    #expect(error.file == copy)
}

@Test func forbiddenGlobalInACheckpointIsRefusedByName() throws {
    let bad = try Fixtures.badInputs().filter { $0.contains("global") || $0.contains("evil") }
    for rel in try requireCases(bad, "forbidden-global pickles among the bad inputs", atLeast: 3) {
        var path = Fixtures.path(rel)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { path += "/model_weights.ckpt" }
        let error = try refusal(path)
        #expect(error.code == .forbiddenGlobal, "\(rel)")
        #expect(error.file == path)
    }
}
