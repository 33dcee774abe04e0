import Platform

/// The stored bytes of a stream's pieces: mapped views, file extents (holes), decoded chunks,
/// and how far each piece has been read, so pages behind the sweep can be released. The I/O
/// half of `TensorStreamer.forEachRun`; `RunPlan` says what to read.
final class PieceSources {
    let tensor: String
    let pieces: [Piece]
    let files: [MappedFile]
    let decoder: ChunkDecoder
    private let extents: [FileExtents]
    private let elementSize: Int
    /// Per piece, the end (bytes from its storage start) of what has been read.
    private var watermark: [Int]
    /// Strided elements gathered into one run.
    private var gather: UnsafeMutableRawBufferPointer

    init(_ t: GlobalTensor, pieces: [Piece], region: Box, streamer: TensorStreamer) throws(TesseraError) {
        tensor = t.name
        self.pieces = pieces
        elementSize = t.dtype.size
        let mapped = try pieces.map { (p: Piece) throws(TesseraError) -> PieceView in try PieceView(p, in: streamer.cache, tensor: t.name) }
        files = mapped.map(\.file)
        let views = mapped.map(\.bytes)
        // Start reading the stored bytes the region touches (not a piece's start when the region
        // lies further in), so disk reads overlap with the work.
        for (p, f) in zip(pieces, files) where p.intersects(region) {
            let r = TensorStreamer.storedRange(of: p, in: region, dtype: t.dtype)
            f.willNeed(r.lowerBound..<min(r.upperBound, r.lowerBound + streamer.prefetchLimit))
        }
        // Each raw piece's file extents, read once: the row loop is hot.
        extents = zip(pieces, files).map { p, f in p.encoding == .raw ? f.extents : FileExtents(dense: f.count) }
        decoder = ChunkDecoder(pieces: pieces, encoded: views, threads: streamer.decodeThreads, region: region)
        watermark = [Int](repeating: 0, count: pieces.count)
        gather = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    deinit { gather.deallocate() }

    /// Hands `width` elements of piece `i` (from storage element `element`, `stride` apart) to
    /// `out`: contiguous ones as views (a sparse file's holes as zero pages, never faulted in),
    /// strided ones gathered into one run.
    func read(_ i: Int, element: Int, width: Int, stride: Int, row: Int, into out: inout RunJoiner,
              _ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        let p = pieces[i], esize = elementSize, start = element * esize
        if stride == 1 || width == 1 {
            if p.encoding == .raw && !extents[i].isDense {
                let at = p.storage.offset + start
                try files[i].forEachRun(at..<(at + width * esize), extents: extents[i]) { (run) throws(TesseraError) in
                    try out.emit(run, body)
                }
            } else {
                let view = try decoder.view(i, row: row, tensor: tensor)
                try out.emit(UnsafeRawBufferPointer(rebasing: view[start..<(start + width * esize)]), body)
            }
            watermark[i] = max(watermark[i], start + width * esize)
            return
        }
        let view = try decoder.view(i, row: row, tensor: tensor)
        try out.flush(body)
        if gather.count < width * esize {
            gather.deallocate()
            gather = .allocate(byteCount: width * esize, alignment: 16)
        }
        let source = view.baseAddress!, target = gather.baseAddress!
        for j in 0..<width {
            (target + j * esize).copyMemory(from: source + (element + j * stride) * esize, byteCount: esize)
        }
        watermark[i] = max(watermark[i], (element + (width - 1) * stride + 1) * esize)
        try body(UnsafeRawBufferPointer(start: target, count: width * esize))
    }

    /// Releases the pages of every piece up to where it has been read.
    func releaseRead() {
        for i in pieces.indices { files[i].release(pieces[i].storage.offset..<(pieces[i].storage.offset + watermark[i])) }
    }
}

/// Joins adjacent runs before they reach the consumer: mapped bytes that follow each other up
/// to 8 MiB, zeros (holes, padding) up to a whole view of the zero pages, so a writer skips
/// them in one step.
struct RunJoiner {
    private var pending: UnsafeRawBufferPointer?

    /// Hands the joined run, if any, to `body`.
    mutating func flush(_ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        if let p = pending, p.count > 0 { try body(p) }
        pending = nil
    }

    /// Adds `run`, handing out what cannot be joined to it.
    mutating func emit(_ run: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        guard run.count > 0 else { return }
        if let p = pending, ZeroPages.contains(p), ZeroPages.contains(run), p.count + run.count <= ZeroPages.size {
            pending = ZeroPages.run(p.count + run.count)
            return
        }
        if let p = pending, let pe = p.baseAddress, pe + p.count == run.baseAddress, !ZeroPages.contains(p) {
            pending = UnsafeRawBufferPointer(start: pe, count: p.count + run.count)
        } else {
            try flush(body)
            pending = run
        }
        if pending!.count >= (8 << 20), !ZeroPages.contains(pending!) { try flush(body) }
    }

    /// Adds `count` zero bytes.
    mutating func emitZeros(_ count: Int, _ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        var left = count
        while left > 0 {
            let n = min(left, ZeroPages.size)
            try emit(ZeroPages.run(n), body)
            left -= n
        }
    }
}
