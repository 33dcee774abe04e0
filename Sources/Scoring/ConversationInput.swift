import Codecs
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
