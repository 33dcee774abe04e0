import Foundation
import Platform
import TestSupport
import Testing

/// A file of `bytes` seeded random bytes in `folder`, and the bytes.
private func file(in folder: TemporaryFolder, bytes: Int, test: String = #function) throws -> (String, [UInt8]) {
    var rng = try TestSeed.generator(test)
    let data = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let path = folder.file("direct.bin")
    try Data(data).write(to: URL(fileURLWithPath: path))
    return (path, data)
}

/// Unaligned ranges of every size, at the file's start, middle and end, read back exactly:
/// on the disk (O_DIRECT, in the temporary directory) and on tmpfs (where O_DIRECT is refused
/// and plain reads serve).
@Test(arguments: [nil, "/dev/shm"] as [String?])
func rangesReadBackExactly(_ parent: String?) throws {
    if let parent, !FileManager.default.fileExists(atPath: parent) { return }
    let folder = try TemporaryFolder("direct", in: parent)
    let (path, data) = try file(in: folder, bytes: 3 * 4096 * 7 + 123)
    let reader = try DirectReader(path: path)
    #expect(reader.size == data.count)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count + 2 * DirectReader.alignment, alignment: DirectReader.alignment)
    defer { buffer.deallocate() }
    let n = data.count
    for range in [0..<1, 0..<4096, 1..<4097, 4095..<4097, 5000..<70000, (n - 1)..<n, (n - 5000)..<n, 0..<n, 77..<77] {
        #expect(DirectReader.span(range) <= buffer.count)
        let at = try reader.read(range, into: buffer)
        #expect(Array(buffer[at..<(at + range.count)]) == Array(data[range]), "range \(range)")
    }
}

@Test func rangesOutsideTheFileAreRefused() throws {
    let folder = try TemporaryFolder("direct")
    let (path, _) = try file(in: folder, bytes: 5000)
    let reader = try DirectReader(path: path)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: DirectReader.alignment)
    defer { buffer.deallocate() }
    #expect(throws: TesseraError.self) { try reader.read(4000..<5001, into: buffer) }
    // A file cut short after it was opened: the read names the file and where it ended.
    truncate(path, 3000)
    do {
        _ = try reader.read(2000..<4000, into: buffer)
        Issue.record("a read past the new end succeeded")
    } catch {
        #expect(error.code == .io)
        #expect(error.description.contains(path))
    }
    #expect(throws: TesseraError.self) { try DirectReader(path: path + ".missing") }
}
