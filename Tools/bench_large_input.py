#!/usr/bin/env python3
"""Memory of scoring a conversation file larger than memory would comfortably hold.

Writes a JSONL input of --gib GiB (one real conversation in 10,000 lines, the others JSON
objects that are not conversations, each ~1 KB, so the run is about reading, not the model),
then on the tiny fixture checkpoint:
  1. `tessera score --skip-bad-lines` into a new output, then the same command again (a resume
     that finds every line done);
  2. `score --shard 0/2` and `--shard 1/2`, then `merge`, whose output must equal step 1's;
  3. --conversations N (default 30,000) real conversations of ~10 KB each, scored with
     `--max-length 16` (the model's work kept small) and then resumed: the resume must find
     each one done without holding their text;
and prints each command's seconds and peak RSS against the input's size. `--baseline BIN` runs
steps 1 and 3 with another binary too (e.g. a build that read the input whole) and checks that
its outputs are the same, byte for byte.
"""
import filecmp
import json
import os
import random
import shutil

import benchkit

CHECKPOINT = os.path.join(benchkit.ROOT, "Tests/Fixtures/tiny/nemo/dist_zarr_tp2pp2_bf16.nemo")


def write_input(path, gib):
    """Lines of ~1 KB up to `gib` GiB; returns the number of lines."""
    conversation = {"conversations": [{"value": "What is the capital of France?", "from": "User", "label": None},
                                      {"value": "Paris is the capital of France.", "from": "Assistant", "label": "x"}],
                    "mask": "User"}
    pad = "x" * 1000
    n = 0
    with open(path, "w") as f:
        while f.tell() < gib * (1 << 30):
            for i in range(10000):
                f.write(json.dumps(conversation) + "\n" if i == 0 else '{"id": %d, "note": "%s"}\n' % (n, pad))
                n += 1
    return n


def write_conversations(path, count):
    """`count` conversations of ~10 KB of text each, every one different."""
    rng = random.Random(2)
    words = "the model reward helpful answer question paris france capital".split()
    with open(path, "w") as f:
        for i in range(count):
            text = " ".join(rng.choice(words) for _ in range(1400))
            turns = [{"value": f"q{i} " + text, "from": "User", "label": None},
                     {"value": "a " + text[:200], "from": "Assistant", "label": "x"}]
            f.write(json.dumps({"conversations": turns, "mask": "User"}) + "\n")


def main():
    ap = benchkit.arguments()
    ap.add_argument("--gib", type=float, default=2.0, help="size of the generated input (default 2 GiB)")
    ap.add_argument("--baseline", help="another tessera binary to run steps 1 and 3 with, for comparison")
    ap.add_argument("--conversations", type=int, default=30000, help="conversations of step 3 (0: skip it)")
    a = ap.parse_args()
    fresh = benchkit.start(a, "bench-large-input")
    path = os.path.join(a.work, "in.jsonl")
    lines = write_input(path, a.gib)
    size = os.path.getsize(path)
    print(f"input: {benchkit.human(size)} in {lines:,} lines; checkpoint {os.path.basename(CHECKPOINT)}")

    def run(label, cmd, size=size):
        dt, rss, _, err, _ = benchkit.timed(cmd)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        print(f"{label:40} {dt:8.1f} s  peak RSS {rss:8.0f} MiB ({rss * (1 << 20) / size:5.1%} of the input)  {last}")

    binaries = [("tessera", a.tessera)] + ([("baseline", a.baseline)] if a.baseline else [])
    for name, binary in binaries:
        out = os.path.join(a.work, f"out-{name}.jsonl")
        score = [binary, "score", CHECKPOINT, "--input", path, "--output", out, "--skip-bad-lines"]
        run(f"{name}: score", score)
        run(f"{name}: score again (resume, all done)", score)
    if a.baseline:
        same = filecmp.cmp(os.path.join(a.work, "out-tessera.jsonl"), os.path.join(a.work, "out-baseline.jsonl"), shallow=False)
        print(f"outputs of tessera and the baseline: {'identical' if same else 'DIFFERENT'}")
        if not same:
            raise SystemExit(1)
    shards = [os.path.join(a.work, f"shard{i}.jsonl") for i in range(2)]
    for i, shard in enumerate(shards):
        run(f"score --shard {i}/2", [a.tessera, "score", CHECKPOINT, "--input", path, "--output", shard, "--shard", f"{i}/2",
                                    "--skip-bad-lines"])
    if a.conversations:
        conversations = os.path.join(a.work, "conversations.jsonl")
        write_conversations(conversations, a.conversations)
        csize = os.path.getsize(conversations)
        print(f"conversations: {benchkit.human(csize)} in {a.conversations:,} lines, scored with --max-length 16")
        for name, binary in binaries:
            out = os.path.join(a.work, f"scored-{name}.jsonl")
            score = [binary, "score", CHECKPOINT, "--input", conversations, "--output", out, "--max-length", "16"]
            run(f"{name}: score", score, csize)
            run(f"{name}: score again (resume, all done)", score, csize)
        if a.baseline:
            same = filecmp.cmp(os.path.join(a.work, "scored-tessera.jsonl"), os.path.join(a.work, "scored-baseline.jsonl"), shallow=False)
            print(f"outputs of tessera and the baseline: {'identical' if same else 'DIFFERENT'}")
            if not same:
                raise SystemExit(1)
    merged = os.path.join(a.work, "merged.jsonl")
    run("merge", [a.tessera, "merge", "--input", path, "--output", merged, *shards])
    same = filecmp.cmp(merged, os.path.join(a.work, "out-tessera.jsonl"), shallow=False)
    print(f"merged shards against the single run: {'identical' if same else 'DIFFERENT'}")
    if fresh:
        shutil.rmtree(a.work, ignore_errors=True)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
