import Checkpoints
import Platform

/// The on-disk form a conversion writes.
public enum OutputFormat: String, Sendable, CaseIterable {
    /// Legacy per-rank `torch.save` files in NeMo's folder names.
    case nemo
    case distZarr = "dist-zarr"
    case distTorch = "dist-torch"
    /// The Tessera HDF5 store (one file).
    case hdf5
    /// A Hugging Face folder for transformers' `Nemotron*` classes (safetensors, TP1/PP1).
    case hf
}

/// What a conversion does with embedding and output-layer rows beyond the padded true
/// vocabulary of the target layout.
public enum VocabularyRows: String, Sendable, CaseIterable {
    /// Drop them only when every one is zero (NeMo's padding); refuse otherwise.
    case dropZeroPadding = "drop-zero-padding"
    /// Keep every row of the source; padding is only ever added.
    case keep
    /// Cut to the padded true vocabulary, whatever the dropped rows hold.
    case truncate
}

/// A tensor/pipeline-parallel layout to write, checked against the model.
public struct TargetLayout: Sendable, Equatable {
    public var tp: Int
    public var pp: Int
    public var format: OutputFormat
    /// Layer-norm key spelling of legacy files (dist checkpoints always use the TE names).
    public var spelling: CanonicalName.Spelling
    /// Layers of each pipeline stage; even split when nil.
    public var stageLayers: [Int]?
    /// zstd level of the HDF5 store; nil for uncompressed contiguous datasets.
    public var compressionLevel: Int32? = 1
    /// Rows beyond the true vocabulary: dropped only if zero (default), kept, or truncated.
    public var vocabularyRows: VocabularyRows = .dropZeroPadding
    /// Largest safetensors shard of a Hugging Face folder, in bytes (a larger tensor gets one alone).
    public var shardSize = 5_000_000_000

    public init(tp: Int, pp: Int, format: OutputFormat, spelling: CanonicalName.Spelling = .transformerEngine,
                stageLayers: [Int]? = nil) {
        self.tp = tp
        self.pp = pp
        self.format = format
        self.spelling = spelling
        self.stageLayers = stageLayers
    }

    /// Layers per stage for a model of `layers` layers, validated.
    public func stages(layers: Int) throws(TesseraError) -> [Int] {
        if let s = stageLayers {
            guard s.count == pp, s.allSatisfy({ $0 > 0 }), s.reduce(0, +) == layers else {
                throw TesseraError(.invalidArgument, "stage sizes \(s) do not split \(layers) layers into \(pp) non-empty stages")
            }
            return s
        }
        guard pp >= 1, layers % pp == 0 else {
            throw TesseraError(.invalidArgument,
                "pipeline-parallel size \(pp) does not divide the \(layers) layers (\(Self.unevenHint(layers, pp)))")
        }
        return Array(repeating: layers / pp, count: pp)
    }

    /// How `layers` could be split into `pp` stages, for a message: `--stage-layers` with an
    /// example (the remainder on the first stages), or why no split exists.
    static func unevenHint(_ layers: Int, _ pp: Int) -> String {
        guard pp >= 1, layers >= pp else { return "\(layers) layers cannot fill \(pp) stages" }
        let example = (0..<pp).map { String(layers / pp + ($0 < layers % pp ? 1 : 0)) }.joined(separator: ",")
        return "an uneven split takes --stage-layers, e.g. \(example)"
    }

    /// Checks that the model can be cut this way, as megatron-core's `TransformerConfig` and
    /// parallel linear layers require: TP divides the attention heads and the FFN size, and
    /// divides the query groups or is a multiple of them (then each rank holds part of a group's
    /// QKV rows, split like any column-parallel weight). No tensor is split along the hidden size
    /// (column-parallel weights split their outputs, row-parallel ones their inputs: heads x
    /// kv_channels, or the FFN size), so TP need not divide it; the rows a weight splits are
    /// checked per tensor (`PartitionRule`).
    public func validate(_ c: ModelConfig) throws(TesseraError) {
        guard tp >= 1, pp >= 1 else { throw TesseraError(.invalidArgument, "TP and PP must be at least 1") }
        if let problem = Self.tensorParallelProblem(tp, c) {
            let valid = (1...c.numAttentionHeads).filter { Self.tensorParallelProblem($0, c) == nil }.map(String.init)
            throw TesseraError(.invalidArgument, "\(problem) (this model takes TP \(valid.joined(separator: ", ")))")
        }
        _ = try stages(layers: c.numLayers)
    }

    /// Why tensor-parallel size `tp` cannot split the model of `c`, or nil when it can.
    static func tensorParallelProblem(_ tp: Int, _ c: ModelConfig) -> String? {
        let checks: [(String, Int)] = [("attention heads", c.numAttentionHeads), ("ffn hidden size", c.ffnHiddenSize)]
        for (what, n) in checks where n % tp != 0 { return "tensor-parallel size \(tp) does not divide the \(n) \(what)" }
        let groups = c.numQueryGroups
        guard groups % tp == 0 || tp % groups == 0 else {
            return "tensor-parallel size \(tp) neither divides the \(groups) query groups nor is a multiple of them"
        }
        return nil
    }

    /// What a reader of the written layout needs to know, beyond the layout itself.
    public func notes(_ c: ModelConfig) -> [String] {
        guard tp > c.numQueryGroups else { return [] }
        return ["TP \(tp) exceeds the \(c.numQueryGroups) query groups: each rank holds part of a group's QKV rows, "
                + "which megatron-core loads from version 0.16 (earlier versions need TP to divide the query groups)"]
    }
}
