#!/usr/bin/env python3
"""Benchmark for `tessera convert` (issue: resharding).

Makes a synthetic Nemotron-shaped checkpoint (default hidden 2048, 24 layers, bf16,
TP=4 PP=2 legacy; about 2.5 GB) and measures, in the same run, each after dropping the
page cache and each followed by `sync`:
  * tessera convert TP4PP2 -> TP2PP4 (legacy) and -> TP2PP4 dist-torch;
  * `cp -r` of the same source (the I/O bound);
  * a straightforward torch reshard (load every rank, concatenate, split, save: what
    NeMo's megatron_change_num_partitions.py does).
Disk speed here varies by a factor of two from minute to minute, so the commands run in
--repeat rounds, each round all of them back to back; a command's ratio to cp is taken within
each round and the median over rounds is reported (with the best time and the largest peak
RSS). The torch reshard, 5-8x slower than the rest, runs in the first round only.

Run (as root, for drop_caches): "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/bench_reshard.py
"""
import os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402

TORCH_RESHARD = r'''
import os, sys, torch
from collections import OrderedDict
src, dst, tp0, pp0, tp1, pp1 = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
def rank_dir(root, t, p, tp, pp):
    if tp * pp == 1: return root
    if pp == 1: return os.path.join(root, f"mp_rank_{t:02d}")
    return os.path.join(root, f"tp_rank_{t:02d}_pp_rank_{p:03d}")
def dim(key):
    if any(s in key for s in ("linear_qkv.weight", "linear_fc1.weight", "word_embeddings", "output_layer")): return 0
    if any(s in key for s in ("linear_proj.weight", "linear_fc2.weight", "rm_head.weight")): return 1
    return None
# load everything, as NeMo's script does
full, per0 = OrderedDict(), None
for p in range(pp0):
    ranks = [torch.load(os.path.join(rank_dir(src, t, p, tp0, pp0), "model_weights.ckpt")) for t in range(tp0)]
    per0 = len({k.split(".")[3] for k in ranks[0] if k.startswith("model.decoder.layers.")})
    for k in ranks[0]:
        g = k
        if k.startswith("model.decoder.layers."):
            parts = k.split("."); parts[3] = str(int(parts[3]) + p * per0); g = ".".join(parts)
        d = dim(k)
        full[g] = ranks[0][k] if d is None else torch.cat([r[k] for r in ranks], dim=d)
    del ranks
layers = len({k.split(".")[3] for k in full if k.startswith("model.decoder.layers.")})
per1 = layers // pp1
for p in range(pp1):
    for t in range(tp1):
        sd = OrderedDict()
        for g, v in full.items():
            if g.startswith("model.decoder.layers."):
                parts = g.split("."); l = int(parts[3])
                if not (p * per1 <= l < (p + 1) * per1): continue
                parts[3] = str(l - p * per1); k = ".".join(parts)
            elif ("word_embeddings" in g and p != 0) or (("final_layernorm" in g or "output_layer" in g or "rm_head" in g) and p != pp1 - 1):
                continue
            else:
                k = g
            d = dim(g)
            sd[k] = v if d is None else v.chunk(tp1, dim=d)[t].clone()
        out = rank_dir(dst, t, p, tp1, pp1); os.makedirs(out, exist_ok=True)
        torch.save(sd, os.path.join(out, "model_weights.ckpt"))
'''


def main():
    a = benchkit.arguments(model=True, python=True, rounds=5).parse_args()
    benchkit.start(a, "bench-reshard")
    src, size = benchkit.reshard_source(a.work, a.hidden, a.layers)
    print(f"source: {size/1e9:.2f} GB, TP=4 PP=2 legacy bf16, hidden {a.hidden}, {a.layers} layers")
    dst = os.path.join(a.work, "reshard-dst")
    script = os.path.join(a.work, "torch_reshard.py")
    with open(script, "w") as f:
        f.write(TORCH_RESHARD)
    rows = [
        ("cp -r", ["cp", "-r", src, dst]),
        ("tessera TP4PP2->TP2PP4 nemo", [a.tessera, "convert", src, dst, "--tp", "2", "--pp", "4"]),
        ("tessera TP4PP2->TP2PP4 dist-torch", [a.tessera, "convert", src, dst, "--tp", "2", "--pp", "4", "--format", "dist-torch"]),
        ("tessera TP4PP2->TP2PP4 dist-zarr", [a.tessera, "convert", src, dst, "--tp", "2", "--pp", "4", "--format", "dist-zarr"]),
        ("torch load-all/cat/split/save", [a.python, script, src, dst, "4", "2", "2", "4"]),
    ]
    results, ratios = {}, {}
    for round_ in range(a.repeat):
        cp_t = None
        for label, cmd in rows:
            if label.startswith("torch") and round_ > 0:
                continue
            t, rss, _ = benchkit.cold(cmd, clear=dst)
            cp_t = t if label == "cp -r" else cp_t
            ratios.setdefault(label, []).append(cp_t / t)
            best_t, best_rss = results.get(label, (float("inf"), 0))
            results[label] = (min(t, best_t), max(rss, best_rss))
    torch_t = results["torch load-all/cat/split/save"][0]
    print(f"{'':38s} {'best s':>7s} {'GB/s':>6s} {'vs cp (median of rounds)':>25s} {'vs torch':>8s} {'peak RSS':>10s} {'RSS/ckpt':>8s}")
    for label, (t, rss) in results.items():
        r = sorted(ratios[label])
        spread = f"{r[len(r) // 2]:.2f} ({r[0]:.2f}-{r[-1]:.2f})"
        print(f"{label:38s} {t:7.2f} {size/t/1e9:6.2f} {spread:>25s} {torch_t/t:8.2f} {rss:8.0f}MiB {rss*2**20/size*100:7.2f}%")
    shutil.rmtree(dst, ignore_errors=True)


if __name__ == "__main__":
    main()
