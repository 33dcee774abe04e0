import Checkpoints
import CKernels
import Platform

extension Model {
    /// A linear layer's input: FP32 values, or the BF16 bits the step before made for a BF16 product.
    enum LayerInput {
        case values([Float])
        case bf16([UInt16])
    }

    /// Whether the steps before a product hand it BF16 bits directly (every BF16 product).
    func bitsInput(_ precision: Precision) -> Bool { precision == .bf16 }

    /// `y = x W^T (+ b)` for the linear layer `w` (x: tokens x k, y: tokens x n).
    func linear(_ w: LinearWeights, _ x: [Float], tokens: Int, k: Int, precision: Precision) throws(TesseraError) -> [Float] {
        try linear(w, .values(x), tokens: tokens, k: k, precision: precision)
    }

    func linear(_ w: LinearWeights, _ input: LayerInput, tokens: Int, k: Int, precision: Precision) throws(TesseraError) -> [Float] {
        let start = StepTimes.now
        defer { record(\.products, since: start) }
        // BF16 results are rounded as the kernel stores them, by each row's last product, unless
        // a bias is still to be added.
        let roundInKernel = precision == .bf16 && w.bias == nil
        let y = try products(w, input, tokens: tokens, k: k, precision: precision, roundInKernel: roundInKernel, epilogue: nil)
        return try finishLinear(w, consume y, tokens: tokens, n: w.weight.shape[0], precision: roundInKernel ? .fp32 : precision)
    }

    /// Whether a linear layer's results can go through an epilogue as the kernel stores them:
    /// BF16 products (rounded in the kernel) and no bias.
    func fusable(_ w: LinearWeights, _ precision: Precision) -> Bool { bitsInput(precision) && w.bias == nil }

    /// `act(x W^T)` as BF16 bits for a `fusable` layer and a plain (not gated) activation: the
    /// kernel applies `activation` as it stores each piece of the results, while they are in
    /// cache, with the bits of `linear` then the element-wise activation.
    func linearThenActivation(_ w: LinearWeights, _ input: LayerInput, tokens: Int, k: Int, activation: Int32) throws(TesseraError) -> [UInt16] {
        var bits = Kernels.uninitialized(UInt16.self, tokens * w.weight.shape[0])
        try bits.withUnsafeMutableBufferPointer { (b) throws(TesseraError) in
            try fused(w, input, tokens: tokens, k: k, .activation(kind: activation, bits: b.baseAddress!))
        }
        return bits
    }

    /// `residual + x W^T` for a `fusable` layer, added as the kernel stores each piece of the
    /// results, with the bits of `linear` then `add`.
    func linearPlusResidual(_ w: LinearWeights, _ input: LayerInput, tokens: Int, k: Int, residual: [Float]) throws(TesseraError) -> [Float] {
        var sum = Kernels.uninitialized(Float.self, residual.count)
        try residual.withUnsafeBufferPointer { (r) throws(TesseraError) in
            try sum.withUnsafeMutableBufferPointer { (s) throws(TesseraError) in
                guard r.count == tokens * w.weight.shape[0] else {
                    throw TesseraError(.inconsistent, "a residual of \(r.count) values for \(tokens) x \(w.weight.shape[0]) results", tensor: w.weight.name)
                }
                try fused(w, input, tokens: tokens, k: k, .residual(r.baseAddress!, sum: s.baseAddress!))
            }
        }
        return sum
    }

    private func fused(_ w: LinearWeights, _ input: LayerInput, tokens: Int, k: Int, _ epilogue: Epilogue) throws(TesseraError) {
        let start = StepTimes.now
        defer { record(\.products, since: start) }
        guard fusable(w, .bf16) else { throw TesseraError(.invalidArgument, "an epilogue after a bias", tensor: w.weight.name) }
        _ = try products(w, input, tokens: tokens, k: k, precision: .bf16, roundInKernel: true, epilogue: epilogue)
    }

