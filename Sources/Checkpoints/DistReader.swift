import Foundation
import Platform
import TorchFormat

/// Reads megatron-core distributed checkpoints (`model_weights/` with `metadata.json`):
/// the zarr backend and the torch_dist backend, with stacked or per-layer keys.
enum DistReader {
    static func backend(_ c: any Container, dir: String, cache: MappingCache) throws(TesseraError) -> String {
        let path = c.join(dir, "metadata.json")
        let bytes = try c.read(path)
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let backend = obj["sharded_backend"] as? String else {
            throw TesseraError(.corrupt, "expected a JSON object with 'sharded_backend'", file: c.describe(path))
        }
        return backend
    }

    static func read(_ c: any Container, dir: String, config: ModelConfig?, cache: MappingCache) throws(TesseraError) -> Catalogue {
        let backend = try backend(c, dir: dir, cache: cache)
        var builder = CatalogueBuilder()
        var objects: [ObjectEntry] = []
        let format: CheckpointFormat
        switch backend {
        case "zarr":
            format = .distZarr
            try readZarr(c, dir: dir, into: &builder, objects: &objects, cache: cache)
        case "torch_dist", "torch":
            format = .distTorch
            try readTorchDist(c, dir: dir, into: &builder, objects: &objects, cache: cache)
        default:
            throw TesseraError(.unsupported,
                "unknown sharded_backend '\(backend)' (expected 'zarr' or 'torch_dist')", file: c.describe(c.join(dir, "metadata.json")))
        }
        let tensors = try builder.finish()
        var cfg = config
        if let emb = tensors.first(where: { $0.name == "embedding.word_embeddings.weight" }) { cfg?.paddedVocabSize = emb.shape[0] }
        if let config {
            let layers = Set(tensors.compactMap { CanonicalName.layerParts($0.name)?.0 })
            if layers.count != config.numLayers {
                throw TesseraError(.inconsistent,
                    "the checkpoint holds \(layers.count) layers but model_config.yaml says num_layers \(config.numLayers)",
                    file: c.describe(dir))
            }
        }
        objects.sort { CanonicalName.order($0.name) < CanonicalName.order($1.name) }
        return Catalogue(format: format, tp: config?.tensorModelParallelSize ?? 1, pp: config?.pipelineModelParallelSize ?? 1,
                         config: cfg, tensors: tensors, objects: objects, spelling: .transformerEngine,
                         container: c, weightsPath: dir)
    }

    /// Adds one stored box of a (possibly layer-stacked) sharded tensor, unstacking layers.
    static func addBox(_ b: inout CatalogueBuilder, key: String, globalShape: [Int], piece: Piece) throws(TesseraError) {
        let name = CanonicalName.canonical(key).name
        let prefix = "decoder.layers."
        if name.hasPrefix(prefix), let first = name.dropFirst(prefix.count).first, !first.isNumber {
            let suffix = String(name.dropFirst(prefix.count))
            guard globalShape.count >= 1 else {
                throw TesseraError(.corrupt, "stacked layer tensor without a layer axis", tensor: key)
            }
            for i in 0..<piece.shape[0] {
                let layer = piece.globalOffset[0] + i
                var p = piece
                p.storageOffset += i * piece.strides[0]
                p.strides.removeFirst()
                p.shape.removeFirst()
                p.globalOffset.removeFirst()
                let (canon, _) = CanonicalName.canonical("decoder.layers.\(layer).\(suffix)")
                try b.add(name: canon, dtype: p.dtype, globalShape: Array(globalShape.dropFirst()), piece: p)
            }
        } else {
            try b.add(name: name, dtype: piece.dtype, globalShape: globalShape, piece: piece)
        }
    }

