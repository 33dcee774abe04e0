#!/usr/bin/env python3
"""Proof that Tessera's tensor-parallel rules are megatron-core's: a TP that does not divide the
hidden size is written and loaded for a GPT model, and refused for a reward model; a TP that is a
multiple of the query groups is written and loaded.

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
5. The fixtures' reward model (hidden 64, 4 query groups) converted to TP8, which megatron-core
   allows from 0.16 (each rank holds half a group's QKV rows): eight ranks load their files with
   `strict=True` and give TP1's rewards and logits within 1e-5 (the logits of the 512 rows added
   by TP8's vocabulary padding are zero).
6. Back: in cases 3 and 5 the ranks then save the model as megatron-core does (legacy rank
   files with torch.save, and dist_checkpointing's torch_dist), and `tessera verify` finds each
   save EQUIVALENT to the TP1 source.

Run with the interop venv's python: Tools/layout_interop.py --tessera .build/release/tessera
Prints 'N passed, M failed'; exit 0 when all pass.
"""
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import interop_check as ic  # Tools/ is the script's folder, first on sys.path
import make_fixtures as mf

REPO = Path(__file__).resolve().parent.parent

TOKENIZER_FIXTURE = REPO / "Tests/Fixtures/tiny/legacy_tp1pp1_bf16_local_none"
HIDDEN = 66


def use_model(hidden, tp):
    """The fixtures' model with this hidden size, its vocabulary padded for `tp` (in this process)."""
    mf.MODEL["hidden_size"] = hidden
    mf.VP = mf.padded_vocab(tp)


def outputs(model, seqs, reward_head):
    """Each sequence's last-position logits (gathered over the TP ranks) and, with the reward head, rewards."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    if reward_head:
        return [dict(logits=o["logits"], rewards=o["rewards"]) for o in ic.pipeline_forward(model, seqs)]
    m, outs = mf.inner(model), []
    with torch.no_grad():
        for ids in seqs:
            tok, pos, mask, _ = mf.forward_inputs(ids)
            lg = GPTModel.forward(m, input_ids=tok, position_ids=pos, attention_mask=mask)[0, len(ids) - 1].float().contiguous()
            parts = [torch.empty_like(lg) for _ in range(ps.get_tensor_model_parallel_world_size())]
            dist.all_gather(parts, lg, group=ps.get_tensor_model_parallel_group())
            outs.append(dict(logits=torch.cat(parts).tolist()))
    return outs


def save_checkpoint(model, folder):
    """A NeMo legacy TP1 folder of `model` with the fixtures' tokenizer."""
    import torch

    folder.mkdir()
    torch.save(mf.holder_state_dict(model), folder / "model_weights.ckpt")
    mf.finish_folder(folder, 1, 1, "fp32", next(TOKENIZER_FIXTURE.glob("*_tokenizer.model")), False)


def rank_worker(rank, world, port, folder, seqs, hidden, reward_head, q):
    """One TP rank: build the model, load this rank's file strictly, run the sequences, then save
    the model as megatron-core and torch write it: a legacy rank file (`megatron-legacy/`) and
    a torch_dist checkpoint (`megatron-dist/model_weights`) beside `folder`."""
    warnings.filterwarnings("ignore")
    import torch
    from megatron.core import parallel_state

    try:
        use_model(hidden, world)
        mf.setup_cpu()
        mf.init_dist(rank, world, port)
        parallel_state.initialize_model_parallel(world, 1)
        model = mf.build_model(world, 1, bf16=False, reward_head=reward_head)
        sd = torch.load(Path(folder) / f"mp_rank_{rank:02d}" / "model_weights.ckpt", weights_only=True, map_location="cpu")
        state = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
        missing, unexpected = mf.inner(model).load_state_dict(state, strict=True)
        q.put(("loaded", rank, not missing and not unexpected))
        outs = outputs(model, seqs, reward_head)
        if rank == 0:
            q.put(("outputs", rank, outs))
        import torch.distributed as dist
        from megatron.core import dist_checkpointing

        saved = Path(folder).parent / (Path(folder).name + "-megatron-legacy") / f"mp_rank_{rank:02d}"
        saved.mkdir(parents=True)
        torch.save(mf.holder_state_dict(model), saved / "model_weights.ckpt")
        weights = Path(folder).parent / (Path(folder).name + "-megatron-dist") / "model_weights"
        if rank == 0:
            weights.mkdir(parents=True)
        dist.barrier()
        dist_checkpointing.save(mf.inner(model).sharded_state_dict(prefix="model."), str(weights), ("torch_dist", 1))
        dist.barrier()
    except Exception as e:  # noqa: BLE001 - reported to the parent
        q.put(("error", rank, f"{type(e).__name__}: {str(e)[:300]}"))
    q.put(("done", rank, None))


