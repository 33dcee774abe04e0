@testable import Checkpoints
import Codecs
import Foundation
import Platform
import TestSupport
import Testing

/// A file in `folder` holding `values` as little-endian Int16s.
private func storage(_ values: [Int16], in folder: TemporaryFolder) throws -> FileSlice {
    let path = folder.file(UUID().uuidString)
    let bytes = values.flatMap { v -> [UInt8] in [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)] }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return FileSlice(path: path, offset: 0, count: bytes.count)
}

/// The global 2x4 tensor [[0,1,2,3],[4,5,6,7]] split by columns into two 2x2 pieces in files
/// of `folder`, the right piece listed first when `rightFirst`.
private func columnSplit(in folder: TemporaryFolder, rightFirst: Bool = false) throws -> GlobalTensor {
    let left = Piece(storage: try storage([0, 1, 4, 5], in: folder), dtype: .int16, storageOffset: 0, strides: [2, 1], shape: [2, 2],
                     globalOffset: [0, 0], origin: "l")
    let right = Piece(storage: try storage([2, 3, 6, 7], in: folder), dtype: .int16, storageOffset: 0, strides: [2, 1], shape: [2, 2],
                      globalOffset: [0, 2], origin: "r")
    return GlobalTensor(name: "w", dtype: .int16, shape: [2, 4], pieces: rightFirst ? [right, left] : [left, right])
}

/// The Int16 values of little-endian `bytes`.
private func int16s(_ bytes: [UInt8]) -> [Int16] {
    stride(from: 0, to: bytes.count, by: 2).map { Int16(bytes[$0]) | Int16(bytes[$0 + 1]) << 8 }
}

private func collect(_ t: GlobalTensor) throws -> [Int16] {
    var out: [UInt8] = []
    try TensorStreamer(cache: MappingCache()).forEachRun(of: t) { run in out += run }
    return int16s(out)
}

@Test func rowParallelPiecesInterleaveInCOrder() throws {
    let folder = try TemporaryFolder("stream")
    #expect(try collect(try columnSplit(in: folder, rightFirst: true)) == [0, 1, 2, 3, 4, 5, 6, 7])
}

@Test func stridedViewsAreGathered() throws {
    // A transposed view: storage [[0,1,2],[3,4,5]] seen as its 3x2 transpose.
    let folder = try TemporaryFolder("stream")
    let s = try storage([0, 1, 2, 3, 4, 5], in: folder)
    let t = GlobalTensor(name: "t", dtype: .int16, shape: [3, 2], pieces: [
        Piece(storage: s, dtype: .int16, storageOffset: 0, strides: [1, 3], shape: [3, 2], globalOffset: [0, 0], origin: "s"),
    ], replicas: [])
    #expect(try collect(t) == [0, 3, 1, 4, 2, 5])
}

@Test func gapsInTheCoverAreErrorsNamingTheTensor() throws {
    let folder = try TemporaryFolder("stream")
    let s = try storage([0, 1], in: folder)
    let t = GlobalTensor(name: "gappy", dtype: .int16, shape: [2, 2], pieces: [
        Piece(storage: s, dtype: .int16, storageOffset: 0, strides: [2, 1], shape: [1, 2], globalOffset: [0, 0], origin: "s"),
    ], replicas: [])
    do {
        _ = try collect(t)
        Issue.record("expected an error")
    } catch let e as TesseraError {
        #expect(e.tensor == "gappy")
    }
}

@Test func digestEqualsTheDigestOfTheAssembledBytes() throws {
    let folder = try TemporaryFolder("stream")
    let t = try columnSplit(in: folder)
    let whole = try storage([0, 1, 2, 3, 4, 5, 6, 7], in: folder)
    let file = try MappedFile(path: whole.path)
    var h = SHA256Stream()
    h.update(file.bytes)
    #expect(try TensorStreamer(cache: MappingCache()).sha256(t) == h.finalizeHex())
}

@Test func regionsReadSubBoxesAndZeroFillBeyondTheTensor() throws {
    let folder = try TemporaryFolder("stream")
    let t = try columnSplit(in: folder)
    var out: [UInt8] = []
    // Columns 1..<3 of rows 0..<3: row 2 lies beyond the tensor and reads as zeros.
    try TensorStreamer(cache: MappingCache()).forEachRun(of: t, region: Box(offset: [0, 1], shape: [3, 2])) { out += $0 }
    #expect(int16s(out) == [1, 2, 5, 6, 0, 0])
}

/// Read-ahead asks for the file bytes of the rows a region touches, within the piece: a
/// 10 x 8 BF16 piece stored at byte 100 of its file, placed at global rows 20..<30.
@Test func readAheadCoversTheRowsARegionTouches() {
    let piece = Piece(storage: FileSlice(path: "/x", offset: 100, count: 160), dtype: .bfloat16, storageOffset: 0,
                      strides: [8, 1], shape: [10, 8], globalOffset: [20, 0], origin: "test")
    // Rows 22..<25, columns 2..<4: from the start of row 2 to the end of row 4's last column.
    #expect(TensorStreamer.storedRange(of: piece, in: Box(offset: [22, 2], shape: [3, 2]), dtype: .bfloat16) == (100 + 32)..<(100 + 80))
    // A region past the piece's end is clamped to it; one outside it asks for nothing.
    #expect(TensorStreamer.storedRange(of: piece, in: Box(offset: [28, 0], shape: [10, 8]), dtype: .bfloat16) == (100 + 128)..<260)
    #expect(TensorStreamer.storedRange(of: piece, in: Box(offset: [40, 0], shape: [2, 8]), dtype: .bfloat16).isEmpty)
}
