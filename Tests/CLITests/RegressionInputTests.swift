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
            // A model config is read as an unpacked NeMo folder's model_config.yaml (the test makes the folder).
            case "FuzzModelConfig": runs.append((input, ["inspect", modelConfigFolderMark + path]))
            default: runs.append((input, ["inspect", path]))
            }
        }
    }
    return try requireCases(runs, "regression inputs in \(regressionRoot)", atLeast: 4)
}

@Test func regressionInputsExist() throws {
    #expect(try regressionRuns().count >= 4)
}

/// Marks an argument to be replaced by a new folder holding that file as its model_config.yaml.
private let modelConfigFolderMark = "model-config-folder:"

@Test(arguments: try regressionRuns().map(\.input))
func regressionInputIsReportedNotCrashedOn(_ input: String) throws {
    var args = try #require(try regressionRuns().first { $0.input == input }?.args)
    let folder = try TemporaryFolder("regression")
    for (i, arg) in args.enumerated() where arg.hasPrefix(modelConfigFolderMark) {
        _ = try folder.copy(String(arg.dropFirst(modelConfigFolderMark.count)), as: "model_config.yaml")
        args[i] = folder.path
    }
    let r = try runBounded(args, seconds: 30)
    #expect(r.endedCleanly, "\(input): \(r)")
}
