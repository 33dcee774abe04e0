#!/usr/bin/env python3
"""Generate Tessera's tiny NeMo / Megatron checkpoint fixtures with real megatron-core.

One command regenerates everything (see Tools/README.md):

    "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/make_fixtures.py --out Tests/Fixtures

What it does
------------
1. Trains a tiny SentencePiece BPE tokenizer (vocab 500, byte fallback).
2. Builds a tiny Nemotron-4-architecture reward model with megatron-core's GPTModel
   (local layer spec, FusedLayerNorm with zero-centred gamma, squared-relu, RoPE 50%)
   plus NeMo-Aligner's RewardModelHead (`rm_head`, 9 outputs, bias), fills every
   parameter with seeded random values and saves it once as an fp32 torch_dist
   "master" checkpoint (outside the output tree).
3. For each TP x PP layout spawns TP*PP gloo processes on localhost; each rank builds
   its shard of the model and fills it with `dist_checkpointing.load` from the master
   (megatron-core does all slicing), then writes NeMo legacy per-rank
   `model_weights.ckpt` files (several key spellings / `_extra_state` forms / dtypes)
   and, for some layouts, megatron distributed checkpoints (torch_dist with
   megatron-core 0.16.1; zarr with megatron-core 0.15.3 in a subprocess; optionally
   torch_dist with megatron-core 0.19.2 under Python 3.12).
4. Writes model_config.yaml + tokenizer artifact into every unpacked NeMo folder,
   packs two `.nemo` tars, computes reference outputs and tensor hashes, writes
   bad-input fixtures and the manifest.

Internal phases (`--phase`) are used to re-invoke this file under other interpreters
or PYTHONPATHs; the default phase `all` does everything.
"""

import tempfile
import argparse
import collections
import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import random
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

SEED = 20240614
TOOLS_DIR = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------
# Model definition (NeMo 1.0 config key names)
# --------------------------------------------------------------------------------------
TRUE_VOCAB = 500
MODEL = dict(
    num_layers=4,
    hidden_size=64,
    ffn_hidden_size=256,
    num_attention_heads=8,
    num_query_groups=4,
    kv_channels=8,
    make_vocab_size_divisible_by=128,
    encoder_seq_length=64,
    max_position_embeddings=64,
    layernorm_epsilon=1e-5,
    rotary_percentage=0.5,
    rotary_base=10000,
    num_attributes=9,
)


def padded_vocab(tp):
    m = MODEL["make_vocab_size_divisible_by"] * tp
    return int(math.ceil(TRUE_VOCAB / m) * m)


# Padded vocab used by every layout we make (512 for TP 1, 2, 4).
VP = padded_vocab(1)
assert all(padded_vocab(t) == VP for t in (1, 2, 4))

# --------------------------------------------------------------------------------------
# Fixture plan
# --------------------------------------------------------------------------------------
# Legacy per-rank torch.save files.  spelling: "te" (TransformerEngine-built NeMo names)
# or "local" (megatron-core local spec names, as written by this generator's model).
# extra: None | "bytesio" | "uint8_pickle" | "uint8_empty" ("natural" = as the local
# spec writes it, i.e. None).
LEGACY = [  # (tp, pp, dtype, spelling, extra), in manifest order
    (1, 1, "bf16", "te", "bytesio"), (2, 1, "bf16", "te", "uint8_pickle"), (1, 2, "bf16", "te", "uint8_empty"),
    (2, 2, "bf16", "te", "bytesio"), (4, 1, "bf16", "te", "none"), (2, 2, "bf16", "local", "none"),
    (1, 1, "bf16", "local", "none"), (1, 1, "fp32", "te", "uint8_pickle"), (2, 1, "fp32", "te", "none"),
    (1, 2, "fp32", "te", "bytesio"), (2, 2, "fp32", "te", "bytesio"), (4, 1, "fp32", "te", "uint8_empty"),
]
# Distributed checkpoints (bf16, TE key names as megatron-core maps them).
# extra: form of the decoder linears' `_extra_state` ShardedObjects.
DIST = [
    # (backend, tp, pp, extra, mcore)
    ("torch_dist", 1, 1, "none", "0.16.1"),
    ("torch_dist", 2, 2, "uint8_pickle", "0.16.1"),
    ("zarr", 1, 1, "bytesio", "0.15.3"),
    ("zarr", 2, 2, "bytesio", "0.15.3"),
    ("torch_dist", 1, 1, "bytesio", "0.19.2"),  # optional (needs the Python 3.12 venv, --py312)
]
NEMO_TARS = ["legacy_tp2pp2_bf16_te_bytesio", "dist_zarr_tp2pp2_bf16"]
LAYOUTS = [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)]


def legacy_name(tp, pp, dtype, spelling, extra):
    return f"legacy_tp{tp}pp{pp}_{dtype}_{spelling}_{extra}"


def dist_name(backend, tp, pp, mcore):
    suffix = "" if mcore != "0.19.2" else "_mcore0192"
    b = "torch" if backend == "torch_dist" else backend
    return f"dist_{b}_tp{tp}pp{pp}_bf16{suffix}"


def legacy_rank_path(tp, pp, tp_rank, pp_rank):
    """NeMo's inject_model_parallel_rank naming."""
    if tp * pp == 1:
        return "model_weights.ckpt"
    if pp == 1:
        return f"mp_rank_{tp_rank:02d}/model_weights.ckpt"
    return f"tp_rank_{tp_rank:02d}_pp_rank_{pp_rank:03d}/model_weights.ckpt"


_T0 = __import__("time").time()


def log(*a):
    print(f"[{__import__('time').time() - _T0:6.1f}s]", *a, flush=True)


# --------------------------------------------------------------------------------------
# megatron-core on CPU (python-peers.md "Making megatron-core run on CPU")
# --------------------------------------------------------------------------------------
def setup_cpu():
    import torch

    # 1. device placement queries and synchronisation
    torch.cuda.current_device = lambda: torch.device("cpu")
    torch.cuda.synchronize = lambda *a, **k: None

    from megatron.core.tensor_parallel import random as tpr

    tpr.CudaRNGStatesTracker.fork = lambda self, name=None: contextlib.nullcontext()

    # 2. zero-centred-gamma LayerNorm: keep megatron's FusedLayerNorm module (params, +1,
    # keys), replace only the apex autograd function by a torch implementation.
    import megatron.core.fusions.fused_layer_norm as fln

    class TorchLayerNormAffineFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, weight, bias, normalized_shape, eps, memory_efficient=False):
            y = torch.nn.functional.layer_norm(
                input.float(), normalized_shape, weight.float(), bias.float(), eps
            )
            return y.to(input.dtype)

    fln.FusedLayerNormAffineFunction = TorchLayerNormAffineFunction
    fln.HAVE_FUSED_LAYER_NORM = True
    import megatron.core.transformer.transformer_block as tb

    tb.LayerNormImpl = fln.FusedLayerNorm  # final_layernorm
    return fln.FusedLayerNorm


