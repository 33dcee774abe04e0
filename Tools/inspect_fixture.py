#!/usr/bin/env python3
"""Dump the pickle opcodes inside NeMo / Megatron checkpoint files.

    inspect_fixture.py FILE                 # pickletools.dis of data.pkl (torch zip) or of a raw pickle
                                            # (.metadata, ShardedObject .pt, common.pt)
    inspect_fixture.py FILE --globals       # only the GLOBAL / STACK_GLOBAL (module, name) pairs
    inspect_fixture.py FILE --entry KEY     # dis of the pickle *inside* state-dict entry KEY:
                                            # an io.BytesIO _extra_state (a torch.save zip) or a
                                            # uint8-tensor _extra_state (pickle bytes)
    inspect_fixture.py --scan DIR           # every GLOBAL pair in every pickle under DIR
                                            # (data.pkl, .metadata, .distcp items, common.pt,
                                            # ShardedObject .pt, BytesIO / uint8 inner pickles)

The dis/--globals modes never unpickle anything. --entry and --scan load the outer
file with torch.load(weights_only=False) to reach inner pickles: use them only on
files you made yourself (e.g. Tests/Fixtures/tiny), never on Tests/Fixtures/bad.
"""

import argparse
import collections
import io
import pickle
import pickletools
import sys
import zipfile
from pathlib import Path


def data_pkl(raw):
    """The data.pkl record of a torch.save zip (any archive prefix), else None."""
    if raw[:4] != b"PK\x03\x04":
        return None
    z = zipfile.ZipFile(io.BytesIO(raw))
    names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    return z.read(names[0]) if names else None


def pickle_globals(data):
    """GLOBAL / STACK_GLOBAL (module, name) pairs in a pickle, without executing it."""
    found = set()
    memo = {}
    strings = []
    for op, arg, _pos in pickletools.genops(data):
        n = op.name
        if n == "GLOBAL":
            mod, name = arg.split(" ", 1)
            found.add((mod, name))
            strings.append(None)
        elif n in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8",
                   "SHORT_BINSTRING", "BINSTRING", "STRING"):
            strings.append(arg)
        elif n == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif n in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = strings[-1] if strings else None
        elif n in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(arg))
        elif n == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
            strings.append(None)
        else:
            strings.append(None)
    return found


def scan(root):
    """{'module name': [where seen]} over every pickle under root (skips a 'bad' folder)."""
    import torch

    result = collections.defaultdict(set)

    def add_pickle(p, where):
        for g in pickle_globals(p):
            result[g].add(where)

    def inner_values(obj):
        if isinstance(obj, dict):
            return list(obj.values())
        if isinstance(obj, (list, tuple)):
            return list(obj)
        return [obj]

    def add_inner(obj, where):
        for v in inner_values(obj):
            if isinstance(v, io.BytesIO):
                add_pickle(data_pkl(v.getvalue()), f"{where} > BytesIO inner torch.save data.pkl")
            elif isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.numel():
                add_pickle(bytes(v.numpy().tobytes()), f"{where} > uint8 tensor inner pickle")

    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or "bad" in path.relative_to(root).parts:
            continue
        raw = path.read_bytes()
        if path.suffix in (".ckpt", ".pt"):
            kind = {"common.pt": "common.pt"}.get(path.name, "ShardedObject .pt" if path.suffix == ".pt"
                                                  else "model_weights.ckpt data.pkl")
            add_pickle(data_pkl(raw), kind)
            add_inner(torch.load(io.BytesIO(raw), weights_only=False), kind)
        elif path.name == ".metadata":
            add_pickle(raw, "torch_dist .metadata")
            md = pickle.loads(raw)
            for idx, info in md.storage_data.items():
                with open(path.parent / info.relative_path, "rb") as fh:
                    fh.seek(info.offset)
                    chunk = fh.read(info.length)
                tensor_item = hasattr(md.state_dict_metadata.get(idx.fqn), "chunks")
                where = ".distcp tensor item" if tensor_item else ".distcp bytes item"
                p = data_pkl(chunk)
                if p is None:  # raw bytes item that is not a torch.save zip
                    add_pickle(chunk, where + " (raw pickle)")
                    continue
                add_pickle(p, where)
                if not tensor_item:
                    add_inner(torch.load(io.BytesIO(chunk), weights_only=False), where)
    return {f"{m} {n}": sorted(w) for (m, n), w in sorted(result.items(), key=lambda x: (str(x[0][0]), str(x[0][1])))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?")
    ap.add_argument("--globals", action="store_true")
    ap.add_argument("--entry")
    ap.add_argument("--scan", metavar="DIR")
    a = ap.parse_args()
    if a.scan:
        for g, where in scan(Path(a.scan)).items():
            print(f"{g:70s} {', '.join(where)}")
        return
    if not a.file:
        ap.error("FILE or --scan DIR required")
    raw = Path(a.file).read_bytes()
    if a.entry:
        import torch

        v = torch.load(io.BytesIO(raw), weights_only=False)[a.entry]
        if isinstance(v, io.BytesIO):
            print(f"# {a.entry}: io.BytesIO, {len(v.getvalue())} bytes, pos {v.tell()}; inner data.pkl:")
            p = data_pkl(v.getvalue())
        elif hasattr(v, "dtype"):
            print(f"# {a.entry}: tensor {v.dtype} shape {tuple(v.shape)}; bytes = {bytes(v.numpy().tobytes())!r}")
            p = bytes(v.numpy().tobytes())
            if not p:
                return
        else:
            print(f"# {a.entry}: {v!r}")
            return
    else:
        p = data_pkl(raw)
        if p is None:
            p = raw
    if a.globals:
        for m, n in sorted(pickle_globals(p)):
            print(m, n)
    else:
        pickletools.dis(p, out=sys.stdout)


if __name__ == "__main__":
    main()
