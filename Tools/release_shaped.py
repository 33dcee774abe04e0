#!/usr/bin/env python3
"""A sparse stand-in for the released Nemotron-4-340B-Reward checkpoint, its checker, and an
independent float64 reference forward.

  make                Write an unpacked NeMo folder laid out exactly like the released
                      Nemotron-4-340B-Reward (zarr distributed checkpoint saved at TP=8):
                      model_config.yaml, a 256000-piece SentencePiece artifact,
                      model_weights/{metadata.json,common.pt,<key>/.zarray,<key>/<chunk>,
                      <linear>._extra_state/shard_L_N.pt}. Every chunk file is sparse
                      (os.truncate to full size, then a few "stamp" runs written with
                      os.pwrite): ~682 GB apparent at 96 layers, a few tens of MB on disk.
  check               Find every stamp in an output of any layout (zarr, torch_dist,
                      legacy per-rank files, Tessera HDF5 store; or list a .nemo tar)
                      through the real libraries, check its value and sample zeros.
  reference           Float64 forward pass of the Nemotron-4 reward model computed from
                      the stamps alone (weights = lists of stamp runs in global coordinates).
  validate-reference  The same forward code on the tiny DENSE fixture (every row one run),
                      compared with megatron-core's fp32 outputs in
                      Tests/Fixtures/tiny/reference/outputs.json.
  validate-readers    The check's readers on the tiny megatron-written bf16 fixtures: every
                      row of every tensor read through each layout's reader (TP/PP mapping,
                      DCP byte offsets) equals the zarr fixture read by the zarr library.

Run with the venv's python: ${TESSERA_VENV:-$HOME/.cache/tessera-venv}/bin/python.
See Tools/README.md, section "Release-shaped sparse checkpoint".
"""
import argparse
import collections
import hashlib
import io
import json
import math
import os
import pickle
import re
import struct
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "Tests" / "Fixtures" / "tiny"

GIB = 1 << 30
RUN = 64  # elements per stamp run

# ---------------------------------------------------------------------------------------------
# model shape