def init_dist(rank, world, port):
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_model(tp, pp, bf16, reward_head=True):
    """Build this rank's GPTRewardModel (fp32 params; wrapped in Float16Module if bf16), or
    without reward_head the plain GPTModel it extends."""
    import torch
    from megatron.core import parallel_state
    from megatron.core.activations import squared_relu
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.module import Float16Module
    from megatron.core.transformer.transformer_config import TransformerConfig
    from nemo_aligner.models.nlp.gpt.gpt_reward_model import GPTRewardModel

    LN = setup_cpu()
    spec = get_gpt_layer_local_spec()
    spec.submodules.input_layernorm = LN
    spec.submodules.pre_mlp_layernorm = LN
    cfg = TransformerConfig(
        num_layers=MODEL["num_layers"],
        hidden_size=MODEL["hidden_size"],
        ffn_hidden_size=MODEL["ffn_hidden_size"],
        num_attention_heads=MODEL["num_attention_heads"],
        num_query_groups=MODEL["num_query_groups"],
        kv_channels=MODEL["kv_channels"],
        layernorm_zero_centered_gamma=True,
        normalization="LayerNorm",
        layernorm_epsilon=MODEL["layernorm_epsilon"],
        add_bias_linear=False,
        activation_func=squared_relu,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        apply_query_key_layer_scaling=False,
        use_cpu_initialization=True,
        perform_initialization=False,
        params_dtype=torch.float32,
        bf16=bf16,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        masked_softmax_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
    )
    pre = parallel_state.is_pipeline_first_stage()
    post = parallel_state.is_pipeline_last_stage()
    common = dict(config=cfg, transformer_layer_spec=spec, vocab_size=VP, max_sequence_length=MODEL["encoder_seq_length"],
                  pre_process=pre, post_process=post, parallel_output=True, share_embeddings_and_output_weights=False,
                  position_embedding_type="rope", rotary_percent=MODEL["rotary_percentage"], rotary_base=MODEL["rotary_base"])
    if reward_head:
        m = GPTRewardModel(**common, head_dtype=torch.float32,  # NeMo-Aligner's force_head_dtype default
                           num_attributes=MODEL["num_attributes"])
    else:
        from megatron.core.models.gpt import GPTModel

        m = GPTModel(**common)
    m.eval()
    if bf16:
        return Float16Module(cfg, m)  # casts every parameter (norms, rm_head too) to bf16
    return m


def inner(m):
    return getattr(m, "module", m)


# --------------------------------------------------------------------------------------
# Canonical names / init
# --------------------------------------------------------------------------------------
def te_name(local_key):
    """local-spec key -> TransformerEngine-spec key (no-op for other keys)."""
    k = local_key.replace(".input_layernorm.weight", ".self_attention.linear_qkv.layer_norm_weight")
    k = k.replace(".input_layernorm.bias", ".self_attention.linear_qkv.layer_norm_bias")
    k = k.replace(".pre_mlp_layernorm.weight", ".mlp.linear_fc1.layer_norm_weight")
    k = k.replace(".pre_mlp_layernorm.bias", ".mlp.linear_fc1.layer_norm_bias")
    return k


def init_std(name):
    if name.endswith("layer_norm_weight") or name.endswith("final_layernorm.weight"):
        return 0.2  # zero-centred gamma: effective gamma = 1 + 0.2*N(0,1)
    if name.endswith("layer_norm_bias") or name.endswith("final_layernorm.bias"):
        return 0.1
    if name == "embedding.word_embeddings.weight":
        return 1.0
    if name == "rm_head.bias":
        return 0.5
    if name.endswith("linear_fc2.weight"):
        return 1.0 / math.sqrt(MODEL["ffn_hidden_size"])
    return 1.0 / math.sqrt(MODEL["hidden_size"])


def init_params_(model):
    """Seeded N(0, std) for every parameter, seeded by canonical (TE) name."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            cname = te_name(name)
            s = int.from_bytes(hashlib.sha256(f"{SEED}:{cname}".encode()).digest()[:8], "little")
            g = torch.Generator().manual_seed(s)
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * init_std(cname))


# --------------------------------------------------------------------------------------
# _extra_state forms (TransformerEngine history, nemo-formats.md 2.3)
# --------------------------------------------------------------------------------------
def make_extra(form):
    import torch

    if form in ("none", "natural"):
        return None
    if form == "bytesio":  # TE before PR #1335: BytesIO holding torch.save(state), pos at end
        buf = io.BytesIO()
        torch.save(None, buf)
        return buf
    if form == "uint8_pickle":  # TE 2024-12 .. 2025-05
        return torch.frombuffer(bytearray(pickle.dumps(None)), dtype=torch.uint8)
    if form == "uint8_empty":  # TE since PR #1799
        return torch.empty(0, dtype=torch.uint8)
    raise ValueError(form)


TE_LINEARS = (
    "self_attention.linear_proj",
    "self_attention.linear_qkv",
    "mlp.linear_fc1",
    "mlp.linear_fc2",
)


def to_te_spelling(sd, extra):
    """Rename a local-spec state dict to the TransformerEngine spelling a TE-built NeMo
    model has, in TE's per-layer key order, with `_extra_state` of the given form for the
    TE modules (linear_qkv, linear_proj, linear_fc1, linear_fc2, core_attention).
    output_layer/rm_head are megatron-core linears in a TE model too: their
    `_extra_state` stays None."""
    out = collections.OrderedDict()
    done = set()
    keys = list(sd.keys())
    for k in keys:
        parts = k.split(".")
        if k.startswith("model.decoder.layers.") and parts[3].isdigit():
            i = parts[3]
            if i in done:
                continue
            done.add(i)
            P = f"model.decoder.layers.{i}."
            out[P + "self_attention.core_attention._extra_state"] = make_extra(extra)
            out[P + "self_attention.linear_proj.weight"] = sd[P + "self_attention.linear_proj.weight"]
            out[P + "self_attention.linear_proj._extra_state"] = make_extra(extra)
            out[P + "self_attention.linear_qkv.layer_norm_weight"] = sd[P + "input_layernorm.weight"]
            out[P + "self_attention.linear_qkv.layer_norm_bias"] = sd[P + "input_layernorm.bias"]
            out[P + "self_attention.linear_qkv.weight"] = sd[P + "self_attention.linear_qkv.weight"]
            out[P + "self_attention.linear_qkv._extra_state"] = make_extra(extra)
            out[P + "mlp.linear_fc1.layer_norm_weight"] = sd[P + "pre_mlp_layernorm.weight"]
            out[P + "mlp.linear_fc1.layer_norm_bias"] = sd[P + "pre_mlp_layernorm.bias"]
            out[P + "mlp.linear_fc1.weight"] = sd[P + "mlp.linear_fc1.weight"]
            out[P + "mlp.linear_fc1._extra_state"] = make_extra(extra)
            out[P + "mlp.linear_fc2.weight"] = sd[P + "mlp.linear_fc2.weight"]
            out[P + "mlp.linear_fc2._extra_state"] = make_extra(extra)
            n_in = sum(1 for kk in keys if kk.startswith(P))
            assert n_in == 12, (P, n_in)
        else:
            out[k] = sd[k]
    out._metadata = sd._metadata  # module tree of the local spec (documented)
    return out


def set_decoder_extra_state(model, form):
    """Make the decoder linears report TE-style extra state (instance override), so that
    megatron-core's make_sharded_object_for_checkpoint emits it as ShardedObjects."""
    if form in ("none", "natural"):
        return
    for layer in inner(model).decoder.layers:
        for path in TE_LINEARS:
            mod = layer
            for p in path.split("."):
                mod = getattr(mod, p)
            mod.get_extra_state = (lambda f=form: make_extra(f))


