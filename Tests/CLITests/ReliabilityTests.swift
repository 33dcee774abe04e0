import TestSupport
import Foundation
import Testing

/// A small checkpoint used where the model's size does not matter.
private let zarrFixture = Fixtures.path("tiny/dist_zarr_tp1pp1_bf16")
private let tokenizerFixture = Fixtures.path("tiny/tokenizer/tokenizer.model")

/// Every command that prints, with stdout on a full device.
private let printingCommands: [[String]] = [
    ["inspect", zarrFixture],
    ["inspect", "--json", zarrFixture],
    ["forward", zarrFixture, "--tokens", "1,2,3"],
    ["forward", zarrFixture, "--tokens", "1,2,3", "--json"],
    ["tokenize", "--tokenizer", tokenizerFixture, "--text", "hello world"],
    ["tokenize", "--tokenizer", tokenizerFixture, "--text", "hello world", "--json"],
    ["verify", zarrFixture, zarrFixture, "--weights-only"],
    ["verify", zarrFixture, zarrFixture, "--weights-only", "--json"],
    ["demo", "--checkpoint", Fixtures.path("tiny/nemo/legacy_tp2pp2_bf16_te_bytesio.nemo")],
]

@Test(arguments: printingCommands)
func standardOutputOnAFullDeviceExitsTwo(_ args: [String]) throws {
    let r = try run(args, stdoutPath: "/dev/full")
    #expect(r.status == 2, "\(args): \(r.stderr)")
    #expect(r.stderr.contains("standard output") && r.stderr.contains("No space left on device"), "\(r.stderr)")
}

@Test func everyPrintingCommandIsCovered() {
    #expect(printingCommands.count == 9)
    #expect(Set(printingCommands.map(\.[0])) == ["inspect", "forward", "tokenize", "verify", "demo"])
}

/// `convert --json` on a full stdout: exit 2, and what it wrote is complete (committed first).
@Test func convertReportOnAFullDeviceExitsTwo() throws {
    let scratch = try TemporaryFolder("full-report")
    let dir = scratch.path
    let r = try run(["convert", zarrFixture, dir + "/out", "--json"], stdoutPath: "/dev/full")
    #expect(r.status == 2, "\(r.stderr)")
    #expect(try run(["verify", zarrFixture, dir + "/out", "--weights-only"]).status == 0)
}

/// A reader that goes away ends the process quietly, killed by SIGPIPE as other Unix tools are.
@Test func aClosedPipeEndsTheProcessQuietly() throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tessera)
    p.arguments = ["inspect", zarrFixture]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try out.fileHandleForReading.close()
    try p.run()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    #expect(p.terminationReason == .uncaughtSignal)
    #expect(p.terminationStatus == SIGPIPE)
    #expect(e.isEmpty, "\(String(decoding: e, as: UTF8.self))")
}

private let usageErrors: [[String]] = [
    ["inspect"],
    ["no-such-command"],
    ["inspect", "--no-such-flag", zarrFixture],
    ["convert", zarrFixture, "/tmp/x", "--tp", "two"],
    ["forward", zarrFixture, "--precision", "fp8"],
]

@Test(arguments: usageErrors)
func usageErrorsExitTwoWithOneLine(_ args: [String]) throws {
    let r = try run(args)
    #expect(r.status == 2)
    #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    #expect(r.stderr.hasPrefix("tessera: usage: "))
}

@Test func usageErrorCasesExist() { #expect(usageErrors.count == 5) }

/// Destinations of every output format, under a tiny file-size limit (EFBIG part-way).
private let destinations: [(name: String, format: String)] = [
    ("out", "nemo"), ("out.nemo", "nemo"), ("out", "dist-zarr"), ("out", "dist-torch"), ("out.h5", "hdf5"),
]

@Test(.disabled(if: underThreadSanitizer, "ThreadSanitizer's runtime dies of SIGBUS under a small RLIMIT_FSIZE"),
      arguments: destinations.indices)
func convertUnderAFileSizeLimitExitsTwoAndLeavesNothing(_ index: Int) throws {
    #expect(destinations.count == 5)
    let (name, format) = destinations[index]
    let scratch = try TemporaryFolder("fsize")
    let dir = scratch.path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    // 32 blocks of 512 bytes: enough to start every format, too little to finish any.
    p.arguments = ["-c", "ulimit -f 32 && exec \"$0\" \"$@\"", tessera, "convert", zarrFixture, dir + "/" + name,
                   "--tp", "2", "--format", format]
    let err = Pipe()
    p.standardError = err
    try p.run()
    let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(p.terminationReason == .exit && p.terminationStatus == 2, "\(format): \(e)")
    #expect(e.hasPrefix("tessera: error: ") && e.split(separator: "\n").count == 1, "\(e)")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "nothing left behind")
}

/// A copy of the zarr fixture whose extra artifact `notes.txt` is a FIFO nobody writes: a
/// conversion writes every tensor, then blocks opening it (a real blocked input), with its
/// partial output on disk.
private func blockedConversion(to name: String, in dir: String) throws -> (Process, stderr: Pipe) {
    let source = dir + "/src"
    try FileManager.default.copyItem(atPath: zarrFixture, toPath: source)
    #expect(mkfifo(source + "/notes.txt", 0o600) == 0)
    try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tessera)
    p.arguments = ["convert", source, dir + "/out/" + name, "--tp", "2"]
    let err = Pipe()
    p.standardError = err
    try p.run()
    var waited = 0
    while waited < 1200, !isOpeningAFIFO(p.processIdentifier) { usleep(50_000); waited += 1 }
    #expect(isOpeningAFIFO(p.processIdentifier), "the conversion reached the FIFO")
    #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir + "/out")).isEmpty, "partial output exists")
    return (p, err)
}

