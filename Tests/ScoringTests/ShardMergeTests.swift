import Checkpoints
import Foundation
import Platform
@testable import Scoring
import TestSupport
import Testing

/// Three shard outputs of one input, and the pieces to spoil them with.
private struct Shards {
    let dir: TemporaryFolder
    let input: ConversationInput
    let files: [String]
    let run: ScoringRun

    init() throws {
        let dir = try TemporaryFolder("scoring"), run = ScoringRun(annotator: try setup())
        let input = ConversationInput(path: dir.path + "/in.jsonl", bytes: Array(try variedConversations(9).utf8))
        files = try (0..<3).map { i in
            let f = dir.path + "/shard-\(i).jsonl"
            _ = try score(run, input, to: f, shard: ShardSpec(index: i, count: 3))
            return f
        }
        (self.dir, self.run, self.input) = (dir, run, input)
    }

    /// The error `ShardMerge` gives for `files`.
    func failure(_ files: [String]) -> TesseraError? {
        do throws(TesseraError) { _ = try ShardMerge(input: input, shardFiles: files); return nil } catch { return error }
    }

    /// A copy of shard `i` with `edit` applied to its text.
    func spoiled(_ i: Int, _ edit: (String) -> String) throws -> String {
        let f = dir.path + "/spoiled-\(i)-\(UUID().uuidString).jsonl"
        try edit(try String(contentsOfFile: files[i], encoding: .utf8)).write(toFile: f, atomically: true, encoding: .utf8)
        return f
    }
}

@Test func completeShardsMerge() throws {
    let s = try Shards()
    #expect(s.failure(s.files) == nil)
}

@Test func aMissingShardIsNamed() throws {
    let s = try Shards()
    let e = try #require(s.failure([s.files[0], s.files[1]]))
    #expect(e.code == .missing && e.message.contains("shard 2/3 is missing"), "\(e)")
}

@Test func aDuplicatedShardIsNamed() throws {
    let s = try Shards()
    let copy = try s.spoiled(1) { $0 }
    let e = try #require(s.failure(s.files + [copy]))
    #expect(e.message.contains("shard 1/3 is given twice") && e.message.contains(copy), "\(e)")
}

@Test func aShardOfAnotherInputIsNamed() throws {
    let s = try Shards()
    let other = ConversationInput(path: s.dir.path + "/other.jsonl", bytes: Array(try variedConversations(8).utf8))
    let foreign = s.dir.path + "/foreign.jsonl"
    _ = try score(s.run, other, to: foreign, shard: ShardSpec(index: 2, count: 3))
    let e = try #require(s.failure([s.files[0], s.files[1], foreign]))
    #expect(e.file == foreign && e.message.contains("of another input"), "\(e)")
}

@Test func aShardOfAnotherCheckpointIsNamedAsStale() throws {
    let s = try Shards()
    let stale = try s.spoiled(0) { $0.replacingOccurrences(of: "sha256:test", with: "sha256:older") }
    let e = try #require(s.failure([stale, s.files[1], s.files[2]]))
    #expect(e.file == stale && e.message.contains("another checkpoint") && e.message.contains("stale"), "\(e)")
}

@Test func anIncompleteShardIsNamed() throws {
    let s = try Shards()
    let short = try s.spoiled(1) { text in
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        lines.remove(at: lines.count - 2)
        return lines.joined(separator: "\n")
    }
    let e = try #require(s.failure([s.files[0], short, s.files[2]]))
    #expect(e.file == short && e.message.contains("shard 1/3 is incomplete"), "\(e)")
    let cut = try s.spoiled(2) { String($0.dropLast(7)) }
    let e2 = try #require(s.failure([s.files[0], s.files[1], cut]))
    #expect(e2.file == cut && e2.message.contains("incomplete record"), "\(e2)")
}

/// A resumed shard output that was written for another input or checkpoint is refused.
@Test func aShardOutputIsResumedOnlyByTheSameShard() throws {
    let s = try Shards()
    #expect(throws: TesseraError.self) { _ = try score(s.run, s.input, to: s.files[0], shard: ShardSpec(index: 1, count: 3)) }
    let again = try score(s.run, s.input, to: s.files[0], shard: ShardSpec(index: 0, count: 3))
    #expect(again.written == 0 && again.skipped > 0)
    // Nor by a run without --shard.
    #expect(throws: TesseraError.self) { _ = try score(s.run, s.input, to: s.files[0]) }
}

/// The checkpoint identity is the same for a copy elsewhere and differs for another model.
@Test func checkpointIdentityFollowsTheModelNotThePath() throws {
    let dir = try TemporaryFolder("scoring")
    let original = Fixtures.path("tiny/legacy_tp1pp1_fp32_te_uint8_pickle")
    try FileManager.default.copyItem(atPath: original, toPath: dir.path + "/copy")
    func identity(_ path: String) throws -> String { try CheckpointIdentity.of(try Checkpoint.open(path, cache: MappingCache())) }
    let a = try identity(original)
    #expect(a.hasPrefix("sha256:") && a.count == 71)
    #expect(try identity(dir.path + "/copy") == a)
    #expect(try identity(Fixtures.path("tiny/legacy_tp1pp1_bf16_te_bytesio")) != a)
}

/// Shards scored on different kernel paths merge (each is deterministic on its path), with a
/// warning naming the paths; shards of one path give none.
@Test func shardsOfDifferentKernelPathsAreWarnedAbout() throws {
    let s = try Shards()
    let one = try ShardMerge(input: s.input, shardFiles: s.files)
    try #require(one.kernelPaths.count == 3)
    let path = try #require(one.kernelPaths[0])
    #expect(one.kernelPaths.allSatisfy { $0 == path })
    #expect(one.mixedKernelPathsWarning == nil)
    let other = path == "portable" ? "avx2" : "portable"
    let spoiled = try s.spoiled(1) { $0.replacingOccurrences(of: "\"kernel_path\": \"\(path)\"", with: "\"kernel_path\": \"\(other)\"") }
    let mixed = try ShardMerge(input: s.input, shardFiles: [s.files[0], spoiled, s.files[2]])
    let warning = try #require(mixed.mixedKernelPathsWarning)
    #expect(warning.contains(path) && warning.contains(other), "\(warning)")
}

/// The shard files are opened again as records are copied, a few at a time (a merge of 1,100
/// Slurm outputs failed with "Too many open files" under `ulimit -n 1024` while every shard was
/// kept open): one open at a time gives the same bytes, and a shard rewritten in place after it
/// was indexed is an error naming it.
@Test func shardsReopenedOneAtATimeMergeTheSameAndChangesAreCaught() throws {
    let s = try Shards()
    func merged(_ merge: ShardMerge, _ name: String) throws -> [UInt8] {
        var out = try OutputFile(creating: s.dir.path + "/" + name)
        _ = try merge.write(to: &out)
        try out.close()
        return try bytes(s.dir.path + "/" + name)
    }
    var merge = try ShardMerge(input: s.input, shardFiles: s.files)
    let whole = try merged(merge, "all-open.jsonl")
    merge.openShardFiles = 1
    #expect(whole.count > 0)
    #expect(try merged(merge, "one-open.jsonl") == whole)

    let handle = try #require(FileHandle(forWritingAtPath: s.files[1]))
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(" ".utf8))
    try handle.close()
    do {
        _ = try merged(merge, "after-change.jsonl")
        Issue.record("merged a shard that changed after it was indexed")
    } catch let error as TesseraError {
        #expect(error.code == .inconsistent)
        #expect(error.description.contains(s.files[1]) && error.description.contains("changed while it was read"), "\(error)")
    }
}