class Tensor:
    """One dist-checkpoint key: global shape, the chunk shape of the saved (source-TP) layout,
    how TP splits it and on which pipeline stage it lives."""

    def __init__(self, key, shape, chunks, role, stacked, stage):
        self.key, self.shape, self.chunks = key, tuple(shape), tuple(chunks)
        self.role = role          # vocab | column | row | replicated
        self.stacked = stacked    # leading layer axis
        self.stage = stage        # first | all | last

    @property
    def grid(self):
        return tuple(s // c for s, c in zip(self.shape, self.chunks))

    @property
    def tp_axis(self):
        """Axis TP splits, in the global (stacked) shape; None when replicated."""
        off = 1 if self.stacked else 0
        return {"vocab": 0, "column": off, "row": len(self.shape) - 1}.get(self.role)


class Spec:
    def __init__(self, layers=96, hidden=18432, ffn=73728, heads=96, groups=8, kv=None, vocab=256000,
                 tp=8, attributes=9, eps=1e-5, rotary_percentage=0.5, rotary_base=10000.0, divisible_by=128):
        self.L, self.H, self.F, self.heads, self.groups = layers, hidden, ffn, heads, groups
        self.d = kv if kv else hidden // heads
        self.vocab, self.tp, self.attributes = vocab, tp, attributes
        self.eps, self.rotary_percentage, self.rotary_base = eps, rotary_percentage, rotary_base
        self.divisible_by = divisible_by
        m = divisible_by * tp
        self.vp = -(-vocab // m) * m  # NeMo _vocab_size_with_padding
        self.hpg = heads // groups
        self.qkv_rows = (heads + 2 * groups) * self.d
        self.attn_out = heads * self.d
        for what, n in (("heads", heads), ("groups", groups), ("ffn", ffn), ("hidden", hidden),
                        ("heads*kv", self.attn_out), ("padded vocab", self.vp)):
            if n % tp:  # megatron Attention.__init__ divides heads and groups by TP; nemo-formats.md 5.1
                raise SystemExit(f"TP {tp} does not divide {what} ({n}); choose --tp dividing heads, groups, ffn, hidden")
        if heads % groups:
            raise SystemExit(f"groups {groups} does not divide heads {heads}")

    def tensors(self):
        L, H, F, T, A = self.L, self.H, self.F, self.tp, self.attributes
        P = "model.decoder.layers."
        return [
            Tensor("model.embedding.word_embeddings.weight", (self.vp, H), (self.vp // T, H), "vocab", False, "first"),
            Tensor(P + "self_attention.linear_qkv.layer_norm_weight", (L, H), (1, H), "replicated", True, "all"),
            Tensor(P + "self_attention.linear_qkv.layer_norm_bias", (L, H), (1, H), "replicated", True, "all"),
            Tensor(P + "self_attention.linear_qkv.weight", (L, self.qkv_rows, H), (1, self.qkv_rows // T, H),
                   "column", True, "all"),
            Tensor(P + "self_attention.linear_proj.weight", (L, H, self.attn_out), (1, H, self.attn_out // T),
                   "row", True, "all"),
            Tensor(P + "mlp.linear_fc1.layer_norm_weight", (L, H), (1, H), "replicated", True, "all"),
            Tensor(P + "mlp.linear_fc1.layer_norm_bias", (L, H), (1, H), "replicated", True, "all"),
            Tensor(P + "mlp.linear_fc1.weight", (L, F, H), (1, F // T, H), "column", True, "all"),
            Tensor(P + "mlp.linear_fc2.weight", (L, H, F), (1, H, F // T), "row", True, "all"),
            Tensor("model.decoder.final_layernorm.weight", (H,), (H,), "replicated", False, "last"),
            Tensor("model.decoder.final_layernorm.bias", (H,), (H,), "replicated", False, "last"),
            Tensor("model.output_layer.weight", (self.vp, H), (self.vp // T, H), "vocab", False, "last"),
            Tensor("model.rm_head.weight", (A, H), (A, H // T), "row", False, "last"),
            Tensor("model.rm_head.bias", (A,), (A,), "replicated", False, "last"),
        ]

    def tensor(self, key):
        return {t.key: t for t in self.tensors()}[key]


def spec_from_config(cfg, vocab, source_tp):
    return Spec(layers=int(cfg["num_layers"]), hidden=int(cfg["hidden_size"]), ffn=int(cfg["ffn_hidden_size"]),
                heads=int(cfg["num_attention_heads"]),
                groups=int(cfg.get("num_query_groups") or cfg["num_attention_heads"]),
                kv=cfg.get("kv_channels"), vocab=vocab, tp=source_tp,
                attributes=int((cfg.get("regression") or {}).get("num_attributes", 9)),
                eps=float(cfg.get("layernorm_epsilon", 1e-5)),
                rotary_percentage=float(cfg.get("rotary_percentage", 1.0)),
                rotary_base=float(cfg.get("rotary_base", 10000)),
                divisible_by=int(cfg.get("make_vocab_size_divisible_by", 128)))


def load_config(path):
    import yaml

    p = Path(path)
    if p.is_dir():
        p = p / "model_config.yaml"
    cfg = yaml.safe_load(p.read_text())
    return cfg.get("model", cfg)


# ---------------------------------------------------------------------------------------------
# the stamps: where (stamp_runs) and what (stamp_value). make, check and reference use only these.


def stamp_runs(spec, key, chunk_index, chunk_shape):
    """The stamp runs inside one chunk of the saved layout: a list of (local start index, length),
    each run lying along the last axis. Three runs of RUN elements: the first row at column 0,
    a middle row at a middle column, the last row ending at the last column. For the QKV chunks
    the middle row is the first key row of the chunk's first query group (so queries, keys and
    values all carry stamps). A chunk of at most 16 rows (rm_head) has a run in every row, row r
    starting at column (C - RUN) * r / (R - 1). Runs are clipped to small chunks and merged where
    they overlap (a 1-D chunk is one row)."""
    C = chunk_shape[-1]
    R = math.prod(chunk_shape[:-1])
    n = min(RUN, C)
    mid = R // 2
    if key.endswith("linear_qkv.weight"):
        block = (spec.hpg + 2) * spec.d
        if R % block == 0:
            mid = spec.hpg * spec.d
    want = [(0, 0), (mid, max(0, C // 2 - n // 2)), (R - 1, C - n)]
    if 1 < R <= 16:  # few rows (rm_head: one per attribute): a run in every row, staggered across the columns
        want = [(r, ((C - n) * r) // max(1, R - 1)) for r in range(R)]
    rows = collections.defaultdict(list)
    for r, c in want:
        rows[r].append([c, c + n])
    runs = []
    for r in sorted(rows):
        spans = sorted(rows[r])
        merged = [spans[0]]
        for a, b in spans[1:]:
            if a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        lead = tuple(int(i) for i in np.unravel_index(r, chunk_shape[:-1])) if len(chunk_shape) > 1 else ()
        for a, b in merged:
            runs.append((lead + (a,), b - a))
    return runs


_U = np.uint64
_M1, _M2, _GOLD = _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB), _U(0x9E3779B97F4A7C15)


def _mix(h):
    h = h ^ (h >> _U(30))
    h = h * _M1
    h = h ^ (h >> _U(27))
    h = h * _M2
    return h ^ (h >> _U(31))


def _value_range(key):
    """(M, exponent): values m * 2**-exponent, m in [-M, -1] u [1, M]; |m| <= 256 so exact in bf16."""
    if "word_embeddings" in key:
        return 128, 7    # within +-1
    if "layer_norm" in key or "final_layernorm" in key or key.endswith("rm_head.bias"):
        return 128, 9    # gammas / betas / head bias within +-0.25
    return 204, 12       # linear weights within +-0.0498


def stamp_value(key, index):
    """Value of global element(s) `index` of tensor `key`: an integer hash of the key and the global
    position, mapped to a non-zero value exactly representable in bf16. `index` is one tuple or an
    int array [n, ndim]; returns float64 (a scalar for one tuple)."""
    idx = np.asarray(index, dtype=np.int64)
    one = idx.ndim == 1
    idx = idx.reshape(-1, idx.shape[-1])
    with np.errstate(over="ignore"):
        h = np.full(idx.shape[0], int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"), _U)
        for j in range(idx.shape[1]):
            h = _mix(h ^ (idx[:, j].astype(_U) + _GOLD * _U(j + 1)))
    M, e = _value_range(key)
    m = ((h >> _U(33)) % _U(2 * M)).astype(np.int64)
    m = np.where(m < M, m - M, m - M + 1)
    v = np.ldexp(m.astype(np.float64), -e)
    return float(v[0]) if one else v


def iter_stamps(spec, t):
    """Yield (global start index, length) of every stamp run of tensor t."""
    for ci in np.ndindex(*t.grid):
        base = [i * c for i, c in zip(ci, t.chunks)]
        for start, n in stamp_runs(spec, t.key, ci, t.chunks):
            yield tuple(b + s for b, s in zip(base, start)), n


def run_values(key, start, n):
    idx = np.repeat(np.asarray(start, np.int64)[None, :], n, axis=0)
    idx[:, -1] += np.arange(n)
    return stamp_value(key, idx)


class StampIndex:
    """Membership test for stamp positions (zero sampling)."""

    def __init__(self, spec):
        self.spec, self.cache = spec, {}

    def stamped(self, t, gidx):
        ci = tuple(g // c for g, c in zip(gidx, t.chunks))
        local = tuple(g % c for g, c in zip(gidx, t.chunks))
        k = (t.key, ci)
        if k not in self.cache:
            self.cache[k] = stamp_runs(self.spec, t.key, ci, t.chunks)
        for start, n in self.cache[k]:
            if start[:-1] == local[:-1] and start[-1] <= local[-1] < start[-1] + n:
                return True
        return False


def stamped_tokens(spec):
    t = spec.tensor("model.embedding.word_embeddings.weight")
    return sorted({start[0] for start, _ in iter_stamps(spec, t)})


# ---------------------------------------------------------------------------------------------
# make


MODEL_CONFIG_TEMPLATE = [  # key order and key set of the tiny fixture's model_config.yaml (NeMo 1.0)
    ("mcore_gpt", True), ("micro_batch_size", 1), ("global_batch_size", 128),
    ("tensor_model_parallel_size", None), ("pipeline_model_parallel_size", 1),
    ("virtual_pipeline_model_parallel_size", None), ("encoder_seq_length", 4096),
    ("max_position_embeddings", 4096), ("num_layers", None), ("hidden_size", None),
    ("ffn_hidden_size", None), ("num_attention_heads", None), ("num_query_groups", None),
    ("kv_channels", None), ("init_method_std", 0.0063), ("hidden_dropout", 0.0),
    ("attention_dropout", 0.0), ("ffn_dropout", 0.0), ("apply_query_key_layer_scaling", False),
    ("normalization", "layernorm1p"), ("layernorm_zero_centered_gamma", True),
    ("layernorm_epsilon", 1e-05), ("do_layer_norm_weight_decay", False),
    ("make_vocab_size_divisible_by", 128), ("pre_process", True), ("post_process", True),
    ("persist_layer_norm", True), ("bias", False), ("activation", "squared-relu"),
    ("headscale", False), ("transformer_block_type", "pre_ln"), ("openai_gelu", False),
    ("normalize_attention_scores", True), ("position_embedding_type", "rope"),
    ("rotary_percentage", 0.5), ("rotary_base", 10000), ("rotary_interleaved", False),
    ("share_embeddings_and_output_weights", False), ("tokenizer", None),
    ("native_amp_init_scale", 4294967296), ("hysteresis", 2), ("fp32_residual_connection", False),
    ("fp16_lm_cross_entropy", False), ("megatron_amp_O2", True), ("seed", 1234),
    ("use_cpu_initialization", False), ("transformer_engine", True), ("fp8", False),
    ("sequence_parallel", False), ("precision", "bf16"), ("reward_model_type", "regression"),
    ("output_sequence", False), ("use_avg_pool", False), ("force_head_dtype", "float32"),
    ("regression", None), ("dist_ckpt_format", "zarr"), ("dist_ckpt_load_on_device", True),
    ("dist_ckpt_parallel_save", False),
    ("target", "nemo_aligner.models.nlp.gpt.megatron_gpt_regression_reward_model.MegatronGPTRegressionRewardModel"),
    ("nemo_version", "2.0.0rc0"),
]


def model_config(spec, tokenizer_name):
    fill = dict(tensor_model_parallel_size=spec.tp, num_layers=spec.L, hidden_size=spec.H,
                ffn_hidden_size=spec.F, num_attention_heads=spec.heads, num_query_groups=spec.groups,
                kv_channels=spec.d,
                tokenizer=dict(library="sentencepiece", type=None, model="nemo:" + tokenizer_name, vocab_file=None,
                               merge_file=None, delimiter=None, sentencepiece_legacy=False,
                               tokenizer_model="nemo:" + tokenizer_name),
                regression=dict(num_attributes=spec.attributes, merge_attributes=False, attribute_weights=None,
                                loss_mask_val=-100))
    return {k: fill.get(k, v) for k, v in MODEL_CONFIG_TEMPLATE}


# SentencePiece ModelProto. Built with sentencepiece's own sentencepiece_model_pb2 when
# google.protobuf is importable; otherwise the same message is encoded by hand (the bytes are
# identical: proto2, fields in number order, only the fields set below).
PIECE_NORMAL, PIECE_UNKNOWN, PIECE_CONTROL, PIECE_USER, PIECE_BYTE = 1, 2, 3, 4, 6
N_EXTRA_IDS = 1000  # <extra_id_0..999> = 4..1003, so <extra_id_1> = 5 and <0x0A> = 1014 as in the real model


def tokenizer_pieces(size):
    pieces = [("<pad>", 0.0, PIECE_CONTROL), ("<unk>", 0.0, PIECE_UNKNOWN), ("<s>", 0.0, PIECE_CONTROL),
              ("</s>", 0.0, PIECE_CONTROL)]
    pieces += [(f"<extra_id_{i}>", 0.0, PIECE_USER) for i in range(N_EXTRA_IDS)]
    pieces += [(f"<0x{b:02X}>", 0.0, PIECE_BYTE) for b in range(256)]
    chars = ["\u2581"] + [chr(c) for c in range(0x21, 0x7F)]
    n_merge = size - len(pieces) - len(chars)
    if n_merge < 0:
        raise SystemExit(f"vocabulary {size} too small for the special, byte and character pieces")
    alpha = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    merges, length = [], 2
    while len(merges) < n_merge:  # all 2-grams, then 3-grams, ... of alpha, in order (each one
        for tup in np.ndindex(*([len(alpha)] * length)):  # is two shorter pieces joined)
            merges.append("".join(alpha[i] for i in tup))
            if len(merges) == n_merge:
                break
        length += 1
    for i, p in enumerate(merges + chars):  # scores as sentencepiece's trainer: merges, then characters
        pieces.append((p, float(-i), PIECE_NORMAL))
    assert len(pieces) == size and len({p for p, _, _ in pieces}) == size
    return pieces


TRAINER_FIELDS = dict(model_type=2, vocab_size=None, character_coverage=1.0, split_digits=True,
                      user_defined_symbols=None, byte_fallback=True, unk_id=1, bos_id=2, eos_id=3, pad_id=0,
                      unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", pad_piece="<pad>")


def _tokenizer_pb2(size, pieces):
    from sentencepiece import sentencepiece_model_pb2 as pb  # needs google.protobuf

    m = pb.ModelProto()
    for p, s, ty in pieces:
        sp = m.pieces.add()
        sp.piece, sp.score = p, s
        if ty != PIECE_NORMAL:
            sp.type = ty
    ts = m.trainer_spec
    for k, v in TRAINER_FIELDS.items():
        if k == "vocab_size":
            ts.vocab_size = size
        elif k == "user_defined_symbols":
            ts.user_defined_symbols.extend(f"<extra_id_{i}>" for i in range(N_EXTRA_IDS))
        else:
            setattr(ts, k, v)
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.precompiled_charsmap = b""
    m.normalizer_spec.add_dummy_prefix = True
    return m.SerializeToString(deterministic=True)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _f_len(num, payload):
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _f_int(num, v):
    return _varint(num << 3) + _varint(int(v))


def _f_float(num, v):
    return _varint(num << 3 | 5) + struct.pack("<f", v)


def _tokenizer_by_hand(size, pieces):
    out = bytearray()
    for p, s, ty in pieces:
        msg = _f_len(1, p.encode()) + _f_float(2, s) + (_f_int(3, ty) if ty != PIECE_NORMAL else b"")
        out += _f_len(1, msg)
    ts = (_f_int(3, 2) + _f_int(4, size) + _f_float(10, 1.0) + _f_int(25, 1)
          + b"".join(_f_len(31, f"<extra_id_{i}>".encode()) for i in range(N_EXTRA_IDS))
          + _f_int(35, 1) + _f_int(40, 1) + _f_int(41, 2) + _f_int(42, 3) + _f_int(43, 0)
          + _f_len(45, b"<unk>") + _f_len(46, b"<s>") + _f_len(47, b"</s>") + _f_len(48, b"<pad>"))
    ns = _f_len(1, b"identity") + _f_len(2, b"") + _f_int(3, 1)
    return bytes(out + _f_len(2, ts) + _f_len(3, ns))


def tokenizer_bytes(size):
    pieces = tokenizer_pieces(size)
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        return _tokenizer_by_hand(size, pieces), "hand-encoded ModelProto (google.protobuf not installed)"
    data = _tokenizer_pb2(size, pieces)
    assert data == _tokenizer_by_hand(size, pieces), "pb2 and hand encodings differ"
    return data, "sentencepiece_model_pb2.ModelProto"


def tokenizer_name():
    return hashlib.sha256(b"tessera release_shaped nemotron_2_256k.model").hexdigest()[:32] + "_nemotron_2_256k.model"


def bf16_bytes(values):
    import ml_dtypes

    a = np.asarray(values, np.float64)
    b = a.astype(np.float32).astype(ml_dtypes.bfloat16)
    assert np.array_equal(b.astype(np.float64), a), "stamp value not exact in bf16"
    return b.tobytes()


def create_zarray(path, t):
    """megatron-core's zarr strategy (_create_zarr_array): zarr.create with the numpy bfloat16 dtype
    (zarr writes "<V2"), then the .zarray text rewritten to "bfloat16"."""
    import ml_dtypes  # noqa: F401  (numpy learns the "bfloat16" dtype, as tensorstore's import does)
    import zarr

    arr = zarr.create(t.shape, dtype=np.dtype("bfloat16"), store=path, chunks=t.chunks, compressor=None,
                      fill_value=None, write_empty_chunks=True)
    zarray = arr.store[".zarray"]
    arr.store[".zarray"] = zarray.replace(b"<V2", b"bfloat16")


def cmd_make(a):
    import torch
    import yaml

    t0 = time.time()
    spec = Spec(layers=a.layers, hidden=a.hidden, ffn=a.ffn, heads=a.heads, groups=a.groups, kv=a.kv_channels,
                vocab=a.vocab, tp=a.tp)
    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty")
    mw = out / "model_weights"
    mw.mkdir(parents=True)

    tok = tokenizer_name()
    data, how = tokenizer_bytes(a.vocab)
    (out / tok).write_bytes(data)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=data)
    assert sp.get_piece_size() == a.vocab
    sample = "<extra_id_0>System\nHello World 42.\n<extra_id_1>"
    print(f"tokenizer {tok}: {len(data)} bytes, {sp.get_piece_size()} pieces ({how}); "
          f"{sample!r} -> {sp.encode(sample)}")

    (out / "model_config.yaml").write_text(yaml.safe_dump(model_config(spec, tok), sort_keys=False))
    with open(mw / "metadata.json", "w") as f:  # megatron-core core.save_config: json.dump(asdict(config), f)
        json.dump({"sharded_backend": "zarr", "sharded_backend_version": 1, "common_backend": "torch",
                   "common_backend_version": 1}, f)
    torch.save({}, str(mw / "common.pt"))  # what megatron-core leaves in common.pt for a NeMo GPT model

    # TE _extra_state ShardedObjects of the decoder linears (TE before Dec 2024: a BytesIO holding
    # torch.save(None), position at the end), one torch.save file per layer, as in the fixture.
    inner = io.BytesIO()
    torch.save(None, inner)
    for lin in ("self_attention.linear_qkv", "self_attention.linear_proj", "mlp.linear_fc1", "mlp.linear_fc2"):
        d = mw / f"model.decoder.layers.{lin}._extra_state"
        d.mkdir()
        for layer in range(spec.L):
            obj = io.BytesIO(inner.getvalue())
            obj.seek(0, io.SEEK_END)
            torch.save(obj, str(d / f"shard_{layer}_{spec.L}.pt"))

    apparent = n_files = n_runs = n_elems = 0
    for t in spec.tensors():
        create_zarray(mw / t.key, t)
        nbytes = math.prod(t.chunks) * 2
        for ci in np.ndindex(*t.grid):
            path = mw / t.key / ".".join(map(str, ci))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.truncate(fd, nbytes)  # a hole: the zeros are never written
                base = [i * c for i, c in zip(ci, t.chunks)]
                for start, n in stamp_runs(spec, t.key, ci, t.chunks):
                    g = tuple(b + s for b, s in zip(base, start))
                    os.pwrite(fd, bf16_bytes(run_values(t.key, g, n)), int(np.ravel_multi_index(start, t.chunks)) * 2)
                    n_runs += 1
                    n_elems += n
            finally:
                os.close(fd)
            apparent += nbytes
            n_files += 1
    physical = sum(p.stat().st_blocks * 512 for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {len(spec.tensors())} zarr arrays, {n_files} chunk files, {4 * spec.L} _extra_state files; "
          f"{n_runs} stamp runs ({n_elems} elements); apparent {apparent / 1e9:.1f} GB, "
          f"physical {physical / 1e6:.1f} MB; {time.time() - t0:.1f} s")
    print(f"stamped embedding rows (token ids): {stamped_tokens(spec)}")


# ---------------------------------------------------------------------------------------------
# readers. read(key, gstart, n) -> list of (where, float64 values) for the n elements
# gstart[..-1] + (c .. c+n) of global tensor `key` (one entry per TP replica for replicated
# tensors in legacy layouts); a KeyError when the output does not hold the tensor.


def _bf16_to_f64(raw, dtype):
    import ml_dtypes

    np_dtype = {"bf16": ml_dtypes.bfloat16, "f16": np.float16, "f32": np.float32, "f64": np.float64}[dtype]
    return np.frombuffer(raw, dtype=np_dtype).astype(np.float64)


class ZarrReader:
    """zarr 2 library over a store that memory-maps chunk files, so a slice touches only its pages."""

    name = "zarr"

    def __init__(self, weights):
        import ml_dtypes  # noqa: F401  (dtype "bfloat16" for zarr's metadata, as megatron-core's tensorstore import)
        import zarr

        class MmapStore(zarr.storage.DirectoryStore):
            def __getitem__(self, key):
                if key.rsplit("/", 1)[-1].startswith("."):
                    return super().__getitem__(key)
                p = os.path.join(self.path, key)
                if not os.path.isfile(p):
                    raise KeyError(key)
                return np.memmap(p, dtype=np.uint8, mode="r")

        self.zarr, self.Store, self.root, self.arrays = zarr, MmapStore, Path(weights), {}

    def array(self, key):
        if key not in self.arrays:
            if not (self.root / key / ".zarray").exists():
                raise KeyError(key)
            self.arrays[key] = self.zarr.open_array(store=self.Store(str(self.root / key)), mode="r")
        return self.arrays[key]

    def shape(self, key):
        return tuple(self.array(key).shape)

    def read(self, key, g, n):
        a = self.array(key)
        for c in {g[-1] // a.chunks[-1], (g[-1] + n - 1) // a.chunks[-1]}:  # fill_value is null: a missing
            ci = tuple(x // k for x, k in zip(g[:-1], a.chunks[:-1])) + (c,)  # chunk would read as garbage
            if a._chunk_key(ci) not in a.chunk_store:
                raise KeyError(f"{key}: chunk file {a._chunk_key(ci)} missing")
        return [("zarr", np.asarray(a[tuple(g[:-1]) + (slice(g[-1], g[-1] + n),)], dtype=np.float64))]


class _FileSlice(io.RawIOBase):
    """A read-only window [start, start+length) of a file, for zipfile."""

    def __init__(self, fd, start, length):
        self.fd, self.start, self.length, self.pos = fd, start, length, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, off, whence=0):
        self.pos = {0: off, 1: self.pos + off, 2: self.length + off}[whence]
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, b):
        n = max(0, min(len(b), self.length - self.pos))
        data = os.pread(self.fd, n, self.start + self.pos)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


_STORAGE_DTYPES = {"BFloat16Storage": ("bf16", 2), "HalfStorage": ("f16", 2), "FloatStorage": ("f32", 4),
                   "DoubleStorage": ("f64", 8), "ByteStorage": ("u8", 1), "LongStorage": ("i64", 8)}


class _TorchPickle(pickle.Unpickler):
    """Reads a torch.save data.pkl without torch: tensors become (storage key, dtype, storage
    offset, size, stride) records; anything but plain containers and tensors is refused."""

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: dict(
                key=storage["key"], dtype=storage["dtype"], itemsize=storage["itemsize"], offset=offset,
                size=tuple(size), stride=tuple(stride), numel=storage["numel"])
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        kind, stype, key, _location, numel = pid
        dtype, itemsize = _STORAGE_DTYPES[stype]
        return dict(key=key, dtype=dtype, itemsize=itemsize, numel=numel)


def torch_zip_records(fobj):
    """(tensor record from data.pkl, {record name: (data offset, size)}) of a torch.save zip."""
    zf = zipfile.ZipFile(fobj)
    recs = {}
    for zi in zf.infolist():
        fobj.seek(zi.header_offset)
        hdr = fobj.read(30)
        if hdr[:4] != b"PK\x03\x04":
            raise ValueError(f"bad local header for {zi.filename}")
        nlen, elen = struct.unpack("<HH", hdr[26:30])
        recs[zi.filename.split("/", 1)[1]] = (zi.header_offset + 30 + nlen + elen, zi.file_size, zi.compress_type)
    obj = _TorchPickle(io.BytesIO(zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl"))))).load()
    return obj, recs


class DistTorchReader:
    """torch_dist: torch's DCP FileSystemReader for .metadata; each chunk item is a torch.save zip
    inside a .distcp file, located with zipfile over a file slice; stamp bytes read with os.pread."""

    name = "dist-torch"

    def __init__(self, weights):
        import torch.distributed.checkpoint as dcp

        self.root = Path(weights)
        self.md = dcp.FileSystemReader(str(self.root)).read_metadata()
        self.storage = {}
        for mi, info in self.md.storage_data.items():
            if mi.offset is not None:
                self.storage[(mi.fqn, tuple(mi.offset))] = info
        self.grids, self.items, self.fds = {}, {}, {}

    def shape(self, key):
        m = self.md.state_dict_metadata.get(key)
        if m is None or not hasattr(m, "chunks"):
            raise KeyError(key)
        return tuple(m.size)

    def _grid(self, key):
        if key not in self.grids:
            m = self.md.state_dict_metadata[key]
            cuts = [sorted({c.offsets[i] for c in m.chunks}) for i in range(len(m.size))]
            chunks = {tuple(c.offsets): tuple(c.sizes) for c in m.chunks}
            self.grids[key] = (cuts, chunks)
        return self.grids[key]

    def _chunk_of(self, key, g):
        import bisect

        cuts, chunks = self._grid(key)
        off = tuple(c[bisect.bisect_right(c, x) - 1] for c, x in zip(cuts, g))
        if off in chunks and all(o <= x < o + s for o, s, x in zip(off, chunks[off], g)):
            return off, chunks[off]
        for off, size in chunks.items():  # not a regular grid
            if all(o <= x < o + s for o, s, x in zip(off, size, g)):
                return off, size
        raise KeyError(f"{key} {g}: no chunk")

    def _item(self, key, off):
        k = (key, off)
        if k not in self.items:
            info = self.storage[k]
            if info.relative_path not in self.fds:
                self.fds[info.relative_path] = os.open(self.root / info.relative_path, os.O_RDONLY)
            fd = self.fds[info.relative_path]
            ten, recs = torch_zip_records(_FileSlice(fd, info.offset, info.length))
            data_off, size, method = recs["data/" + ten["key"]]
            if method != zipfile.ZIP_STORED:
                raise ValueError(f"{key}: compressed record")
            self.items[k] = (fd, info.offset + data_off, ten)
        return self.items[k]

    def read(self, key, g, n):
        out = []
        c = g[-1]
        while c < g[-1] + n:
            gi = tuple(g[:-1]) + (c,)
            off, size = self._chunk_of(key, gi)
            fd, base, ten = self._item(key, off)
            local = [x - o for x, o in zip(gi, off)]
            m = min(g[-1] + n - c, off[-1] + size[-1] - c)
            if ten["stride"][-1] != 1:
                raise ValueError(f"{key}: non-contiguous chunk")
            elem = ten["offset"] + sum(i * s for i, s in zip(local, ten["stride"]))
            out.append(_bf16_to_f64(os.pread(fd, m * ten["itemsize"], base + elem * ten["itemsize"]), ten["dtype"]))
            c += m
        return [("distcp", np.concatenate(out))]


LOCAL_NORM_NAMES = {"self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
                    "self_attention.linear_qkv.layer_norm_bias": "input_layernorm.bias",
                    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
                    "mlp.linear_fc1.layer_norm_bias": "pre_mlp_layernorm.bias"}


def role_of(key):
    """(role, stacked, stage) of a dist-checkpoint key, independent of any size."""
    stacked = key.startswith("model.decoder.layers.")
    if "word_embeddings" in key:
        return "vocab", False, "first"
    if "output_layer" in key:
        return "vocab", False, "last"
    if key.endswith(("linear_qkv.weight", "linear_fc1.weight")):
        return "column", True, "all"
    if key.endswith(("linear_proj.weight", "linear_fc2.weight")):
        return "row", True, "all"
    if key.endswith("rm_head.weight"):
        return "row", False, "last"
    return "replicated", stacked, ("all" if stacked else "last")


class LegacyReader:
    """Per-rank legacy files (model_weights.ckpt, mp_rank_XX/, tp_rank_XX_pp_rank_XXX/): each loaded
    with torch.load(mmap=True, weights_only=True); global positions mapped to (rank, local key,
    local index) by megatron's TP/PP rules (nemo-formats.md section 5)."""

    name = "nemo-legacy"

    def __init__(self, root):
        import torch

        self.torch, root = torch, Path(root)
        files = {}
        for p in root.iterdir():
            m1 = re.fullmatch(r"mp_rank_(\d\d)", p.name)
            m2 = re.fullmatch(r"tp_rank_(\d\d)_pp_rank_(\d\d\d)", p.name)
            if m1 and (p / "model_weights.ckpt").exists():
                files[(int(m1.group(1)), 0)] = p / "model_weights.ckpt"
            elif m2 and (p / "model_weights.ckpt").exists():
                files[(int(m2.group(1)), int(m2.group(2)))] = p / "model_weights.ckpt"
        if not files and (root / "model_weights.ckpt").is_file():
            files[(0, 0)] = root / "model_weights.ckpt"
        if not files:
            raise SystemExit(f"{root}: no legacy rank files")
        self.tp = max(t for t, _ in files) + 1
        self.pp = max(p for _, p in files) + 1
        if set(files) != {(t, p) for t in range(self.tp) for p in range(self.pp)}:
            raise SystemExit(f"{root}: incomplete rank set {sorted(files)}")
        self.files, self.sd = files, {}
        self.stage_layers = []
        for p in range(self.pp):
            idx = {int(m.group(1)) for k in self.rank(0, p) for m in [re.match(r"model\.decoder\.layers\.(\d+)\.", k)] if m}
            self.stage_layers.append(max(idx) + 1 if idx else 0)
        self.offsets = [sum(self.stage_layers[:p]) for p in range(self.pp)]
        print(f"legacy layout: TP={self.tp} PP={self.pp}, layers per stage {self.stage_layers}", file=sys.stderr)

    def rank(self, t, p):
        if (t, p) not in self.sd:
            # A private mapping of a rank file larger than RAM is refused by the kernel's
            # overcommit check (a 682 GB TP1PP1 file); a shared one is not. Nothing is written.
            import mmap
            self.torch.serialization.set_default_mmap_options(mmap.MAP_SHARED)
            with self.torch.serialization.safe_globals([io.BytesIO]):
                self.sd[(t, p)] = self.torch.load(self.files[(t, p)], mmap=True, weights_only=True, map_location="cpu")
        return self.sd[(t, p)]

    def _locate(self, key, layer):
        """(pp stage, local key candidates)"""
        role, stacked, stage = role_of(key)
        if stacked:
            for p in range(self.pp):
                if self.offsets[p] <= layer < self.offsets[p] + self.stage_layers[p]:
                    i = layer - self.offsets[p]
                    rest = key[len("model.decoder.layers."):]
                    names = [f"model.decoder.layers.{i}.{rest}"]
                    if rest in LOCAL_NORM_NAMES:
                        names.append(f"model.decoder.layers.{i}.{LOCAL_NORM_NAMES[rest]}")
                    return p, names
            raise KeyError(f"{key}: layer {layer} not in any stage")
        return (0 if stage == "first" else self.pp - 1), [key]

    def _local(self, t, p, names):
        sd = self.rank(t, p)
        for nm in names:
            if nm in sd:
                return sd[nm]
        raise KeyError(names[0])

    def shape(self, key):
        role, stacked, _ = role_of(key)
        if stacked:
            p, names = self._locate(key, 0)
            loc = self._local(0, p, names)
            shp = list(loc.shape)
            ax = {"column": 0, "row": len(shp) - 1}.get(role)
            if ax is not None:
                shp[ax] *= self.tp
            return (sum(self.stage_layers),) + tuple(shp)
        p, names = self._locate(key, None)
        shp = list(self._local(0, p, names).shape)
        ax = {"vocab": 0, "row": len(shp) - 1}.get(role)
        if ax is not None:
            shp[ax] = sum(self._local(t, p, names).shape[ax] for t in range(self.tp))
        return tuple(shp)

    def read(self, key, g, n):
        role, stacked, _ = role_of(key)
        p, names = self._locate(key, g[0] if stacked else None)
        idx = list(g[1:] if stacked else g)  # index into the per-layer tensor
        if role == "replicated":
            res = []
            for t in range(self.tp):
                loc = self._local(t, p, names)
                res.append((f"tp{t}/pp{p}", loc[tuple(idx[:-1])][idx[-1]:idx[-1] + n].to(self.torch.float64).numpy()))
            return res
        ax = 0 if role in ("vocab", "column") else len(idx) - 1
        part = self._local(0, p, names).shape[ax]
        if ax != len(idx) - 1:
            t = idx[ax] // part
            idx[ax] -= t * part
            loc = self._local(t, p, names)
            return [(f"tp{t}/pp{p}", loc[tuple(idx[:-1])][idx[-1]:idx[-1] + n].to(self.torch.float64).numpy())]
        out, where, c = [], [], idx[-1]
        while c < idx[-1] + n:  # row-parallel: the run may cross a rank boundary
            t, lc = c // part, c % part
            m = min(idx[-1] + n - c, part - lc)
            loc = self._local(t, p, names)
            out.append(loc[tuple(idx[:-1])][lc:lc + m].to(self.torch.float64).numpy())
            where.append(f"tp{t}")
            c += m
        return [("+".join(where) + f"/pp{p}", np.concatenate(out))]


class Hdf5Reader:
    """Tessera HDF5 store (Schemas/hdf5-store.md): /weights/<canonical name, '.' as '/'>, one dataset
    per global tensor and per global layer; bf16/fp16 stored as uint16 (attribute dtype)."""

    name = "hdf5"

    def __init__(self, path):
        import h5py
        import hdf5plugin  # noqa: F401  (zstd filter 32015)

        self.f = h5py.File(path, "r")
        if self.attr(self.f, "format") != "tessera-hdf5":
            raise SystemExit(f"{path}: not a Tessera HDF5 store")
        print(f"hdf5 layout {self.attr(self.f, 'layout')}, compression {self.attr(self.f, 'compression')}", file=sys.stderr)
        self.ds = {}

    @staticmethod
    def attr(obj, name, default=None):
        """A string attribute: str or bytes (fixed-length UTF-8, as Tessera writes them), as str."""
        v = obj.attrs.get(name, default)
        return v.decode("utf-8") if isinstance(v, bytes) else v

    def config(self):
        import yaml

        cfg = yaml.safe_load(self.f.attrs["model_config_yaml"])  # str or bytes (fixed-length UTF-8)
        return cfg.get("model", cfg)

    def dataset(self, key, layer):
        k = (key, layer)
        if k not in self.ds:
            names = [key[len("model."):]]
            if layer is not None:
                rest = key[len("model.decoder.layers."):]
                names = [f"decoder.layers.{layer}.{rest}"]
                if rest in LOCAL_NORM_NAMES:
                    names.append(f"decoder.layers.{layer}.{LOCAL_NORM_NAMES[rest]}")
            for nm in names:
                path = "weights/" + nm.replace(".", "/")
                if path in self.f:
                    d = self.f[path]
                    self.ds[k] = (d, self.attr(d, "dtype", str(d.dtype)))
                    break
            else:
                raise KeyError(f"{key} layer {layer}")
        return self.ds[k]

    def values(self, raw, dtype):
        import ml_dtypes

        if dtype == "bfloat16":
            return raw.view(ml_dtypes.bfloat16).astype(np.float64)
        if dtype == "float16" and raw.dtype == np.uint16:
            return raw.view(np.float16).astype(np.float64)
        return raw.astype(np.float64)

    def shape(self, key):
        _, stacked, _ = role_of(key)
        if not stacked:
            return tuple(self.dataset(key, None)[0].shape)
        n = 0
        while True:
            try:
                self.dataset(key, n)
            except KeyError:
                break
            n += 1
        return (n,) + tuple(self.dataset(key, 0)[0].shape)

    def read(self, key, g, n):
        _, stacked, _ = role_of(key)
        d, dtype = self.dataset(key, g[0] if stacked else None)
        idx = g[1:] if stacked else g
        raw = d[tuple(idx[:-1]) + (slice(idx[-1], idx[-1] + n),)]
        return [("h5", self.values(np.asarray(raw), dtype))]


def open_reader(path, fmt):
    p = Path(path)
    if fmt == "hdf5":
        r = Hdf5Reader(p)
        return r, r.config()
    if fmt in ("zarr", "dist-torch"):
        weights = p / "model_weights" if (p / "model_weights").is_dir() else p
        cfg_dir = weights.parent if weights.name == "model_weights" and not (p / "model_weights").is_dir() else p
        backend = json.loads((weights / "metadata.json").read_text())["sharded_backend"]
        want = {"zarr": "zarr", "dist-torch": "torch_dist"}[fmt]
        if backend != want:
            raise SystemExit(f"{weights}/metadata.json says sharded_backend {backend!r}, not {want!r}")
        r = ZarrReader(weights) if fmt == "zarr" else DistTorchReader(weights)
        return r, load_config(cfg_dir)
    r = LegacyReader(p)
    return r, load_config(p)


# ---------------------------------------------------------------------------------------------
# check


def check_tar(path, threshold=8 * GIB):
    """List a .nemo tar; members over 8 GiB must have the size computed from the checkpoint's own
    metadata (zarr chunk from its .zarray, .distcp from the DCP .metadata, legacy rank file from
    the end of its zip directory)."""
    t0 = time.time()
    big, bad, n = [], 0, 0
    with tarfile.open(path, "r:") as tf:
        members = {}
        for m in tf:
            n += 1
            members[m.name] = m
            if m.isfile() and m.size > threshold:
                big.append(m)
        fd = os.open(path, os.O_RDONLY)
        dcp_ends = {}
        for m in big:
            name = m.name
            expected, how = None, ""
            parent = name.rsplit("/", 1)[0]
            if parent + "/.zarray" in members:
                meta = json.loads(tf.extractfile(members[parent + "/.zarray"]).read())
                item = 2 if meta["dtype"] in ("bfloat16", "<f2", "<V2") else np.dtype(meta["dtype"]).itemsize
                expected, how = math.prod(meta["chunks"]) * item, f"zarr chunk {meta['chunks']} x {item} B"
            elif name.endswith(".distcp") and parent + "/.metadata" in members:
                if parent not in dcp_ends:
                    md = pickle.loads(tf.extractfile(members[parent + "/.metadata"]).read())
                    ends = collections.defaultdict(int)
                    for info in md.storage_data.values():
                        ends[info.relative_path] = max(ends[info.relative_path], info.offset + info.length)
                    dcp_ends[parent] = ends
                expected, how = dcp_ends[parent].get(name.rsplit("/", 1)[1]), "end of the last DCP item"
            elif name.endswith(".ckpt"):
                sl = _FileSlice(fd, m.offset_data, m.size)
                try:
                    ten_zip = zipfile.ZipFile(sl)
                    tail = min(m.size, 65536 + 22)
                    buf = os.pread(fd, tail, m.offset_data + m.size - tail)
                    e = buf.rfind(b"PK\x05\x06")
                    clen = struct.unpack("<H", buf[e + 20:e + 22])[0]
                    expected = m.size - tail + e + 22 + clen
                    recs = {zi.filename: zi.file_size for zi in ten_zip.infolist()}
                    obj = _TorchPickle(io.BytesIO(ten_zip.read(next(k for k in recs if k.endswith("/data.pkl"))))).load()
                    prefix = next(iter(recs)).split("/", 1)[0]
                    stor = {}
                    for v in (obj.values() if isinstance(obj, dict) else []):
                        if isinstance(v, dict) and "key" in v:
                            stor[v["key"]] = v["numel"] * v["itemsize"]
                    wrong = [k for k, s in stor.items() if recs.get(f"{prefix}/data/{k}") != s]
                    how = f"end of zip directory; {len(stor)} storages, {len(wrong)} with a wrong record size"
                    if wrong:
                        expected = -1
                except Exception as ex:  # noqa: BLE001
                    how = f"zip unreadable: {ex}"
            ok = expected == m.size
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {name}: {m.size} bytes, expected {expected} ({how})")
        os.close(fd)
    print(f"tar members: {n}, over {threshold} bytes: {len(big)}, size mismatches: {bad} ({time.time() - t0:.1f} s)")
    return 1 if bad else 0


def cmd_check(a):
    if a.path.endswith(".nemo") and Path(a.path).is_file():
        return check_tar(a.path, a.tar_threshold)
    t0 = time.time()
    reader, cfg = open_reader(a.path, a.format)
    vocab = a.vocab or reader.shape("model.embedding.word_embeddings.weight")[0]
    spec = spec_from_config(cfg, vocab, a.source_tp)
    print(f"spec: L={spec.L} H={spec.H} F={spec.F} heads={spec.heads} groups={spec.groups} d={spec.d} "
          f"V={spec.vp} source TP={spec.tp}", file=sys.stderr)
    found = checked = wrong = missing = 0
    shown = collections.Counter()

    def report(msg):  # at most 20 lines of each kind (WRONG, MISSING, NONZERO, SHAPE)
        kind = msg.split(" ", 1)[0]
        if shown[kind] < 20:
            print(msg)
        elif shown[kind] == 20:
            print(f"{kind}: further lines omitted")
        shown[kind] += 1

    for t in spec.tensors():
        try:
            shp = reader.shape(t.key)
        except KeyError:
            n = sum(n for _, n in iter_stamps(spec, t))
            missing += n
            report(f"MISSING tensor {t.key} ({n} stamps)")
            continue
        if tuple(shp) != t.shape:
            report(f"SHAPE {t.key}: {tuple(shp)}, expected {t.shape}")
            wrong += 1
        for g, n in iter_stamps(spec, t):
            want = run_values(t.key, g, n)
            try:
                got = reader.read(t.key, g, n)
            except KeyError as ex:
                missing += n
                report(f"MISSING {t.key} at {g} (+{n}): {ex}")
                continue
            found += n
            checked += n
            bad = np.zeros(n, bool)
            for where, v in got:
                bad |= v != want
                if (v != want).any():
                    i = int(np.argmax(v != want))
                    pos = tuple(g[:-1]) + (g[-1] + i,)
                    report(f"WRONG {t.key} at {pos} [{where}]: got {float(v[i])!r}, expected {float(want[i])!r}")
            wrong += int(bad.sum())
    # zeros: a deterministic sample of non-stamp positions over every tensor
    rng = np.random.default_rng(20240614)
    idx = StampIndex(spec)
    ts = spec.tensors()
    sampled = zero_bad = 0
    for i in range(a.sample_zeros):
        t = ts[i % len(ts)]
        for _ in range(20):  # small tensors are mostly stamps (rm_head.bias is all stamps)
            g = tuple(int(rng.integers(0, s)) for s in t.shape)
            if not idx.stamped(t, g):
                break
        else:
            continue
        try:
            got = reader.read(t.key, g, 1)
        except KeyError:
            continue
        sampled += 1
        for where, v in got:
            if v[0] != 0:
                zero_bad += 1
                report(f"NONZERO {t.key} at {g} [{where}]: {float(v[0])!r}")
    if isinstance(reader, Hdf5Reader):
        zero_bad += hdf5_zero_chunks(reader, spec, report)
    total = sum(n for t in ts for _, n in iter_stamps(spec, t))
    print(f"stamps expected: {total}; missing: {missing}; {time.time() - t0:.1f} s")
    print(f"stamps: {found} found, {checked} checked, {wrong} wrong; zeros sampled: {sampled}"
          + (f" ({zero_bad} non-zero)" if zero_bad else ""))
    return 1 if (wrong or missing or zero_bad or found != total) else 0


def hdf5_zero_chunks(reader, spec, report):
    """Read one whole stamp-free HDF5 chunk of every weight (a stamp-free block of about 1 MiB for
    contiguous datasets): it must come back all zeros."""
    bad = ok = 0
    for t in spec.tensors():
        layer = t.shape[0] // 2 if t.stacked else None
        try:
            d, dtype = reader.dataset(t.key, layer)
        except KeyError:
            continue
        shp = d.shape
        block = d.chunks or (max(1, min(shp[0] // 16, (1 << 19) // max(1, math.prod(shp[1:])))),) + tuple(shp[1:])
        grid = tuple(-(-s // b) for s, b in zip(shp, block))
        busy = set()
        for g, n in iter_stamps(spec, t):
            if t.stacked and g[0] != layer:
                continue
            q = g[1:] if t.stacked else g
            lead = tuple(x // b for x, b in zip(q[:-1], block))
            for c in range(q[-1] // block[-1], (q[-1] + n - 1) // block[-1] + 1):
                busy.add(lead + (c,))
        cell = next((c for c in np.ndindex(*grid) if c not in busy), None)
        if cell is None:
            continue
        lo = [c * b for c, b in zip(cell, block)]
        hi = [min(s, l + b) for s, l, b in zip(shp, lo, block)]
        v = reader.values(np.asarray(d[tuple(slice(l, h) for l, h in zip(lo, hi))]), dtype)
        if np.any(v != 0):
            bad += 1
            report(f"NONZERO stamp-free chunk of {t.key} (layer {layer}) at {lo}..{hi}")
        else:
            ok += 1
    print(f"hdf5: {ok} stamp-free chunks read whole, all zero; {bad} not", file=sys.stderr)
    return bad


# ---------------------------------------------------------------------------------------------
# reference forward (float64)


class RunMatrix:
    """A [rows, cols] matrix held as runs (row, first column, values): sparse stamps, or a dense
    matrix with every row one run. y = W x is accumulated run by run."""

    def __init__(self, rows, cols, runs):
        self.rows, self.cols, self.runs = rows, cols, runs
        self.by_row = collections.defaultdict(list)
        for r, c0, v in runs:
            self.by_row[r].append((c0, v))

    @classmethod
    def dense(cls, w):
        w = np.asarray(w, np.float64)
        return cls(w.shape[0], w.shape[1], [(r, 0, w[r]) for r in range(w.shape[0])])

    def __call__(self, x):  # x [n, cols] -> [n, rows]
        y = np.zeros((x.shape[0], self.rows))
        for r, c0, v in self.runs:
            y[:, r] += x[:, c0:c0 + len(v)] @ v
        return y

    def row(self, r):
        out = np.zeros(self.cols)
        for c0, v in self.by_row.get(r, ()):
            out[c0:c0 + len(v)] += v
        return out


def weights_from_stamps(spec):
    """The model's weights as stamp runs in global coordinates (nothing is read from disk)."""
    T = {t.key: t for t in spec.tensors()}

    def mats(key):
        per = collections.defaultdict(list)
        for g, n in iter_stamps(spec, T[key]):
            v = run_values(key, g, n)
            if T[key].stacked:
                per[g[0]].append((g[1], g[2], v))
            else:
                per[None].append((g[0], g[1], v))
        return per

    def vecs(key, size):
        per = collections.defaultdict(lambda: np.zeros(size))
        for g, n in iter_stamps(spec, T[key]):
            v = run_values(key, g, n)
            per[g[0] if T[key].stacked else None][g[-1]:g[-1] + n] = v
        return per

    P = "model.decoder.layers."
    qkv, proj = mats(P + "self_attention.linear_qkv.weight"), mats(P + "self_attention.linear_proj.weight")
    fc1, fc2 = mats(P + "mlp.linear_fc1.weight"), mats(P + "mlp.linear_fc2.weight")
    n1w, n1b = vecs(P + "self_attention.linear_qkv.layer_norm_weight", spec.H), vecs(P + "self_attention.linear_qkv.layer_norm_bias", spec.H)
    n2w, n2b = vecs(P + "mlp.linear_fc1.layer_norm_weight", spec.H), vecs(P + "mlp.linear_fc1.layer_norm_bias", spec.H)
    layers = [dict(ln1_w=n1w[i], ln1_b=n1b[i], qkv=RunMatrix(spec.qkv_rows, spec.H, qkv[i]),
                   proj=RunMatrix(spec.H, spec.attn_out, proj[i]), ln2_w=n2w[i], ln2_b=n2b[i],
                   fc1=RunMatrix(spec.F, spec.H, fc1[i]), fc2=RunMatrix(spec.H, spec.F, fc2[i]))
              for i in range(spec.L)]
    return dict(emb=RunMatrix(spec.vp, spec.H, mats("model.embedding.word_embeddings.weight")[None]),
                layers=layers,
                final_w=vecs("model.decoder.final_layernorm.weight", spec.H)[None],
                final_b=vecs("model.decoder.final_layernorm.bias", spec.H)[None],
                out=RunMatrix(spec.vp, spec.H, mats("model.output_layer.weight")[None]),
                rm_w=RunMatrix(spec.attributes, spec.H, mats("model.rm_head.weight")[None]),
                rm_b=vecs("model.rm_head.bias", spec.attributes)[None])


def weights_from_state_dict(sd, spec):
    """Dense weights of a legacy TP1/PP1 state dict (TE or local spelling), every row one run."""
    def g(k):
        return sd[k].double().numpy()

    def norm(i, te, local):
        k = f"model.decoder.layers.{i}.{te}"
        return g(k if k in sd else f"model.decoder.layers.{i}.{local}")

    layers = []
    for i in range(spec.L):
        P = f"model.decoder.layers.{i}."
        layers.append(dict(
            ln1_w=norm(i, "self_attention.linear_qkv.layer_norm_weight", "input_layernorm.weight"),
            ln1_b=norm(i, "self_attention.linear_qkv.layer_norm_bias", "input_layernorm.bias"),
            qkv=RunMatrix.dense(g(P + "self_attention.linear_qkv.weight")),
            proj=RunMatrix.dense(g(P + "self_attention.linear_proj.weight")),
            ln2_w=norm(i, "mlp.linear_fc1.layer_norm_weight", "pre_mlp_layernorm.weight"),
            ln2_b=norm(i, "mlp.linear_fc1.layer_norm_bias", "pre_mlp_layernorm.bias"),
            fc1=RunMatrix.dense(g(P + "mlp.linear_fc1.weight")),
            fc2=RunMatrix.dense(g(P + "mlp.linear_fc2.weight"))))
    return dict(emb=RunMatrix.dense(g("model.embedding.word_embeddings.weight")), layers=layers,
                final_w=g("model.decoder.final_layernorm.weight"), final_b=g("model.decoder.final_layernorm.bias"),
                out=RunMatrix.dense(g("model.output_layer.weight")), rm_w=RunMatrix.dense(g("model.rm_head.weight")),
                rm_b=g("model.rm_head.bias"))


def ln1p(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * (1.0 + w) + b


def rope(t, rot, base):
    """t [n, heads, d]: megatron-core non-interleaved RoPE on the first `rot` dims, positions 0..n-1."""
    n = t.shape[0]
    inv = 1.0 / (base ** (np.arange(0, rot, 2, dtype=np.float64) / rot))
    freqs = np.outer(np.arange(n, dtype=np.float64), inv)
    emb = np.concatenate([freqs, freqs], -1)[:, None, :]
    x = t[..., :rot]
    x1, x2 = x[..., :rot // 2], x[..., rot // 2:]
    rotated = np.concatenate([-x2, x1], -1)
    return np.concatenate([x * np.cos(emb) + rotated * np.sin(emb), t[..., rot:]], -1)


def forward(spec, W, tokens):
    n, d, hpg, G = len(tokens), spec.d, spec.hpg, spec.groups
    rot = int(d * spec.rotary_percentage)
    x = np.stack([W["emb"].row(t) for t in tokens])
    causal = np.triu(np.ones((n, n), bool), 1)
    for lw in W["layers"]:
        a = ln1p(x, lw["ln1_w"], lw["ln1_b"], spec.eps)
        qkv = lw["qkv"](a).reshape(n, G, hpg + 2, d)  # per query group: hpg query heads, one key, one value
        q = qkv[:, :, :hpg, :].reshape(n, spec.heads, d)
        k, v = qkv[:, :, hpg, :], qkv[:, :, hpg + 1, :]
        q, k = rope(q, rot, spec.rotary_base), rope(k, rot, spec.rotary_base)
        ctx = np.empty((n, spec.heads, d))
        for h in range(spec.heads):
            s = q[:, h, :] @ k[:, h // hpg, :].T / math.sqrt(d)
            s[causal] = -np.inf
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            ctx[:, h, :] = p @ v[:, h // hpg, :]
        x = x + lw["proj"](ctx.reshape(n, spec.heads * d))
        b = ln1p(x, lw["ln2_w"], lw["ln2_b"], spec.eps)
        x = x + lw["fc2"](np.maximum(lw["fc1"](b), 0.0) ** 2)
    hf = ln1p(x, W["final_w"], W["final_b"], spec.eps)
    last = hf[-1:]
    return dict(hidden_last=last[0], last_logits=W["out"](last)[0], rewards=W["rm_w"](last)[0] + W["rm_b"])


def pick_stamped(spec, k):
    ids = stamped_tokens(spec)
    k = min(k, len(ids))
    return [ids[(i * len(ids)) // k] for i in range(k)]


def cmd_reference(a):
    t0 = time.time()
    cfg = load_config(a.ckpt_config)
    spec = spec_from_config(cfg, a.vocab, a.source_tp)
    print(f"stamped embedding rows (token ids): {stamped_tokens(spec)}", file=sys.stderr)
    tokens = [int(x) for x in a.tokens.split(",")] if a.tokens else pick_stamped(spec, a.stamped_tokens or 3)
    if any(not 0 <= t < spec.vp for t in tokens):
        raise SystemExit(f"token ids must be in [0, {spec.vp})")
    W = weights_from_stamps(spec)
    t1 = time.time()
    out = forward(spec, W, tokens)
    nz = np.flatnonzero(out["last_logits"])
    res = dict(description="float64 reference forward of the release-shaped sparse checkpoint (Tools/release_shaped.py), "
                           "weights = stamp runs; hidden_last = final layer norm output at the last position",
               config=dict(num_layers=spec.L, hidden_size=spec.H, ffn_hidden_size=spec.F, heads=spec.heads,
                           groups=spec.groups, kv_channels=spec.d, padded_vocab=spec.vp, source_tp=spec.tp),
               tokens=tokens, rewards=out["rewards"].tolist(),
               nonzero_logits={int(i): float(out["last_logits"][i]) for i in nz},
               last_logits=out["last_logits"].tolist(), hidden_last=out["hidden_last"].tolist())
    print(f"tokens {tokens}; stamps to runs {t1 - t0:.1f} s, forward {time.time() - t1:.1f} s")
    print("rewards: " + ", ".join(f"{r:.9g}" for r in res["rewards"]))
    print(f"last logits: {len(nz)} non-zero of {spec.vp}; largest |logit| {np.abs(out['last_logits']).max():.6g}; "
          f"|hidden_last| {np.linalg.norm(out['hidden_last']):.6g}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)
        print(f"wrote {a.json}")
    return 0


def cmd_validate_reference(a):
    import torch

    fx = Path(a.fixtures)
    src = fx / "legacy_tp1pp1_fp32_te_uint8_pickle"
    cfg = load_config(src)
    sd = torch.load(src / "model_weights.ckpt", weights_only=True, map_location="cpu")
    ref = json.loads((fx / "reference" / "outputs.json").read_text())
    spec = spec_from_config(cfg, sd["model.embedding.word_embeddings.weight"].shape[0], 1)
    W = weights_from_state_dict(sd, spec)
    worst = dict(final_ln=[0.0, 0.0], logits=[0.0, 0.0], rewards=[0.0, 0.0])
    for seq, want in zip(ref["sequences"], ref["fp32"]):
        out = forward(spec, W, seq["ids"])
        for q, got in (("final_ln", out["hidden_last"]), ("logits", out["last_logits"]), ("rewards", out["rewards"])):
            w = np.asarray(want[q], np.float64)
            diff = np.abs(got - w)
            worst[q][0] = max(worst[q][0], float(diff.max()))
            worst[q][1] = max(worst[q][1], float(diff.max() / np.abs(w).max()))
        print(f"{seq['name']:>10} ({len(seq['ids'])} tokens): rewards " + " ".join(f"{r:+.6f}" for r in out["rewards"]))
    fail = False
    for q, (ab, rl) in worst.items():
        bad = ab > a.tol
        fail |= bad
        print(f"{q:>9}: max abs diff {ab:.3e}, relative to max |ref| {rl:.3e}  {'FAIL' if bad else 'ok'}")
    print(f"reference vs megatron-core fp32 on {len(ref['sequences'])} sequences: {'FAIL' if fail else 'PASS'} (tolerance {a.tol:g})")
    return 1 if fail else 0


def cmd_validate_readers(a):
    """Every row of every tensor of the tiny bf16 fixtures, through this file's readers, equals
    the zarr fixture read whole by the zarr library."""
    import ml_dtypes  # noqa: F401
    import zarr

    fx = Path(a.fixtures)
    zroot = fx / "dist_zarr_tp2pp2_bf16" / "model_weights"
    truth = {d.name: np.asarray(zarr.open(str(d), mode="r")[:], np.float64)
             for d in sorted(zroot.iterdir()) if (d / ".zarray").exists()}
    cases = []
    for d in sorted(fx.iterdir()):
        if "bf16" not in d.name:
            continue
        if d.name.startswith("legacy_"):
            cases.append((d, "nemo-legacy"))
        elif d.name.startswith("dist_torch_"):
            cases.append((d, "dist-torch"))
        elif d.name.startswith("dist_zarr_"):
            cases.append((d, "zarr"))
    fail = 0
    for d, fmt in cases:
        reader, _ = open_reader(d, fmt)
        rows = bad = 0
        for key, arr in truth.items():
            if reader.shape(key) != arr.shape:
                print(f"FAIL {d.name}: {key} shape {reader.shape(key)} != {arr.shape}")
                bad += 1
                continue
            for lead in np.ndindex(*arr.shape[:-1]):
                for _, v in reader.read(key, lead + (0,), arr.shape[-1]):
                    rows += 1
                    bad += not np.array_equal(v, arr[lead])
        print(f"{'PASS' if not bad else 'FAIL'} {d.name} ({fmt}): {rows} row reads, {bad} different")
        fail += bool(bad)
    print(f"{len(cases) - fail} passed, {fail} failed")
    return 1 if fail else 0


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write the release-shaped sparse zarr checkpoint folder")
    m.add_argument("--out", required=True)
    m.add_argument("--layers", type=int, default=96)
    m.add_argument("--hidden", type=int, default=18432)
    m.add_argument("--ffn", type=int, default=73728)
    m.add_argument("--heads", type=int, default=96)
    m.add_argument("--groups", type=int, default=8)
    m.add_argument("--kv-channels", type=int, default=None, help="default hidden/heads")
    m.add_argument("--vocab", type=int, default=256000, help="tokenizer pieces (rows padded per NeMo)")
    m.add_argument("--tp", type=int, default=8, help="TP of the saved layout (the zarr chunk grid)")
    c = sub.add_parser("check", help="find and check every stamp in an output")
    c.add_argument("path")
    c.add_argument("--format", choices=["zarr", "dist-torch", "nemo-legacy", "hdf5"], default=None)
    c.add_argument("--sample-zeros", type=int, default=2000)
    c.add_argument("--source-tp", type=int, default=8, help="--tp that make used (default 8)")
    c.add_argument("--vocab", type=int, default=None, help="default: the output's embedding rows")
    c.add_argument("--tar-threshold", type=int, default=8 * GIB,
                   help="a .nemo tar's members above this size are checked (default 8 GiB; lower it to test)")
    r = sub.add_parser("reference", help="float64 forward from the stamps")
    r.add_argument("--ckpt-config", required=True, help="folder holding model_config.yaml (or the file)")
    r.add_argument("--tokens", default=None, help="comma-separated token ids")
    r.add_argument("--stamped-tokens", type=int, default=None, help="use K token ids whose embedding rows carry stamps")
    r.add_argument("--vocab", type=int, default=256000, help="--vocab that make used")
    r.add_argument("--source-tp", type=int, default=8, help="--tp that make used")
    r.add_argument("--json", default=None)
    v = sub.add_parser("validate-reference", help="reference forward vs megatron-core on the tiny dense fixture")
    v.add_argument("--fixtures", default=str(TINY))
    v.add_argument("--tol", type=float, default=1e-4)
    w = sub.add_parser("validate-readers", help="check's readers vs zarr on the tiny bf16 fixtures")
    w.add_argument("--fixtures", default=str(TINY))
    a = ap.parse_args()
    if a.cmd == "check" and a.format is None and not a.path.endswith(".nemo"):
        ap.error("check needs --format for a folder or file")
    sys.exit({"make": cmd_make, "check": cmd_check, "reference": cmd_reference,
              "validate-reference": cmd_validate_reference, "validate-readers": cmd_validate_readers}[a.cmd](a) or 0)


if __name__ == "__main__":
    main()
