import Foundation
import Glibc
import Platform
import TestSupport
import Testing

@Test func helpDescribesTheCommands() throws {
    let r = try run(["--help"])
    #expect(r.status == 0)
    for word in ["inspect", "convert", "demo"] { #expect(r.stdout.contains(word)) }
    let v = try run(["--version"])
    #expect(v.status == 0)
    #expect(v.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == TesseraVersion.string)
}

@Test func badInputExitsWithTwoAndNamesTheFile() throws {
    let r = try run(["inspect", "/nonexistent/checkpoint"])
    #expect(r.status == 2)
    #expect(r.stderr.contains("/nonexistent/checkpoint"))
}

/// A pipe named where a checkpoint or tokenizer file belongs is refused at once with exit 2
/// (opening a FIFO that has no writer would wait for one), and an output whose folder cannot
/// be made names the output and the reason.
@Test func pipesAndUnmakeableFoldersAreRefusedNotWaitedOn() throws {
    let scratch = try TemporaryFolder("cli-fifo")
    let fifo = scratch.file("model.nemo")
    #expect(mkfifo(fifo, 0o600) == 0)
    for args in [["inspect", fifo], ["tokenize", "--tokenizer", fifo, "--text", "hi"]] {
        let r = try runBounded(args, seconds: 20)
        #expect(r.exited && r.status == 2, "\(args): \(r)")
        #expect(r.stderr.hasPrefix("tessera: error: \(fifo): not a regular file"), "\(r)")
    }
    #expect(FileManager.default.createFile(atPath: scratch.file("plain"), contents: Data([1])))
    let out = scratch.file("plain/converted")
    let r = try run(["convert", try legacyFixture(), out, "--tp", "1", "--pp", "1"])
    #expect(r.status == 2)
    #expect(r.stderr.hasPrefix("tessera: error: \(out): cannot create its folder") && r.stderr.contains("Not a directory"), "\(r.stderr)")
}

/// A library's multi-line message (the YAML parser's excerpt of the bad line and its caret)
/// still makes one line on stderr, as the contract has every failure.
@Test func aMultiLineLibraryMessageIsPrintedOnOneLine() throws {
    let scratch = try TemporaryFolder("cli-yaml")
    let copy = try scratch.copy(Fixtures.path("tiny/dist_zarr_tp1pp1_bf16"))
    let config = copy + "/model_config.yaml"
    try (try String(contentsOfFile: config, encoding: .utf8) + "garbage: [\n").write(toFile: config, atomically: true, encoding: .utf8)
    let r = try run(["inspect", copy])
    #expect(r.status == 2)
    #expect(r.stderr.hasPrefix("tessera: error: \(config): not valid YAML: "), "\(r.stderr)")
    #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasSuffix(" [corrupt]\n"), "\(r.stderr)")
}

@Test func inspectJSONFollowsTheContract() throws {
    let path = try legacyFixture()
    let r = try run(["inspect", "--json", "--digests", path])
    #expect(r.status == 0)
    let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    #expect(obj["format"] as? String == "nemo-legacy")
    #expect(obj["tp"] as? Int == 1)
    let tensors = try #require(obj["tensors"] as? [[String: Any]])
    #expect(tensors.first?["name"] as? String == "embedding.word_embeddings.weight")
    #expect(tensors.allSatisfy { ($0["sha256"] as? String)?.count == 64 })
    let config = try #require(obj["config"] as? [String: Any])
    #expect(config["num_layers"] as? Int == 4)
    #expect(config["padded_vocab_size"] as? Int == 512)
}

@Test func scoreWritesLabelsAndResumes() throws {
    let scratch = try TemporaryFolder("score")
    let dir = scratch.path
    let input = dir + "/in.jsonl", output = dir + "/out.jsonl"
    try (#"{"conversations": [{"value": "Hi", "from": "User", "label": null}, {"value": "Hello!", "from": "Assistant", "label": "x"}], "mask": "User"}"# + "\n"
         + #"{"conversations": [{"value": "Bye", "from": "User", "label": null}, {"value": "Goodbye.", "from": "Assistant", "label": "y"}], "mask": "User"}"# + "\n")
        .write(toFile: input, atomically: true, encoding: .utf8)
    let ckpt = Fixtures.path("tiny/nemo/legacy_tp2pp2_bf16_te_bytesio.nemo")
    let r = try run(["score", ckpt, "--input", input, "--output", output])
    #expect(r.status == 0)
    let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 2)
    #expect(lines.allSatisfy { $0.contains("\"label\": \"quality:") && $0.contains("\"rewards\": [") })
    // Running again resumes: nothing is scored twice.
    let again = try run(["score", ckpt, "--input", input, "--output", output])
    #expect(again.status == 0)
    #expect(try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").count == 2)
    #expect(again.stderr.contains("2 already in the output"))
}

@Test func badScoringInputNamesTheLineAndKeepsWhatWasDone() throws {
    let scratch = try TemporaryFolder("bad")
    let dir = scratch.path
    let input = dir + "/in.jsonl", output = dir + "/out.jsonl"
    try [#"{"conversations": [{"value": "Hi", "from": "User", "label": null}, {"value": "Hello!", "from": "Assistant", "label": "x"}], "mask": "User"}"#,
         "not json",
         #"{"conversations": [], "mask": "User"}"#,
         #"{"conversations": [{"value": "Hi", "from": "Bot", "label": "x"}], "mask": "User"}"#,
         #"{"conversations": [{"from": "User"}], "mask": "User"}"#].joined(separator: "\n").write(toFile: input, atomically: true, encoding: .utf8)
    let ckpt = Fixtures.path("tiny/nemo/legacy_tp2pp2_bf16_te_bytesio.nemo")
    let r = try run(["score", ckpt, "--input", input, "--output", output])
    #expect(r.status == 2)
    #expect(r.stderr.contains("line 2"))
    #expect(try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").count == 1, "line 1 was written")
    try FileManager.default.removeItem(atPath: output)
    let skip = try run(["score", ckpt, "--input", input, "--output", output, "--skip-bad-lines"])
    #expect(skip.status == 0)
    let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 5)
    #expect(lines.filter { $0.hasPrefix("{\"error\": ") }.count == 4)
    #expect(lines[2].contains("empty") && lines[3].contains("mask speaker") && lines[4].contains("'from' or 'value'"))
}

/// `forward --input` runs a batch (one JSON line per sequence, in order): on every kernel path
/// the CPU supports, each line is byte for byte the line of that sequence run alone, with 1 or 2
/// threads, and names its kernel path; `--max-memory` refuses a batch that cannot fit and runs
/// one that can.
@Test func forwardBatchesAreBitIdenticalOnEveryPathAndHonourMaxMemory() throws {
    let path = try legacyFixture()
    let scratch = try TemporaryFolder("forward")
    let batch = scratch.file("batch.jsonl")
    try "[5,6,7,8]\n[9,10]\n".write(toFile: batch, atomically: true, encoding: .utf8)
    for isa in ["portable", "avx2", "avx512", "avx512bf16", "amx"] {
        let env = ["TESSERA_ISA": isa]
        let probe = try run(["forward", path, "--tokens", "1"], environment: env)
        guard probe.status == 0 else {
            #expect(probe.status == 2 && probe.stderr.contains("lacks"), "\(isa): \(probe.stderr)")
            continue
        }
        for precision in ["fp32", "bf16"] {
            let batched = try run(["forward", path, "--input", batch, "--precision", precision, "--json", "--threads", "2"], environment: env)
            #expect(batched.status == 0)
            let lines = batched.stdout.split(separator: "\n").map(String.init)
            let first = try run(["forward", path, "--tokens", "5,6,7,8", "--precision", precision, "--json", "--threads", "1"], environment: env)
            let second = try run(["forward", path, "--tokens", "9,10", "--precision", precision, "--json"], environment: env)
            #expect(lines == [first.stdout, second.stdout].map { $0.trimmingCharacters(in: .newlines) }, "\(isa) \(precision)")
            #expect(lines.allSatisfy { $0.contains("\"kernel_path\":\"\(isa)\"") && $0.contains("\"precision\":\"\(precision)\"") })
        }
    }
    let tooSmall = try run(["forward", path, "--input", batch, "--max-memory", "1K"])
    #expect(tooSmall.status == 2)
    #expect(tooSmall.stderr.contains("--max-memory"))
    #expect(try run(["forward", path, "--input", batch, "--max-memory", "1G"]).status == 0)
}

/// The JSON Schemas that name a kernel path list every path the engine has (the list its own
/// refusal of an unknown path gives), so a record from any CPU validates.
@Test func schemasListEveryKernelPath() throws {
    let refusal = try run(["forward", try legacyFixture(), "--tokens", "1"], environment: ["TESSERA_ISA": "sse9"])
    #expect(refusal.status == 2)
    let message = refusal.stderr
    let listed = try #require(message.range(of: "use one of ").map { message[$0.upperBound...].prefix { $0 != "[" && $0 != "\n" } })
    let paths = try requireCases(listed.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }, "kernel paths", atLeast: 2)
    let schemas = URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Schemas")
    for name in try requireCases(["forward.schema.json", "conversation.schema.json"], "schemas") {
        let schema = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: schemas.appendingPathComponent(name))) as? [String: Any])
        let properties = try #require(schema["properties"] as? [String: Any])
        let kernelPath = try #require(properties["kernel_path"] as? [String: Any], "\(name)")
        let allowed = try #require(kernelPath["enum"] as? [String], "\(name)")
        #expect(allowed.sorted() == paths.sorted(), "\(name) lists \(allowed), the engine has \(paths)")
    }
}

