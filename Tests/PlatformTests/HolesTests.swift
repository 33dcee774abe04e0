import Foundation
import Glibc
import Platform
import TestSupport
import Testing

/// Bytes a file occupies on disk (st_blocks).
private func physicalBytes(_ path: String) -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else { return -1 }
    return Int(st.st_blocks) * 512
}

/// A sparse file: `size` bytes, data only where `stamps` put it.
private func makeSparse(_ path: String, size: Int, stamps: [(Int, [UInt8])]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    #expect(fd >= 0)
    defer { close(fd) }
    #expect(ftruncate(fd, off_t(size)) == 0)
    for (at, bytes) in stamps {
        #expect(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(at)) } == bytes.count)
    }
}

/// A sparse file's holes come out as views of the zero pages, its data as the mapped bytes;
/// together they are the file's bytes, and the holes were never faulted in.
@Test func holesReadAsZeroPagesWithoutTouchingTheFile() throws {
    let folder = try TemporaryFolder("holes")
    let path = folder.file("sparse")
    let size = 64 << 20
    let stamps: [(Int, [UInt8])] = [(0, [1, 2, 3]), (20 << 20, [UInt8](repeating: 7, count: 5000)), (size - 2, [9, 9])]
    try makeSparse(path, size: size, stamps: stamps)
    let file = try MappedFile(path: path)
    let extents = file.extents
    try #require(!extents.data.isEmpty)
    #expect(!extents.isDense)
    #expect(extents.dataBytes < 1 << 20)
    var expected = [UInt8](repeating: 0, count: size)
    for (at, b) in stamps { expected.replaceSubrange(at..<(at + b.count), with: b) }
    var got: [UInt8] = []
    got.reserveCapacity(size)
    var zeroViews = 0
    file.forEachRun(0..<size) { run in
        if ZeroPages.contains(run) { zeroViews += 1 }
        got.append(contentsOf: run)
    }
    #expect(zeroViews >= 2)
    try #require(got.count == expected.count)
    #expect(got == expected)
    // A range wholly inside a hole is one zero view.
    #expect(extents.isHole((30 << 20)..<(31 << 20)))
    #expect(!extents.isHole(0..<1))
}

/// A new output file leaves zero runs and all-zero blocks as holes, and still reads back as
/// every byte written, its size included (a trailing hole).
@Test func outputFilesStaySparse() throws {
    let folder = try TemporaryFolder("holes")
    let path = folder.file("sparse-out")
    var out = try OutputFile(creating: path)
    var expected: [UInt8] = []
    let head = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
    try out.write(head)
    expected += head
    try out.write(ZeroPages.run(100 << 20))                       // a hole from a zero view
    expected += [UInt8](repeating: 0, count: 100 << 20)
    let dense = [UInt8](repeating: 0, count: 50 << 20)              // zeros as ordinary bytes
    try out.write(dense)
    expected += dense
    try out.write([42])
    expected += [42]
    try out.write(ZeroPages.run(30 << 20))                        // a hole at the end
    expected += [UInt8](repeating: 0, count: 30 << 20)
    try out.close()
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    try #require(data.count == expected.count)
    #expect(data == Data(expected))
    #expect(physicalBytes(path) < 1 << 20, "physical size \(physicalBytes(path)) bytes for 180 MiB of mostly zeros")
}
