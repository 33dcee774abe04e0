import Foundation
import Platform
import TestSupport
import Testing

private let checkpoint = Fixtures.path("tiny/nemo/legacy_tp2pp2_bf16_te_bytesio.nemo")

/// The fixture conversations three times over, lengthened differently each time, as a file.
private func conversations(in dir: String) throws -> String {
    let base = try Fixtures.lines("tiny/reference/conversations.jsonl")
    #expect(base.count == 8)
    var lines: [String] = []
    for k in 0..<3 { for line in base { lines.append(line.replacingOccurrences(of: #""from": "User""#, with: #""from": "User", "k": \#(k)"#)) } }
    let path = dir + "/in.jsonl"
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

private func contents(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }

/// The uninterrupted single-host output of `input`.
private func singleHost(_ input: String, in dir: String) throws -> Data {
    let out = dir + "/single.jsonl"
    let r = try run(["score", checkpoint, "--input", input, "--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    return contents(out)
}

/// SIGKILL once the output holds a seeded random share of its bytes (it grows a batch of two
/// conversations at a time, watched every 200 µs), three times, each resuming the last, then a
/// resume to the end: the output equals an uninterrupted run's.
@Test(arguments: [11, 22, 33] as [UInt64])
func killedScoringResumesToTheUninterruptedOutput(seed: UInt64) throws {
    let seed = try TestSeed.value("killedScoringResumesToTheUninterruptedOutput", fallback: seed)
    var rng = SplitMix(seed: seed)
    let dir = try TemporaryFolder("score-cli")
    let input = try conversations(in: dir.path)
    let expected = try singleHost(input, in: dir.path)
    #expect(expected.count > 0)
    let output = dir.path + "/killed.jsonl"
    var sizes: [Int] = []
    // Each round resumes the output the one before left, so the targets grow; all lie in the
    // first 90 %, so a kill lands before the last batch.
    let targets = (0..<3).map { _ in 1 + Int(rng.next() >> 33) % (expected.count * 9 / 10) }.sorted()
    for (round, target) in targets.enumerated() {
        print("seed \(seed) round \(round): SIGKILL once the output holds \(target) bytes")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tessera)
        p.arguments = ["score", checkpoint, "--input", input, "--output", output, "--batch", "2"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        while p.isRunning && contents(output).count < target { usleep(200) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        sizes.append(contents(output).count)
    }
    print("seed \(seed): output sizes after the kills \(sizes) of \(expected.count)")
    #expect(sizes.contains { $0 > 0 && $0 < expected.count }, "some kill landed midway")
    let resumed = try run(["score", checkpoint, "--input", input, "--output", output])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(contents(output) == expected, "seed \(seed)")
}

/// Runs `score` writing to `output` under a file-size limit of `limit` bytes (RLIMIT_FSIZE,
/// set in the child by prlimit).
private func scoreLimited(_ input: String, _ output: String, limit: Int) throws -> (Int32, String) {
    let p = Process(), err = Pipe()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
    p.arguments = ["--fsize=\(limit)", tessera, "score", checkpoint, "--input", input, "--output", output]
    p.standardError = err
    try p.run()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: e, as: UTF8.self))
}

/// A full file system (a small tmpfs when this process may mount one) and a file-size limit:
/// exit 2 naming the file; once there is room, the resume equals an uninterrupted run.
@Test func aFullDiskNamesTheFileAndTheResumeIsWhole() throws {
    let dir = try TemporaryFolder("score-cli")
    let input = try conversations(in: dir.path)
    let expected = try singleHost(input, in: dir.path)
    #expect(expected.count > 12_000)
    let limited = dir.path + "/limited.jsonl"
    let (status, stderr) = try scoreLimited(input, limited, limit: 6000)
    #expect(status == 2 && stderr.contains(limited) && stderr.contains("File too large"), "\(stderr)")
    #expect(contents(limited).count <= 6000)
    #expect(try run(["score", checkpoint, "--input", input, "--output", limited]).status == 0)
    #expect(contents(limited) == expected)

    let mountPoint = dir.path + "/small"
    try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
    guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=8k") == 0 else {
        print("no tmpfs test: mount failed (\(String(cString: strerror(errno)))); RLIMIT_FSIZE was tested")
        return
    }
    defer { umount(mountPoint) }
    let full = mountPoint + "/out.jsonl"
    let r = try run(["score", checkpoint, "--input", input, "--output", full])
    #expect(r.status == 2 && r.stderr.contains(full) && r.stderr.contains("No space left on device"), "\(r.stderr)")
    #expect(mount("tmpfs", mountPoint, "tmpfs", UInt(MS_REMOUNT), "size=1m") == 0)
    #expect(try run(["score", checkpoint, "--input", input, "--output", full]).status == 0)
    #expect(contents(full) == expected)
}

/// `score --shard I/N` for N = 1, 2, 3, 7 then `merge`: the single-host output, byte for byte,
/// and a manifest; a missing shard is named (exit 2).
@Test(arguments: [1, 2, 3, 7])
func shardedScoringMergesToTheSingleHostOutput(shards: Int) throws {
    let dir = try TemporaryFolder("score-cli")
    let input = try conversations(in: dir.path)
    let expected = try singleHost(input, in: dir.path)
    let files = (0..<shards).map { dir.path + "/shard-\($0).jsonl" }
    for (i, f) in files.enumerated() {
        let r = try run(["score", checkpoint, "--input", input, "--output", f, "--shard", "\(i)/\(shards)"])
        #expect(r.status == 0, "\(r.stderr)")
    }
    let merged = dir.path + "/merged.jsonl"
    let m = try run(["merge", "--input", input, "--output", merged] + files)
    #expect(m.status == 0, "\(m.stderr)")
    #expect(contents(merged) == expected)
    let manifest = try #require(try JSONSerialization.jsonObject(with: contents(merged + ".manifest.json")) as? [String: Any])
    #expect(manifest["shard_count"] as? Int == shards && manifest["input_records"] as? Int == 24)
    #expect((manifest["shards"] as? [[String: Any]])?.count == shards)
    if shards > 1 {
        let missing = try run(["merge", "--input", input, "--output", dir.path + "/m2.jsonl"] + files.dropLast())
        #expect(missing.status == 2 && missing.stderr.contains("shard \(shards - 1)/\(shards) is missing"), "\(missing.stderr)")
    }
}

/// `pairwise --shard I/N --output` then `merge`: what `pairwise --json` prints, byte for byte.
@Test(arguments: [1, 2, 3])
func shardedPairwiseMergesToTheSingleHostResult(shards: Int) throws {
    let dir = try TemporaryFolder("score-cli")
    let input = dir.path + "/pairs.jsonl"
    let words = ["hi", "hello there", "go away", "thanks!", "sure, happy to help", "no", "maybe", "yes please"]
    var lines: [String] = []
    for i in 0..<12 {
        lines.append(#"{"prompt": "\#(words[i % 8]) \#(i)", "chosen": "\#(words[(i * 3) % 8])", "rejected": "\#(words[(i * 5 + 1) % 8])", "subset": "\#(i % 3 == 0 ? "safety" : "chat")"}"#)
    }
    try (lines.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
    let single = try run(["pairwise", checkpoint, "--input", input, "--json"])
    #expect(single.status == 0 && single.stdout.contains("\"pairs\": 12"), "\(single.stderr)")
    let files = (0..<shards).map { dir.path + "/pairs-\($0).jsonl" }
    for (i, f) in files.enumerated() {
        let r = try run(["pairwise", checkpoint, "--input", input, "--shard", "\(i)/\(shards)", "--output", f])
        #expect(r.status == 0, "\(r.stderr)")
    }
    let merged = dir.path + "/merged.json"
    let m = try run(["merge", "--input", input, "--output", merged] + files)
    #expect(m.status == 0, "\(m.stderr)")
    #expect(String(decoding: contents(merged), as: UTF8.self) == single.stdout)
}

/// Conversations piped in (`cat in.jsonl | tessera score ... --input /dev/stdin`, as
/// `--input <(zcat in.jsonl.gz)` would be) are scored to the same output as the file, and a
/// resume from the same pipe finds them all done.
@Test func pipedConversationsScoreAsTheFileDoes() throws {
    let dir = try TemporaryFolder("score-pipe")
    let input = try conversations(in: dir.path)
    let expected = try singleHost(input, in: dir.path)
    let out = dir.path + "/piped.jsonl"
    for pass in 0..<2 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "cat \"$1\" | \"$0\" score \"$2\" --input /dev/stdin --output \"$3\"", tessera, input, checkpoint, out]
        let err = Pipe()
        p.standardError = err
        try p.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(message)")
        #expect(message.contains(pass == 0 ? "scored 24 conversations (0 already" : "scored 0 conversations (24 already"), "\(message)")
        #expect(contents(out) == expected)
    }
}

/// A score output's missing folders are made (as convert's are); a file in their way is
/// refused naming the output, the folder and the reason.
@Test func scoreOutputsFoldersAreMade() throws {
    let dir = try TemporaryFolder("score-folders")
    let input = Fixtures.path("tiny/reference/conversations.jsonl")
    let made = try run(["score", checkpoint, "--input", input, "--output", dir.file("new/deeper/out.jsonl")])
    #expect(made.status == 0, "\(made.stderr)")
    #expect(contents(dir.file("new/deeper/out.jsonl")).count > 0)
    #expect(FileManager.default.createFile(atPath: dir.file("plain"), contents: Data([1])))
    let blocked = try run(["score", checkpoint, "--input", input, "--output", dir.file("plain/out.jsonl")])
    #expect(blocked.status == 2)
    #expect(blocked.stderr.hasPrefix("tessera: error: \(dir.file("plain/out.jsonl")): cannot create its folder \(dir.file("plain")): Not a directory"),
            "\(blocked.stderr)")
}

/// Standard output, a pipe, as the score output is refused at once (a resume reads the output
/// back: it waited on itself until killed).
@Test func scoreOutputMustBeAFile() throws {
    let input = Fixtures.path("tiny/reference/conversations.jsonl")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", "\"$0\" score \"$1\" --input \"$2\" --output /dev/stdout | cat >/dev/null", tessera, checkpoint, input]
    let err = Pipe()
    p.standardError = err
    try p.run()
    let deadline = Date().addingTimeInterval(20)
    while p.isRunning, Date() < deadline { usleep(50_000) }
    if p.isRunning { p.terminate() }
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(message.hasPrefix("tessera: error: /dev/stdout: the output must be a regular file"), "\(message)")
}
