import Platform
import TorchFormat

/// Reads NeMo's per-rank `torch.save` files (`model_weights.ckpt`, `mp_rank_XX/`,
/// `tp_rank_XX_pp_rank_XXX/`) into a catalogue, mapping every local shard to its
/// place in the global tensor through ``PartitionRule``.
enum LegacyReader {
    /// The rank files of a legacy checkpoint under `base`, as `files[pp][tp]`.
    static func rankFiles(_ c: any Container, base: String) throws(TesseraError) -> [[String]]? {
        let top = c.join(base, "model_weights.ckpt")
        if c.isFile(top) { return [[top]] }
        var mp: [Int: String] = [:]
        var grid: [Int: [Int: String]] = [:]
        for name in c.children(base) {
            let parts = name.split(separator: "_")
            if parts.count == 3, name.hasPrefix("mp_rank_"), let r = Int(parts[2]), parts[2].count == 2 {
                mp[r] = name
            } else if parts.count == 6, name.hasPrefix("tp_rank_"), parts[3] == "pp", let t = Int(parts[2]), let p = Int(parts[5]) {
                grid[p, default: [:]][t] = name
            }
        }
        if mp.isEmpty && grid.isEmpty { return nil }
        if !mp.isEmpty && !grid.isEmpty {
            throw TesseraError(.inconsistent, "both mp_rank_XX and tp_rank_XX_pp_rank_XXX folders are present", file: c.describe(base))
        }
        if !mp.isEmpty { grid = [0: mp] }
        let pp = (grid.keys.max() ?? 0) + 1
        let tp = (grid.values.flatMap(\.keys).max() ?? 0) + 1
        var files: [[String]] = []
        for p in 0..<pp {
            var row: [String] = []
            for t in 0..<tp {
                let expected = mp.isEmpty ? "tp_rank_\(twoDigits(t))_pp_rank_\(threeDigits(p))" : "mp_rank_\(twoDigits(t))"
                guard let dir = grid[p]?[t] else {
                    throw TesseraError(.missing,
                        "rank folder '\(expected)' is missing (found \(tp)x\(pp) layout with gaps)", file: c.describe(base))
                }
                let f = c.join(c.join(base, dir), "model_weights.ckpt")
                guard c.isFile(f) else {
                    throw TesseraError(.missing, "rank file is missing", file: c.describe(f))
                }
                row.append(f)
            }
            files.append(row)
        }
        return files
    }

    static func read(_ c: any Container, base: String, files: [[String]], config: ModelConfig?,
                     cache: MappingCache) throws(TesseraError) -> Catalogue {
        let pp = files.count, tp = files[0].count
        if let config, config.tensorModelParallelSize * config.pipelineModelParallelSize != tp * pp {
            throw TesseraError(.missing,
                "model_config.yaml says TP=\(config.tensorModelParallelSize) PP=\(config.pipelineModelParallelSize) but rank files for TP=\(tp) PP=\(pp) were found; rank folders are missing or extra",
                file: c.describe(base))
        }
        let archives = try openArchives(c, files: files, cache: cache)
        let stageLayers = try layersPerStage(archives, c, files: files)
        let total = stageLayers.reduce(0, +)
        if let config, config.numLayers != total {
            throw TesseraError(.inconsistent,
                "the rank files hold \(total) layers but model_config.yaml says num_layers \(config.numLayers)",
                file: c.describe(base))
        }
        var entries = RankEntries(tp: tp, gated: config?.gatedLinearUnit ?? false, cache: cache)
        var offset = 0
        for p in 0..<pp {
            for t in 0..<tp { try entries.add(archives[p][t], rank: t, layerOffset: offset, file: c.describe(files[p][t])) }
            offset += stageLayers[p]
        }
        var cfg = config
        let tensors = try entries.builder.finish()
        if let emb = tensors.first(where: { $0.name == "embedding.word_embeddings.weight" }) { cfg?.paddedVocabSize = emb.shape[0] }
        var catalogue = Catalogue(format: .nemoLegacy, tp: tp, pp: pp, config: cfg, tensors: tensors, objects: entries.objects,
                                  spelling: entries.spelling, container: c, weightsPath: base)
        catalogue.stageLayers = pp > 1 ? stageLayers : nil
        return catalogue
    }

    /// The rank files opened, each checked to hold a state dict.
    static func openArchives(_ c: any Container, files: [[String]], cache: MappingCache) throws(TesseraError) -> [[TorchArchive]] {
        var archives: [[TorchArchive]] = []
        for row in files {
            var r: [TorchArchive] = []
            for f in row {
                let a: TorchArchive
                do { a = try TorchArchive(try c.slice(f), cache: cache) } catch { throw error.inFile(c.describe(f)) }
                guard a.stateDict != nil else {
                    throw TesseraError(.corrupt, "expected a state dict (a dict of tensors) at the top level", file: c.describe(f))
                }
                r.append(a)
            }
            archives.append(r)
        }
        return archives
    }

