#!/usr/bin/env python3
"""Shapes nobody chose: the engine and the converter against transformers on random Nemotron shapes.

Each case draws a Nemotron configuration at random (hidden size, heads, query groups, head
size independent of hidden / heads, FFN size, vocabulary, 1-3 layers, rotary share 0.5 or
1.0, a quarter with biases on every linear layer), fills transformers' NemotronForCausalLM, or
in half the cases NemotronForSequenceClassification (1-9 outputs: NeMo-Aligner's reward head
without its bias), with random weights (layer-norm weights too) and writes it with
`save_pretrained` in FP32 or BF16 (the reference then runs the BF16 values in FP32). Then:

1. `tessera forward --precision fp32` of a batch of random sequences (1-40 tokens) reads the
   folder as it is, on every kernel path this CPU supports (`TESSERA_ISA`), and its
   last-position logits (or rewards) equal transformers' FP32 ones within 1e-4 of the largest.
2. `tessera convert` writes it in a random NeMo format (legacy, dist-torch, dist-zarr, HDF5)
   at a random valid layout (TP dividing heads and FFN size, and dividing the query groups or a
   multiple of them; any PP, an uneven split given as `--stage-layers`); `verify` of the HF
   folder against it is EQUIVALENT, and `forward` of the converted checkpoint gives
   transformers' outputs within the same bound. A reward head whose hidden size TP does not
   divide (the head splits it) must instead be refused, naming rm_head.weight, nothing written.

The seed is printed; `--seed` replays a run. Prints one line per case and `N passed, M failed`;
exit 0 only when all pass.

Run: "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/shape_sweep.py --count 12
"""
import argparse
import copy
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import NemotronConfig, NemotronForCausalLM, NemotronForSequenceClassification

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ["portable", "avx2", "avx512", "avx512bf16", "amx"]
FORMATS = ["nemo", "dist-torch", "dist-zarr", "hdf5"]
TOLERANCE = 1e-4