    static func cStrides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for d in shape.indices.reversed() { s[d] = acc; acc *= shape[d] }
        return s
    }

    // MARK: zarr

    static func readZarr(_ c: any Container, dir: String, into b: inout CatalogueBuilder, objects: inout [ObjectEntry],
                         cache: MappingCache) throws(TesseraError) {
        for key in c.children(dir) {
            let arrayDir = c.join(dir, key)
            guard c.isDirectory(arrayDir) else { continue }
            let zarray = c.join(arrayDir, ".zarray")
            guard c.isFile(zarray) else {
                // A ShardedObject folder: one torch.save file per shard.
                for f in c.children(arrayDir) where f.hasSuffix(".pt") {
                    let path = c.join(arrayDir, f)
                    objects.append(ObjectEntry(name: objectName(key, shardFile: f), kind: "sharded-object",
                                               bytes: try c.read(path), source: try c.slice(path)))
                }
                continue
            }
            let where_ = c.describe(zarray)
            guard let meta = try? JSONSerialization.jsonObject(with: Data(try c.read(zarray))) as? [String: Any] else {
                throw TesseraError(.corrupt, "not a JSON object", file: where_)
            }
            guard let shape = meta["shape"] as? [Int], let chunks = meta["chunks"] as? [Int], shape.count == chunks.count,
                  let dtypeName = meta["dtype"] as? String else {
                throw TesseraError(.corrupt, "expected 'shape', 'chunks' and 'dtype'", file: where_)
            }
            guard let dtype = DType(zarr: dtypeName) else {
                throw TesseraError(.unsupported, "zarr dtype '\(dtypeName)' is not supported", file: where_)
            }
            if let comp = meta["compressor"], !(comp is NSNull) {
                throw TesseraError(.unsupported, "compressed zarr chunks (\(comp)) are not supported; megatron writes compressor null", file: where_)
            }
            if let filters = meta["filters"], !(filters is NSNull) {
                throw TesseraError(.unsupported, "zarr filters are not supported", file: where_)
            }
            if let order = meta["order"] as? String, order != "C" {
                throw TesseraError(.unsupported, "zarr order '\(order)' is not supported (expected C)", file: where_)
            }
            let sep = (meta["dimension_separator"] as? String) ?? "."
            let chunkBytes = chunks.reduce(1, *) * dtype.size
            let strides = cStrides(chunks)
            // A 0-d array has one chunk named "0".
            let cells = shape.isEmpty ? [(index: [Int](), box: Box(offset: [], shape: []))] : Box.grid(shape: shape, chunk: chunks)
            for (index, box) in cells {
                let rel = index.isEmpty ? "0" : index.map(String.init).joined(separator: sep)
                let file = c.join(arrayDir, rel)
                guard c.isFile(file) else {
                    throw TesseraError(.missing, "chunk file '\(rel)' is missing", file: c.describe(arrayDir), tensor: key)
                }
                let slice = try c.slice(file)
                guard slice.count == chunkBytes else {
                    throw TesseraError(.corrupt,
                        "chunk holds \(slice.count) bytes, expected \(chunkBytes) (chunks \(chunks) of \(dtypeName))",
                        file: c.describe(file), tensor: key)
                }
                let piece = Piece(storage: slice, dtype: dtype, storageOffset: 0, strides: strides, shape: box.shape,
                                  globalOffset: box.offset, origin: c.describe(file))
                try addBox(&b, key: key, globalShape: shape, piece: piece)
            }
        }
    }

    /// `model.decoder.layers.x._extra_state` + `shard_3_96.pt` -> `decoder.layers.3.x._extra_state`.
    static func objectName(_ key: String, shardFile: String) -> String {
        var name = CanonicalName.canonical(key).name
        let stem = shardFile.hasSuffix(".pt") ? String(shardFile.dropLast(3)) : shardFile
        let parts = stem.split(separator: "_")
        let prefix = "decoder.layers."
        if name.hasPrefix(prefix), parts.count >= 3, parts[0] == "shard",
           let layer = Int(parts[1].split(separator: ".").first ?? ""),
           let first = name.dropFirst(prefix.count).first, !first.isNumber {
            name = prefix + "\(layer)." + name.dropFirst(prefix.count)
        }
        return name
    }

    // MARK: torch_dist

    static func readTorchDist(_ c: any Container, dir: String, into b: inout CatalogueBuilder, objects: inout [ObjectEntry],
                              cache: MappingCache) throws(TesseraError) {
        let metaPath = c.join(dir, ".metadata")
        guard c.isFile(metaPath) else {
            throw TesseraError(.missing, "torch_dist checkpoint has no '.metadata' file", file: c.describe(dir))
        }
        let metaBytes = try c.read(metaPath)
        let root: PickleValue
        do {
            root = try withBytes(metaBytes) { (b) throws(TesseraError) -> PickleValue in try Unpickler.load(b) }
        } catch { throw error.inFile(c.describe(metaPath)) }
        let bad = { (what: String) in TesseraError(.corrupt, "unexpected .metadata structure: \(what)", file: c.describe(metaPath)) }
        guard let md = root.object, let sdm = md["state_dict_metadata"]?.dict, let storage = md["storage_data"]?.dict else {
            throw bad("no Metadata object with state_dict_metadata and storage_data")
        }
        // (fqn, offsets) -> (relative_path, offset, length)
        var locations: [String: (String, Int, Int)] = [:]
        for (k, v) in storage.items {
            guard let idx = k.object, let fqn = idx["fqn"]?.string, let info = v.object,
                  let rel = info["relative_path"]?.string, let off = info["offset"]?.int, let len = info["length"]?.int else {
                throw bad("storage_data entry is not MetadataIndex -> _StorageInfo")
            }
            let offs = idx["offset"]?.ints ?? []
            locations["\(fqn)@\(offs)"] = (rel, off, len)
        }
        func location(_ fqn: String, _ offs: [Int]) throws(TesseraError) -> FileSlice {
            guard let (rel, off, len) = locations["\(fqn)@\(offs)"] ?? (offs.isEmpty ? nil : locations["\(fqn)@[]"]) else {
                throw TesseraError(.missing, "no storage entry for chunk at \(offs)", file: c.describe(metaPath), tensor: fqn)
            }
            let file = c.join(dir, rel)
            guard c.isFile(file) else {
                throw TesseraError(.missing, "data file '\(rel)' named by .metadata is missing", file: c.describe(dir), tensor: fqn)
            }
            do { return try c.slice(file).subslice(from: off, count: len) } catch {
                throw error.inFile(c.describe(file)).forTensor(fqn)
            }
        }
        for (k, v) in sdm.items {
            guard let fqn = k.string, let entry = v.object else { throw bad("state_dict_metadata entry") }
            if entry.name == "BytesStorageMetadata" {
                let slice = try location(fqn, [])
                let bytes = try ReadOnlyFile(path: slice.path).read(slice.offset, slice.count)
                if fqn.hasPrefix("common_state") { continue }
                let parts = fqn.split(separator: "/", maxSplits: 1).map(String.init)
                let name = parts.count == 2 ? objectName(parts[0], shardFile: parts[1]) : CanonicalName.canonical(fqn).name
                objects.append(ObjectEntry(name: name, kind: "sharded-object", bytes: bytes, source: slice))
                continue
            }
            guard entry.name == "TensorStorageMetadata", let size = entry["size"]?.ints,
                  let chunks = entry["chunks"]?.elements else {
                throw bad("'\(fqn)' is neither TensorStorageMetadata nor BytesStorageMetadata")
            }
            for ch in chunks {
                guard let co = ch.object, let offs = co["offsets"]?.ints, let sizes = co["sizes"]?.ints else {
                    throw bad("chunk of '\(fqn)'")
                }
                let slice = try location(fqn, offs)
                let archive: TorchArchive
                do { archive = try TorchArchive(slice, cache: cache) } catch { throw error.forTensor(fqn) }
                guard case .tensor(let rec) = archive.root else {
                    throw TesseraError(.corrupt, "chunk at \(offs) does not hold a tensor", file: slice.path, tensor: fqn)
                }
                guard rec.shape == sizes else {
                    throw TesseraError(.inconsistent, "chunk at \(offs) holds shape \(rec.shape), .metadata says \(sizes)",
                                       file: slice.path, tensor: fqn)
                }
                let piece = Piece(storage: rec.storage.bytes, dtype: rec.dtype, storageOffset: rec.storageOffset,
                                  strides: rec.strides, shape: rec.shape, globalOffset: offs,
                                  origin: "\(slice.path)@\(slice.offset) [\(fqn) \(offs)]")
                try addBox(&b, key: fqn, globalShape: size, piece: piece)
            }
        }
    }
}
