import Foundation
import Platform

/// Opens any checkpoint form NeMo writes and returns its catalogue.
public enum Checkpoint {
    /// Reads the checkpoint at `path`: a `.nemo` tar, an unpacked NeMo folder, a
    /// `model_weights/` folder, a single `model_weights.ckpt` file, or a Hugging Face
    /// transformers Nemotron folder (`config.json` and safetensors files).
    public static func open(_ path: String, cache: MappingCache = MappingCache()) throws(TesseraError) -> Catalogue {
        let catalogue = try read(path, cache: cache)
        try catalogue.checkShapesAgainstConfig()
        return catalogue
    }

    private static func read(_ path: String, cache: MappingCache) throws(TesseraError) -> Catalogue {
        // Reading metadata touches a page or a large folio per record; give them back.
        defer { cache.releaseAll() }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TesseraError(.missing, "no such file or folder", file: path)
        }
        if !isDir.boolValue {
            try ReadOnlyFile.requireRegularFile(path)
            let probe = try ReadOnlyFile(path: path)
            let head = try probe.read(0, min(512, probe.size))
            if head.count >= 4, head[0] == 0x50, head[1] == 0x4B {
                // A bare torch.save file: treat it as a TP1/PP1 legacy checkpoint.
                let url = URL(fileURLWithPath: path)
                let dir = DirectoryContainer(root: url.deletingLastPathComponent().path)
                let config = try loadConfig(dir, cache: cache)
                return try LegacyReader.read(dir, base: "", files: [[url.lastPathComponent]], config: config, cache: cache)
            }
            if head.count >= 8, head[0] == 0x89, head[1] == 0x48, head[2] == 0x44, head[3] == 0x46 {
                return try HDF5Store.read(path, cache: cache)
            }
            let tar = try TarContainer(path: path)
            return try open(tar, cache: cache)
        }
        return try open(DirectoryContainer(root: path), cache: cache)
    }

    static func loadConfig(_ c: any Container, cache: MappingCache) throws(TesseraError) -> ModelConfig? {
        let name = "model_config.yaml"
        guard c.isFile(name) else { return nil }
        let text = String(decoding: try c.read(name), as: UTF8.self)
        return try ModelConfig(yaml: text, file: c.describe(name))
    }

    static func open(_ c: any Container, cache: MappingCache) throws(TesseraError) -> Catalogue {
        if HFReader.detect(c) { return try HFReader.read(c, cache: cache) }
        var config = try loadConfig(c, cache: cache)
        if c.isFile("model_weights/metadata.json") {
            return try DistReader.read(c, dir: "model_weights", config: config, cache: cache)
        }
        if c.isFile("metadata.json"), let d = c as? DirectoryContainer {
            // The model_weights folder itself; its NeMo folder may hold the config.
            if config == nil {
                let parent = DirectoryContainer(root: URL(fileURLWithPath: d.root).deletingLastPathComponent().path)
                config = try loadConfig(parent, cache: cache)
            }
            return try DistReader.read(c, dir: "", config: config, cache: cache)
        }
        if let files = try LegacyReader.rankFiles(c, base: "") {
            return try LegacyReader.read(c, base: "", files: files, config: config, cache: cache)
        }
        if c.isDirectory("model_weights") {
            throw TesseraError(.missing, "model_weights/ has no metadata.json; the distributed checkpoint is incomplete",
                               file: c.describe("model_weights"))
        }
        throw TesseraError(.missing,
            "no weights found: expected model_weights.ckpt, mp_rank_XX/, tp_rank_XX_pp_rank_XXX/ or model_weights/",
            file: c.displayPath)
    }
}
