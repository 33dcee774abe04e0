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
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402
from benchkit import files_of, make_checkpoint  # noqa: E402


def best(cmd, n=3):
    """The fastest of n runs of cmd: (seconds, peak RSS MiB, stdout)."""
    return min((benchkit.timed(cmd)[:3] for _ in range(n)), key=lambda r: r[0])


def main():
    a = benchkit.arguments(model=True).parse_args()
    benchkit.start(a, "bench-inspect")
    small = os.path.join(a.work, "small")
    large = os.path.join(a.work, f"large-h{a.hidden}-l{a.layers}")
    make_checkpoint(small, 256, 4, 2, 2, vocab=4096)
    make_checkpoint(large, a.hidden, a.layers, 2, 2)
    size = lambda root: sum(os.path.getsize(f) for f in files_of(root))
    for f in files_of(large):
        subprocess.run(["cat", f], stdout=subprocess.DEVNULL)  # warm the page cache
    print(f"small checkpoint: {size(small)/1e6:.1f} MB, large: {size(large)/1e9:.2f} GB")
    ts = best([a.tessera, "inspect", "--json", small])[0]
    tl, _, out = best([a.tessera, "inspect", "--json", large])
    n = len(json.loads(out)["tensors"])
    print(f"inspect (metadata only): small {ts*1000:.1f} ms, large {tl*1000:.1f} ms "
          f"(ratio {tl/ts:.2f} for {size(large)/size(small):.0f}x the bytes; {n} tensors)")
    for threads in (1, 2):
        td, rss, _ = best([a.tessera, "inspect", "--json", "--digests", "--threads", str(threads), large], n=2)
        print(f"inspect --digests, {threads} thread(s): {td:.2f} s, {size(large)/td/1e9:.2f} GB/s, peak RSS {rss:.0f} MiB")
    tsha = best(["sha256sum"] + files_of(large), n=2)[0]
    print(f"sha256sum (one core, same files): {tsha:.2f} s, {size(large)/tsha/1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
