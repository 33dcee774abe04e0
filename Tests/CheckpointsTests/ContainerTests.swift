import Checkpoints
import Foundation
import Platform
import TestSupport
import Testing

private func tarPath() throws -> String { try Fixtures.checkpoint { $0.container == "tar" }.path }

@Test func tarMembersAreLocatedInPlace() throws {
    let path = try tarPath()
    let tar = try TarContainer(path: path)
    #expect(tar.isFile("model_config.yaml"))
    let s = try tar.slice("model_config.yaml")
    #expect(s.path == path)
    #expect(s.offset % 512 == 0)
    let text = String(decoding: try tar.read("model_config.yaml"), as: UTF8.self)
    #expect(text.contains("num_layers"))
}

@Test func truncatedTarIsReported() throws {
    let scratch = try TemporaryFolder("tar")
    let copy = try scratch.copy(try tarPath())
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
    let tar = try TarContainer(path: path)
    #expect(!tar.isFile("../escape.txt"))
    #expect(!tar.isFile("abs.txt"))
    #expect(!tar.isFile("/abs.txt"))
}

@Test func folderListsChildrenSorted() throws {
    let c = DirectoryContainer(root: try Fixtures.checkpoint(format: "legacy", tp: 2, pp: 2).path)
    let ranks = c.children("").filter { $0.hasPrefix("tp_rank_") }
    #expect(ranks == ["tp_rank_00_pp_rank_000", "tp_rank_00_pp_rank_001", "tp_rank_01_pp_rank_000", "tp_rank_01_pp_rank_001"])
}
