import Checkpoints
import Platform

/// Reads weights from the catalogue as FP32, a block of rows at a time, whatever their
/// stored dtype, encoding or layout; nothing larger than a block is ever materialised.
struct WeightReader: Sendable {
    let catalogue: Catalogue
    let streamer: TensorStreamer
    /// Rows per block are chosen so a block holds about this many bytes of FP32.
    var blockBytes = 4 << 20

    func tensor(_ name: String) throws(TesseraError) -> GlobalTensor {
        guard let t = catalogue.tensor(name) else {
            throw TesseraError(.missing, "the model has no tensor '\(name)'", file: catalogue.container.displayPath, tensor: name)
        }
        return t
    }

    /// The FP32 values of `region` of `t` (C order) into `out`.
    func read(_ t: GlobalTensor, region: Box, into out: UnsafeMutablePointer<Float>) throws(TesseraError) {
        var at = 0
        let dtype = t.dtype
        try streamer.forEachRun(of: t, region: region) { (run) throws(TesseraError) in
            let n = run.count / dtype.size
            switch dtype {
            case .float32:
                (out + at).update(from: run.baseAddress!.assumingMemoryBound(to: Float.self), count: n)
            case .bfloat16:
                let src = run.baseAddress!.assumingMemoryBound(to: UInt16.self)
                for i in 0..<n { out[at + i] = Float(bitPattern: UInt32(UInt16(littleEndian: src[i])) << 16) }
            case .float16:
                let src = run.baseAddress!.assumingMemoryBound(to: UInt16.self)
                for i in 0..<n { out[at + i] = Float(Float16(bitPattern: UInt16(littleEndian: src[i]))) }
            case .float64:
                let src = run.baseAddress!.assumingMemoryBound(to: Double.self)
                for i in 0..<n { out[at + i] = Float(src[i]) }
            default:
                throw TesseraError(.unsupported, "weights of dtype \(dtype.rawValue) cannot run in the engine", tensor: t.name)
            }
            at += n
        }
    }

    /// A whole (small) tensor as FP32.
    func vector(_ name: String) throws(TesseraError) -> [Float] {
        let t = try tensor(name)
        var out = [Float](repeating: 0, count: t.elementCount)
        try out.withUnsafeMutableBufferPointer { (b) throws(TesseraError) in
            try read(t, region: Box(offset: t.shape.map { _ in 0 }, shape: t.shape), into: b.baseAddress!)
        }
        return out
    }

    /// Calls `body(rowStart, rows, weights)` for consecutive row blocks of piece `p` of the
    /// 2-D tensor `t` (weights: rows x p.shape[1], FP32, C order).
    func forEachBlock(of t: GlobalTensor, piece p: Piece, buffer: UnsafeMutablePointer<Float>, capacity: Int,
                      _ body: (Int, Int, UnsafePointer<Float>) throws(TesseraError) -> Void) throws(TesseraError) {
        let cols = p.shape[1]
        let rowsPerBlock = max(1, min(p.shape[0], capacity / max(cols, 1)))
        var r = 0
        while r < p.shape[0] {
            let n = min(rowsPerBlock, p.shape[0] - r)
            try read(t, region: Box(offset: [p.globalOffset[0] + r, p.globalOffset[1]], shape: [n, cols]), into: buffer)
            try body(p.globalOffset[0] + r, n, UnsafePointer(buffer))
            r += n
        }
    }
}
