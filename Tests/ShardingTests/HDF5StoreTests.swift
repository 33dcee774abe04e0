import Checkpoints
import Codecs
import Foundation
import HDF5
import Platform
import Sharding
import TestSupport
import Testing

/// Every fixture -> HDF5 (compressed, another layout) -> NeMo legacy gives the same digests.
@Test(arguments: try Fixtures.checkpoints().map(\.relativePath))
func fixturesRoundTripThroughHDF5(_ rel: String) throws {
    let scratch = try TemporaryFolder("h5")
    let cache = MappingCache()
    let source = try Checkpoint.open(Fixtures.path(rel), cache: cache)
    let expected = try digests(source, cache: cache)
    let h5 = scratch.file("store.h5")
    var layout = TargetLayout(tp: source.tp == 1 ? 2 : 1, pp: 1, format: .hdf5)
    layout.compressionLevel = 1
    try Converter.convert(source, to: h5, layout: layout, force: false, cache: cache)
    let store = try Checkpoint.open(h5, cache: cache)
    #expect(store.format == .hdf5)
    #expect(store.tp == layout.tp)
    #expect(try digests(store, cache: cache) == expected)
    #expect(store.objects.count == source.objects.count)
    let back = scratch.file("back")
    try Converter.convert(store, to: back, layout: TargetLayout(tp: source.tp, pp: source.pp, format: .nemo), force: false, cache: cache)
    let again = try Checkpoint.open(back, cache: cache)
    #expect(try digests(again, cache: cache) == expected)
    #expect(FileManager.default.fileExists(atPath: back + "/model_config.yaml"))
    #expect(again.config?.tokenizerModel.map { FileManager.default.fileExists(atPath: back + "/" + $0) } ?? true)
}

/// The first fixture and an uncompressed TP=1 store of it in `folder`.
private func plainStore(in folder: TemporaryFolder, _ cache: MappingCache) throws -> (source: Catalogue, path: String) {
    let source = try Checkpoint.open(try Fixtures.checkpoints()[0].path, cache: cache)
    let h5 = folder.file("plain.h5")
    var layout = TargetLayout(tp: 1, pp: 1, format: .hdf5)
    layout.compressionLevel = nil
    try Converter.convert(source, to: h5, layout: layout, force: false, cache: cache)
    return (source, h5)
}

@Test func uncompressedStoresAreContiguousAndMapped() throws {
    let scratch = try TemporaryFolder("h5")
    let cache = MappingCache()
    let (source, h5) = try plainStore(in: scratch, cache)
    let store = try Checkpoint.open(h5, cache: cache)
    #expect(store.tensors.allSatisfy { $0.pieces.count == 1 && $0.pieces[0].encoding == .raw })
    #expect(try digests(store, cache: cache) == digests(source, cache: cache))
}

/// A compressed store's reader supplies its own way of digesting its tensors (chunks decoded
/// band by band), which gives the digests of the tensors' streamed bytes; an uncompressed
/// store's tensors, which it does not apply to, are hashed as streamed.
@Test func storesDigestTheirTensorsTheirOwnWay() throws {
    let scratch = try TemporaryFolder("h5")
    let cache = MappingCache()
    let (h5, store) = try compressedStore(in: scratch)
    let streamer = TensorStreamer(cache: cache)
    let strategy = try #require(store.tensors.first?.digestStrategy)
    let own = try strategy.digests(store.tensors, streamer: streamer, threads: 2, progress: nil)
    #expect(own == (try store.tensors.map { try streamer.sha256($0) }))
    #expect(try streamer.digests(try Checkpoint.open(h5, cache: cache).tensors) == own)
    let (_, plain) = try plainStore(in: scratch, cache)
    let plainTensors = try Checkpoint.open(plain, cache: cache).tensors
    #expect(try plainTensors.first?.digestStrategy?.digests(plainTensors, streamer: streamer, threads: 2, progress: nil) == nil)
}

/// A compressed TP=2 store of the first fixture in `folder`, for the damage tests.
private func compressedStore(in folder: TemporaryFolder) throws -> (String, Catalogue) {
    let cache = MappingCache()
    let source = try Checkpoint.open(try Fixtures.checkpoints()[0].path, cache: cache)
    let h5 = folder.file("damaged.h5")
    try Converter.convert(source, to: h5, layout: TargetLayout(tp: 2, pp: 1, format: .hdf5), force: false, cache: cache)
    return (h5, try Checkpoint.open(h5, cache: MappingCache()))
}

