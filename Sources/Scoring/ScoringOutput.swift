import Codecs
import Foundation
import Platform

/// A conversation JSONL file read whole: its bytes, its SHA-256 and where each non-empty line
/// is, numbered from 1 as in the file (an empty line keeps its number but is not a record).
public struct ConversationInput: Sendable {
    /// One non-empty line: its number in the file (from 1) and its bytes' range.
    public struct Line: Sendable, Equatable {
        public var number: Int
        public var range: Range<Int>
    }

    public let path: String
    public let bytes: [UInt8]
    public let sha256: String
    public let lines: [Line]

    /// Reads `path`; a file that cannot be read is an error naming it.
    public init(path: String) throws(TesseraError) {
        self.init(path: path, bytes: try WholeFile.read(path))
    }

    /// The input held in `bytes`, named `path` in messages.
    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
        self.lines = JSONLines.split(bytes)
        var digest = SHA256Stream()
        bytes.withUnsafeBytes { digest.update($0) }
        sha256 = digest.finalizeHex()
    }

    /// The text of `line`.
    public func text(_ line: Line) -> String {
        String(decoding: bytes[line.range], as: UTF8.self)
    }
}

/// Splitting JSONL bytes into lines, shared by every reader of JSONL here.
public enum JSONLines {
    /// The non-empty lines of `bytes` with their numbers from 1 (a last line without a
    /// newline counts; a carriage return before the newline is part of the line).
    public static func split(_ bytes: [UInt8]) -> [ConversationInput.Line] {
        var lines: [ConversationInput.Line] = []
        bytes.withUnsafeBytes { all in
            guard let base = all.baseAddress else { return }
            var start = 0, number = 0
            while start < all.count {
                var end = all.count
                if let p = memchr(base + start, 0x0A, all.count - start) { end = base.distance(to: UnsafeRawPointer(p)) }
                number += 1
                if end > start { lines.append(.init(number: number, range: start..<end)) }
                start = end + 1
            }
        }
        return lines
    }
}

extension JSONLines {
    /// The texts of a file of JSON strings, one a line (empty lines skipped). A line that is
    /// a quoted string without escapes is taken as it is; any other is parsed as JSON.
    public static func strings(_ input: ConversationInput) throws(TesseraError) -> [String] {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var texts: [String] = []
        texts.reserveCapacity(input.lines.count)
        for line in input.lines {
            let bytes = input.bytes[line.range]
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw TesseraError(.corrupt, "line \(line.number) is not UTF-8", file: input.path)
            }
            let inner = bytes.dropFirst().dropLast()
            if bytes.count >= 2, bytes.first == quote, bytes.last == quote, !inner.contains(where: { $0 == quote || $0 == backslash }) {
                texts.append(String(text.utf8.dropFirst().dropLast())!)
                continue
            }
            guard let s = try? JSONValue.parse(text).string else {
                throw TesseraError(.corrupt, "line \(line.number) is not a JSON string", file: input.path)
            }
            texts.append(s)
        }
        return texts
    }
}

/// Where a scoring run's finished lines go, in input order. Each call hands over whole lines
/// (each ending in a newline) and returns once they are written, or throws naming the file.
/// A protocol so that another checked writer (stdout, a pipe) can take its place.
public protocol ScoringSink: AnyObject {
    /// Names the output in messages.
    var path: String { get }
    /// The whole records already there, which a run resumes from (empty for a new stream).
    var existing: [UInt8] { get }
    /// Appends `lines` and makes sure they reached the file (a full disk is reported here).
    func append(_ lines: [UInt8]) throws(TesseraError)
}

extension ScoringSink {
    /// The lines of ``existing``.
    public var existingLines: [ArraySlice<UInt8>] {
        let bytes = existing
        return JSONLines.split(bytes).map { bytes[$0.range] }
    }
}

/// A JSONL output that a run appends to and a later run resumes from. Only whole records
/// count: an incomplete last line (a run killed mid-write, a disk that filled up) is cut off
/// before anything is appended, so the file is always a run of whole records.
public final class ResumableOutput: ScoringSink {
    public let path: String
    /// The whole records already in the file when it was opened.
    public let existing: [UInt8]
    private var file: OutputFile?

    /// Opens (or creates) `path` for appending after its whole records. An existing path must
    /// be a regular file: a resume reads it back and cuts it (standard output or a pipe would
    /// wait on itself).
    public init(path: String) throws(TesseraError) {
        var kept: [UInt8] = []
        if FileManager.default.fileExists(atPath: path) {
            do { try ReadOnlyFile.requireRegularFile(path) } catch {
                throw TesseraError(.invalidArgument, "the output must be a regular file (it is read back to resume a run); "
                                   + "write to a file and read that", file: path)
            }
            let bytes = try WholeFile.read(path)
            if let lastNewline = bytes.lastIndex(of: 0x0A) { kept = Array(bytes[...lastNewline]) }
        }
        self.path = path
        existing = kept
        file = try OutputFile(appending: path, keeping: kept.count)
    }

    public func append(_ lines: [UInt8]) throws(TesseraError) {
        guard file != nil else { throw TesseraError(.io, "the output is already closed", file: path) }
        try file!.write(lines)
        try file!.flush()
    }

    /// Closes the file, reporting a failure to write or close it.
    public func close() throws(TesseraError) {
        guard let f = file.take() else { return }
        try f.close()
    }
}
