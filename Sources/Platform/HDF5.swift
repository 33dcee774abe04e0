import CHDF5
import CShims
import Glibc

/// The chunk of a chunked dataset as stored: its position and its (filtered) bytes in the file.
public struct HDF5Chunk: Sendable {
    public var offset: [Int]
    public var filterMask: UInt32
    public var address: Int
    public var size: Int
}

/// The thin layer over libhdf5: an owned identifier closed by its matching H5*close.
public struct HDF5Object: ~Copyable {
    public enum Kind { case file, dataset, group, space, type, plist, attribute }
    public let id: hid_t
    let kind: Kind

    init(_ id: hid_t, _ kind: Kind, _ what: @autoclosure () -> String, file: String?) throws(TesseraError) {
        guard id >= 0 else { throw TesseraError(.io, "HDF5: \(what()) failed", file: file) }
        self.id = id
        self.kind = kind
    }

    /// Closes `id` with the H5*close of its kind.
    private static func close(_ id: hid_t, _ kind: Kind) -> herr_t {
        switch kind {
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
    public consuming func close(file: String?) throws(TesseraError) {
        let (id, kind) = (self.id, self.kind)
        discard self
        guard Self.close(id, kind) >= 0 else { throw TesseraError(.io, "HDF5: closing failed (disk full or I/O error?)", file: file) }
    }

    deinit { _ = Self.close(id, kind) }
}

/// Process-wide HDF5 set-up: silence the library's own error printing, register zstd.
public enum HDF5Library {
    private static let ready: Bool = {
        H5open()
        H5Eset_auto2(hid_t(0), nil, nil)
        return tessera_register_zstd() == 0
    }()

    /// Makes sure the library is initialised and the zstd filter (32015) is registered, and
    /// that HDF5 prints no error stacks on this thread (a thread-safe libhdf5 keeps that
    /// setting per thread; failures reach the user as ``TesseraError``s instead).
    public static func prepare() throws(TesseraError) {
        guard ready else { throw TesseraError(.unsupported, "cannot register the zstd HDF5 filter (32015)") }
        H5Eset_auto2(hid_t(0), nil, nil)
    }
}

/// An HDF5 file, open for reading or being written.
public struct HDF5File: ~Copyable {
    public let path: String
    public let handle: HDF5Object

    /// Creates (truncating) a file. `direct`: its data reach the disk with O_DIRECT, through
    /// Tessera's file driver (no page-cache copies; ordinary writes where the filesystem has
    /// no O_DIRECT); the file is a plain HDF5 file either way.
    public static func create(_ path: String, direct: Bool = false) throws(TesseraError) -> HDF5File {
        try HDF5Library.prepare()
        let fapl = direct ? tessera_direct_fapl() : H5Pcreate(tessera_h5p_file_access())
        guard fapl >= 0 else { throw TesseraError(.io, "HDF5: cannot set up the file driver", file: path) }
        defer { H5Pclose(fapl) }
        // libver bounds "latest" (1.10 is the newest format libhdf5 1.10 writes): checksummed metadata throughout (v3 superblock, v2 object headers, checksummed
        // chunk indexes), so libhdf5 itself detects damage when the store is read.
        guard H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0 else {
            throw TesseraError(.io, "HDF5: cannot ask for the checksummed file format", file: path)
        }
        let id = H5Fcreate(path, tessera_h5f_acc_trunc(), hid_t(H5P_DEFAULT), fapl)
        return HDF5File(path: path, handle: try HDF5Object(id, .file, "create", file: path))
    }

    /// Opens a file read-only.
    public static func open(_ path: String) throws(TesseraError) -> HDF5File {
        try HDF5Library.prepare()
        let id = H5Fopen(path, tessera_h5f_acc_rdonly(), hid_t(H5P_DEFAULT))
        guard id >= 0 else {
            throw TesseraError(.corrupt, "not a readable HDF5 file (truncated or damaged?)", file: path)
        }
        return HDF5File(path: path, handle: try HDF5Object(id, .file, "open", file: path))
    }

    /// Opens a file for adding attributes and data.
    public static func openForUpdate(_ path: String) throws(TesseraError) -> HDF5File {
        try HDF5Library.prepare()
        let id = H5Fopen(path, tessera_h5f_acc_rdwr(), hid_t(H5P_DEFAULT))
        return HDF5File(path: path, handle: try HDF5Object(id, .file, "open for update", file: path))
    }

    /// The HDF5 file type that stores `dtype` (bf16 and fp16 as 2-byte unsigned integers).
    public static func storedType(_ dtype: DType) -> hid_t {
        switch dtype {
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

    /// A string attribute of the root (or of the object at `path`).
    public func stringAttribute(_ name: String, at path: String = "/") -> String? {
        let obj = H5Oopen(handle.id, path, hid_t(H5P_DEFAULT))
        guard obj >= 0 else { return nil }
        defer { H5Oclose(obj) }
        guard let c = tessera_read_string_attr(obj, name) else { return nil }
        defer { free(c) }
        return String(cString: c)
    }

    /// Sets a string attribute on the object at `path`.
    public func setStringAttribute(_ name: String, _ value: String, at path: String = "/") throws(TesseraError) {
        let obj = H5Oopen(handle.id, path, hid_t(H5P_DEFAULT))
        guard obj >= 0 else { throw TesseraError(.io, "HDF5: cannot open '\(path)'", file: self.path) }
        defer { H5Oclose(obj) }
        guard tessera_write_string_attr(obj, name, value) == 0 else {
            throw TesseraError(.io, "HDF5: cannot write attribute '\(name)' of '\(path)'", file: self.path)
        }
    }

    /// Paths of every dataset below `group`.
    public func datasets(under group: String) -> [String] {
        let g = H5Gopen2(handle.id, group, hid_t(H5P_DEFAULT))
        guard g >= 0 else { return [] }
        defer { H5Gclose(g) }
        guard let c = tessera_list_datasets(g) else { return [] }
        defer { free(c) }
        let base = group.hasSuffix("/") ? group : group + "/"
        return String(cString: c).split(separator: "\n").map { base + $0 }
    }

    /// Creates a dataset at `path` (intermediate groups included). `chunk` nil means
    /// contiguous with its space allocated at once; otherwise chunked with byte shuffle
    /// and zstd at `level` (nil level: no filters).
    public func createDataset(_ path: String, type: hid_t, shape: [Int], chunk: [Int]?, zstdLevel: Int32?) throws(TesseraError) -> HDF5Object {
        let dims = shape.map { hsize_t($0) }
        let space = try HDF5Object(H5Screate_simple(Int32(dims.count), dims, nil), .space, "dataspace", file: self.path)
        let dcpl = try HDF5Object(H5Pcreate(tessera_h5p_dataset_create()), .plist, "dcpl", file: self.path)
        if let chunk {
            let c = chunk.map { hsize_t($0) }
            H5Pset_chunk(dcpl.id, Int32(c.count), c)
            // Chunks left unwritten (all zeros) read as this fill value: zero.
            var zero = [UInt8](repeating: 0, count: 16)
            H5Pset_fill_value(dcpl.id, type, &zero)
            if let zstdLevel {
                H5Pset_shuffle(dcpl.id)
                var cd: [UInt32] = [UInt32(bitPattern: zstdLevel)]
                H5Pset_filter(dcpl.id, 32015, UInt32(H5Z_FLAG_MANDATORY), 1, &cd)
            }
        } else {
            H5Pset_layout(dcpl.id, H5D_CONTIGUOUS)
            H5Pset_alloc_time(dcpl.id, H5D_ALLOC_TIME_EARLY)
            H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER)
        }
        let lcpl = try HDF5Object(H5Pcreate(tessera_h5p_link_create()), .plist, "lcpl", file: self.path)
        H5Pset_create_intermediate_group(lcpl.id, 1)
        let id = H5Dcreate2(handle.id, path, type, space.id, lcpl.id, dcpl.id, hid_t(H5P_DEFAULT))
        return try HDF5Object(id, .dataset, "create dataset '\(path)'", file: self.path)
    }

    /// Opens the dataset at `path`.
    public func openDataset(_ path: String) throws(TesseraError) -> HDF5Object {
        let id = H5Dopen2(handle.id, path, hid_t(H5P_DEFAULT))
        guard id >= 0 else { throw TesseraError(.missing, "no dataset '\(path)'", file: self.path) }
        return try HDF5Object(id, .dataset, "open dataset", file: self.path)
    }

    /// Writes one already-filtered chunk at element offset `offset`.
    public func writeChunk(_ dataset: borrowing HDF5Object, offset: [Int], bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        let o = offset.map { hsize_t($0) }
        guard H5Dwrite_chunk(dataset.id, hid_t(H5P_DEFAULT), 0, o, bytes.count, bytes.baseAddress) >= 0 else {
            throw TesseraError(.io, "HDF5: writing a chunk at \(offset) failed (disk full?)", file: path)
        }
    }

    /// Writes a whole small dataset from memory.
    public func write(_ dataset: borrowing HDF5Object, memoryType: hid_t, bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        guard bytes.count == 0 || H5Dwrite(dataset.id, memoryType, hid_t(H5S_ALL), hid_t(H5S_ALL), hid_t(H5P_DEFAULT), bytes.baseAddress) >= 0 else {
            throw TesseraError(.io, "HDF5: writing a dataset failed", file: path)
        }
    }

    /// Flushes everything and closes the file, reporting a failure (a full disk, EFBIG, EIO):
    /// a store being written is complete only once this returns.
    public consuming func close() throws(TesseraError) {
        guard H5Fflush(handle.id, H5F_SCOPE_GLOBAL) >= 0 else {
            throw TesseraError(.io, "HDF5: writing the file failed (disk full or I/O error?)", file: path)
        }
        try handle.close(file: path)
    }
}

/// Facts about an open dataset.
public struct HDF5DatasetInfo {
    public var shape: [Int]
    /// nil for a contiguous dataset.
    public var chunk: [Int]?
    /// (filter id, cd_values) in pipeline order.
    public var filters: [(Int32, [UInt32])]
    /// File offset of a contiguous dataset's data (nil when unallocated or chunked).
    public var contiguousOffset: Int?
    /// Bytes per element and whether the stored type is an unsigned/float/... class.
    public var elementSize: Int
    public var typeClass: H5T_class_t
    /// True when chunks never written read as zeros (the fill value is zero or the default).
    public var fillIsZero: Bool
}

extension HDF5Object {
    /// Shape, layout, filters and type of a dataset.
    public func datasetInfo() -> HDF5DatasetInfo {
        let space = H5Dget_space(id)
        defer { H5Sclose(space) }
        let rank = max(0, Int(H5Sget_simple_extent_ndims(space)))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        let dcpl = H5Dget_create_plist(id)
        defer { H5Pclose(dcpl) }
        var chunk: [Int]?
        if H5Pget_layout(dcpl) == H5D_CHUNKED {
            var c = [hsize_t](repeating: 0, count: max(rank, 1))
            H5Pget_chunk(dcpl, Int32(rank), &c)
            chunk = c.prefix(rank).map { Int(clamping: $0) }
        }
        var filters: [(Int32, [UInt32])] = []
        for i in 0..<H5Pget_nfilters(dcpl) {
            var flags: UInt32 = 0
            var n = 8
            var cd = [UInt32](repeating: 0, count: 8)
            var config: UInt32 = 0
            let f = H5Pget_filter2(dcpl, UInt32(i), &flags, &n, &cd, 0, nil, &config)
            filters.append((f, Array(cd.prefix(n))))
        }
        let addr = H5Dget_offset(id)
        let type = H5Dget_type(id)
        defer { H5Tclose(type) }
        var status = H5D_FILL_VALUE_ERROR
        var fillIsZero = false
        if H5Pfill_value_defined(dcpl, &status) >= 0 {
            if status == H5D_FILL_VALUE_DEFAULT {
                fillIsZero = true
            } else if status == H5D_FILL_VALUE_USER_DEFINED, H5Tget_size(type) <= 64 {
                var fill = [UInt8](repeating: 0xFF, count: 64)
                fillIsZero = H5Pget_fill_value(dcpl, type, &fill) >= 0 && fill.prefix(H5Tget_size(type)).allSatisfy { $0 == 0 }
            }
        }
        return HDF5DatasetInfo(shape: dims.prefix(rank).map { Int(clamping: $0) }, chunk: chunk, filters: filters,
                               contiguousOffset: chunk == nil && addr != tessera_haddr_undef() ? Int(clamping: addr) : nil,
                               elementSize: H5Tget_size(type), typeClass: H5Tget_class(type), fillIsZero: fillIsZero)
    }

    /// Every stored chunk of a chunked dataset; nil when the index cannot be read or claims
    /// more than `limit` chunks (a damaged index: the loop over it is bounded).
    public func chunks(rank: Int, limit: Int) -> [HDF5Chunk]? {
        let space = H5Dget_space(id)
        defer { H5Sclose(space) }
        var n: hsize_t = 0
        guard H5Dget_num_chunks(id, space, &n) >= 0, n <= UInt64(max(limit, 0)) else { return nil }
        var out: [HDF5Chunk] = []
        out.reserveCapacity(Int(n))
        var offset = [hsize_t](repeating: 0, count: max(rank, 1))
        for i in 0..<n {
            var mask: UInt32 = 0
            var addr: haddr_t = 0
            var size: hsize_t = 0
            guard H5Dget_chunk_info(id, space, i, &offset, &mask, &addr, &size) >= 0, addr <= UInt64(Int.max),
                  size <= UInt64(Int.max) else { return nil }
            out.append(HDF5Chunk(offset: offset.prefix(rank).map { Int(clamping: $0) }, filterMask: mask, address: Int(addr), size: Int(size)))
        }
        return out
    }

    /// A string attribute of this object.
    public func stringAttribute(_ name: String) -> String? {
        guard let c = tessera_read_string_attr(id, name) else { return nil }
        defer { free(c) }
        return String(cString: c)
    }

    /// Sets a string attribute on this object.
    public func setStringAttribute(_ name: String, _ value: String) throws(TesseraError) {
        guard tessera_write_string_attr(id, name, value) == 0 else {
            throw TesseraError(.io, "HDF5: cannot write attribute '\(name)'")
        }
    }
}
