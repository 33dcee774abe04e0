import CHDF5
import CHDF5Shims
import Glibc
import Platform

/// An HDF5 file, open for reading or being written. Every method runs its libhdf5 calls
/// through ``HDF5Executor``.
public struct HDF5File: ~Copyable {
    public let path: String
    let handle: HDF5Object

    /// Creates (truncating) a file. `direct`: its data reach the disk with O_DIRECT, through
    /// Tessera's file driver (no page-cache copies; ordinary writes where the filesystem has
    /// no O_DIRECT); the file is a plain HDF5 file either way.
    public static func create(_ path: String, direct: Bool = false) throws(TesseraError) -> HDF5File {
        try HDF5Executor.run(file: path) { () throws(TesseraError) -> HDF5File in
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
    }

    /// Opens a file read-only.
    public static func open(_ path: String) throws(TesseraError) -> HDF5File {
        try HDF5Executor.run(file: path) { () throws(TesseraError) -> HDF5File in
            let id = H5Fopen(path, tessera_h5f_acc_rdonly(), hid_t(H5P_DEFAULT))
            guard id >= 0 else {
                throw TesseraError(.corrupt, "not a readable HDF5 file (truncated or damaged?)", file: path)
            }
            return HDF5File(path: path, handle: try HDF5Object(id, .file, "open", file: path))
        }
    }

    /// Opens a file for adding attributes and data.
    public static func openForUpdate(_ path: String) throws(TesseraError) -> HDF5File {
        try HDF5Executor.run(file: path) { () throws(TesseraError) -> HDF5File in
            let id = H5Fopen(path, tessera_h5f_acc_rdwr(), hid_t(H5P_DEFAULT))
            return HDF5File(path: path, handle: try HDF5Object(id, .file, "open for update", file: path))
        }
    }

    /// The HDF5 file type that stores `dtype` (bf16 and fp16 as 2-byte unsigned integers).
    public static func storedType(_ dtype: DType) -> HDF5Type { HDF5Type(dtype: dtype) }

    /// A string attribute of the root (or of the object at `path`); nil when absent.
    public func stringAttribute(_ name: String, at path: String = "/") throws(TesseraError) -> String? {
        let file = handle.id
        return try HDF5Executor.run { () throws(TesseraError) -> String? in
            let obj = H5Oopen(file, path, hid_t(H5P_DEFAULT))
            guard obj >= 0 else { return nil }
            defer { H5Oclose(obj) }
            return Self.readStringAttribute(obj, name)
        }
    }

    /// Sets a string attribute on the object at `path`.
    public func setStringAttribute(_ name: String, _ value: String, at path: String = "/") throws(TesseraError) {
        let (file, filePath) = (handle.id, self.path)
        try HDF5Executor.run { () throws(TesseraError) in
            let obj = H5Oopen(file, path, hid_t(H5P_DEFAULT))
            guard obj >= 0 else { throw TesseraError(.io, "HDF5: cannot open '\(path)'", file: filePath) }
            defer { H5Oclose(obj) }
            guard tessera_write_string_attr(obj, name, value) == 0 else {
                throw TesseraError(.io, "HDF5: cannot write attribute '\(name)' of '\(path)'", file: filePath)
            }
        }
    }

    /// A string attribute of the open object `obj` (inside ``HDF5Executor/run(_:)``).
    static func readStringAttribute(_ obj: hid_t, _ name: String) -> String? {
        assert(HDF5Executor.isInside, "libhdf5 called outside HDF5Executor.run")
        guard let c = tessera_read_string_attr(obj, name) else { return nil }
        defer { free(c) }
        return String(cString: c)
    }

    /// Paths of every dataset below `group` (none when there is no such group).
    public func datasets(under group: String) throws(TesseraError) -> [String] {
        let file = handle.id
        return try HDF5Executor.run { () throws(TesseraError) -> [String] in
            let g = H5Gopen2(file, group, hid_t(H5P_DEFAULT))
            guard g >= 0 else { return [] }
            defer { H5Gclose(g) }
            guard let c = tessera_list_datasets(g) else { return [] }
            defer { free(c) }
            let base = group.hasSuffix("/") ? group : group + "/"
            return String(cString: c).split(separator: "\n").map { base + $0 }
        }
    }

    /// Creates a dataset at `path` (intermediate groups included). `chunk` nil means
    /// contiguous with its space allocated at once; otherwise chunked with byte shuffle
    /// and zstd at `level` (nil level: no filters).
    public func createDataset(_ path: String, type: HDF5Type, shape: [Int], chunk: [Int]?, zstdLevel: Int32?) throws(TesseraError) -> HDF5Object {
        let (file, filePath) = (handle.id, self.path)
        return try HDF5Executor.run { () throws(TesseraError) -> HDF5Object in
            let dims = shape.map { hsize_t($0) }
            let space = try HDF5Object(H5Screate_simple(Int32(dims.count), dims, nil), .space, "dataspace", file: filePath)
            let dcpl = try HDF5Object(H5Pcreate(tessera_h5p_dataset_create()), .plist, "dcpl", file: filePath)
            if let chunk {
                let c = chunk.map { hsize_t($0) }
                H5Pset_chunk(dcpl.id, Int32(c.count), c)
                // Chunks left unwritten (all zeros) read as this fill value: zero.
                var zero = [UInt8](repeating: 0, count: 16)
                H5Pset_fill_value(dcpl.id, type.id, &zero)
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
            let lcpl = try HDF5Object(H5Pcreate(tessera_h5p_link_create()), .plist, "lcpl", file: filePath)
            H5Pset_create_intermediate_group(lcpl.id, 1)
            let id = H5Dcreate2(file, path, type.id, space.id, lcpl.id, dcpl.id, hid_t(H5P_DEFAULT))
            return try HDF5Object(id, .dataset, "create dataset '\(path)'", file: filePath)
        }
    }

    /// Opens the dataset at `path`.
    public func openDataset(_ path: String) throws(TesseraError) -> HDF5Object {
        let (file, filePath) = (handle.id, self.path)
        return try HDF5Executor.run { () throws(TesseraError) -> HDF5Object in
            let id = H5Dopen2(file, path, hid_t(H5P_DEFAULT))
            guard id >= 0 else { throw TesseraError(.missing, "no dataset '\(path)'", file: filePath) }
            return try HDF5Object(id, .dataset, "open dataset", file: filePath)
        }
    }

    /// Writes one already-filtered chunk at element offset `offset`.
    public func writeChunk(_ dataset: borrowing HDF5Object, offset: [Int], bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        let (id, filePath) = (dataset.id, self.path)
        try HDF5Executor.run { () throws(TesseraError) in
            let o = offset.map { hsize_t($0) }
            guard H5Dwrite_chunk(id, hid_t(H5P_DEFAULT), 0, o, bytes.count, bytes.baseAddress) >= 0 else {
                throw TesseraError(.io, "HDF5: writing a chunk at \(offset) failed (disk full?)", file: filePath)
            }
        }
    }

    /// Writes a whole small dataset from memory, its elements of type `memoryType`.
    public func write(_ dataset: borrowing HDF5Object, memoryType: HDF5Type, bytes: UnsafeRawBufferPointer) throws(TesseraError) {
        guard bytes.count > 0 else { return }
        let (id, filePath) = (dataset.id, self.path)
        try HDF5Executor.run { () throws(TesseraError) in
            guard H5Dwrite(id, memoryType.id, hid_t(H5S_ALL), hid_t(H5S_ALL), hid_t(H5P_DEFAULT), bytes.baseAddress) >= 0 else {
                throw TesseraError(.io, "HDF5: writing a dataset failed", file: filePath)
            }
        }
    }

    /// Flushes everything and closes the file, reporting a failure (a full disk, EFBIG, EIO):
    /// a store being written is complete only once this returns.
    public consuming func close() throws(TesseraError) {
        let (id, filePath) = (handle.id, self.path)
        try HDF5Executor.run { () throws(TesseraError) in
            guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else {
                throw TesseraError(.io, "HDF5: writing the file failed (disk full or I/O error?)", file: filePath)
            }
        }
        try handle.close(file: path)
    }
}
