import Foundation
import Platform

/// A file of token sequences for the engine: one JSON array of token ids per line (blank
/// lines skipped), as `forward --input` reads.
public enum TokenSequenceFile {
    /// The sequences of the file at `path`, read by ``sequences(in:file:)``.
    public static func read(_ path: String) throws(TesseraError) -> [[Int]] {
        try sequences(in: String(decoding: try WholeFile.read(path), as: UTF8.self), file: path)
    }

    /// The sequences of `text`; a line that is not a non-empty array of integers, or a text
    /// without any, is an error naming the line (in `file`).
    public static func sequences(in text: String, file path: String) throws(TesseraError) -> [[Int]] {
        var out: [[Int]] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let array = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [Any],
                  !array.isEmpty, case let ids = array.compactMap({ ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }),
                  ids.count == array.count else {
                throw TesseraError(.invalidArgument, "line \(n + 1): expected a non-empty JSON array of token ids", file: path)
            }
            out.append(ids)
        }
        guard !out.isEmpty else { throw TesseraError(.invalidArgument, "no sequences in the input", file: path) }
        return out
    }
}
