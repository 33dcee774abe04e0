import Foundation
import Glibc
import Platform
import TestSupport
import Testing

/// Random text of lines: empty lines, carriage returns, long and short lines, with or
/// without a last newline.
private func randomText(_ rng: inout SplitMix) -> [UInt8] {
    var out: [UInt8] = []
    for _ in 0..<Int(rng.next() % 40) {
        let length = rng.next() % 5 == 0 ? 0 : Int(rng.next() % 300)
        out += (0..<length).map { _ in UInt8(0x20 + rng.next() % 90) }
        if rng.next() % 7 == 0 { out.append(0x0D) }
        out.append(0x0A)
    }
    if rng.next() % 2 == 0 { out += Array("last line without a newline".utf8) }
    return out
}

/// The lines as a plain reading finds them: split at newlines, numbered from 1, empty ones dropped.
private func plainLines(_ bytes: [UInt8]) -> [(Int, [UInt8])] {
    var parts = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
    if bytes.last == 0x0A { parts.removeLast() }
    return parts.enumerated().filter { !$0.element.isEmpty }.map { ($0.offset + 1, $0.element) }
}

/// Read in chunks of any size, a file gives the lines a plain split gives: the same numbers,
/// ranges and bytes, from the line index and from the line-by-line reading.
@Test func linesReadInChunksOfAnySizeAreTheLinesOfTheWholeText() throws {
    var rng = try TestSeed.generator()
    let dir = try TemporaryFolder("input-file")
    var checked = 0
    for round in 0..<20 {
        let bytes = randomText(&rng), path = dir.file("text\(round)")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        let expected = plainLines(bytes)
        let file = try InputFile(path: path)
        #expect(file.count == bytes.count)
        for chunk in [1, 2, 3, 7, 64, 301, 1 << 20] {
            let index = try file.lines(chunk: chunk)
            try #require(index.count == expected.count, "chunk \(chunk), round \(round)")
            for (line, (number, text)) in zip(index, expected) {
                #expect(line.number == number)
                #expect(Array(bytes[line.range]) == text)
            }
            var read: [(Int, [UInt8])] = []
            try file.forEachLine(chunk: chunk) { line, text in read.append((line.number, Array(text))) }
            try #require(read.count == expected.count)
            #expect(zip(read, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 })
            checked += 1
        }
        #expect(bytes.withUnsafeBytes { LineSplitter.lines($0) } == (try file.lines()))
    }
    #expect(checked == 140)
}

/// A file cut short after it was opened is an error naming it, not a short line; reads
/// outside the input are refused; the last newline is found across chunk boundaries.
@Test func aFileCutShortWhileReadIsAnErrorNamingIt() throws {
    let dir = try TemporaryFolder("input-file")
    let path = dir.file("in.jsonl")
    let text = Array(String(repeating: "{\"a\": 1}\n", count: 1000).utf8)
    #expect(FileManager.default.createFile(atPath: path, contents: Data(text)))
    let file = try InputFile(path: path)
    #expect(try file.lastIndex(of: 0x0A, chunk: 7) == text.count - 1)
    #expect(try file.lastIndex(of: 0x7B, chunk: 4) == text.count - 9)
    #expect(try file.lastIndex(of: 0x00) == nil)
    #expect(truncate(path, 100) == 0)
    do {
        _ = try file.read(8000..<8009)
        Issue.record("read past the end of a file cut short")
    } catch {
        #expect(error.code == .inconsistent)
        #expect(error.description.contains(path))
        #expect(error.description.contains("changed while it was read"))
    }
    #expect(throws: TesseraError.self) { _ = try file.read(0..<(text.count + 1)) }
    #expect(throws: TesseraError.self) { _ = try file.lines() }
}

/// A file rewritten in place (same length, new content) after it was opened is an error
/// when it is read again: its line table and digest no longer describe it. A file replaced
/// by another (written aside and renamed over it) is still read as the one opened.
@Test func aFileRewrittenInPlaceIsAnErrorWhenReadAgain() throws {
    let dir = try TemporaryFolder("input-file")
    let path = dir.file("in.jsonl")
    #expect(FileManager.default.createFile(atPath: path, contents: Data("{\"a\": 1}\n{\"a\": 2}\n".utf8)))
    let file = try InputFile(path: path)
    #expect(try file.read(0..<8) == Array("{\"a\": 1}".utf8))
    try Data("{\"a\": 5}\n{\"a\": 6}\n".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    #expect(try file.read(0..<8) == Array("{\"a\": 1}".utf8))

    let inPlace = dir.file("in-place.jsonl")
    #expect(FileManager.default.createFile(atPath: inPlace, contents: Data("{\"a\": 1}\n{\"a\": 2}\n".utf8)))
    let file2 = try InputFile(path: inPlace)
    let handle = try #require(FileHandle(forWritingAtPath: inPlace))
    try handle.write(contentsOf: Data("{\"a\": 3}".utf8))
    try handle.close()
    // The kernel's timestamps are coarse: a rewrite within the same tick is dated explicitly.
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 5)], ofItemAtPath: inPlace)
    for read in [{ _ = try file2.read(0..<8) }, { _ = try file2.lines() }] as [() throws -> Void] {
        do {
            try read()
            Issue.record("read a rewritten file as if it were the one opened")
        } catch let error as TesseraError {
            #expect(error.code == .inconsistent)
            #expect(error.description.contains("changed while it was read"))
        }
    }
}

/// A pipe is read whole once and then read by position like a file.
@Test func aPipeIsHeldAndReadLikeAFile() throws {
    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    let text = Array("one\n\ntwo\nthree".utf8)
    #expect(text.withUnsafeBytes { write(fds[1], $0.baseAddress!, $0.count) } == text.count)
    close(fds[1])
    defer { close(fds[0]) }
    let file = try InputFile(path: "/dev/fd/\(fds[0])")
    #expect(file.count == text.count)
    #expect(try file.lines().map(\.number) == [1, 3, 4])
    #expect(try file.read(5..<8) == Array("two".utf8))
}
