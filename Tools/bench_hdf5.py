#!/usr/bin/env python3
"""Benchmark for the HDF5 store (issue: the HDF5 store).

On the synthetic checkpoint of bench_reshard.py (hidden 2048, 24 layers, bf16, TP4PP2
legacy), in one run, each from a cold page cache and followed by sync:
  * Tessera NeMo -> HDF5 (zstd:1 + shuffle), and HDF5 -> NeMo;
  * h5py + hdf5plugin writing the same tensors with the same filters and chunks (data held
    in memory beforehand, so only compression + writing is timed), and reading them all;
  * `cp` of the raw source bytes;
  * Tessera reading the store (`inspect --digests`: decompression + SHA-256 of every byte).
Reports compression ratio, throughput (of uncompressed bytes) and peak RSS.

Run: /work/venv/bin/python Tools/bench_hdf5.py   (needs h5py, hdf5plugin)
"""
import argparse, os, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inspect import make_checkpoint, files_of, timed  # noqa: E402
from bench_reshard import drop_caches  # noqa: E402

H5PY_WRITE = r'''
import sys, time, h5py, hdf5plugin, numpy as np
src, dst = sys.argv[1], sys.argv[2]
data = []
with h5py.File(src, "r") as f:
    def visit(name, d):
        if isinstance(d, h5py.Dataset) and name.startswith("weights/"):
            data.append((name, d[()], d.chunks))
    f.visititems(visit)
t = time.perf_counter()
with h5py.File(dst, "w") as f:
    for name, arr, chunks in data:
        f.create_dataset(name, data=arr, chunks=chunks, shuffle=True, compression=hdf5plugin.Zstd(clevel=1))
import os; os.sync()
print(time.perf_counter() - t)
'''

H5PY_READ = r'''
import sys, time, h5py, hdf5plugin
t = time.perf_counter(); n = 0
with h5py.File(sys.argv[1], "r") as f:
    def visit(name, d):
        global n
        if isinstance(d, h5py.Dataset) and name.startswith("weights/"):
            n += d[()].nbytes
    f.visititems(visit)
print(time.perf_counter() - t, n)
'''


def run_cold(cmd):
    drop_caches()
    t = time.perf_counter()
    _, out, rss = timed(cmd)
    subprocess.run(["sync"])
    return time.perf_counter() - t, out, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/tessera-bench")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--tessera", default=".build/release/tessera")
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    src = os.path.join(a.work, f"reshard-src-h{a.hidden}-l{a.layers}-tp4pp2")
    make_checkpoint(src, a.hidden, a.layers, 4, 2)
    size = sum(os.path.getsize(f) for f in files_of(src))
    store = os.path.join(a.work, "store.h5")
    back = os.path.join(a.work, "store-back")
    other = os.path.join(a.work, "h5py.h5")
    for p in (store, other):
        if os.path.exists(p): os.remove(p)
    shutil.rmtree(back, ignore_errors=True)
    scripts = {}
    for name, text in (("w", H5PY_WRITE), ("r", H5PY_READ)):
        scripts[name] = os.path.join(a.work, f"h5py_{name}.py")
        open(scripts[name], "w").write(text)

    t_cp, _, rss_cp = run_cold(["cp", "-r", src, os.path.join(a.work, "cp-copy")])
    shutil.rmtree(os.path.join(a.work, "cp-copy"), ignore_errors=True)
    t_w, _, rss_w = run_cold([a.tessera, "convert", src, store, "--tp", "4", "--pp", "2", "--format", "hdf5"])
    stored = os.path.getsize(store)
    t_b, _, rss_b = run_cold([a.tessera, "convert", store, back, "--tp", "4", "--pp", "2"])
    t_r, _, rss_r = run_cold([a.tessera, "inspect", "--json", "--digests", store])
    _, out, rss_pw = run_cold([a.python, scripts["w"], store, other])
    t_pw = float(out.strip().splitlines()[-1])
    _, out, rss_pr = run_cold([a.python, scripts["r"], store])
    t_pr = float(out.strip().split()[0])

    print(f"source {size/1e9:.2f} GB bf16 N(0, 0.02); store {stored/1e9:.2f} GB: compression ratio {size/stored:.3f}")
    rows = [("cp -r (raw bytes)", t_cp, rss_cp),
            ("tessera NeMo -> HDF5 (zstd:1, shuffle)", t_w, rss_w),
            ("h5py + hdf5plugin write (same filters/chunks)", t_pw, rss_pw),
            ("tessera HDF5 -> NeMo", t_b, rss_b),
            ("tessera read store (decompress + sha256)", t_r, rss_r),
            ("h5py + hdf5plugin read", t_pr, rss_pr)]
    for label, t, rss in rows:
        print(f"{label:48s} {t:7.2f} s {size/t/1e9:6.2f} GB/s  peak RSS {rss:7.0f} MiB")
    print(f"write: {t_pw/t_w:.2f}x h5py+hdf5plugin, {t_cp/t_w:.2f}x cp;  read: {size/t_r/1e9:.2f} GB/s decompressed")
    shutil.rmtree(back, ignore_errors=True)


if __name__ == "__main__":
    main()
