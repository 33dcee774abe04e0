import ArgumentParser
import Checkpoints
import Engine
import Foundation
import Platform
import Scoring
import Tokenizer

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Annotate NeMo-Aligner conversation JSONL with the reward model's per-turn attribute scores.",
        discussion: """
        Writes each input object with every turn whose label is not null labelled as NeMo-Aligner's \
        attribute_annotate.py does (quality:X,toxicity:X,... over all nine attributes, clipped to \
        0..4, rounded half to even), plus the raw floats in "rewards". Lines already in the output \
        are skipped (resume, from whole records: an incomplete last line is cut off first); each \
        batch is written out before the next. Turns of a conversation share the computation of \
        their common prefix. With --shard I/N only shard I of a deterministic, token-balanced \
        partition is scored, into a shard output that `tessera merge` combines.
        """
    )

    @Argument(help: "The reward-model checkpoint.") var checkpoint: String
    @Option(help: "NeMo-Aligner conversation JSONL.") var input: String
    @Option(help: "Where to append the annotated JSONL.") var output: String
    @Option(help: "SentencePiece model (default: the checkpoint's).") var tokenizer: String?
    @Option(help: "bf16 or fp32.") var precision: Precision = .bf16
    @Option(help: "Maximum tokens per scored string (default: the model's sequence length).") var maxLength: Int?
    @Flag(help: "Keep the end of over-long conversations (NeMo-Aligner keeps the start).") var keepEnd = false
    @Flag(help: "Add the model card's scalar reward (weights 0,0,0,0,0.3,0.74,0.46,0.47,-0.33) as \"reward\".") var scalar = false
    @Option(help: "Conversations run together (their tokens share every GEMM; no padding).") var batch = 8
    @Flag(help: "Score every turn's string from scratch instead of sharing the conversation's prefix.") var noPrefixReuse = false
    @Flag(help: "Write an error record ({\"error\": ..., \"line\": N}) for a bad line and go on, instead of stopping.") var skipBadLines = false
    @Option(help: "Worker threads (default: every core). Results do not depend on it, nor on --batch or prefix reuse.") var threads: Int?

    @Option(help: "Score only shard I of N (I from 0, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); combine the shard outputs with `tessera merge`.")
    var shard: String?
    @Option(help: "How --shard deals conversations: tokens (shards finish together) or lines (equal runs of lines).")
    var balance: String = ShardBalance.tokens.rawValue
    @Option(help: "Bound resident weights for models larger than RAM (e.g. 400G): each layer's weights are dropped once used.")
    var maxMemory: String?

    func run() throws {
        do {
            let shardSpec = try shard.map { (s) throws(TesseraError) in try ShardSpec(parsing: s) }
            let balanceMode = try ShardBalance(parsing: balance)
            let cache = MappingCache()
            let cat = try Checkpoint.open(checkpoint, cache: cache)
            let model = try Model(cat, cache: cache, kernels: try Kernels.configured(threads: threads))
            if let maxMemory {
                try model.boundWeightMemory(try parseByteSize(maxMemory, option: "--max-memory"), named: "--max-memory \(maxMemory)")
            }
            let sp = try SentencePieceModel.forScoring(path: tokenizer, catalogue: cat)
            var options = ScoringOptions(for: cat, maxLength: maxLength)
            options.precision = precision
            options.keepEnd = keepEnd
            options.scalarWeights = scalar ? SteerLMTemplate.modelCardWeights : nil
            options.prefixReuse = !noPrefixReuse
            var scoring = ScoringRun(annotator: try Annotator(model: model, tokenizer: sp, options: options))
            scoring.batch = batch
            scoring.skipBadLines = skipBadLines
            let conversations = try ConversationInput(path: input)
            var lines = conversations.lines
            var header: ShardHeader? = nil
            if let shardSpec {
                (lines, header) = try scoring.plan(conversations, shard: shardSpec, balance: balanceMode, checkpoint: try CheckpointIdentity.of(cat))
            }
            try conversations.checkNotInput(output)
            let out = try ResumableOutput(path: output)
            let bar = Progress(total: lines.count, label: "score", enabled: true)
            let start = Date()
            let s = try scoring.run(conversations, lines: lines, into: out, header: header) { n in bar.advance(n) }
            try out.close()
            bar.finish()
            let secs = Date().timeIntervalSince(start)
            StandardError.write("scored \(s.written) conversations (\(s.skipped) already in the output"
                + (s.bad > 0 ? ", \(s.bad) bad lines recorded" : "") + "), \(s.tokens) tokens in \(String(format: "%.2f", secs)) s, "
                + "\(Int(Double(s.tokens) / max(secs, 1e-9))) tokens/s\n")
        }
    }
}

