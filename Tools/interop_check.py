#!/usr/bin/env python3
"""Proof against the real tools: Tessera's output read by torch, megatron-core, torch DCP and zarr.

    "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/interop_check.py [--tessera .build/release/tessera]

(or `Tools/interop.sh`, which prepares the venv and the binary first; see Tools/README.md).
Prints one line per check (`PASS  [n] ...` / `FAIL  [n] ...`), then a final line
`N passed, M failed`; exits 0 only if every check passed.

Checks
------
0. Reference: the global bf16/fp32 tensors reassembled from megatron-core's TP1/PP1 legacy
   fixtures hash to `reference/tensors.json` (everything below is compared with them).
1. Legacy output loads in torch. For every legacy fixture layout L (tp, pp, dtype,
   spelling) and for one or two source fixtures of another layout (a legacy one, and for
   bf16 also a distributed one; sources include both `.nemo` tars): `tessera convert SRC
   OUT --tp L.tp --pp L.pp --format nemo --spelling L.spelling` (OUT a `.nemo` tar for dist
   sources, extracted like NeMo does), then every rank file must pass
   `torch.load(path, weights_only=True)` (with `io.BytesIO` allowed through
   `torch.serialization.safe_globals` only when the source carries BytesIO extra state;
   the line says when that was needed), and every tensor key (not `*_extra_state`) must be
   bit-identical (dtype, shape, raw bytes) to megatron-core's fixture file of layout L.
   The full key set (with `_extra_state`) must be equal when the source is legacy and has
   L's spelling; otherwise a key difference is reported but only tensor keys can fail.
   `model_config.yaml` must carry the new tp/pp.
2. Distributed output loads in megatron-core into another layout. Tessera writes
   dist-torch at TP2/PP1 and TP1/PP2 (megatron-core 0.16.1 then loads both at TP2/PP2 in
   4 gloo processes) and dist-zarr at TP2/PP1 and TP1/PP2 (megatron-core 0.15.3, first on
   PYTHONPATH, loads both at TP1/PP1). Each rank poisons its parameters with NaN, runs
   `dist_checkpointing.load` + `load_state_dict(strict=True)`, compares every loaded shard
   (dtype, shape, bits) with the matching slice of the reference tensors, then the bf16
   model (Float16Module, as make_fixtures.py) runs the reference sequences (pipeline stages
   linked by gloo send/recv) and final-LN output, logits and rewards are compared with
   `reference/outputs.json` (bf16) within BF16_TOL. Controls: megatron-core's own
   dist fixtures go through the same path. megatron-core 0.15.3 torch.loads ShardedObjects
   with weights_only=True, so TE BytesIO extra state needs io.BytesIO allowed (its own
   fixture's too); that is done only for BytesIO sources and printed.
3. Tessera's torch_dist `.metadata` reads with
   `torch.distributed.checkpoint.FileSystemReader(...).read_metadata()` (keys, sizes,
   dtypes equal to megatron-core's fixture; chunks tile every tensor) and
   `torch.distributed.checkpoint.load` (no megatron) returns the reference values; every
   zarr array Tessera writes opens with zarr 2.18 after `import tensorstore` and equals the
   fixture's array and the reference.

The megatron-core-on-CPU harness (CPU patches, model builder, name helpers, fixture
reassembly) is imported from make_fixtures.py.
"""

import argparse
import collections
import datetime
import io
import json
import os
import tempfile
import queue
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
import warnings
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
REPO = TOOLS_DIR.parent
sys.dont_write_bytecode = True  # no Tools/__pycache__ in the work tree
sys.path.insert(0, str(TOOLS_DIR))
import make_fixtures as mf  # noqa: E402

# make_fixtures.py records (does not enforce) the bf16 TP2-vs-TP1 forward difference in
# outputs.json `tp2_check` (max 0.0498, logits); python-peers.md: bf16 comparisons need a
# tolerance of about 0.1.
BF16_TOL = 0.1

