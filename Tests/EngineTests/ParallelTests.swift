@testable import Engine
import Synchronization
import Testing
import TestSupport

/// `parallelPieces` hands every item to exactly one call, in ranges whose starts lie on the
/// granule, whatever the count, granule and number of workers.
@Test(arguments: try requireCases([(0, 64), (1, 64), (63, 64), (64, 64), (65, 64), (4096, 64), (8192 + 17, 64), (1000, 1), (7, 3)],
                                  "counts and granules"),
      [1, 2, 3, 8])
func piecesCoverEveryItemOnce(shape: (count: Int, granule: Int), threads: Int) {
    let (count, granule) = shape
    let seen = Mutex([Int](repeating: 0, count: count))
    let misplaced = Atomic<Int>(0)
    Kernels(path: .portable, threads: threads).parallelPieces(count, granule: granule) { lo, hi in
        if lo % granule != 0 || lo >= hi || hi > count { misplaced.wrappingAdd(1, ordering: .relaxed) }
        seen.withLock { for i in lo..<min(hi, count) { $0[i] += 1 } }
    }
    #expect(misplaced.load(ordering: .relaxed) == 0)
    let counts = seen.withLock { $0 }
    #expect(counts.count == count)
    #expect(counts.allSatisfy { $0 == 1 }, "count \(count), granule \(granule), \(threads) threads")
}
