import Codecs
import Foundation
import HDF5
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
        case (.float, 4): return .float32
        case (.float, 8): return .float64
        case (.integer, 8): return .int64
        case (.integer, 4): return .int32
        case (.integer, 2): return .int16
        case (.integer, 1): return .uint8
        default: return nil
        }
    }

    static func read(_ path: String, cache: MappingCache) throws(TesseraError) -> Catalogue {
        let size = try fileSize(path)
        let file = try HDF5File.open(path)
        guard try file.stringAttribute("format") == formatName else {
            throw TesseraError(.unsupported,
                "an HDF5 file but not a Tessera store (root attribute format = '\(formatName)' missing)", file: path)
        }
        var config: ModelConfig?
        if let yaml = try file.stringAttribute("model_config_yaml") { config = try ModelConfig(yaml: yaml, file: path + ":/model_config_yaml") }
        var tp = config?.tensorModelParallelSize ?? 1, pp = config?.pipelineModelParallelSize ?? 1
        var spelling: CanonicalName.Spelling?
        var stageLayers: [Int]?
        if let layoutText = try file.stringAttribute("layout"),
           let layout = try? JSONSerialization.jsonObject(with: Data(layoutText.utf8)) as? [String: Any] {
            tp = layout["tp"] as? Int ?? tp
            pp = layout["pp"] as? Int ?? pp
            spelling = (layout["key_spelling"] as? String).flatMap(CanonicalName.Spelling.init(rawValue:))
            stageLayers = (layout["stage_layers"] as? [Int]).flatMap { pp > 1 && $0.count == pp && $0.allSatisfy { $0 > 0 } ? $0 : nil }
        }
        var tensors: [GlobalTensor] = []
        for dpath in try file.datasets(under: "/weights") {
            let name = Self.name(dpath, under: "/weights")
            let ds = try file.openDataset(dpath)
            let info = try ds.datasetInfo()
            let dtypeAttribute = try ds.stringAttribute("dtype")
            guard let dtype = dtype(attribute: dtypeAttribute, info: info), dtype.size == info.elementSize else {
                throw TesseraError(.unsupported, "dataset has an unsupported type (\(info.elementSize)-byte elements, dtype attribute '\(dtypeAttribute ?? "none")')",
                                   file: path, tensor: dpath)
            }
            let shape = info.shape
            let geometry = try checkGeometry(shape: shape, chunk: info.chunk, elementSize: dtype.size, file: path, dataset: dpath)
            var pieces: [Piece] = []
            if let chunk = info.chunk {
                pieces = try chunkedPieces(ds, info: info, chunk: chunk, dtype: dtype, geometry: geometry, fileSize: size,
                                           path: path, dataset: dpath)
            } else if let offset = info.contiguousOffset {
                try checkExtent(offset: offset, count: geometry.bytes, fileSize: size, file: path, dataset: dpath)
                pieces.append(Piece(storage: FileSlice(path: path, offset: offset, count: geometry.bytes),
                                    dtype: dtype, storageOffset: 0, strides: DistReader.cStrides(shape), shape: shape,
                                    globalOffset: [Int](repeating: 0, count: shape.count), origin: "\(path):\(dpath)"))
            }
            var t = GlobalTensor(name: name, dtype: dtype, shape: shape, pieces: pieces)
            t.recordedDigest = try ds.stringAttribute("sha256")
            t.digestStrategy = HDF5ChunkDigests()
            tensors.append(t)
        }
        for t in tensors {
            do { try CatalogueBuilder.checkCover(t.pieces, tensor: t) } catch { throw error.inFile(path) }
        }
        tensors.sort { CanonicalName.order($0.name) < CanonicalName.order($1.name) }
        var objects: [ObjectEntry] = []
        for opath in try file.datasets(under: "/objects") {
            let ds = try file.openDataset(opath)
            let info = try ds.datasetInfo()
            let count = try checkGeometry(shape: info.shape, chunk: nil, elementSize: 1, file: path, dataset: opath).bytes
            var bytes: [UInt8] = []
            if let off = info.contiguousOffset {
                try checkExtent(offset: off, count: count, fileSize: size, file: path, dataset: opath)
                bytes = (try? cache.file(path).bytes(offset: off, count: count)).map { Array($0) } ?? []
            }
            objects.append(ObjectEntry(name: Self.name(opath, under: "/objects"), kind: try ds.stringAttribute("kind") ?? "none",
                                       bytes: bytes))
        }
        objects.sort { CanonicalName.order($0.name) < CanonicalName.order($1.name) }
        if let emb = tensors.first(where: { $0.name == "embedding.word_embeddings.weight" }) { config?.paddedVocabSize = emb.shape[0] }
        let container = try HDF5ArtifactContainer(file: file, path: path)
        var catalogue = Catalogue(format: .hdf5, tp: tp, pp: pp, config: config, tensors: tensors, objects: objects,
                                  spelling: spelling, container: container, weightsPath: "")
        catalogue.stageLayers = stageLayers
        return catalogue
    }

    /// The pieces of a chunked dataset: its stored chunks (each checked against the file and
    /// the grid) and, when the fill value is zero, the chunks never written as zeros.
    static func chunkedPieces(_ ds: borrowing HDF5Object, info: HDF5DatasetInfo, chunk: [Int], dtype: DType,
                              geometry: (bytes: Int, chunkBytes: Int, gridChunks: Int), fileSize size: Int,
                              path: String, dataset dpath: String) throws(TesseraError) -> [Piece] {
        let shape = info.shape
        var pieces: [Piece] = []
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
        let decoded = geometry.chunkBytes
        guard let stored = try ds.chunks(rank: shape.count, limit: geometry.gridChunks) else {
            throw TesseraError(.corrupt, "damaged store: the chunk index cannot be read or lists more than the "
                               + "\(geometry.gridChunks) chunks of the grid", file: path, tensor: dpath)
        }
        for c in stored {
            try checkChunk(c, shape: shape, chunk: chunk, fileSize: size, file: path, dataset: dpath)
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
        // Chunks never written hold the fill value: zeros, when it is zero.
        if info.fillIsZero, pieces.count < Box.gridCount(shape: shape, chunk: chunk) {
            let stored = Set(pieces.map(\.globalOffset))
            for (_, box) in Box.grid(shape: shape, chunk: chunk) where !stored.contains(box.offset) {
                var p = Piece(storage: FileSlice(path: path, offset: 0, count: 0), dtype: dtype, storageOffset: 0,
                              strides: strides, shape: box.shape, globalOffset: box.offset,
                              origin: "\(path):\(dpath) chunk \(box.offset) (not written: zeros)")
                p.encoding = .zeros(decodedBytes: decoded)
                pieces.append(p)
            }
        }
        return pieces
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
        for apath in try file.datasets(under: "/artifacts") {
            let ds = try file.openDataset(apath)
            let info = try ds.datasetInfo()
            let name = String(apath.dropFirst("/artifacts/".count))
            let count = try HDF5Store.checkGeometry(shape: info.shape, chunk: nil, elementSize: 1, file: path, dataset: apath).bytes
            if let offset = info.contiguousOffset {
                try HDF5Store.checkExtent(offset: offset, count: count, fileSize: try HDF5Store.fileSize(path), file: path, dataset: apath)
            }
            files[name] = FileSlice(path: path, offset: info.contiguousOffset ?? 0, count: info.contiguousOffset == nil ? 0 : count)
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

/// A tensor stored as compressed chunks, as bands: the chunks sharing a first-dimension
/// offset, which together are a contiguous run of the tensor's bytes in C order.
struct ChunkBands: Sendable {
    let tensor: GlobalTensor
    /// Piece indices of each band, in row order.
    let bands: [[Int]]
    let bandBytes: Int
    let decodedBytes: Int

    init?(_ t: GlobalTensor) {
        guard !t.shape.isEmpty, !t.pieces.isEmpty, t.replicas.isEmpty,
              t.pieces.allSatisfy({ $0.encoding != .raw && $0.storageOffset == 0 && $0.shape.count == t.shape.count }) else { return nil }
        let groups = Dictionary(grouping: t.pieces.indices, by: { t.pieces[$0].globalOffset[0] })
        var bands: [[Int]] = []
        var row = 0, widest = 0, decoded = 0
        let rowBytes = t.shape.dropFirst().reduce(1, *) * t.dtype.size
        for start in groups.keys.sorted() {
            let band = groups[start]!
            let rows = t.pieces[band[0]].shape[0]
            guard start == row, band.allSatisfy({ t.pieces[$0].shape[0] == rows }) else { return nil }
            bands.append(band)
            row += rows
            widest = max(widest, rows * rowBytes)
            for i in band { decoded = max(decoded, ChunkDecoder.decodedBytes(t.pieces[i])) }
        }
        guard row == t.shape[0] else { return nil }
        tensor = t
        self.bands = bands
        bandBytes = widest
        decodedBytes = decoded
    }

    /// Bytes of band `b` in C order.
    func byteCount(band b: Int) -> Int {
        rowBytes * tensor.pieces[bands[b][0]].shape[0]
    }

    private var rowBytes: Int { tensor.shape.dropFirst().reduce(1, *) * tensor.dtype.size }

    /// Decodes chunk `i` (a piece of band `b`, encoded bytes `input`) into its place in
    /// `out`, which holds band `b` in C order.
    func decode(chunk i: Int, band b: Int, input: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer,
                scratch: UnsafeMutableRawBufferPointer, z: ZstdDecompressor) throws(TesseraError) {
        let t = tensor, esize = t.dtype.size, last = t.shape.count - 1
        let r0 = t.pieces[bands[b][0]].globalOffset[0], rows = t.pieces[bands[b][0]].shape[0]
        let bandShape = [rows] + t.shape.dropFirst()
        var strides = [Int](repeating: 1, count: bandShape.count)
        for k in strides.indices.reversed().dropFirst() { strides[k] = strides[k + 1] * bandShape[k + 1] }
        let p = t.pieces[i]
        let unpacked: (bytes: UnsafeRawBufferPointer, shuffled: Bool)
        do { unpacked = try ChunkDecoder.unpack(input, p.encoding, scratch: scratch, z: z) } catch { throw p.damaged(error, tensor: t.name) }
        let (data, shuffled) = (unpacked.bytes.baseAddress!, unpacked.shuffled)
        let chunkElements = unpacked.bytes.count / esize
        // A chunk as wide as the tensor is one run of the band; otherwise its rows (the last
        // dimension) go to their places, a plane of the last two dimensions per call.
        if Array(p.shape.dropFirst()) == Array(t.shape.dropFirst()) && p.strides == strides {
            byteUnshuffleRows(data, chunkElements: chunkElements, shuffled: shuffled, at: 0, sourceStride: 0, rows: 1,
                              count: p.elementCount, elementSize: esize, into: out.baseAddress!, destinationStride: 0)
            return
        }
        let plane = last - 1
        var outer = [Int](repeating: 0, count: plane)
        while true {
            var at = 0, to = p.globalOffset[last] + (p.globalOffset[plane] - (plane == 0 ? r0 : 0)) * strides[plane]
            for k in outer.indices {
                at += outer[k] * p.strides[k]
                to += (outer[k] + p.globalOffset[k] - (k == 0 ? r0 : 0)) * strides[k]
            }
            byteUnshuffleRows(data, chunkElements: chunkElements, shuffled: shuffled, at: at, sourceStride: p.strides[plane],
                              rows: p.shape[plane], count: p.shape[last], elementSize: esize,
                              into: out.baseAddress! + to * esize, destinationStride: strides[plane])
            var k = outer.count - 1
            while k >= 0 {
                outer[k] += 1
                if outer[k] < p.shape[k] { break }
                outer[k] = 0
                k -= 1
            }
            if k < 0 { return }
        }
    }
}
