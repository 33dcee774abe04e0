import Foundation
import Platform
import Synchronization

/// `--shard I/N`: shard I (from 0) of N.
public struct ShardSpec: Sendable, Equatable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) { self.index = index; self.count = count }

    /// Parses `I/N` (0 <= I < N).
    public init(parsing s: String) throws(TesseraError) {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 0, i < n else {
            throw TesseraError(.invalidArgument, "--shard expects I/N with 0 <= I < N (as Slurm's $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT), got '\(s)'")
        }
        self.init(index: i, count: n)
    }

    public var description: String { "\(index)/\(count)" }
}

/// How an input's conversations are dealt to shards.
public enum ShardBalance: String, Sendable, CaseIterable {
    /// By the tokens each conversation runs: shards finish together.
    case tokens
    /// Equal runs of consecutive lines, whatever their length (for comparison).
    case lines

    /// Parses `--balance`.
    public init(parsing s: String) throws(TesseraError) {
        guard let b = ShardBalance(rawValue: s) else { throw TesseraError(.invalidArgument, "--balance expects tokens or lines, got '\(s)'") }
        self = b
    }
}

/// Deterministic partitions: the same input gives the same shards on every machine.
public enum ShardPartition {
    /// The shard of each item, by cost: heaviest first (ties: earlier item), each to the shard
    /// with the least cost so far (ties: lower shard). The slowest shard exceeds the mean by
    /// less than the heaviest single item.
    public static func byCost(_ costs: [Int], shards: Int) -> [Int] {
        let order = costs.indices.sorted { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }
        var heap = MinHeap((0..<shards).map { (load: 0, shard: $0) })
        var assignment = [Int](repeating: 0, count: costs.count)
        for item in order {
            let least = heap.top
            assignment[item] = least.shard
            heap.replaceTop((least.load + costs[item], least.shard))
        }
        return assignment
    }

    /// Equal runs of consecutive items (the first `count % shards` shards one longer).
    public static func byCount(_ count: Int, shards: Int) -> [Int] {
        let base = count / shards, extra = count % shards
        var out: [Int] = []
        out.reserveCapacity(count)
        for s in 0..<shards { out += repeatElement(s, count: base + (s < extra ? 1 : 0)) }
        return out
    }
}

/// A binary min-heap of (load, shard), ordered by load then shard.
struct MinHeap {
    private var items: [(load: Int, shard: Int)]

    init(_ items: [(load: Int, shard: Int)]) { self.items = items.sorted { Self.less($0, $1) } }

    private static func less(_ a: (load: Int, shard: Int), _ b: (load: Int, shard: Int)) -> Bool {
        a.load != b.load ? a.load < b.load : a.shard < b.shard
    }

    var top: (load: Int, shard: Int) { items[0] }

    /// Replaces the smallest item and restores the order.
    mutating func replaceTop(_ item: (load: Int, shard: Int)) {
        items[0] = item
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, Self.less(items[l], items[m]) { m = l }
            if r < items.count, Self.less(items[r], items[m]) { m = r }
            if m == i { return }
            items.swapAt(i, m)
            i = m
        }
    }
}

/// The first line of a shard's output: what it was made from, so that a resume and `merge`
/// can refuse a shard of another input, checkpoint, options or partition.
public struct ShardHeader: Sendable, Equatable {
    public var shard: ShardSpec
    /// The command whose shard this is: `score` or `pairwise`.
    public var command = "score"
    public var balance: ShardBalance
    public var inputSHA256: String
    /// Records (non-empty lines) in the whole input.
    public var inputRecords: Int
    /// Input lines dealt to this shard and their planned tokens.
    public var lines: Int
    public var tokens: Int
    /// ``CheckpointIdentity`` of the model.
    public var checkpoint: String
    /// The options that change what is written (precision, maximum length, ...).
    public var options: String
    public var toolVersion: String = TesseraVersion.string

    var json: JSONValue {
        .object([("tessera_shard", .string(shard.description)), ("command", .string(command)), ("balance", .string(balance.rawValue)),
                 ("input_sha256", .string(inputSHA256)), ("input_records", .number("\(inputRecords)")),
                 ("lines", .number("\(lines)")), ("tokens", .number("\(tokens)")), ("checkpoint", .string(checkpoint)),
                 ("options", .string(options)), ("tool_version", .string(toolVersion))])
    }

    /// The header line, newline included.
    public var line: [UInt8] { Array((json.python + "\n").utf8) }
}

