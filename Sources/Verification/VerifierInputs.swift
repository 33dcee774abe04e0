import Foundation
import Platform
import Scoring

extension Verifier {
    /// Probe token sequences written as `;`-separated lists of comma-separated ids
    /// (`1,2,3;4,5`). What is not an integer is passed over; a list left with no id is refused.
    public static func probes(parsing text: String) throws(TesseraError) -> [[Int]] {
        try text.split(separator: ";").map { (seq) throws(TesseraError) -> [Int] in
            let ids = seq.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !ids.isEmpty else { throw TesseraError(.invalidArgument, "bad --probes '\(text)'") }
            return ids
        }
    }
}

extension Verifier.Prompts {
    /// The conversations of a NeMo-Aligner JSONL file (UTF-8), read by ``conversations(in:file:)``.
    public static func conversations(inFile path: String) throws(TesseraError) -> [JSONValue] {
        guard let content = String(validating: try WholeFile.read(path), as: UTF8.self) else {
            throw TesseraError(.corrupt, "not UTF-8 text", file: path)
        }
        return try conversations(in: content, file: path)
    }

    /// The conversations of NeMo-Aligner JSONL `text`, one object a line (empty lines skipped;
    /// a bad line is named by its place among the others, in `file`).
    public static func conversations(in text: String, file: String) throws(TesseraError) -> [JSONValue] {
        var list: [JSONValue] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            do throws(TesseraError) { list.append(try JSONValue.parse(String(line))) } catch {
                throw TesseraError(.corrupt, "line \(n + 1): \(error.message)", file: file)
            }
        }
        return list
    }
}

extension TensorComparison.Status {
    /// True for a verdict that makes the checkpoints not equivalent: the tensors differ, or
    /// one side lacks the tensor (equal after rounding and differing padding are not).
    public var isDifference: Bool { [.different, .missingInA, .missingInB].contains(self) }
}