# Check 1 plan: (legacy fixture of layout L, source fixture name). Every legacy fixture
# gets a legacy source of another layout; bf16 ones also a distributed source. Spellings
# cover te->te, local->te, te->local, local->local; extra-state forms all cross.
CHECK1_PLAN = [
    ("legacy_tp1pp1_bf16_te_bytesio", "legacy_tp2pp2_bf16_te_bytesio.nemo"),
    ("legacy_tp1pp1_bf16_te_bytesio", "dist_zarr_tp2pp2_bf16"),
    ("legacy_tp2pp1_bf16_te_uint8_pickle", "legacy_tp1pp1_bf16_te_bytesio"),
    ("legacy_tp2pp1_bf16_te_uint8_pickle", "dist_torch_tp2pp2_bf16"),
    ("legacy_tp1pp2_bf16_te_uint8_empty", "legacy_tp4pp1_bf16_te_none"),
    ("legacy_tp1pp2_bf16_te_uint8_empty", "dist_zarr_tp1pp1_bf16"),
    ("legacy_tp2pp2_bf16_te_bytesio", "legacy_tp1pp1_bf16_local_none"),
    ("legacy_tp2pp2_bf16_te_bytesio", "dist_torch_tp1pp1_bf16_mcore0192|dist_torch_tp1pp1_bf16"),
    ("legacy_tp4pp1_bf16_te_none", "legacy_tp1pp2_bf16_te_uint8_empty"),
    ("legacy_tp4pp1_bf16_te_none", "dist_zarr_tp2pp2_bf16.nemo"),
    ("legacy_tp2pp2_bf16_local_none", "legacy_tp1pp1_bf16_te_bytesio"),
    ("legacy_tp2pp2_bf16_local_none", "dist_torch_tp1pp1_bf16"),
    ("legacy_tp1pp1_bf16_local_none", "legacy_tp2pp2_bf16_local_none"),
    ("legacy_tp1pp1_bf16_local_none", "dist_torch_tp2pp2_bf16"),
    ("legacy_tp1pp1_fp32_te_uint8_pickle", "legacy_tp2pp2_fp32_te_bytesio"),
    ("legacy_tp2pp1_fp32_te_none", "legacy_tp1pp2_fp32_te_bytesio"),
    ("legacy_tp1pp2_fp32_te_bytesio", "legacy_tp4pp1_fp32_te_uint8_empty"),
    ("legacy_tp2pp2_fp32_te_bytesio", "legacy_tp2pp1_fp32_te_none"),
    ("legacy_tp4pp1_fp32_te_uint8_empty", "legacy_tp1pp1_fp32_te_uint8_pickle"),
]

# Check 2/3 plan: (name, source fixture, format, tp, pp). Loaded at LOAD_LAYOUT[format].
DIST_PLAN = [
    ("torch_tp2pp1", "legacy_tp1pp2_bf16_te_uint8_empty", "dist-torch", 2, 1),
    ("torch_tp1pp2", "dist_zarr_tp2pp2_bf16.nemo", "dist-torch", 1, 2),
    ("zarr_tp2pp1", "dist_torch_tp2pp2_bf16", "dist-zarr", 2, 1),
    ("zarr_tp1pp2", "legacy_tp2pp2_bf16_te_bytesio", "dist-zarr", 1, 2),
]
LOAD_LAYOUT = {"dist-torch": (2, 2), "dist-zarr": (1, 1)}
# megatron-core's own fixtures loaded the same way (controls for the harness).
CONTROLS = {"dist-torch": "dist_torch_tp1pp1_bf16", "dist-zarr": "dist_zarr_tp2pp2_bf16"}

_T0 = time.time()
# torch.distributed.checkpoint's CheckpointException derives from BaseException.
try:
    from torch.distributed.checkpoint.api import CheckpointException

    ERRORS = (Exception, CheckpointException)
except ImportError:
    ERRORS = (Exception,)


def note(*a):
    """Progress on stderr (stdout carries only the check lines and the summary)."""
    print(f"[{time.time() - _T0:6.1f}s]", *a, file=sys.stderr, flush=True)


class Checks:
    """PASS/FAIL lines on stdout and their counts (also used by the other interop proofs)."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def _tally(self, ok):
        self.passed, self.failed = self.passed + bool(ok), self.failed + (not ok)
        return "PASS" if ok else "FAIL"

    def add(self, ok, num, what, detail=""):
        print(f"{self._tally(ok)}  [{num}] {what}" + (f" -- {detail}" if detail else ""), flush=True)

    def check(self, ok, what, detail=""):
        """One unnumbered check: `PASS what: detail`."""
        print(f"{self._tally(ok)} {what}" + (f": {detail}" if detail else ""), flush=True)

    def summary(self):
        """Prints `N passed, M failed`; the exit status (0 only when some passed and none failed)."""
        print(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 and self.passed > 0 else 1


def tessera_argument(doc):
    """The binary an interop proof runs: its --tessera argument (default $TESSERA_BIN, else the
    release build); `doc`'s first paragraph is the --help text."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--tessera", default=os.environ.get("TESSERA_BIN", str(REPO / ".build/release/tessera")))
    return ap.parse_args().tessera


def layout(f):
    return f"TP{f['tp']}PP{f['pp']}"


def bits(t):
    import torch

    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def same_bits(a, b):
    import torch

    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and torch.equal(bits(a), bits(b))


def extra_form(v):
    import torch

    if v is None:
        return "none"
    if isinstance(v, io.BytesIO):
        return "bytesio"
    if isinstance(v, torch.Tensor):
        return f"{str(v.dtype).replace('torch.', '')}[{v.numel()}]"
    return type(v).__name__


