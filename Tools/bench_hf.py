#!/usr/bin/env python3
"""Benchmark for `tessera convert --format hf` (issue #15: the Hugging Face bridge).

Makes a dense synthetic Nemotron-shaped checkpoint (random bf16, default hidden 2048, 24
layers, TP1 PP1 legacy: about 2.6 GB; `benchkit.make_checkpoint`) and measures, in the
same run, each after dropping the page cache and each followed by `sync`:
  * `cp` of the checkpoint's weight file (the I/O bound: the same bytes read and written);
  * tessera convert --format hf (5 GB shards; and --shard-size 500M);
  * transformers' own `save_pretrained` of the same model (a NemotronForSequenceClassification
    loaded from Tessera's export beforehand; only the save is timed, its process's peak RSS
    includes the model it holds).
Commands run in --repeat rounds; ratios to cp are taken within each round, the median over
rounds is reported with the best time and the largest peak RSS. A second, half-size model
shows whether Tessera's peak RSS grows with the model.

Run (as root, for drop_caches): "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/bench_hf.py
"""
import os, shutil, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402
from benchkit import make_checkpoint, files_of  # noqa: E402

SAVE = r'''
import sys, time, torch
from transformers import NemotronForSequenceClassification
m = NemotronForSequenceClassification.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
t = time.perf_counter()
m.save_pretrained(sys.argv[2], max_shard_size="5GB")
open(sys.argv[3], "w").write(str(time.perf_counter() - t))
'''


def main():
    a = benchkit.arguments(model=True, python=True, rounds=3).parse_args()
    benchkit.start(a, "bench-hf")
    src = os.path.join(a.work, f"hf-src-h{a.hidden}-l{a.layers}")
    half = os.path.join(a.work, f"hf-src-h{a.hidden}-l{a.layers // 2}")
    make_checkpoint(src, a.hidden, a.layers, 1, 1)
    make_checkpoint(half, a.hidden, a.layers // 2, 1, 1)
    weights = files_of(src)
    size = sum(os.path.getsize(f) for f in weights)
    print(f"source: {size / 1e9:.2f} GB, legacy bf16 TP1 PP1, hidden {a.hidden}, {a.layers} layers (dense random)")
    dst = os.path.join(a.work, "hf-dst")
    export = os.path.join(a.work, "hf-export")
    subprocess.run([a.tessera, "convert", src, export, "--format", "hf", "--force"], check=True, capture_output=True)
    script = os.path.join(a.work, "hf_save.py")
    with open(script, "w") as f:
        f.write(SAVE)
    rows = [
        ("cp model_weights.ckpt", ["sh", "-c", f"mkdir -p '{dst}' && cp '{weights[0]}' '{dst}/'"]),
        ("tessera convert --format hf", [a.tessera, "convert", src, dst, "--format", "hf"]),
        ("tessera ... --shard-size 500M", [a.tessera, "convert", src, dst, "--format", "hf", "--shard-size", "500M"]),
        (f"tessera, half model ({a.layers // 2} layers)", [a.tessera, "convert", half, dst, "--format", "hf"]),
        ("transformers save_pretrained", [a.python, script, export, dst, dst + ".seconds"]),
    ]
    results, ratios = {}, {}
    for _ in range(a.repeat):
        cp_t = None
        for label, cmd in rows:
            t, rss, _ = benchkit.cold(cmd, clear=dst)
            if label.startswith("transformers"):
                t = float(open(dst + ".seconds").read())   # the save alone, not the load
            cp_t = t if label.startswith("cp") else cp_t
            ratios.setdefault(label, []).append(cp_t / t / (2 if "half" in label else 1))   # half: against cp of half the bytes
            best_t, best_rss = results.get(label, (float("inf"), 0))
            results[label] = (min(t, best_t), max(rss, best_rss))
    print(f"{'':36s} {'best s':>7s} {'GB/s':>6s} {'vs cp (median, range)':>22s} {'peak RSS':>10s}")
    for label, (t, rss) in results.items():
        r = sorted(ratios[label])
        n = size / 2 if "half" in label else size
        print(f"{label:36s} {t:7.2f} {n / t / 1e9:6.2f} {f'{r[len(r) // 2]:.2f} ({r[0]:.2f}-{r[-1]:.2f})':>22s} {rss:8.0f}MiB")
    shutil.rmtree(dst, ignore_errors=True)


if __name__ == "__main__":
    main()
