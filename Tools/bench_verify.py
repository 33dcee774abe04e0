#!/usr/bin/env python3
"""Benchmark for `tessera verify --weights-only` (issue: the verifier).

The synthetic checkpoint of bench_reshard.py in two layouts (TP4PP2 legacy and, made by
Tessera, TP2PP4 torch_dist), then in one run, each from a cold page cache:
`tessera verify --weights-only A B` against `cat A B > /dev/null` of the same files.
Reports the throughput ratio and peak RSS.
"""
import os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402


def all_files(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def main():
    ap = benchkit.arguments()
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    benchkit.start(a, "bench-verify")
    src, _ = benchkit.reshard_source(a.work)
    other = os.path.join(a.work, "verify-tp2pp4-torch_dist")
    if not os.path.exists(other):
        subprocess.run([a.tessera, "convert", src, other, "--tp", "2", "--pp", "4", "--format", "dist-torch"], check=True)
    files = all_files(src) + all_files(other)
    size = sum(os.path.getsize(f) for f in files)
    best = {}
    for _ in range(a.repeat):
        for label, cmd in [("cat A B > /dev/null", ["sh", "-c", "cat \"$@\" > /dev/null", "cat"] + files),
                           ("tessera verify --weights-only", [a.tessera, "verify", "--weights-only", src, other])]:
            benchkit.drop_caches()
            dt, rss = benchkit.timed(cmd)[:2]
            if label not in best or dt < best[label][0]:
                best[label] = (dt, rss)
    print(f"A + B: {size/1e9:.2f} GB (TP4PP2 legacy vs TP2PP4 torch_dist)")
    for label, (t, rss) in best.items():
        print(f"{label:32s} {t:6.2f} s {size/t/1e9:6.2f} GB/s  peak RSS {rss:6.0f} MiB")
    print(f"verify / cat throughput: {best['cat A B > /dev/null'][0] / best['tessera verify --weights-only'][0]:.2f}x")


if __name__ == "__main__":
    main()
