import Checkpoints
import Platform
import Tokenizer

extension SentencePieceModel {
    /// The tokenizer to score with: the `.model` file at `path` when one is given, otherwise
    /// the one `catalogue` carries (an error naming the checkpoint when it carries none).
    public static func forScoring(path: String?, catalogue: Catalogue?) throws(TesseraError) -> SentencePieceModel {
        if let path { return try SentencePieceModel(path: path) }
        guard let c = catalogue, let name = c.config?.tokenizerModel, c.container.isFile(name) else {
            throw TesseraError(.missing, "the checkpoint carries no tokenizer; pass --tokenizer", file: catalogue?.container.displayPath)
        }
        return try SentencePieceModel(bytes: try c.container.read(name), file: c.container.describe(name))
    }
}

extension ScoringOptions {
    /// The options for scoring with the model of `catalogue`: inputs cut to `maxLength`
    /// tokens, by default the model's sequence length (4096 when its config does not say).
    public init(for catalogue: Catalogue, maxLength: Int? = nil) {
        self.init(maxLength: maxLength ?? catalogue.config?.seqLength ?? 4096)
    }
}
