import Codecs
import Foundation
import Platform

/// A conversation JSONL file: its SHA-256 and where each non-empty line is, numbered from 1
/// as in the file (an empty line keeps its number but is not a record). The file is read
/// through once to find its lines, then each line is read when it is asked for: an input
/// of any size takes memory for its line table, not its bytes (a pipe's bytes are held).
public struct ConversationInput: Sendable {
    /// One non-empty line: its number in the file (from 1) and its bytes' range.
    public typealias Line = TextLine

    public var path: String { file.path }
    public let sha256: String
    public let lines: [Line]
    private let file: InputFile

    /// Reads `path` through; a file that cannot be read is an error naming it.
    public init(path: String) throws(TesseraError) {
        try self.init(InputFile(path: path))
    }

    /// The input held in `bytes`, named `path` in messages.
    public init(path: String, bytes: [UInt8]) {
        file = InputFile(path: path, bytes: bytes)
        lines = JSONLines.split(bytes)
        var digest = SHA256Stream()
        bytes.withUnsafeBytes { digest.update($0) }
        sha256 = digest.finalizeHex()
    }

    private init(_ file: InputFile) throws(TesseraError) {
        var digest = SHA256Stream()
        lines = try file.lines { digest.update($0) }
        sha256 = digest.finalizeHex()
        self.file = file
    }

    /// Refuses `output` when it is this input's file: the run would read its own output as
    /// conversations already scored.
    public func checkNotInput(_ output: String) throws(TesseraError) {
        guard file.isFile(at: output) else { return }
        throw TesseraError(.invalidArgument, "the output is the input file \(path): write the scores to another file", file: output)
    }

    /// The bytes of `line`, read now (an error names the file if it changed since).
    public func bytes(_ line: Line) throws(TesseraError) -> [UInt8] {
        try file.read(line.range)
    }

    /// The lines in consecutive runs of about `bytes` bytes each (at least one line), for
    /// working through a large input a piece at a time in order.
    public func pieces(ofAbout bytes: Int) -> [ArraySlice<Line>] {
        var pieces: [ArraySlice<Line>] = [], start = 0, size = 0
        for (i, line) in lines.enumerated() {
            size += line.range.count + 1
            if size >= bytes { pieces.append(lines[start...i]); start = i + 1; size = 0 }
        }
        if start < lines.count { pieces.append(lines[start...]) }
        return pieces
    }

    /// The text of `line`, read now (an error names the file if it changed since).
    public func text(_ line: Line) throws(TesseraError) -> String {
        String(decoding: try bytes(line), as: UTF8.self)
    }
}

/// Splitting JSONL bytes into lines, shared by every reader of JSONL here.
public enum JSONLines {
    /// The non-empty lines of `bytes` with their numbers from 1 (a last line without a
    /// newline counts; a carriage return before the newline is part of the line).
    public static func split(_ bytes: [UInt8]) -> [ConversationInput.Line] {
        bytes.withUnsafeBytes { LineSplitter.lines($0) }
    }
}

extension JSONLines {
    /// The texts of a file of JSON strings, one a line (empty lines skipped). A line that is
    /// a quoted string without escapes is taken as it is; any other is parsed as JSON.
    public static func strings(_ input: ConversationInput) throws(TesseraError) -> [String] {
        try strings(input, input.lines[...])
    }

    /// The texts of `lines` of a file of JSON strings, as ``strings(_:)`` takes them.
    public static func strings(_ input: ConversationInput, _ lines: ArraySlice<ConversationInput.Line>) throws(TesseraError) -> [String] {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var texts: [String] = []
        texts.reserveCapacity(lines.count)
        for line in lines {
            let bytes = try input.bytes(line)[...]
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
    /// Bytes of whole records already there, which a run resumes from (0 for a new stream).
    var existingBytes: Int { get }
    /// Calls `body` with each record line already there, in order (without its newline).
    func forEachExistingLine(_ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError)
    /// Appends `lines` and makes sure they reached the file (a full disk is reported here).
    func append(_ lines: [UInt8]) throws(TesseraError)
}

extension ScoringSink {
    /// The record lines already there (for tests and small outputs).
    public func existingLines() throws(TesseraError) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        try forEachExistingLine { lines.append(Array($0)) }
        return lines
    }
}

/// A JSONL output that a run appends to and a later run resumes from. Only whole records
/// count: an incomplete last line (a run killed mid-write, a disk that filled up) is cut off
/// before anything is appended, so the file is always a run of whole records. The records
/// already there are read back a chunk at a time, never whole.
public final class ResumableOutput: ScoringSink {
    public let path: String
    /// Bytes of the whole records in the file when it was opened.
    public let existingBytes: Int
    /// The file as it was opened, to read its records back.
    private let previous: InputFile?
    private var file: OutputFile?

    /// Opens (or creates) `path` for appending after its whole records. An existing path must
    /// be a regular file: a resume reads it back and cuts it (standard output or a pipe would
    /// wait on itself).
    public init(path: String) throws(TesseraError) {
        var kept = 0
        if FileManager.default.fileExists(atPath: path) {
            do { try ReadOnlyFile.requireRegularFile(path) } catch {
                throw TesseraError(.invalidArgument, "the output must be a regular file (it is read back to resume a run); "
                                   + "write to a file and read that", file: path)
            }
            // Cut to its whole records and appended to, by this run alone.
            let old = try InputFile(path: path, appendedByCaller: true)
            kept = try old.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
            previous = old
        } else {
            previous = nil
        }
        self.path = path
        existingBytes = kept
        file = try OutputFile(appending: path, keeping: kept)
    }

    public func forEachExistingLine(_ body: (UnsafeRawBufferPointer) throws(TesseraError) -> Void) throws(TesseraError) {
        guard let previous, existingBytes > 0 else { return }
        try previous.forEachLine(upTo: existingBytes) { (_, bytes) throws(TesseraError) in try body(bytes) }
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
