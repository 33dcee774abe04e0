import Checkpoints
import Foundation
import Platform

/// What a conversion did.
public struct ConversionReport: Sendable {
    public var destination: String
    public var bytesWritten: Int
    public var notes: [String]
    /// What was done to the vocabulary rows (``ConversionPlan/vocabularyAction``).
    public var vocabulary: String
}

/// Reader -> plan -> writer: writes a checkpoint in another layout and format, streaming
/// each byte once, under a temporary name renamed into place only when complete.
public enum Converter {
    @discardableResult
    public static func convert(_ source: Catalogue, to destination: String, layout: TargetLayout, force: Bool,
                               cache: MappingCache, progress: @escaping @Sendable (Int) -> Void = { _ in })
        throws(TesseraError) -> ConversionReport {
        var layout = layout
        if layout.format == .hf { (layout.tp, layout.pp, layout.stageLayers) = (1, 1, nil) }   // HF holds the whole model
        let plan = try ConversionPlan(source, layout: layout, cache: cache)
        try plan.checkDroppedRows(streamer: TensorStreamer(cache: cache), cache: cache)
        let dest = try AtomicDestination(destination, force: force)
        if layout.format == .hdf5 {
            do throws(TesseraError) {
                let writer = HDF5Writer(plan: plan, streamer: TensorStreamer(cache: cache), progress: progress,
                                        level: layout.compressionLevel)
                try writer.write(to: dest.temporaryPath, configText: try configText(plan, cache: cache),
                                 artifacts: try artifacts(plan, cache: cache))
                try dest.commit()
            } catch {
                dest.abandon()
                throw error
            }
            return ConversionReport(destination: dest.path, bytesWritten: plan.byteCount, notes: plan.notes,
                                    vocabulary: plan.vocabularyAction)
        }
        let asTar = destination.hasSuffix(".nemo")
        let folder = asTar ? dest.temporaryPath + ".d" : dest.temporaryPath
        do throws(TesseraError) {
            try? FileManager.default.removeItem(atPath: folder)
            do { try Folder.create(folder) } catch {
                throw TesseraError.system("cannot create the output folder", file: destination, errorNumber: error.errorNumber ?? EIO)
            }
            let streamer = TensorStreamer(cache: cache)
            switch layout.format {
            case .nemo:
                try LegacyWriter(plan: plan, streamer: streamer, progress: progress).write(into: folder)
            case .distZarr:
                try DistZarrWriter(plan: plan, streamer: streamer, progress: progress).write(into: folder)
            case .distTorch:
                try DistTorchWriter(plan: plan, streamer: streamer, progress: progress).write(into: folder)
            case .hdf5:
                break
            case .hf:
                try writeHF(plan, into: folder, streamer: streamer, progress: progress, cache: cache)
                try dest.commit()
                return ConversionReport(destination: dest.path, bytesWritten: plan.byteCount, notes: plan.notes,
                                        vocabulary: plan.vocabularyAction)
            }
            try writeConfigAndArtifacts(plan, into: folder, cache: cache)
            if asTar {
                try TarWriter.pack(folder: folder, to: dest.temporaryPath, removingPacked: true)
                try? FileManager.default.removeItem(atPath: folder)
            }
            try dest.commit()
        } catch {
            try? FileManager.default.removeItem(atPath: folder)
            dest.abandon()
            throw error
        }
        return ConversionReport(destination: dest.path, bytesWritten: plan.byteCount, notes: plan.notes,
                                    vocabulary: plan.vocabularyAction)
    }

    /// Files other than weights at the top of a checkpoint (NeMo folders and HDF5 stores alike).
    static func isWeights(_ name: String) -> Bool {
        name == "model_weights.ckpt" || name == "model_weights" || name.hasPrefix("mp_rank_")
            || name.hasPrefix("tp_rank_") || name.hasPrefix(".") || name == "model_config.yaml"
    }

    /// The source's top-level folder, when the weights sit in a NeMo folder (or store) with other files.
    static func artifactRoot(_ plan: ConversionPlan) -> String? {
        let c = plan.source.container
        return plan.source.weightsPath.isEmpty && !c.isFile("model_config.yaml") && plan.source.format != .hdf5 ? nil : ""
    }