# --------------------------------------------------------------------------------------
# Forward helpers
# --------------------------------------------------------------------------------------
def forward_inputs(ids):
    """One sequence as megatron-core's inputs for a batch of one: token ids, position ids
    0..S-1, the causal attention mask (True = masked) and the lengths."""
    import torch

    S = len(ids)
    tok = torch.tensor([ids], dtype=torch.long)
    pos = torch.arange(S, dtype=torch.long)[None]
    mask = torch.tril(torch.ones(1, 1, S, S)) < 0.5
    return tok, pos, mask, torch.tensor([S])


def run_forward(model, ids_list):
    """Return per sequence: final-LN hidden at last position, last-position logits (local
    vocab shard), rewards (NeMo-Aligner GPTRewardModel.forward). Single PP stage only."""
    import torch
    from megatron.core.models.gpt import GPTModel

    m = inner(model)
    outs = []
    with torch.no_grad():
        for ids in ids_list:
            S = len(ids)
            tok, pos, mask, lengths = forward_inputs(ids)
            # hidden after final LN, the way GPTRewardModel gets it (post_process patched off)
            from unittest.mock import patch

            with patch.object(m, "post_process", False):
                hidden = GPTModel.forward(m, input_ids=tok, position_ids=pos, attention_mask=mask)
            logits = GPTModel.forward(m, input_ids=tok, position_ids=pos, attention_mask=mask)
            rewards = m(tok, lengths, pos, mask)
            outs.append(
                dict(
                    final_ln=hidden[S - 1, 0].float(),
                    logits=logits[0, S - 1].float(),
                    rewards=rewards[0].float(),
                )
            )
    return outs


# --------------------------------------------------------------------------------------
# Phase: master (world 1)
# --------------------------------------------------------------------------------------
def sha256_tensor(t):
    import torch

    t = t.detach().contiguous().cpu()
    b = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return hashlib.sha256(b).hexdigest()


def phase_master(work, out, seqs):
    import torch
    from megatron.core import dist_checkpointing, parallel_state

    setup_cpu()
    init_dist(0, 1, free_port())
    parallel_state.initialize_model_parallel(1, 1)
    m32 = build_model(1, 1, bf16=False)
    init_params_(m32)
    master = work / "master_fp32"
    if master.exists():
        shutil.rmtree(master)
    master.mkdir(parents=True)
    dist_checkpointing.save(m32.sharded_state_dict(prefix="model."), str(master))
    log(f"  master fp32 torch_dist checkpoint -> {master}")

    # bf16 model: same values, cast by Float16Module
    m16 = build_model(1, 1, bf16=True)
    inner(m16).load_state_dict(m32.state_dict())  # fp32 -> bf16 copy (round to nearest even)

    ref = {"sequences": [], "fp32": [], "bf16": []}
    ids_list = [s["ids"] for s in seqs]
    ref["sequences"] = seqs
    for key, mod in (("fp32", m32), ("bf16", m16)):
        for o in run_forward(mod, ids_list):
            ref[key].append({k: [float(x) for x in v.tolist()] for k, v in o.items()})
    # tensors.json
    tensors = {}
    for key, mod in (("fp32", m32), ("bf16", m16)):
        d = {}
        for name, t in inner(mod).state_dict().items():
            if t is None or name.endswith("_extra_state"):
                continue
            cname = te_name(name)
            d[cname] = dict(
                dtype=str(t.dtype).replace("torch.", ""), shape=list(t.shape), sha256=sha256_tensor(t)
            )
        tensors[key] = d
    return ref, tensors


# --------------------------------------------------------------------------------------
# Phase: layout workers
# --------------------------------------------------------------------------------------
def holder_state_dict(model):
    """A NeMo MegatronGPTModel's state_dict: the mcore module lives at attribute `model`
    (Float16Module.state_dict returns the inner module's dict, so keys are `model.*`)."""
    import torch

    class Holder(torch.nn.Module):
        def __init__(self, mm):
            super().__init__()
            self.model = mm

    return Holder(inner(model)).state_dict()


