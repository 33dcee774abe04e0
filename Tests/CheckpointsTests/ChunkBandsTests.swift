@testable import Checkpoints
import Codecs
import Platform
import Testing

/// A tensor of `shape` (element i holds i, as 2-byte values) cut into HDF5-style chunks of
/// `chunk` (edge chunks stored full size, the clipped part left zero), each byte-shuffled:
/// the pieces, the encoded bytes of each, and the tensor's bytes in C order.
private func chunked(_ shape: [Int], _ chunk: [Int]) -> (GlobalTensor, [[UInt8]], [UInt8]) {
    let strides = DistReader.cStrides(shape), chunkStrides = DistReader.cStrides(chunk)
    let total = shape.reduce(1, *), perChunk = chunk.reduce(1, *)
    var expected = [UInt8](repeating: 0, count: 2 * total)
    for i in 0..<total { expected[2 * i] = UInt8(i & 0xFF); expected[2 * i + 1] = UInt8(i >> 8) }
    var offsets: [[Int]] = [[]]
    for d in shape.indices { offsets = offsets.flatMap { o in stride(from: 0, to: shape[d], by: chunk[d]).map { o + [$0] } } }
    var pieces: [Piece] = [], encoded: [[UInt8]] = []
    for (n, offset) in offsets.enumerated() {
        let clipped = shape.indices.map { min(chunk[$0], shape[$0] - offset[$0]) }
        var plain = [UInt16](repeating: 0, count: perChunk)
        var index = [Int](repeating: 0, count: shape.count)
        for _ in 0..<clipped.reduce(1, *) {
            let global = shape.indices.reduce(0) { $0 + (offset[$1] + index[$1]) * strides[$1] }
            plain[shape.indices.reduce(0) { $0 + index[$1] * chunkStrides[$1] }] = UInt16(global)
            var d = shape.count - 1
            while d >= 0 { index[d] += 1; if index[d] < clipped[d] { break }; index[d] = 0; d -= 1 }
        }
        // Byte shuffle: all low bytes, then all high bytes.
        encoded.append(plain.map { UInt8($0 & 0xFF) } + plain.map { UInt8($0 >> 8) })
        var p = Piece(storage: FileSlice(path: "chunks", offset: n * 2 * perChunk, count: 2 * perChunk), dtype: .bfloat16,
                      storageOffset: 0, strides: chunkStrides, shape: clipped, globalOffset: offset, origin: "chunk \(offset)")
        p.encoding = .shuffled(decodedBytes: 2 * perChunk)
        pieces.append(p)
    }
    return (GlobalTensor(name: "t", dtype: .bfloat16, shape: shape, pieces: pieces), encoded, expected)
}

/// Every band of every grid (one chunk per band, chunks narrower than the tensor, clipped
/// edges, three dimensions) decodes, chunk by chunk in any order, into exactly the tensor's
/// bytes of those rows.
@Test(arguments: [([37], [8]), ([6, 10], [4, 10]), ([6, 10], [4, 3]), ([5, 7], [2, 7]), ([4, 6, 10], [3, 4, 10]),
                  ([4, 6, 10], [3, 6, 4]), ([4, 6, 10], [2, 5, 3])])
func bandsDecodeIntoCOrder(_ shape: [Int], _ chunk: [Int]) throws {
    let (tensor, encoded, expected) = chunked(shape, chunk)
    let bands = try #require(ChunkBands(tensor))
    let rowBytes = 2 * shape.dropFirst().reduce(1, *)
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: bands.bandBytes, alignment: 64)
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: bands.decodedBytes, alignment: 64)
    defer { out.deallocate(); scratch.deallocate() }
    var row = 0
    for b in bands.bands.indices {
        out.initializeMemory(as: UInt8.self, repeating: 0xAA)
        for i in bands.bands[b].reversed() {
            try encoded[i].withUnsafeBytes { bytes in
                try bands.decode(chunk: i, band: b, input: bytes, into: out, scratch: scratch, z: ZstdDecompressor())
            }
        }
        let n = bands.byteCount(band: b)
        #expect(Array(out[0..<n]) == Array(expected[(row * rowBytes)..<(row * rowBytes + n)]), "band \(b) of \(shape) in \(chunk)")
        row += n / rowBytes
    }
    #expect(row == shape[0])
}
