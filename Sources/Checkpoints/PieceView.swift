import Platform

/// The stored bytes of a catalogue piece, mapped: the one step from a piece to memory, used
/// by the streamer, the engine and the writers.
public struct PieceView {
    /// The mapped file the piece lies in (its extents say where the holes are).
    public let file: MappedFile
    /// The piece's stored bytes (`storage.offset ..< + storage.count` of the file).
    public let bytes: UnsafeRawBufferPointer

    /// The view of `p` in `cache`; errors name `tensor`.
    public init(_ p: Piece, in cache: MappingCache, tensor: String) throws(TesseraError) {
        do {
            file = try cache.file(p.storage.path)
            bytes = try file.bytes(offset: p.storage.offset, count: p.storage.count)
        } catch {
            throw error.forTensor(tensor)
        }
    }

    /// Element `element` of the view (counted from the storage start) of `size`-byte elements.
    public func address(ofElement element: Int, size: Int) -> UnsafeRawPointer { bytes.baseAddress! + element * size }

    /// Releases the piece's pages from the resident set (they stay in the page cache).
    public func release(_ p: Piece) { file.release(p.storage.offset..<(p.storage.offset + p.storage.count)) }
}
