#!/usr/bin/env python3
"""Reference for conversation scoring: NeMo-Aligner's SteerLM attribute annotation, run
with real megatron-core on the tiny fixture reward model.

    SCRATCH=${TESSERA_SCRATCH:-$HOME/.cache/tessera-scratch}; mkdir -p "$SCRATCH"
    git -C <NeMo-Aligner mirror> show HEAD:examples/nlp/data/steerlm/common.py \\
        > "$SCRATCH/nemo_aligner_common.py"
    "${TESSERA_VENV:-$HOME/.cache/tessera-venv}"/bin/python Tools/make_scoring_reference.py \\
        --aligner-common "$SCRATCH/nemo_aligner_common.py" [--aligner-git <mirror git dir>]

Writes (under --out, default Tests/Fixtures):

* tiny/reference/conversations.jsonl: the input conversations in NeMo-Aligner's JSONL
  format ({"conversations": [{"value", "from", "label"}, ...], "mask": "User"}).
* tiny/reference/conversations_scored.json: for every conversation and every turn with a
  non-null label, the scoring string, its token ids, the 9 rewards from megatron-core in
  fp32 and in bf16 (Float16Module), the label string attribute_annotate.py writes from
  each, and the whole output line attribute_annotate.py writes per conversation.

The prompt templates are NeMo-Aligner's own: `examples/nlp/data/steerlm/common.py` is
imported from --aligner-common (never copied into this repository). The loop is
attribute_annotate.py's, reproduced statement for statement in `scoring_strings`,
`label_string` and `annotated_line`. Tokenisation is sentencepiece `encode(text)` (no
BOS/EOS), which is NeMo's SentencePieceTokenizer.text_to_ids as serve_reward_model.py's
tokenize_batch(add_BOS=False, add_EOS=False) calls it.

The model is the fixtures' (TP1/PP1 legacy files, reassembled by make_fixtures'
assemble_legacy and checked against reference/tensors.json), built by make_fixtures'
build_model, except that GPTModel's max_sequence_length is 512 instead of 64: the default
SteerLM system prompt alone is 73 tokens with the tiny tokenizer. RoPE has no learned
positions; the script proves that the maths is unchanged (outputs.json reproduced
bit-exactly, and every scoring string gives bit-identical rewards with a 64-length model).
"""

import argparse
import os
import contextlib
import copy
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
ROOT = TOOLS_DIR.parent
sys.dont_write_bytecode = True  # no Tools/__pycache__ in the work tree
sys.path.insert(0, str(TOOLS_DIR))
import make_fixtures as mf  # noqa: E402

REF_SEQ_LEN = 512
FP32_FIXTURE = "tiny/legacy_tp1pp1_fp32_te_uint8_pickle"
BF16_FIXTURE = "tiny/legacy_tp1pp1_bf16_te_bytesio"
COMMON_PY = "examples/nlp/data/steerlm/common.py"
ANNOTATE_PY = "examples/nlp/data/steerlm/attribute_annotate.py"

# An OpenAssistant-style input label (preprocess_openassistant_data.py's encode_labels).
OA = "quality:3,toxicity:0,humor:0,creativity:1"
# Input conversations. User turns carry label None (as the preprocessing scripts write
# them); an assistant turn is scored iff its label is not None (the empty string counts).
# Each conversation is its turns in order: user("text") or assistant("text", label=OA).


def user(value):
    return {"value": value, "from": "User", "label": None}


def assistant(value, label=OA):
    return {"value": value, "from": "Assistant", "label": label}


def conversation(*turns):
    return {"conversations": list(turns), "mask": "User"}