def layout_worker(rank, world, port, tp, pp, work, out, jobs, seqs, result_q):
    import torch
    import torch.distributed as dist
    from megatron.core import dist_checkpointing, parallel_state

    setup_cpu()
    init_dist(rank, world, port)
    parallel_state.initialize_model_parallel(tp, pp)
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    master = str(work / "master_fp32")

    models = {}
    for dtype in ("fp32", "bf16"):
        m = build_model(tp, pp, bf16=(dtype == "bf16"))
        loaded = dist_checkpointing.load(inner(m).sharded_state_dict(prefix="model."), master)
        loaded = {k[len("model.") :]: v for k, v in loaded.items()}
        inner(m).load_state_dict(loaded, strict=True)
        models[dtype] = m

    written = []
    for job in jobs:
        kind = job["kind"]
        if kind == "legacy":
            m = models[job["dtype"]]
            sd = holder_state_dict(m)
            if job["spelling"] == "te":
                sd = to_te_spelling(sd, job["extra"])
            rel = legacy_rank_path(tp, pp, tp_rank, pp_rank)
            path = out / job["folder"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(sd, path)
            written.append(str(path))
        elif kind == "dist":
            m = build_model(tp, pp, bf16=True)
            inner(m).load_state_dict(inner(models["fp32"]).state_dict())
            set_decoder_extra_state(m, job["extra"])
            target = out / job["folder"] / "model_weights"
            if rank == 0:
                if target.exists():
                    shutil.rmtree(target)
                target.mkdir(parents=True)
            dist.barrier()
            # Determinism: torch's FileSystemWriter stores a random save_id (uuid4) and the
            # checkpoint path in .metadata's StorageMeta; use a name-derived uuid and a path
            # relative to the fixture root instead.
            import torch.distributed.checkpoint.filesystem as tfs

            tfs._generate_uuid = lambda n=job["folder"]: str(artifact_uuid_obj(n))
            cwd = os.getcwd()
            os.chdir(out)
            try:
                dist_checkpointing.save(
                    inner(m).sharded_state_dict(prefix="model."), os.path.relpath(target, out),
                    (job["backend"], 1)
                )
            finally:
                os.chdir(cwd)
            dist.barrier()
            if rank == 0:
                written.append(str(target))
        elif kind == "forward_check":
            # TP>1, PP=1 forward; gather vocab-parallel logits across TP
            res = {}
            for dtype in ("fp32", "bf16"):
                outs = run_forward(models[dtype], [s["ids"] for s in seqs])
                for o in outs:
                    parts = [torch.empty_like(o["logits"]) for _ in range(tp)]
                    dist.all_gather(parts, o["logits"].contiguous(), group=parallel_state.get_tensor_model_parallel_group())
                    o["logits"] = torch.cat(parts)
                res[dtype] = [{k: v.tolist() for k, v in o.items()} for o in outs]
            if rank == 0:
                result_q.put(("forward", res))
    result_q.put(("written", written))
    dist.barrier()
    dist.destroy_process_group()


def run_layout(tp, pp, work, out, jobs, seqs):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    world = tp * pp
    procs = [
        ctx.Process(target=layout_worker, args=(r, world, port, tp, pp, work, out, jobs, seqs, q))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    results = []
    alive = world
    written = []
    forward = None
    import queue as _queue
    import time as _time

    t0 = _time.time()
    while alive:
        try:
            kind, val = q.get(timeout=5)
        except _queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or _time.time() - t0 > 1200:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"layout TP{tp}PP{pp} workers failed/hung: exit codes {dead}")
            continue
        if kind == "written":
            written += val
            alive -= 1
        elif kind == "forward":
            forward = val
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"layout TP{tp}PP{pp} worker failed with {p.exitcode}")
    return sorted(written), forward


def phase_layouts(work, out, backends, mcore_tag, seqs, forward_check=True):
    """Run all jobs for which this interpreter/megatron-core is responsible."""
    per_layout = collections.defaultdict(list)
    if mcore_tag == "0.16.1":
        for tp, pp, dtype, spelling, extra in LEGACY:
            per_layout[(tp, pp)].append(
                dict(kind="legacy", dtype=dtype, spelling=spelling, extra=extra,
                     folder="tiny/" + legacy_name(tp, pp, dtype, spelling, extra))
            )
        if forward_check:
            per_layout[(2, 1)].append(dict(kind="forward_check"))
    for backend, tp, pp, extra, mcore in DIST:
        if mcore == mcore_tag and backend in backends:
            per_layout[(tp, pp)].append(
                dict(kind="dist", backend=backend, extra=extra,
                     folder="tiny/" + dist_name(backend, tp, pp, mcore))
            )
    forward = None
    for (tp, pp) in LAYOUTS:
        jobs = per_layout.get((tp, pp))
        if not jobs:
            continue
        w, f = run_layout(tp, pp, work, out, jobs, seqs)
        for p in w:
            log(f"  wrote {Path(p).relative_to(out)}")
        forward = forward or f
    return forward


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------
EXTRA_IDS = [f"<extra_id_{i}>" for i in range(4)]


def make_corpus():
    rnd = random.Random(SEED)
    onsets = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "th", "st", "ch", "sh", ""]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "nd", "ng", "st", "m"]
    words = set()
    while len(words) < 600:
        n = rnd.choice([1, 1, 2, 2, 3])
        words.add("".join(rnd.choice(onsets) + rnd.choice(vowels) + rnd.choice(codas) for _ in range(n)))
    words = sorted(words)
    common = ["the", "a", "of", "and", "to", "is", "in", "it", "you", "that", "for", "with", "on", "as",
              "helpful", "assistant", "user", "answer", "question", "model", "reward", "score", "hello", "world"]
    lines = []
    sys_prompt = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                  "helpful, detailed, and polite answers to the user's questions.")
    for i in range(3000):
        n = rnd.randint(4, 18)
        sent = " ".join(rnd.choice(common) if rnd.random() < 0.4 else rnd.choice(words) for _ in range(n))
        sent = sent[0].upper() + sent[1:] + rnd.choice([".", ".", "?", "!", ","])
        if rnd.random() < 0.15:
            sent += " " + str(rnd.randint(0, 9999))
        if i % 50 == 0:
            sent = "<extra_id_0>System " + sys_prompt
        elif i % 7 == 0:
            sent = "<extra_id_1>User " + sent
        elif i % 7 == 1:
            sent = "<extra_id_1>Assistant " + sent + " <extra_id_2>"
        lines.append(sent)
    return "\n".join(lines) + "\n"


def phase_tokenizer(work, out):
    import sentencepiece as spm

    corpus = work / "tokenizer_corpus.txt"
    corpus.write_text(make_corpus(), encoding="utf-8")
    prefix = work / "tokenizer"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=TRUE_VOCAB,
        byte_fallback=True,
        user_defined_symbols=EXTRA_IDS,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        character_coverage=1.0,
        normalization_rule_name="identity",  # no 240 kB NFKC charsmap in every copy
        num_threads=1,
        split_digits=True,
        add_dummy_prefix=True,
        minloglevel=2,
    )
    dst = out / "tiny" / "tokenizer" / "tokenizer.model"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(str(prefix) + ".model", dst)
    sp = spm.SentencePieceProcessor(model_file=str(dst))
    assert sp.get_piece_size() == TRUE_VOCAB, sp.get_piece_size()
    log(f"  wrote {dst.relative_to(out)} (vocab {sp.get_piece_size()})")
    return dst


def make_sequences(tok_path):
    import sentencepiece as spm

    rnd = random.Random(SEED + 1)
    seqs = []
    for n in (1, 5, 17, 40):
        seqs.append(dict(name=f"random_{n}", text=None, ids=[rnd.randrange(TRUE_VOCAB) for _ in range(n)]))
    sp = spm.SentencePieceProcessor(model_file=str(tok_path))
    text = ("<extra_id_0>System\nA chat.\n<extra_id_1>User\nhello world\n"
            "<extra_id_1>Assistant\nThe answer is 42.\n<extra_id_2>")
    ids = sp.encode(text)
    seqs.append(dict(name="prompt", text=text, ids=ids))
    return seqs


