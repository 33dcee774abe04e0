import CHDF5
import CHDF5Shims
import Platform

/// An open libhdf5 object (file, dataset, dataspace, property list, ...), closed by its
/// matching H5*close when dropped.
public struct HDF5Object: ~Copyable {
    enum Kind { case file, dataset, group, space, type, plist, attribute }
    let id: hid_t
    let kind: Kind

    /// Takes ownership of `id`, which a libhdf5 call inside ``HDF5Executor/run(_:)`` returned;
    /// a negative one is the failure of `what`.
    init(_ id: hid_t, _ kind: Kind, _ what: @autoclosure () -> String, file: String?) throws(TesseraError) {
        guard id >= 0 else { throw TesseraError(.io, "HDF5: \(what()) failed", file: file) }
        self.id = id
        self.kind = kind
    }

    /// Closes `id` with the H5*close of its kind (inside ``HDF5Executor/run(_:)``).
    private static func close(_ id: hid_t, _ kind: Kind) -> herr_t {
        assert(HDF5Executor.isInside, "libhdf5 called outside HDF5Executor.run")
        return switch kind {
        case .file: H5Fclose(id)
        case .dataset: H5Dclose(id)
        case .group: H5Gclose(id)
        case .space: H5Sclose(id)
        case .type: H5Tclose(id)
        case .plist: H5Pclose(id)
        case .attribute: H5Aclose(id)
        }
    }

    /// Closes the object, reporting a failure (for a file being written: its last metadata
    /// could not be written, e.g. a full disk).
    consuming func close(file: String?) throws(TesseraError) {
        let (id, kind) = (self.id, self.kind)
        discard self
        try HDF5Executor.run { () throws(TesseraError) in
            guard Self.close(id, kind) >= 0 else { throw TesseraError(.io, "HDF5: closing failed (disk full or I/O error?)", file: file) }
        }
    }

    deinit {
        let (id, kind) = (self.id, self.kind)
        _ = try? HDF5Executor.run { () throws(TesseraError) in Self.close(id, kind) }
    }
}

/// The HDF5 type that stores a dtype's elements (bf16 and fp16 as 2-byte unsigned integers).
public struct HDF5Type: Sendable {
    let dtype: DType

    /// Its libhdf5 identifier (the macros behind it call `H5open`: only inside
    /// ``HDF5Executor/run(_:)``).
    var id: hid_t {
        assert(HDF5Executor.isInside, "libhdf5 called outside HDF5Executor.run")
        return switch dtype {
        case .bfloat16, .float16: tessera_h5t_std_u16le()
        case .float32: tessera_h5t_native_float()
        case .float64: tessera_h5t_native_double()
        case .int64: tessera_h5t_native_int64()
        case .int32: tessera_h5t_native_int32()
        case .int16: tessera_h5t_native_int16()
        case .int8: tessera_h5t_native_int8()
        case .uint8, .bool: tessera_h5t_native_uint8()
        }
    }
}

/// The chunk of a chunked dataset as stored: its position and its (filtered) bytes in the file.
public struct HDF5Chunk: Sendable {
    public var offset: [Int]
    public var filterMask: UInt32
    public var address: Int
    public var size: Int
}