def run_tessera(tessera, *argv):
    r = subprocess.run([tessera, *map(str, argv)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"`tessera {' '.join(map(str, argv))}` exited {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[:400]}")
    return r.stdout


def fixture_path(root, f):
    return root / f["path"]


# --------------------------------------------------------------------------------------
# Reference tensors (check 0)
# --------------------------------------------------------------------------------------
def reference_tensors(fixtures_root, manifest, checks):
    """Global canonical tensors per dtype from megatron-core's TP1/PP1 legacy fixtures,
    verified against tensors.json."""
    want = json.loads((fixtures_root / "tiny/reference/tensors.json").read_text())
    ref = {}
    for dtype in ("bf16", "fp32"):
        f = next(x for x in manifest["fixtures"] if x["format"] == "legacy" and x["container"] == "folder"
                 and x["tp"] == 1 and x["pp"] == 1 and x["dtype"] == dtype)
        got = mf.assemble_legacy(fixture_path(fixtures_root, f), 1, 1)
        bad = sorted(set(got) ^ set(want[dtype]))
        bad += [c for c in sorted(set(got) & set(want[dtype]))
                if mf.sha256_tensor(got[c]) != want[dtype][c]["sha256"]]
        checks.add(not bad, 0, f"reference {dtype}: {len(got)} global tensors of {f['name']} match tensors.json",
                   f"mismatch: {bad[:5]}" if bad else "")
        ref[dtype] = got
    return ref


# --------------------------------------------------------------------------------------
# Check 1: legacy output in torch
# --------------------------------------------------------------------------------------
def load_ckpt(path, allow_bytesio):
    """torch.load(weights_only=True); BytesIO allowed only if allow_bytesio.
    Returns (state_dict, bytesio_was_needed)."""
    import torch

    try:
        return torch.load(path, weights_only=True), False
    except ERRORS as e:  # noqa: BLE001
        if not (allow_bytesio and "BytesIO" in str(e)):
            raise
    with torch.serialization.safe_globals([io.BytesIO]):
        return torch.load(path, weights_only=True), True


def load_trusted(path):
    import torch

    with torch.serialization.safe_globals([io.BytesIO]):
        return torch.load(path, weights_only=True)


def check1_one(args, fixtures_root, work, L, S, n):
    import yaml

    tag = f"legacy {layout(L)} {L['dtype']} {L['key_spelling']} <- {S['name']} ({S['format']} {layout(S)})"
    is_dist = S["format"] != "legacy"
    out = work / "c1" / f"{n:02d}_{L['name']}__{S['name'].replace('.', '_')}"
    dst = out.with_suffix(".nemo") if is_dist else out
    run_tessera(args.tessera, "convert", fixture_path(fixtures_root, S), dst, "--tp", L["tp"], "--pp", L["pp"],
                "--format", "nemo", "--spelling", L["key_spelling"], "--force")
    if is_dist:  # unpack the tar as NeMo does (safe members only)
        out.mkdir(parents=True)
        with tarfile.open(dst) as tar:
            tar.extractall(out, filter="data")
    problems, notes = [], []
    cfg = yaml.safe_load((out / "model_config.yaml").read_text())
    if (cfg.get("tensor_model_parallel_size"), cfg.get("pipeline_model_parallel_size")) != (L["tp"], L["pp"]):
        problems.append(f"model_config.yaml tp/pp = {cfg.get('tensor_model_parallel_size')}/"
                        f"{cfg.get('pipeline_model_parallel_size')}")
    want_files = sorted(mf.legacy_rank_path(L["tp"], L["pp"], t, p) for t in range(L["tp"]) for p in range(L["pp"]))
    got_files = sorted(str(p.relative_to(out)) for p in out.rglob("model_weights.ckpt"))
    if got_files != want_files:
        problems.append(f"rank files {got_files} != {want_files}")
    allow_bytesio = S.get("extra_state") == "bytesio"
    strict_keys = (not is_dist) and S["key_spelling"] == L["key_spelling"]
    n_tensors, bytesio_used, key_diffs, forms_out, forms_ref, md_info = 0, False, [], set(), set(), set()
    for rel in want_files:
        p = out / rel
        if not p.exists():
            continue
        try:
            sd, used = load_ckpt(p, allow_bytesio)
            bytesio_used |= used
        except ERRORS as e:  # noqa: BLE001
            problems.append(f"{rel}: torch.load(weights_only=True) failed: {str(e).splitlines()[0][:200]}")
            continue
        ref = load_trusted(fixture_path(fixtures_root, L) / rel)
        mo, mr = getattr(sd, "_metadata", None) or {}, getattr(ref, "_metadata", None) or {}
        if mo != mr:
            md_info.add((len(mo), len(mr), all(mo[k] == mr[k] for k in set(mo) & set(mr))))
        tk_out = {k for k in sd if not k.endswith("_extra_state")}
        tk_ref = {k for k in ref if not k.endswith("_extra_state")}
        for k in sorted(tk_ref - tk_out):
            problems.append(f"{rel}: tensor key missing: {k}")
        for k in sorted(tk_out - tk_ref):
            problems.append(f"{rel}: unexpected tensor key: {k}")
        for k in sorted(tk_out & tk_ref):
            a, b = sd[k], ref[k]
            if not hasattr(a, "dtype") or not same_bits(a, b):
                problems.append(f"{rel}: {k}: got {getattr(a, 'dtype', type(a))} {tuple(getattr(a, 'shape', ()))}, "
                                f"want {b.dtype} {tuple(b.shape)}" + (" (values differ)" if hasattr(a, "dtype") and
                                                                       a.dtype == b.dtype and a.shape == b.shape else ""))
            else:
                n_tensors += 1
        if set(sd) != set(ref):
            d = [f"+{k}" for k in sorted(set(sd) - set(ref))] + [f"-{k}" for k in sorted(set(ref) - set(sd))]
            key_diffs.append((rel, d))
            if strict_keys:
                problems.append(f"{rel}: key set differs from the fixture: {d[:4]}{' ...' if len(d) > 4 else ''}")
        forms_out |= {extra_form(v) for k, v in sd.items() if k.endswith("_extra_state")}
        forms_ref |= {extra_form(v) for k, v in ref.items() if k.endswith("_extra_state")}
    detail = [f"{len(want_files)} rank file(s) torch.load(weights_only=True)"
              + (" [io.BytesIO allowed via safe_globals: source carries BytesIO extra state]" if bytesio_used else ""),
              f"{n_tensors} tensors bit-identical"]
    if key_diffs:
        nd = sum(len(d) for _, d in key_diffs)
        ex = key_diffs[0][1][:3]
        detail.append(f"key set differs ({nd} _extra_state keys over {len(key_diffs)} files, e.g. {ex}"
                      f"{'' if strict_keys else '; by design, not failed'})")
    else:
        detail.append("key set equal")
    detail.append(f"extra_state out={{{','.join(sorted(forms_out))}}} fixture={{{','.join(sorted(forms_ref))}}}")
    if md_info:
        detail.append(f"_metadata has {'/'.join(str(a) for a, _, _ in sorted(md_info))} module entries per file vs "
                      f"the fixture's {'/'.join(sorted({str(b) for _, b, _ in md_info}))}, common entries "
                      f"{'equal' if all(e for _, _, e in md_info) else 'DIFFER'} (info)")
    if problems:
        detail = problems[:6] + ([f"... {len(problems) - 6} more"] if len(problems) > 6 else [])
    return not problems, tag, "; ".join(detail)


def check1(args, fixtures_root, manifest, work, checks):
    by_name = {f["name"]: f for f in manifest["fixtures"]}
    legacy = [f for f in manifest["fixtures"] if f["format"] == "legacy" and f["container"] == "folder"]
    plan = []
    for lname, snames in CHECK1_PLAN:
        sname = next((s for s in snames.split("|") if s in by_name), None)
        if lname in by_name and sname:
            plan.append((by_name[lname], by_name[sname]))
    for L in legacy:  # any legacy fixture the table does not know: first other-layout source
        if not any(p[0] is L for p in plan):
            S = next(s for s in manifest["fixtures"] if s["dtype"] == L["dtype"] and (s["tp"], s["pp"]) !=
                     (L["tp"], L["pp"]))
            plan.append((L, S))
    for n, (L, S) in enumerate(plan):
        assert (L["tp"], L["pp"]) != (S["tp"], S["pp"]) and L["dtype"] == S["dtype"], (L["name"], S["name"])
        try:
            ok, tag, detail = check1_one(args, fixtures_root, work, L, S, n)
        except ERRORS as e:  # noqa: BLE001
            ok, tag, detail = False, f"legacy {layout(L)} {L['dtype']} {L['key_spelling']} <- {S['name']}", str(e)
        checks.add(ok, 1, tag, detail)


# --------------------------------------------------------------------------------------
# Check 3: torch DCP metadata and zarr arrays
# --------------------------------------------------------------------------------------
def global_dist_tensor(ref, fqn):
    """Reference global tensor of a dist-checkpoint key (decoder layers stacked)."""
    import torch

    c = fqn[len("model."):]
    if c.startswith("decoder.layers."):
        rest = c[len("decoder.layers."):]
        n = mf.MODEL["num_layers"]
        return torch.stack([ref[f"decoder.layers.{i}.{rest}"] for i in range(n)])
    return ref[c]


def check3_torch(out, fixtures_root, manifest, ref, what, checks):
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    problems = []
    md = FileSystemReader(str(out / "model_weights")).read_metadata()
    fx = next(f for f in manifest["fixtures"] if f["format"] == "torch_dist" and f["container"] == "folder"
              and f["tp"] * f["pp"] > 1)
    fmd = FileSystemReader(str(fixture_path(fixtures_root, fx) / "model_weights")).read_metadata()
    if set(md.state_dict_metadata) != set(fmd.state_dict_metadata):
        problems.append(f"keys differ from {fx['name']}: "
                        f"{sorted(set(md.state_dict_metadata) ^ set(fmd.state_dict_metadata))[:4]}")
    tensors = {}
    for fqn, tmd in md.state_dict_metadata.items():
        if not isinstance(tmd, TensorStorageMetadata):
            continue
        f = fmd.state_dict_metadata.get(fqn)
        if f is None or tuple(tmd.size) != tuple(f.size) or tmd.properties.dtype != f.properties.dtype:
            problems.append(f"{fqn}: size/dtype {tuple(tmd.size)} {tmd.properties.dtype} vs fixture "
                            f"{None if f is None else (tuple(f.size), f.properties.dtype)}")
        cover = torch.zeros(tuple(tmd.size), dtype=torch.int8)
        for ch in tmd.chunks:
            cover[tuple(slice(o, o + s) for o, s in zip(ch.offsets, ch.sizes))] += 1
        if not bool((cover == 1).all()):
            problems.append(f"{fqn}: chunks do not tile the tensor exactly once")
        tensors[fqn] = torch.full(tuple(tmd.size), float("nan"), dtype=tmd.properties.dtype)
    dcp.load(tensors, storage_reader=FileSystemReader(str(out / "model_weights")))
    nok = 0
    for fqn, t in tensors.items():
        if same_bits(t, global_dist_tensor(ref, fqn)):
            nok += 1
        else:
            problems.append(f"{fqn}: torch.distributed.checkpoint.load value differs from reference")
    checks.add(not problems, 3, f"torch DCP reads {what}",
               "; ".join(problems[:5]) if problems else
               f"read_metadata OK ({len(md.state_dict_metadata)} items, keys/sizes/dtypes = {fx['name']}, "
               f"chunks tile); dcp.load: {nok} tensors bit-identical to reference")


def check3_zarr(out, fixtures_root, manifest, ref, what, checks):
    import tensorstore  # noqa: F401  (numpy learns bfloat16, as megatron-core's zarr strategy relies on)
    import numpy as np
    import torch
    import zarr

    problems = []
    fx = next(f for f in manifest["fixtures"] if f["format"] == "zarr" and f["container"] == "folder"
              and f["tp"] * f["pp"] > 1)
    fdir = fixture_path(fixtures_root, fx) / "model_weights"
    root = out / "model_weights"
    mine = sorted(d.name for d in root.iterdir() if (d / ".zarray").exists())
    theirs = sorted(d.name for d in fdir.iterdir() if (d / ".zarray").exists())
    if mine != theirs:
        problems.append(f"arrays differ from {fx['name']}: {sorted(set(mine) ^ set(theirs))[:4]}")
    nok = 0
    for name in mine:
        try:
            a = zarr.open(str(root / name), mode="r")[:]
        except ERRORS as e:  # noqa: BLE001
            problems.append(f"{name}: zarr.open failed: {e}")
            continue
        b = zarr.open(str(fdir / name), mode="r")[:] if name in theirs else None
        if b is None or a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(
                a.view(np.uint8), b.view(np.uint8)):
            problems.append(f"{name}: {a.dtype} {a.shape} differs from the fixture's array")
            continue
        t = torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16) if str(a.dtype) == "bfloat16" \
            else torch.from_numpy(a.copy())
        if not same_bits(t, global_dist_tensor(ref, name)):
            problems.append(f"{name}: differs from the reference")
            continue
        nok += 1
    checks.add(not problems, 3, f"zarr {zarr.__version__} (after import tensorstore) opens {what}",
               "; ".join(problems[:5]) if problems else
               f"{nok} arrays, dtype {sorted({str(zarr.open(str(root / n), mode='r').dtype) for n in mine})}, "
               f"equal to {fx['name']}'s arrays and to the reference")