# --------------------------------------------------------------------------------------
# model_config.yaml, tokenizer artifact, .nemo
# --------------------------------------------------------------------------------------
def artifact_uuid_obj(name):
    """Deterministic stand-in for uuid4() (NeMo artifact names, torch DCP save_id)."""
    r = random.Random(f"{SEED}:{name}")
    return uuid.UUID(int=r.getrandbits(128), version=4)


def artifact_uuid(folder_name):
    return artifact_uuid_obj(folder_name).hex


def model_config(tp, pp, dtype, tok_artifact, transformer_engine, dist_format=None):
    import yaml

    cfg = collections.OrderedDict()
    cfg["mcore_gpt"] = True
    cfg["micro_batch_size"] = 1
    cfg["global_batch_size"] = 8
    cfg["tensor_model_parallel_size"] = tp
    cfg["pipeline_model_parallel_size"] = pp
    cfg["virtual_pipeline_model_parallel_size"] = None
    cfg["encoder_seq_length"] = MODEL["encoder_seq_length"]
    cfg["max_position_embeddings"] = MODEL["max_position_embeddings"]
    cfg["num_layers"] = MODEL["num_layers"]
    cfg["hidden_size"] = MODEL["hidden_size"]
    cfg["ffn_hidden_size"] = MODEL["ffn_hidden_size"]
    cfg["num_attention_heads"] = MODEL["num_attention_heads"]
    cfg["num_query_groups"] = MODEL["num_query_groups"]
    cfg["kv_channels"] = MODEL["kv_channels"]
    cfg["init_method_std"] = 0.0134
    cfg["hidden_dropout"] = 0.0
    cfg["attention_dropout"] = 0.0
    cfg["ffn_dropout"] = 0.0
    cfg["apply_query_key_layer_scaling"] = False
    cfg["normalization"] = "layernorm1p"
    cfg["layernorm_zero_centered_gamma"] = True
    cfg["layernorm_epsilon"] = MODEL["layernorm_epsilon"]
    cfg["do_layer_norm_weight_decay"] = False
    cfg["make_vocab_size_divisible_by"] = MODEL["make_vocab_size_divisible_by"]
    cfg["pre_process"] = True
    cfg["post_process"] = True
    cfg["persist_layer_norm"] = True
    cfg["bias"] = False
    cfg["activation"] = "squared-relu"
    cfg["headscale"] = False
    cfg["transformer_block_type"] = "pre_ln"
    cfg["openai_gelu"] = False
    cfg["normalize_attention_scores"] = True
    cfg["position_embedding_type"] = "rope"
    cfg["rotary_percentage"] = MODEL["rotary_percentage"]
    cfg["rotary_base"] = MODEL["rotary_base"]
    cfg["rotary_interleaved"] = False
    cfg["share_embeddings_and_output_weights"] = False
    cfg["tokenizer"] = collections.OrderedDict(
        library="sentencepiece",
        type=None,
        model="nemo:" + tok_artifact,
        vocab_file=None,
        merge_file=None,
        delimiter=None,
        sentencepiece_legacy=False,
        tokenizer_model="nemo:" + tok_artifact,
    )
    cfg["native_amp_init_scale"] = 4294967296
    cfg["hysteresis"] = 2
    cfg["fp32_residual_connection"] = False
    cfg["fp16_lm_cross_entropy"] = False
    cfg["megatron_amp_O2"] = dtype == "bf16"
    cfg["seed"] = SEED
    cfg["use_cpu_initialization"] = False
    cfg["transformer_engine"] = transformer_engine
    cfg["fp8"] = False
    cfg["sequence_parallel"] = False
    cfg["precision"] = "bf16" if dtype == "bf16" else 32
    cfg["reward_model_type"] = "regression"
    cfg["output_sequence"] = False
    cfg["use_avg_pool"] = False
    cfg["force_head_dtype"] = "float32"
    cfg["regression"] = collections.OrderedDict(
        num_attributes=MODEL["num_attributes"],
        merge_attributes=False,
        attribute_weights=None,
        loss_mask_val=-100,
    )
    if dist_format:
        cfg["dist_ckpt_format"] = dist_format
        cfg["dist_ckpt_load_on_device"] = True
        cfg["dist_ckpt_parallel_save"] = False
    cfg["target"] = "nemo_aligner.models.nlp.gpt.megatron_gpt_regression_reward_model.MegatronGPTRegressionRewardModel"
    cfg["nemo_version"] = "2.0.0rc0"

    def rep(dumper, data):
        return dumper.represent_mapping("tag:yaml.org,2002:map", data.items())

    yaml.add_representer(collections.OrderedDict, rep)
    return yaml.dump(cfg, sort_keys=False, default_flow_style=False)


def finish_folder(folder, tp, pp, dtype, tok_path, te, dist_format=None):
    art = artifact_uuid(folder.name) + "_tokenizer.model"
    shutil.copyfile(tok_path, folder / art)
    (folder / "model_config.yaml").write_text(model_config(tp, pp, dtype, art, te, dist_format))
    return art


def make_nemo_tar(folder, dst):
    def norm(ti):
        ti.mtime = 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    with tarfile.open(dst, "w:") as tar:  # plain uncompressed, like NeMo
        tar.add(str(folder), arcname=".", filter=norm)


# --------------------------------------------------------------------------------------
# Bad fixtures (crafted bytes; never unpickled)
# --------------------------------------------------------------------------------------
def write_torch_zip(path, data_pkl, records=()):
    """Write a torch.save-shaped zip with an arbitrary data.pkl using torch's own writer."""
    import torch

    w = torch._C.PyTorchFileWriter(str(path))
    w.write_record("data.pkl", data_pkl, len(data_pkl))
    w.write_record(".format_version", b"1", 1)
    w.write_record(".storage_alignment", b"64", 2)
    w.write_record("byteorder", b"little", 6)
    for name, payload in records:
        w.write_record(name, payload, len(payload))
    w.write_end_of_file()


