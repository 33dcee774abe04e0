import CHDF5
import CHDF5Shims
import Platform

/// The class of a dataset's stored type, as far as Tessera tells them apart.
public enum HDF5TypeClass: Sendable {
    case integer, float, other
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
    /// Bytes per element and the class of the stored type.
    public var elementSize: Int
    public var typeClass: HDF5TypeClass
    /// True when chunks never written read as zeros (the fill value is zero or the default).
    public var fillIsZero: Bool
}

extension HDF5Object {
    /// Shape, layout, filters and type of a dataset.
    public func datasetInfo() throws(TesseraError) -> HDF5DatasetInfo {
        let id = self.id
        return try HDF5Executor.run { () throws(TesseraError) -> HDF5DatasetInfo in
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
            let addr = H5Dget_offset(id)
            let type = H5Dget_type(id)
            defer { H5Tclose(type) }
            let typeClass: HDF5TypeClass = switch H5Tget_class(type) {
            case H5T_INTEGER: .integer
            case H5T_FLOAT: .float
            default: .other
            }
            return HDF5DatasetInfo(shape: dims.prefix(rank).map { Int(clamping: $0) }, chunk: chunk, filters: Self.filters(dcpl),
                                   contiguousOffset: chunk == nil && addr != tessera_haddr_undef() ? Int(clamping: addr) : nil,
                                   elementSize: H5Tget_size(type), typeClass: typeClass, fillIsZero: Self.fillIsZero(dcpl, type: type))
        }
    }

    /// The filter pipeline of a dataset creation property list (inside ``HDF5Executor/run(_:)``).
    private static func filters(_ dcpl: hid_t) -> [(Int32, [UInt32])] {
        assert(HDF5Executor.isInside, "libhdf5 called outside HDF5Executor.run")
        var filters: [(Int32, [UInt32])] = []
        for i in 0..<H5Pget_nfilters(dcpl) {
            var flags: UInt32 = 0
            var n = 8
            var cd = [UInt32](repeating: 0, count: 8)
            var config: UInt32 = 0
            let f = H5Pget_filter2(dcpl, UInt32(i), &flags, &n, &cd, 0, nil, &config)
            filters.append((f, Array(cd.prefix(n))))
        }
        return filters
    }

    /// True when the fill value is the default or a user-defined zero (inside ``HDF5Executor/run(_:)``).
    private static func fillIsZero(_ dcpl: hid_t, type: hid_t) -> Bool {
        assert(HDF5Executor.isInside, "libhdf5 called outside HDF5Executor.run")
        var status = H5D_FILL_VALUE_ERROR
        guard H5Pfill_value_defined(dcpl, &status) >= 0 else { return false }
        if status == H5D_FILL_VALUE_DEFAULT { return true }
        guard status == H5D_FILL_VALUE_USER_DEFINED, H5Tget_size(type) <= 64 else { return false }
        var fill = [UInt8](repeating: 0xFF, count: 64)
        return H5Pget_fill_value(dcpl, type, &fill) >= 0 && fill.prefix(H5Tget_size(type)).allSatisfy { $0 == 0 }
    }

    /// Every stored chunk of a chunked dataset; nil when the index cannot be read or claims
    /// more than `limit` chunks (a damaged index: the loop over it is bounded).
    public func chunks(rank: Int, limit: Int) throws(TesseraError) -> [HDF5Chunk]? {
        let id = self.id
        return try HDF5Executor.run { () throws(TesseraError) -> [HDF5Chunk]? in
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
    }

    /// A string attribute of this object; nil when absent.
    public func stringAttribute(_ name: String) throws(TesseraError) -> String? {
        let id = self.id
        return try HDF5Executor.run { () throws(TesseraError) -> String? in HDF5File.readStringAttribute(id, name) }
    }

    /// Sets a string attribute on this object.
    public func setStringAttribute(_ name: String, _ value: String) throws(TesseraError) {
        let id = self.id
        try HDF5Executor.run { () throws(TesseraError) in
            guard tessera_write_string_attr(id, name, value) == 0 else {
                throw TesseraError(.io, "HDF5: cannot write attribute '\(name)'")
            }
        }
    }
}
