import Dispatch
import Foundation
import Platform

extension SentencePieceModel {
    /// `transform` of each text's ids, in the order of `texts`. The texts are encoded on
    /// `threads` threads (at least one), text i on thread i mod `threads`, and each result is
    /// made on the thread that encoded its text; the results do not depend on `threads`.
    public func encodeIDs<T>(_ texts: [String], threads: Int, _ transform: @Sendable (_ ids: [Int]) -> T) -> [T] {
        let workers = max(1, threads)
        let results = UncheckedSendable(UnsafeMutablePointer<T>.allocate(capacity: max(texts.count, 1)))
        defer { results.value.deallocate() }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: texts.count, by: workers) {
                (results.value + i).initialize(to: transform(encodeIDs(texts[i])))
            }
        }
        defer { results.value.deinitialize(count: texts.count) }
        return Array(UnsafeBufferPointer(start: results.value, count: texts.count))
    }
}

/// How fast a tokenizer encodes a set of texts to ids (nothing else) on some threads.
public struct EncodingBenchmark: Sendable {
    /// The texts encoded, their UTF-8 bytes and the ids they gave.
    public var texts: Int, bytes: Int, tokens: Int
    /// The threads used and the wall-clock time taken.
    public var threads: Int, seconds: Double

    /// Encodes `texts` with `model` on `threads` threads (at least one), timed.
    public init(_ model: SentencePieceModel, texts: [String], threads: Int) {
        let start = Date()
        let counts = model.encodeIDs(texts, threads: threads) { $0.count }
        seconds = Date().timeIntervalSince(start)
        tokens = counts.reduce(0, +)
        self.texts = texts.count
        bytes = texts.reduce(0) { $0 + $1.utf8.count }
        self.threads = max(1, threads)
    }
}
