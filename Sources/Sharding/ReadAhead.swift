import Checkpoints
import Platform

/// Keeps the disk reading a window of source bytes ahead of a writer that streams tensor
/// regions in a known order: before each region is streamed, the regions that follow it
/// are asked for until `window` bytes are in flight, so reads overlap the writes without
/// pulling a whole (possibly huge) checkpoint into the page cache.
final class ReadAhead {
    private let streamer: TensorStreamer
    private let regions: [(GlobalTensor, Box)]
    private let sizes: [Int]
    private let window: Int
    /// The first region not yet asked for, and the next region to be streamed.
    private var next = 0, position = 0

    init(streamer: TensorStreamer, regions: [(GlobalTensor, Box)], window: Int = 256 << 20) {
        self.streamer = streamer
        self.regions = regions
        self.sizes = regions.map { $0.1.elementCount * $0.0.dtype.size }
        self.window = window
    }

    /// Call just before streaming the next region (in the order given at creation).
    func advance() {
        let i = position
        position += 1
        var inFlight = sizes[min(i, next)..<next].reduce(0, +)
        var batch: [(GlobalTensor, Box)] = []
        while next < regions.count, next <= i || inFlight < window {
            batch.append(regions[next])
            inFlight += sizes[next]
            next += 1
        }
        if !batch.isEmpty { streamer.prefetch(batch) }
    }
}
