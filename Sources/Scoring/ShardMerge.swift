import Codecs
import Foundation
import Platform

/// Combines the outputs of `score --shard I/N` into the output a single-host run writes, after
/// checking that they are complete and belong together: every input line exactly once, every
/// shard of one partition of this input, made with one checkpoint and the same options.
public struct ShardMerge {
    /// One shard output, indexed: its records are read from the file when they are written.
    public struct Shard {
        public var file: String
        public var header: ShardHeader
        /// Where the records are read from again: the file as it was indexed (opened again
        /// when needed, so thousands of shards never hold thousands of open files), or the
        /// bytes of a pipe.
        let source: Source
        enum Source { case file(FileIdentity), held(InputFile) }
        /// (input line, byte range of its single-host record in the file).
        var records: [(line: Int, record: Range<Int>)] = []
        public var tokens = 0
        public var milliseconds = 0
    }

    public let input: ConversationInput
    public private(set) var shards: [Shard] = []
    /// Shard files kept open at once while the output is written.
    var openShardFiles = ShardReaders.defaultCapacity

    /// Reads and checks every shard output against `input`. Errors name the shard file and
    /// what was expected: a missing, duplicated, foreign (another input), stale (another
    /// checkpoint or options) or incomplete shard, a line given twice.
    public init(input: ConversationInput, shardFiles: [String]) throws(TesseraError) {
        self.input = input
        guard !shardFiles.isEmpty else { throw TesseraError(.invalidArgument, "give the shard outputs to merge") }
        for file in shardFiles { shards.append(try Self.read(file, input: input)) }
        try checkTogether()
        try checkLines()
    }

    /// Reads one shard output: its header (of this input) and its records.
    static func read(_ file: String, input: ConversationInput) throws(TesseraError) -> Shard {
        let bytes = try InputFile(path: file)
        var header: ShardHeader?
        var records: [(line: Int, record: Range<Int>)] = [], tokens = 0, milliseconds = 0
        try bytes.forEachLine { (line, text) throws(TesseraError) in
            let slice = Array(text)[...]
            guard header != nil else {
                let h = try ShardHeader(parsing: slice, file: file)
                guard h.inputSHA256 == input.sha256 else {
                    throw TesseraError(.inconsistent, "shard \(h.shard) of another input: its input's SHA-256 is \(h.inputSHA256), "
                        + "\(input.path)'s is \(input.sha256)", file: file)
                }
                guard try bytes.read((bytes.count - 1)..<bytes.count) == [0x0A] else {
                    throw TesseraError(.inconsistent, "shard \(h.shard) ends in an incomplete record (its run was interrupted): "
                        + "resume it with the same score --shard command", file: file)
                }
                header = h
                return
            }
            guard let r = ShardRecord.decode(slice) else {
                throw TesseraError(.corrupt, "line \(line.number) is not a shard record (expected {\"line\": N, ...})", file: "\(file):\(line.number)")
            }
            let start = line.range.lowerBound
            records.append((r.line, (start + r.record.lowerBound)..<(start + r.record.upperBound)))
            tokens += r.tokens
            milliseconds += r.ms
        }
        guard let header else { throw TesseraError(.corrupt, "empty: not a shard output (expected a header line written by score --shard)", file: file) }
        return Shard(file: file, header: header, source: bytes.identity.map { .file($0) } ?? .held(bytes), records: records,
                     tokens: tokens, milliseconds: milliseconds)
    }

