@testable import Checkpoints
import Platform
import Testing

/// The planner alone: geometry in, segments out, no file read (the storage paths do not exist).
private func piece(_ shape: [Int], at offset: [Int], strides: [Int], start: Int = 0) -> Piece {
    Piece(storage: FileSlice(path: "/nonexistent", offset: 0, count: 0), dtype: .int16, storageOffset: start, strides: strides,
          shape: shape, globalOffset: offset, origin: "p\(offset)")
}

private func rows(_ plan: RunPlan) throws -> [(outer: [Int], segments: [RunPlan.Segment])] {
    var out: [(outer: [Int], segments: [RunPlan.Segment])] = []
    try plan.forEachRow { outer, segments in out.append((outer, segments)) }
    return out
}

@Test func columnPiecesGiveOneSegmentEachInColumnOrder() throws {
    // 2x4 split by columns; the right piece listed first.
    let plan = RunPlan(tensor: "w", shape: [2, 4], pieces: [piece([2, 2], at: [0, 2], strides: [2, 1]),
                                                            piece([2, 2], at: [0, 0], strides: [2, 1])],
                       region: Box(offset: [0, 0], shape: [2, 4]))
    let r = try rows(plan)
    try #require(r.count == 2)
    #expect(r[0].outer == [0] && r[1].outer == [1])
    #expect(r[0].segments == [.piece(1, element: 0, width: 2, stride: 1), .piece(0, element: 0, width: 2, stride: 1)])
    #expect(r[1].segments == [.piece(1, element: 2, width: 2, stride: 1), .piece(0, element: 2, width: 2, stride: 1)])
}

@Test func aRegionInsideOnePieceStartsAtItsElement() throws {
    // A 4x6 piece stored with row stride 8 from element 3; the region is rows 1..<3, columns 2..<5.
    let plan = RunPlan(tensor: "w", shape: [4, 6], pieces: [piece([4, 6], at: [0, 0], strides: [8, 1], start: 3)],
                       region: Box(offset: [1, 2], shape: [2, 3]))
    let r = try rows(plan)
    try #require(r.count == 2)
    #expect(r.map(\.segments) == [[.piece(0, element: 3 + 8 + 2, width: 3, stride: 1)],
                                  [.piece(0, element: 3 + 16 + 2, width: 3, stride: 1)]])
}

@Test func beyondTheShapeIsZeros() throws {
    // Vocabulary padding: a 2x3 tensor read as a 3x4 box.
    let plan = RunPlan(tensor: "emb", shape: [2, 3], pieces: [piece([2, 3], at: [0, 0], strides: [3, 1])],
                       region: Box(offset: [0, 0], shape: [3, 4]))
    let r = try rows(plan)
    try #require(r.count == 3)
    #expect(r[0].segments == [.piece(0, element: 0, width: 3, stride: 1), .zeros(1)])
    #expect(r[2].segments == [.zeros(4)])
}

@Test func stridedPiecesKeepTheirStride() throws {
    // A transposed 3x2 view of a 2x3 storage.
    let plan = RunPlan(tensor: "t", shape: [3, 2], pieces: [piece([3, 2], at: [0, 0], strides: [1, 3])],
                       region: Box(offset: [0, 0], shape: [3, 2]))
    let r = try rows(plan)
    try #require(r.count == 3)
    #expect(r[2].segments == [.piece(0, element: 2, width: 2, stride: 3)])
}

@Test func uncoveredColumnsAreErrorsNamingTheRow() throws {
    let plan = RunPlan(tensor: "w", shape: [1, 4], pieces: [piece([1, 2], at: [0, 2], strides: [2, 1])],
                       region: Box(offset: [0, 0], shape: [1, 4]))
    #expect { try rows(plan) } throws: { error in
        let e = error as? TesseraError
        return e?.tensor == "w" && e?.message.contains("no piece covers row [0] from column 0") == true
    }
    let short = RunPlan(tensor: "w", shape: [1, 4], pieces: [piece([1, 2], at: [0, 0], strides: [2, 1])],
                        region: Box(offset: [0, 0], shape: [1, 4]))
    #expect { try rows(short) } throws: { error in
        (error as? TesseraError)?.message.contains("pieces cover columns 0..<2 of 0..<4") == true
    }
}

@Test func stackedPiecesOutsideTheRegionAreNotConsidered() throws {
    // Three layers of a stacked [3, 2, 2] tensor, one piece each; the region is layer 1.
    let pieces = (0..<3).map { piece([1, 2, 2], at: [$0, 0, 0], strides: [4, 2, 1]) }
    let plan = RunPlan(tensor: "s", shape: [3, 2, 2], pieces: pieces, region: Box(offset: [1, 0, 0], shape: [1, 2, 2]))
    let r = try rows(plan)
    try #require(r.count == 2)
    #expect(r.map(\.outer) == [[1, 0], [1, 1]])
    #expect(r.map(\.segments) == [[.piece(1, element: 0, width: 2, stride: 1)], [.piece(1, element: 2, width: 2, stride: 1)]])
}
