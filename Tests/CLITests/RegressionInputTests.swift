import Foundation
import TestSupport
import Testing

/// Inputs that once crashed, hung or over-allocated Tessera (Tests/Fixtures/bad/fuzz/TARGET/,
/// made by Tools/make_bad_inputs.py or found by Tools/fuzz.sh), each run through the command
/// that reads it: it must end within 30 s with exit 0 or 2, never by a signal.
private let regressionRoot = Fixtures.path("bad/fuzz")

/// Every regression input with the arguments that feed it to `tessera`; at least four.
private func regressionRuns() throws -> [(input: String, args: [String])] {
    let targets = try FileManager.default.contentsOfDirectory(atPath: regressionRoot)
    var runs: [(String, [String])] = []
    for target in targets.sorted() {
        for name in try FileManager.default.contentsOfDirectory(atPath: regressionRoot + "/" + target).sorted() {
            let input = target + "/" + name, path = regressionRoot + "/" + input
            switch target {
            case "FuzzZip", "FuzzTar", "FuzzHDF5Store": runs.append((input, ["inspect", "--digests", path]))
            case "FuzzSentencePiece": runs.append((input, ["tokenize", "--tokenizer", path, "--text", "Hello, world"]))
            case "FuzzScoringJSONL": runs.append((input, ["tokenize", "--tokenizer", Fixtures.path("tiny/tokenizer/tokenizer.model"),
                                                          "--input", path]))
            default: runs.append((input, ["inspect", path]))
            }
        }
    }
    return try requireCases(runs, "regression inputs in \(regressionRoot)", atLeast: 4)
}

@Test func regressionInputsExist() throws {
    #expect(try regressionRuns().count >= 4)
}

@Test(arguments: try regressionRuns().map(\.input))
func regressionInputIsReportedNotCrashedOn(_ input: String) throws {
    let args = try #require(try regressionRuns().first { $0.input == input }?.args)
    let r = try runBounded(args, seconds: 30)
    #expect(r.endedCleanly, "\(input): \(r)")
}
