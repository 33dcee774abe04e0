import Platform

/// Where the bytes of a box of a tensor come from, row by row in C order: for each row (one
/// index in every dimension but the last) the pieces that cover it, in column order, and the
/// zeros beyond the tensor's shape. Pure geometry: it reads no file, so the coverage rules
/// are tested alone; `TensorStreamer` does the reading.
struct RunPlan {
    /// One stretch of a row.
    enum Segment: Equatable {
        /// `width` elements of piece `piece`, the first at element `element` of its storage
        /// (decoded storage for an encoded piece), the next ones `stride` elements apart.
        case piece(_ piece: Int, element: Int, width: Int, stride: Int)
        /// `count` zero elements: the box reaches beyond the tensor's shape.
        case zeros(_ count: Int)
    }

    let tensor: String
    let shape: [Int]
    let pieces: [Piece]
    let region: Box
    /// The pieces the region touches, by their offset in the last dimension.
    private let order: [Int]

    /// The plan for `region` of a tensor named `tensor` of `shape`, read from `pieces`.
    init(tensor: String, shape: [Int], pieces: [Piece], region: Box) {
        self.tensor = tensor
        self.shape = shape
        self.pieces = pieces
        self.region = region
        let last = shape.count - 1
        // A layer of a stacked tensor is a few of hundreds of pieces: only those the region meets.
        order = last < 0 ? [] : pieces.indices.filter { pieces[$0].intersects(region) }
            .sorted { pieces[$0].globalOffset[last] < pieces[$1].globalOffset[last] }
    }

    /// Rows of the region: the product of its extents in every dimension but the last.
    var rowCount: Int { region.shape.dropLast().reduce(1, *) }

    /// Calls `body` with each row's index (all dimensions but the last) and its segments, in
    /// C order; an empty region has no rows. Throws `.missing` when the pieces leave part of
    /// a row inside the tensor uncovered. The segments array is reused between rows.
    func forEachRow(_ body: (_ outer: [Int], _ segments: [Segment]) throws(TesseraError) -> Void) throws(TesseraError) {
        guard !shape.isEmpty, region.shape.allSatisfy({ $0 > 0 }) else { return }
        let last = shape.count - 1
        var outer = Array(region.offset[..<last])
        var segments: [Segment] = []
        for _ in 0..<rowCount {
            segments.removeAll(keepingCapacity: true)
            try segmentsOf(row: outer, into: &segments)
            try body(outer, segments)
            var d = last - 1
            while d >= 0 {
                outer[d] += 1
                if outer[d] < region.offset[d] + region.shape[d] { break }
                outer[d] = region.offset[d]
                d -= 1
            }
        }
    }

    /// The segments of one row.
    func segmentsOf(row outer: [Int], into segments: inout [Segment]) throws(TesseraError) {
        let last = shape.count - 1
        let colStart = region.offset[last], colEnd = colStart + region.shape[last]
        var col = colStart
        if (0..<last).allSatisfy({ outer[$0] < shape[$0] }) {
            let inTensor = min(colEnd, shape[last])
            for i in order {
                let p = pieces[i]
                let pStart = p.globalOffset[last], pEnd = pStart + p.shape[last]
                guard pEnd > col, pStart < inTensor, Self.holds(p, row: outer) else { continue }
                guard pStart <= col else {
                    throw TesseraError(.missing, "no piece covers row \(outer) from column \(col)", tensor: tensor)
                }
                let end = min(pEnd, colEnd)
                var element = p.storageOffset + (col - pStart) * p.strides[last]
                for d in 0..<last { element += (outer[d] - p.globalOffset[d]) * p.strides[d] }
                segments.append(.piece(i, element: element, width: end - col, stride: p.strides[last]))
                col = end
                if col >= colEnd { break }
            }
            guard col >= inTensor else {
                throw TesseraError(.missing, "pieces cover columns \(colStart)..<\(col) of \(colStart)..<\(inTensor) in row \(outer)",
                                   tensor: tensor)
            }
        }
        if colEnd > col { segments.append(.zeros(colEnd - col)) }
    }

    /// True when piece `p` holds row `outer` (every dimension but the last).
    static func holds(_ p: Piece, row outer: [Int]) -> Bool {
        for d in outer.indices where outer[d] < p.globalOffset[d] || outer[d] >= p.globalOffset[d] + p.shape[d] { return false }
        return true
    }
}