/// A kernel path that is unknown, or that the CPU lacks (TESSERA_ISA_LIMIT makes this CPU look
/// like an AVX2-only one), is refused with exit 2 and a message naming the paths it supports;
/// --timing names the CPU and the path; --threads must be positive.
@Test func unsupportedKernelPathsAreRefusedNotExecuted() throws {
    let path = try legacyFixture()
    let unknown = try run(["forward", path, "--tokens", "1"], environment: ["TESSERA_ISA": "sse9"])
    #expect(unknown.status == 2 && unknown.stderr.contains("portable, avx2, avx512, avx512bf16, amx"))
    for isa in ["avx512", "avx512bf16", "amx"] {
        let refused = try run(["forward", path, "--tokens", "1"], environment: ["TESSERA_ISA": isa, "TESSERA_ISA_LIMIT": "avx2"])
        #expect(refused.status == 2, "\(isa)")
        #expect(refused.stderr.contains("lacks its instructions") && refused.stderr.contains("supports portable, avx2"))
    }
    let limited = try run(["forward", path, "--tokens", "1", "--timing"], environment: ["TESSERA_ISA_LIMIT": "avx2"])
    #expect(limited.status == 0 && limited.stderr.contains("kernel path avx2"))
    let timing = try run(["forward", path, "--tokens", "1", "--timing"], environment: ["TESSERA_ISA": "portable"])
    #expect(timing.stderr.contains("cpu: ") && timing.stderr.contains("kernel path portable"))
    #expect(try run(["forward", path, "--tokens", "1", "--threads", "0"]).status == 2)
}

