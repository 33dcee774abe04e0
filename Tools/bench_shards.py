#!/usr/bin/env python3
"""Benchmark of sharded scoring (issue #16): shard balance and merge throughput.

1. Balance: N shards of one input run one after another on this machine (`score --shard I/N`),
   each shard's wall time measured; the slowest shard against the mean, with shards balanced
   by tokens (the default) and by lines (`--balance lines`, equal runs of lines) for
   comparison. The input has heavy-tailed conversation lengths with the long ones together
   at the end of the file, as when sources are concatenated. The merged token shards are
   checked against a single-host run, byte for byte.
2. Merge: `tessera merge` of large synthetic shard outputs (records are not parsed by the
   merge, so any JSON line serves) against `cat` of the same files, MB/s of shard bytes,
   page cache warm, best of three.

Model: the tiny fixture reward model with --max-length 4096 (no torch needed); its cost per
token is small, so per-conversation overheads weigh more than on a real model. A work folder
made for the run (no --work) is removed at the end.
"""
import hashlib, json, os, random, shutil, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402

CKPT = os.path.join(benchkit.ROOT, "Tests/Fixtures/tiny/nemo/legacy_tp2pp2_bf16_te_bytesio.nemo")
WORDS = ["the", "model", "reward", "helpful", "answer", "question", "café", "2024", "Assistant", "because", "of", "data"]


def conversations(path, count, rng):
    """Heavy-tailed lengths, the longest last."""
    convs = []
    for _ in range(count):
        words = min(int(rng.paretovariate(1.3) * 25), 1500)
        turns = [{"value": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 20))), "from": "User", "label": None},
                 {"value": " ".join(rng.choice(WORDS) for _ in range(words)), "from": "Assistant", "label": "x"}]
        convs.append({"conversations": turns, "mask": "User"})
    convs.sort(key=lambda c: len(c["conversations"][1]["value"]))
    with open(path, "w") as f:
        for c in convs:
            f.write(json.dumps(c) + "\n")


def run(cmd, cpu=None):
    """Wall seconds of cmd; its CPU seconds (user + system) appended to `cpu` when given."""
    before = os.times()
    dt = benchkit.timed(cmd)[0]
    after = os.times()
    if cpu is not None:
        cpu.append(after.children_user - before.children_user + after.children_system - before.children_system)
    return dt


def balance(a, inp, n):
    print(f"1. {n} shards run one after another, {os.path.basename(inp)}")
    common = [a.tessera, "score", CKPT, "--input", inp, "--max-length", "4096", "--batch", "8"]
    results = {}
    for mode in ("tokens", "lines"):
        times, cpu, tokens = [], [], []
        for i in range(n):
            out = os.path.join(a.work, f"shard-{mode}-{i}.jsonl")
            if os.path.exists(out):
                os.remove(out)
            times.append(run(common + ["--output", out, "--shard", f"{i}/{n}", "--balance", mode], cpu))
            with open(out) as f:
                tokens.append(json.loads(f.readline())["tokens"])
        results[mode] = times
        for label, v in (("wall", times), ("CPU", cpu)):
            print(f"  by {mode:6}: shard {label:4} seconds {' '.join(f'{t:6.2f}' for t in v)}; slowest / mean = "
                  f"{max(v) / statistics.mean(v):.3f} (+{(max(v) / statistics.mean(v) - 1) * 100:.1f}%)")
        print(f"  by {mode:6}: planned tokens {tokens}")
    single = os.path.join(a.work, "single.jsonl")
    if os.path.exists(single):
        os.remove(single)
    t_single = run(common + ["--output", single])
    merged = os.path.join(a.work, "merged.jsonl")
    run([a.tessera, "merge", "--force", "--input", inp, "--output", merged] + [os.path.join(a.work, f"shard-tokens-{i}.jsonl") for i in range(n)])
    same = open(single, "rb").read() == open(merged, "rb").read()
    print(f"  single host: {t_single:.2f} s (sum of token shards {sum(results['tokens']):.2f} s); merged == single host: {same}")


def merge_throughput(a, n):
    lines = a.merge_records
    inp = os.path.join(a.work, "merge-input.jsonl")
    rng = random.Random(2)
    with open(inp, "w") as f:
        for _ in range(lines):
            f.write(json.dumps({"conversations": [{"value": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 150))),
                                                   "from": "User", "label": None}], "mask": "User"}) + "\n")
    digest = hashlib.sha256(open(inp, "rb").read()).hexdigest()
    files = [os.path.join(a.work, f"merge-shard-{i}.jsonl") for i in range(n)]
    outs = [open(p, "w") for p in files]
    counts = [0] * n
    with open(inp) as f:
        for k, line in enumerate(f):
            counts[k % n] += 1
    for i, o in enumerate(outs):
        o.write(json.dumps({"tessera_shard": f"{i}/{n}", "command": "score", "balance": "tokens", "input_sha256": digest, "input_records": lines,
                            "lines": counts[i], "tokens": 0, "checkpoint": "sha256:bench", "options": "bench",
                            "tool_version": "bench"}) + "\n")
    with open(inp) as f:
        for k, line in enumerate(f):
            outs[k % n].write(f'{{"line": {k + 1}, "tokens": 100, "ms": 1, "record": {line.rstrip()}}}\n')
    for o in outs:
        o.close()
    mb = sum(os.path.getsize(p) for p in files) / 1e6
    out = os.path.join(a.work, "merge-out.jsonl")
    subprocess.run(["cat"] + files, stdout=subprocess.DEVNULL, check=True)  # page cache warm
    t_merge = min(run([a.tessera, "merge", "--force", "--input", inp, "--output", out] + files) for _ in range(3))
    t_cat = min(run(["sh", "-c", 'cat "$@" > "$0"', out + ".cat"] + files) for _ in range(3))
    print(f"2. merge of {n} synthetic shard outputs, {lines} records, {mb:.0f} MB (input read and hashed, output written and hashed)")
    print(f"  tessera merge: {t_merge:.2f} s, {mb / t_merge:.0f} MB/s; cat > file: {t_cat:.2f} s, {mb / t_cat:.0f} MB/s; "
          f"merge / cat time {t_merge / t_cat:.1f}x")
    for p in files + [inp, out, out + ".cat", out + ".manifest.json"]:
        os.remove(p)


def main():
    ap = benchkit.arguments()
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--conversations", type=int, default=1500)
    ap.add_argument("--merge-records", type=int, default=300000)
    ap.add_argument("--skip-merge", action="store_true", help="section 1 only")
    a = ap.parse_args()
    fresh = benchkit.start(a, "shards", " (shared machine: figures vary from run to run)")
    inp = os.path.join(a.work, "conversations.jsonl")
    conversations(inp, a.conversations, random.Random(1))
    balance(a, inp, a.shards)
    if not a.skip_merge:
        merge_throughput(a, a.shards)
    if fresh:
        shutil.rmtree(a.work)


if __name__ == "__main__":
    main()
