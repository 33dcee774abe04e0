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
    /// What was done to the vocabulary rows: unchanged, padded, dropped-zero-padding, kept or truncated.
    public let vocabularyAction: String
    /// Source rows beyond the target's vocabulary that must be all zero to be dropped
    /// (checked by ``checkDroppedRows(streamer:)`` before anything is written).
    public let droppedRows: Range<Int>?

    public init(_ source: Catalogue, layout: TargetLayout, cache: MappingCache) throws(TesseraError) {
        guard let config = source.config else {
            throw TesseraError(.missing, "the checkpoint has no model_config.yaml; a target layout cannot be checked without it",
                               file: source.container.displayPath)
        }
        try layout.validate(config)
        self.source = source
        self.layout = layout
        self.stages = try layout.stages(layers: config.numLayers)
        var notes = layout.notes(config)
        let sourceRows = source.tensor("embedding.word_embeddings.weight")?.shape[0] ?? config.paddedVocabSize ?? 0
        let vocab = try Self.vocabularyRows(source, config: config, layout: layout, sourceRows: sourceRows, cache: cache)
        let targetRows = vocab.rows
        notes += vocab.notes
        if layout.format != .hf, let missing = Self.missingTokenizer(source) { notes.append(missing) }
        vocabularyAction = vocab.action
        droppedRows = targetRows < sourceRows && layout.vocabularyRows == .dropZeroPadding ? targetRows..<sourceRows : nil
        guard targetRows % layout.tp == 0 else {
            throw TesseraError(.invalidArgument, "tensor-parallel size \(layout.tp) does not divide the padded vocabulary \(targetRows)")
        }
        // Padding adds fewer rows than one multiple; an override may add what it names. More
        // zero rows than the source's own and a multiple's is a config that does not describe
        // this checkpoint (override_vocab_size 10^12 had convert writing terabytes of zeros).
        let multiple = config.makeVocabSizeDivisibleBy * layout.tp
        guard targetRows - sourceRows <= max(sourceRows, multiple) else {
            let vocabulary = source.trueVocabulary(cache: cache).map { "\($0)" } ?? "unknown"
            throw TesseraError(.inconsistent, "the vocabulary would grow from the embedding's \(sourceRows) rows to \(targetRows) "
                + "(true vocabulary \(vocabulary): override_vocab_size \(config.overrideVocabSize.map(String.init) ?? "not set"), "
                + "else the tokenizer's; make_vocab_size_divisible_by \(config.makeVocabSizeDivisibleBy) x TP \(layout.tp)): more zero "
                + "rows than the checkpoint's own; the config or tokenizer does not describe this checkpoint", file: source.container.displayPath)
        }
        var cfg = config
        cfg.paddedVocabSize = targetRows
        if cfg.overrideVocabSize != nil { cfg.overrideVocabSize = targetRows }
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
            // Every format's writer splits the tensor this way: refused here, named, before anything is written.
            do { _ = try rule.parts(global: shape, tp: layout.tp, rank: 0) } catch { throw error.forTensor(t.name) }
            tensors.append(TargetTensor(source: t, shape: shape, rule: rule))
        }
        self.tensors = tensors
        self.notes = notes
    }

    /// A note when the output will lack the tokenizer artifact NeMo needs to load it: a Hugging
    /// Face folder without `tokenizer.model`, or a config naming an artifact the source lacks.
    static func missingTokenizer(_ source: Catalogue) -> String? {
        let named = source.config?.tokenizerModel
        if source.format == .hf, named == nil {
            return "the Hugging Face folder has no tokenizer.model, so the output carries no tokenizer artifact; NeMo needs one to load it"
        }
        guard let named, !source.container.isFile(named) else { return nil }
        return "the config names the tokenizer artifact '\(named)', which the source lacks, so the output lacks it too; NeMo needs it to load the checkpoint"
    }

    /// The target's vocabulary rows, what that does, and notes saying so. NeMo pads the
    /// tokenizer's vocabulary to a multiple of `make_vocab_size_divisible_by` x TP, but builds
    /// exactly `override_vocab_size` rows when the config sets it (NeMo-Aligner's
    /// `vocab_size=cfg.get("override_vocab_size", padded_vocab_size)`); rows the source has beyond
    /// that are dropped only as `layout.vocabularyRows` allows.
    static func vocabularyRows(_ source: Catalogue, config: ModelConfig, layout: TargetLayout, sourceRows: Int,
                               cache: MappingCache) throws(TesseraError) -> (rows: Int, action: String, notes: [String]) {
        if let o = config.overrideVocabSize {
            return try overriddenRows(o, tokenizer: source.tokenizerVocabulary(cache: cache), layout: layout, sourceRows: sourceRows)
        }
        let multiple = config.makeVocabSizeDivisibleBy * layout.tp
        let roundedUp = (sourceRows + multiple - 1) / multiple * multiple
        guard let trueVocab = source.tokenizerVocabulary(cache: cache) else {
            // No tokenizer and no override: the source's rows, padded up for the new layout.
            return roundedUp > sourceRows
                ? (roundedUp, "padded", ["padded vocabulary \(sourceRows) -> \(roundedUp): adding \(roundedUp - sourceRows) zero rows"])
                : (sourceRows, "unchanged", [])
        }
        var notes: [String] = []
        let padded = config.paddedVocab(trueVocab: trueVocab, tp: layout.tp)
        if padded >= sourceRows || layout.vocabularyRows == .keep {
            let rows = max(padded, roundedUp)
            if rows > sourceRows { notes.append("padded vocabulary \(sourceRows) -> \(rows): adding \(rows - sourceRows) zero rows") }
            let action = rows > sourceRows ? "padded" : (padded < sourceRows ? "kept" : "unchanged")
            if action == "kept" { notes.append("kept all \(sourceRows) vocabulary rows (beyond the true vocabulary \(trueVocab), as asked)") }
            return (rows, action, notes)
        }
        return (padded, dropAction(layout), [dropNote(sourceRows, to: padded, beyond: "the true vocabulary \(trueVocab)", layout)])
    }

    /// Rows under `override_vocab_size` `o`: exactly `o` at every TP (zero rows added when the
    /// source has fewer), which TP must divide; with `--vocab-rows keep` every source row, rounded
    /// up to a multiple of TP, the written config's override then saying so.
    static func overriddenRows(_ o: Int, tokenizer: Int?, layout: TargetLayout, sourceRows: Int) throws(TesseraError)
        -> (rows: Int, action: String, notes: [String]) {
        var notes: [String] = []
        if let tokenizer, tokenizer != o {
            notes.append("override_vocab_size \(o) is the vocabulary NeMo builds; the tokenizer artifact has \(tokenizer) pieces")
        }
        var rows = o, action = "unchanged"
        if sourceRows > o, layout.vocabularyRows == .keep {
            rows = (sourceRows + layout.tp - 1) / layout.tp * layout.tp
            action = "kept"
            notes.append("kept all \(sourceRows) vocabulary rows (beyond override_vocab_size \(o), as asked)"
                         + (rows > sourceRows ? ", adding \(rows - sourceRows) zero rows" : "") + "; the config's override_vocab_size is now \(rows)")
        } else if sourceRows > o {
            action = dropAction(layout)
            notes.append(dropNote(sourceRows, to: o, beyond: "override_vocab_size \(o)", layout))
        } else if sourceRows < o {
            action = "padded"
            notes.append("vocabulary \(sourceRows) -> \(o) rows (override_vocab_size): adding \(o - sourceRows) zero rows")
        }
        guard rows % layout.tp == 0 else {
            throw TesseraError(.invalidArgument,
                               "tensor-parallel size \(layout.tp) does not divide override_vocab_size \(o): NeMo builds exactly that many "
                               + "vocabulary rows and splits them evenly over the tensor-parallel ranks")
        }
        return (rows, action, notes)
    }

    static func dropAction(_ layout: TargetLayout) -> String {
        layout.vocabularyRows == .truncate ? "truncated" : "dropped-zero-padding"
    }

    static func dropNote(_ sourceRows: Int, to rows: Int, beyond: String, _ layout: TargetLayout) -> String {
        "vocabulary \(sourceRows) -> \(rows) rows: dropping \(sourceRows - rows) rows beyond \(beyond)"
            + (layout.vocabularyRows == .truncate ? " (truncated as asked, whatever they hold)" : " (all zero: NeMo's padding)")
    }

    /// Refuses a conversion that would drop vocabulary rows holding weights: every row of
    /// ``droppedRows`` of the embedding and output layer must be zero. Reads those rows once
    /// (holes are not read), before anything is written.
    public func checkDroppedRows(streamer: TensorStreamer, cache: MappingCache) throws(TesseraError) {
        guard let dropped = droppedRows else { return }
        for t in source.tensors where PartitionRule.rule(for: t.name, gated: config.gatedLinearUnit)?.role == .vocabParallel {
            guard t.shape.count >= 1, t.shape[0] > dropped.lowerBound else { continue }
            let rowBytes = t.shape.dropFirst().reduce(1, *) * t.dtype.size
            var region = Box(offset: t.shape.map { _ in 0 }, shape: t.shape)
            region.offset[0] = dropped.lowerBound
            region.shape[0] = t.shape[0] - dropped.lowerBound
            var at = 0
            var firstNonZero: Int?
            try streamer.forEachRun(of: t, region: region) { (run) throws(TesseraError) in
                defer { at += run.count }
                guard firstNonZero == nil, !ZeroPages.isZero(run) else { return }
                let bytes = run.bindMemory(to: UInt8.self)
                let i = bytes.firstIndex { $0 != 0 } ?? 0
                firstNonZero = dropped.lowerBound + (at + i) / max(rowBytes, 1)
            }
            if let row = firstNonZero {
                let tokenizer = source.tokenizerVocabulary(cache: cache).map(String.init) ?? "none"
                let override = config.overrideVocabSize.map(String.init) ?? "not set"
                throw TesseraError(.inconsistent,
                    "row \(row) holds non-zero weights but lies beyond the true vocabulary (rows \(dropped.lowerBound)..<\(t.shape[0]) would be dropped; "
                    + "tokenizer artifact: \(tokenizer) pieces, override_vocab_size: \(override)); "
                    + "use --vocab-rows keep to keep every row, or --vocab-rows truncate to drop them anyway",
                    file: source.container.displayPath, tensor: t.name)
            }
        }
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
