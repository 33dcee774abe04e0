import Foundation
import Testing

/// Inputs that once crashed, hung or over-allocated Tessera (Tests/Fixtures/bad/fuzz/TARGET/,
/// made by Tools/make_bad_inputs.py or found by Tools/fuzz.sh), each run through the command
/// that reads it: it must end within 30 s with exit 0 or 2, never by a signal.
private let regressionRoot = fixtures + "/bad/fuzz"

/// Every regression input with the arguments that feed it to `tessera`.
private func regressionRuns() -> [(input: String, args: [String])] {
    let targets = (try? FileManager.default.contentsOfDirectory(atPath: regressionRoot)) ?? []
    var runs: [(String, [String])] = []
    for target in targets.sorted() {
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: regressionRoot + "/" + target)) ?? []).sorted() {
            let input = target + "/" + name, path = regressionRoot + "/" + input
            switch target {
            case "FuzzZip", "FuzzTar", "FuzzHDF5Store": runs.append((input, ["inspect", "--digests", path]))
            case "FuzzSentencePiece": runs.append((input, ["tokenize", "--tokenizer", path, "--text", "Hello, world"]))
            case "FuzzScoringJSONL": runs.append((input, ["tokenize", "--tokenizer", fixtures + "/tiny/tokenizer/tokenizer.model",
                                                          "--input", path]))
            default: runs.append((input, ["inspect", path]))
            }
        }
    }
    return runs
}

@Test func regressionInputsExist() {
    #expect(regressionRuns().count >= 4)
}

@Test(arguments: regressionRuns().map(\.input))
func regressionInputIsReportedNotCrashedOn(_ input: String) throws {
    let args = try #require(regressionRuns().first { $0.input == input }?.args)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tessera)
    p.arguments = args
    let err = Pipe()
    p.standardOutput = FileHandle.nullDevice
    p.standardError = err
    try p.run()
    var waited = 0
    while p.isRunning, waited < 600 { usleep(50_000); waited += 1 }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(p.terminationReason == .exit && (p.terminationStatus == 0 || p.terminationStatus == 2),
            "\(input): \(p.terminationReason == .exit ? "exit" : "signal") \(p.terminationStatus) \(message)")
}
