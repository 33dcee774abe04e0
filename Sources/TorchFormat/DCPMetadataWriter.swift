import Platform

/// Where one stored item of a torch.distributed.checkpoint lies.
public struct DCPItem: Sendable {
    public var relativePath: String
    public var offset: Int
    public var length: Int
    public init(relativePath: String, offset: Int, length: Int) {
        self.relativePath = relativePath
        self.offset = offset
        self.length = length
    }
}

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
        func newObject(_ module: String, _ name: String) {
            w.global(module, name)
            w.op(0x29); w.op(0x81)
        }
        func beginDict() { w.op(0x7D); w.op(0x28) }
        func endDictBuild() { w.op(0x75); w.op(0x62) }
        func size(_ v: [Int]) {
            w.global("torch", "Size")
            w.tuple(v)
            w.op(0x85); w.op(0x52)
        }
        func index(_ fqn: String, _ offsets: [Int]?) {
            newObject(md, "MetadataIndex")
            beginDict()
            w.string("fqn"); w.string(fqn)
            w.string("offset")
            if let offsets { size(offsets) } else { w.op(0x4E) }
            w.string("index"); w.op(0x4E)
            endDictBuild()
        }
        func storageInfo(_ i: DCPItem) {
            newObject("torch.distributed.checkpoint.filesystem", "_StorageInfo")
            beginDict()
            w.string("relative_path"); w.string(i.relativePath)
            w.string("offset"); w.int(i.offset)
            w.string("length"); w.int(i.length)
            w.string("transform_descriptors"); w.op(0x4E)
            endDictBuild()
        }
        newObject(md, "Metadata")
        beginDict()
        w.string("state_dict_metadata")
        beginDict()
        for t in tensors {
            w.string(t.fqn)
            newObject(md, "TensorStorageMetadata")
            beginDict()
            w.string("properties")
            newObject(md, "TensorProperties")
            w.op(0x28)                                   // state tuple
            w.global("torch", t.dtype.rawValue)
            w.global("torch.serialization", "_get_layout"); w.string("torch.strided"); w.op(0x85); w.op(0x52)
            w.op(0x89)                                   // requires_grad False
            w.global(md, "_MEM_FORMAT_ENCODING"); w.int(0); w.op(0x85); w.op(0x52)
            w.op(0x89)                                   // pin_memory False
            w.op(0x4E)                                   // strides None
            w.op(0x74); w.op(0x62)                       // TUPLE BUILD
            w.string("size"); size(t.size)
            w.string("chunks")
            w.op(0x5D); w.op(0x28)                       // EMPTY_LIST MARK
            for c in t.chunks {
                newObject(md, "ChunkStorageMetadata")
                beginDict()
                w.string("offsets"); size(c.offsets)
                w.string("sizes"); size(c.sizes)
                endDictBuild()
            }
            w.op(0x65)                                   // APPENDS
            endDictBuild()
        }
        for b in bytes {
            w.string(b.fqn)
            newObject(md, "BytesStorageMetadata")
            w.op(0x7D); w.op(0x62)
        }
        w.op(0x75)
        w.string("planner_data"); w.op(0x4E)
        w.string("storage_data")
        beginDict()
        for t in tensors {
            for c in t.chunks {
                index(t.fqn, c.offsets)
                storageInfo(c.item)
            }
        }
        for b in bytes {
            index(b.fqn, nil)
            storageInfo(b.item)
        }
        w.op(0x75)
        w.string("storage_meta"); w.op(0x4E)
        w.string("version"); w.string("1.0.0")
        endDictBuild()
        w.op(0x2E)
        return w.bytes
    }
}
