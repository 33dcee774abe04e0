import Platform
import Synchronization

/// Keeps the disk reading a bounded window of source bytes ahead of consumers that stream
/// tensor regions in a known order: when region `k` is reached, the regions after it are asked
/// for (on the streamer's background prefetch thread) until `window` bytes from it on are on
/// their way. Reads then overlap the work without pulling a whole (possibly huge) checkpoint
/// into the page cache. Safe to use from several workers taking regions in order.
public final class ReadAheadWindow: Sendable {
    private let streamer: TensorStreamer
    private let regions: [(GlobalTensor, Box)]
    private let sizes: [Int]
    private let window: Int
    /// Regions asked for so far, and the next region for ``advance()``.
    private let state = Mutex((asked: 0, position: 0))

    public init(streamer: TensorStreamer, regions: [(GlobalTensor, Box)], window: Int = 256 << 20) {
        self.streamer = streamer
        self.regions = regions
        sizes = regions.map { $0.1.elementCount * $0.0.dtype.size }
        self.window = window
    }

    /// A window over whole tensors.
    public convenience init(streamer: TensorStreamer, tensors: [GlobalTensor], window: Int = 256 << 20) {
        self.init(streamer: streamer, regions: tensors.map { ($0, Box(offset: $0.shape.map { _ in 0 }, shape: $0.shape)) }, window: window)
    }

    /// Region `k` is about to be streamed.
    public func reached(_ k: Int) {
        let range = state.withLock { s -> Range<Int> in
            var ahead = 0, end = k
            while end < regions.count, end < s.asked || ahead < window {
                ahead += sizes[end]
                end += 1
            }
            defer { s.asked = max(s.asked, end) }
            return s.asked..<max(s.asked, end)
        }
        guard !range.isEmpty else { return }
        streamer.prefetch(Array(regions[range]))
    }

    /// The next region in order is about to be streamed (one consumer going through them all).
    public func advance() {
        reached(state.withLock { s in
            defer { s.position += 1 }
            return s.position
        })
    }
}