struct Pairwise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy on prompt/chosen/rejected pairs with the scalar reward, counted as RewardBench does.",
        discussion: """
        A pair is won when the chosen response scores strictly above the rejected one; per subset when items \
        carry "subset". With --shard I/N --output SHARD.jsonl only shard I of the pairs is scored, one record a \
        pair; `tessera merge` of the shards writes what `pairwise --json` prints.
        """
    )

    @Argument(help: "The reward-model checkpoint.") var checkpoint: String
    @Option(help: "JSONL of {\"prompt\", \"chosen\", \"rejected\"[, \"subset\"]}.") var input: String
    @Option(help: "SentencePiece model (default: the checkpoint's).") var tokenizer: String?
    @Option(help: "bf16 or fp32.") var precision: Precision = .bf16
    @Flag(help: "Print the result as JSON.") var json = false
    @Option(help: "Score only shard I of N of the pairs (needs --output); combine the shard outputs with `tessera merge`.")
    var shard: String?
    @Option(help: "How --shard deals pairs: tokens or lines.") var balance: String = ShardBalance.tokens.rawValue
    @Option(help: "The shard output (with --shard).") var output: String?

    func run() throws {
        do {
            let cache = MappingCache()
            let cat = try Checkpoint.open(checkpoint, cache: cache)
            var options = ScoringOptions(for: cat)
            options.precision = precision
            let annotator = try Annotator(model: try Model(cat, cache: cache),
                                          tokenizer: try SentencePieceModel.forScoring(path: tokenizer, catalogue: cat), options: options)
            let file = try ConversationInput(path: input)
            if let shard { return try runShard(try ShardSpec(parsing: shard), ScoringRun(annotator: annotator), file, cat) }
            let bar = Progress(total: file.lines.count, label: "pairs", enabled: !json)
            var last = 0
            let r = try annotator.pairwise(file) { n in bar.advance(n - last); last = n }
            bar.finish()
            if json {
                try OutputSink.standardOutput.writeLine(r.json.python)
            } else {
                for s in r.subsets { try OutputSink.standardOutput.writeLine("\(s.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(s.wins)/\(s.pairs)  \(String(format: "%.3f", s.accuracy))") }
                try OutputSink.standardOutput.writeLine("overall".padding(toLength: 24, withPad: " ", startingAt: 0) + " \(r.wins)/\(r.pairs)  \(String(format: "%.3f", r.accuracy))")
            }
        }
    }

    /// Scores one shard of the pairs into `--output`.
    func runShard(_ spec: ShardSpec, _ scoring: ScoringRun, _ file: ConversationInput, _ cat: Catalogue) throws(TesseraError) {
        guard let output else { throw TesseraError(.invalidArgument, "--shard needs --output (the shard's output file)") }
        try file.checkNotInput(output)
        let (lines, header) = try scoring.plan(file, shard: spec, balance: try ShardBalance(parsing: balance), checkpoint: try CheckpointIdentity.of(cat), pairs: true)
        let out = try ResumableOutput(path: output)
        let bar = Progress(total: lines.count, label: "pairs", enabled: true)
        let s = try scoring.runPairs(file, lines: lines, into: out, header: header) { bar.advance($0) }
        try out.close()
        bar.finish()
        StandardError.write("scored \(s.written) pairs (\(s.skipped) already in the output) of shard \(spec)\n")
    }
}