    /// Every shard of one partition, each once, made the same way.
    func checkTogether() throws(TesseraError) {
        // The reference is the way most shards were made (ties: the lowest shard's).
        let made = shards.map { "\($0.header.command) \($0.header.checkpoint) \($0.header.options) \($0.header.balance) \($0.header.shard.count)" }
        let ranked = shards.indices.sorted { shards[$0].header.shard.index < shards[$1].header.shard.index }
        var count: [String: Int] = [:]
        for m in made { count[m, default: 0] += 1 }
        let ref = ranked.max { a, b in count[made[a]]! < count[made[b]]! }!
        let r = shards[ref].header
        for (k, s) in shards.enumerated() where made[k] != made[ref] {
            let h = s.header, what: String
            if h.checkpoint != r.checkpoint { what = "made by another checkpoint (\(h.checkpoint)) than \(shards[ref].file) (\(r.checkpoint))" }
            else if h.options != r.options || h.command != r.command {
                what = "made with another command or options (\(h.command) \(h.options)) than \(shards[ref].file) (\(r.command) \(r.options))"
            }
            else { what = "of another partition (\(h.shard.count) shards, \(h.balance)) than \(shards[ref].file) (\(r.shard.count), \(r.balance))" }
            throw TesseraError(.inconsistent, "shard \(h.shard) is \(what): it is stale; score it again", file: s.file)
        }
        var byIndex: [Int: String] = [:]
        for s in shards {
            if let other = byIndex[s.header.shard.index] {
                throw TesseraError(.inconsistent, "shard \(s.header.shard) is given twice: \(other) and \(s.file)", file: s.file)
            }
            byIndex[s.header.shard.index] = s.file
        }
        if let missing = (0..<r.shard.count).first(where: { byIndex[$0] == nil }) {
            throw TesseraError(.missing, "shard \(missing)/\(r.shard.count) is missing: \(shards.count) of \(r.shard.count) shard outputs given",
                               file: input.path)
        }
    }

    /// Every input line exactly once, from complete shards.
    func checkLines() throws(TesseraError) {
        var owner = [Int](repeating: -1, count: (input.lines.last?.number ?? 0) + 1)
        for line in input.lines { owner[line.number] = -2 }
        for (k, s) in shards.enumerated() {
            for r in s.records {
                guard r.line < owner.count, owner[r.line] != -1 else {
                    throw TesseraError(.inconsistent, "holds input line \(r.line), which is not a record of \(input.path)", file: s.file)
                }
                guard owner[r.line] == -2 else {
                    throw TesseraError(.inconsistent, "input line \(r.line) is in both \(shards[owner[r.line]].file) and \(s.file)", file: s.file)
                }
                owner[r.line] = k
            }
            guard s.records.count == s.header.lines else {
                throw TesseraError(.inconsistent, "shard \(s.header.shard) is incomplete: \(s.records.count) of its \(s.header.lines) lines; "
                    + "resume it with the same score --shard command", file: s.file)
            }
        }
        if let lost = input.lines.first(where: { owner[$0.number] < 0 }) {
            throw TesseraError(.missing, "input line \(lost.number) is in no shard output", file: input.path)
        }
    }

    /// The command the shards are of: `score` or `pairwise`.
    public var command: String { shards[0].header.command }

    /// The pairwise result of `pairwise` shards, counted in input order.
    public func pairwiseResult() throws(TesseraError) -> PairwiseResult {
        var byLine: [Int: PairOutcome] = [:], readers = ShardReaders(capacity: openShardFiles)
        for s in shards {
            for r in s.records {
                let bytes = try readers.read(r.record, of: s)
                guard let v = try? JSONValue.parse(String(decoding: bytes, as: UTF8.self)), let o = PairOutcome(v) else {
                    throw TesseraError(.corrupt, "the record of input line \(r.line) is not a pair outcome", file: s.file)
                }
                byLine[r.line] = o
            }
        }
        return PairwiseResult(input.lines.map { byLine[$0.number]! })
    }

    /// Writes what the single-host command writes: the records in input order (each followed
    /// by a newline) for `score`, the `--json` result line for `pairwise`; returns the SHA-256
    /// of what was written.
    public func write(to output: inout OutputFile) throws(TesseraError) -> String {
        if command == "pairwise" {
            let line = Array((try pairwiseResult().json.python + "\n").utf8)
            try output.write(line)
            var digest = SHA256Stream()
            line.withUnsafeBytes { digest.update($0) }
            return digest.finalizeHex()
        }
        var at = [(shard: Int, record: Range<Int>)](repeating: (0, 0..<0), count: (input.lines.last?.number ?? 0) + 1)
        for (k, s) in shards.enumerated() { for r in s.records { at[r.line] = (k, r.record) } }
        var digest = SHA256Stream(), readers = ShardReaders(capacity: openShardFiles)
        let newline: [UInt8] = [0x0A]
        for line in input.lines {
            let (k, range) = at[line.number]
            let record = try readers.read(range, of: shards[k])
            try withBytes(record) { (b) throws(TesseraError) in digest.update(b); try output.write(b) }
            try withBytes(newline) { (b) throws(TesseraError) in digest.update(b); try output.write(b) }
        }
        return digest.finalizeHex()
    }