private func flip(_ path: String, at offset: Int) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    bytes[offset] ^= 0x10
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// A bit flipped in the middle of a chunk (in its stored, incompressible low bytes, where
/// zstd's block structure cannot notice) is found by the frame's checksum and named with its
/// chunk, whether the store is being hashed, converted or streamed for the engine.
@Test func aFlippedBitInACompressedChunkIsNamed() throws {
    let scratch = try TemporaryFolder("h5")
    let (h5, store) = try compressedStore(in: scratch)
    let t = try #require(store.tensor("decoder.layers.2.mlp.linear_fc1.weight"))
    let chunk = try #require(t.pieces.last)
    try flip(h5, at: chunk.storage.offset + chunk.storage.count / 2)
    let cache = MappingCache()
    let damaged = try Checkpoint.open(h5, cache: cache)
    func expectNamed(_ what: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("a damaged chunk was read without error (\(what))")
        } catch let error as TesseraError {
            #expect(error.tensor == "decoder.layers.2.mlp.linear_fc1.weight", "\(what)")
            #expect(error.code == .corrupt, "\(what)")
            #expect(error.message.contains("chunk at \(chunk.globalOffset)"), "\(what): \(error.message)")
        } catch {
            Issue.record("\(what): \(error)")
        }
    }
    expectNamed("digests") { _ = try TensorStreamer(cache: cache).digests(damaged.tensors) }
    expectNamed("conversion") {
        try Converter.convert(damaged, to: scratch.file("from-damaged"), layout: TargetLayout(tp: 1, pp: 1, format: .nemo),
                              force: false, cache: cache)
    }
    let damagedTensor = try #require(damaged.tensor(t.name))
    expectNamed("streaming") { try TensorStreamer(cache: cache).forEachRun(of: damagedTensor) { (_) throws(TesseraError) in } }
}

@Test func dataThatDoesNotMatchItsRecordedDigestIsRefused() throws {
    let scratch = try TemporaryFolder("h5")
    let (_, h5) = try plainStore(in: scratch, MappingCache())
    let store = try Checkpoint.open(h5, cache: MappingCache())
    let piece = try #require(store.tensor("rm_head.weight")?.pieces.first)
    try flip(h5, at: piece.storage.offset + 3)
    let fresh = MappingCache()
    let damaged = try Checkpoint.open(h5, cache: fresh)
    do {
        _ = try TensorStreamer(cache: fresh).digests(damaged.tensors)
        Issue.record("a changed tensor was read without error")
    } catch {
        #expect(error.tensor == "rm_head.weight")
        #expect(error.message.contains("SHA-256"))
    }
}

@Test func truncatedStoreIsAClearError() throws {
    let scratch = try TemporaryFolder("h5")
    let (h5, _) = try compressedStore(in: scratch)
    let data = try Data(contentsOf: URL(fileURLWithPath: h5))
    try data.prefix(data.count / 3).write(to: URL(fileURLWithPath: h5))
    do {
        let cache = MappingCache()
        let c = try Checkpoint.open(h5, cache: cache)
        _ = try TensorStreamer(cache: cache).digests(c.tensors)
        Issue.record("a truncated store was read")
    } catch {
        #expect(error.file == h5)
    }
}

@Test func hdf5FilesThatAreNotStoresAreRefused() throws {
    let scratch = try TemporaryFolder("h5")
    let path = scratch.file("other.h5")
    do {
        let f = try HDF5File.create(path)
        _ = try f.createDataset("/x", type: HDF5File.storedType(.float32), shape: [4], chunk: nil, zstdLevel: nil)
    }
    do {
        _ = try Checkpoint.open(path)
        Issue.record("expected an error")
    } catch {
        #expect(error.code == .unsupported)
        #expect(error.message.contains("not a Tessera store"))
    }
}

/// Chunks never written read as the dataset's fill value, zero, as h5py reads them: the
/// writer leaves all-zero chunks unallocated. Stores appear only when complete (written under
/// a temporary name) and carry a SHA-256 per tensor, so a lost chunk is still caught.
@Test func unwrittenChunksReadAsZeros() throws {
    let scratch = try TemporaryFolder("h5")
    let path = scratch.file("holes.h5")
    do {
        let f = try HDF5File.create(path)
        try f.setStringAttribute("format", HDF5Store.formatName)
        _ = try f.createDataset("/weights/rm_head/bias", type: HDF5File.storedType(.float32), shape: [8], chunk: [4], zstdLevel: 1)
    }
    let c = try Checkpoint.open(path)
    let t = try #require(c.tensor("rm_head.bias"))
    #expect(t.pieces.count == 2)
    var bytes: [UInt8] = []
    try TensorStreamer(cache: MappingCache()).forEachRun(of: t) { bytes += $0 }
    try #require(bytes.count == 32)
    #expect(bytes.allSatisfy { $0 == 0 })
}

