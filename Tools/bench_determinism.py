#!/usr/bin/env python3
"""The cost of deterministic scores (issue: deterministic scores), and a check of them.

Runs a baseline `tessera` (built from the commit before the change) and the current one, in
interleaved rounds on the same machine, on the engine benchmark model (bench_forward.py's:
hidden 2048, 16 layers, bf16, TP1PP1): `forward --input` of 4 x 512 tokens in BF16 and FP32
(the forward pass's own time, `--timing`) and `score` of 4-turn conversations with prefix
reuse (whole process). Prints the medians and the ratio current / baseline per measurement
(the invariance may cost at most 5%), and checks that the current binary's scores are
byte-identical with --batch 1 and --batch 8, and that a sequence's forward outputs are
identical alone and in the batch. The machine may be shared: rounds are interleaved so both
binaries see the same load, and medians are reported.

  python Tools/bench_determinism.py --baseline /path/to/old/tessera [--tessera .build/release/tessera] [--rounds 3]
"""
import json, os, random, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402
from benchkit import make_checkpoint  # noqa: E402
from bench_scoring import TOK, write_conversations  # noqa: E402


def forward_time(binary, ckpt, batch, precision):
    r = subprocess.run([binary, "forward", ckpt, "--input", batch, "--precision", precision, "--json", "--timing"],
                       capture_output=True, text=True, check=True)
    return float(r.stderr.split("forward: ")[1].split()[0]), r.stdout


def score_time(binary, ckpt, convs, out, batch=8):
    if os.path.exists(out):
        os.remove(out)
    dt = benchkit.timed([binary, "score", ckpt, "--input", convs, "--output", out, "--tokenizer", TOK, "--max-length", "4096",
                         "--batch", str(batch)])[0]
    return dt, open(out).read()


def main():
    ap = benchkit.arguments()
    ap.add_argument("--baseline", required=True, help="the tessera binary built from the commit before the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conversations", type=int, default=4)
    a = ap.parse_args()
    benchkit.start(a, "bench-determinism", f"; machine shared: medians of {a.rounds} interleaved rounds")
    ckpt = os.path.join(a.work, "engine-h2048-l16-tp1pp1")
    make_checkpoint(ckpt, 2048, 16, 1, 1, vocab=32000)
    rng = random.Random(0)
    batch = os.path.join(a.work, "determinism-batch.jsonl")
    seqs = [[rng.randrange(32000) for _ in range(512)] for _ in range(4)]
    with open(batch, "w") as f:
        for s in seqs:
            f.write(json.dumps(s) + "\n")
    words = ["the", "model", "reward", "helpful", "answer", "question", "café", "2024", "Assistant"]
    convs = os.path.join(a.work, "determinism-conversations.jsonl")
    write_conversations(convs, a.conversations, rng, words)
    engine = subprocess.run([a.tessera, "forward", ckpt, "--tokens", "1", "--timing"], capture_output=True, text=True, check=True)
    line = engine.stderr.splitlines()[0]   # "cpu: MODEL, kernel path P, N threads"
    print("current tessera: " + line[line.find("kernel path"):] if "kernel path" in line else line)
    times = {}
    out = os.path.join(a.work, "determinism-scored.jsonl")
    for _ in range(a.rounds):
        for name, binary in (("baseline", a.baseline), ("current", a.tessera)):
            for precision in ("bf16", "fp32"):
                times.setdefault((name, "forward " + precision), []).append(forward_time(binary, ckpt, batch, precision)[0])
            times.setdefault((name, "score bf16"), []).append(score_time(binary, ckpt, convs, out)[0])
    print(f"{'measurement':28} {'baseline s':>10} {'current s':>10} {'current / baseline':>19}")
    for what in ("forward bf16", "forward fp32", "score bf16"):
        b, c = statistics.median(times[("baseline", what)]), statistics.median(times[("current", what)])
        print(f"{what:28} {b:10.2f} {c:10.2f} {c / b:18.3f}x   (runs: baseline {', '.join(f'{x:.2f}' for x in times[('baseline', what)])}; "
              f"current {', '.join(f'{x:.2f}' for x in times[('current', what)])})")
    # Invariance of the current binary.
    one = score_time(a.tessera, ckpt, convs, out, batch=1)[1]
    eight = score_time(a.tessera, ckpt, convs, out, batch=8)[1]
    _, together = forward_time(a.tessera, ckpt, batch, "bf16")
    alone_path = os.path.join(a.work, "determinism-one.jsonl")
    with open(alone_path, "w") as f:
        f.write(json.dumps(seqs[2]) + "\n")
    _, alone = forward_time(a.tessera, ckpt, alone_path, "bf16")
    print(f"current: score --batch 1 and --batch 8 byte-identical: {one == eight}; "
          f"forward of sequence 3 alone and in the batch identical: {alone.strip() == together.splitlines()[2].strip()}")


if __name__ == "__main__":
    main()