    /// The config with the new parallel sizes (and vocabulary size, when every row was kept
    /// beyond `override_vocab_size`), everything else kept as it was.
    static func configText(_ plan: ConversionPlan, cache: MappingCache) throws(TesseraError) -> String {
        let c = plan.source.container
        var text = plan.source.foreign?.configYAML ?? ""
        if plan.source.foreign == nil, c.isFile("model_config.yaml") {
            text = String(decoding: try c.read("model_config.yaml"), as: UTF8.self)
        }
        text = ConfigText.set("tensor_model_parallel_size", to: String(plan.layout.tp), in: text)
        text = ConfigText.set("pipeline_model_parallel_size", to: String(plan.layout.pp), in: text)
        if let o = plan.config.overrideVocabSize, o != plan.source.config?.overrideVocabSize {
            text = ConfigText.set("override_vocab_size", to: String(o), in: text)  // every row kept (--vocab-rows keep)
        }
        switch plan.layout.format {
        case .nemo, .hdf5, .hf: break
        case .distZarr: text = ConfigText.set("dist_ckpt_format", to: "zarr", in: text)
        case .distTorch: text = ConfigText.set("dist_ckpt_format", to: "torch_dist", in: text)
        }
        return text
    }

    /// The other top-level files (tokenizer, ...) with their bytes, plus the new config.
    static func artifacts(_ plan: ConversionPlan, cache: MappingCache) throws(TesseraError) -> [(String, [UInt8])] {
        let c = plan.source.container
        var out: [(String, [UInt8])] = []
        if let foreign = plan.source.foreign {
            for a in foreign.artifacts { out.append((a.name, try c.read(a.path))) }
        } else if let root = artifactRoot(plan) {
            for name in c.children(root) where !isWeights(name) && c.isFile(c.join(root, name)) {
                out.append((name, try c.read(c.join(root, name))))
            }
        }
        out.append(("model_config.yaml", Array(try configText(plan, cache: cache).utf8)))
        return out
    }

    /// Copies the checkpoint's other files (tokenizer and other artifacts) and writes the
    /// config with the new parallel sizes.
    static func writeConfigAndArtifacts(_ plan: ConversionPlan, into folder: String, cache: MappingCache) throws(TesseraError) {
        let c = plan.source.container
        if let foreign = plan.source.foreign {
            for a in foreign.artifacts { try copyTree(c, a.path, to: folder + "/" + a.name, cache: cache) }
        } else if let root = artifactRoot(plan) {
            for name in c.children(root) where !isWeights(name) {
                try copyTree(c, c.join(root, name), to: folder + "/" + name, cache: cache)
            }
        }
        var config = try OutputFile(creating: folder + "/model_config.yaml")
        try config.write(Array(try configText(plan, cache: cache).utf8))
        try config.close()
    }

    static func copyTree(_ c: any Container, _ path: String, to dst: String, cache: MappingCache) throws(TesseraError) {
        if c.isDirectory(path) {
            try Folder.create(dst)
            for child in c.children(path) { try copyTree(c, c.join(path, child), to: dst + "/" + child, cache: cache) }
            return
        }
        guard path != "model_config.yaml" else { return }
        let s = try c.slice(path)
        var out = try OutputFile(creating: dst)
        try out.write(try ReadOnlyFile(path: s.path).read(s.offset, s.count))
        try out.close()
    }
}

extension Converter {
    /// The Hugging Face folder: weights, config, tokenizer (the source's SentencePiece artifact).
    static func writeHF(_ plan: ConversionPlan, into folder: String, streamer: TensorStreamer,
                        progress: @escaping @Sendable (Int) -> Void, cache: MappingCache) throws(TesseraError) {
        let c = plan.source.container
        var tokenizer: [UInt8]?
        if let name = plan.source.config?.tokenizerModel, c.isFile(name) { tokenizer = try c.read(name) }
        try HFWriter(plan: plan, streamer: streamer, shardSize: plan.layout.shardSize, progress: progress)
            .write(into: folder, configYAML: try configText(plan, cache: cache), tokenizer: tokenizer)
    }
}

/// Edits of `model_config.yaml` that keep every other line as it was.
public enum ConfigText {
    /// Sets `key: value` at the model level (under `model:` when the file has one).
    public static func set(_ key: String, to value: String, in text: String) -> String {
        var lines = text.components(separatedBy: "\n")
        let nested = lines.contains { $0.hasPrefix("model:") }
        let indent = nested ? "  " : ""
        for (i, line) in lines.enumerated() where line.hasPrefix(indent + key + ":") {
            lines[i] = indent + key + ": " + value
            return lines.joined(separator: "\n")
        }
        if nested, let at = lines.firstIndex(where: { $0.hasPrefix("model:") }) {
            lines.insert(indent + key + ": " + value, at: at + 1)
        } else {
            if lines.last == "" { lines.removeLast() }
            lines.append(key + ": " + value)
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}
