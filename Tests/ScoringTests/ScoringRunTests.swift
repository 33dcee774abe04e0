import TestSupport
import Foundation
import Platform
@testable import Scoring
import Testing

/// Scores `input` (all of it, or one shard) into `output` with a fresh run.
func score(_ run: ScoringRun, _ input: ConversationInput, to output: String, shard: ShardSpec? = nil,
           balance: ShardBalance = .tokens) throws -> ScoringRun.Summary {
    let out = try ResumableOutput(path: output)
    var lines = input.lines
    var header: ShardHeader? = nil
    if let shard { (lines, header) = try run.plan(input, shard: shard, balance: balance, checkpoint: "sha256:test") }
    let s = try run.run(input, lines: lines, into: out, header: header)
    try out.close()
    return s
}

func bytes(_ path: String) throws -> [UInt8] { [UInt8](try #require(FileManager.default.contents(atPath: path))) }

@Test func resumableOutputCutsAnIncompleteLastLine() throws {
    let dir = try TemporaryFolder("scoring")
    let path = dir.path + "/out.jsonl"
    try Data("{\"a\": 1}\n{\"b\": 2}\n{\"c\": ".utf8).write(to: URL(fileURLWithPath: path))
    let out = try ResumableOutput(path: path)
    #expect(out.existingBytes == 18)
    #expect(try out.existingLines().map { String(decoding: $0, as: UTF8.self) } == ["{\"a\": 1}", "{\"b\": 2}"])
    try out.append(Array("{\"c\": 3}\n".utf8))
    try out.close()
    #expect(String(decoding: try bytes(path), as: UTF8.self) == "{\"a\": 1}\n{\"b\": 2}\n{\"c\": 3}\n")
}

/// An output cut anywhere (a kill, a full disk) and resumed equals the uninterrupted output,
/// byte for byte: every cut point of a few seeded draws, duplicates and bad lines included.
@Test(arguments: [1, 2, 3])
func resumeFromAnyCutEqualsAnUninterruptedRun(seed: UInt64) throws {
    var rng = try TestSeed.generator("resumeFromAnyCutEqualsAnUninterruptedRun", fallback: seed)
    let dir = try TemporaryFolder("scoring")
    var run = ScoringRun(annotator: try setup())
    run.batch = 3
    run.skipBadLines = true
    let text = try variedConversations(10) + "not json\n" + (try variedConversations(3))
    let input = ConversationInput(path: dir.path + "/in.jsonl", bytes: Array(text.utf8))
    let whole = dir.path + "/whole.jsonl"
    let summary = try score(run, input, to: whole)
    #expect(summary.bad == 1 && summary.written == input.lines.count - 1)
    let expected = try bytes(whole)
    for _ in 0..<4 {
        let cut = Int(rng.next() % UInt64(expected.count))
        let path = dir.path + "/cut-\(cut).jsonl"
        try Data(expected[..<cut]).write(to: URL(fileURLWithPath: path))
        _ = try score(run, input, to: path)
        #expect(try bytes(path) == expected, "cut at byte \(cut)")
    }
}

@Test func shardSpecsParseAndRefuseNonsense() throws {
    #expect(try ShardSpec(parsing: "2/7") == ShardSpec(index: 2, count: 7))
    for bad in ["7/7", "-1/3", "1", "a/b", "1/0", "1/2/3"] {
        #expect(throws: TesseraError.self) { try ShardSpec(parsing: bad) }
    }
}

/// Token balance: heaviest first to the lightest shard; the slowest shard is over the mean
/// by less than the heaviest item, and the same costs always give the same partition.
@Test func partitionsAreBalancedByCostAndDeterministic() throws {
    var rng = try TestSeed.generator(fallback: 7)
    let costs = (0..<500).map { _ in Int(rng.next() % 1000) + (Int(rng.next() % 20) == 0 ? 20000 : 0) }
    for n in [1, 2, 3, 7] {
        let a = ShardPartition.byCost(costs, shards: n)
        #expect(a.count == costs.count)
        #expect(a == ShardPartition.byCost(costs, shards: n))
        var loads = [Int](repeating: 0, count: n)
        for (c, s) in zipSameCount(costs, a) { loads[s] += c }
        let mean = Double(costs.reduce(0, +)) / Double(n)
        #expect(Double(loads.max()!) - mean <= Double(costs.max()!), "loads \(loads)")
        let lines = ShardPartition.byCount(costs.count, shards: n)
        #expect(lines.count == costs.count && lines == lines.sorted())
        #expect(Set(lines) == Set(0..<n))
    }
}

@Test func shardRecordsKeepTheSingleHostLineByteForByte() throws {
    let record = #"{"conversations": [{"value": "caf\u00e9 }", "from": "User"}], "mask": "User"}"#
    let line = ShardRecord.encode(line: 42, tokens: 17, ms: 3, record: record)
    #expect(line.last == 0x0A)
    let r = try #require(ShardRecord.decode(line.dropLast()))
    #expect(r.line == 42 && r.tokens == 17 && r.ms == 3)
    #expect(String(decoding: line[r.record], as: UTF8.self) == record)
    for junk in [#"{"line": x}"#, #"{"conversations": []}"#, #"{"line": 1, "tokens": 2, "ms": 3, "record": }"#, ""] {
        #expect(ShardRecord.decode(ArraySlice(Array(junk.utf8))) == nil, "\(junk)")
    }
}

/// Shards scored one by one and merged give the single-host output, byte for byte, for
/// 1, 2, 3 and 7 shards, balanced by tokens or by lines.
@Test(arguments: [1, 2, 3, 7])
func mergedShardsEqualASingleHostRun(shards: Int) throws {
    let dir = try TemporaryFolder("scoring")
    var run = ScoringRun(annotator: try setup())
    run.batch = 4
    let input = ConversationInput(path: dir.path + "/in.jsonl", bytes: Array(try variedConversations(17).utf8))
    #expect(input.lines.count == 18)
    let single = dir.path + "/single.jsonl"
    _ = try score(run, input, to: single)
    for balance in ShardBalance.allCases {
        var files: [String] = []
        for i in 0..<shards {
            files.append(dir.path + "/\(balance)-\(i).jsonl")
            _ = try score(run, input, to: files.last!, shard: ShardSpec(index: i, count: shards), balance: balance)
        }
        let merge = try ShardMerge(input: input, shardFiles: files.reversed())
        let merged = dir.path + "/merged-\(balance).jsonl"
        var out = try OutputFile(creating: merged)
        let digest = try merge.write(to: &out)
        try out.close()
        #expect(try bytes(merged) == (try bytes(single)), "\(shards) shards by \(balance)")
        let manifest = merge.manifest(output: merged, outputSHA256: digest)
        #expect(manifest["shards"]?.array?.count == shards)
        #expect(manifest["output_sha256"]?.string == digest)
    }
}

/// An input file read line by line that is cut short during the run stops it with an error
/// naming the file, even with --skip-bad-lines: a line that can no longer be read is not a
/// bad line, and nothing is written for it.
@Test func anInputCutShortDuringTheRunStopsItNamingTheFile() throws {
    let dir = try TemporaryFolder("scoring")
    var run = ScoringRun(annotator: try setup())
    run.batch = 2
    run.skipBadLines = true
    let path = dir.path + "/in.jsonl", text = Array(try variedConversations(6).utf8)
    #expect(FileManager.default.createFile(atPath: path, contents: Data(text)))
    let input = try ConversationInput(path: path)
    try #require(input.lines.count == 7)
    #expect(truncate(path, off_t(input.lines[3].range.lowerBound)) == 0)
    let output = dir.path + "/out.jsonl"
    do {
        _ = try score(run, input, to: output)
        Issue.record("a run over a file cut short finished")
    } catch let error as TesseraError {
        #expect(error.code == .inconsistent)
        #expect(error.description.contains(path) && error.description.contains("changed while it was read"))
    }
    let written = try ResumableOutput(path: output).existingLines()
    #expect(written.count <= 3)
    #expect(!written.contains { String(decoding: $0, as: UTF8.self).contains("\"error\"") })
}

/// An output that is the input file (by name or through a link) is refused before anything is
/// opened for writing: the run read the input back as records already scored and, after its
/// own truncation, failed with "it changed while it was read".
@Test func anOutputThatIsTheInputIsRefused() throws {
    let dir = try TemporaryFolder("scoring")
    let path = dir.path + "/in.jsonl", text = Array(try variedConversations(2).utf8)
    #expect(FileManager.default.createFile(atPath: path, contents: Data(text)))
    try FileManager.default.createSymbolicLink(atPath: dir.path + "/link.jsonl", withDestinationPath: path)
    let input = try ConversationInput(path: path)
    for output in [path, dir.path + "/link.jsonl", dir.path + "/./in.jsonl"] {
        #expect { try input.checkNotInput(output) } throws: { ($0 as? TesseraError)?.message.contains("the output is the input file") == true }
    }
    try input.checkNotInput(dir.path + "/out.jsonl")
    #expect(try bytes(path) == text)
}