def draw(rng):
    """A random, valid Nemotron configuration, and a tensor-parallel size it allows (query groups
    and FFN size drawn as multiples of it, so layouts beyond TP1 come up)."""
    tp = rng.choice([1, 2, 2, 3, 4])
    if tp > 1 and rng.random() < 0.3:  # fewer query groups than TP (megatron-core 0.16)
        groups = tp // rng.choice([d for d in range(2, tp + 1) if tp % d == 0])
        heads = tp * rng.choice([1, 2])
    else:
        groups = tp * rng.choice([1, 1, 2])
        heads = groups * rng.choice([1, 2, 3])
    # TP splits the QKV rows (groups x (heads / groups + 2) x head size) evenly.
    head_dim = rng.choice([d for d in [4, 6, 8, 10, 12, 16] if groups * (heads // groups + 2) * d % tp == 0])
    rotary = rng.choice([0.5, 1.0]) if head_dim % 4 == 0 else 1.0
    bias = rng.random() < 0.25  # NeMo's bias: true (every linear layer)
    cfg = NemotronConfig(vocab_size=rng.randint(40, 700), hidden_size=rng.choice([16, 24, 40, 48, 56, 72, 96, 128]),
                         intermediate_size=tp * rng.randint(3, 100), num_hidden_layers=rng.randint(1, 3),
                         num_attention_heads=heads, num_key_value_heads=groups, head_dim=head_dim,
                         max_position_embeddings=256, norm_eps=1e-5, partial_rotary_factor=rotary, rope_theta=10000.0,
                         tie_word_embeddings=False, attention_bias=bias, mlp_bias=bias)
    cfg.tessera_rotary = rotary  # transformers 5 keeps it under rope_parameters
    return cfg, tp


def describe(c):
    return (f"hidden {c.hidden_size}, ffn {c.intermediate_size}, {c.num_hidden_layers} layers, {c.num_attention_heads} heads "
            f"of {c.head_dim} in {c.num_key_value_heads} groups, rotary {c.tessera_rotary}, vocab {c.vocab_size}"
            + (", biases" if c.attention_bias else ""))


def tessera(binary, *args, env=None):
    return subprocess.run([binary, *args], capture_output=True, text=True, env=dict(os.environ, **(env or {})))


def worst_difference(stdout, references, key):
    """Largest |difference| / largest |value| of `key` (logits or reward) over the sequences (inf
    when an output is missing or short; logits beyond the reference's vocabulary are padding)."""
    outs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    if len(outs) != len(references):
        return math.inf
    worst = 0.0
    for out, ref in zip(outs, references):
        got = torch.tensor((out.get(key) or [])[:ref.numel()], dtype=torch.float64)
        if got.numel() != ref.numel():
            return math.inf
        worst = max(worst, ((got - ref).abs().max() / ref.abs().max().clamp(min=1e-6)).item())
    return worst


def run_case(binary, rng, work, index):
    cfg, tp = draw(rng)
    torch.manual_seed(rng.randrange(1 << 30))
    # Half the cases are reward models: transformers' score layer is NeMo-Aligner's rm_head
    # without its bias, read by Tessera as a bias-free head.
    reward = rng.random() < 0.5
    if reward:
        cfg.num_labels = rng.randint(1, 9)
    model = (NemotronForSequenceClassification if reward else NemotronForCausalLM)(cfg).eval()
    key = "reward" if reward else "logits"
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if "norm" in name else 0.08))
    dtype = rng.choice(["float32", "bfloat16"])
    folder = os.path.join(work, f"case{index}")
    if dtype == "bfloat16":
        # Stored in BF16; the reference runs those values in FP32. The parameters are rounded in
        # place: converting the model would round its RoPE frequency buffer too.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        copy.deepcopy(model).to(torch.bfloat16).save_pretrained(folder)
    else:
        model.save_pretrained(folder)
    seqs = [[rng.randrange(cfg.vocab_size) for _ in range(rng.randint(1, 40))] for _ in range(rng.randint(1, 4))]
    batch = folder + ".jsonl"
    with open(batch, "w") as f:
        f.writelines(json.dumps(s) + "\n" for s in seqs)
    with torch.no_grad():
        references = [(model(torch.tensor([s])).logits[0] if reward else model(torch.tensor([s])).logits[0, -1]).double() for s in seqs]
    problems, ran = [], []
    for path in PATHS:
        r = tessera(binary, "forward", folder, "--input", batch, "--precision", "fp32", "--json", env={"TESSERA_ISA": path})
        if r.returncode == 2 and "lacks its instructions" in r.stderr:
            continue
        ran.append(path)
        d = worst_difference(r.stdout, references, key) if r.returncode == 0 else math.inf
        if d > TOLERANCE:
            problems.append(f"forward on {path}: exit {r.returncode}, relative difference {d:.2e} {r.stderr.strip()[:200]}")
    layers = cfg.num_hidden_layers
    pp = rng.randint(1, layers)
    stages = [layers // pp] * pp if layers % pp == 0 else None
    if stages is None:  # an uneven split: every stage at least one layer
        cuts = sorted(rng.sample(range(1, layers), pp - 1))
        stages = [b - a for a, b in zip([0] + cuts, cuts + [layers])]
    fmt = rng.choice(FORMATS)
    dst = folder + "-" + fmt
    split = [] if layers % pp == 0 else ["--stage-layers", ",".join(map(str, stages))]
    r = tessera(binary, "convert", folder, dst, "--tp", str(tp), "--pp", str(pp), "--format", fmt, *split)
    refused = reward and cfg.hidden_size % tp != 0  # the reward head splits the hidden size: megatron-core cannot build it
    if refused:
        if r.returncode != 2 or "rm_head.weight" not in r.stderr or os.path.exists(dst):
            problems.append(f"convert to {fmt} TP{tp}: a reward head over hidden {cfg.hidden_size} must be refused naming "
                            f"rm_head.weight, nothing written; exit {r.returncode} {r.stderr.strip()[:200]}")
    elif r.returncode != 0:
        problems.append(f"convert to {fmt} TP{tp} PP{pp}: exit {r.returncode} {r.stderr.strip()[:200]}")
    else:
        v = tessera(binary, "verify", folder, dst)
        if v.returncode != 0:
            problems.append(f"verify against {fmt} TP{tp} PP{pp}: exit {v.returncode} {(v.stdout + v.stderr).strip()[-300:]}")
        f = tessera(binary, "forward", dst, "--input", batch, "--precision", "fp32", "--json")
        d = worst_difference(f.stdout, references, key) if f.returncode == 0 else math.inf
        if d > TOLERANCE:
            problems.append(f"forward of {fmt} TP{tp} PP{pp}: exit {f.returncode}, relative difference {d:.2e} {f.stderr.strip()[:200]}")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(dst, ignore_errors=True)
    if os.path.exists(dst):
        os.remove(dst)
    os.remove(batch)
    what = (f"case {index}: {describe(cfg)}, {dtype}" + (f", {cfg.num_labels}-output reward head" if reward else "")
            + f"; {len(seqs)} sequences; paths {', '.join(ran)}; {fmt} TP{tp} PP{pp}"
            + (f" (stages {','.join(map(str, stages))})" if split else "") + (" refused, as it must be" if refused else ""))
    return what, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tessera", default=os.environ.get("TESSERA_BIN", os.path.join(ROOT, ".build/release/tessera")))
    ap.add_argument("--count", type=int, default=12, help="random cases to run")
    ap.add_argument("--seed", type=int, default=None, help="replay a run (default: a fresh seed, printed)")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"seed {seed} (replay with --seed {seed})", flush=True)
    assert a.count > 0, "no cases to run"
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="tessera-shape-sweep-")
    passed = failed = 0
    try:
        for i in range(a.count):
            what, problems = run_case(a.tessera, rng, work, i)
            print(f"{'FAIL' if problems else 'PASS'} {what}", flush=True)
            for p in problems:
                print(f"    {p}", flush=True)
            passed, failed = passed + (not problems), failed + bool(problems)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed (seed {seed})")
    return 0 if failed == 0 and passed == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
