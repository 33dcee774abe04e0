import Platform

/// Facts read from a SentencePiece `.model` file (a `ModelProto`) without a protobuf library.
public enum SentencePieceInfo {
    /// Number of pieces: the repeated field 1 of `ModelProto`.
    public static func vocabularySize(_ bytes: [UInt8]) throws(TesseraError) -> Int {
        var pos = 0, count = 0
        func varint() throws(TesseraError) -> Int {
            var v = 0, shift = 0
            while true {
                guard pos < bytes.count, shift < 64 else { throw TesseraError(.corrupt, "truncated SentencePiece model") }
                let b = bytes[pos]; pos += 1
                v |= Int(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
        }
        while pos < bytes.count {
            let key = try varint()
            switch key & 7 {
            case 0: _ = try varint()
            case 1: pos += 8
            case 2:
                let n = try varint()
                guard n >= 0, n <= bytes.count - pos else { throw TesseraError(.corrupt, "truncated SentencePiece model") }
                pos += n
                if key >> 3 == 1 { count += 1 }
            case 5: pos += 4
            default: throw TesseraError(.corrupt, "not a SentencePiece model (wire type \(key & 7))")
            }
        }
        guard pos == bytes.count else { throw TesseraError(.corrupt, "truncated SentencePiece model") }
        return count
    }
}

extension Catalogue {
    /// The size of the tokenizer artifact's vocabulary, when the checkpoint carries one.
    public func tokenizerVocabulary(cache: MappingCache) -> Int? {
        guard let name = config?.tokenizerModel, container.isFile(name),
              let bytes = try? container.read(name) else { return nil }
        return try? SentencePieceInfo.vocabularySize(bytes)
    }

    /// The vocabulary rows that hold the model's tokens: `override_vocab_size` when the config
    /// sets it (the exact rows NeMo builds), otherwise the tokenizer's size (nil when neither is
    /// known).
    public func trueVocabulary(cache: MappingCache) -> Int? {
        config?.overrideVocabSize ?? tokenizerVocabulary(cache: cache)
    }
}
