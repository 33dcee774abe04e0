#!/usr/bin/env python3
"""Benchmarks for the tokenizer and scoring (issue: tokenizer and offline scoring).

1. Tokenizer: `tessera tokenize --input` against the sentencepiece package encoding the same
   texts (the fixture tokenizer, or --tokenizer/--texts), ids compared, throughput in MB/s of
   text on one thread and on two; --tokenizer-only stops here.
2. Scoring on the engine benchmark model (hidden 2048, 24 layers, bf16; bench_reshard.py's
   checkpoint, with the fixture tokenizer): 4-turn conversations through `tessera score`
   (end-to-end tokens/s, against `tessera forward --input` on the same conversations), and the
   speed-up of prefix reuse over scoring each turn's string from scratch (--no-prefix-reuse).
"""
import json, os, random, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402

TOK = os.path.join(benchkit.ROOT, "Tests/Fixtures/tiny/tokenizer/tokenizer.model")


def write_conversations(path, count, rng, words):
    """`count` 4-turn conversations of random words, every assistant turn scored, as JSONL."""
    with open(path, "w") as f:
        for _ in range(count):
            turns = []
            for _ in range(4):
                turns.append({"value": " ".join(rng.choice(words) for _ in range(rng.randint(10, 30))), "from": "User", "label": None})
                turns.append({"value": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60))), "from": "Assistant", "label": "x"})
            f.write(json.dumps({"conversations": turns, "mask": "User"}) + "\n")


def main():
    ap = benchkit.arguments()
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--tokenizer-only", action="store_true", help="stop after the tokenizer benchmark (section 1)")
    ap.add_argument("--tokenizer", default=TOK, help="SentencePiece model for section 1 (default: the fixture's)")
    ap.add_argument("--texts", help="JSONL of texts for section 1 (default: 20,000 generated ones)")
    a = ap.parse_args()
    benchkit.start(a, "bench-scoring")
    rng = random.Random(1)
    words = ["the", "model", "reward", "helpful", "answer", "question", "café", "日本語", "🙂", "2024", "x²", "Assistant"]

    # 1. Tokenizer. Best of three runs of each (the machine is shared and noisy).
    import sentencepiece as spm
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(20000)]
    if a.texts:
        path = a.texts
        texts = [json.loads(l) for l in open(path) if l.strip()]
    else:
        path = os.path.join(a.work, "texts.jsonl")
        with open(path, "w") as f:
            for t in texts:
                f.write(json.dumps(t) + "\n")
    mb = sum(len(t.encode()) for t in texts) / 1e6
    sp = spm.SentencePieceProcessor(model_file=a.tokenizer)

    def best(f):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            r = f()
            times.append(time.perf_counter() - t)
        return min(times), r

    t_sp1, ref = best(lambda: sp.encode(texts, num_threads=1))
    t_sp, _ = best(lambda: sp.encode(texts))
    tok = [a.tessera, "tokenize", "--tokenizer", a.tokenizer, "--input", path]
    t_ts, r = best(lambda: subprocess.run(tok + ["--json"], capture_output=True, text=True, check=True))
    got = [json.loads(l)["ids"] for l in r.stdout.splitlines()]

    def encode_only(threads):
        runs = [subprocess.run(tok + ["--benchmark", "--threads", str(threads)], capture_output=True, text=True, check=True)
                for _ in range(3)]
        return max(float(b.stderr.strip().split()[-2]) for b in runs)

    one, two = encode_only(1), encode_only(2)
    print(f"tokenizer: {len(texts)} texts, {mb:.1f} MB, {os.path.basename(a.tokenizer)}; ids equal: {got == ref}")
    print(f"  sentencepiece (Python, encode of the list): {mb / t_sp1:.1f} MB/s on 1 thread, {mb / t_sp:.1f} MB/s on its default threads")
    print(f"  tessera encode only: {one:.1f} MB/s on 1 thread = {one / (mb / t_sp1):.2f}x / {one / (mb / t_sp):.2f}x; "
          f"{two:.1f} MB/s on 2 threads")
    print(f"  tessera whole process with JSON in and out (2 threads): {mb / t_ts:.1f} MB/s")
    if a.tokenizer_only:
        return

    # 2. Scoring.
    src, _ = benchkit.reshard_source(a.work)
    conv_path = os.path.join(a.work, "conversations.jsonl")
    write_conversations(conv_path, a.conversations, rng, words)
    # Best of two runs for scoring with prefix reuse and for the forward pass below (run to run
    # variation on this machine is 10-15%); one run of the much longer from-scratch scoring.
    results = {}
    for label, extra, runs in (("prefix reuse", [], 2), ("each turn from scratch", ["--no-prefix-reuse"], 1)):
        out = os.path.join(a.work, "scored.jsonl")
        for _ in range(runs):
            if os.path.exists(out):
                os.remove(out)
            dt, rss = benchkit.timed([a.tessera, "score", src, "--input", conv_path, "--output", out, "--tokenizer", TOK,
                                      "--max-length", "4096", "--batch", "8"] + extra)[:2]
            lines = [json.loads(l) for l in open(out)]
            if label not in results or dt < results[label][0]:
                results[label] = (dt, rss, lines)
    # The engine alone on the same conversations' tokens: one batched forward of every
    # conversation's whole text (what the prefill computes), in one process like the scoring.
    sp_fixture = spm.SentencePieceProcessor(model_file=TOK)
    seqs = []
    for obj in results["prefix reuse"][2]:
        text = "<extra_id_0>System\nA chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.\n"
        for turn in obj["conversations"]:
            text += ("<extra_id_1>User\n" if turn["from"] == "User" else "<extra_id_1>Assistant\n") + turn["value"] + "\n"
        seqs.append(sp_fixture.encode(text))
    sp_tokens = sum(len(s) for s in seqs)
    seq_path = os.path.join(a.work, "conversation-ids.jsonl")
    with open(seq_path, "w") as f:
        for s in seqs:
            f.write(json.dumps(s) + "\n")
    t_fwd = min(benchkit.timed([a.tessera, "forward", src, "--input", seq_path])[0] for _ in range(2))
    dt, rss, lines = results["prefix reuse"]
    dt2 = results["each turn from scratch"][0]
    same = all(t1.get("label") == t2.get("label") for o1, o2 in zip(lines, results["each turn from scratch"][2])
               for t1, t2 in zip(o1["conversations"], o2["conversations"]))
    print(f"scoring: {a.conversations} conversations x 4 scored turns, {sp_tokens} conversation tokens")
    print(f"  prefix reuse: {dt:.2f} s, {sp_tokens / dt:.0f} tokens/s end to end, peak RSS {rss:.0f} MiB")
    print(f"  each turn from scratch: {dt2:.2f} s; prefix reuse speed-up {dt2 / dt:.2f}x; labels equal: {same}")
    print(f"  engine forward of the same conversations (one batch, `tessera forward --input`): {t_fwd:.2f} s, "
          f"{sp_tokens / t_fwd:.0f} tokens/s; scoring / forward throughput {t_fwd / dt:.2f}")


if __name__ == "__main__":
    main()
