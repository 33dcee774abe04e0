import Dispatch
import Platform
import Synchronization

/// Items `0..<count` made in parallel on worker threads and taken, in order, by one consumer
/// thread. Workers claim items in order and stay at most `window` items ahead of the consumer,
/// which bounds the memory in flight. A failure to make an item is thrown to the consumer when
/// it takes that item; ``finish()`` then stops the workers.
final class OrderedPipeline<Item: Sendable>: Sendable {
    private let count: Int
    private let workers: Int
    private let next = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    /// One permit per free place in the window (created empty and filled, so that it may be
    /// dropped holding fewer permits than it was given).
    private let room = DispatchSemaphore(value: 0)
    /// Signalled once per item made.
    private let made = DispatchSemaphore(value: 0)
    private let results = Mutex<[Int: Result<Item, TesseraError>]>([:])
    private let running = DispatchGroup()

    /// Starts `workers` threads; each calls `makeWorker` once for its own maker of items (its
    /// buffers and contexts), then makes the items it claims.
    init(count: Int, workers: Int, window: Int,
         makeWorker: @escaping @Sendable () -> (Int) throws(TesseraError) -> Item) {
        self.count = count
        self.workers = max(1, workers)
        for _ in 0..<max(1, window) { room.signal() }
        for _ in 0..<self.workers {
            DispatchQueue.global().async(group: running) { [self] in
                let make = makeWorker()
                while let i = claim() {
                    let result: Result<Item, TesseraError>
                    do throws(TesseraError) { result = .success(try make(i)) } catch { result = .failure(error) }
                    results.withLock { $0[i] = result }
                    made.signal()
                }
            }
        }
    }

    /// The next item to make, once there is room for it; nil when all are claimed or the
    /// pipeline is stopped.
    private func claim() -> Int? {
        room.wait()
        guard !stopped.load(ordering: .acquiring) else { return nil }
        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return i < count ? i : nil
    }

    /// Item `i` (taken in order, each once), waiting until it is made; throws its failure.
    func take(_ i: Int) throws(TesseraError) -> Item {
        while true {
            if let result = results.withLock({ $0.removeValue(forKey: i) }) {
                room.signal()
                return try result.get()
            }
            made.wait()
        }
    }

    /// Stops the workers (each finishes the item in hand) and waits for them; items made but
    /// not taken are dropped.
    func finish() {
        stopped.store(true, ordering: .releasing)
        for _ in 0..<workers { room.signal() }
        running.wait()
    }
}
