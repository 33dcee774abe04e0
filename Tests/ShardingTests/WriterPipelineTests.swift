import Glibc
import Platform
@testable import Sharding
import Synchronization
import Testing

/// Bands of equal size alternate between the two hands; a hand whose band is longer waits
/// (its next band comes only once the other hand's bands have covered its own), and every
/// band of every tensor comes once, in order, the last one marked.
@Test func bandScheduleAlternatesTwoTensorsAndWaitsForTheLongerBand() {
    let equal = BandSchedule(bandBytes: [[4, 4], [4, 4]]).steps
    #expect(equal.map { [$0.job, $0.band, $0.hand] } == [[0, 0, 0], [1, 0, 1], [0, 1, 0], [1, 1, 1]])
    #expect(equal.map(\.endsRound) == [false, true, false, true])
    // Job 0's band of 8 bytes is hashed against two of job 1's bands of 4 before its next.
    let uneven = BandSchedule(bandBytes: [[8, 8], [4, 4, 4, 4], [2]]).steps
    #expect(uneven.map { [$0.job, $0.band] } == [[0, 0], [1, 0], [1, 1], [0, 1], [1, 2], [1, 3], [2, 0]])
    for steps in [equal, uneven] {
        for job in Set(steps.map(\.job)) {
            let mine = steps.filter { $0.job == job }
            #expect(mine.map(\.band) == Array(0..<mine.count))
            #expect(mine.map(\.last) == mine.indices.map { $0 == mine.count - 1 })
            #expect(Set(mine.map(\.hand)).count == 1)
        }
    }
    // A tensor without bands (no elements) takes no step; the next one takes its hand.
    #expect(BandSchedule(bandBytes: [[], [3]]).steps.map { [$0.job, $0.hand] } == [[1, 0]])
}

/// Items made out of order on several threads are taken in order, never more than the
/// window ahead of the consumer; a failure is thrown when its item is taken.
@Test func orderedPipelineHandsItemsOverInOrderWithinItsWindow() throws {
    let taken = Atomic<Int>(0), widest = Atomic<Int>(0)
    let pipeline = OrderedPipeline<Int>(count: 200, workers: 3, window: 5) {
        return { (i) throws(TesseraError) -> Int in
            let inFlight = i - taken.load(ordering: .acquiring)
            _ = widest.max(inFlight, ordering: .relaxed)
            if i % 7 == 0 { usleep(200) }   // some items take longer, so others finish first
            return i * i
        }
    }
    defer { pipeline.finish() }
    for i in 0..<200 {
        #expect(try pipeline.take(i) == i * i)
        taken.store(i + 1, ordering: .releasing)
    }
    #expect(widest.load(ordering: .relaxed) <= 5)   // claimed below taken + window (taken is read just before it moves)

    let failing = OrderedPipeline<Int>(count: 50, workers: 2, window: 4) {
        return { (i) throws(TesseraError) -> Int in
            guard i != 10 else { throw TesseraError(.io, "item 10 failed") }
            return i
        }
    }
    defer { failing.finish() }
    for i in 0..<10 { #expect(try failing.take(i) == i) }
    #expect(throws: TesseraError.self) { try failing.take(10) }
}
