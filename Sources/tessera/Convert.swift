import ArgumentParser
import Checkpoints
import Foundation
import Platform
import Sharding

extension OutputFormat: ExpressibleByArgument {}
extension VocabularyRows: ExpressibleByArgument {}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reshard a checkpoint to another TP/PP layout and write it in any NeMo format or as an HDF5 store.",
        discussion: """
        Streams every byte once, straight from the source's mapped files to the destination, in a \
        few buffers of memory whatever the checkpoint's size. The output is written under a \
        temporary name and renamed into place only when complete. A DST ending in .nemo is written \
        as a tar; otherwise a folder.

        When the tensor-parallel size changes the padded vocabulary NeMo would build, zero rows are \
        added, or padding rows dropped; the output says so. The true vocabulary is the config's \
        override_vocab_size when set, otherwise the tokenizer's size. Rows beyond it are dropped only \
        if all zero (NeMo's padding): a row holding weights stops the conversion (exit 2) unless \
        --vocab-rows keep (keep every row) or --vocab-rows truncate (drop them anyway) says otherwise.

        Without --tp and --pp the source's layout is kept: an HDF5 store goes back to the layout \
        it records, an uneven pipeline split included.
        """
    )

    @Argument(help: "The checkpoint to read (any form `inspect` reads).")
    var source: String

    @Argument(help: "Where to write: a folder, or a .nemo file.")
    var destination: String

    @Option(help: "Target tensor-parallel size (default: the source's; for an HDF5 store, the layout it records).")
    var tp: Int?

    @Option(help: "Target pipeline-parallel size (default: the source's; for an HDF5 store, the layout it records).")
    var pp: Int?

    @Option(help: "Output format: nemo (legacy per-rank torch.save files), dist-zarr, dist-torch, hdf5 or hf (a Hugging Face folder for transformers' Nemotron classes).")
    var format: OutputFormat = .nemo

    @Option(help: "HDF5 compression: zstd[:LEVEL] (byte shuffle + zstd, default level 1) or none (contiguous, mappable).")
    var compression = "zstd:1"

    @Option(help: "Layer-norm key spelling of legacy output: te, local or source (as the source had it).")
    var spelling = "source"

    @Option(help: "Comma-separated layers per pipeline stage for an uneven split (e.g. 3,5).")
    var stageLayers: String?

    @Option(help: "Vocabulary rows beyond the true vocabulary: drop-zero-padding (only if all zero), keep, or truncate.")
    var vocabRows: VocabularyRows = .dropZeroPadding

    @Option(help: "Largest safetensors file of --format hf, e.g. 2G or 500M (default 5 GB = 5e9 bytes, as transformers).")
    var shardSize: String?

    @Flag(help: "Replace DST if it exists.")
    var force = false

    @Flag(help: "Print a JSON report on stdout.")
    var json = false

    /// The zstd level of `zstd[:LEVEL]`, nil for `none`.
    static func level(_ text: String) throws(TesseraError) -> Int32? {
        if text == "none" { return nil }
        let parts = text.split(separator: ":")
        guard parts.first == "zstd", parts.count <= 2, let level = parts.count == 2 ? Int32(parts[1]) : 1,
              (-7...22).contains(level) else {
            throw TesseraError(.invalidArgument, "--compression must be zstd[:LEVEL] (LEVEL -7...22) or none, not '\(text)'")
        }
        return level
    }

    func run() throws {
        do {
            let cache = MappingCache()
            let cat = try Checkpoint.open(source, cache: cache)
            let spell: CanonicalName.Spelling
            switch spelling {
            case "te": spell = .transformerEngine
            case "local": spell = .local
            case "source": spell = cat.spelling ?? .transformerEngine
            default: throw TesseraError(.invalidArgument, "--spelling must be te, local or source, not '\(spelling)'")
            }
            var stages: [Int]?
            if let stageLayers {
                let parsed = stageLayers.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard parsed.allSatisfy({ $0 != nil }) else {
                    throw TesseraError(.invalidArgument, "--stage-layers takes comma-separated integers, not '\(stageLayers)'")
                }
                stages = parsed.map { $0! }
            }
            // Without --tp/--pp the source's own layout (an HDF5 store's recorded one, its
            // uneven pipeline split included).
            let tp = self.tp ?? cat.tp, pp = self.pp ?? cat.pp
            if self.pp == nil, stages == nil { stages = cat.stageLayers }
            var layout = TargetLayout(tp: tp, pp: pp, format: format, spelling: spell, stageLayers: stages)
            layout.compressionLevel = try Self.level(compression)
            layout.vocabularyRows = vocabRows
            if let shardSize { layout.shardSize = try parseByteSize(shardSize, option: "--shard-size") }
            if format == .hf, self.tp ?? 1 != 1 || self.pp ?? 1 != 1 {
                throw TesseraError(.invalidArgument, "--format hf writes the whole model (TP1/PP1); leave out --tp and --pp")
            }
            let bar = Progress(total: cat.byteCount, label: "convert", enabled: !json)
            let start = Date()
            let report = try Converter.convert(cat, to: destination, layout: layout, force: force, cache: cache) {
                bar.advance($0)
            }
            bar.finish()
            let seconds = Date().timeIntervalSince(start)
            if json {
                let obj: [String: Any] = ["destination": report.destination, "bytes": report.bytesWritten,
                                          "seconds": seconds, "notes": report.notes, "vocabulary": report.vocabulary,
                                          "tp": tp, "pp": pp, "format": format.rawValue]
                let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
                try OutputSink.standardOutput.writeLine(String(decoding: data, as: UTF8.self))
            } else {
                for n in report.notes { try OutputSink.standardOutput.writeLine("note: \(n)") }
                try OutputSink.standardOutput.writeLine("wrote \(report.destination): TP=\(tp) PP=\(pp) \(format.rawValue), \(formatBytes(report.bytesWritten)) in "
                      + String(format: "%.2f s", seconds))
            }
        }
    }
}
