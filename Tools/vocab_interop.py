#!/usr/bin/env python3
"""Proof that Tessera's vocabulary re-padding is loaded by megatron-core (issue: vocabulary
re-padding never drops a row that holds weights).

1. Zero rows added: the tiny fixture (local spelling, bf16, TP1) with
   `make_vocab_size_divisible_by: 1024` is converted by `tessera convert` to a TP1 legacy
   checkpoint whose padded vocabulary is 1024 rows (512 zero rows added). megatron-core builds
   the reward model with that padded vocabulary, `load_state_dict(strict=True)` takes the file,
   and its forward pass gives the rewards and logits of megatron-core's forward of the fixture
   itself, run in the same process on the same CPU (the added logits are zero). The stored
   reference outputs are not used: torch's BF16 CPU products round differently on each
   instruction-set class (AVX2, AVX-512, AVX512-BF16).
2. Zero rows dropped: the same checkpoint with the divisor back at 128 converts back to 512
   rows ("dropped-zero-padding"), and every tensor equals the original fixture's.
3. `override_vocab_size: 520` is the number of rows NeMo builds (NeMo-Aligner's
   `vocab_size=cfg.get("override_vocab_size", padded_vocab_size)`), not a vocabulary to pad:
   the conversion writes 520 rows (8 zero rows added, not 640), and megatron-core's reward model
   built with 520 rows takes the file with `strict=True` and gives the fixture's rewards.

Run with the interop venv's python: Tools/vocab_interop.py --tessera .build/release/tessera
Prints 'N passed, M failed'; exit 0 when all pass.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(TOOLS))
import interop_check as ic  # noqa: E402
import make_fixtures as mf  # noqa: E402

FIXTURE = REPO / "Tests/Fixtures/tiny/legacy_tp1pp1_bf16_local_none"


def set_divisor(folder, d):
    p = Path(folder) / "model_config.yaml"
    lines = [f"make_vocab_size_divisible_by: {d}" if l.startswith("make_vocab_size_divisible_by:") else l
             for l in p.read_text().splitlines()]
    p.write_text("\n".join(lines) + "\n")


def set_override(folder, rows):
    p = Path(folder) / "model_config.yaml"
    p.write_text(p.read_text().rstrip("\n") + f"\noverride_vocab_size: {rows}\n")


def convert(tessera, src, dst):
    r = subprocess.run([tessera, "convert", str(src), str(dst), "--tp", "1", "--pp", "1", "--spelling", "local", "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"tessera convert {src} -> {dst} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def main():
    tessera = ic.tessera_argument(__doc__)
    import torch
    from megatron.core import parallel_state

    work = Path(tempfile.mkdtemp(prefix="tessera-vocab-interop-"))
    checks = ic.Checks()
    check = checks.check

    try:
        src = work / "div1024"
        shutil.copytree(FIXTURE, src)
        set_divisor(src, 1024)
        padded = work / "padded"
        report = convert(tessera, src, padded)
        sd = torch.load(padded / "model_weights.ckpt", weights_only=True, map_location="cpu")
        emb = sd["model.embedding.word_embeddings.weight"]
        out = sd["model.output_layer.weight"]
        check(report["vocabulary"] == "padded" and emb.shape[0] == 1024 and out.shape[0] == 1024
              and bool((emb[512:] == 0).all()) and bool((out[512:] == 0).all()),
              "convert adds 512 zero rows (divisor 1024)", f"vocabulary {report['vocabulary']}, embedding {tuple(emb.shape)}")

        # megatron-core: the reward model built with the padded vocabulary takes the file.
        mf.setup_cpu()
        ic.init_dist(0, 1, 29000 + os.getpid() % 1000)
        parallel_state.initialize_model_parallel(1, 1)
        ref = json.loads((REPO / "Tests/Fixtures/tiny/reference/outputs.json").read_text())
        seqs = [s["ids"] for s in ref["sequences"]]
        assert seqs, "the fixture's reference lists no sequences"

        def megatron_forward(vocab_rows, state_dict):
            mf.VP = vocab_rows
            model = mf.build_model(1, 1, bf16=True)
            state = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
            missing, unexpected = mf.inner(model).load_state_dict(state, strict=True)
            return not missing and not unexpected, ic.pipeline_forward(model, seqs)

        original = torch.load(FIXTURE / "model_weights.ckpt", weights_only=True, map_location="cpu")
        rows = original["model.embedding.word_embeddings.weight"].shape[0]
        _, base = megatron_forward(rows, original)
        loaded, outs = megatron_forward(1024, sd)
        check(loaded, "megatron-core load_state_dict(strict=True) of the padded checkpoint")
        same_count = len(outs) == len(base) == len(seqs) and all(len(o["logits"]) == 1024 and len(b["logits"]) == rows
                                                                  for o, b in zip(outs, base))
        worst_r = max(abs(x - y) for o, b in zip(outs, base) for x, y in zip(o["rewards"], b["rewards"])) if same_count else float("inf")
        worst_l = max(abs(x - y) for o, b in zip(outs, base) for x, y in zip(o["logits"][:rows], b["logits"])) if same_count else float("inf")
        extra = max(abs(x) for o in outs for x in o["logits"][rows:]) if same_count else float("inf")
        check(same_count and worst_r <= 1e-6 and worst_l <= 1e-6 and extra == 0,
              f"its forward gives the fixture's own megatron-core rewards and logits ({rows} rows, same run); the added logits are zero",
              f"max |d reward| {worst_r:.1e}, max |d logit| {worst_l:.1e}, largest added logit {extra}")

        # And back: the zero rows are dropped, every tensor is the original's.
        set_divisor(padded, 128)
        back = work / "back"
        report = convert(tessera, padded, back)
        orig = original
        again = torch.load(back / "model_weights.ckpt", weights_only=True, map_location="cpu")
        tensors = [k for k, v in orig.items() if isinstance(v, torch.Tensor)]
        same = [k for k in tensors if k in again and again[k].dtype == orig[k].dtype and torch.equal(again[k], orig[k])]
        check(report["vocabulary"] == "dropped-zero-padding" and len(tensors) > 0 and len(same) == len(tensors),
              "convert back drops the zero rows; every tensor equals the fixture's",
              f"vocabulary {report['vocabulary']}, {len(same)} of {len(tensors)} tensors equal")

        # override_vocab_size: exactly that many rows.
        over = work / "override"
        shutil.copytree(FIXTURE, over)
        set_override(over, 520)
        report = convert(tessera, over, work / "override-out")
        sd = torch.load(work / "override-out" / "model_weights.ckpt", weights_only=True, map_location="cpu")
        emb = sd["model.embedding.word_embeddings.weight"]
        check(report["vocabulary"] == "padded" and emb.shape[0] == 520 and bool((emb[rows:] == 0).all()),
              "override_vocab_size 520: convert writes 520 rows (8 zero rows), not a padded 640",
              f"vocabulary {report['vocabulary']}, embedding {tuple(emb.shape)}")
        loaded, outs = megatron_forward(520, sd)
        worst_r = (max(abs(x - y) for o, b in zip(outs, base) for x, y in zip(o["rewards"], b["rewards"]))
                   if len(outs) == len(base) == len(seqs) else float("inf"))
        check(loaded and worst_r <= 1e-6, "megatron-core's reward model with 520 rows takes it (strict=True) and gives the fixture's rewards",
              f"max |d reward| {worst_r:.1e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
