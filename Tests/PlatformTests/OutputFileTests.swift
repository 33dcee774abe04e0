import Foundation
import Platform
import TestSupport
import Testing

private func pattern(_ count: Int, seed: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }

/// Appends of every size (some far from 4 KiB boundaries, some spanning several 4 MiB
/// buffers) come back byte for byte, whether the buffers went through the page cache or,
/// once realigned, straight to the disk.
@Test func appendsOfAnySizeReadBackExactly() throws {
    let folder = try TemporaryFolder("output")
    let path = folder.file("output")
    var expected: [UInt8] = []
    var out = try OutputFile(creating: path)
    for (i, size) in [1, 4095, 3, 9 << 20, 12345, 4 << 20, 7].enumerated() {
        let chunk = pattern(size, seed: i)
        try out.write(chunk)
        expected += chunk
        #expect(out.position == expected.count)
    }
    try out.close()
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(expected))
}

/// A write that fails (no space left: /dev/full) is reported by close() and by the
/// background finish, never lost.
@Test func writeFailuresAreReported() throws {
    var out = try OutputFile(creating: "/dev/full")
    try out.write(pattern(5 << 20, seed: 1))
    var closeFailed = false
    do { try out.close() } catch { closeFailed = true }
    #expect(closeFailed)

    let closes = DeferredCloses()
    var deferred = try OutputFile(creating: "/dev/full")
    try deferred.write(pattern(100, seed: 2))
    try deferred.close(deferringTo: closes)
    #expect(throws: TesseraError.self) { try closes.wait() }
}

/// Many files finished in the background, empty ones included, all land complete: the
/// shared bound on buffers in flight is never leaked.
@Test func manyFilesFinishInTheBackground() throws {
    let folder = try TemporaryFolder("outputs")
    let dir = folder.path
    let closes = DeferredCloses()
    for i in 0..<40 {
        var out = try OutputFile(creating: "\(dir)/\(i)")
        if i % 4 != 0 { try out.write(pattern(i * 10_007, seed: i)) }
        try out.close(deferringTo: closes)
    }
    try closes.wait()
    for i in 0..<40 {
        let expected = i % 4 != 0 ? pattern(i * 10_007, seed: i) : []
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(i)")) == Data(expected))
    }
}
