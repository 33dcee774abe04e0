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
    public init?(storageClass name: String) { self.init(spelling: name, in: \.storage) }

    /// The dtype of a `torch.<name>` dtype object (`torch.bfloat16`, `torch.half`, ...).
    public init?(torchName name: String) { self.init(spelling: name, in: \.torch) }

    /// The dtype of a zarr v2 `dtype` string (`bfloat16`, `<f4`, `|u1`, ...).
    public init?(zarr s: String) { self.init(spelling: s, in: \.zarr) }

    private init?(spelling: String, in format: KeyPath<Spellings, [String]>) {
        guard let row = Self.spellings.first(where: { $0[keyPath: format].contains(spelling) }) else { return nil }
        self = row.dtype
    }

    /// How each format names a dtype.
    private struct Spellings: Sendable {
        let dtype: DType
        /// torch.save storage classes.
        let storage: [String]
        /// `torch.<name>` dtype objects.
        let torch: [String]
        /// zarr v2 `dtype` strings (megatron-core writes `bfloat16` for BF16).
        let zarr: [String]
    }

    /// One row per dtype: the table every spelling is read from.
    private static let spellings: [Spellings] = [
        Spellings(dtype: .bfloat16, storage: ["BFloat16Storage"], torch: ["bfloat16"], zarr: ["bfloat16", "<bfloat16"]),
        Spellings(dtype: .float16, storage: ["HalfStorage"], torch: ["float16", "half"], zarr: ["<f2"]),
        Spellings(dtype: .float32, storage: ["FloatStorage"], torch: ["float32", "float"], zarr: ["<f4"]),
        Spellings(dtype: .float64, storage: ["DoubleStorage"], torch: ["float64", "double"], zarr: ["<f8"]),
        Spellings(dtype: .int64, storage: ["LongStorage"], torch: ["int64", "long"], zarr: ["<i8"]),
        Spellings(dtype: .int32, storage: ["IntStorage"], torch: ["int32", "int"], zarr: ["<i4"]),
        Spellings(dtype: .int16, storage: ["ShortStorage"], torch: ["int16", "short"], zarr: ["<i2"]),
        Spellings(dtype: .int8, storage: ["CharStorage"], torch: ["int8"], zarr: ["|i1", "<i1"]),
        Spellings(dtype: .uint8, storage: ["ByteStorage", "UntypedStorage"], torch: ["uint8"], zarr: ["|u1", "<u1"]),
        Spellings(dtype: .bool, storage: ["BoolStorage"], torch: ["bool"], zarr: ["|b1", "<b1"]),
    ]
}

extension Float {
    /// The nearest BF16 value (ties to even), as a Float: what storing it as BF16 keeps.
    @inlinable public var bfloat16Rounded: Float {
        if isNaN { return self }
        let b = bitPattern
        return Float(bitPattern: (b &+ 0x7FFF &+ ((b >> 16) & 1)) & 0xFFFF_0000)
    }
}
