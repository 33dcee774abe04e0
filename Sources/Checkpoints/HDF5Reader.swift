import CHDF5
import Foundation
import Platform

/// The Tessera HDF5 store (see Schemas/hdf5-store.md): one dataset per global tensor
/// under `/weights`, `_extra_state` objects under `/objects`, the checkpoint's other files
/// under `/artifacts`, and the model config, layout and provenance as root attributes.
public enum HDF5Store {
    public static let formatName = "tessera-hdf5"
    public static let formatVersion = 1

    /// HDF5 path of a canonical tensor or object name below `root` (`/weights`, `/objects`).
    public static func path(_ name: String, under root: String) -> String {
        root + "/" + name.replacingOccurrences(of: ".", with: "/")
    }

    /// The canonical name of a dataset path below `root`.
    public static func name(_ path: String, under root: String) -> String {
        String(path.dropFirst(root.count + 1)).replacingOccurrences(of: "/", with: ".")
    }

    /// The dtype a dataset holds: the `dtype` attribute, or its HDF5 type.
    static func dtype(attribute: String?, info: HDF5DatasetInfo) -> DType? {
        if let a = attribute { return DType(rawValue: a) ?? DType(torchName: a) }
        switch (info.typeClass, info.elementSize) {
        case (H5T_FLOAT, 4): return .float32
        case (H5T_FLOAT, 8): return .float64
        case (H5T_INTEGER, 8): return .int64
        case (H5T_INTEGER, 4): return .int32
        case (H5T_INTEGER, 2): return .int16
        case (H5T_INTEGER, 1): return .uint8
        default: return nil
        }
    }

