import Foundation
import TestSupport
import Testing

/// Inputs that once crashed, hung or over-allocated Tessera (Tests/Fixtures/bad/fuzz/TARGET/,
/// made by Tools/make_bad_inputs.py or found by Tools/fuzz.sh), each run through the command
/// that reads it: it must end within 30 s with exit 0 or 2, never by a signal.
private let regressionRoot = Fixtures.path("bad/fuzz")

/// Every regression input with the arguments that feed it to `tessera`, and whether it is read as
/// the model_config.yaml of an unpacked NeMo folder (made by the test, its path the last
/// argument); at least four.
private func regressionRuns() throws -> [(input: String, args: [String], modelConfig: Bool)] {
    let targets = try FileManager.default.contentsOfDirectory(atPath: regressionRoot)
    var runs: [(String, [String], Bool)] = []
    for target in targets.sorted() {
        for name in try FileManager.default.contentsOfDirectory(atPath: regressionRoot + "/" + target).sorted() {
            let input = target + "/" + name, path = regressionRoot + "/" + input
            switch target {
            case "FuzzZip", "FuzzTar", "FuzzHDF5Store": runs.append((input, ["inspect", "--digests", path], false))
            case "FuzzSentencePiece": runs.append((input, ["tokenize", "--tokenizer", path, "--text", "Hello, world"], false))
            case "FuzzScoringJSONL": runs.append((input, ["tokenize", "--tokenizer", Fixtures.path("tiny/tokenizer/tokenizer.model"),
                                                          "--input", path], false))
            case "FuzzModelConfig": runs.append((input, ["inspect"], true))
            default: runs.append((input, ["inspect", path], false))
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
    let run = try #require(try regressionRuns().first { $0.input == input })
    var args = run.args
    let folder = try TemporaryFolder("regression")
    if run.modelConfig {
        _ = try folder.copy(regressionRoot + "/" + input, as: "model_config.yaml")
        args.append(folder.path)
    }
    let r = try runBounded(args, seconds: 30)
    #expect(r.endedCleanly, "\(input): \(r)")
}
