import Foundation
import Platform

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