    static func read(_ path: String, cache: MappingCache) throws(TesseraError) -> Catalogue {
        let file = try HDF5File.open(path)
        guard file.stringAttribute("format") == formatName else {
            throw TesseraError(.unsupported,
                "an HDF5 file but not a Tessera store (root attribute format = '\(formatName)' missing)", file: path)
        }
        var config: ModelConfig?
        if let yaml = file.stringAttribute("model_config_yaml") { config = try ModelConfig(yaml: yaml, file: path + ":/model_config_yaml") }
        var tp = config?.tensorModelParallelSize ?? 1, pp = config?.pipelineModelParallelSize ?? 1
        var spelling: CanonicalName.Spelling?
        if let layoutText = file.stringAttribute("layout"),
           let layout = try? JSONSerialization.jsonObject(with: Data(layoutText.utf8)) as? [String: Any] {
            tp = layout["tp"] as? Int ?? tp
            pp = layout["pp"] as? Int ?? pp
            spelling = (layout["key_spelling"] as? String).flatMap(CanonicalName.Spelling.init(rawValue:))
        }
        var tensors: [GlobalTensor] = []
        for dpath in file.datasets(under: "/weights") {
            let name = Self.name(dpath, under: "/weights")
            let ds = try file.openDataset(dpath)
            let info = ds.datasetInfo()
            guard let dtype = dtype(attribute: ds.stringAttribute("dtype"), info: info), dtype.size == info.elementSize else {
                throw TesseraError(.unsupported, "dataset has an unsupported type (\(info.elementSize)-byte elements, dtype attribute '\(ds.stringAttribute("dtype") ?? "none")')",
                                   file: path, tensor: dpath)
            }
            let shape = info.shape
            var pieces: [Piece] = []
            if let chunk = info.chunk {
                var shuffle = false, zstd = false
                for (i, (id, _)) in info.filters.enumerated() {
                    switch id {
                    case 2: shuffle = true
                    case 32015: zstd = true
                    default:
                        throw TesseraError(.unsupported,
                            "dataset uses HDF5 filter \(id) (position \(i)); only shuffle (2) and zstd (32015) are read",
                            file: path, tensor: dpath)
                    }
                }
                let strides = DistReader.cStrides(chunk)
                let decoded = chunk.reduce(1, *) * dtype.size
                for c in ds.chunks(rank: shape.count) {
                    // A set bit in the filter mask means that filter was skipped for this chunk.
                    let useShuffle = shuffle && (c.filterMask & 1) == 0
                    let useZstd = zstd && (c.filterMask & (shuffle ? 2 : 1)) == 0
                    let encoding: PieceEncoding = useZstd ? .zstd(shuffled: useShuffle, decodedBytes: decoded)
                        : (useShuffle ? .shuffled(decodedBytes: decoded) : .raw)
                    let pshape = shape.indices.map { min(chunk[$0], shape[$0] - c.offset[$0]) }
                    var p = Piece(storage: FileSlice(path: path, offset: c.address, count: c.size), dtype: dtype,
                                  storageOffset: 0, strides: strides, shape: pshape, globalOffset: c.offset,
                                  origin: "\(path):\(dpath) chunk \(c.offset)")
                    p.encoding = encoding
                    if encoding == .raw, c.size != decoded {
                        throw TesseraError(.corrupt, "chunk at \(c.offset) holds \(c.size) bytes, expected \(decoded)", file: path, tensor: dpath)
                    }
                    pieces.append(p)
                }
            } else if let offset = info.contiguousOffset {
                pieces.append(Piece(storage: FileSlice(path: path, offset: offset, count: shape.reduce(1, *) * dtype.size),
                                    dtype: dtype, storageOffset: 0, strides: DistReader.cStrides(shape), shape: shape,
                                    globalOffset: [Int](repeating: 0, count: shape.count), origin: "\(path):\(dpath)"))
            }
            var t = GlobalTensor(name: name, dtype: dtype, shape: shape, pieces: pieces)
            t.recordedDigest = ds.stringAttribute("sha256")
            tensors.append(t)
        }
        for t in tensors {
            do { try CatalogueBuilder.checkCover(t.pieces, tensor: t) } catch { throw error.inFile(path) }
        }
        tensors.sort { CanonicalName.order($0.name) < CanonicalName.order($1.name) }
        var objects: [ObjectEntry] = []
        for opath in file.datasets(under: "/objects") {
            let ds = try file.openDataset(opath)
            let info = ds.datasetInfo()
            let bytes = info.contiguousOffset.map { off in
                (try? cache.file(path).bytes(offset: off, count: info.shape.reduce(1, *))).map { Array($0) } ?? []
            } ?? []
            objects.append(ObjectEntry(name: Self.name(opath, under: "/objects"), kind: ds.stringAttribute("kind") ?? "none",
                                       bytes: bytes))
        }
        objects.sort { CanonicalName.order($0.name) < CanonicalName.order($1.name) }
        if let emb = tensors.first(where: { $0.name == "embedding.word_embeddings.weight" }) { config?.paddedVocabSize = emb.shape[0] }
        let container = try HDF5ArtifactContainer(file: file, path: path)
        return Catalogue(format: .hdf5, tp: tp, pp: pp, config: config, tensors: tensors, objects: objects,
                         spelling: spelling, container: container, weightsPath: "")
    }
}

/// The files a store carries (`/artifacts/<name>`: tokenizer, model_config.yaml, ...), as a container.
public struct HDF5ArtifactContainer: Container {
    public let path: String
    private let files: [String: FileSlice]
    public var displayPath: String { path }

    init(file: borrowing HDF5File, path: String) throws(TesseraError) {
        self.path = path
        var files: [String: FileSlice] = [:]
        for apath in file.datasets(under: "/artifacts") {
            let ds = try file.openDataset(apath)
            let info = ds.datasetInfo()
            let name = String(apath.dropFirst("/artifacts/".count))
            files[name] = FileSlice(path: path, offset: info.contiguousOffset ?? 0, count: info.contiguousOffset == nil ? 0 : info.shape.reduce(1, *))
        }
        self.files = files
    }

    public func isFile(_ p: String) -> Bool { files[p] != nil }
    public func isDirectory(_ p: String) -> Bool { p.isEmpty }
    public func children(_ p: String) -> [String] { p.isEmpty ? files.keys.sorted() : [] }
    public func slice(_ p: String) throws(TesseraError) -> FileSlice {
        guard let s = files[p] else { throw TesseraError(.missing, "no artifact '\(p)' in the store", file: path) }
        return s
    }
}