    /// x W^T over the layer's weight pieces (y, FP32), rounded to BF16 by each row's last product
    /// when `roundInKernel`, and then through `epilogue` when given.
    private func products(_ w: LinearWeights, _ input: LayerInput, tokens: Int, k: Int, precision: Precision, roundInKernel: Bool,
                          epilogue: Epilogue?) throws(TesseraError) -> [Float] {
        let t = w.weight
        guard t.shape.count == 2, t.shape[1] == k else {
            throw TesseraError(.inconsistent, "expected \(k) input columns, the weight has shape \(t.shape)", tensor: t.name)
        }
        let n = t.shape[0]
        // BF16 mode multiplies BF16 activations by BF16 weights; FP32 mode FP32 activations by
        // FP32 weights (BF16 ones widened exactly by the kernel).
        var x = [Float](), xq = [UInt16]()
        switch input {
        case .bf16(let bits):
            guard precision == .bf16 else {
                throw TesseraError(.invalidArgument, "BF16 input bits for a product that is not BF16", tensor: t.name)
            }
            xq = bits
        case .values(let values):
            if precision == .bf16 {
                xq = Kernels.uninitialized(UInt16.self, values.count)
                values.withUnsafeBufferPointer { xb in xq.withUnsafeMutableBufferPointer { kernels.toBF16(xb.baseAddress!, $0.baseAddress!, values.count) } }
            } else {
                x = values
            }
        }
        var y = Kernels.uninitialized(Float.self, tokens * n)   // every row is written by the piece that first covers it
        var products = PieceProducts(model: self, tensor: t, roundInKernel: roundInKernel, precision: precision)
        try x.withUnsafeBufferPointer { (xb) throws(TesseraError) in
            try xq.withUnsafeBufferPointer { (xqb) throws(TesseraError) in
                try y.withUnsafeMutableBufferPointer { (yb) throws(TesseraError) in
                    let operands = Operands(kernels: kernels, x: xb.baseAddress, xq: xqb.baseAddress, k: k, y: yb.baseAddress!, n: n,
                                            tokens: tokens, precision: precision, epilogue: epilogue)
                    try products.run(operands)
                }
            }
        }
        return y
    }

    /// The rows of a raw 2-D piece (local row ranges, in order) that hold any data in `file`;
    /// the other rows lie wholly in holes and are zeros.
    static func dataRows(of p: Piece, in file: MappedFile, elementSize esize: Int) -> [Range<Int>] {
        let rows = p.shape[0], rowStride = p.strides[0] * esize, used = p.shape[1] * esize
        let start = p.storage.offset + p.storageOffset * esize
        let extents = file.extents
        guard !extents.isDense, rows > 0, rowStride > 0 else { return rows > 0 ? [0..<rows] : [] }
        var out: [Range<Int>] = []
        for d in extents.dataRanges(in: start..<(start + (rows - 1) * rowStride + used)) {
            // Rows whose used bytes [start + r * stride, + used) meet the data range d.
            let first = max(0, (d.lowerBound - start - used + rowStride) / rowStride)
            let end = min(rows, (d.upperBound - start + rowStride - 1) / rowStride)
            guard end > first else { continue }
            if let last = out.last, last.upperBound >= first {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, end)
            } else {
                out.append(first..<end)
            }
        }
        return out
    }

    /// Adds the layer's bias, if any, and rounds to BF16 in BF16 mode (`.fp32` when the
    /// products are already rounded).
    func finishLinear(_ w: LinearWeights, _ product: consuming [Float], tokens: Int, n: Int, precision: Precision) throws(TesseraError) -> [Float] {
        var y = product
        if let bias = w.bias {
            let b = try weights.vector(bias.name)
            y.withUnsafeMutableBufferPointer { kernels.addBias($0.baseAddress!, rows: tokens, width: n, b) }
        }
        if precision == .bf16 { y.withUnsafeMutableBufferPointer { kernels.roundToBF16($0.baseAddress!, $0.count) } }
        return y
    }
}

/// The products of one linear layer with its weight pieces, in rank order along the inputs:
/// the first piece covering a row writes it, the rest add to it.
private struct PieceProducts {
    let model: Model
    let tensor: GlobalTensor
    let roundInKernel: Bool
    let precision: Precision
    let pieces: [Piece]
    var written: [Bool]

    init(model: Model, tensor: GlobalTensor, roundInKernel: Bool, precision: Precision) {
        self.model = model
        self.tensor = tensor
        self.roundInKernel = roundInKernel
        self.precision = precision
        pieces = tensor.pieces.sorted { ($0.globalOffset[1], $0.globalOffset[0]) < ($1.globalOffset[1], $1.globalOffset[0]) }
        written = [Bool](repeating: false, count: tensor.shape[0])
    }

    mutating func run(_ operands: Operands) throws(TesseraError) {
        for p in pieces {
            if model.inPlace(tensor, precision), p.encoding == .raw, p.shape.count == 2, p.strides[1] == 1 {
                try mapped(p, operands)
            } else {
                try converted(p, operands)
            }
        }
        guard written.allSatisfy({ $0 }) else {
            throw TesseraError(.inconsistent, "the pieces do not cover every output row", tensor: tensor.name)
        }
    }

