#!/usr/bin/env python3
"""HDF5 proofs against h5py + hdf5plugin (issue: the HDF5 store).

1. Every dataset of a store Tessera writes opens in h5py + hdf5plugin, holds the bytes its
   sha256 attribute names, and equals megatron-core's reference tensors (bf16 via ml_dtypes).
2. A store written by h5py + hdf5plugin following Schemas/hdf5-store.md is read by Tessera,
   and Tessera's digests equal h5py's.
3. A dataset with a filter Tessera does not read (gzip) is refused, naming the filter.
Prints one line per check and `N passed, M failed`; exit 0 only if all pass.

Run: python Tools/hdf5_interop.py --tessera .build/release/tessera
"""
import argparse, atexit, hashlib, json, os, shutil, subprocess, sys, tempfile

import h5py
import hdf5plugin  # noqa: F401  (registers filter 32015)
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "Fixtures")
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")


def text(obj, name):
    """A string attribute as str: Tessera writes fixed-length UTF-8 (h5py reads bytes), other
    writers variable-length (h5py reads str)."""
    v = obj.attrs[name]
    return v.decode("utf-8") if isinstance(v, bytes) else v


def tessera(t, *args):
    return subprocess.run([t, *args], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", default=os.path.join(ROOT, ".build/release/tessera"))
    a = ap.parse_args()
    ref = json.load(open(os.path.join(FIX, "tiny/reference/tensors.json")))
    work = tempfile.mkdtemp(prefix="tessera-h5-interop-")
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # also when a check fails

    # 1. Tessera writes, h5py reads.
    for src, layout, comp in [("tiny/legacy_tp2pp2_bf16_te_bytesio", ("2", "1"), "zstd:1"),
                              ("tiny/dist_zarr_tp2pp2_bf16", ("1", "1"), "none"),
                              ("tiny/legacy_tp2pp2_fp32_te_bytesio", ("2", "2"), "zstd:3")]:
        dtype = "fp32" if "fp32" in src else "bf16"
        out = os.path.join(work, os.path.basename(src) + ".h5")
        r = tessera(a.tessera, "convert", os.path.join(FIX, src), out, "--tp", layout[0], "--pp", layout[1],
                    "--format", "hdf5", "--compression", comp)
        if r.returncode != 0:
            check(f"tessera writes {src} as HDF5 ({comp})", False, r.stderr.strip())
            continue
        bad = []
        with h5py.File(out, "r") as f:
            assert text(f, "format") == "tessera-hdf5"
            names = []
            def visit(name, d):
                if isinstance(d, h5py.Dataset) and name.startswith("weights/"):
                    names.append(name)
            f.visititems(visit)
            for name in names:
                d = f[name]
                canon = name[len("weights/"):].replace("/", ".")
                raw = d[()]
                digest = hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest()
                if digest != text(d, "sha256") or digest != ref[dtype][canon]["sha256"]:
                    bad.append(canon)
                if text(d, "dtype") == "bfloat16":
                    import ml_dtypes
                    raw.view(ml_dtypes.bfloat16)  # viewable as bf16
            filters = f[names[0]]._filters
        check(f"h5py + hdf5plugin read {len(names)} datasets of {os.path.basename(out)} ({comp}, filters {filters})",
              not bad and len(names) == len(ref[dtype]), f"mismatch: {bad[:3]}" if bad else "")

    # 2. h5py writes the documented layout, Tessera reads: bf16 in a 2 x 2 chunk grid, and fp32
    #    in chunks of a third (clipped edge chunks, chunks narrower than their rows).
    import ml_dtypes  # noqa: F401
    for dtype, grid in (("bf16", lambda s: max(1, s // 2)), ("fp32", lambda s: max(1, (s + 2) // 3))):
        src = os.path.join(FIX, "tiny/legacy_tp1pp1_bf16_te_bytesio" if dtype == "bf16" else "tiny/legacy_tp1pp1_fp32_te_uint8_pickle")
        plain = os.path.join(work, f"plain_{dtype}.h5")
        r = tessera(a.tessera, "convert", src, plain, "--tp", "1", "--pp", "1",
                    "--format", "hdf5", "--compression", "none")
        h5_by_py = os.path.join(work, f"by_h5py_{dtype}.h5")
        with h5py.File(plain, "r") as tf, h5py.File(h5_by_py, "w") as f:
            f.attrs["format"] = "tessera-hdf5"
            f.attrs["format_version"] = "1"
            f.attrs["layout"] = json.dumps({"tp": 1, "pp": 1, "key_spelling": "te"})
            f.attrs["model_config_yaml"] = text(tf, "model_config_yaml")
            def copy(name, d):
                if isinstance(d, h5py.Dataset) and name.startswith("weights/"):
                    data = d[()]
                    chunks = tuple(grid(s) for s in data.shape)
                    nd = f.create_dataset(name, data=data, chunks=chunks, shuffle=True, compression=hdf5plugin.Zstd(clevel=1))
                    nd.attrs["dtype"] = text(d, "dtype")
            tf.visititems(copy)
        r = tessera(a.tessera, "inspect", "--json", "--digests", h5_by_py)
        ok = r.returncode == 0
        if ok:
            got = {t["name"]: t["sha256"] for t in json.loads(r.stdout)["tensors"]}
            ok = got == {k: v["sha256"] for k, v in ref[dtype].items()}
        check(f"Tessera reads a {dtype} store written by h5py + hdf5plugin (zstd, shuffle, chunks of its own)", ok,
              r.stderr.strip())

    # 3. An unsupported filter is named.
    gz = os.path.join(work, "gzip.h5")
    with h5py.File(gz, "w") as f:
        f.attrs["format"] = "tessera-hdf5"
        d = f.create_dataset("weights/rm_head/bias", data=np.zeros(9, np.float32), chunks=(9,), compression="gzip")
    r = tessera(a.tessera, "inspect", gz)
    check("a gzip-filtered dataset is refused naming the filter", r.returncode == 2 and "filter 1" in r.stderr, r.stderr.strip())

    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
