@testable import Engine
import Synchronization
import Testing
import TestSupport

/// `parallel` hands every item to exactly one call, in non-empty ranges whose starts lie on the
/// granule, whatever the count, granule, number of workers and pieces per worker.
@Test(arguments: try requireCases([(0, 64), (1, 64), (63, 64), (64, 64), (65, 64), (4096, 64), (8192 + 17, 64), (1000, 1), (7, 3)],
                                  "counts and granules"),
      [(1, 1), (2, 1), (2, 8), (3, 8), (8, 1), (8, 8)])
func piecesCoverEveryItemOnce(shape: (count: Int, granule: Int), split: (threads: Int, piecesPerWorker: Int)) {
    let (count, granule) = shape
    let seen = Mutex([Int](repeating: 0, count: count))
    let misplaced = Atomic<Int>(0)
    let threads = split.threads
    Kernels(path: .portable, threads: threads).parallel(count, granule: granule, piecesPerWorker: split.piecesPerWorker) { lo, hi in
        if lo % granule != 0 || lo >= hi || hi > count { misplaced.wrappingAdd(1, ordering: .relaxed) }
        seen.withLock { for i in lo..<min(hi, count) { $0[i] += 1 } }
    }
    #expect(misplaced.load(ordering: .relaxed) == 0)
    let counts = seen.withLock { $0 }
    #expect(counts.count == count)
    #expect(counts.allSatisfy { $0 == 1 }, "count \(count), granule \(granule), \(threads) threads, \(split.piecesPerWorker) pieces each")
}

/// The shrinking split hands every item to exactly one call, in non-empty ranges whose starts lie
/// on the granule and, with several workers, never wider than `largest` granules (one worker
/// takes everything in one call); with several workers and enough work, its first pieces are
/// `largest` wide and its last one granule.
@Test(arguments: try requireCases([(0, 64), (1, 64), (65, 64), (4096, 64), (8192 + 17, 64), (1000, 1), (7, 3)], "counts and granules"),
      [(1, 1), (2, 1), (2, 4), (2, 16), (3, 16), (8, 64)])
func shrinkingPiecesCoverEveryItemOnce(shape: (count: Int, granule: Int), split: (threads: Int, largest: Int)) {
    let (count, granule) = shape
    let seen = Mutex([Int](repeating: 0, count: count))
    let widths = Mutex([Int]())
    let misplaced = Atomic<Int>(0)
    Kernels(path: .portable, threads: split.threads).parallel(count, granule: granule, largest: split.largest) { lo, hi in
        let tooWide = split.threads > 1 && hi - lo > split.largest * granule
        if lo % granule != 0 || lo >= hi || hi > count || tooWide { misplaced.wrappingAdd(1, ordering: .relaxed) }
        seen.withLock { for i in lo..<min(hi, count) { $0[i] += 1 } }
        widths.withLock { $0.append(hi - lo) }
    }
    #expect(misplaced.load(ordering: .relaxed) == 0)
    let counts = seen.withLock { $0 }
    #expect(counts.count == count)
    #expect(counts.allSatisfy { $0 == 1 }, "count \(count), granule \(granule), \(split.threads) threads, largest \(split.largest)")
    let units = (count + granule - 1) / granule, w = widths.withLock { $0 }
    if split.threads > 1, units >= 4 * split.threads * split.largest {
        #expect(w.max() == split.largest * granule, "the first pieces are \(split.largest) granules wide: \(w)")
        #expect(w.contains { $0 <= granule }, "the last pieces are one granule: \(w)")
    }
}
