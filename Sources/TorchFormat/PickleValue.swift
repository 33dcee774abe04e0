import Platform

/// A tensor as `torch.save` describes it: a view (offset, shape, strides in elements)
/// into a storage record of the archive.
public struct TensorRecord: Sendable, Hashable {
    public var storage: StorageRecord
    public var dtype: DType
    /// Offset of the first element in the storage, in elements.
    public var storageOffset: Int
    public var shape: [Int]
    /// Strides in elements.
    public var strides: [Int]

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }

    /// True when the view is dense in C order.
    public var isContiguous: Bool {
        var expected = 1
        for d in shape.indices.reversed() where shape[d] != 1 {
            if strides[d] != expected { return false }
            expected *= shape[d]
        }
        return true
    }
}

/// A storage record (`data/<key>`) of a torch archive and where its bytes lie.
public struct StorageRecord: Sendable, Hashable {
    public var key: String
    public var dtype: DType
    /// Elements in the whole storage.
    public var elementCount: Int
    /// The bytes on disk (`elementCount * dtype.size` of them, checked).
    public var bytes: FileSlice
}

/// A value built by the safe unpickler. Nothing in it was executed: objects of
/// allow-listed classes are kept as their class name plus the arguments and state
/// the pickle gave them.
public enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too large for `Int` (little-endian two's complement bytes).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A set or frozenset, as its elements.
    case set([PickleValue])
    /// An allow-listed module-level constant (a torch dtype, layout, memory format) or class.
    case global(module: String, name: String)
    case object(PickleObject)
    case tensor(TensorRecord)
    case storage(StorageRecord)

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var int: Int? {
        switch self {
        case .int(let i): i
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }
    public var tensor: TensorRecord? { if case .tensor(let t) = self { t } else { nil } }
    public var dict: PickleDict? { if case .dict(let d) = self { d } else { nil } }
    public var object: PickleObject? { if case .object(let o) = self { o } else { nil } }
    public var isNone: Bool { if case .none = self { true } else { false } }
    /// Elements of a tuple or list.
    public var elements: [PickleValue]? {
        switch self {
        case .tuple(let t): t
        case .list(let l): l.items
        default: nil
        }
    }
    /// A tuple or list of ints (`torch.Size`, strides, offsets).
    public var ints: [Int]? {
        guard let e = elements else { return nil }
        var out: [Int] = []
        for v in e { guard let i = v.int else { return nil }; out.append(i) }
        return out
    }
}

/// A pickled list; filled while unpickling, read-only afterwards.
public final class PickleList: @unchecked Sendable {
    public internal(set) var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// A pickled dict or OrderedDict, in insertion order; read-only after unpickling.
public final class PickleDict: @unchecked Sendable {
    public internal(set) var items: [(key: PickleValue, value: PickleValue)] = []
    /// Attributes set by BUILD on an OrderedDict (`_metadata` of a state dict).
    public internal(set) var attributes: [(key: PickleValue, value: PickleValue)] = []
    public let ordered: Bool
    init(ordered: Bool) { self.ordered = ordered }

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let k) = key, let i = items.firstIndex(where: { $0.key.string == k }) {
            items[i].value = value
        } else {
            items.append((key, value))
        }
    }

    /// The value under a string key.
    public subscript(_ key: String) -> PickleValue? {
        items.first(where: { $0.key.string == key })?.value
    }
}

/// An instance of an allow-listed class: its constructor arguments and its state.
public final class PickleObject: @unchecked Sendable {
    public let module: String
    public let name: String
    public internal(set) var args: [PickleValue]
    public internal(set) var state: PickleValue?
    init(module: String, name: String, args: [PickleValue]) {
        self.module = module
        self.name = name
        self.args = args
    }

    /// An attribute from a dict state (dataclasses pickle `__dict__`), or from the
    /// dict half of a `(dict, slots)` state.
    public subscript(_ key: String) -> PickleValue? {
        switch state {
        case .dict(let d): return d[key]
        case .tuple(let t):
            for part in t { if let v = part.dict?[key] { return v } }
            return nil
        default: return nil
        }
    }
}
