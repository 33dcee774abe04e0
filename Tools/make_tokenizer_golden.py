#!/usr/bin/env python3
"""Golden token ids from the real sentencepiece library for the Swift tokenizer tests.

Writes Tests/Fixtures/tiny/tokenizer/golden.jsonl: 10,000 strings (ASCII and unicode words,
whitespace runs, tabs, newlines, the <extra_id_N> symbols, digits, emoji, empty strings, the
SteerLM prompt template) with the ids and pieces sentencepiece 0.2.3 gives for them
(`encode(text)`: no BOS/EOS, as NeMo-Aligner tokenises).

Run: "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/make_tokenizer_golden.py
(it also needs `pip install protobuf`: sentencepiece's model_pb2, which clears the trained
models' recorded paths, imports it; the CI venv does not carry it).
"""
import json, os, random, tempfile
import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "Tests/Fixtures/tiny/tokenizer/tokenizer.model")
OUT = os.path.join(ROOT, "Tests/Fixtures/tiny/tokenizer/golden.jsonl")

WORDS = ["the", "model", "reward", "helpful", "Assistant", "User", "System", "correctness", "Nemotron", "café",
         "naïve", "über", "日本語", "中文", "한국어", "Ελληνικά", "русский", "עברית", "العربية", "🙂", "🚀", "👍🏽",
         "x²", "½", "ﬁ", "Å", "e\u0301", "\u200b", "\u00a0", "tab\there", "line\nbreak", "3.14159", "2024", "007",
         "<extra_id_0>", "<extra_id_1>", "<extra_id_2>", "<extra_id_3>", "<s>", "</s>", "<unk>", "<pad>", "▁", "__", "...",
         "$100", "#hashtag", "@user", "email@example.com", "https://example.com/a?b=c", "C++", "f(x) = y", "\\n"]
SEPS = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "", "\r\n", " \t "]


def main():
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    rng = random.Random(20240614)
    texts = ["", " ", "  ", "\n", "\t", "a", " a", "a ", "  leading and trailing  ",
             "<extra_id_0>System\nA chat between a curious user and an artificial intelligence assistant.\n"
             "<extra_id_1>User\nWhat is 2+2?\n<extra_id_1>Assistant\n4\n<extra_id_2>"]
    while len(texts) < 10000:
        n = rng.randint(1, 12)
        parts = []
        for _ in range(n):
            w = rng.choice(WORDS)
            if rng.random() < 0.2:
                w = "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 4)))
            if rng.random() < 0.1:
                w = str(rng.randint(0, 10 ** rng.randint(1, 9)))
            parts.append(w)
            parts.append(rng.choice(SEPS))
        texts.append("".join(parts))
    with open(OUT, "w") as f:
        for t in texts:
            ids = sp.encode(t)
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(texts)} strings, sentencepiece {spm.__version__}")


def scrub_paths(model):
    """Clears the paths the trainer records in a model (its corpus and output prefix): they
    name the machine it was made on and play no part in encoding."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    with open(model, "rb") as f:
        m.ParseFromString(f.read())
    del m.trainer_spec.input[:]
    m.trainer_spec.ClearField("model_prefix")
    with open(model, "wb") as f:
        f.write(m.SerializeToString())


def train(lines, name, **options):
    """Trains Tests/Fixtures/tiny/tokenizer/NAME.model on the corpus `lines` (the three <extra_id_N>
    symbols user-defined), clears its recorded paths and returns it loaded."""
    prefix = os.path.join(ROOT, "Tests/Fixtures/tiny/tokenizer", name)
    with tempfile.TemporaryDirectory(prefix="tessera-golden-") as work:
        corpus = os.path.join(work, "corpus.txt")
        with open(corpus, "w") as f:
            f.write("\n".join(lines) + "\n")
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix,
                                       user_defined_symbols=["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"], minloglevel=2, **options)
    os.remove(prefix + ".vocab")
    scrub_paths(prefix + ".model")
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def nfkc():
    """A small BPE model with the nmt_nfkc normaliser (precompiled character map) and 2,000
    golden strings: Tests/Fixtures/tiny/tokenizer/nfkc.model and nfkc-golden.jsonl."""
    rng = random.Random(7)
    words = ["the", "model", "café", "ﬁne", "Ｆｕｌｌｗｉｄｔｈ", "①", "㌀", "x²", "½", "Å", "e\u0301", "über", "日本語",
             "한국어", "  spaces  ", "tab\there", "ｶﾀｶﾅ", "™", "…", "“quotes”", "naïve", "Straße", "ǅ", "Ⅻ", "\u00a0nbsp",
             "\u3000ideo"]
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(3000)]
    sp = train(corpus, "nfkc", vocab_size=400, model_type="bpe", byte_fallback=True, normalization_rule_name="nmt_nfkc",
               character_coverage=1.0)
    allw = words + ["<extra_id_1>User", "A\u030a", "ｱｲｳ", "ＡＢＣ１２３", "\u2028", "fi ﬂ ﬃ", "１２３４５"]
    with open(os.path.join(ROOT, "Tests/Fixtures/tiny/tokenizer/nfkc-golden.jsonl"), "w") as f:
        for _ in range(2000):
            t = rng.choice([" ", "", "\n", "  "]).join(rng.choice(allw) for _ in range(rng.randint(0, 8)))
            f.write(json.dumps({"text": t, "ids": sp.encode(t)}, ensure_ascii=False) + "\n")


def unigram():
    """sentencepiece's defaults (unigram, nmt_nfkc, no byte fallback) and 10,000 golden
    strings with ids and decoded text: unigram.model and unigram-golden.jsonl."""
    rng = random.Random(11)
    words = ["the", "model", "reward", "helpful", "answer", "question", "café", "naïve", "日本語", "中文", "🙂", "2024", "x²",
             "½", "ﬁne", "Ｆｕｌｌ", "tab\there", "  spaces  ", "über", "Straße", "<extra_id_1>", "hello", "world", "unigram",
             "tokenizer", "sentence", "piece", "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda",
             "omicron", "sigma", "upsilon", "omega", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "pack", "my",
             "box", "with", "five", "dozen", "liquor", "jugs"]
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(8000)]
    sp = train(corpus, "unigram", vocab_size=150, hard_vocab_limit=False)
    allw = words + ["ＡＢＣ１２３", "A\u030a", "ｱｲｳ", "\u2028", "Ω", "€", "…"]
    with open(os.path.join(ROOT, "Tests/Fixtures/tiny/tokenizer/unigram-golden.jsonl"), "w") as f:
        for _ in range(10000):
            t = rng.choice([" ", "", "\n", "  ", "\t"]).join(rng.choice(allw) for _ in range(rng.randint(0, 10)))
            if rng.random() < 0.1:
                t = "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 8)))
            ids = sp.encode(t)
            f.write(json.dumps({"text": t, "ids": ids, "decoded": sp.decode(ids)}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
    nfkc()
    unigram()