def phase_bad(out):
    bad = out / "bad"
    if bad.exists():
        shutil.rmtree(bad)
    bad.mkdir(parents=True)
    entries = []

    def add(name, desc, expect):
        entries.append(dict(path=f"bad/{name}", description=desc, expected=expect))
        log(f"  wrote bad/{name}")

    # torch zips with a crafted data.pkl: (file, data.pkl, extra records, description, expected)
    storage_7 = (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03"
                 b"((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x007q\x06X\x03\x00\x00\x00cpuq\x07K\x04tq\x08"
                 b"QK\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\nq\t)Rq\ntq\x0bRq\x0cs.")
    view_100 = (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03"
                b"((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x04tq\x08"
                b"QK\x00Kd\x85K\x01\x85\x89ccollections\nOrderedDict\nq\t)Rq\ntq\x0bRq\x0cs.")
    one_storage = [("data/0", b"\0" * 16)]
    crafted = [
        # protocol-2 pickle: posix.system('echo pwned')  -- a forbidden GLOBAL + REDUCE
        ("forbidden_global_posix_system.ckpt",
         b"\x80\x02" + b"cposix\nsystem\n" + b"q\x00" + b"X\x0a\x00\x00\x00echo pwned" + b"q\x01\x85q\x02Rq\x03.", (),
         "torch zip whose data.pkl is GLOBAL 'posix system' + REDUCE", "reject: forbidden global posix.system"),
        # builtins.eval via __builtin__ (protocol-2 spelling)
        ("forbidden_global_builtins_eval.ckpt", b"\x80\x02c__builtin__\neval\nq\x00X\x08\x00\x00\x00__import__q\x01\x85q\x02Rq\x03.", (),
         "GLOBAL '__builtin__ eval' + REDUCE", "reject: forbidden global"),
        # STACK_GLOBAL (protocol 4) spelling of os.system inside an OrderedDict value
        ("forbidden_stack_global_os_system.ckpt",
         b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" + b"\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94"
         + b"\x8c\x01x\x94\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x04true\x94\x85\x94R\x94s.", (),
         "protocol-4 STACK_GLOBAL 'os system' inside an OrderedDict value", "reject: forbidden global os.system"),
        # a storage persistent id pointing at a record that does not exist
        ("missing_storage_record.ckpt", storage_7, one_storage,
         "tensor whose storage key '7' has no data/7 record", "reject: missing storage record"),
        # storage too small for the declared tensor (numel 4 declared, view of 100 elements)
        ("tensor_exceeds_storage.ckpt", view_100, one_storage,
         "tensor of 100 float32 elements over a 4-element (16-byte) storage", "reject: tensor out of storage bounds"),
    ]
    for name, data_pkl, records, desc, expect in crafted:
        write_torch_zip(bad / name, data_pkl, records=records)
        add(name, desc, expect)
    # not a zip at all
    (bad / "not_a_zip.ckpt").write_bytes(b"PK\x03\x04garbage" + bytes(range(64)))
    add("not_a_zip.ckpt", "starts with a zip local header signature but is garbage", "reject: not a zip")
    # unsafe tar members
    tpath = bad / "unsafe_members.nemo"
    with tarfile.open(tpath, "w:") as tar:
        def addbytes(name, data, typ=tarfile.REGTYPE, link=""):
            ti = tarfile.TarInfo(name)
            ti.size = len(data) if typ == tarfile.REGTYPE else 0
            ti.type = typ
            ti.linkname = link
            ti.mtime = 0
            tar.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
        addbytes("./model_config.yaml", b"num_layers: 1\n")
        addbytes("../escape.txt", b"x")
        addbytes("/abs.txt", b"x")
        addbytes("./link", b"", tarfile.SYMTYPE, "/etc/passwd")
        addbytes("./hard", b"", tarfile.LNKTYPE, "../escape.txt")
    add("unsafe_members.nemo", "tar with '../escape.txt', '/abs.txt', a symlink and a hardlink member",
        "skip or reject the unsafe members (NeMo's _safe_extract skips them)")
    return entries


