import Platform

/// Where a checkpoint's weights came from.
public enum CheckpointFormat: String, Sendable, Codable {
    case nemoLegacy = "nemo-legacy"
    case distZarr = "dist-zarr"
    case distTorch = "dist-torch"
    case hdf5 = "hdf5"
    /// A Hugging Face transformers folder (safetensors).
    case hf = "hf"
}

/// How a piece's bytes are stored.
public enum PieceEncoding: Sendable, Equatable {
    /// The elements themselves.
    case raw
    /// An HDF5 chunk: optionally byte-shuffled, then one zstd frame, of `decodedBytes` bytes.
    case zstd(shuffled: Bool, decodedBytes: Int)
    /// An HDF5 chunk stored with only the shuffle filter.
    case shuffled(decodedBytes: Int)
    /// A chunk never written (its dataset's fill value, zero): no bytes on disk.
    case zeros(decodedBytes: Int)

    /// True when the stored bytes must be decoded into a buffer before use.
    public var needsDecoding: Bool {
        switch self {
        case .raw, .zeros: false
        case .zstd, .shuffled: true
        }
    }
}

/// A rectangular slice of a global tensor stored somewhere on disk as a strided view.
public struct Piece: Sendable, Equatable {
    /// The storage the view indexes into (element 0 at `storage.offset`); for an encoded
    /// piece, the encoded bytes, and the view indexes the decoded ones.
    public var storage: FileSlice
    /// How `storage` holds the elements.
    public var encoding: PieceEncoding
    public var dtype: DType
    /// First element of the view, in elements from the storage start.
    public var storageOffset: Int
    /// Strides of the view in elements.
    public var strides: [Int]
    /// Shape of the slice.
    public var shape: [Int]
    /// Where the slice starts in the global tensor.
    public var globalOffset: [Int]
    /// The file and key it was read from, for messages.
    public var origin: String

    /// Elements in the slice.
    public var elementCount: Int { shape.reduce(1, *) }

    /// The error for this piece (a stored chunk) failing to decode, naming the chunk.
    func damaged(_ cause: TesseraError, tensor: String) -> TesseraError {
        TesseraError(.corrupt, "chunk at \(globalOffset): \(cause.message)", file: storage.path, tensor: tensor)
    }

    /// True when the piece overlaps the global box `b`.
    public func intersects(_ b: Box) -> Bool {
        globalOffset.indices.allSatisfy { d in
            globalOffset[d] < b.offset[d] + b.shape[d] && b.offset[d] < globalOffset[d] + shape[d]
        }
    }

    /// The same storage seen as the sub-box `[from, from + shape)` of this piece, placed at `global`.
    func sub(from local: [Int], shape: [Int], global: [Int]) -> Piece {
        var p = self
        p.storageOffset += zip(local, strides).map(*).reduce(0, +)
        p.shape = shape
        p.globalOffset = global
        return p
    }
}

// Initializers in extensions, so that the memberwise ones they call stay.
extension Piece {
    /// A piece whose storage holds the elements themselves (``PieceEncoding/raw``).
    public init(storage: FileSlice, dtype: DType, storageOffset: Int, strides: [Int], shape: [Int],
                globalOffset: [Int], origin: String) {
        self.init(storage: storage, encoding: .raw, dtype: dtype, storageOffset: storageOffset, strides: strides, shape: shape,
                  globalOffset: globalOffset, origin: origin)
    }
}

/// One tensor of the TP=1/PP=1 model and the pieces on disk that cover it.
public struct GlobalTensor: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Disjoint pieces that together cover the tensor exactly.
    public var pieces: [Piece]
    /// Further copies of replicated tensors (from other TP ranks), each a full cover.
    public var replicas: [[Piece]]
    /// The SHA-256 the store recorded for this tensor, checked whenever it is digested.
    public var recordedDigest: String?
    /// Its reader's way of digesting it, if it has one faster than hashing the streamed runs.
    public var digestStrategy: (any DigestStrategy)?

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * dtype.size }
}

extension GlobalTensor {
    /// A tensor covered by `pieces` (and `replicas`), with no recorded digest.
    public init(name: String, dtype: DType, shape: [Int], pieces: [Piece], replicas: [[Piece]] = []) {
        self.init(name: name, dtype: dtype, shape: shape, pieces: pieces, replicas: replicas, recordedDigest: nil)
    }
}

/// A non-tensor entry carried through conversions (TransformerEngine `_extra_state`).
public struct ObjectEntry: Sendable {
    /// Canonical name, e.g. `decoder.layers.3.self_attention.linear_qkv._extra_state`.
    public var name: String
    /// How the source held it: `none`, `bytesio`, `tensor`, `sharded-object`.
    public var kind: String
    /// The bytes behind it, when it has any (the BytesIO contents, the uint8 tensor, the object file).
    public var bytes: [UInt8]?
    /// For a dist-ckpt ShardedObject: the `torch.save` file (or item) holding it.
    public var source: FileSlice?

    public init(name: String, kind: String, bytes: [UInt8]?, source: FileSlice? = nil) {
        self.name = name
        self.kind = kind
        self.bytes = bytes
        self.source = source
    }

    /// The module the state belongs to (`decoder.layers.3.self_attention.linear_qkv`).
    public var module: String { name.hasSuffix("._extra_state") ? String(name.dropLast("._extra_state".count)) : name }
}

