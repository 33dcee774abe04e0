import Foundation
import Testing

/// The `tessera` binary built beside the test bundle.
var tessera: String {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var dir = bundle
    while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("tessera").path) {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("tessera").path
}

/// Tests/Fixtures.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// How a run of `tessera` ended and what it printed.
struct Run { var status: Int32; var stdout: String; var stderr: String }

/// Runs `tessera args`; with `stdoutPath`, its standard output goes to that file (e.g.
/// /dev/full), redirected by the shell.
func run(_ args: [String], environment: [String: String] = [:], stdoutPath: String? = nil) throws -> Run {
    let p = Process()
    if let stdoutPath {
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "exec \"$0\" \"$@\" > '\(stdoutPath)'", tessera] + args
    } else {
        p.executableURL = URL(fileURLWithPath: tessera)
        p.arguments = args
    }
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// A legacy fixture folder with a config (TP=1/PP=1, bf16).
var legacyFixture: String? {
    let dir = (try? FileManager.default.contentsOfDirectory(atPath: fixtures + "/tiny")) ?? []
    return dir.sorted().first { $0.hasPrefix("legacy") && $0.contains("tp1pp1") && $0.contains("bf16") }
        .map { fixtures + "/tiny/" + $0 }
}

/// A new empty temporary folder, removed by the caller (`defer`).
func temporaryFolder(_ label: String) throws -> String {
    let dir = NSTemporaryDirectory() + "tessera-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
