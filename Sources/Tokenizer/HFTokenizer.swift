import Platform

/// A SentencePiece BPE model as Hugging Face `tokenizers` files (`tokenizer.json`,
/// `tokenizer_config.json`), so `AutoTokenizer` loads it without sentencepiece or protobuf
/// and gives sentencepiece's ids.
///
/// How each sentencepiece rule is expressed: `remove_extra_whitespaces` as normalisers that
/// drop leading spaces, collapse runs of spaces and (after escaping and the dummy prefix)
/// drop trailing `▁`; the dummy prefix as `Prepend`; user-defined symbols as an isolating
/// `Split` pre-tokenizer on the normalised text (sentencepiece matches them there) with
/// `ignore_merges`, so a symbol is its own piece; BPE merges as every split of a normal
/// piece into two normal pieces, ranked by the merged piece's id (sentencepiece's score
/// order); byte fallback as `byte_fallback`. Control pieces are special tokens that text
/// never matches (`split_special_tokens`), as in sentencepiece.
public enum HFTokenizer {
    /// The two files for `model`, or nil when it is not a BPE model.
    public static func files(_ model: SentencePieceModel) -> (tokenizer: String, config: String)? {
        guard model.modelType == .bpe else { return nil }
        let pieces = model.pieces
        var ids: [String: Int] = [:]
        for (i, p) in pieces.enumerated() where ids[p.text] == nil { ids[p.text] = i }
        func q(_ s: String) -> String { JSONText.string(s) }
        var merges: [(Int, Int, Int)] = []
        for (i, p) in pieces.enumerated() where p.type == .normal {
            let chars = Array(p.text.unicodeScalars)
            guard chars.count > 1 else { continue }
            func text(_ s: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(s)) }
            for k in 1..<chars.count {
                if let l = ids[text(chars[..<k])], let r = ids[text(chars[k...])],
                   pieces[l].type == .normal, pieces[r].type == .normal {
                    merges.append((i, l, r))
                }
            }
        }
        merges.sort { ($0.0, $0.1, $0.2) < ($1.0, $1.1, $1.2) }
        let added = pieces.enumerated().filter { $0.element.type == .control || $0.element.type == .unknown }.map {
            "{\"id\":\($0.offset),\"content\":\(q($0.element.text)),\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}"
        }
        var norms: [String] = []
        func replace(_ kind: String, _ pattern: String, _ with: String) -> String {
            "{\"type\":\"Replace\",\"pattern\":{\"\(kind)\":\(q(pattern))},\"content\":\(q(with))}"
        }
        if model.removeExtraWhitespaces { norms += [replace("Regex", " {2,}", " "), replace("Regex", "\\A ", "")] }
        if model.escapeWhitespaces { norms.append(replace("String", " ", "\u{2581}")) }
        if model.addDummyPrefix { norms.append("{\"type\":\"Prepend\",\"prepend\":\"\u{2581}\"}") }
        if model.removeExtraWhitespaces { norms.append(replace("Regex", "\u{2581}+\\z", "")) }
        let user = pieces.filter { $0.type == .userDefined }.map { regexEscaped($0.text) }
        let pre = user.isEmpty ? "null"
            : "{\"type\":\"Split\",\"pattern\":{\"Regex\":\(q(user.joined(separator: "|")))},\"behavior\":\"Isolated\",\"invert\":false}"
        let vocab = pieces.indices.filter { ids[pieces[$0].text] == $0 }.map { "\(q(pieces[$0].text)):\($0)" }
        let unk = pieces.indices.contains(model.unkID) ? q(pieces[model.unkID].text) : "null"
        let json = "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[\(added.joined(separator: ","))],"
            + "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[\(norms.joined(separator: ","))]},"
            + "\"pre_tokenizer\":\(pre),\"post_processor\":null,"
            + "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[\(replace("String", "\u{2581}", " ")),{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
            + "{\"type\":\"Strip\",\"content\":\" \",\"start\":\(model.addDummyPrefix ? 1 : 0),\"stop\":0}]},"
            + "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\(unk),\"continuing_subword_prefix\":null,"
            + "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":\(model.byteFallback),\"ignore_merges\":true,"
            + "\"vocab\":{\(vocab.joined(separator: ","))},"
            + "\"merges\":[\(merges.map { "[\(q(pieces[$0.1].text)),\(q(pieces[$0.2].text))]" }.joined(separator: ","))]}}\n"
        var config = ["\"tokenizer_class\": \"PreTrainedTokenizerFast\"", "\"split_special_tokens\": true",
                      "\"clean_up_tokenization_spaces\": false", "\"add_bos_token\": false", "\"add_eos_token\": false"]
        for (key, piece) in [("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"), ("unk_token", "<unk>")]
            where ids[piece] != nil { config.append("\(q(key)): \(q(piece))") }
        return (json, "{\n  " + config.joined(separator: ",\n  ") + "\n}\n")
    }

    /// The ids of `<s>`, `</s>` and `<pad>`, when the model has them.
    public static func specialIDs(_ model: SentencePieceModel) -> (bos: Int?, eos: Int?, pad: Int?) {
        func find(_ s: String) -> Int? { model.pieces.firstIndex { $0.text == s && $0.type == .control } }
        return (find("<s>"), find("</s>"), find("<pad>"))
    }

    /// `s` with the characters regular expressions treat specially escaped.
    static func regexEscaped(_ s: String) -> String {
        var out = ""
        for ch in s {
            if "\\^$.|?*+()[]{}".contains(ch) { out.append("\\") }
            out.append(ch)
        }
        return out
    }
}
