import Checkpoints
import Platform

extension TargetLayout {
    /// The layout a conversion of `source` writes when only part of it is asked for: `tp`,
    /// `pp`, `spelling` and `stageLayers` where given, the source's own otherwise (an HDF5
    /// store goes back to the layout it records, an uneven pipeline split included; keys are
    /// spelled as the source spelled them, TransformerEngine's way when it does not tell).
    /// `.hf` holds the whole model: a `tp` or `pp` other than 1 is refused.
    public init(converting source: Catalogue, tp: Int?, pp: Int?, format: OutputFormat,
                spelling: CanonicalName.Spelling?, stageLayers: [Int]?) throws(TesseraError) {
        if format == .hf, tp ?? 1 != 1 || pp ?? 1 != 1 {
            throw TesseraError(.invalidArgument, "--format hf writes the whole model (TP1/PP1); leave out --tp and --pp")
        }
        self.init(tp: tp ?? source.tp, pp: pp ?? source.pp, format: format,
                  spelling: spelling ?? source.spelling ?? .transformerEngine,
                  stageLayers: pp == nil && stageLayers == nil ? source.stageLayers : stageLayers)
    }

    /// The zstd level of an HDF5 compression spec, `zstd[:LEVEL]` (level 1 when not given,
    /// -7...22), or nil for `none` (contiguous datasets).
    public static func compressionLevel(parsing text: String) throws(TesseraError) -> Int32? {
        if text == "none" { return nil }
        let parts = text.split(separator: ":")
        guard parts.first == "zstd", parts.count <= 2, let level = parts.count == 2 ? Int32(parts[1]) : 1,
              (-7...22).contains(level) else {
            throw TesseraError(.invalidArgument, "--compression must be zstd[:LEVEL] (LEVEL -7...22) or none, not '\(text)'")
        }
        return level
    }
}
