import Checkpoints
import Engine
import Foundation
import Platform
import Testing
import TestSupport

private func tinyModel() throws -> Model {
    let cache = MappingCache()
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny/legacy_tp2pp2_bf16_te_bytesio").path
    return try Model(try Checkpoint.open(path, cache: cache), cache: cache)
}

/// A batch that fits is admitted and the weights are let go after each layer.
@Test func aBatchThatFitsIsAdmitted() throws {
    let model = try tinyModel()
    let batch = [[1, 2, 3], [4, 5]]
    let need = model.largestLayerBytes + model.activationBytes(tokens: 5, longest: 3)
    try model.boundMemory(need, named: "--max-memory X", batch: batch)
    #expect(model.releaseWeights)
}

/// A batch that does not fit is refused before any work, naming the need and the bound.
@Test func aBatchThatDoesNotFitIsRefused() throws {
    let model = try tinyModel()
    let batch = [[1, 2, 3], [4, 5]]
    let need = model.largestLayerBytes + model.activationBytes(tokens: 5, longest: 3)
    do throws(TesseraError) {
        try model.boundMemory(need - 1, named: "--max-memory 1K", batch: batch)
        Issue.record("the batch was admitted")
    } catch {
        #expect(error.code == .invalidArgument)
        #expect(error.message == "the batch needs about \(formatBytes(need)) (one layer's weights and the activations of 2 sequences), "
                + "more than --max-memory 1K; run fewer or shorter sequences at a time")
    }
    #expect(!model.releaseWeights)
}

/// The weights-only bound (scoring's) asks only that one layer's weights fit.
@Test func theWeightBoundAsksForOneLayer() throws {
    let model = try tinyModel()
    do throws(TesseraError) {
        try model.boundWeightMemory(model.largestLayerBytes - 1, named: "--max-memory 1K")
        Issue.record("a layer larger than the bound was admitted")
    } catch {
        #expect(error.message == "one layer's weights take \(formatBytes(model.largestLayerBytes)), more than --max-memory 1K")
    }
    #expect(!model.releaseWeights)
    try model.boundWeightMemory(model.largestLayerBytes, named: "--max-memory 1G")
    #expect(model.releaseWeights)
}

@Test func sequenceFilesHoldOneArrayALine() throws {
    #expect(try TokenSequenceFile.sequences(in: "[1, 2, 3]\n\n  \n[4.0,5]\n", file: "in.jsonl") == [[1, 2, 3], [4, 5]])
    #expect(try TokenSequenceFile.sequences(in: "[7]", file: "in.jsonl") == [[7]])
}

@Test(arguments: [("[1,2]\n[1.5]\n", "line 2: expected a non-empty JSON array of token ids"),
                  ("\n[]\n", "line 2: expected a non-empty JSON array of token ids"),
                  ("{\"ids\": [1]}\n", "line 1: expected a non-empty JSON array of token ids"),
                  ("[\"a\"]\n", "line 1: expected a non-empty JSON array of token ids"),
                  ("\n\n", "no sequences in the input")])
func badSequenceFilesAreNamed(_ text: String, _ message: String) {
    do throws(TesseraError) {
        _ = try TokenSequenceFile.sequences(in: text, file: "in.jsonl")
        Issue.record("\(text.debugDescription) was accepted")
    } catch {
        #expect(error.code == .invalidArgument && error.message == message && error.file == "in.jsonl", "\(error)")
    }
}

@Test func sequenceFilesAreReadFromDisk() throws {
    let folder = try TemporaryFolder("sequences"), path = folder.file("sequences.jsonl")
    try "[1, 2]\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect(try TokenSequenceFile.read(path) == [[1, 2]])
    do throws(TesseraError) {
        _ = try TokenSequenceFile.read(path + ".missing")
        Issue.record("a missing file was read")
    } catch {
        #expect(error.code == .missing && error.file == path + ".missing")
    }
}
