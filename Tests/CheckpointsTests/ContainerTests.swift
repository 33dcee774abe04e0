import Checkpoints
import Foundation
import Platform
import Testing

private var tarPath: String? {
    Fixtures.checkpoints.first { $0["container"] as? String == "tar" }?["path"] as? String
}

@Test func tarMembersAreLocatedInPlace() throws {
    let rel = try #require(tarPath)
    let tar = try TarContainer(path: Fixtures.path(rel))
    #expect(tar.isFile("model_config.yaml"))
    let s = try tar.slice("model_config.yaml")
    #expect(s.path == Fixtures.path(rel))
    #expect(s.offset % 512 == 0)
    let text = String(decoding: try tar.read("model_config.yaml"), as: UTF8.self)
    #expect(text.contains("num_layers"))
}

@Test func truncatedTarIsReported() throws {
    let rel = try #require(tarPath)
    let copy = try Fixtures.scratchCopy(rel)
    let data = try Data(contentsOf: URL(fileURLWithPath: copy))
    try data.prefix(data.count / 2 + 100).write(to: URL(fileURLWithPath: copy))
    do {
        _ = try TarContainer(path: copy)
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .corrupt)
        #expect(error.file == copy)
    }
}

@Test func unsafeMembersAreSkipped() throws {
    let path = Fixtures.path("bad/unsafe_members.nemo")
    guard FileManager.default.fileExists(atPath: path) else { return }
    let tar = try TarContainer(path: path)
    #expect(!tar.isFile("../escape.txt"))
    #expect(!tar.isFile("abs.txt"))
    #expect(!tar.isFile("/abs.txt"))
}

@Test func folderListsChildrenSorted() throws {
    let rel = try #require(Fixtures.checkpoints.first { ($0["tp"] as? Int) == 2 && ($0["pp"] as? Int) == 2
        && $0["format"] as? String == "legacy" && $0["container"] as? String == "folder" }?["path"] as? String)
    let c = DirectoryContainer(root: Fixtures.path(rel))
    let ranks = c.children("").filter { $0.hasPrefix("tp_rank_") }
    #expect(ranks == ["tp_rank_00_pp_rank_000", "tp_rank_00_pp_rank_001", "tp_rank_01_pp_rank_000", "tp_rank_01_pp_rank_001"])
}
