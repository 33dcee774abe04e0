#!/usr/bin/env python3
"""Benchmark for `tessera inspect` (issue: foundation).

Makes two synthetic Nemotron-shaped legacy checkpoints with torch (a small one and one of
a few GB, both TP=2 PP=2, bf16), then measures in the same run:
  * `tessera inspect --json` on both: metadata only, so its time must not grow with bytes;
  * `tessera inspect --json --digests` on the large one: GB/s and peak RSS;
  * `sha256sum` of the same files (one core), GB/s.
Page cache is warmed first for both readers so the comparison is CPU-bound and fair.

Run: "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/bench_inspect.py [--work DIR] [--hidden 2048 --layers 24]
"""
import argparse, json, os, subprocess, sys, time
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402


def make_checkpoint(root, hidden, layers, tp, pp, vocab=32000):
    import torch
    heads, groups = max(hidden // 128, 8), 8
    kv = hidden // heads
    qkv_rows = (heads + 2 * groups) * kv
    ffn = 4 * hidden
    if os.path.exists(os.path.join(root, "model_config.yaml")):
        return
    os.makedirs(root, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    per_stage = layers // pp
    for p in range(pp):
        for t in range(tp):
            sd = OrderedDict()
            def rnd(*shape):
                return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)
            if p == 0:
                sd["model.embedding.word_embeddings.weight"] = rnd(vocab // tp, hidden)
            for l in range(per_stage):
                pre = f"model.decoder.layers.{l}."
                sd[pre + "self_attention.linear_qkv.layer_norm_weight"] = rnd(hidden)
                sd[pre + "self_attention.linear_qkv.layer_norm_bias"] = rnd(hidden)
                sd[pre + "self_attention.linear_qkv.weight"] = rnd(qkv_rows // tp, hidden)
                sd[pre + "self_attention.linear_proj.weight"] = rnd(hidden, hidden // tp)
                sd[pre + "mlp.linear_fc1.layer_norm_weight"] = rnd(hidden)
                sd[pre + "mlp.linear_fc1.layer_norm_bias"] = rnd(hidden)
                sd[pre + "mlp.linear_fc1.weight"] = rnd(ffn // tp, hidden)
                sd[pre + "mlp.linear_fc2.weight"] = rnd(hidden, ffn // tp)
            if p == pp - 1:
                sd["model.decoder.final_layernorm.weight"] = rnd(hidden)
                sd["model.decoder.final_layernorm.bias"] = rnd(hidden)
                sd["model.output_layer.weight"] = rnd(vocab // tp, hidden)
                sd["model.rm_head.weight"] = rnd(9, hidden // tp)
                sd["model.rm_head.bias"] = rnd(9)
            d = os.path.join(root, f"tp_rank_{t:02d}_pp_rank_{p:03d}")
            os.makedirs(d, exist_ok=True)
            torch.save(sd, os.path.join(d, "model_weights.ckpt"))
    # The same replicated norms on every TP rank: copy rank 0's values.
    for p in range(pp):
        base = torch.load(os.path.join(root, f"tp_rank_00_pp_rank_{p:03d}", "model_weights.ckpt"))
        for t in range(1, tp):
            path = os.path.join(root, f"tp_rank_{t:02d}_pp_rank_{p:03d}", "model_weights.ckpt")
            sd = torch.load(path)
            for k in sd:
                if "layer_norm" in k or "final_layernorm" in k or k.endswith("rm_head.bias"):
                    sd[k] = base[k]
            torch.save(sd, path)
    with open(os.path.join(root, "model_config.yaml"), "w") as f:
        f.write(f"""num_layers: {layers}
hidden_size: {hidden}
ffn_hidden_size: {ffn}
num_attention_heads: {heads}
num_query_groups: {groups}
kv_channels: {kv}
activation: squared-relu
normalization: layernorm1p
bias: false
position_embedding_type: rope
rotary_percentage: 0.5
share_embeddings_and_output_weights: false
tensor_model_parallel_size: {tp}
pipeline_model_parallel_size: {pp}
regression:
  num_attributes: 9
""")


def files_of(root):
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.join(d, f) for f in fs if f.endswith(".ckpt")]
    return sorted(out)


def timed(cmd):
    """Wall time, stdout and peak RSS (MiB) of one run of cmd."""
    gnu_time = os.path.exists("/usr/bin/time")
    full = (["/usr/bin/time", "-f", "%M"] + cmd) if gnu_time else cmd
    t = time.perf_counter()
    r = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{cmd} failed: {r.stderr}")
    rss = int(r.stderr.strip().splitlines()[-1]) / 1024 if gnu_time else float("nan")
    return dt, r.stdout, rss


def bench_arguments(repeat=None):
    """The options every benchmark takes: --work, --hidden, --layers, --tessera (and --python, --repeat)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="work folder (default: a new one per run; give one to reuse its source)")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--tessera", default=".build/release/tessera")
    if repeat is not None:
        ap.add_argument("--python", default=sys.executable)
        ap.add_argument("--repeat", type=int, default=repeat)
    return ap


def best(cmd, n=3):
    runs = [timed(cmd) for _ in range(n)]
    return min(runs, key=lambda r: r[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="work folder (default: a new one per run; give one to reuse its source)")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--tessera", default=".build/release/tessera")
    a = ap.parse_args()
    a.work = a.work or benchkit.work_dir("bench-inspect")
    small = os.path.join(a.work, "small")
    large = os.path.join(a.work, f"large-h{a.hidden}-l{a.layers}")
    make_checkpoint(small, 256, 4, 2, 2, vocab=4096)
    make_checkpoint(large, a.hidden, a.layers, 2, 2)
    size = lambda root: sum(os.path.getsize(f) for f in files_of(root))
    for f in files_of(large):
        subprocess.run(["cat", f], stdout=subprocess.DEVNULL)  # warm the page cache
    print(f"small checkpoint: {size(small)/1e6:.1f} MB, large: {size(large)/1e9:.2f} GB")
    ts, _, _ = best([a.tessera, "inspect", "--json", small])
    tl, out, rss_meta = best([a.tessera, "inspect", "--json", large])
    n = len(json.loads(out)["tensors"])
    print(f"inspect (metadata only): small {ts*1000:.1f} ms, large {tl*1000:.1f} ms "
          f"(ratio {tl/ts:.2f} for {size(large)/size(small):.0f}x the bytes; {n} tensors)")
    for threads in (1, 2):
        td, _, rss = best([a.tessera, "inspect", "--json", "--digests", "--threads", str(threads), large], n=2)
        print(f"inspect --digests, {threads} thread(s): {td:.2f} s, {size(large)/td/1e9:.2f} GB/s, peak RSS {rss:.0f} MiB")
    tsha, _, _ = best(["sha256sum"] + files_of(large), n=2)
    print(f"sha256sum (one core, same files): {tsha:.2f} s, {size(large)/tsha/1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