    /// The kernel path each shard's records were computed on (`kernel_path` of its first
    /// record; nil for a shard without one). Scores are bit-identical across batches, threads
    /// and shards on one path, but may differ between paths (AVX2 against AVX512-BF16).
    public var kernelPaths: [String?] {
        shards.map { s in
            var readers = ShardReaders()
            guard let first = s.records.first, let bytes = try? readers.read(first.record, of: s),
                  let record = try? JSONValue.parse(String(decoding: bytes, as: UTF8.self)) else { return nil }
            return record["kernel_path"]?.string
        }
    }

    /// A warning when the shards were computed on different kernel paths (nil when one path).
    public var mixedKernelPathsWarning: String? {
        let paths = Set(kernelPaths.compactMap { $0 })
        guard paths.count > 1 else { return nil }
        let byShard = zip(shards, kernelPaths).map { "\($0.header.shard): \($1 ?? "?")" }.joined(separator: ", ")
        return "shards were scored on different kernel paths (\(byShard)): their scores are each deterministic but "
            + "may differ in the last bits from a single-host run on one path"
    }

    /// The manifest of the merged output (`Schemas/merge-manifest.schema.json`).
    public func manifest(output: String, outputSHA256: String) -> JSONValue {
        let order = shards.indices.sorted { shards[$0].header.shard.index < shards[$1].header.shard.index }
        let h = shards[order[0]].header, paths = kernelPaths
        return .object([
            ("tool", .string("tessera")), ("tool_version", .string(TesseraVersion.string)), ("command", .string(h.command)),
            ("input", .string(input.path)), ("input_sha256", .string(input.sha256)),
            ("input_records", .number("\(input.lines.count)")),
            ("checkpoint", .string(h.checkpoint)), ("options", .string(h.options)), ("balance", .string(h.balance.rawValue)),
            ("output", .string(output)), ("output_sha256", .string(outputSHA256)),
            ("shard_count", .number("\(h.shard.count)")),
            ("shards", .array(order.map { k in
                let s = shards[k]
                return .object([("shard", .string(s.header.shard.description)), ("file", .string(s.file)),
                         ("tool_version", .string(s.header.toolVersion)),
                         ("lines", .number("\(s.records.count)")), ("tokens", .number("\(s.tokens)")),
                         ("planned_tokens", .number("\(s.header.tokens)")),
                         ("kernel_path", paths[k].map { .string($0) } ?? .null),
                         ("seconds", .double(Double(s.milliseconds) / 1000))])
            })),
        ])
    }
}

/// The shard files open while records are copied out of them: at most ``capacity`` at once
/// (a merge of thousands of Slurm tasks' outputs stays far below `ulimit -n`), each opened
/// again when needed and checked to be the file indexed.
struct ShardReaders {
    /// A quarter of the open files this process may have, at most 128.
    static var defaultCapacity: Int { max(4, min(128, ProcessLimits.openFiles / 4)) }
    let capacity: Int
    private var open: [String: InputFile] = [:]
    private var order: [String] = []

    init(capacity: Int = defaultCapacity) { self.capacity = max(1, capacity) }

    /// The bytes of `range` of `shard`'s file.
    mutating func read(_ range: Range<Int>, of shard: ShardMerge.Shard) throws(TesseraError) -> [UInt8] {
        if let f = open[shard.file] { return try f.read(range) }
        let f: InputFile
        switch shard.source {
        case .held(let bytes): f = bytes
        case .file(let identity): f = try InputFile(reopening: shard.file, as: identity)
        }
        if open.count >= capacity { open[order.removeFirst()] = nil }
        open[shard.file] = f
        order.append(shard.file)
        return try f.read(range)
    }
}
