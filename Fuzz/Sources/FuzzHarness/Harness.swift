import Checkpoints
import Foundation
import Platform
import Scoring
import Sharding
import Tokenizer
import TorchFormat

/// What each fuzz target feeds its input to. Every input must end in a result or a
/// ``TesseraError``: a crash, a sanitizer report, a huge allocation or a hang is a finding.
public enum FuzzTarget: Sendable {
    /// A torch.save zip archive (a legacy `model_weights.ckpt`): the zip and its pickle.
    case zip
    /// A pickle on its own.
    case unpickler
    /// A torch_dist checkpoint's `.metadata`, then every tensor's digest.
    case dcpMetadata
    /// A torch_dist `.distcp` shard file, then every tensor's digest.
    case distcpItem
    /// A zarr array's `.zarray`, then every tensor's digest.
    case zarrMetadata
    /// A `.nemo` tar, opened as a checkpoint, then every tensor's digest.
    case tar
    /// `model_config.yaml`.
    case modelConfig
    /// A SentencePiece `.model` protobuf, then an encoding.
    case sentencePiece
    /// A line of scoring JSONL (NeMo-Aligner's conversation format).
    case scoringJSONL
    /// An HDF5 store, opened as a checkpoint, then every tensor's digest.
    case hdf5Store
    /// A Hugging Face folder's safetensors file, then every tensor's digest.
    case safetensors
    /// A Hugging Face folder's `config.json`, then every tensor's digest.
    case hfConfig

    /// Runs one input.
    public func run(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        let bytes = UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
        do throws(TesseraError) {
            switch self {
            case .zip:
                let path = Scratch.file("model_weights.ckpt", bytes)
                let slice = FileSlice(path: path, offset: 0, count: size)
                _ = try TorchArchive(slice, cache: MappingCache())
            case .unpickler:
                _ = try Unpickler.load(bytes)
            case .dcpMetadata:
                try Scratch.damaged("dist_torch_tp1pp1_bf16", "model_weights/.metadata", bytes)
            case .distcpItem:
                try Scratch.damaged("dist_torch_tp1pp1_bf16", "model_weights/__0_0.distcp", bytes)
            case .zarrMetadata:
                try Scratch.damaged("dist_zarr_tp1pp1_bf16", "model_weights/model.output_layer.weight/.zarray", bytes)
            case .tar:
                try Scratch.openAndDigest(Scratch.file("model.nemo", bytes))
            case .modelConfig:
                _ = try ModelConfig(yaml: String(decoding: bytes, as: UTF8.self), file: "model_config.yaml")
            case .sentencePiece:
                let sp = try SentencePieceModel(bytes: Array(bytes), file: "tokenizer.model")
                _ = sp.decode(sp.encodeIDs("Hello, world! ünïcödé 12345"))
            case .scoringJSONL:
                let value = try JSONValue.parse(String(decoding: bytes, as: UTF8.self))
                try Annotator.validate(value)
                _ = Annotator.key(value)
            case .hdf5Store:
                try Scratch.openAndDigest(Scratch.file("store.h5", bytes))
            case .safetensors:
                try Scratch.damagedHF(Scratch.hfWeights, bytes)
            case .hfConfig:
                try Scratch.damagedHF("config.json", bytes)
            }
        } catch {
            // A named failure is the right answer to a damaged input.
        }
        return 0
    }
}

/// A private scratch folder (in /dev/shm when there is one), removed when the process exits.
enum Scratch {
    nonisolated(unsafe) static var folder: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = base + "/tessera-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.folder) }
        return dir
    }()

    /// Tests/Fixtures/tiny of this clone.
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/tiny").path

    /// Writes `bytes` as the scratch file `name`; returns its path.
    static func file(_ name: String, _ bytes: UnsafeRawBufferPointer) -> String {
        let path = folder + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// A scratch copy of `fixture` (made once) with `member` replaced by `bytes`, opened and
    /// digested.
    static func damaged(_ fixture: String, _ member: String, _ bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        let copy = folder + "/" + fixture
        if !FileManager.default.fileExists(atPath: copy) {
            try? FileManager.default.copyItem(atPath: fixtures + "/" + fixture, toPath: copy)
        }
        try replace(member, of: copy, with: bytes)
    }

    /// The safetensors file of the Hugging Face export of the tiny fixture (one shard).
    static let hfWeights = "model-00001-of-00001.safetensors"

    /// A scratch Hugging Face export of the tiny fixture (made once) with `member` replaced by
    /// `bytes`, opened and digested.
    static func damagedHF(_ member: String, _ bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        let copy = folder + "/hf"
        if !FileManager.default.fileExists(atPath: copy + "/config.json") {
            let cache = MappingCache()
            let source = try Checkpoint.open(fixtures + "/legacy_tp1pp1_bf16_local_none", cache: cache)
            try Converter.convert(source, to: copy, layout: TargetLayout(tp: 1, pp: 1, format: .hf), force: true, cache: cache)
        }
        try replace(member, of: copy, with: bytes)
    }

    /// The scratch checkpoint `copy` with `member` replaced by `bytes`, opened and digested.
    static func replace(_ member: String, of copy: String, with bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        let path = copy + "/" + member
        try? FileManager.default.removeItem(atPath: path)
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        try openAndDigest(copy)
    }

    /// Opens a checkpoint and streams every tensor once (`inspect --digests`).
    static func openAndDigest(_ path: String) throws(TesseraError) {
        let cache = MappingCache()
        let catalogue = try Checkpoint.open(path, cache: cache)
        _ = try TensorStreamer(cache: cache).digests(catalogue.tensors, threads: 1)
    }
}