# --------------------------------------------------------------------------------------
# Check 2: megatron-core loads Tessera's distributed output at another layout
# --------------------------------------------------------------------------------------
def init_dist(rank, world, port):
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=180))


def pipeline_forward(model, ids_list):
    """mf.run_forward generalised to PP>1 (stage outputs passed by gloo send/recv as fp32,
    cast back to the model dtype: lossless). Returns per sequence final_ln, gathered
    logits, rewards on the last stage, None elsewhere."""
    from unittest.mock import patch

    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    m = mf.inner(model)
    first, last = ps.is_pipeline_first_stage(), ps.is_pipeline_last_stage()
    dtype = next(m.parameters()).dtype
    tp = ps.get_tensor_model_parallel_world_size()
    outs = []
    with torch.no_grad():
        for ids in ids_list:
            S = len(ids)
            tok, pos, mask, lengths = mf.forward_inputs(ids)
            x = None
            if not first:
                buf = torch.empty(S, 1, mf.MODEL["hidden_size"], dtype=torch.float32)
                dist.recv(buf, src=ps.get_pipeline_model_parallel_prev_rank())
                x = buf.to(dtype)

            def call(fn):
                if x is not None:
                    m.set_input_tensor(x)
                return fn()

            fwd = lambda: GPTModel.forward(m, input_ids=tok, position_ids=pos, attention_mask=mask)  # noqa: E731
            if not last:
                h = call(fwd)
                dist.send(h.float().contiguous(), dst=ps.get_pipeline_model_parallel_next_rank())
                continue
            with patch.object(m, "post_process", False):
                hidden = call(fwd)
            logits = call(fwd)
            rewards = call(lambda: m(tok, lengths, pos, mask))
            lg = logits[0, S - 1].float().contiguous()
            parts = [torch.empty_like(lg) for _ in range(tp)]
            dist.all_gather(parts, lg, group=ps.get_tensor_model_parallel_group())
            outs.append(dict(final_ln=hidden[S - 1, 0].float().tolist(), logits=torch.cat(parts).tolist(),
                             rewards=rewards[0].float().tolist()))
    return outs if last else None


