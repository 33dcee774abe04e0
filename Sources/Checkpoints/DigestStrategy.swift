import Platform

/// A reader's own way of digesting the tensors it reads (SHA-256 of each tensor's bytes in C
/// order, checked against the digest its store recorded), when its storage allows a faster
/// one than hashing the runs ``TensorStreamer`` streams. The reader puts it on its tensors
/// (``GlobalTensor/digestStrategy``); ``TensorStreamer/digests(_:threads:progress:)`` uses it.
public protocol DigestStrategy: Sendable {
    /// The digests of `tensors`, in order, on `threads` threads; nil when this way does not
    /// apply to all of them (their streamed runs are hashed instead).
    func digests(_ tensors: [GlobalTensor], streamer: TensorStreamer, threads: Int,
                 progress: (@Sendable (Int) -> Void)?) throws(TesseraError) -> [String]?
}