/// The chunk shuffle built segment by segment (as the writer does from strided rows, with the
/// vector kernel on long runs) equals HDF5's byte shuffle, and the segment-wise unshuffle
/// inverts it.
@Test(arguments: [1, 2, 4, 8])
func segmentedShuffleIsHDF5sShuffle(_ esize: Int) throws {
    var rng = try TestSeed.generator("segmentedShuffleIsHDF5sShuffle \(esize)")
    for n in [0, 1, 63, 64, 65, 127, 1000, 4099] {
        let input = (0..<(n * esize)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var expected = [UInt8](repeating: 0, count: input.count)
        for i in 0..<n { for b in 0..<esize { expected[b * n + i] = input[i * esize + b] } }
        // Segments of uneven lengths, as rows of a chunk narrower than its band.
        var cuts = [0]
        while cuts.last! < n { cuts.append(min(n, cuts.last! + Int.random(in: 1...200, using: &rng))) }
        var shuffled = [UInt8](repeating: 0, count: input.count)
        var back = [UInt8](repeating: 0xAA, count: input.count)
        input.withUnsafeBytes { src in
            shuffled.withUnsafeMutableBytes { dst in
                for (a, b) in adjacentPairs(cuts) {
                    byteShuffle(src.baseAddress! + a * esize, count: b - a, elementSize: esize,
                                into: dst.baseAddress!, chunkElements: n, at: a)
                }
            }
        }
        shuffled.withUnsafeBytes { src in
            back.withUnsafeMutableBytes { dst in
                for (a, b) in adjacentPairs(cuts) {
                    byteUnshuffleRows(src.baseAddress!, chunkElements: n, shuffled: true, at: a, sourceStride: 0, rows: 1,
                                      count: b - a, elementSize: esize, into: dst.baseAddress! + a * esize, destinationStride: 0)
                }
            }
        }
        #expect(shuffled == expected, "shuffle of \(n) elements of \(esize) bytes")
        #expect(back == input, "unshuffle of \(n) elements of \(esize) bytes")
    }
}

/// A model with rows long enough for the vector shuffle, stored compressed at TP=2 (chunks of
/// row-parallel tensors narrower than their bands) with the vocabulary re-padded, then from
/// one store into another at TP=4 and back to NeMo: every digest recorded and every tensor
/// unchanged.
@Test func widerModelsRoundTripThroughCompressedStores() throws {
    var model = SyntheticModel.wide
    model.vocab = 200
    model.divisor = 48
    let scratch = try TemporaryFolder("h5")
    let (_, source) = try model.make(in: scratch)
    let cache = MappingCache()
    let original = try digests(source, cache: cache)
    let h5 = scratch.file("wide.h5")
    try Converter.convert(source, to: h5, layout: TargetLayout(tp: 2, pp: 1, format: .hdf5), force: false, cache: cache)
    let store = try Checkpoint.open(h5, cache: cache)
    #expect(store.tensors.allSatisfy { $0.recordedDigest != nil })
    let proj = try #require(store.tensor("decoder.layers.0.self_attention.linear_proj.weight"))
    #expect(proj.pieces.count == 2 && proj.pieces.allSatisfy { $0.shape[1] == 128 })
    let h5b = scratch.file("wide4.h5")
    try Converter.convert(store, to: h5b, layout: TargetLayout(tp: 4, pp: 1, format: .hdf5), force: false, cache: cache)
    let back = scratch.file("wide-back")
    try Converter.convert(try Checkpoint.open(h5b, cache: cache), to: back, layout: TargetLayout(tp: 1, pp: 1, format: .nemo),
                          force: false, cache: cache)
    let restored = try digests(try Checkpoint.open(back, cache: cache), cache: cache)
    let stored = try digests(store, cache: cache)
    // The vocabulary tensors gain zero rows with each re-padding; everything else is unchanged.
    for (name, digest) in original where name != "embedding.word_embeddings.weight" && name != "output_layer.weight" {
        #expect(stored[name] == digest, "\(name) in the store")
        #expect(restored[name] == digest, "\(name) after the round trip")
    }
}
