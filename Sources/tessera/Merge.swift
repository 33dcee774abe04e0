import ArgumentParser
import Foundation
import Platform
import Scoring

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine the outputs of `score --shard I/N` into the output a single-host `score` writes.",
        discussion: """
        Checks that the shard outputs are complete and belong together (every input line exactly \
        once; every shard of one partition of this input, made with one checkpoint and the same \
        options) and names the shard that is missing, duplicated, of another input, stale or \
        incomplete (exit 2). Writes OUT atomically and a manifest (Schemas/merge-manifest.schema.json).
        """
    )

    @Option(help: "The conversation JSONL the shards scored.") var input: String
    @Option(help: "Where to write the merged JSONL.") var output: String
    @Option(help: "Where to write the manifest (default: OUTPUT.manifest.json).") var manifest: String?
    @Flag(help: "Replace an existing output.") var force = false
    @Argument(help: "The shard outputs, in any order.") var shards: [String] = []

    func run() throws {
        do {
            let start = Date()
            let merge = try ShardMerge(input: try ConversationInput(path: input), shardFiles: shards)
            let manifestPath = try merge.write(output: output, force: force, manifest: manifest)
            if let warning = merge.mixedKernelPathsWarning { StandardError.write("tessera: warning: \(warning)\n") }
            let lines = merge.input.lines.count
            StandardError.write("merged \(merge.shards.count) shards, \(lines) records in "
                + "\(String(format: "%.2f", Date().timeIntervalSince(start))) s; manifest \(manifestPath)\n")
        }
    }
}
