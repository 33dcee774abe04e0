#!/usr/bin/env python3
"""Benchmark for the engine (issue: the memory-mapped BF16 engine).

On the synthetic checkpoint of bench_reshard.py (hidden 2048, ffn 8192, 24 layers, bf16,
TP4PP2 legacy, read in place), in one run:
  * `tessera forward --precision bf16` and `--precision fp32` on a 512-token sequence;
  * torch (oneDNN) doing the same model's linear-layer GEMMs in bf16 on the same shapes, as
    the peer's speed for the dominant work (torch.set_num_threads(2)).
Reports GFLOP/s of the linear layers (2 x params x tokens; attention excluded from the
count, so Tessera's figure is a lower bound), the ratio to torch, and peak RSS.
"""
import argparse, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inspect import make_checkpoint, timed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/tessera-bench")
    ap.add_argument("--tessera", default=".build/release/tessera")
    ap.add_argument("--tokens", type=int, default=512)
    a = ap.parse_args()
    hidden, layers, vocab = 2048, 24, 32000
    src = os.path.join(a.work, "reshard-src-h2048-l24-tp4pp2")
    make_checkpoint(src, hidden, layers, 4, 2, vocab=vocab)
    heads, groups = max(hidden // 128, 8), 8
    kv = hidden // heads
    qkv, ffn = (heads + 2 * groups) * kv, 4 * hidden
    per_layer = qkv * hidden + hidden * hidden + 2 * ffn * hidden
    flops = 2 * per_layer * layers * a.tokens + 2 * (vocab + 9) * hidden
    ids = ",".join(str((i * 7919) % vocab) for i in range(a.tokens))
    results = {}
    for precision in ("bf16", "fp32"):
        best = None
        for _ in range(2):
            t = time.perf_counter()
            _, _, rss = timed([a.tessera, "forward", src, "--tokens", ids, "--precision", precision, "--json"])
            dt = time.perf_counter() - t
            best = (dt, rss) if best is None or dt < best[0] else best
        results[precision] = best
    # A model larger than a memory limit imposed on the process: a cgroup (v1 memory
    # controller; page cache is charged too) capped well below the checkpoint's size.
    limit_mb = 512
    cg = "/sys/fs/cgroup/memory/tessera-bench-forward"
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs)
    try:
        os.makedirs(cg, exist_ok=True)
        with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit_mb << 20))
        with open(os.path.join(cg, "memory.max_usage_in_bytes"), "w") as f:
            f.write("0")
        subprocess.run(["sync"])
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        t = time.perf_counter()
        r = subprocess.run(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec {a.tessera} forward {src} --tokens {ids} --json"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t
        peak = int(open(os.path.join(cg, "memory.max_usage_in_bytes")).read()) >> 20
        print(f"under a {limit_mb} MiB memory cgroup (checkpoint {size / 2**20:.0f} MiB): "
              f"{'completed' if r.returncode == 0 else 'FAILED ' + r.stderr.strip()} in {dt:.2f} s, "
              f"cgroup peak (RSS + page cache) {peak} MiB")
    except OSError as e:
        print(f"memory-limit run skipped: {e}")
    import torch
    torch.set_num_threads(2)
    x = torch.randn(a.tokens, hidden).to(torch.bfloat16)
    ws = [torch.randn(n, k).to(torch.bfloat16) for n, k in ((qkv, hidden), (hidden, hidden), (ffn, hidden), (hidden, ffn))]
    xs = {hidden: x, ffn: torch.randn(a.tokens, ffn).to(torch.bfloat16)}
    for w in ws: xs[w.shape[1]] @ w.T  # warm up
    t = time.perf_counter()
    for _ in range(layers):
        for w in ws: xs[w.shape[1]] @ w.T
    torch_t = time.perf_counter() - t
    torch_flops = 2 * per_layer * layers * a.tokens
    print(f"model: hidden {hidden}, ffn {ffn}, {layers} layers, {per_layer * layers / 1e6:.0f} M linear params; {a.tokens} tokens")
    print(f"torch bf16 GEMMs of the same shapes: {torch_t:.2f} s, {torch_flops / torch_t / 1e9:.0f} GFLOP/s")
    for p, (dt, rss) in results.items():
        print(f"tessera forward --precision {p}: {dt:.2f} s end to end (process start, mapping, all layers), "
              f"{flops / dt / 1e9:.0f} GFLOP/s, {torch_flops / torch_t / (flops / dt):.2f}x slower than torch GEMMs, peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