def load_worker(rank, world, port, tp, pp, ckpts, ref_path, seqs, q):
    """One rank of layout B: build the bf16 model once, then for each checkpoint: poison,
    dist_checkpointing.load, load_state_dict(strict), compare shards, forward."""
    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed as dist
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core import __version__ as mcore_version
    from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor

    mf.setup_cpu()
    init_dist(rank, world, port)
    parallel_state.initialize_model_parallel(tp, pp)
    ref = torch.load(ref_path, weights_only=True)
    model = mf.build_model(tp, pp, bf16=True)
    im = mf.inner(model)
    for name, path, allow_bytesio in ckpts:
        res = dict(name=name, rank=rank, mcore=mcore_version, error=None, n=0, bad=[], objects=[], forward=None,
                   bytesio=False)

        def attempt():
            with torch.no_grad():
                for p in im.parameters():
                    p.fill_(float("nan"))
            ssd = im.sharded_state_dict(prefix="model.")
            meta, objs, bad = {}, [], []
            for k, v in ssd.items():
                if isinstance(v, ShardedTensor):
                    meta[k] = (v.key, tuple(v.global_offset), tuple(v.local_shape), v.prepend_axis_num,
                               tuple(v.global_shape), v.flattened_range)
                elif isinstance(v, ShardedObject):
                    objs.append(k)
                else:
                    bad.append(f"{k}: unexpected sharded type {type(v).__name__}")
            return meta, objs, bad, dist_checkpointing.load(ssd, path)

        try:
            try:
                meta, objs, bad, loaded = attempt()
            except ERRORS as e:  # noqa: BLE001
                # megatron-core reads ShardedObject files with torch.load's default
                # weights_only=True (torch >= 2.6): TE's BytesIO extra state needs allowing.
                if not (allow_bytesio and "BytesIO" in str(e)):
                    raise
                res["bytesio"] = True
                with torch.serialization.safe_globals([io.BytesIO]):
                    meta, objs, bad, loaded = attempt()
            res["bad"] += bad
            res["objects"] = sorted({extra_form(loaded[k]) for k in objs})
            res["n_objects"] = len(objs)
            im.load_state_dict({k[len("model."):]: v for k, v in loaded.items()}, strict=True)
            state = im.state_dict()
            for k, (key, off, lshape, npre, gshape, frange) in meta.items():
                g = global_dist_tensor(ref, key)
                if tuple(g.shape) != gshape or frange is not None:
                    res["bad"].append(f"{key}: global shape {tuple(g.shape)} vs {gshape} / flattened {frange}")
                    continue
                want = g[tuple(slice(o, o + s) for o, s in zip(off, (1,) * npre + lshape))].reshape(lshape)
                got = loaded[k]
                if not same_bits(got, want):
                    res["bad"].append(f"{k} (offset {off}): loaded {got.dtype} {tuple(got.shape)} vs reference "
                                      f"{want.dtype} {tuple(want.shape)}"
                                      + (" values differ" if got.dtype == want.dtype and got.shape == want.shape
                                         else ""))
                elif not same_bits(state[k[len("model."):]], want):
                    res["bad"].append(f"{k}: module state after load_state_dict differs")
                else:
                    res["n"] += 1
        except ERRORS:  # noqa: BLE001
            res["error"] = traceback.format_exc().strip().splitlines()[-1][:400]
        ok = torch.tensor([0 if res["error"] else 1])
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if int(ok) == 1:
            try:
                fw = pipeline_forward(model, [s["ids"] for s in seqs])
                if fw is not None and parallel_state.get_tensor_model_parallel_rank() == 0:
                    res["forward"] = fw
            except ERRORS:  # noqa: BLE001
                res["error"] = "forward: " + traceback.format_exc().strip().splitlines()[-1][:400]
        q.put(("result", res))
    q.put(("done", rank))
    dist.barrier()
    dist.destroy_process_group()