    /// Layers of each pipeline stage, from TP rank 0 of the stage (which must hold layers 0..<n).
    static func layersPerStage(_ archives: [[TorchArchive]], _ c: any Container, files: [[String]]) throws(TesseraError) -> [Int] {
        var stageLayers: [Int] = []
        for p in archives.indices {
            var layers = Set<Int>()
            for (key, _) in archives[p][0].stateDict!.items {
                if let k = key.string, let (l, _) = CanonicalName.layerParts(CanonicalName.canonical(k).name) { layers.insert(l) }
            }
            if let m = layers.max(), layers.count != m + 1 {
                throw TesseraError(.inconsistent, "stage holds layers \(layers.sorted()), expected 0..<\(m + 1)",
                                   file: c.describe(files[p][0]))
            }
            stageLayers.append(layers.count)
        }
        return stageLayers
    }

    /// The entries of the rank files gathered into global tensors and `_extra_state` objects.
    struct RankEntries {
        let tp: Int
        let gated: Bool
        let cache: MappingCache
        var builder = CatalogueBuilder()
        var objects: [ObjectEntry] = []
        /// The layer-norm spelling of the first key that tells.
        var spelling: CanonicalName.Spelling?

        /// Adds the entries of the file of TP rank `t` (named `file`) of a stage whose first
        /// layer is global layer `layerOffset`.
        mutating func add(_ archive: TorchArchive, rank t: Int, layerOffset: Int, file: String) throws(TesseraError) {
            for (keyValue, value) in archive.stateDict!.items {
                guard let key = keyValue.string else { continue }
                var (name, sp) = CanonicalName.canonical(key)
                if let (l, suffix) = CanonicalName.layerParts(name) {
                    name = "decoder.layers.\(l + layerOffset).\(suffix)"
                }
                if let sp { spelling = spelling ?? sp }
                if name.hasSuffix("._extra_state") || name == "_extra_state" {
                    if t == 0 { objects.append(try extraState(name, value, file: file, cache: cache)) }
                    continue
                }
                guard case .tensor(let rec) = value else { continue }
                try add(rec, key: key, name: name, rank: t, file: file)
            }
        }

        /// Adds the local shard `rec` (key `key`, canonical `name`) of TP rank `t`.
        mutating func add(_ rec: TensorRecord, key: String, name: String, rank t: Int, file: String) throws(TesseraError) {
            guard let rule = PartitionRule.rule(for: name, gated: gated) else {
                throw TesseraError(.unsupported, "no partition rule for key '\(key)'", file: file, tensor: name)
            }
            let global = rule.globalShape(local: rec.shape, tp: tp)
            let whole = Piece(storage: rec.storage.bytes, dtype: rec.dtype, storageOffset: rec.storageOffset,
                              strides: rec.strides, shape: rec.shape,
                              globalOffset: [Int](repeating: 0, count: rec.shape.count),
                              origin: "\(file) [\(key)]")
            if rule.role == .replicated {
                try builder.add(name: name, dtype: rec.dtype, globalShape: global, piece: whole, replica: t)
                return
            }
            let parts: [ShardPart]
            do { parts = try rule.parts(global: global, tp: tp, rank: t) } catch {
                throw error.inFile(file).forTensor(name)
            }
            for part in parts {
                try builder.add(name: name, dtype: rec.dtype, globalShape: global,
                                piece: whole.sub(from: part.localOffset, shape: part.shape, global: part.globalOffset))
            }
        }
    }

    /// An `_extra_state` value as TransformerEngine left it: None, a BytesIO, or a uint8 tensor.
    static func extraState(_ name: String, _ v: PickleValue, file: String, cache: MappingCache) throws(TesseraError) -> ObjectEntry {
        switch v {
        case .none:
            return ObjectEntry(name: name, kind: "none", bytes: nil)
        case .tensor(let t):
            let f = try cache.file(t.storage.bytes.path)
            let b = try f.bytes(offset: t.storage.bytes.offset + t.storageOffset * t.dtype.size, count: t.elementCount * t.dtype.size)
            return ObjectEntry(name: name, kind: "tensor", bytes: Array(b))
        case .object(let o) where o.name == "BytesIO":
            var data: [UInt8] = []
            if case .tuple(let st)? = o.state, case .bytes(let b)? = st.first { data = b }
            else if case .bytes(let b)? = o.args.first { data = b }
            return ObjectEntry(name: name, kind: "bytesio", bytes: data)
        default:
            throw TesseraError(.unsupported, "unexpected _extra_state value \(v)", file: file, tensor: name)
        }
    }
}

extension ObjectEntry {
    /// A ShardedObject decoded into the value TransformerEngine stored (None, BytesIO or a
    /// uint8 tensor); other entries are returned unchanged.
    public func resolved(cache: MappingCache) throws(TesseraError) -> ObjectEntry {
        guard kind == "sharded-object", let source else { return self }
        let archive = try TorchArchive(source, cache: cache)
        var value = archive.root
        // torch_dist stores the object inside a one-element list.
        if case .list(let l) = value, l.items.count == 1 { value = l.items[0] }
        var out = try LegacyReader.extraState(name, value, file: source.path, cache: cache)
        out.source = source
        return out
    }
}

func twoDigits(_ i: Int) -> String { i < 10 ? "0\(i)" : "\(i)" }
func threeDigits(_ i: Int) -> String { i < 10 ? "00\(i)" : (i < 100 ? "0\(i)" : "\(i)") }