    /// Whether `p` is the last piece along the inputs for these rows (its product completes them).
    func isLast(_ p: Piece, row0: Int, rows: Int) -> Bool {
        !pieces.contains { q in
            q.globalOffset[1] > p.globalOffset[1] && q.globalOffset[0] < row0 + rows && row0 < q.globalOffset[0] + q.shape[0]
        }
    }

    /// Rows whose weights lie in a hole of the file are zeros: they add nothing (rows not yet
    /// written become zero; finished rows are rounded as the kernel would).
    mutating func zeroRows(_ p: Piece, row0: Int, rows: Int, _ o: Operands) {
        let finishing = roundInKernel && isLast(p, row0: row0, rows: rows)
        for r in row0..<(row0 + rows) {
            for tok in 0..<o.tokens where !written[r] || finishing {
                let v = written[r] ? Kernels.bf16(o.y[tok * o.n + r]) : 0
                o.y[tok * o.n + r] = v
                if finishing, let e = o.epilogue { o.finish(v, at: tok * o.n + r, e) }
            }
            written[r] = true
        }
    }

    mutating func product(_ p: Piece, _ w: UnsafeRawPointer, bf16Weights: Bool, ldw: Int, row0: Int, rows: Int, _ o: Operands) throws(TesseraError) {
        let last = isLast(p, row0: row0, rows: rows)
        guard o.product(w, bf16Weights: bf16Weights, ldw: ldw, rows: rows, row0: row0, col0: p.globalOffset[1], cols: p.shape[1],
                        accumulate: written[row0], round: roundInKernel && last) else {
            throw TesseraError(.outOfMemory, "cannot allocate the matrix product's packing buffers", tensor: tensor.name)
        }
        for r in row0..<(row0 + rows) { written[r] = true }
    }

    /// Zero-copy: the weights straight from the mapped file; only rows holding data are multiplied.
    mutating func mapped(_ p: Piece, _ o: Operands) throws(TesseraError) {
        let view = try PieceView(p, in: model.weights.streamer.cache, tensor: tensor.name)
        let esize = tensor.dtype.size, ldw = p.strides[0]
        let base = view.address(ofElement: p.storageOffset, size: esize)
        var r = 0
        for data in Model.dataRows(of: p, in: view.file, elementSize: esize) {
            if data.lowerBound > r { zeroRows(p, row0: p.globalOffset[0] + r, rows: data.lowerBound - r, o) }
            try product(p, base + data.lowerBound * ldw * esize, bf16Weights: tensor.dtype == .bfloat16, ldw: ldw,
                        row0: p.globalOffset[0] + data.lowerBound, rows: data.count, o)
            r = data.upperBound
        }
        if r < p.shape[0] { zeroRows(p, row0: p.globalOffset[0] + r, rows: p.shape[0] - r, o) }
        if model.releaseWeights { view.release(p) }
    }

    /// Compressed, strided or other dtypes: FP32 blocks of rows (scratch owned by this call),
    /// rounded to BF16 in BF16 mode.
    mutating func converted(_ p: Piece, _ o: Operands) throws(TesseraError) {
        let cols = p.shape[1], capacity = model.weights.blockBytes / 4
        let block = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        let bits = UnsafeMutablePointer<UInt16>.allocate(capacity: capacity)
        defer { block.deallocate(); bits.deallocate() }
        try model.weights.forEachBlock(of: tensor, piece: p, buffer: block, capacity: capacity) { (row, rows, w) throws(TesseraError) in
            if precision == .bf16 {
                tessera_f32_to_bf16(model.kernels.isa, w, bits, rows * cols)
                try product(p, UnsafeRawPointer(bits), bf16Weights: true, ldw: cols, row0: row, rows: rows, o)
            } else {
                try product(p, UnsafeRawPointer(w), bf16Weights: false, ldw: cols, row0: row, rows: rows, o)
            }
        }
    }
}

extension Model {
    /// Whether a tensor's raw pieces can be multiplied where they are mapped.
    func inPlace(_ t: GlobalTensor, _ precision: Precision) -> Bool {
        t.dtype == .bfloat16 || (t.dtype == .float32 && precision == .fp32)
    }
}

/// The activations and output of one linear layer, for products with its weight pieces.
struct Operands {
    let kernels: Kernels
    /// x as FP32 (FP32 products).
    let x: UnsafePointer<Float>?
    /// x as BF16 bits (BF16 products).
    let xq: UnsafePointer<UInt16>?
    let k: Int
    let y: UnsafeMutablePointer<Float>
    let n: Int
    let tokens: Int
    let precision: Precision
    /// When set, a row's last product puts its rounded results through it instead of writing y.
    let epilogue: Epilogue?