/// Every checkpoint, whatever its format and layout, as a set of global tensors.
public struct Catalogue: Sendable {
    public var format: CheckpointFormat
    public var tp: Int
    public var pp: Int
    public var config: ModelConfig?
    /// Tensors in canonical order.
    public var tensors: [GlobalTensor] {
        didSet { index = Self.index(tensors) }
    }
    /// Position of each tensor by name (lookups stay constant-time with thousands of tensors).
    private var index: [String: Int]
    public var objects: [ObjectEntry]
    /// Layer-norm spelling of the source, when it tells.
    public var spelling: CanonicalName.Spelling?
    /// The checkpoint's files.
    public var container: any Container
    /// Folder inside the container that holds the weights ("" or "model_weights").
    public var weightsPath: String
    /// Layers per pipeline stage, where the checkpoint tells (legacy rank files, HDF5 stores).
    public var stageLayers: [Int]?
    /// For a checkpoint from outside NeMo: the NeMo config and artifacts a conversion writes.
    public var foreign: ForeignSource?

    public init(format: CheckpointFormat, tp: Int, pp: Int, config: ModelConfig?, tensors: [GlobalTensor],
                objects: [ObjectEntry], spelling: CanonicalName.Spelling?, container: any Container, weightsPath: String) {
        self.format = format
        self.tp = tp
        self.pp = pp
        self.config = config
        self.tensors = tensors
        self.index = Self.index(tensors)
        self.objects = objects
        self.spelling = spelling
        self.container = container
        self.weightsPath = weightsPath
    }

    /// The tensor called `name`.
    public func tensor(_ name: String) -> GlobalTensor? { index[name].map { tensors[$0] } }

    private static func index(_ tensors: [GlobalTensor]) -> [String: Int] {
        Dictionary(tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Total bytes of all tensors.
    public var byteCount: Int { tensors.reduce(0) { $0 + $1.byteCount } }
}

/// Collects pieces per global name and checks they cover each tensor exactly.
struct CatalogueBuilder {
    private var entries: [String: GlobalTensor] = [:]

    mutating func add(name: String, dtype: DType, globalShape: [Int], piece: Piece, replica: Int = 0) throws(TesseraError) {
        var t = entries[name] ?? GlobalTensor(name: name, dtype: dtype, shape: globalShape, pieces: [])
        guard t.shape == globalShape else {
            throw TesseraError(.inconsistent,
                "ranks disagree on the shape: \(t.pieces.first?.origin ?? "?") implies \(t.shape), \(piece.origin) implies \(globalShape)",
                tensor: name)
        }
        guard t.dtype == dtype else {
            throw TesseraError(.inconsistent,
                "ranks disagree on the dtype: \(t.dtype.rawValue) vs \(dtype.rawValue) in \(piece.origin)", tensor: name)
        }
        if replica == 0 {
            t.pieces.append(piece)
        } else {
            while t.replicas.count < replica { t.replicas.append([]) }
            t.replicas[replica - 1].append(piece)
        }
        entries[name] = t
    }

    /// The tensors in canonical order, each checked for exact coverage.
    func finish() throws(TesseraError) -> [GlobalTensor] {
        var out = Array(entries.values)
        out.sort { CanonicalName.order($0.name) < CanonicalName.order($1.name) }
        for t in out {
            try Self.checkCover(t.pieces, tensor: t)
            for r in t.replicas { try Self.checkCover(r, tensor: t) }
        }
        return out
    }

    /// Checks that `pieces` tile tensor `t` exactly: each of its rank and inside its shape,
    /// none overlapping another, together every element.
    static func checkCover(_ pieces: [Piece], tensor t: GlobalTensor) throws(TesseraError) {
        var total = 0
        for p in pieces {
            guard p.shape.count == t.shape.count else {
                throw TesseraError(.inconsistent, "piece from \(p.origin) has rank \(p.shape.count), tensor has \(t.shape.count)", tensor: t.name)
            }
            for d in t.shape.indices where p.globalOffset[d] < 0 || p.globalOffset[d] + p.shape[d] > t.shape[d] {
                throw TesseraError(.outOfBounds,
                    "piece from \(p.origin) (offset \(p.globalOffset), shape \(p.shape)) lies outside the global shape \(t.shape)",
                    tensor: t.name)
            }
            total += p.elementCount
        }
        // Overlaps, by a sweep along the first dimension: each piece is compared only with
        // the pieces whose rows reach its first row (a band of a chunk grid), not with all.
        func overlap(_ a: Piece, _ b: Piece) -> Bool {
            t.shape.indices.allSatisfy { d in
                a.globalOffset[d] < b.globalOffset[d] + b.shape[d] && b.globalOffset[d] < a.globalOffset[d] + a.shape[d]
            }
        }
        let first: (Piece) -> Int = { $0.globalOffset.first ?? 0 }
        var active: [Piece] = []
        for a in pieces.sorted(by: { first($0) < first($1) }) {
            active.removeAll { b in !t.shape.isEmpty && first(b) + b.shape[0] <= first(a) }
            if let b = active.first(where: { overlap(a, $0) }) {
                throw TesseraError(.inconsistent, "pieces from \(b.origin) and \(a.origin) overlap", tensor: t.name)
            }
            active.append(a)
        }
        guard total == t.elementCount else {
            throw TesseraError(.missing,
                "pieces cover \(total) of \(t.elementCount) elements of shape \(t.shape); a shard is missing", tensor: t.name)
        }
    }
}
