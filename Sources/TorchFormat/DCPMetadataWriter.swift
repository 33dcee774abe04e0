import Platform

/// Where one stored item of a torch.distributed.checkpoint lies: `path` is the file's name
/// relative to the checkpoint folder.
public typealias DCPItem = FileSlice

/// A tensor entry of the DCP metadata: its global size and the chunks stored.
public struct DCPTensor: Sendable {
    public var fqn: String
    public var dtype: DType
    public var size: [Int]
    public var chunks: [(offsets: [Int], sizes: [Int], item: DCPItem)]
    public init(fqn: String, dtype: DType, size: [Int], chunks: [(offsets: [Int], sizes: [Int], item: DCPItem)]) {
        self.fqn = fqn
        self.dtype = dtype
        self.size = size
        self.chunks = chunks
    }
}

/// Pickles a `torch.distributed.checkpoint.metadata.Metadata` as `FileSystemWriter.finish`
/// does: dataclasses rebuilt with NEWOBJ + BUILD, sizes as `torch.Size`.
public enum DCPMetadataWriter {
    static let md = "torch.distributed.checkpoint.metadata"

    public static func pickle(tensors: [DCPTensor], bytes: [(fqn: String, item: DCPItem)]) -> [UInt8] {
        var w = PickleWriter()
        w.newObject(md, "Metadata")
        w.beginDict()
        w.string("state_dict_metadata")
        w.beginDict()
        for t in tensors { w.tensorStorageMetadata(t) }
        for b in bytes {
            w.string(b.fqn)
            w.newObject(md, "BytesStorageMetadata")
            w.op(0x7D); w.op(0x62)
        }
        w.op(0x75)
        w.string("planner_data"); w.op(0x4E)
        w.string("storage_data")
        w.beginDict()
        for t in tensors {
            for c in t.chunks {
                w.metadataIndex(t.fqn, c.offsets)
                w.storageInfo(c.item)
            }
        }
        for b in bytes {
            w.metadataIndex(b.fqn, nil)
            w.storageInfo(b.item)
        }
        w.op(0x75)
        w.string("storage_meta"); w.op(0x4E)
        w.string("version"); w.string("1.0.0")
        w.endDictBuild()
        w.op(0x2E)
        return w.bytes
    }
}

/// The parts of DCP metadata as `FileSystemWriter.finish` pickles them.
private extension PickleWriter {
    /// `module.name()` with no arguments (EMPTY_TUPLE NEWOBJ).
    mutating func newObject(_ module: String, _ name: String) {
        global(module, name)
        op(0x29); op(0x81)
    }

    /// An empty dict and a mark, for the SETITEMS that ends it.
    mutating func beginDict() { op(0x7D); op(0x28) }

    /// SETITEMS, then BUILD: the dict is the state of the object below it.
    mutating func endDictBuild() { op(0x75); op(0x62) }

    /// `torch.Size(v)`.
    mutating func torchSize(_ v: [Int]) {
        global("torch", "Size")
        tuple(v)
        op(0x85); op(0x52)
    }

    /// A `MetadataIndex` of `fqn` at `offsets` (None for a bytes item).
    mutating func metadataIndex(_ fqn: String, _ offsets: [Int]?) {
        newObject(DCPMetadataWriter.md, "MetadataIndex")
        beginDict()
        string("fqn"); string(fqn)
        string("offset")
        if let offsets { torchSize(offsets) } else { op(0x4E) }
        string("index"); op(0x4E)
        endDictBuild()
    }

    /// The `_StorageInfo` of `i`.
    mutating func storageInfo(_ i: DCPItem) {
        newObject("torch.distributed.checkpoint.filesystem", "_StorageInfo")
        beginDict()
        string("relative_path"); string(i.path)
        string("offset"); int(i.offset)
        string("length"); int(i.count)
        string("transform_descriptors"); op(0x4E)
        endDictBuild()
    }

    /// The key `t.fqn` and its `TensorStorageMetadata`: properties, size and chunks.
    mutating func tensorStorageMetadata(_ t: DCPTensor) {
        let md = DCPMetadataWriter.md
        string(t.fqn)
        newObject(md, "TensorStorageMetadata")
        beginDict()
        string("properties")
        newObject(md, "TensorProperties")
        op(0x28)                                     // state tuple
        global("torch", t.dtype.rawValue)
        global("torch.serialization", "_get_layout"); string("torch.strided"); op(0x85); op(0x52)
        op(0x89)                                     // requires_grad False
        global(md, "_MEM_FORMAT_ENCODING"); int(0); op(0x85); op(0x52)
        op(0x89)                                     // pin_memory False
        op(0x4E)                                     // strides None
        op(0x74); op(0x62)                           // TUPLE BUILD
        string("size"); torchSize(t.size)
        string("chunks")
        op(0x5D); op(0x28)                           // EMPTY_LIST MARK
        for c in t.chunks {
            newObject(md, "ChunkStorageMetadata")
            beginDict()
            string("offsets"); torchSize(c.offsets)
            string("sizes"); torchSize(c.sizes)
            endDictBuild()
        }
        op(0x65)                                     // APPENDS
        endDictBuild()
    }
}
