#!/usr/bin/env python3
"""Proof that Tessera's tensor-parallel rules are megatron-core's: a TP that does not divide the
hidden size is written and loaded for a GPT model, and refused for a reward model.

megatron-core's TransformerConfig requires TP to divide the attention heads and the query
groups, and its parallel linear layers the dimension they split (a column-parallel layer's
outputs, a row-parallel layer's inputs: heads x kv_channels, or the FFN size). Only NeMo-Aligner's
reward head (a RowParallelLinear over the hidden size) splits the hidden size.

1. megatron-core builds the tiny model (8 heads, 4 query groups, FFN 256) with hidden size 66
   at TP1 without the reward head, seeded random weights, saved as a NeMo legacy checkpoint
   (local spelling, FP32) with the fixtures' 500-piece tokenizer.
2. `tessera convert --tp 4` writes it as a TP4 legacy checkpoint (66 is not a multiple of 4).
3. Four gloo ranks of megatron-core build the GPT model at TP4, each rank's
   `load_state_dict(strict=True)` takes its file, and the forward pass gives TP1's last-position
   logits within 1e-5 (the row-parallel sums are cut differently).
4. The same model with NeMo-Aligner's reward head: `tessera convert --tp 4` is refused (exit 2,
   naming rm_head.weight), as megatron-core cannot build that head at TP4.

Run with the interop venv's python: Tools/layout_interop.py --tessera .build/release/tessera
Prints 'N passed, M failed'; exit 0 when all pass.
"""
import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(TOOLS))
import interop_check as ic  # noqa: E402
import make_fixtures as mf  # noqa: E402

HIDDEN = 66
TP = 4
TOKENIZER_FIXTURE = REPO / "Tests/Fixtures/tiny/legacy_tp1pp1_bf16_local_none"


def use_hidden():
    """The fixtures' model with HIDDEN as its hidden size (in this process)."""
    mf.MODEL["hidden_size"] = HIDDEN
    mf.VP = mf.padded_vocab(1)


def last_logits(model, seqs):
    """Each sequence's last-position logits, gathered over the TP ranks."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    m, outs = mf.inner(model), []
    with torch.no_grad():
        for ids in seqs:
            tok, pos, mask, _ = mf.forward_inputs(ids)
            lg = GPTModel.forward(m, input_ids=tok, position_ids=pos, attention_mask=mask)[0, len(ids) - 1].float().contiguous()
            parts = [torch.empty_like(lg) for _ in range(ps.get_tensor_model_parallel_world_size())]
            dist.all_gather(parts, lg, group=ps.get_tensor_model_parallel_group())
            outs.append(torch.cat(parts).tolist())
    return outs


def save_checkpoint(model, folder):
    """A NeMo legacy TP1 folder of `model` with the fixtures' tokenizer."""
    import torch

    folder.mkdir()
    torch.save(mf.holder_state_dict(model), folder / "model_weights.ckpt")
    mf.finish_folder(folder, 1, 1, "fp32", next(TOKENIZER_FIXTURE.glob("*_tokenizer.model")), False)


def rank_worker(rank, world, port, folder, seqs, q):
    """One TP rank: build the model, load this rank's file strictly, run the sequences."""
    warnings.filterwarnings("ignore")
    import torch
    from megatron.core import parallel_state

    try:
        use_hidden()
        mf.setup_cpu()
        mf.init_dist(rank, world, port)
        parallel_state.initialize_model_parallel(world, 1)
        model = mf.build_model(world, 1, bf16=False, reward_head=False)
        sd = torch.load(Path(folder) / f"mp_rank_{rank:02d}" / "model_weights.ckpt", weights_only=True, map_location="cpu")
        state = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
        missing, unexpected = mf.inner(model).load_state_dict(state, strict=True)
        q.put(("loaded", rank, not missing and not unexpected))
        outs = last_logits(model, seqs)
        if rank == 0:
            q.put(("outputs", rank, outs))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        q.put(("error", rank, f"{type(e).__name__}: {str(e)[:300]}"))
    q.put(("done", rank, None))


def run_ranks(folder, seqs, timeout=600):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = mf.free_port()
    procs = [ctx.Process(target=rank_worker, args=(r, TP, port, str(folder), seqs, q)) for r in range(TP)]
    for p in procs:
        p.start()
    loaded, outputs, errors, done = {}, None, [], 0
    while done < TP:
        try:
            kind, rank, value = q.get(timeout=timeout)
        except queue.Empty:
            errors.append("ranks hung")
            break
        if kind == "done":
            done += 1
        elif kind == "loaded":
            loaded[rank] = value
        elif kind == "outputs":
            outputs = value
        else:
            errors.append(f"rank {rank}: {value}")
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return loaded, outputs, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tessera", default=os.environ.get("TESSERA_BIN", str(REPO / ".build/release/tessera")))
    a = ap.parse_args()
    import torch
    from megatron.core import parallel_state

    work = Path(tempfile.mkdtemp(prefix="tessera-layout-interop-"))
    passed = failed = 0

    def check(ok, what, detail=""):
        nonlocal passed, failed
        passed, failed = passed + bool(ok), failed + (not ok)
        print(f"{'PASS' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""), flush=True)

    try:
        use_hidden()
        mf.setup_cpu()
        mf.init_dist(0, 1, mf.free_port())
        parallel_state.initialize_model_parallel(1, 1)
        model = mf.build_model(1, 1, bf16=False, reward_head=False)
        mf.init_params_(model)
        source = work / "tp1"
        save_checkpoint(model, source)
        ref = json.loads((REPO / "Tests/Fixtures/tiny/reference/outputs.json").read_text())
        seqs = [s["ids"] for s in ref["sequences"]]
        assert seqs, "the fixture's reference lists no sequences"
        base = last_logits(model, seqs)

        target = work / f"tp{TP}"
        r = subprocess.run([a.tessera, "convert", str(source), str(target), "--tp", str(TP), "--pp", "1", "--spelling", "local",
                            "--json"], capture_output=True, text=True)
        check(r.returncode == 0, f"tessera convert of the hidden-{HIDDEN} GPT model to TP{TP} (hidden size not a multiple of TP)",
              r.stderr.strip()[:300] if r.returncode else "")
        if r.returncode == 0:
            loaded, outs, errors = run_ranks(target, seqs)
            check(not errors and len(loaded) == TP and all(loaded.values()),
                  f"megatron-core at TP{TP}: every rank's load_state_dict(strict=True) takes its file",
                  "; ".join(errors) if errors else f"{len(loaded)} ranks")
            same = outs is not None and len(outs) == len(base) == len(seqs) and all(len(o) == len(b) > 0 for o, b in zip(outs, base))
            worst = (max(abs(x - y) / max(1e-6, max(abs(v) for v in b)) for o, b in zip(outs, base) for x, y in zip(o, b))
                     if same else float("inf"))
            check(same and worst <= 1e-5, f"its forward at TP{TP} gives TP1's last-position logits",
                  f"largest relative difference {worst:.1e} over {len(seqs)} sequences")

        headed = mf.build_model(1, 1, bf16=False, reward_head=True)
        mf.init_params_(headed)
        save_checkpoint(headed, work / "reward-tp1")
        r = subprocess.run([a.tessera, "convert", str(work / "reward-tp1"), str(work / "reward-tp4"), "--tp", str(TP)],
                           capture_output=True, text=True)
        check(r.returncode == 2 and "rm_head.weight" in r.stderr and not (work / "reward-tp4").exists(),
              f"with the reward head (split over the hidden size) TP{TP} is refused, nothing written",
              f"exit {r.returncode}: {r.stderr.strip()[:200]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
