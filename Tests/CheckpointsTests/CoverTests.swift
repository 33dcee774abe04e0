@testable import Checkpoints
import Platform
import TestSupport
import Testing

private func grid(_ shape: [Int], _ chunk: [Int]) -> [Piece] {
    Box.grid(shape: shape, chunk: chunk).map { _, box in
        Piece(storage: FileSlice(path: "f", offset: 0, count: 0), dtype: .bfloat16, storageOffset: 0,
              strides: DistReader.cStrides(box.shape), shape: box.shape, globalOffset: box.offset, origin: "\(box.offset)")
    }
}

private func tensor(_ shape: [Int], _ pieces: [Piece]) -> GlobalTensor {
    GlobalTensor(name: "t", dtype: .bfloat16, shape: shape, pieces: pieces)
}

/// Grids of every kind tile their tensor, the large ones included (tens of thousands of
/// chunks, as a 340B model's embedding in a chunked store has), their pieces in a seeded random order.
@Test(arguments: [([7], [2]), ([6, 10], [4, 3]), ([4, 6, 10], [3, 4, 4]), ([40_000], [1]), ([3000, 64], [1, 16])])
func exactGridsCover(_ shape: [Int], _ chunk: [Int]) throws {
    let pieces = grid(shape, chunk)
    var rng = try TestSeed.generator("exactGridsCover \(shape) in \(chunk)")
    try CatalogueBuilder.checkCover(pieces.shuffled(using: &rng), tensor: tensor(shape, pieces))
}

/// An overlap is found wherever it lies (neighbours in the sweep or not), and named.
@Test func overlapsAreNamed() throws {
    var pieces = grid([6, 10], [2, 5])
    // Piece (2, 5) grows one row down into (4, 5); the last piece loses a row, so the count still matches.
    let grown = pieces.firstIndex { $0.globalOffset == [2, 5] }!
    pieces[grown].shape = [3, 5]
    let last = pieces.firstIndex { $0.globalOffset == [4, 0] }!
    pieces[last].shape = [1, 5]
    do {
        try CatalogueBuilder.checkCover(pieces.reversed(), tensor: tensor([6, 10], pieces))
        Issue.record("an overlap went unnoticed")
    } catch {
        #expect(error.code == .inconsistent)
        #expect(error.message.contains("[2, 5]") && error.message.contains("[4, 5]"))
    }
    // Two scalar pieces always overlap.
    let scalar = Piece(storage: FileSlice(path: "f", offset: 0, count: 2), dtype: .bfloat16, storageOffset: 0,
                       strides: [], shape: [], globalOffset: [], origin: "s")
    #expect(throws: TesseraError.self) { try CatalogueBuilder.checkCover([scalar, scalar], tensor: tensor([], [scalar])) }
    try CatalogueBuilder.checkCover([scalar], tensor: tensor([], [scalar]))
}

@Test func missingPiecesAreAMissingShard() throws {
    let pieces = grid([6, 10], [2, 5])
    do {
        try CatalogueBuilder.checkCover(Array(pieces.dropLast()), tensor: tensor([6, 10], pieces))
        Issue.record("a missing piece went unnoticed")
    } catch {
        #expect(error.code == .missing)
    }
}
