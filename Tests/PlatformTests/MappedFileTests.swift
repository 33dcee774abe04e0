import Foundation
import Platform
import TestSupport
import Testing

/// A file in `folder` holding `bytes`.
private func file(in folder: TemporaryFolder, _ bytes: [UInt8]) throws -> String {
    let path = folder.file("mapped")
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

@Test func mapsTheFileBytes() throws {
    let folder = try TemporaryFolder("map")
    let path = try file(in: folder, [1, 2, 3, 4, 5])
    let f = try MappedFile(path: path)
    #expect(f.count == 5)
    #expect(Array(try f.bytes(offset: 1, count: 3)) == [2, 3, 4])
}

@Test func rangesOutsideTheFileAreRefusedWithTheFileName() throws {
    let folder = try TemporaryFolder("map")
    let path = try file(in: folder, [1, 2, 3])
    let f = try MappedFile(path: path)
    #expect(throws: TesseraError.self) { _ = try f.bytes(offset: 2, count: 2) }
    do {
        _ = try f.bytes(offset: 2, count: 2)
    } catch {
        #expect(error.code == .outOfBounds)
        #expect(error.file == path)
    }
}

@Test func missingFilesGiveAnIOError() {
    #expect(throws: TesseraError.self) { _ = try MappedFile(path: "/nonexistent/tessera/file") }
}

@Test func cacheSharesOneMappingPerPath() throws {
    let folder = try TemporaryFolder("map")
    let path = try file(in: folder, [9, 9])
    let cache = MappingCache()
    let a = try cache.file(path), b = try cache.file(path)
    #expect(a === b)
}

/// Residency follows the page cache: pages dropped from it are reported missing (except on
/// tmpfs, which has nowhere else to keep them), and read back they are reported present.
@Test func residencyFollowsThePageCache() throws {
    let folder = try TemporaryFolder("map")
    let path = try file(in: folder, (0..<(64 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    let file = try MappedFile(path: path)
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    fsync(fd)
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    // The file system holding the file: that of the longest mount point above it.
    var fsType = "", longest = -1
    for line in ((try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? "").split(separator: "\n") {
        let fields = line.split(separator: " ").map(String.init)
        guard fields.count > 2 else { continue }
        let point = fields[1] == "/" ? "/" : fields[1] + "/"
        if path.hasPrefix(point), point.count > longest { (fsType, longest) = (fields[2], point.count) }
    }
    let tmpfs = fsType == "tmpfs"
    #expect(file.isResident(0..<file.count) == tmpfs)
    _ = FileManager.default.contents(atPath: path)
    #expect(file.isResident(0..<file.count))
    #expect(file.isResident(100..<200))
    #expect(file.isResident(0..<0))
}
