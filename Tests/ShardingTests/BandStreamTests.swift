@testable import Checkpoints
import Foundation
import Platform
import Sharding
import Synchronization
import TestSupport
import Testing

/// A compressed TP=2 store, in `folder`, of a model wide enough for several chunks per band.
private func store(in folder: TemporaryFolder) throws -> (Catalogue, MappingCache) {
    let (_, source) = try SyntheticModel.wide.make(in: folder)
    let cache = MappingCache()
    let h5 = folder.file("bands.h5")
    try Converter.convert(source, to: h5, layout: TargetLayout(tp: 2, pp: 1, format: .hdf5), force: false, cache: cache)
    return (try Checkpoint.open(h5, cache: cache), cache)
}

/// However the reads are grouped (one chunk per read, a few, everything), however deep each
/// slot reads ahead, and whether chunks come from the disk or from the page cache's pages in
/// place, the chunk-by-chunk digests equal those of the mapped-file path.
@Test(arguments: [(1, 2), (40_000, 2), (100_000, 3), (1 << 30, 4)])
func digestsDoNotDependOnHowChunksAreRead(_ groupBytes: Int, _ depth: Int) throws {
    let scratch = try TemporaryFolder("bands")
    let (catalogue, cache) = try store(in: scratch)
    let streamer = TensorStreamer(cache: cache)
    let expected = try catalogue.tensors.map { t in try streamer.sha256(t) }
    let path = catalogue.tensors[0].pieces[0].storage.path
    for threads in [1, 2] {
        let direct = try HDF5Store.bandDigests(catalogue.tensors, cache: nil, threads: threads, groupBytes: groupBytes, depth: depth,
                                               progress: nil)
        #expect(direct == expected, "read: groups of \(groupBytes) bytes, depth \(depth), \(threads) threads")
        // The whole file read once: every page is in the page cache, and mapped pages are used.
        _ = FileManager.default.contents(atPath: path)
        #expect(try cache.file(path).isResident(0..<(try cache.file(path).count)))
        let mapped = try HDF5Store.bandDigests(catalogue.tensors, cache: cache, threads: threads, groupBytes: groupBytes, depth: depth,
                                               progress: nil)
        #expect(mapped == expected, "in place: groups of \(groupBytes) bytes, depth \(depth), \(threads) threads")
    }
}

/// Tensors are handed out once each, whatever the number of streams: every tensor is
/// delivered chunk by chunk, band by band, by exactly one stream.
@Test func everyChunkIsDeliveredOnceInBandOrder() throws {
    let scratch = try TemporaryFolder("bands")
    let (catalogue, _) = try store(in: scratch)
    let plans = catalogue.tensors.compactMap(ChunkBands.init)
    #expect(plans.count == catalogue.tensors.count)
    let readers = [catalogue.tensors[0].pieces[0].storage.path: try DirectReader(path: catalogue.tensors[0].pieces[0].storage.path)]
    let next = Mutex(0)
    let claim: @Sendable () -> Int? = { next.withLock { k in defer { k += 1 }; return k < plans.count ? k : nil } }
    let orders = BandStream.orders(plans)
    let streams = (0..<3).map { _ in BandStream(plans: plans, orders: orders, readers: readers, groupBytes: 50_000, depth: 2, claim: claim) }
    var seen: [Int: [(Int, Int)]] = [:]
    var k = 0
    // Round robin over the streams, as a worker alternates between its slots.
    var live = Set(streams.indices)
    while !live.isEmpty {
        let s = k % streams.count
        k += 1
        guard live.contains(s) else { continue }
        guard let c = streams[s].next() else { live.remove(s); continue }
        let bytes = try c.bytes.get()
        let p = plans[c.tensor].tensor.pieces[c.piece]
        #expect(bytes.count == p.storage.count)
        seen[c.tensor, default: []].append((c.band, c.piece))
    }
    #expect(seen.count == plans.count)
    for (t, chunks) in seen {
        #expect(chunks.map(\.0) == orders[t].map(\.band))
        #expect(chunks.map(\.1) == orders[t].map(\.piece))
    }
}
