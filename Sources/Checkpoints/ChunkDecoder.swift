import Codecs
import Dispatch
import Platform

/// Decodes compressed pieces on demand, a few ahead in parallel, and frees them once the
/// row sweep has passed them.
final class ChunkDecoder: @unchecked Sendable {
    private let pieces: [Piece]
    private let encoded: [UnsafeRawBufferPointer]
    private let threads: Int
    private var decoded: [Int: UnsafeMutableRawBufferPointer] = [:]
    /// Encoded pieces in the order a C-order sweep first needs them.
    private let order: [Int]
    /// One zstd context per piece of a batch decoded at once, reused batch after batch.
    private lazy var decompressors: [ZstdDecompressor] = (0..<(2 * threads)).map { _ in ZstdDecompressor() }

    init(pieces: [Piece], encoded: [UnsafeRawBufferPointer], threads: Int, region: Box) {
        self.pieces = pieces
        self.encoded = encoded
        self.threads = max(1, threads)
        order = pieces.indices.filter { pieces[$0].encoding.needsDecoding && pieces[$0].intersects(region) }
            .sorted { (pieces[$0].globalOffset.first ?? 0, pieces[$0].globalOffset.last ?? 0)
                    < (pieces[$1].globalOffset.first ?? 0, pieces[$1].globalOffset.last ?? 0) }
    }

    /// The bytes the view of piece `i` indexes (decoded when needed).
    func view(_ i: Int, row: Int, tensor: String) throws(TesseraError) -> UnsafeRawBufferPointer {
        if pieces[i].encoding == .raw { return encoded[i] }
        if case .zeros(let n) = pieces[i].encoding { return ZeroPages.run(n) }
        if let d = decoded[i] { return UnsafeRawBufferPointer(d) }
        // Decode this piece and the next few in sweep order together.
        let start = order.firstIndex(of: i) ?? 0
        let batch = Array(order[start...].filter { decoded[$0] == nil }.prefix(2 * threads))
        var outputs: [UnsafeMutableRawBufferPointer] = []
        for j in batch { outputs.append(BufferPool.take(Self.decodedBytes(pieces[j]))) }
        let errors = UnsafeMutableBufferPointer<TesseraError?>.allocate(capacity: batch.count)
        errors.initialize(repeating: nil)
        defer { errors.deallocate() }
        let inputs = UncheckedSendable(batch.map { encoded[$0] }), encodings = batch.map { pieces[$0].encoding }
        let elementSize = pieces[i].dtype.size
        let outs = UncheckedSendable(outputs), errs = UncheckedSendable(errors), contexts = UncheckedSendable(decompressors)
        DispatchQueue.concurrentPerform(iterations: batch.count) { k in
            do throws(TesseraError) {
                try Self.decode(inputs.value[k], encodings[k], into: outs.value[k], elementSize: elementSize, z: contexts.value[k])
            } catch {
                errs.value[k] = error
            }
        }
        // On failure every buffer of the batch goes back to the pool, none having been kept.
        if let k = batch.indices.first(where: { errors[$0] != nil }), let e = errors[k] {
            for o in outputs { BufferPool.give(o) }
            throw pieces[batch[k]].damaged(e, tensor: tensor)
        }
        for (k, j) in batch.enumerated() { decoded[j] = outputs[k] }
        return UnsafeRawBufferPointer(decoded[i]!)
    }

    static func decodedBytes(_ p: Piece) -> Int {
        switch p.encoding {
        case .raw: p.storage.count
        case .zstd(_, let n), .shuffled(let n), .zeros(let n): n
        }
    }

    static func decode(_ input: UnsafeRawBufferPointer, _ encoding: PieceEncoding, into out: UnsafeMutableRawBufferPointer,
                       elementSize: Int, z: ZstdDecompressor) throws(TesseraError) {
        // A shuffled frame is decompressed aside, then unshuffled into place; anything else
        // lands in `out` directly.
        let aside: UnsafeMutableRawBufferPointer? = if case .zstd(true, _) = encoding { BufferPool.take(out.count) } else { nil }
        defer { aside.map(BufferPool.give) }
        let (bytes, shuffled) = try unpack(input, encoding, scratch: aside ?? out, z: z)
        if shuffled {
            byteUnshuffle(bytes, into: out, elementSize: elementSize)
        } else if bytes.baseAddress != UnsafeRawPointer(out.baseAddress) {
            guard bytes.count == out.count else { throw TesseraError(.corrupt, "chunk holds \(bytes.count) bytes, expected \(out.count)") }
            out.copyMemory(from: bytes)
        }
    }

    /// The bytes of an encoded chunk before unshuffling, and whether they are still
    /// shuffled: a zstd frame decompressed into `scratch`, or the stored bytes themselves.
    static func unpack(_ input: UnsafeRawBufferPointer, _ encoding: PieceEncoding, scratch: UnsafeMutableRawBufferPointer,
                       z: ZstdDecompressor) throws(TesseraError) -> (bytes: UnsafeRawBufferPointer, shuffled: Bool) {
        switch encoding {
        case .raw:
            return (input, false)
        case .zeros(let n):
            return (ZeroPages.run(n), false)
        case .shuffled(let n):
            guard input.count == n else { throw TesseraError(.corrupt, "chunk holds \(input.count) bytes, expected \(n)") }
            return (input, true)
        case .zstd(let shuffled, let n):
            let out = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n])
            try z.decompress(input, into: out)
            return (UnsafeRawBufferPointer(out), shuffled)
        }
    }

    /// True when some decoded piece ends before `row` (in the first dimension).
    func hasFinished(before row: Int) -> Bool {
        decoded.keys.contains { pieces[$0].globalOffset[0] + pieces[$0].shape[0] <= row }
    }

    /// Frees decoded pieces that end before `row`.
    func drop(before row: Int) {
        for (j, buffer) in decoded where pieces[j].globalOffset[0] + pieces[j].shape[0] <= row {
            BufferPool.give(buffer)
            decoded[j] = nil
        }
    }

    func releaseAll() {
        for (_, b) in decoded { BufferPool.give(b) }
        decoded.removeAll()
    }
}
