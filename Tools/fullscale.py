#!/usr/bin/env python3
"""Full-scale proof and benchmark: Nemotron-4-340B-Reward as released, on this machine.

Makes the released layout (zarr at TP8; `Tools/release_shaped.py make`: every chunk file
sparse, a few stamped values in each), then with the release binary:
  * `inspect`;
  * `convert` to nemo TP8PP2, nemo TP1PP1 (one rank file of the whole model), a `.nemo` tar
    (at the largest TP whose rank files exceed 8 GiB, so its members need GNU base-256
    sizes), dist-torch TP4PP4 (TP4PP2 when the layers do not divide by 4) and hdf5;
  * every stamp found in each output by the real libraries (`release_shaped.py check`:
    torch.load(mmap=True, weights_only=True), h5py + hdf5plugin, the DCP reader; Python's
    tarfile lists the `.nemo` members);
  * `verify --weights-only` of the source against each output;
  * `forward --precision fp32 --max-memory 8G` on tokens whose embedding rows are stamped,
    from the source and from the one-file TP1PP1 copy, against the float64 reference
    computed from the stamps alone (`release_shaped.py reference`), within 1e-4 relative.
For each step: wall time, peak RSS (the process's own), physical and apparent bytes written.
Last, the disk's direct write and read speed measured in the same run, and the time a dense
checkpoint of the same size would take at those speeds.

    python Tools/fullscale.py --layers 2      # CI: full width, 2 layers (~33 GB apparent)
    python Tools/fullscale.py                 # 96 layers (682 GB apparent)

Environment: TESSERA_BIN (default .build/release/tessera), TESSERA_BENCH_DIR (work folder
parent, default the system's temporary folder). Run with the interop venv's python.
Exit 0 when every check passes.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchkit  # noqa: E402

GIB = 1 << 30


def rel_diff(got, want):
    """max |got - want| / max |want| (lengths must match)."""
    if len(got) != len(want):
        raise SystemExit(f"length mismatch: {len(got)} values against {len(want)}")
    scale = max(max(abs(w) for w in want), 1e-30)
    return max(abs(g - w) for g, w in zip(got, want)) / scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=96)
    ap.add_argument("--tessera", default=os.environ.get("TESSERA_BIN", ".build/release/tessera"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--disk-probe-gib", type=int, default=2, help="size of the dense file for the disk speed probe")
    a = ap.parse_args()
    tessera = os.path.abspath(a.tessera)
    py = sys.executable
    maker = os.path.join(HERE, "release_shaped.py")
    work = benchkit.work_dir("fullscale")
    rows, failures = [], []
    print(f"CPU: {benchkit.cpu_model()}")
    print(f"work folder: {work}; {a.layers} layers at full width")

    def step(label, cmd, out=None, stderr_lines=()):
        """Runs cmd, records its row, prints stderr lines starting with stderr_lines; returns stdout."""
        dt, rss, stdout, stderr, rc = benchkit.timed(cmd, check=False)
        for line in stderr.splitlines():
            if stderr_lines and line.startswith(stderr_lines):
                print(f"      {line}")
        phys = benchkit.physical_bytes(out) if out and os.path.exists(out) else 0
        app = benchkit.apparent_bytes(out) if out and os.path.exists(out) else 0
        ok = rc == 0
        rows.append((label, dt, rss, phys, app, "ok" if ok else f"FAILED ({rc})"))
        print(f"  {label:<44} {dt:8.2f} s  {rss:8.1f} MiB  written {benchkit.human(phys):>9} of {benchkit.human(app):>9}  "
              + ("ok" if ok else "FAILED"), flush=True)
        if not ok:
            failures.append(f"{label}: exit {rc}: {(stderr or stdout).strip()[-2000:]}")
        return stdout

    try:
        src = os.path.join(work, "release")
        step("make release-shaped (zarr, TP8)", [py, maker, "make", "--out", src, "--layers", str(a.layers)], src)
        info = json.loads(step("inspect --json", [tessera, "inspect", src, "--json"]) or "{}")
        total = sum(benchkit.apparent_bytes(os.path.join(src, "model_weights", d))
                    for d in os.listdir(os.path.join(src, "model_weights")))
        print(f"  source: {len(info.get('tensors', []))} tensors, {benchkit.human(total)} apparent")
        # The largest TP whose rank files exceed 8 GiB (tar members need base-256 sizes).
        tar_tp = next((tp for tp in (8, 4, 2, 1) if total / tp > 8.5 * GIB), 1)
        dist_pp = 4 if a.layers % 4 == 0 else (2 if a.layers % 2 == 0 else 1)
        pp2 = 2 if a.layers % 2 == 0 else 1
        outputs = [
            (f"nemo-tp8pp{pp2}", ["--tp", "8", "--pp", str(pp2), "--format", "nemo"], "nemo-legacy"),
            ("nemo-tp1pp1", ["--tp", "1", "--pp", "1", "--format", "nemo"], "nemo-legacy"),
            (f"tp{tar_tp}pp1.nemo", ["--tp", str(tar_tp), "--pp", "1", "--format", "nemo"], None),
            (f"dist-torch-tp4pp{dist_pp}", ["--tp", "4", "--pp", str(dist_pp), "--format", "dist-torch"], "dist-torch"),
            ("store.h5", ["--format", "hdf5"], "hdf5"),
        ]
        for name, args, fmt in outputs:
            dst = os.path.join(work, name)
            step(f"convert -> {name}", [tessera, "convert", src, dst, "--json"] + args, dst)
            if not os.path.exists(dst):
                continue
            check = [py, maker, "check", dst] + (["--format", fmt] if fmt else [])
            summary = step(f"  stamps in {name} (real libraries)", check)
            last = [l for l in summary.splitlines() if l.strip()]
            if last:
                print(f"      {last[-1]}")
            verdict = step(f"  verify --weights-only source {name}", [tessera, "verify", src, dst, "--weights-only"])
            print(f"      {[l for l in verdict.splitlines() if l.startswith('verdict')] or ['(no verdict)']}")
        # The engine against the float64 reference, from the source and the one-file copy.
        ref_json = os.path.join(work, "reference.json")
        step("reference forward (numpy float64, stamps)",
             [py, maker, "reference", "--ckpt-config", src, "--stamped-tokens", "3", "--json", ref_json])
        ref = json.load(open(ref_json)) if os.path.exists(ref_json) else None
        if ref:
            tokens = ",".join(str(t) for t in ref["tokens"])
            for name in ("release", "nemo-tp1pp1"):
                ckpt = src if name == "release" else os.path.join(work, name)
                out = step(f"forward fp32 --max-memory 8G ({name})",
                           [tessera, "forward", ckpt, "--tokens", tokens, "--precision", "fp32", "--max-memory", "8G", "--json",
                            "--timing"], stderr_lines=("cpu:",))
                if not out.strip():
                    continue
                got = json.loads(out.splitlines()[0])
                diffs = {k: rel_diff(got[g], ref[r]) for k, g, r in
                         (("rewards", "reward", "rewards"), ("logits", "logits", "last_logits"), ("hidden", "hidden", "hidden_last"))}
                line = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
                print(f"      tokens {tokens}: relative difference from the reference: {line}")
                if max(diffs.values()) > 1e-4:
                    failures.append(f"forward ({name}) differs from the reference: {line}")
        # The disk's own speed, in the same run, for the dense estimate.
        probe = os.path.join(work, "disk-probe")
        n = a.disk_probe_gib * 16
        w = benchkit.timed(["dd", "if=/dev/zero", f"of={probe}", "bs=64M", f"count={n}", "oflag=direct", "conv=fsync"])[0]
        benchkit.drop_caches()
        r = benchkit.timed(["dd", f"if={probe}", "of=/dev/null", "bs=64M", "iflag=direct"])[0]
        os.remove(probe)
        wbps, rbps = n * 64 * (1 << 20) / w, n * 64 * (1 << 20) / r
        print(f"disk (direct I/O, {a.disk_probe_gib} GiB): write {wbps / 1e9:.2f} GB/s, read {rbps / 1e9:.2f} GB/s")
        full = 682.06e9
        print(f"a dense checkpoint of {benchkit.human(total)} (this run) / 682 GB (the release) at these speeds:")
        print(f"  convert (read + write on one disk): {total / rbps + total / wbps:8.0f} s / {full / rbps + full / wbps:8.0f} s")
        print(f"  verify (read both):                 {2 * total / rbps:8.0f} s / {2 * full / rbps:8.0f} s")
        print(f"  forward (one pass over the weights): {total / rbps:8.0f} s / {full / rbps:8.0f} s")
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"cpu": benchkit.cpu_model(), "layers": a.layers,
                      "steps": [dict(zip(("step", "seconds", "peak_rss_mib", "physical_bytes", "apparent_bytes", "status"), r))
                                for r in rows]}))
    if failures:
        print("\nFAILED:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    print(f"fullscale: {len(rows)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
