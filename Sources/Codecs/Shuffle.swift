import CCodecs

/// HDF5's byte shuffle: all first bytes of the elements, then all second bytes, ...
public func byteShuffle(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, elementSize: Int) {
    let n = input.count / elementSize
    if elementSize == 1 || n == 0 { output.copyMemory(from: input); return }
    tessera_shuffle(input.baseAddress!.assumingMemoryBound(to: UInt8.self), output.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    n, elementSize)
    let tail = input.count - n * elementSize   // HDF5 leaves trailing bytes in place
    if tail > 0 { (output.baseAddress! + n * elementSize).copyMemory(from: input.baseAddress! + n * elementSize, byteCount: tail) }
}

/// The inverse of ``byteShuffle(_:into:elementSize:)``.
public func byteUnshuffle(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, elementSize: Int) {
    let n = input.count / elementSize
    if elementSize == 1 || n == 0 { output.copyMemory(from: input); return }
    tessera_unshuffle(input.baseAddress!.assumingMemoryBound(to: UInt8.self), output.baseAddress!.assumingMemoryBound(to: UInt8.self),
                      n, elementSize)
    let tail = input.count - n * elementSize
    if tail > 0 { (output.baseAddress! + n * elementSize).copyMemory(from: input.baseAddress! + n * elementSize, byteCount: tail) }
}

/// Part of a byte shuffle: the `count` elements at `source` become elements `at..<at + count`
/// of the shuffled chunk `chunk` of `chunkElements` elements, so a chunk is shuffled segment
/// by segment straight from a strided tensor.
public func byteShuffle(_ source: UnsafeRawPointer, count: Int, elementSize: Int,
                        into chunk: UnsafeMutableRawPointer, chunkElements: Int, at: Int) {
    tessera_shuffle_into(source.assumingMemoryBound(to: UInt8.self), count, elementSize,
                         chunk.assumingMemoryBound(to: UInt8.self), chunkElements, at)
}

/// Rows of a chunk put in place: `rows` runs of `count` elements starting at element `at` of
/// the (shuffled, when `shuffled`) chunk of `chunkElements` elements, `sourceStride` elements
/// apart, written `destinationStride` elements apart from `destination`.
public func byteUnshuffleRows(_ chunk: UnsafeRawPointer, chunkElements: Int, shuffled: Bool, at: Int, sourceStride: Int,
                              rows: Int, count: Int, elementSize: Int,
                              into destination: UnsafeMutableRawPointer, destinationStride: Int) {
    tessera_unshuffle_rows(chunk.assumingMemoryBound(to: UInt8.self), chunkElements, at, sourceStride, rows, count,
                           elementSize, shuffled ? 1 : 0, destination.assumingMemoryBound(to: UInt8.self), destinationStride)
}