def run_group(tp, pp, ckpts, ref_path, seqs, timeout=600):
    """Spawn tp*pp gloo ranks running load_worker; return their result dicts."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    world, port = tp * pp, mf.free_port()
    procs = [ctx.Process(target=load_worker, args=(r, world, port, tp, pp, ckpts, ref_path, seqs, q))
             for r in range(world)]
    for p in procs:
        p.start()
    results, done, t0 = [], 0, time.time()
    while done < world:
        try:
            kind, val = q.get(timeout=5)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.time() - t0 > timeout:
                for p in procs:
                    if p.is_alive():
                        p.kill()
                results.append(dict(name="*", rank=-1, error=f"ranks died/hung (exit codes {dead})"))
                break
            continue
        if kind == "done":
            done += 1
        else:
            results.append(val)
    for p in procs:
        p.join(timeout=30)
    return results


class _ListQueue(list):
    def put(self, item):
        self.append(item)


def zarr_phase(work):
    """Internal: runs under megatron-core 0.15.3 (PYTHONPATH), one rank (TP1/PP1)."""
    plan = json.loads((work / "zarr_plan.json").read_text())
    q = _ListQueue()
    load_worker(0, 1, mf.free_port(), plan["tp"], plan["pp"], plan["ckpts"], plan["ref"], plan["seqs"], q)
    (work / "zarr_results.json").write_text(json.dumps([v for k, v in q if k == "result"]))


def report_group(results, ckpts, info, fmt, tp, pp, want_mcore, outputs, checks):
    for name, path, allow in ckpts:
        rs = [r for r in results if r["name"] in (name, "*")]
        src, stp, spp = info[name]
        mc_txt = f"megatron-core {next((r['mcore'] for r in rs if 'mcore' in r), '?')} TP{tp}PP{pp}"
        if name.startswith("control:"):
            what = f"control: megatron-core's own fixture {src} ({fmt} TP{stp}PP{spp}) -> {mc_txt}"
        else:
            what = f"{fmt} TP{stp}PP{spp} (tessera from {src}) -> {mc_txt}"
        errs = [f"rank {r['rank']}: {r['error']}" for r in rs if r.get("error")]
        if len({r["rank"] for r in rs if r["rank"] >= 0}) != tp * pp and not errs:
            errs.append(f"results from {len(rs)} of {tp * pp} ranks")
        mc = {r.get("mcore") for r in rs if r.get("mcore")}
        if mc and mc != {want_mcore}:
            errs.append(f"ran megatron-core {mc}, wanted {want_mcore}")
        bad = [b for r in rs for b in r.get("bad", [])]
        n = sum(r.get("n", 0) for r in rs)
        objs = max((r.get("n_objects", 0) for r in rs), default=0)
        checks.add(not errs and not bad and n > 0, 2, f"{what}: dist_checkpointing.load + load_state_dict(strict)",
                   "; ".join((errs + bad)[:5]) if errs or bad else
                   f"{n} loaded shards over {tp * pp} rank(s) bit-identical to the reference slices "
                   f"(params NaN-poisoned first); {objs} ShardedObjects per rank loaded, forms "
                   f"{sorted({o for r in rs for o in r.get('objects', [])})}"
                   + (" [io.BytesIO allowed via safe_globals: megatron-core torch.loads ShardedObjects with "
                      "weights_only=True and the source carries BytesIO extra state]"
                      if any(r.get("bytesio") for r in rs) else ""))
        fw = next((r["forward"] for r in rs if r.get("forward")), None)
        if fw is None:
            checks.add(False, 2, f"{what}: forward", "no forward result" + (f" ({errs[0]})" if errs else ""))
            continue
        diffs = {}
        for k in ("final_ln", "logits", "rewards"):
            diffs[k] = max(max(abs(a - b) for a, b in zip(o[k], w[k])) for o, w in zip(fw, outputs["bf16"]))
        shape_ok = len(fw) == len(outputs["bf16"]) and all(
            len(o[k]) == len(w[k]) for o, w in zip(fw, outputs["bf16"]) for k in diffs)
        ok = shape_ok and all(v <= BF16_TOL for v in diffs.values())
        tp2 = outputs.get("tp2_check", {}).get("max_abs_diff", {}).get("bf16", {})
        checks.add(ok, 2, f"{what}: bf16 forward vs outputs.json ({len(fw)} sequences)",
                   "max|diff| " + ", ".join(f"{k} {v:.4g}" for k, v in diffs.items())
                   + f" (tol {BF16_TOL}; make_fixtures' TP2 run: "
                   + ", ".join(f"{k} {v:.4g}" for k, v in tp2.items()) + ")"
                   + ("" if shape_ok else "; output lengths differ"))


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tessera", default=os.environ.get("TESSERA_BIN", str(REPO / ".build/release/tessera")))
    ap.add_argument("--fixtures", type=Path, default=REPO / "Tests/Fixtures")
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch dir (converted checkpoints); emptied first")
    ap.add_argument("--mcore015", type=Path, default=Path(os.environ.get("TESSERA_MCORE015", os.environ.get(
        "TESSERA_VENV", os.path.expanduser("~/.cache/tessera-venv")) + "-mcore015")),
                    help="--target dir holding megatron-core 0.15.3 (zarr backend)")
    ap.add_argument("--phase", default="all", choices=["all", "zarr-load"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="tessera-interop-"))).resolve()
    if args.phase == "zarr-load":
        zarr_phase(work)
        return 0
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # spawned ranks: no megatron import warnings
    import torch

    fixtures_root = args.fixtures.resolve()
    args.tessera = str(Path(args.tessera).resolve())
    if not os.access(args.tessera, os.X_OK):
        print(f"tessera binary not found: {args.tessera}", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    manifest = json.loads((fixtures_root / "tiny/manifest.json").read_text())
    outputs = json.loads((fixtures_root / "tiny/reference/outputs.json").read_text())
    by_name = {f["name"]: f for f in manifest["fixtures"]}
    checks = Checks()
    timings = {}

    t = time.time()
    ref = reference_tensors(fixtures_root, manifest, checks)
    ref_path = work / "ref_bf16.pt"
    torch.save(ref["bf16"], ref_path)
    timings["0 reference"] = time.time() - t

    t = time.time()
    note("check 1: legacy output in torch")
    check1(args, fixtures_root, manifest, work, checks)
    timings["1 legacy"] = time.time() - t

    t = time.time()
    note("converting to dist-torch / dist-zarr")
    info, made = {}, {}
    for name, src, fmt, tp, pp in DIST_PLAN:
        out = work / "c2" / name
        info[name] = (src, tp, pp)
        try:
            run_tessera(args.tessera, "convert", fixture_path(fixtures_root, by_name[src]), out, "--tp", tp, "--pp", pp,
                        "--format", fmt, "--force")
            made[name] = out
        except ERRORS as e:  # noqa: BLE001
            checks.add(False, 2, f"tessera convert {src} -> {fmt} TP{tp}PP{pp}", str(e))

    note("check 3: torch DCP metadata, zarr arrays")
    for name, src, fmt, tp, pp in DIST_PLAN:
        if name not in made:
            continue
        what = f"tessera {fmt} TP{tp}PP{pp} (from {src})"
        try:
            (check3_torch if fmt == "dist-torch" else check3_zarr)(made[name], fixtures_root, manifest, ref["bf16"],
                                                                   what, checks)
        except ERRORS as e:  # noqa: BLE001
            checks.add(False, 3, what, f"{type(e).__name__}: {str(e)[:300]}")
    timings["3 dcp/zarr"] = time.time() - t

    t = time.time()
    seqs = outputs["sequences"]
    groups = collections.defaultdict(list)
    for name, src, fmt, tp, pp in DIST_PLAN:
        if name in made:
            assert (tp, pp) != LOAD_LAYOUT[fmt]
            groups[fmt].append((name, str(made[name] / "model_weights"), by_name[src]["extra_state"] == "bytesio"))
    # controls: megatron-core loading its own fixture the same way (proves the harness)
    for fmt, fxname in CONTROLS.items():
        f = by_name.get(fxname)
        if f and groups.get(fmt):
            info["control:" + fxname] = (fxname, f["tp"], f["pp"])
            groups[fmt].append(("control:" + fxname, str(fixture_path(fixtures_root, f) / "model_weights"),
                                f["extra_state"] == "bytesio"))
    zproc = None
    if groups.get("dist-zarr"):  # megatron-core 0.15.3 subprocess, overlapped with the torch group
        ztp, zpp = LOAD_LAYOUT["dist-zarr"]
        (work / "zarr_plan.json").write_text(json.dumps(dict(tp=ztp, pp=zpp, ckpts=groups["dist-zarr"],
                                                             ref=str(ref_path), seqs=seqs)))
        env = dict(os.environ, PYTHONPATH=str(args.mcore015) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        note(f"check 2: dist-zarr loads in megatron-core 0.15.3 at TP{ztp}PP{zpp} (subprocess)")
        zproc = subprocess.Popen([sys.executable, __file__, "--phase", "zarr-load", "--work", str(work)], env=env,
                                 stdout=sys.stderr)  # megatron prints; stdout is for check lines only
    if groups.get("dist-torch"):
        ttp, tpp = LOAD_LAYOUT["dist-torch"]
        note(f"check 2: dist-torch loads in megatron-core 0.16.1 at TP{ttp}PP{tpp} ({ttp * tpp} gloo ranks)")
        res = run_group(ttp, tpp, groups["dist-torch"], str(ref_path), seqs)
        report_group(res, groups["dist-torch"], info, "dist-torch", ttp, tpp, "0.16.1", outputs, checks)
    if zproc is not None:
        try:
            rc = zproc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            zproc.kill()
            rc = "timeout"
        rf = work / "zarr_results.json"
        res = json.loads(rf.read_text()) if rf.exists() else [
            dict(name="*", rank=-1, error=f"megatron-core 0.15.3 subprocess failed ({rc})")]
        report_group(res, groups["dist-zarr"], info, "dist-zarr", ztp, zpp, "0.15.3", outputs, checks)
    timings["2 mcore load+forward"] = time.time() - t

    note("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
         + f"; total {time.time() - _T0:.1f}s")
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    if args.work is None and args.phase == "all":
        shutil.rmtree(work, ignore_errors=True)   # our own temporary folder
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
