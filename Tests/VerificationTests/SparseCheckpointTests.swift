import Checkpoints
import Engine
import Foundation
import Glibc
import Platform
import Sharding
import TestSupport
import Testing
import Verification

/// A fixture twice: once with whole pages of its embedding and output layer punched out as
/// holes, once with the same bytes written as zeros. Both are the same model.
private final class Twins {
    let folder: TemporaryFolder
    var dir: String { folder.path }
    var dense: String { dir + "/dense" }
    var sparse: String { dir + "/sparse" }
    /// (file, byte range) of each punched region.
    var holes: [(String, Range<Int>)] = []

    init() throws {
        let src = Fixtures.path("tiny/legacy_tp1pp1_bf16_te_bytesio")
        folder = try TemporaryFolder("sparse")
        _ = try folder.copy(src, as: "dense")
        _ = try folder.copy(src, as: "sparse")
        let cat = try Checkpoint.open(sparse, cache: MappingCache())
        for name in ["embedding.word_embeddings.weight", "output_layer.weight"] {
            let s = try #require(cat.tensor(name)?.pieces.first?.storage)
            let start = (s.offset + 4095) / 4096 * 4096, end = (s.offset + s.count) / 4096 * 4096
            try #require(end - start >= 8192, "\(name): \(s.count) bytes hold no two whole pages")
            holes.append((s.path, start..<end))
        }
        for path in Set(holes.map(\.0)) {
            // The file written anew around its ranges, which are left holes.
            let ranges = holes.filter { $0.0 == path }.map(\.1).sorted { $0.lowerBound < $1.lowerBound }
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            let fd = open(path, O_WRONLY | O_TRUNC)
            try #require(fd >= 0)
            #expect(ftruncate(fd, off_t(bytes.count)) == 0)
            var at = 0
            for r in ranges + [bytes.count..<bytes.count] {
                bytes.withUnsafeBytes { b in #expect(pwrite(fd, b.baseAddress! + at, r.lowerBound - at, off_t(at)) == r.lowerBound - at) }
                at = r.upperBound
            }
            close(fd)
            let densePath = dense + String(path.dropFirst(sparse.count))
            let dfd = open(densePath, O_WRONLY)
            try #require(dfd >= 0)
            for r in ranges {
                let zeros = [UInt8](repeating: 0, count: r.count)
                #expect(zeros.withUnsafeBytes { pwrite(dfd, $0.baseAddress, $0.count, off_t(r.lowerBound)) } == r.count)
            }
            close(dfd)
        }
    }
}

/// Holes read as the zeros they stand for: the sparse and dense twins verify identical, run
/// to bit-identical outputs, and convert to every format as the same model, the holes
/// staying holes in the output.
@Test func sparseCheckpointsAreTheSameModelAsTheirDenseTwins() throws {
    let twins = try Twins()
    try #require(twins.holes.count == 2)
    let cache = MappingCache()
    let sparse = try Checkpoint.open(twins.sparse, cache: cache), dense = try Checkpoint.open(twins.dense, cache: cache)
    for (path, range) in twins.holes {
        let extents = try cache.file(path).extents
        #expect(extents.isHole(range), "\(path) \(range)")
    }
    let report = try Verifier(cache: cache).verify(dense, sparse, weightsOnly: true)
    #expect(report.equivalent)
    #expect(report.tensors.count == dense.tensors.count)
    #expect(report.tensors.allSatisfy { $0.status == .identical })
    // The engine reads the hole rows as zeros, without reading them (tokens inside and outside).
    let tokens = [3, 200, 300, 499, 7]
    for precision in [Precision.fp32, .bf16] {
        let a = try Model(dense, cache: cache).forward(tokens: tokens, precision: precision)
        let b = try Model(sparse, cache: cache).forward(tokens: tokens, precision: precision)
        try #require(a.logits?.count == b.logits?.count && a.hidden.count == b.hidden.count)
        #expect(a.hidden == b.hidden)
        #expect(a.logits == b.logits)
        #expect(a.reward == b.reward)
    }
    for format in try requireCases(OutputFormat.allCases, "output formats") {
        let out = twins.dir + "/out-\(format.rawValue)"
        try Converter.convert(sparse, to: out, layout: TargetLayout(tp: 2, pp: 2, format: format), force: false, cache: cache)
        let written = try Checkpoint.open(out, cache: cache)
        let r = try Verifier(cache: cache).verify(dense, written, weightsOnly: true)
        #expect(r.equivalent, "\(format.rawValue)")
        if format != .hdf5 {
            // At least half the punched bytes are holes in the output too.
            let punched = twins.holes.reduce(0) { $0 + $1.1.count }
            var holeBytes = 0
            for p in FileManager.default.enumerator(atPath: out)?.compactMap({ out + "/" + ($0 as! String) }) ?? [] {
                var st = stat()
                guard stat(p, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size > 0 else { continue }
                let e = try MappedFile(path: p).extents
                holeBytes += e.size - e.dataBytes
            }
            #expect(holeBytes >= punched / 2, "\(format.rawValue): \(holeBytes) bytes of holes for \(punched) punched")
        }
    }
    // One byte where the other has a hole is a difference, found at its element.
    let (path, range) = twins.holes[0]
    let densePath = twins.dense + String(path.dropFirst(twins.sparse.count))
    let fd = open(densePath, O_WRONLY)
    var one: UInt8 = 1
    #expect(pwrite(fd, &one, 1, off_t(range.lowerBound + 4096)) == 1)
    close(fd)
    let changed = try Verifier(cache: MappingCache()).verify(try Checkpoint.open(twins.dense, cache: MappingCache()),
                                                             try Checkpoint.open(twins.sparse, cache: MappingCache()),
                                                             weightsOnly: true)
    #expect(!changed.equivalent)
    #expect(changed.tensors.filter { $0.status == .different }.map(\.name) == ["embedding.word_embeddings.weight"])
}