# --------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------
def versions():
    import importlib.metadata as md

    v = {"python": sys.version.split()[0]}
    for pkg in ("torch", "megatron-core", "nemo-aligner", "sentencepiece", "zarr", "numcodecs", "numpy",
                "tensorstore", "ml_dtypes", "psutil", "PyYAML"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            v[pkg] = None
    return v



# --------------------------------------------------------------------------------------
# Self-check: reassemble every fixture's global tensors by the documented partition
# rules (nemo-formats.md section 5) and compare with tensors.json
# --------------------------------------------------------------------------------------
TP_AXIS = {
    "embedding.word_embeddings.weight": 0,
    "self_attention.linear_qkv.weight": 0,
    "self_attention.linear_proj.weight": 1,
    "mlp.linear_fc1.weight": 0,
    "mlp.linear_fc2.weight": 1,
    "output_layer.weight": 0,
    "rm_head.weight": 1,
}


def _tp_axis(cname):
    for suffix, ax in TP_AXIS.items():
        if cname.endswith(suffix):
            return ax
    return None


def assemble_legacy(folder, tp, pp):
    import torch

    L = MODEL["num_layers"] // pp
    parts = collections.defaultdict(dict)  # cname -> {tp_rank: tensor}
    for t in range(tp):
        for p in range(pp):
            sd = torch.load(folder / legacy_rank_path(tp, pp, t, p), weights_only=False)
            assert isinstance(sd, collections.OrderedDict) and hasattr(sd, "_metadata")
            for k, v in sd.items():
                if k.endswith("_extra_state"):
                    continue
                assert k.startswith("model."), k
                c = te_name(k[len("model."):])
                ps = c.split(".")
                if c.startswith("decoder.layers."):
                    ps[2] = str(int(ps[2]) + p * L)
                c = ".".join(ps)
                parts[c][t] = v
    out = {}
    for c, d in parts.items():
        ax = _tp_axis(c)
        assert sorted(d) == list(range(tp)), (c, sorted(d))
        if ax is None:
            for t in range(1, tp):
                assert torch.equal(d[t], d[0]), f"replicated {c} differs across TP"
            out[c] = d[0]
        else:
            out[c] = torch.cat([d[t] for t in range(tp)], dim=ax)
    return out


def _unstack(key, arr_getter, shape):
    c = key[len("model."):]
    if c.startswith("decoder.layers."):
        rest = c[len("decoder.layers."):]
        return {f"decoder.layers.{i}.{rest}": arr_getter(i) for i in range(shape[0])}
    return {c: arr_getter(None)}


def assemble_torch_dist(folder):
    import torch
    from torch.distributed.checkpoint import FileSystemReader

    md = FileSystemReader(str(folder / "model_weights")).read_metadata()
    out = {}
    for fqn, tmd in md.state_dict_metadata.items():
        if not hasattr(tmd, "chunks"):
            continue  # bytes items (ShardedObjects, common state)
        g = torch.empty(tuple(tmd.size), dtype=tmd.properties.dtype)
        filled = 0
        for idx, info in md.storage_data.items():
            if idx.fqn != fqn:
                continue
            with open(folder / "model_weights" / info.relative_path, "rb") as fh:
                fh.seek(info.offset)
                chunk = torch.load(io.BytesIO(fh.read(info.length)), weights_only=True)
            sl = tuple(slice(o, o + n) for o, n in zip(idx.offset, chunk.shape))
            g[sl] = chunk
            filled += chunk.numel()
        assert filled == g.numel(), fqn
        out.update(_unstack(fqn, lambda i, g=g: g if i is None else g[i], tuple(tmd.size)))
    return out


def assemble_zarr(folder):
    import ml_dtypes  # noqa: F401  (numpy learns bfloat16)
    import numpy as np
    import torch
    import zarr

    out = {}
    root = folder / "model_weights"
    for d in sorted(root.iterdir()):
        if not (d / ".zarray").exists():
            continue
        meta = json.loads((d / ".zarray").read_text())
        if meta["dtype"] == "bfloat16":
            # read the raw chunks ourselves (as a Swift reader must), independent of zarr
            shape, chunks = meta["shape"], meta["chunks"]
            a = np.empty(shape, dtype=ml_dtypes.bfloat16)
            import itertools

            for ci in itertools.product(*[range(s // c) for s, c in zip(shape, chunks)]):
                raw = (d / ".".join(map(str, ci))).read_bytes()
                blk = np.frombuffer(raw, dtype=ml_dtypes.bfloat16).reshape(chunks)
                a[tuple(slice(i * c, (i + 1) * c) for i, c in zip(ci, chunks))] = blk
            t = torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(zarr.open(str(d), mode="r")[:])
        out.update(_unstack(d.name, lambda i, t=t: t if i is None else t[i], tuple(t.shape)))
    return out


def verify(out, fixtures, tensors):
    problems = []
    for f in fixtures:
        if f["container"] != "folder":
            continue
        folder = out / f["path"]
        if f["format"] == "legacy":
            got = assemble_legacy(folder, f["tp"], f["pp"])
        elif f["format"] == "torch_dist":
            got = assemble_torch_dist(folder)
        else:
            got = assemble_zarr(folder)
        want = tensors[f["dtype"]]
        if set(got) != set(want):
            problems.append((f["name"], "names", sorted(set(got) ^ set(want))))
            continue
        for c, t in got.items():
            if sha256_tensor(t) != want[c]["sha256"] or list(t.shape) != want[c]["shape"]:
                problems.append((f["name"], c))
        f["verified_against_tensors_json"] = not any(p[0] == f["name"] for p in problems)
        log(f"  verified {f['path']}: {len(got)} global tensors "
            f"{'OK' if f['verified_against_tensors_json'] else 'MISMATCH'}")
    if problems:
        raise RuntimeError(f"fixture self-check failed: {problems[:10]}")

# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path, help="fixture root, e.g. Tests/Fixtures")
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch dir (master checkpoint, tokenizer corpus); default a new temporary folder")
    ap.add_argument("--phase", default="all", choices=["all", "zarr", "mcore0192"])
    venv = Path(os.environ.get("TESSERA_VENV", Path.home() / ".cache" / "tessera-venv"))
    ap.add_argument("--mcore015", type=Path, default=Path(os.environ.get("TESSERA_MCORE015", f"{venv}-mcore015")),
                    help="--target dir holding megatron-core 0.15.3 (zarr backend)")
    ap.add_argument("--py312", type=Path, default=Path(os.environ.get("TESSERA_VENV312", Path.home() / ".cache" / "tessera-venv312")) / "bin" / "python",
                    help="python with megatron-core 0.19.2 (optional fixture)")
    args = ap.parse_args()
    out = args.out.resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="tessera-fixtures-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)

    if args.phase in ("zarr", "mcore0192"):
        seqs = json.loads((work / "seqs.json").read_text())
        tag = "0.15.3" if args.phase == "zarr" else "0.19.2"
        backends = ("zarr",) if args.phase == "zarr" else ("torch_dist",)
        import megatron.core

        assert megatron.core.__version__ == tag, megatron.core.__version__
        phase_layouts(work, out, backends, tag, seqs, forward_check=False)
        (work / f"versions_{args.phase}.json").write_text(json.dumps(versions()))
        return

    tiny = out / "tiny"
    if tiny.exists():
        shutil.rmtree(tiny)
    tiny.mkdir(parents=True)

    log("[1/7] tokenizer")
    tok = phase_tokenizer(work, out)
    seqs = make_sequences(tok)
    (work / "seqs.json").write_text(json.dumps(seqs))

    log("[2/7] master model, reference outputs, tensor hashes (TP1/PP1)")
    ref, tensors = run_in_process(phase_master_entry, str(work), str(out), seqs)

    log("[3/7] legacy per-rank files + torch_dist (megatron-core 0.16.1)")
    forward_tp2 = phase_layouts(work, out, ("torch_dist",), "0.16.1", seqs)

    log("[4/7] zarr (megatron-core 0.15.3 subprocess)")
    env = dict(os.environ, PYTHONPATH=str(args.mcore015) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, __file__, "--out", str(out), "--work", str(work), "--phase", "zarr"],
                   env=env, check=True)
    v015 = json.loads((work / "versions_zarr.json").read_text())

    log("[5/7] optional torch_dist with megatron-core 0.19.2 (Python 3.12)")
    v0192 = None
    dist_plan = list(DIST)
    if args.py312.exists():
        r = subprocess.run([str(args.py312), __file__, "--out", str(out), "--work", str(work), "--phase", "mcore0192"])
        if r.returncode == 0:
            v0192 = json.loads((work / "versions_mcore0192.json").read_text())
        else:
            log("  megatron-core 0.19.2 run failed; fixture skipped")
    if v0192 is None:
        dist_plan = [d for d in dist_plan if d[4] != "0.19.2"]
        shutil.rmtree(tiny / dist_name("torch_dist", 1, 1, "0.19.2"), ignore_errors=True)

    log("[6/7] model_config.yaml, tokenizer artifacts, .nemo tars")
    fixtures = []
    for tp, pp, dtype, spelling, extra in LEGACY:
        name = legacy_name(tp, pp, dtype, spelling, extra)
        folder = tiny / name
        art = finish_folder(folder, tp, pp, dtype, tok, te=(spelling == "te"))
        fixtures.append(dict(
            name=name, path=f"tiny/{name}", format="legacy", container="folder", tp=tp, pp=pp, dtype=dtype,
            key_spelling=spelling,
            extra_state=(extra if spelling == "te" else "none"),
            extra_state_note=("TE modules (core_attention, linear_proj, linear_qkv, linear_fc1, linear_fc2) carry "
                              f"'{extra}'; output_layer/rm_head _extra_state are None" if spelling == "te" else
                              "local spec: every linear (incl. output_layer, rm_head) has _extra_state None"),
            tokenizer_artifact=art,
            rank_files=sorted(str(p.relative_to(folder)) for p in folder.rglob("model_weights.ckpt")),
            megatron_core="0.16.1",
        ))
    for backend, tp, pp, extra, mcore in dist_plan:
        name = dist_name(backend, tp, pp, mcore)
        folder = tiny / name
        art = finish_folder(folder, tp, pp, "bf16", tok, te=True, dist_format=backend)
        fixtures.append(dict(
            name=name, path=f"tiny/{name}", format=backend, container="folder", tp=tp, pp=pp, dtype="bf16",
            key_spelling="te (dist ckpt, layer-stacked)",
            extra_state=extra,
            extra_state_note=("ShardedObjects for decoder linear_qkv/linear_proj/linear_fc1/linear_fc2 "
                              f"with data '{extra}'; output_layer and rm_head extra state dropped by "
                              "GPTModel/GPTRewardModel.sharded_state_dict"),
            tokenizer_artifact=art, megatron_core=mcore,
            common_pt=(folder / "model_weights" / "common.pt").exists(),
        ))
    nemo_dir = tiny / "nemo"
    nemo_dir.mkdir()
    for name in NEMO_TARS:
        src = next(f for f in fixtures if f["name"] == name)
        dst = nemo_dir / f"{name}.nemo"
        make_nemo_tar(tiny / name, dst)
        log(f"  wrote {dst.relative_to(out)}")
        fixtures.append(dict(src, name=name + ".nemo", path=f"tiny/nemo/{name}.nemo", container="tar",
                             packed_from=src["path"]))
    for f in fixtures:
        if f["container"] == "folder":
            log(f"  wrote {f['path']}/model_config.yaml, {f['tokenizer_artifact']}")

    log("[7/7] references, bad fixtures, manifest")
    refdir = tiny / "reference"
    refdir.mkdir()
    check = None
    if forward_tp2:
        check = {}
        for dtype in ("fp32", "bf16"):
            check[dtype] = {}
            for k in ("final_ln", "logits", "rewards"):
                check[dtype][k] = max(
                    max(abs(x - y) for x, y in zip(a[k], b[k])) for a, b in zip(ref[dtype], forward_tp2[dtype])
                )
    ref_doc = dict(
        description=("megatron-core TP1/PP1 forward of the tiny reward model. final_ln: output of "
                     "decoder.final_layernorm at the last position; logits: output_layer at the last position "
                     f"(all {VP} padded rows); rewards: NeMo-Aligner GPTRewardModel.forward (hidden after final LN "
                     "at index length-1 -> rm_head). bf16 = megatron-core Float16Module (every weight bf16, "
                     "layer norm statistics in fp32, gamma+1 in bf16, rm_head in bf16)."),
        attention="causal, no padding, position ids 0..S-1, batch 1",
        attributes=["quality", "toxicity", "humor", "creativity", "helpfulness", "correctness", "coherence",
                    "complexity", "verbosity"],
        sequences=ref["sequences"],
        fp32=ref["fp32"],
        bf16=ref["bf16"],
        tp2_check=dict(
            description=("the same sequences run through the TP2/PP1 shards (gloo, 2 processes); max abs "
                         "difference from the TP1 values above, per quantity (vocab-parallel logits gathered)"),
            max_abs_diff=check),
    )
    (refdir / "outputs.json").write_text(json.dumps(ref_doc, indent=1) + "\n")
    log(f"  wrote {(refdir / 'outputs.json').relative_to(out)}")
    tdoc = dict(
        description=("Global (TP1/PP1) tensors, canonical names (no 'model.' prefix, TE spelling for layer norms, "
                     "global layer numbers). sha256 over the tensor's C-order little-endian bytes in its dtype."),
        true_vocab=TRUE_VOCAB, padded_vocab=VP, fp32=tensors["fp32"], bf16=tensors["bf16"])
    (refdir / "tensors.json").write_text(json.dumps(tdoc, indent=1) + "\n")
    log(f"  wrote {(refdir / 'tensors.json').relative_to(out)}")

    log("  self-check: reassembling every fixture")
    verify(out, fixtures, tensors)
    for f in fixtures:
        if f["container"] == "tar":
            f["verified_against_tensors_json"] = next(
                x for x in fixtures if x["path"] == f["packed_from"])["verified_against_tensors_json"]

    bad_entries = phase_bad(out)

    sys.path.insert(0, str(TOOLS_DIR))
    sys.dont_write_bytecode = True  # no Tools/__pycache__ in the work tree
    from inspect_fixture import scan

    globals_seen = scan(out / "tiny")
    log(f"  {len(globals_seen)} distinct pickle GLOBALs across the fixtures")
    v = versions()
    manifest = dict(
        generator="Tools/make_fixtures.py",
        seed=SEED,
        versions=dict(
            main=v,
            zarr_run=dict(v015, **{"megatron-core": "0.15.3"}),
            mcore0192_run=v0192,
        ),
        model=dict(MODEL, true_vocab_size=TRUE_VOCAB, padded_vocab_size=VP, activation="squared-relu",
                   normalization="layernorm1p", layernorm_zero_centered_gamma=True, bias=False,
                   position_embedding_type="rope", share_embeddings_and_output_weights=False,
                   reward_model_type="regression", rm_head="RowParallelLinear(hidden->9, bias=True)"),
        init=("every parameter N(0, std) seeded by sha256(seed:canonical_name): gammas std 0.2 (zero-centred), "
              "betas 0.1, embedding 1.0, fc2 1/sqrt(ffn), other linears 1/sqrt(hidden), rm_head.bias 0.5"),
        tokenizer=dict(path="tiny/tokenizer/tokenizer.model", library="sentencepiece", model_type="bpe",
                       vocab_size=TRUE_VOCAB, byte_fallback=True, user_defined_symbols=EXTRA_IDS,
                       pad_id=0, unk_id=1, bos_id=2, eos_id=3),
        key_spelling_note=("'local' = megatron-core local spec (input_layernorm.*, pre_mlp_layernorm.*), exactly as "
                           "GPTModel.state_dict gives it; 'te' = the same tensors renamed to the TransformerEngine "
                           "spelling (self_attention.linear_qkv.layer_norm_{weight,bias}, "
                           "mlp.linear_fc1.layer_norm_{weight,bias}), keys reordered per layer as a TE module tree "
                           "orders them, plus <prefix>._extra_state for core_attention, linear_proj, linear_qkv, "
                           "linear_fc1, linear_fc2. _metadata is that of the local module tree."),
        fixtures=fixtures,
        bad=bad_entries,
        references=["tiny/reference/outputs.json", "tiny/reference/tensors.json"],
        pickle_globals=globals_seen,
    )
    (tiny / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"  wrote {(tiny / 'manifest.json').relative_to(out)}")
    if check:
        log(f"  TP2 forward vs TP1 max abs diff: {check}")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"done: {total / 1e6:.2f} MB of fixture files under {out}")


def phase_master_entry(q, work, out, seqs):
    q.put(phase_master(Path(work), Path(out), seqs))


def run_in_process(fn, *args):
    """Run fn(queue, *args) in a fresh spawned (non-daemonic) process; return its result."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(q,) + args)
    p.start()
    res = q.get(timeout=900)
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"{fn.__name__} failed with {p.exitcode}")
    return res


if __name__ == "__main__":
    main()
