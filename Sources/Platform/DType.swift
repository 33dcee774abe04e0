/// Element types a checkpoint can hold, named as in `torch` (`bfloat16`, `float32`, ...).
public enum DType: String, Sendable, Codable, CaseIterable {
    case bfloat16, float16, float32, float64, int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .bfloat16, .float16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// The dtype of a `torch.<X>Storage` class name (`BFloat16Storage` -> bfloat16).
    public init?(storageClass name: String) {
        switch name {
        case "BFloat16Storage": self = .bfloat16
        case "HalfStorage": self = .float16
        case "FloatStorage": self = .float32
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage", "UntypedStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }

    /// The dtype of a `torch.<name>` dtype object (`torch.bfloat16`, `torch.half`, ...).
    public init?(torchName name: String) {
        switch name {
        case "bfloat16": self = .bfloat16
        case "float16", "half": self = .float16
        case "float32", "float": self = .float32
        case "float64", "double": self = .float64
        case "int64", "long": self = .int64
        case "int32", "int": self = .int32
        case "int16", "short": self = .int16
        case "int8": self = .int8
        case "uint8": self = .uint8
        case "bool": self = .bool
        default: return nil
        }
    }

    /// The dtype of a zarr v2 `dtype` string (`bfloat16`, `<f4`, `|u1`, ...).
    public init?(zarr s: String) {
        switch s {
        case "bfloat16", "<bfloat16": self = .bfloat16
        case "<f2": self = .float16
        case "<f4": self = .float32
        case "<f8": self = .float64
        case "<i8": self = .int64
        case "<i4": self = .int32
        case "<i2": self = .int16
        case "|i1", "<i1": self = .int8
        case "|u1", "<u1": self = .uint8
        case "|b1", "<b1": self = .bool
        default: return nil
        }
    }
}

extension Float {
    /// The nearest BF16 value (ties to even), as a Float: what storing it as BF16 keeps.
    @inlinable public var bfloat16Rounded: Float {
        if isNaN { return self }
        let b = bitPattern
        return Float(bitPattern: (b &+ 0x7FFF &+ ((b >> 16) & 1)) & 0xFFFF_0000)
    }
}
