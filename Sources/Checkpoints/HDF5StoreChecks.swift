import Glibc
import HDF5
import Platform

/// A store's own structure, checked before it is trusted: every size, offset and count that
/// comes from the file is held against the file's size and sane limits first, so a damaged
/// store is reported, never allocated from, mapped past its end or looped over for ever.
extension HDF5Store {
    /// The largest decoded chunk read (Tessera writes chunks of a few MiB).
    static let maxChunkBytes = 1 << 30
    /// The most chunks one tensor's grid may have.
    static let maxGridChunks = 1 << 26
    /// The most dimensions a tensor may have.
    static let maxRank = 8

    /// The product of `dims`, or nil when one is negative or the product overflows.
    static func checkedProduct(_ dims: [Int]) -> Int? {
        var p = 1
        for d in dims {
            guard d >= 0 else { return nil }
            let (r, overflow) = p.multipliedReportingOverflow(by: d)
            guard !overflow else { return nil }
            p = r
        }
        return p
    }

    /// The size of the file at `path`.
    static func fileSize(_ path: String) throws(TesseraError) -> Int {
        var st = stat()
        guard stat(path, &st) == 0 else { throw .system("cannot stat", file: path, errorNumber: errno) }
        return Int(st.st_size)
    }

    /// Checks a dataset's shape (and chunk shape) as recorded; returns its bytes and, when
    /// chunked, the decoded bytes of one chunk and the number of chunks in its grid.
    static func checkGeometry(shape: [Int], chunk: [Int]?, elementSize: Int, file: String,
                              dataset: String) throws(TesseraError) -> (bytes: Int, chunkBytes: Int, gridChunks: Int) {
        let bad = { (what: String) in TesseraError(.corrupt, "damaged store: \(what)", file: file, tensor: dataset) }
        guard shape.count <= maxRank else { throw bad("\(shape.count) dimensions") }
        guard let elements = checkedProduct(shape), let bytes = checkedProduct([elements, elementSize]) else {
            throw bad("shape \(shape) is not a size")
        }
        guard let chunk else { return (bytes, 0, 0) }
        guard chunk.count == shape.count, chunk.allSatisfy({ $0 > 0 }), let chunkElements = checkedProduct(chunk),
              let chunkBytes = checkedProduct([chunkElements, elementSize]), chunkBytes <= maxChunkBytes else {
            throw bad("chunk shape \(chunk) of a \(shape) dataset")
        }
        guard let grid = checkedProduct(zip(shape, chunk).map { $0 / $1 + ($0 % $1 == 0 ? 0 : 1) }), grid <= maxGridChunks else {
            throw bad("\(shape) in chunks of \(chunk) is more than \(maxGridChunks) chunks")
        }
        return (bytes, chunkBytes, grid)
    }

    /// Checks one stored chunk: inside the file, at a chunk-grid position inside the shape.
    static func checkChunk(_ c: HDF5Chunk, shape: [Int], chunk: [Int], fileSize: Int, file: String,
                           dataset: String) throws(TesseraError) {
        guard c.address >= 0, c.size >= 0, c.address <= fileSize, c.size <= fileSize - c.address else {
            throw TesseraError(.corrupt, "damaged store: chunk at \(c.offset) lies at \(c.address)+\(c.size), outside the file "
                               + "(\(fileSize) bytes)", file: file, tensor: dataset)
        }
        guard c.offset.count == shape.count,
              c.offset.indices.allSatisfy({ c.offset[$0] >= 0 && c.offset[$0] < shape[$0] && c.offset[$0] % chunk[$0] == 0 }) else {
            throw TesseraError(.corrupt, "damaged store: chunk at \(c.offset) is not a chunk of \(shape) in chunks of \(chunk)",
                               file: file, tensor: dataset)
        }
    }

    /// Checks that `count` bytes at `offset` (a contiguous dataset) lie inside the file.
    static func checkExtent(offset: Int, count: Int, fileSize: Int, file: String, dataset: String) throws(TesseraError) {
        guard offset >= 0, count >= 0, offset <= fileSize, count <= fileSize - offset else {
            throw TesseraError(.corrupt, "damaged store: data at \(offset)+\(count) lies outside the file (\(fileSize) bytes)",
                               file: file, tensor: dataset)
        }
    }
}
