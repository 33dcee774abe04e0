import Foundation
import Platform
import Testing

private func tempFile(_ bytes: [UInt8]) throws -> String {
    let path = NSTemporaryDirectory() + "tessera-map-\(UUID().uuidString)"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

@Test func mapsTheFileBytes() throws {
    let path = try tempFile([1, 2, 3, 4, 5])
    defer { try? FileManager.default.removeItem(atPath: path) }
    let f = try MappedFile(path: path)
    #expect(f.count == 5)
    #expect(Array(try f.bytes(offset: 1, count: 3)) == [2, 3, 4])
}

@Test func rangesOutsideTheFileAreRefusedWithTheFileName() throws {
    let path = try tempFile([1, 2, 3])
    defer { try? FileManager.default.removeItem(atPath: path) }
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
    let path = try tempFile([9, 9])
    defer { try? FileManager.default.removeItem(atPath: path) }
    let cache = MappingCache()
    let a = try cache.file(path), b = try cache.file(path)
    #expect(a === b)
}