/// Whether a thread of `pid` waits in the kernel for a FIFO's writer (Linux).
private func isOpeningAFIFO(_ pid: Int32) -> Bool {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.contains { task in
        (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/wchan", encoding: .utf8)) == "wait_for_partner"
    }
}

/// Under ThreadSanitizer (Tools/sanitize.sh sets TESSERA_SANITIZER) a signal waits for the
/// thread it lands on to reach an intercepted call, and a thread blocked opening a FIFO never
/// does: the interruption tests would hang there, not in Tessera.
private let underThreadSanitizer = ProcessInfo.processInfo.environment["TESSERA_SANITIZER"] == "thread"

@Test(.disabled(if: underThreadSanitizer, "ThreadSanitizer defers signals"), arguments: ["out", "out.nemo"])
func sigtermEndsABlockedConversionWithinASecondAndRemovesItsOutput(_ name: String) throws {
    let scratch = try TemporaryFolder("sigterm")
    let dir = scratch.path
    let (p, err) = try blockedConversion(to: name, in: dir)
    let start = Date()
    p.terminate()
    p.waitUntilExit()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let seconds = Date().timeIntervalSince(start)
    #expect(seconds < 1, "ended after \(seconds) s")
    #expect(message.contains("interrupted; partial output removed"))
    #expect(p.terminationReason == .exit && p.terminationStatus == 128 + SIGTERM, "\(p.terminationReason) \(p.terminationStatus)")
    let left = try FileManager.default.contentsOfDirectory(atPath: dir + "/out")
    #expect(left.isEmpty, "partial output removed: \(left)")
}

@Test func killedConversionLeavesNothingThatLooksComplete() throws {
    let scratch = try TemporaryFolder("sigkill")
    let dir = scratch.path
    let (p, _) = try blockedConversion(to: "out.nemo", in: dir)
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    let left = try FileManager.default.contentsOfDirectory(atPath: dir + "/out")
    #expect(!left.isEmpty, "a SIGKILL leaves the partial output")
    // Whatever a SIGKILL leaves is hidden and named as partial.
    for name in left { #expect(name.hasPrefix(".") && name.contains("tessera-partial")) }
}

/// Stores are written with checksummed metadata (HDF5 1.10 format: a version-3 superblock),
/// so libhdf5 itself detects damage to them.
@Test func storesCarryAVersionThreeSuperblock() throws {
    let scratch = try TemporaryFolder("superblock")
    let dir = scratch.path
    for compression in ["zstd:1", "none"] {
        let store = dir + "/\(compression).h5"
        let r = try run(["convert", zarrFixture, store, "--format", "hdf5", "--compression", compression])
        #expect(r.status == 0, "\(r.stderr)")
        let head = try #require(FileManager.default.contents(atPath: store)).prefix(9)
        #expect(head.count == 9)
        #expect(Array(head.prefix(8)) == [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])
        #expect(head.last == 3, "superblock version \(head.last.map(String.init) ?? "?")")
    }
}

/// Random damage to a store (a run of bytes overwritten at a random place) is reported or
/// harmless, never a crash or a hang: `inspect --digests` exits 0 or 2 within 20 s.
/// TESSERA_TEST_SEED repeats a run; the seed is printed.
@Test func damagedStoresAreReportedNeverCrashedOn() throws {
    let seed = try TestSeed.value()
    var rng = SplitMix(seed: seed)
    let scratch = try TemporaryFolder("damaged-store")
    let dir = scratch.path
    let store = dir + "/store.h5"
    #expect(try run(["convert", zarrFixture, store, "--format", "hdf5"]).status == 0)
    let original = try #require(FileManager.default.contents(atPath: store))
    #expect(original.count > 4096)
    let trials = 24
    var statuses: [Int32] = []
    for trial in 0..<trials {
        var bytes = [UInt8](original)
        // Half the damage lands in the first 4 KiB, where the superblock and most metadata live.
        let at = trial % 2 == 0 ? Int(rng.next() % 4096) : Int(rng.next() % UInt64(bytes.count))
        for i in at..<min(bytes.count, at + 1 + Int(rng.next() % 16)) { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let damaged = dir + "/damaged.h5"
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        let r = try runBounded(["inspect", "--digests", damaged], seconds: 20)
        #expect(r.endedCleanly, "seed \(seed) trial \(trial) (damage at \(at)): \(r)")
        statuses.append(r.status)
    }
    #expect(statuses.count == trials)
}

/// A negative verdict is exit 1 with its report printed (the report is written out before
/// the process ends), and only a negative verdict is exit 1.
@Test func aNegativeVerdictPrintsItsReportAndExitsOne() throws {
    let scratch = try TemporaryFolder("verdict")
    let dir = scratch.path
    // A copy with one output-layer weight changed (raw zarr chunk, bf16).
    let other = dir + "/changed"
    try FileManager.default.copyItem(atPath: zarrFixture, toPath: other)
    let chunk = other + "/model_weights/model.output_layer.weight/0.0"
    var bytes = try #require(FileManager.default.contents(atPath: chunk))
    #expect(bytes.count == 512 * 64 * 2)
    bytes[100] ^= 0x40
    try bytes.write(to: URL(fileURLWithPath: chunk))
    let r = try run(["verify", zarrFixture, other, "--weights-only"])
    #expect(r.status == 1, "\(r.stderr)")
    #expect(r.stdout.contains("NOT EQUIVALENT"))
    let full = try run(["verify", zarrFixture, other, "--weights-only"], stdoutPath: "/dev/full")
    #expect(full.status == 2 && full.stderr.contains("No space left on device"), "\(full.stderr)")
}