CONVERSATIONS = [
    conversation(user("What is 2+2?"), assistant("2+2 = 4.")),
    conversation(user("hello world"), assistant("Hello! How can I help?", label=""),
                 user("Name two colours."), assistant("Red\nand blue.")),
    conversation(user("Café ☕ or thé? Réponds en français."), assistant("Un café, s'il vous plaît — merci ! 🙂")),
    conversation(user("Count to 3."), assistant("1, 2, 3"), user("Now backwards."), assistant("3 2 1", label=None),
                 user("In words?"), assistant("three, two, one")),
    conversation(user("a"), assistant("b"), user("c"), assistant("d"), user("e"), assistant("f"), user("g"), assistant("h.")),
    conversation(user("Compute 12345 * 6789."), assistant("12345 * 6789 = 83810205"), user("Thanks!")),
    conversation(user("日本語で答えて。"), assistant("はい、わかりました。\n\nx² ≈ 1½")),
    conversation(assistant("Welcome! Ask me anything.", label=None), user("  spaces\tand tabs  "), assistant("", label=""),
                 user("Say nothing again."), assistant("OK.\n")),
]


# --------------------------------------------------------------------------------------
# NeMo-Aligner provenance and templates
# --------------------------------------------------------------------------------------
def load_common(path):
    spec = importlib.util.spec_from_file_location("nemo_aligner_steerlm_common", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def aligner_provenance(common_path, git_dir, commit_arg):
    data = Path(common_path).read_bytes()
    prov = dict(repository="https://github.com/NVIDIA/NeMo-Aligner",
                common_py=dict(path=COMMON_PY, git_blob=git_blob_id(data)))
    if git_dir and Path(git_dir).exists():
        def git(*a):
            return subprocess.run(["git", "-C", str(git_dir), *a], check=True, capture_output=True).stdout

        head = git("rev-parse", "HEAD").decode().strip()
        want = git("rev-parse", f"HEAD:{COMMON_PY}").decode().strip()
        if want != prov["common_py"]["git_blob"]:
            raise SystemExit(f"{common_path} is not {COMMON_PY} at {head} of {git_dir}")
        prov["commit"] = head
        prov["commit_date"] = git("log", "-1", "--format=%cI", "HEAD").decode().strip()
        prov["common_py"]["last_changed_in"] = git("log", "-1", "--format=%H", "HEAD", "--", COMMON_PY).decode().strip()
        prov["attribute_annotate_py"] = dict(
            path=ANNOTATE_PY, git_blob=git("rev-parse", f"HEAD:{ANNOTATE_PY}").decode().strip(),
            last_changed_in=git("log", "-1", "--format=%H", "HEAD", "--", ANNOTATE_PY).decode().strip())
    elif commit_arg:
        prov["commit"] = commit_arg
    else:
        raise SystemExit("give --aligner-git (a NeMo-Aligner git dir) or --aligner-commit")
    return prov


# --------------------------------------------------------------------------------------
# attribute_annotate.py, reproduced
# --------------------------------------------------------------------------------------
def scoring_strings(obj, C):
    """main(): the strings sent to the reward server for one conversation, with the index
    of the turn each belongs to."""
    user = obj["mask"]
    turns = []
    text = C.SYSTEM_PROMPT_TEMPLATE.format(value=C.SYSTEM_PROMPT)
    for i, turn in enumerate(obj["conversations"]):
        value = turn["value"]
        if turn["from"] == user:
            text += C.USER_TURN_TEMPLATE.format(value=value)
        else:
            text += C.ASSISTANT_TURN_TEMPLATE.format(value=value)
        if "label" in turn and turn["label"] is not None:
            out_text = text + C.LABEL_PREFIX
            turns.append((i, out_text))
    return turns


def label_string(reward, C):
    reward_each = [min(4.0, max(0.0, float(r))) for r in reward]
    reward_each = [round(r) for r in reward_each]
    return ",".join(f"{a}:{r}" for a, r in zip(C.ALL_STEERLM_ATTRIBUTES, reward_each))


def annotated_line(line, rewards_all, C):
    """The line attribute_annotate.py appends to --output-file (without the newline) for
    the input `line`, given the rewards of its scoring strings in order."""
    input = json.loads(line)
    t = 0
    for turn in input["conversations"]:
        if "label" in turn and turn["label"] is not None:
            reward = rewards_all[t]
            t += 1
            turn["label"] = label_string(reward, C)
    assert t == len(rewards_all)
    return json.dumps(input)


# --------------------------------------------------------------------------------------
# Model (make_fixtures' harness)
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def model_seq_len(n):
    """make_fixtures.build_model reads MODEL['encoder_seq_length'] for GPTModel's
    max_sequence_length; override it for this build only."""
    saved = dict(mf.MODEL)
    mf.MODEL.update(encoder_seq_length=n, max_position_embeddings=n)
    try:
        yield
    finally:
        mf.MODEL.clear()
        mf.MODEL.update(saved)


def load_fixture_model(fixtures, folder, dtype, seq_len, tensors_json):
    import torch

    with model_seq_len(seq_len):
        m = mf.build_model(1, 1, bf16=(dtype == "bf16"))
    assert mf.inner(m).max_sequence_length == seq_len
    glob = mf.assemble_legacy(fixtures / folder, 1, 1)  # TE-spelling canonical names
    want = tensors_json[dtype]
    assert set(glob) == set(want), sorted(set(glob) ^ set(want))
    for c, t in glob.items():
        assert mf.sha256_tensor(t) == want[c]["sha256"], f"{folder}: {c} differs from tensors.json"
    sd = mf.inner(m).state_dict()
    new = {}
    for k, v in sd.items():
        if k.endswith("_extra_state"):
            new[k] = v
        else:
            t = glob[mf.te_name(k)]
            assert t.dtype == v.dtype and t.shape == v.shape, (k, t.dtype, v.dtype)
            new[k] = t
    assert len(new) == len(sd)
    mf.inner(m).load_state_dict(new, strict=True)
    for k, v in mf.inner(m).state_dict().items():
        if not k.endswith("_extra_state"):
            assert torch.equal(v, glob[mf.te_name(k)]), k
    return m


def rewards_of(model, ids_list):
    return [[float(x) for x in o["rewards"].tolist()] for o in mf.run_forward(model, ids_list)]


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------
def compact_json(o, ind=0):
    """Indented JSON whose lists of scalars stay on one line (keeps the file small)."""
    pad = " " * (ind + 1)
    if isinstance(o, dict):
        if not o:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {compact_json(v, ind + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * ind + "}"
    if isinstance(o, list) and any(isinstance(x, (dict, list)) for x in o):
        return "[\n" + ",\n".join(pad + compact_json(x, ind + 1) for x in o) + "\n" + " " * ind + "]"
    return json.dumps(o, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aligner-common", required=True,
                    help="NeMo-Aligner's examples/nlp/data/steerlm/common.py (imported, not copied)")
    ap.add_argument("--aligner-git", default=os.environ.get("TESSERA_ALIGNER_GIT"),
                    help="NeMo-Aligner git dir the file came from (HEAD commit recorded; file checked)")
    ap.add_argument("--aligner-commit", default=None, help="record this commit if --aligner-git is absent")
    ap.add_argument("--out", type=Path, default=ROOT / "Tests" / "Fixtures", help="fixture root")
    args = ap.parse_args()
    fixtures = args.out.resolve()
    refdir = fixtures / "tiny" / "reference"

    C = load_common(args.aligner_common)
    prov = aligner_provenance(args.aligner_common, args.aligner_git, args.aligner_commit)

    import sentencepiece as spm

    tok_rel = "tiny/tokenizer/tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=str(fixtures / tok_rel))

    # input JSONL (UTF-8, one conversation a line), then read back as the script reads it
    lines = [json.dumps(obj, ensure_ascii=False) for obj in CONVERSATIONS]
    (refdir / "conversations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    objs = [json.loads(l) for l in lines]

    plan = []  # (conversation index, turn index, text, ids)
    for ci, obj in enumerate(objs):
        for ti, text in scoring_strings(obj, C):
            plan.append((ci, ti, text, sp.encode(text)))
    ids_list = [p[3] for p in plan]
    system_ids = sp.encode(C.SYSTEM_PROMPT_TEMPLATE.format(value=C.SYSTEM_PROMPT))
    max_len = max(len(i) for i in ids_list)
    assert max_len <= REF_SEQ_LEN
    assert all(0 <= t < mf.TRUE_VOCAB for i in ids_list for t in i)
    mf.log(f"{len(objs)} conversations, {len(plan)} scoring strings, {min(len(i) for i in ids_list)}.."
           f"{max_len} tokens (system prompt alone {len(system_ids)})")

    from megatron.core import parallel_state

    mf.setup_cpu()
    mf.init_dist(0, 1, mf.free_port())
    parallel_state.initialize_model_parallel(1, 1)
    tensors_json = json.loads((refdir / "tensors.json").read_text())
    outputs_json = json.loads((refdir / "outputs.json").read_text())
    ref_ids = [s["ids"] for s in outputs_json["sequences"]]

    rewards, checks = {}, {}
    for dtype, folder in (("fp32", FP32_FIXTURE), ("bf16", BF16_FIXTURE)):
        m = load_fixture_model(fixtures, folder, dtype, REF_SEQ_LEN, tensors_json)
        rewards[dtype] = rewards_of(m, ids_list)
        # maths unchanged by the longer max_sequence_length: outputs.json bit for bit ...
        got = rewards_of(m, ref_ids)
        assert got == [o["rewards"] for o in outputs_json[dtype]], f"{dtype}: outputs.json not reproduced"
        # ... and the fixtures' 64-length model gives the same rewards on these strings
        m64 = load_fixture_model(fixtures, folder, dtype, mf.MODEL["encoder_seq_length"], tensors_json)
        same64 = rewards_of(m64, ids_list) == rewards[dtype]
        assert same64, f"{dtype}: seq-length-64 model differs"
        checks[dtype] = dict(weights_match_tensors_json=True, outputs_json_rewards_reproduced_exactly=True,
                             seq_len_64_model_gives_identical_rewards=same64)
        mf.log(f"  {dtype}: {folder} scored; checks passed")
        del m, m64

    entries = []
    ties = []  # rewards exactly halfway inside [0, 4]: Python round() goes to even
    for ci, obj in enumerate(objs):
        turns = []
        idx = [k for k, p in enumerate(plan) if p[0] == ci]
        for k in idx:
            _, ti, text, ids = plan[k]
            e = dict(turn=ti, scoring_string=text, n_tokens=len(ids), ids=ids)
            for dtype in ("fp32", "bf16"):
                e[f"rewards_{dtype}"] = rewards[dtype][k]
                e[f"label_{dtype}"] = label_string(rewards[dtype][k], C)
                ties += [dict(conversation=ci, turn=ti, dtype=dtype, attribute=a, reward=r)
                         for a, r in zip(C.ALL_STEERLM_ATTRIBUTES, rewards[dtype][k])
                         if 0.0 <= r <= 4.0 and r % 1 == 0.5]
            turns.append(e)
        entries.append(dict(
            index=ci,
            scored=turns,
            annotated_line_fp32=annotated_line(lines[ci], [rewards["fp32"][k] for k in idx], C),
            annotated_line_bf16=annotated_line(lines[ci], [rewards["bf16"][k] for k in idx], C),
        ))

    v = mf.versions()
    doc = dict(
        generator="Tools/make_scoring_reference.py",
        description=(
            "NeMo-Aligner SteerLM attribute annotation (examples/nlp/data/steerlm/attribute_annotate.py) of "
            "conversations.jsonl, scored by megatron-core with the tiny fixture reward model. Per conversation, "
            "per turn with a non-null label ('turn' = index into conversations, the empty string counts): "
            "scoring_string = SYSTEM_PROMPT_TEMPLATE.format(value=SYSTEM_PROMPT) + each turn up to and including "
            "this one (USER_TURN_TEMPLATE if turn['from'] == obj['mask'] else ASSISTANT_TURN_TEMPLATE) + "
            "LABEL_PREFIX; obj['system'] is never used. ids = sentencepiece encode(scoring_string) (no BOS/EOS = "
            "NeMo text_to_ids with add_BOS=False, add_EOS=False). rewards = NeMo-Aligner GPTRewardModel.forward "
            "(hidden after the final layer norm at index length-1 -> rm_head), batch 1, causal mask, positions "
            "0..S-1; fp32 = the fp32 fixture, bf16 = the bf16 fixture in megatron-core Float16Module (rm_head in "
            "bf16 too), values as float32/bf16 widened exactly to double. label = ','.join(f'{a}:{r}') over "
            "ALL_STEERLM_ATTRIBUTES of round(min(4.0, max(0.0, float(r)))) (Python round: half to even). "
            "annotated_line = json.dumps(obj) with those labels, the line attribute_annotate.py writes (plus '\\n')."),
        input="tiny/reference/conversations.jsonl",
        nemo_aligner=prov,
        templates=dict(SYSTEM_PROMPT=C.SYSTEM_PROMPT, SYSTEM_PROMPT_TEMPLATE=C.SYSTEM_PROMPT_TEMPLATE,
                       USER_TURN_TEMPLATE=C.USER_TURN_TEMPLATE, ASSISTANT_TURN_TEMPLATE=C.ASSISTANT_TURN_TEMPLATE,
                       LABEL_PREFIX=C.LABEL_PREFIX, ALL_STEERLM_ATTRIBUTES=C.ALL_STEERLM_ATTRIBUTES),
        versions={k: v[k] for k in ("python", "torch", "megatron-core", "nemo-aligner", "sentencepiece", "numpy")},
        tokenizer=dict(path=tok_rel, call="SentencePieceProcessor(model_file).encode(text)"),
        model=dict(
            fp32=FP32_FIXTURE, bf16=BF16_FIXTURE,
            loading="make_fixtures.assemble_legacy(folder, 1, 1) -> load_state_dict(strict=True) into "
                    "make_fixtures.build_model(1, 1, bf16)",
            max_sequence_length=REF_SEQ_LEN,
            fixture_encoder_seq_length=mf.MODEL["encoder_seq_length"],
            seq_length_note=(
                f"The default SteerLM system prompt alone is {len(system_ids)} tokens with the tiny tokenizer, "
                f"more than the fixtures' encoder_seq_length {mf.MODEL['encoder_seq_length']}, so the reference "
                f"model is built with GPTModel max_sequence_length {REF_SEQ_LEN} (weights unchanged; RoPE has no "
                "learned positions and megatron-core sizes its rotary table from the input). Every string is "
                "scored whole. NeMo-Aligner's server would cut the ids to the model config's encoder_seq_length "
                "(tokenize_batch: x[:max_len]); these references correspond to a config with encoder_seq_length "
                f">= {max_len}. attribute_annotate.py sends the strings of a conversation one per request; the "
                "server's dynamic batcher may pad them into one batch (causal mask: same values up to kernel "
                "rounding); the references are batch 1."),
        ),
        checks=dict(checks, rounding_ties=ties),
        system_prompt_tokens=len(system_ids),
        max_tokens=max_len,
        n_conversations=len(objs),
        n_scoring_strings=len(plan),
        conversations=entries,
    )
    out = refdir / "conversations_scored.json"
    out.write_text(compact_json(doc) + "\n", encoding="utf-8")
    mf.log(f"wrote {(refdir / 'conversations.jsonl').relative_to(fixtures)}, {out.relative_to(fixtures)} "
           f"(max {max_len} tokens)")
    import torch.distributed as dist

    dist.destroy_process_group()


if __name__ == "__main__":
    main()
