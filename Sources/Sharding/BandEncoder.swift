import Checkpoints
import Codecs
import Platform

/// A tensor to compress and the chunk shape of its dataset. Its bands are the chunks sharing a
/// first index: together a run of whole rows, in C order.
struct TensorJob: Sendable {
    var tensor: Int
    var chunk: [Int]

    /// How many bands `shape` has in chunks of this shape (none when it has no elements).
    func bandCount(_ shape: [Int]) -> Int {
        guard shape.allSatisfy({ $0 > 0 }) else { return 0 }
        guard let rows = shape.first else { return 1 }
        return (rows + chunk[0] - 1) / chunk[0]
    }

    /// The region of `shape` that band `b` covers.
    func region(band b: Int, of shape: [Int]) -> Box {
        var region = Box(offset: shape.map { _ in 0 }, shape: shape)
        if !shape.isEmpty {
            region.offset[0] = b * chunk[0]
            region.shape[0] = min(chunk[0], shape[0] - region.offset[0])
        }
        return region
    }

    /// The chunks of a band's region, in C order of their grid indices.
    func chunks(in region: Box) -> [Box] {
        Box.grid(shape: region.shape, chunk: chunk).map { _, box in
            var box = box
            if !box.offset.isEmpty { box.offset[0] += region.offset[0] }
            return box
        }
    }
}

/// One band of a tensor, encoded: its chunks shuffled and compressed (all-zero chunks left
/// out, the dataset's fill value stands for them), and its bytes in C order for the digest.
/// Made on a worker thread and handed whole to the thread that writes it.
final class EncodedBand: @unchecked Sendable {
    /// A compressed chunk: where it goes, its zstd frame and the bytes it holds decoded.
    struct Frame {
        var offset: [Int]
        var storage: UnsafeMutableRawBufferPointer
        var size: Int
        var rawBytes: Int
        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<size]) }
    }

    var frames: [Frame] = []
    /// Decoded bytes of the chunks left out as all zeros.
    var zeroBytes = 0
    /// The band in C order: in `copy`, or in the source's mapped pages.
    var bytes = UnsafeRawBufferPointer(start: nil, count: 0)
    var copy: UnsafeMutableRawBufferPointer?
    /// The source pages the band is used from in place, to let go once it is hashed.
    var mapped: (file: MappedFile, range: Range<Int>)?

    /// Frees the compressed chunks (once written; the band's bytes stay for the digest).
    func dropFrames() {
        for f in frames { f.storage.deallocate() }
        frames = []
    }

    deinit {
        dropFrames()
        copy?.deallocate()
    }
}

/// Encodes bands on one worker thread, with its own shuffle buffer and zstd context: streams
/// a band's rows, shuffles each chunk straight out of them and compresses it.
final class BandEncoder {
    private let streamer: TensorStreamer
    private let shuffled: UnsafeMutableRawBufferPointer
    private let z: ZstdCompressor

    /// An encoder for chunks of at most `chunkBytes` bytes, compressed at `level`.
    init(streamer: TensorStreamer, chunkBytes: Int, level: Int32) {
        var streamer = streamer
        streamer.prefetchLimit = 0   // tensors are asked for ahead by the writer's read-ahead window
        self.streamer = streamer
        shuffled = .allocate(byteCount: chunkBytes, alignment: 64)
        z = ZstdCompressor(level: level)
    }

    deinit { shuffled.deallocate() }

    /// Band `b` of tensor `t`, cut in chunks as `job` says.
    func encode(band b: Int, of t: TargetTensor, job: TensorJob) throws(TesseraError) -> EncodedBand {
        let region = job.region(band: b, of: t.shape), esize = t.dtype.size
        let band = try read(region, of: t.source)
        var strides = [Int](repeating: 1, count: region.shape.count)
        for k in strides.indices.reversed().dropFirst() { strides[k] = strides[k + 1] * region.shape[k + 1] }
        for box in job.chunks(in: region) {
            let count = box.elementCount
            shuffle(box, of: region, strides: strides, from: band.bytes.baseAddress!, elementSize: esize)
            let input = UnsafeRawBufferPointer(rebasing: shuffled[0..<(count * esize)])
            // An all-zero chunk is not written: the dataset's fill value (zero) stands for it.
            if ZeroPages.isZero(input) {
                band.zeroBytes += count * esize
                continue
            }
            let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: ZstdCompressor.bound(input.count), alignment: 64)
            do {
                band.frames.append(.init(offset: box.offset, storage: frame, size: try z.compress(input, into: frame), rawBytes: input.count))
            } catch {
                frame.deallocate()
                throw error
            }
        }
        return band
    }

    /// The bytes of `region` of `t` in C order. Run pointers are not kept past the stream: a
    /// band that is one run of a raw source's mapped file is used where it lies, through the
    /// file (which stays mapped); any other band is copied.
    private func read(_ region: Box, of t: GlobalTensor) throws(TesseraError) -> EncodedBand {
        let band = EncodedBand()
        let count = region.elementCount * t.dtype.size
        let raw = t.pieces.allSatisfy { $0.encoding == .raw }
        var at = 0
        try streamer.forEachRun(of: t, region: region) { (run) throws(TesseraError) in
            if at == 0, run.count == count, raw, let place = try mappedPlace(of: run, in: t) {
                band.mapped = place
            } else {
                let copy = band.copy ?? .allocate(byteCount: count, alignment: 64)
                band.copy = copy
                (copy.baseAddress! + at).copyMemory(from: run.baseAddress!, byteCount: run.count)
            }
            at += run.count
        }
        if let (file, range) = band.mapped {
            band.bytes = UnsafeRawBufferPointer(rebasing: file.bytes[range])
        } else if let copy = band.copy {
            band.bytes = UnsafeRawBufferPointer(rebasing: copy[0..<count])
        }
        return band
    }

    /// The source file and byte range `run` lies in, if it lies in a mapped file of `t`.
    private func mappedPlace(of run: UnsafeRawBufferPointer, in t: GlobalTensor) throws(TesseraError) -> (MappedFile, Range<Int>)? {
        for p in t.pieces {
            let f = try PieceView(p, in: streamer.cache, tensor: t.name).file, base = f.bytes.baseAddress!
            if run.baseAddress! >= base, run.baseAddress! + run.count <= base + f.count {
                let start = run.baseAddress! - base
                return (f, start..<(start + run.count))
            }
        }
        return nil
    }

    /// Shuffles chunk `box` out of its band's C-order bytes into `shuffled`, segment by segment
    /// when the chunk is narrower than the band.
    private func shuffle(_ box: Box, of region: Box, strides: [Int], from bytes: UnsafeRawPointer, elementSize esize: Int) {
        // Dimensions after `d` are whole in the chunk, so it is contiguous from `d` on.
        var d = max(0, box.shape.count - 1)
        while d > 0, box.shape[d] == region.shape[d] { d -= 1 }
        let segment = box.shape[d...].reduce(1, *)
        let count = box.elementCount
        var outer = [Int](repeating: 0, count: d)
        var written = 0
        while written < count {
            var element = d < box.offset.count ? (box.offset[d] - region.offset[d]) * strides[d] : 0
            for k in 0..<d { element += (box.offset[k] - region.offset[k] + outer[k]) * strides[k] }
            byteShuffle(bytes + element * esize, count: segment, elementSize: esize,
                        into: shuffled.baseAddress!, chunkElements: count, at: written)
            written += segment
            var k = d - 1
            while k >= 0 {
                outer[k] += 1
                if outer[k] < box.shape[k] { break }
                outer[k] = 0
                k -= 1
            }
        }
    }
}
