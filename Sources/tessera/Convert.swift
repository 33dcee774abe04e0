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
        added, or padding rows dropped; the output says so. The true vocabulary is the tokenizer's \
        size; a config's override_vocab_size is instead the exact number of rows NeMo builds at \
        every TP (a TP that does not divide it is refused). Rows beyond are dropped only if all \
        zero (NeMo's padding): a row holding weights stops the conversion (exit 2) unless \
        --vocab-rows keep (keep every row) or --vocab-rows truncate (drop them anyway) says otherwise.

        Without --tp and --pp the source's layout is kept: an HDF5 store goes back to the layout \
        it records, an uneven pipeline split included.
        """
    )

    @Argument(help: "The checkpoint to read (any form `inspect` reads).")
    var source: String

    @Argument(help: "Where to write: a folder, or a .nemo file.")
    var destination: String

    @OptionGroup var layout: LayoutOptions

    @Flag(help: "Replace DST if it exists.")
    var force = false

    @Flag(help: "Print a JSON report on stdout.")
    var json = false

    func run() throws {
        let cache = MappingCache()
        let cat = try Checkpoint.open(source, cache: cache)
        let layout = try self.layout.layout(for: cat)
        let bar = Progress(total: cat.byteCount, label: "convert", enabled: !json)
        let start = Date()
        let report = try Converter.convert(cat, to: destination, layout: layout, force: force, cache: cache) {
            bar.advance($0)
        }
        bar.finish()
        let seconds = Date().timeIntervalSince(start)
        let (tp, pp, format) = (layout.tp, layout.pp, layout.format.rawValue)
        if json {
            let obj: [String: Any] = ["destination": report.destination, "bytes": report.bytesWritten,
                                      "seconds": seconds, "notes": report.notes, "vocabulary": report.vocabulary,
                                      "tp": tp, "pp": pp, "format": format]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            try OutputSink.standardOutput.writeLine(String(decoding: data, as: UTF8.self))
        } else {
            for n in report.notes { try OutputSink.standardOutput.writeLine("note: \(n)") }
            try OutputSink.standardOutput.writeLine("wrote \(report.destination): TP=\(tp) PP=\(pp) \(format), \(formatBytes(report.bytesWritten)) in "
                  + String(format: "%.2f s", seconds))
        }
    }
}

/// The target layout options of `convert`; what they leave out is the source's own.
struct LayoutOptions: ParsableArguments {
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

    /// The layout to write `source` in.
    func layout(for source: Catalogue) throws(TesseraError) -> TargetLayout {
        let keys: CanonicalName.Spelling?
        switch spelling {
        case "te": keys = .transformerEngine
        case "local": keys = .local
        case "source": keys = nil
        default: throw TesseraError(.invalidArgument, "--spelling must be te, local or source, not '\(spelling)'")
        }
        let stages = try stageLayers.map { (text) throws(TesseraError) in try parseIntegers(text, option: "--stage-layers") }
        let level = try TargetLayout.compressionLevel(parsing: compression)
        let shardBytes = try shardSize.map { (text) throws(TesseraError) in try parseByteSize(text, option: "--shard-size") }
        var layout = try TargetLayout(converting: source, tp: tp, pp: pp, format: format, spelling: keys, stageLayers: stages)
        layout.compressionLevel = level
        layout.vocabularyRows = vocabRows
        if let shardBytes { layout.shardSize = shardBytes }
        return layout
    }
}