/// Without --tp/--pp, convert keeps the source's layout: an HDF5 store goes back to the layout
/// it records, its uneven pipeline split included.
@Test func convertDefaultsToTheLayoutAStoreRecords() throws {
    let source = Fixtures.path("tiny/legacy_tp2pp2_bf16_te_bytesio")
    let scratch = try TemporaryFolder("cli-layout")
    let dir = scratch.path
    let store = dir + "/store.h5", back = dir + "/back"
    let made = try run(["convert", source, store, "--tp", "2", "--pp", "2", "--stage-layers", "1,3", "--format", "hdf5"])
    #expect(made.status == 0, "\(made.stderr)")
    let r = try run(["convert", store, back, "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    #expect(report["tp"] as? Int == 2 && report["pp"] as? Int == 2)
    let ranks = try FileManager.default.contentsOfDirectory(atPath: back).filter { $0.hasPrefix("tp_rank_") }.sorted()
    #expect(ranks == ["tp_rank_00_pp_rank_000", "tp_rank_00_pp_rank_001", "tp_rank_01_pp_rank_000", "tp_rank_01_pp_rank_001"])
    // One layer in stage 0, three in stage 1: the store's split, not an even one.
    let info = try run(["inspect", "--json", back])
    #expect(info.status == 0)
    let described = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
    #expect(described["stage_layers"] as? [Int] == [1, 3])
    let verified = try run(["verify", source, back, "--weights-only"])
    #expect(verified.status == 0, "\(verified.stdout)")
}

/// `convert --format hf`, then a shard whose header length runs past the end of the file:
/// `inspect` exits 2 naming the shard; `verify` against the source is EQUIVALENT before.
@Test func hfExportAndDamagedShardExitTwoNamingTheFile() throws {
    let path = try legacyFixture()
    let scratch = try TemporaryFolder("cli-hf")
    let dir = scratch.path
    let hf = dir + "/hf"
    let c = try run(["convert", path, hf, "--format", "hf", "--json"])
    #expect(c.status == 0, "\(c.stderr)")
    let v = try run(["verify", path, hf])
    #expect(v.status == 0, "\(v.stdout)")
    let shard = hf + "/model-00001-of-00001.safetensors"
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: shard))
    try h.write(contentsOf: Data([0xFF, 0xFF, 0xFF, 0x00, 0, 0, 0, 0]))
    try h.close()
    let r = try run(["inspect", hf])
    #expect(r.status == 2)
    #expect(r.stderr.contains(shard), "\(r.stderr)")
}

/// Two checkpoints with the same weights whose configs differ in a setting that changes the
/// arithmetic (interleaved RoPE) are not the same model: verify says so, even weights-only.
@Test func verifyComparesTheSettingsTheEngineDoesNotRun() throws {
    let scratch = try TemporaryFolder("cli-unrun")
    let source = Fixtures.path("tiny/dist_zarr_tp1pp1_bf16")
    let copy = try scratch.copy(source)
    let config = copy + "/model_config.yaml"
    let text = try String(contentsOfFile: config, encoding: .utf8)
    #expect(text.contains("rotary_interleaved: false\n"))
    try text.replacingOccurrences(of: "rotary_interleaved: false\n", with: "rotary_interleaved: true\n")
        .write(toFile: config, atomically: true, encoding: .utf8)
    let r = try run(["verify", source, copy, "--weights-only"])
    #expect(r.status == 1, "\(r.stderr)")
    #expect(r.stdout.contains("settings the engine does not run: none vs rotary_interleaved: true"), "\(r.stdout)")
    let forward = try run(["forward", copy, "--tokens", "1,2,3"])
    #expect(forward.status == 2 && forward.stderr.contains("does not run a model with rotary_interleaved: true"), "\(forward.stderr)")
}