    /// The epilogue of one finished result `v` at `index` of the results (a row of zero weights).
    func finish(_ v: Float, at index: Int, _ e: Epilogue) {
        var v = v
        switch e {
        case .activation(let kind, let bits): tessera_activation(kernels.isa, kind, &v, 1, 1, 0, 1, nil, bits + index)
        case .residual(let residual, let sum): tessera_add(kernels.isa, residual + index, &v, sum + index, 1, 1)
        }
    }

    /// y[:, row0..<row0+rows] (+)= x[:, col0..<col0+cols] w^T, over the cores: the activations
    /// are packed once (rows split over the workers), then the workers multiply them by pieces of
    /// the output columns (whole 64-column panels), each taking the next piece when it is done:
    /// pieces as wide as the kernel's group of panels while there is much left, so each block of
    /// activations passes over a whole group, then narrower ones.
    /// Rounded to BF16 when `round` (then through the epilogue, when the operands have one).
    /// False when the kernels cannot allocate their buffers.
    func product(_ w: UnsafeRawPointer, bf16Weights: Bool, ldw: Int, rows: Int, row0: Int, col0: Int, cols: Int,
                 accumulate: Bool, round: Bool) -> Bool {
        let failed = UncheckedSendable(UnsafeMutablePointer<Bool>.allocate(capacity: 1))
        defer { failed.value.deallocate() }
        failed.value.pointee = false
        let me = UncheckedSendable(self), wp = UncheckedSendable(w), isa = kernels.isa
        let bf16: Int32 = precision == .bf16 ? 1 : 0
        let a = UncheckedSendable(bf16 != 0 ? UnsafeRawPointer(xq! + col0) : UnsafeRawPointer(x! + col0))
        let packed = UncheckedSendable(UnsafeMutableRawPointer.allocate(byteCount: tessera_gemm_packed_bytes(isa, tokens, cols, bf16),
                                                                        alignment: 64))
        defer { packed.value.deallocate() }
        kernels.parallel(tokens, granule: tessera_gemm_pack_granule()) { t0, t1 in
            tessera_gemm_pack_activations(isa, a.value, me.value.k, me.value.tokens, cols, bf16, t0, t1, packed.value)
        }
        let panel = 64, largest = max(1, tessera_gemm_piece_columns(isa, cols, bf16) / panel)
        kernels.parallel(rows, granule: panel, largest: largest) { r0, r1 in
            let o = me.value, w = wp.value + r0 * ldw * (bf16Weights ? 2 : 4)
            let status = if round, let e = o.epilogue {
                withUnsafePointer(to: e.kernelForm(offset: row0 + r0, rowStride: o.n)) {
                    tessera_gemm_packed_epilogue_nt(isa, a.value, o.k, bf16, packed.value, w, bf16Weights ? 1 : 0, ldw, o.y + row0 + r0, o.n,
                                                    o.tokens, r1 - r0, cols, accumulate ? 1 : 0, $0)
                }
            } else {
                tessera_gemm_packed_nt(isa, a.value, o.k, bf16, packed.value, w, bf16Weights ? 1 : 0, ldw, o.y + row0 + r0, o.n, o.tokens,
                                       r1 - r0, cols, accumulate ? 1 : 0, round ? 1 : 0)
            }
            if status != 0 { failed.value.pointee = true }
        }
        return !failed.value.pointee
    }
}

/// What a linear layer's last product does with its rounded results instead of writing them:
/// the BF16 bits of an MLP activation, or the sum with the residual stream (rounded), both laid
/// out as the results (row stride n).
enum Epilogue {
    case activation(kind: Int32, bits: UnsafeMutablePointer<UInt16>)
    case residual(UnsafePointer<Float>, sum: UnsafeMutablePointer<Float>)

    /// The kernel's form, its outputs starting `offset` values in.
    func kernelForm(offset: Int, rowStride: Int) -> tessera_gemm_epilogue {
        switch self {
        case .activation(let kind, let bits):
            tessera_gemm_epilogue(kind: Int32(TESSERA_EPILOGUE_ACTIVATION), activation: kind, bits: bits + offset, residual: nil, sum: nil,
                                  ld: rowStride)
        case .residual(let residual, let sum):
            tessera_gemm_epilogue(kind: Int32(TESSERA_EPILOGUE_RESIDUAL), activation: 0, bits: nil, residual: residual + offset,
                                  sum: sum + offset, ld: rowStride)
        }
    }
}