def run_ranks(folder, seqs, tp, hidden, reward_head, timeout=900):
    """tp gloo ranks of rank_worker: which loaded strictly, rank 0's outputs, errors."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = mf.free_port()
    procs = [ctx.Process(target=rank_worker, args=(r, tp, port, str(folder), seqs, hidden, reward_head, q)) for r in range(tp)]
    for p in procs:
        p.start()
    loaded, outs, errors, done = {}, None, [], 0
    while done < tp:
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
            outs = value
        else:
            errors.append(f"rank {rank}: {value}")
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return loaded, outs, errors


def worst(outs, base, key):
    """Largest |difference| / largest |value| of one output over the sequences (inf if any is
    missing). A longer output (logits over a vocabulary padded for more ranks) must be zero beyond
    the base's length."""
    if outs is None or len(outs) != len(base) or any(len(o[key]) < len(b[key]) or not b[key] for o, b in zip(outs, base)):
        return float("inf")
    if any(v != 0 for o, b in zip(outs, base) for v in o[key][len(b[key]):]):
        return float("inf")
    return max(abs(x - y) / max(1e-6, max(abs(v) for v in b[key])) for o, b in zip(outs, base) for x, y in zip(o[key], b[key]))


def main():
    tessera = ic.tessera_argument(__doc__)
    from megatron.core import parallel_state

    work = Path(tempfile.mkdtemp(prefix="tessera-layout-interop-"))
    checks = ic.Checks()
    check = checks.check

    def convert(src, dst, tp):
        return subprocess.run([tessera, "convert", str(src), str(dst), "--tp", str(tp), "--pp", "1", "--spelling", "local"],
                              capture_output=True, text=True)

    def round_trip(what, source, tp, hidden, reward_head, base, seqs):
        """Convert to tp, load in tp megatron-core ranks, compare their outputs with TP1's."""
        target = work / f"{source.name}-tp{tp}"
        r = convert(source, target, tp)
        check(r.returncode == 0, f"tessera convert of {what} to TP{tp}", r.stderr.strip()[:300])
        if r.returncode != 0:
            return
        loaded, outs, errors = run_ranks(target, seqs, tp, hidden, reward_head)
        check(not errors and len(loaded) == tp and all(loaded.values()),
              f"megatron-core at TP{tp}: every rank's load_state_dict(strict=True) takes its file",
              "; ".join(errors) if errors else f"{len(loaded)} ranks")
        keys = ["logits", "rewards"] if reward_head else ["logits"]
        diffs = {k: worst(outs, base, k) for k in keys}
        check(all(d <= 1e-5 for d in diffs.values()), f"its forward at TP{tp} gives TP1's " + " and ".join(keys),
              "largest relative difference " + ", ".join(f"{k} {d:.1e}" for k, d in diffs.items()) + f" over {len(seqs)} sequences")
        # And back: what megatron-core saves at this layout (legacy rank files, torch_dist) is read
        # by Tessera as the same model.
        for form in ["legacy", "dist"]:
            saved = work / f"{target.name}-megatron-{form}"
            for name in os.listdir(target):
                if not name.startswith("mp_rank_") and (target / name).is_file():
                    shutil.copy(target / name, saved / name)
            v = subprocess.run([tessera, "verify", str(source), str(saved), "--json"], capture_output=True, text=True)
            report = json.loads(v.stdout) if v.stdout.strip().startswith("{") else {}
            tensors = report.get("tensors", [])
            same = [t for t in tensors if t.get("status") == "identical"]
            padded = [t["name"] for t in tensors if t.get("status") == "padding-differs"]  # TP8 pads the vocabulary further
            check(v.returncode == 0 and report.get("equivalent") is True and len(same) + len(padded) == len(tensors) > 0,
                  f"tessera verify: megatron-core's own TP{tp} {form} save of it equals the TP1 source",
                  f"exit {v.returncode}, {len(same)} of {len(tensors)} tensors identical"
                  + (f", {' and '.join(padded)} equal over the true vocabulary" if padded else "")
                  + f", {len(report.get('outputs', []))} probes compared" + (f"; {v.stderr.strip()[:200]}" if v.returncode else ""))

    try:
        mf.setup_cpu()
        mf.init_dist(0, 1, mf.free_port())
        parallel_state.initialize_model_parallel(1, 1)
        ref = json.loads((REPO / "Tests/Fixtures/tiny/reference/outputs.json").read_text())
        seqs = [s["ids"] for s in ref["sequences"]]
        assert seqs, "the fixture's reference lists no sequences"

        use_model(HIDDEN, 1)
        gpt = mf.build_model(1, 1, bf16=False, reward_head=False)
        mf.init_params_(gpt)
        save_checkpoint(gpt, work / "gpt66")
        round_trip(f"the hidden-{HIDDEN} GPT model (hidden size not a multiple of TP)", work / "gpt66", 4, HIDDEN, False,
                   outputs(gpt, seqs, False), seqs)

        headed = mf.build_model(1, 1, bf16=False, reward_head=True)
        mf.init_params_(headed)
        save_checkpoint(headed, work / "reward66")
        r = convert(work / "reward66", work / "reward66-tp4", 4)
        check(r.returncode == 2 and "rm_head.weight" in r.stderr and not (work / "reward66-tp4").exists(),
              "with the reward head (split over the hidden size) TP4 is refused, nothing written",
              f"exit {r.returncode}: {r.stderr.strip()[:200]}")

        use_model(64, 1)
        reward = mf.build_model(1, 1, bf16=False, reward_head=True)
        mf.init_params_(reward)
        save_checkpoint(reward, work / "reward64")
        round_trip("the fixtures' reward model (4 query groups)", work / "reward64", 8, 64, True, outputs(reward, seqs, True), seqs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
