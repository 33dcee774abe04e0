import Foundation
import TestSupport
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

/// How a run of `tessera` that might not end did end.
struct BoundedRun: CustomStringConvertible {
    var exited: Bool, status: Int32, stderr: String
    /// Ended by itself with exit 0 or 2: a report, not a crash or a hang.
    var endedCleanly: Bool { exited && (status == 0 || status == 2) }
    var description: String { "\(exited ? "exit" : "signal") \(status) \(stderr)" }
}

/// Runs `tessera args` with its standard output discarded, killed by SIGKILL if it has not
/// ended after `seconds`.
func runBounded(_ args: [String], seconds: Double) throws -> BoundedRun {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tessera)
    p.arguments = args
    let err = Pipe()
    p.standardOutput = FileHandle.nullDevice
    p.standardError = err
    try p.run()
    let deadline = Date().addingTimeInterval(seconds)
    while p.isRunning, Date() < deadline { usleep(50_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return BoundedRun(exited: p.terminationReason == .exit, status: p.terminationStatus, stderr: message)
}

/// A legacy fixture folder with a config (TP=1/PP=1, bf16), the first such by name.
func legacyFixture() throws -> String {
    let folders = try Fixtures.checkpoints().filter { $0.format == "legacy" && $0.container == "folder" && $0.tp == 1 && $0.pp == 1 && $0.dtype == "bf16" }
    return try requireCases(folders, "TP1/PP1 bf16 legacy fixtures").min { $0.name < $1.name }!.path
}
