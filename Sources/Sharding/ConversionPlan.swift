import Checkpoints
import Platform

/// A tensor as the target layout sees it: the source tensor, possibly with its
/// vocabulary rows re-padded.
public struct TargetTensor: Sendable {
    public var source: GlobalTensor
    /// Global shape in the target (differs from the source only for re-padded vocab tensors).
    public var shape: [Int]
    public var rule: PartitionRule
    public var name: String { source.name }
    public var dtype: DType { source.dtype }
}

/// One rank's local tensor: the global regions that make it, in local order.
public struct LocalTensor: Sendable {
    public var key: String
    public var tensor: TargetTensor
    public var parts: [Box]
    public var localShape: [Int]
    public var byteCount: Int { localShape.reduce(1, *) * tensor.dtype.size }
}

/// What goes where: for a target layout, every rank's tensors cut from the catalogue's
/// global tensors by the partition-rule table.
public struct ConversionPlan: Sendable {
    public let source: Catalogue
    public let layout: TargetLayout
    public let config: ModelConfig
    /// Tensors in canonical order, with target shapes.
    public let tensors: [TargetTensor]
    /// Layers per pipeline stage.
    public let stages: [Int]
    /// Things the user should know (vocabulary padding changed, rows dropped).
    public let notes: [String]

    public init(_ source: Catalogue, layout: TargetLayout, cache: MappingCache) throws(TesseraError) {
        guard let config = source.config else {
            throw TesseraError(.missing, "the checkpoint has no model_config.yaml; a target layout cannot be checked without it",
                               file: source.container.displayPath)
        }
        try layout.validate(config)
        self.source = source
        self.layout = layout
        self.stages = try layout.stages(layers: config.numLayers)
        var notes: [String] = []
        // Vocabulary padding follows NeMo: ceil(V / (divisor * TP)) * (divisor * TP).
        let sourceRows = source.tensor("embedding.word_embeddings.weight")?.shape[0] ?? config.paddedVocabSize ?? 0
        var targetRows = sourceRows
        let multiple = config.makeVocabSizeDivisibleBy * layout.tp
        if let trueVocab = source.trueVocabulary(cache: cache) {
            targetRows = config.paddedVocab(trueVocab: trueVocab, tp: layout.tp)
            if targetRows < sourceRows {
                notes.append("padded vocabulary \(sourceRows) -> \(targetRows): dropping \(sourceRows - targetRows) padding rows (true vocabulary \(trueVocab))")
            }
        } else if sourceRows % multiple != 0 {
            targetRows = (sourceRows + multiple - 1) / multiple * multiple
        }
        if targetRows > sourceRows {
            notes.append("padded vocabulary \(sourceRows) -> \(targetRows): adding \(targetRows - sourceRows) zero rows")
        }
        guard targetRows % layout.tp == 0 else {
            throw TesseraError(.invalidArgument, "tensor-parallel size \(layout.tp) does not divide the padded vocabulary \(targetRows)")
        }
        var cfg = config
        cfg.paddedVocabSize = targetRows
        cfg.tensorModelParallelSize = layout.tp
        cfg.pipelineModelParallelSize = layout.pp
        self.config = cfg
        var tensors: [TargetTensor] = []
        for t in source.tensors {
            guard let rule = PartitionRule.rule(for: t.name, gated: config.gatedLinearUnit) else {
                throw TesseraError(.unsupported, "no partition rule for this tensor", tensor: t.name)
            }
            var shape = t.shape
            if rule.role == .vocabParallel { shape[0] = targetRows }
            tensors.append(TargetTensor(source: t, shape: shape, rule: rule))
        }
        self.tensors = tensors
        self.notes = notes
    }

    /// First global layer of each stage.
    public var stageOffsets: [Int] {
        var out: [Int] = [], acc = 0
        for s in stages { out.append(acc); acc += s }
        return out
    }

    /// The pipeline stage holding a tensor placed at `placement`.
    public func stage(of placement: StagePlacement) -> Int {
        switch placement {
        case .first: return 0
        case .last: return layout.pp - 1
        case .layer(let l):
            let offs = stageOffsets
            return (offs.lastIndex { $0 <= l }) ?? 0
        }
    }

    /// The local tensors of rank (`tp`, `pp`) in canonical order, keyed as a legacy state dict.
    public func rankTensors(tp: Int, pp: Int) throws(TesseraError) -> [LocalTensor] {
        var out: [LocalTensor] = []
        for t in tensors where stage(of: t.rule.placement) == pp {
            let parts: [ShardPart]
            do { parts = try t.rule.parts(global: t.shape, tp: layout.tp, rank: tp) } catch { throw error.forTensor(t.name) }
            var local = parts[0].shape
            for p in parts.dropFirst() { local[0] += p.shape[0] }
            out.append(LocalTensor(key: "model." + legacyName(t.name, pp: pp), tensor: t,
                                   parts: parts.map { Box(offset: $0.globalOffset, shape: $0.shape) }, localShape: local))
        }
        return out
    }

    /// A canonical name as stage `pp`'s legacy file spells it (local layer number, chosen spelling).
    public func legacyName(_ name: String, pp: Int) -> String {
        var n = name
        if let (l, suffix) = CanonicalName.layerParts(name) { n = "decoder.layers.\(l - stageOffsets[pp]).\(suffix)" }
        return CanonicalName.spelled(n, layout.spelling)
    }

    /// Total bytes the target holds.
    public var byteCount: Int { tensors.reduce(0) { $0 + $1.shape.reduce(1, *) * $1.dtype.size } }
}
