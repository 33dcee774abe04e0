import ArgumentParser
import Checkpoints
import Foundation
import Platform

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint: format, layout, model and every global tensor.",
        discussion: """
        Without --digests only metadata is read, so this takes the same time for a tiny model and \
        for a 682 GB one. With --digests every tensor is streamed once and its SHA-256 (over the \
        global tensor's bytes in C order, in its stored dtype) is printed; replicated copies on \
        other tensor-parallel ranks are checked to be identical.
        """
    )

    @Argument(help: "A .nemo file, an unpacked NeMo folder, a model_weights/ folder or a model_weights.ckpt file.")
    var path: String

    @Flag(help: "Print one JSON object (see Schemas/inspect.schema.json).")
    var json = false

    @Flag(help: "Compute the SHA-256 of every global tensor.")
    var digests = false

    @Option(help: "Threads used for --digests.")
    var threads = 2

    func run() throws {
        do {
            let cache = MappingCache()
            let cat = try Checkpoint.open(path, cache: cache)
            var sums: [String]?
            if digests {
                let progress = Progress(total: cat.byteCount, label: "digests", enabled: !json)
                sums = try TensorStreamer(cache: cache).digests(cat.tensors, threads: threads) { progress.advance($0) }
                progress.finish()
            }
            let report = InspectReport(cat, digests: sums)
            if json {
                try OutputSink.standardOutput.writeLine(report.jsonString())
            } else {
                try OutputSink.standardOutput.writeLine(report.text())
            }
        }
    }
}

/// What `inspect` prints; `--json` follows Schemas/inspect.schema.json.
struct InspectReport: Encodable {
    struct Tensor: Encodable {
        var name: String
        var dtype: String
        var shape: [Int]
        var sha256: String?
    }
    struct Object: Encodable {
        var name: String
        var kind: String
    }
    var format: String
    var tp: Int
    var pp: Int
    var stage_layers: [Int]?
    var config: ModelConfig?
    var key_spelling: String?
    var total_bytes: Int
    var tensors: [Tensor]
    var objects: [Object]

    init(_ c: Catalogue, digests: [String]?) {
        format = c.format.rawValue
        tp = c.tp
        pp = c.pp
        stage_layers = c.stageLayers
        config = c.config
        key_spelling = c.spelling?.rawValue
        total_bytes = c.byteCount
        tensors = c.tensors.enumerated().map { i, t in
            Tensor(name: t.name, dtype: t.dtype.rawValue, shape: t.shape, sha256: digests?[i])
        }
        objects = c.objects.map { Object(name: $0.name, kind: $0.kind) }
    }

    func jsonString() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }

    func text() -> String {
        var out: [String] = []
        out.append("format      \(format)")
        out.append("layout      TP=\(tp) PP=\(pp)" + (stage_layers.map { " (layers per stage: " + $0.map(String.init).joined(separator: ", ") + ")" } ?? ""))
        if let c = config {
            out.append("model       \(c.numLayers) layers, hidden \(c.hiddenSize), ffn \(c.ffnHiddenSize) (\(c.activation)), " +
                       "\(c.numAttentionHeads) heads / \(c.numQueryGroups) query groups x \(c.kvChannels)")
            out.append("            \(c.normalization), rope \(c.rotaryPercentage) base \(Int(c.rotaryBase)), " +
                       "vocab \(c.paddedVocabSize.map(String.init) ?? "?") (padded), " +
                       (c.rewardOutputs.map { "reward head \($0) outputs" } ?? "no reward head"))
            if !c.unrunSettings.isEmpty { out.append("            not run by the engine: \(c.unrunSettings.joined(separator: ", "))") }
        } else {
            out.append("model       (no model_config.yaml)")
        }
        if let s = key_spelling { out.append("key names   \(s == "te" ? "TransformerEngine" : "local spec")") }
        let params = tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
        out.append("size        \(tensors.count) tensors, \(params) parameters, \(formatBytes(total_bytes))")
        if !objects.isEmpty {
            let kinds = Dictionary(grouping: objects, by: \.kind).map { "\($0.value.count) \($0.key)" }.sorted()
            out.append("objects     \(objects.count) _extra_state (\(kinds.joined(separator: ", ")))")
        }
        out.append("")
        let width = tensors.map(\.name.count).max() ?? 4
        for t in tensors {
            let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
            var line = t.name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                + t.dtype.padding(toLength: 10, withPad: " ", startingAt: 0)
                + shape.padding(toLength: 16, withPad: " ", startingAt: 0)
            if let d = t.sha256 { line += " " + d }
            out.append(line)
        }
        return out.joined(separator: "\n")
    }
}
