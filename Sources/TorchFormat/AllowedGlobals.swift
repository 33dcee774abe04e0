import Platform

/// What an allow-listed global may be used for.
enum GlobalRole {
    case rebuildTensorV2, rebuildTensorV3, rebuildParameter
    case storageClass(DType)
    case orderedDict, codecsEncode, bytesClass, setClass, frozensetClass
    case torchSize
    /// `torch.serialization._get_layout('torch.strided')`: a layout by name.
    case layoutByName
    /// A constant used by value (torch dtypes, layouts, memory formats).
    case constant
    /// A class whose instances are kept as class name, arguments and state.
    case objectClass
}

/// The globals a checkpoint legitimately contains. Anything else is refused by name.
let allowedGlobals: [String: GlobalRole] = {
    var t: [String: GlobalRole] = [
        "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
        "torch._utils._rebuild_tensor_v3": .rebuildTensorV3,
        "torch._utils._rebuild_parameter": .rebuildParameter,
        "collections.OrderedDict": .orderedDict,
        "_codecs.encode": .codecsEncode,
        "__builtin__.bytes": .bytesClass, "builtins.bytes": .bytesClass,
        "__builtin__.bytearray": .bytesClass, "builtins.bytearray": .bytesClass,
        "__builtin__.set": .setClass, "builtins.set": .setClass,
        "__builtin__.frozenset": .frozensetClass, "builtins.frozenset": .frozensetClass,
        "torch.Size": .torchSize,
        "torch.serialization._get_layout": .layoutByName,
        "torch.strided": .constant, "torch.sparse_coo": .constant,
        "torch.contiguous_format": .constant, "torch.preserve_format": .constant,
        "torch.channels_last": .constant,
        "_io.BytesIO": .objectClass, "io.BytesIO": .objectClass,
        "torch.torch_version.TorchVersion": .objectClass,
        "megatron.core.dist_checkpointing.strategies.torch.MCoreMetadata": .objectClass,
        "torch.distributed.checkpoint.filesystem._StorageInfo": .objectClass,
        "torch.distributed.checkpoint.filesystem._StoragePrefix": .objectClass,
    ]
    for name in ["Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                 "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"] {
        t["torch.distributed.checkpoint.metadata.\(name)"] = .objectClass
    }
    for name in ["SavePlan", "WriteItem", "TensorWriteData", "WriteItemType", "LoadPlan", "ReadItem", "LoadItemType"] {
        t["torch.distributed.checkpoint.planner.\(name)"] = .objectClass
    }
    for s in ["BFloat16Storage", "HalfStorage", "FloatStorage", "DoubleStorage", "LongStorage", "IntStorage",
              "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "UntypedStorage"] {
        t["torch.\(s)"] = .storageClass(DType(storageClass: s)!)
    }
    for d in ["bfloat16", "float16", "half", "float32", "float", "float64", "double", "int64", "long",
              "int32", "int", "int16", "short", "int8", "uint8", "bool"] {
        t["torch.\(d)"] = .constant
    }
    return t
}()

extension GlobalRole {
    var isV3: Bool { if case .rebuildTensorV3 = self { true } else { false } }
}
