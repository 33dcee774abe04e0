#!/usr/bin/env python3
"""Benchmark for the HDF5 store (issue: the HDF5 store).

On the synthetic checkpoint of bench_reshard.py (hidden 2048, 24 layers, bf16, TP4PP2
legacy), in one run, each from a cold page cache and followed by sync:
  * Tessera NeMo -> HDF5 (zstd:1 + shuffle), and HDF5 -> NeMo;
  * h5py + hdf5plugin writing the same tensors with the same filters and chunks (data held
    in memory beforehand, so only compression + writing is timed), and reading them all;
  * `cp` of the raw source bytes;
  * Tessera reading the store (`inspect --digests`: decompression + SHA-256 of every byte);
  * the disk's own limit for that read: `dd iflag=direct bs=64M` of the store's bytes.
Reports compression ratio, throughput (of uncompressed bytes) and peak RSS; the read is also
given in stored (compressed) bytes per second as a fraction of the disk's direct-read speed
in the same round.

The whole sequence runs --repeat N times (default 3; disk throughput on a shared machine is
noisy) and each figure is reported as best and median over the rounds; ratios to h5py and
cp are taken within each round, then summarised the same way.

Run: "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/bench_hdf5.py   (needs h5py, hdf5plugin)
"""
import os, shutil, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402

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


def main():
    a = benchkit.arguments(model=True, python=True, rounds=3).parse_args()
    benchkit.start(a, "bench-hdf5")
    src, size = benchkit.reshard_source(a.work, a.hidden, a.layers)
    store = os.path.join(a.work, "store.h5")
    back = os.path.join(a.work, "store-back")
    other = os.path.join(a.work, "h5py.h5")
    scripts = {}
    for name, text in (("w", H5PY_WRITE), ("r", H5PY_READ)):
        scripts[name] = os.path.join(a.work, f"h5py_{name}.py")
        open(scripts[name], "w").write(text)

    rounds = [one_round(a, src, store, back, other, scripts) for _ in range(a.repeat)]
    stored = os.path.getsize(store)
    print(f"source {size/1e9:.2f} GB bf16 N(0, 0.02); store {stored/1e9:.2f} GB: compression ratio {size/stored:.3f}")
    labels = [("cp", "cp -r (raw bytes)"),
              ("w", "tessera NeMo -> HDF5 (zstd:1, shuffle)"),
              ("pw", "h5py + hdf5plugin write (same filters/chunks)"),
              ("b", "tessera HDF5 -> NeMo"),
              ("r", "tessera read store (decompress + sha256)"),
              ("dd", "dd iflag=direct of the store (disk limit)"),
              ("pr", "h5py + hdf5plugin read")]
    many = len(rounds) > 1
    if many:
        print(f"{len(rounds)} rounds; GB/s best / median")
    for key, label in labels:
        times = [r[key][0] for r in rounds]
        rss = max(r[key][1] for r in rounds)
        n = stored if key == "dd" else size   # dd moves the stored (compressed) bytes
        unit = "GB/s stored" if key == "dd" else "GB/s"
        if many:
            print(f"{label:48s} {min(times):7.2f} s {n/min(times)/1e9:6.2f} / {n/statistics.median(times)/1e9:4.2f} {unit}"
                  f"  peak RSS {rss:7.0f} MiB")
        else:
            print(f"{label:48s} {times[0]:7.2f} s {n/times[0]/1e9:6.2f} {unit}  peak RSS {rss:7.0f} MiB")
    vs_h5py = [r["pw"][0] / r["w"][0] for r in rounds]
    vs_cp = [r["cp"][0] / r["w"][0] for r in rounds]
    read = [size / r["r"][0] / 1e9 for r in rounds]
    disk = [r["dd"][0] / r["r"][0] for r in rounds]
    print(f"read of stored bytes vs the disk's direct read, same round: "
          + ", ".join(f"{stored/r['r'][0]/1e9:.2f} of {stored/r['dd'][0]/1e9:.2f} GB/s" for r in rounds)
          + f"  (best {max(disk):.2f}x, median {statistics.median(disk):.2f}x)")
    if many:
        print(f"write: {max(vs_h5py):.2f} / {statistics.median(vs_h5py):.2f}x h5py+hdf5plugin, "
              f"{max(vs_cp):.2f} / {statistics.median(vs_cp):.2f}x cp;  "
              f"read: {max(read):.2f} / {statistics.median(read):.2f} GB/s decompressed  (best / median)")
    else:
        print(f"write: {vs_h5py[0]:.2f}x h5py+hdf5plugin, {vs_cp[0]:.2f}x cp;  read: {read[0]:.2f} GB/s decompressed")
    shutil.rmtree(back, ignore_errors=True)


def one_round(a, src, store, back, other, scripts):
    """One cold run of every command: {key: (seconds, peak RSS MiB)}."""
    for p in (store, other):
        if os.path.exists(p): os.remove(p)
    shutil.rmtree(back, ignore_errors=True)
    r = {}
    copy = os.path.join(a.work, "cp-copy")   # cp's output, removed again before the next command
    for key, cmd in (("cp", ["cp", "-r", src, copy]),
                     ("w", [a.tessera, "convert", src, store, "--tp", "4", "--pp", "2", "--format", "hdf5"]),
                     ("b", [a.tessera, "convert", store, back, "--tp", "4", "--pp", "2"]),
                     ("r", [a.tessera, "inspect", "--json", "--digests", store]),
                     ("dd", ["dd", f"if={store}", "of=/dev/null", "bs=64M", "iflag=direct"])):
        r[key] = benchkit.cold(cmd, clear=copy)[:2]
    _, rss, out = benchkit.cold([a.python, scripts["w"], store, other])
    r["pw"] = (float(out.strip().splitlines()[-1]), rss)
    _, rss, out = benchkit.cold([a.python, scripts["r"], store])
    r["pr"] = (float(out.strip().split()[0]), rss)
    shutil.rmtree(back, ignore_errors=True)
    return r


if __name__ == "__main__":
    main()