// Headers are made by ``ScoringRun/plan(_:shard:balance:checkpoint:pairs:)`` with the memberwise
// initializer, and read back with this one (in an extension, so that the memberwise one stays).
extension ShardHeader {
    /// Reads a header line of `file`.
    public init(parsing line: ArraySlice<UInt8>, file: String) throws(TesseraError) {
        let o = try? JSONValue.parse(String(decoding: line, as: UTF8.self))
        func field(_ k: String) throws(TesseraError) -> String {
            switch o?[k] {
            case .string(let s)?, .number(let s)?: return s
            default: throw TesseraError(.corrupt, "line 1 is not a shard header (expected \"\(k)\"; written by score --shard)", file: file)
            }
        }
        func int(_ k: String) throws(TesseraError) -> Int {
            guard let v = Int(try field(k)) else { throw TesseraError(.corrupt, "line 1: \"\(k)\" is not an integer", file: file) }
            return v
        }
        let spec = try ShardSpec(parsing: try field("tessera_shard"))
        guard let balance = ShardBalance(rawValue: try field("balance")) else {
            throw TesseraError(.corrupt, "line 1: unknown balance", file: file)
        }
        self.init(shard: spec, balance: balance, inputSHA256: try field("input_sha256"), inputRecords: try int("input_records"),
                  lines: try int("lines"), tokens: try int("tokens"), checkpoint: try field("checkpoint"), options: try field("options"))
        toolVersion = try field("tool_version")
        command = try field("command")
    }
}

/// A record of a shard's output: `{"line": N, "tokens": T, "ms": M, "record": R}` where R is
/// the line a single-host run writes for input line N, byte for byte, T the tokens it ran and
/// M its share of its batch's milliseconds.
public enum ShardRecord {
    static let parts = [#"{"line": "#, #", "tokens": "#, #", "ms": "#, #", "record": "#].map { Array($0.utf8) }

    /// The record line, newline included.
    public static func encode(line: Int, tokens: Int, ms: Int, record: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(record.utf8.count + 64)
        for (part, value) in zip(parts, [line, tokens, ms]) { out += part; out += Array(String(value).utf8) }
        out += parts[3]
        out += Array(record.utf8)
        out += [0x7D, 0x0A]
        return out
    }

    /// The fields of a record line (without its newline), or nil if it is not one. `record` is
    /// the range of the single-host line inside `bytes`.
    public static func decode(_ bytes: ArraySlice<UInt8>) -> (line: Int, tokens: Int, ms: Int, record: Range<Int>)? {
        var i = bytes.startIndex
        var values: [Int] = []
        for (k, part) in parts.enumerated() {
            guard bytes.count - (i - bytes.startIndex) >= part.count, bytes[i..<(i + part.count)].elementsEqual(part) else { return nil }
            i += part.count
            guard k < 3 else { break }
            var v = 0, digits = 0
            while i < bytes.endIndex, bytes[i] >= 0x30, bytes[i] <= 0x39, digits < 18 {
                v = v * 10 + Int(bytes[i] - 0x30); i += 1; digits += 1
            }
            guard digits > 0 else { return nil }
            values.append(v)
        }
        guard i < bytes.endIndex, bytes.last == 0x7D, bytes.endIndex - 1 > i else { return nil }
        return (values[0], values[1], values[2], i..<(bytes.endIndex - 1))
    }
}

extension ScoringRun {
    /// The lines of `input` dealt to `shard` and the header of its output. Every line is
    /// tokenised to weigh it (a bad line weighs 1); `checkpoint` is the model's
    /// ``CheckpointIdentity``; `pairs` for an input of `pairwise`.
    public func plan(_ input: ConversationInput, shard: ShardSpec, balance: ShardBalance,
                     checkpoint: String, pairs: Bool = false) throws(TesseraError) -> (lines: [ConversationInput.Line], header: ShardHeader) {
        let costs = try weigh(input, pairs: pairs)
        let assignment = balance == .lines ? ShardPartition.byCount(costs.count, shards: shard.count)
            : ShardPartition.byCost(costs, shards: shard.count)
        let mine = input.lines.indices.filter { assignment[$0] == shard.index }
        var header = ShardHeader(shard: shard, balance: balance, inputSHA256: input.sha256, inputRecords: input.lines.count,
                                 lines: mine.count, tokens: mine.reduce(0) { $0 + costs[$1] }, checkpoint: checkpoint,
                                 options: annotator.options.description)
        if pairs { header.command = "pairwise" }
        return (mine.map { input.lines[$0] }, header)
    }

    /// The tokens of every line of `input` (a bad line weighs 1), on every core: with a large
    /// input each shard tokenises all of it.
    func weigh(_ input: ConversationInput, pairs: Bool) throws(TesseraError) -> [Int] {
        let count = input.lines.count, workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, count))
        let costs = UncheckedSendable(UnsafeMutableBufferPointer<Int>.allocate(capacity: count))
        defer { costs.value.deallocate() }
        let failure = Mutex<TesseraError?>(nil)
        // The annotator's tokenizer is used from several threads, as `tokenize --threads` does.
        let annotator = UncheckedSendable(self.annotator)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: count, by: workers) {
                let cost: Int, text: String
                do throws(TesseraError) { text = try input.text(input.lines[i]) } catch {
                    failure.withLock { $0 = $0 ?? error }
                    return
                }
                if let obj = try? JSONValue.parse(text) {
                    cost = pairs ? annotator.value.pairCost(obj) : (try? Annotator.validate(obj)) != nil ? annotator.value.cost(obj) : 1
                } else {
                    cost = 1
                }
                costs.value[i] = cost
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return Array(costs.value)
    }
}
