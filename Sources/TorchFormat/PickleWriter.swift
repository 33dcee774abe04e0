import Platform

/// A value `torch.save` would pickle in a state dict, as Tessera writes it.
public enum StateValue: Sendable {
    /// A dense tensor with its own storage record `data/<storageKey>`.
    case tensor(dtype: DType, shape: [Int], storageKey: String)
    case none
    /// A TransformerEngine `_extra_state` held as `io.BytesIO(bytes)`.
    case bytesIO([UInt8])
}

/// Writes pickles in protocol 2, the way `torch.save` does: tensors through
/// `torch._utils._rebuild_tensor_v2` with persistent storage ids, bytes through
/// `_codecs.encode`, state dicts as `OrderedDict` with their `_metadata`.
public struct PickleWriter {
    public private(set) var bytes: [UInt8] = [0x80, 0x02]

    public init() {}

    mutating func op(_ code: UInt8) { bytes.append(code) }

    mutating func global(_ module: String, _ name: String) {
        op(0x63)
        bytes += Array("\(module)\n\(name)\n".utf8)
    }

    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        op(0x58)
        withUnsafeBytes(of: UInt32(u.count).littleEndian) { bytes += $0 }
        bytes += u
    }

    mutating func int(_ v: Int) {
        if v >= 0 && v < 256 { op(0x4B); bytes.append(UInt8(v)) }
        else if v >= 0 && v < 65536 { op(0x4D); withUnsafeBytes(of: UInt16(v).littleEndian) { bytes += $0 } }
        else if v >= Int(Int32.min) && v <= Int(Int32.max) { op(0x4A); withUnsafeBytes(of: Int32(v).littleEndian) { bytes += $0 } }
        else {
            op(0x8A); bytes.append(8)
            withUnsafeBytes(of: Int64(v).littleEndian) { bytes += $0 }
        }
    }

    mutating func tuple(_ items: [Int]) {
        switch items.count {
        case 0: op(0x29)
        case 1...3:
            for i in items { int(i) }
            op([0x85, 0x86, 0x87][items.count - 1])
        default:
            op(0x28)
            for i in items { int(i) }
            op(0x74)
        }
    }

    mutating func emptyOrderedDict() {
        global("collections", "OrderedDict")
        op(0x29)   // EMPTY_TUPLE
        op(0x52)   // REDUCE
    }

    /// Python `bytes` at protocol 2.
    mutating func pyBytes(_ b: [UInt8]) {
        if b.isEmpty {
            global("__builtin__", "bytes")
            op(0x29); op(0x52)
            return
        }
        global("_codecs", "encode")
        string(String(String.UnicodeScalarView(b.map { Unicode.Scalar($0) })))
        string("latin1")
        op(0x86); op(0x52)
    }

    mutating func value(_ v: StateValue) {
        switch v {
        case .none:
            op(0x4E)
        case .bytesIO(let b):
            global("_io", "BytesIO")
            op(0x29); op(0x81)              // EMPTY_TUPLE NEWOBJ
            pyBytes(b); int(0); op(0x4E)    // state (value, pos, dict)
            op(0x87); op(0x62)              // TUPLE3 BUILD
        case .tensor(let dtype, let shape, let key):
            global("torch._utils", "_rebuild_tensor_v2")
            op(0x28)                        // MARK: args
            op(0x28)                        // MARK: persistent id
            string("storage")
            global("torch", Self.storageClass(dtype))
            string(key)
            string("cpu")
            int(shape.reduce(1, *))
            op(0x74)                        // TUPLE
            op(0x51)                        // BINPERSID
            int(0)
            tuple(shape)
            var strides = [Int](repeating: 1, count: shape.count)
            var acc = 1
            for d in shape.indices.reversed() { strides[d] = acc; acc *= shape[d] }
            tuple(strides)
            op(0x89)                        // NEWFALSE
            emptyOrderedDict()
            op(0x74)                        // TUPLE
            op(0x52)                        // REDUCE
        }
    }

    static func storageClass(_ d: DType) -> String {
        switch d {
        case .bfloat16: "BFloat16Storage"
        case .float16: "HalfStorage"
        case .float32: "FloatStorage"
        case .float64: "DoubleStorage"
        case .int64: "LongStorage"
        case .int32: "IntStorage"
        case .int16: "ShortStorage"
        case .int8: "CharStorage"
        case .uint8: "ByteStorage"
        case .bool: "BoolStorage"
        }
    }

    /// A whole state dict: an OrderedDict of `entries` whose `_metadata` lists `modules`
    /// (each `{'version': 1}`), then STOP.
    public static func stateDict(_ entries: [(String, StateValue)], modules: [String]) -> [UInt8] {
        var w = PickleWriter()
        w.emptyOrderedDict()
        for batch in stride(from: 0, to: entries.count, by: 1000) {
            w.op(0x28)
            for (k, v) in entries[batch..<min(batch + 1000, entries.count)] {
                w.string(k)
                w.value(v)
            }
            w.op(0x75)                      // SETITEMS
        }
        w.op(0x7D)                          // state: {'_metadata': OrderedDict(...)}
        w.string("_metadata")
        w.emptyOrderedDict()
        for m in modules {
            w.string(m)
            w.op(0x7D)
            w.string("version")
            w.int(1)
            w.op(0x73)
            w.op(0x73)
        }
        w.op(0x73)
        w.op(0x62)                          // BUILD
        w.op(0x2E)
        return w.bytes
    }

    /// A one-element list `[v]` (how torch_dist stores a ShardedObject).
    public static func list(_ v: StateValue) -> [UInt8] {
        var w = PickleWriter()
        w.op(0x5D)
        w.value(v)
        w.op(0x61)
        w.op(0x2E)
        return w.bytes
    }

    /// A single object: `None`, or a tensor (for torch_dist chunk items and objects).
    public static func single(_ v: StateValue) -> [UInt8] {
        var w = PickleWriter()
        w.value(v)
        w.op(0x2E)
        return w.bytes
    }
}
