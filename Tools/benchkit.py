"""Small helpers shared by the benchmark and proof scripts in Tools/.

- `arguments()` / `start(a, tag)`: the options every benchmark takes (--work, --tessera; the
  synthetic checkpoint's --hidden/--layers; --python) and the start of a run: its work folder
  made and the CPU line printed;
- `timed(cmd)`: wall time, peak RSS (from the child's own rusage) and output of one run;
- `cold(cmd)`: the same from an empty page cache, followed by sync;
- `work_dir(tag)`: a fresh folder per run (never a fixed path two runs could share),
  under $TESSERA_BENCH_DIR or the system's temporary folder;
- `make_checkpoint(root, ...)` / `reshard_source(work)`: the synthetic legacy checkpoints the
  benchmarks measure (torch needed), `files_of(root)` their rank files;
- `physical_bytes` / `apparent_bytes`: what a file or folder occupies on disk, and its size;
- `cpu_model()`: the CPU's model name and its vector extensions, printed with every figure;
- `drop_caches()`: an empty page cache (root only; a no-op otherwise).
"""
import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def arguments(model=False, python=False, rounds=None):
    """The options the benchmarks share: --work and --tessera; with model, the synthetic
    checkpoint's --hidden and --layers; with python, the interpreter of the Python peers;
    with rounds=N, --repeat (default N) for benchmarks that run every command once a round."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="work folder (default: a new one per run, under $TESSERA_BENCH_DIR or "
                    "the system's temporary folder; give one to reuse its source)")
    ap.add_argument("--tessera", default=os.environ.get("TESSERA_BIN", os.path.join(ROOT, ".build/release/tessera")),
                    help="the binary (default: $TESSERA_BIN or this checkout's .build/release/tessera)")
    if model:
        ap.add_argument("--hidden", type=int, default=2048)
        ap.add_argument("--layers", type=int, default=24)
    if python:
        ap.add_argument("--python", default=sys.executable)
    if rounds:
        ap.add_argument("--repeat", type=int, default=rounds, help="rounds, every command once in each; figures are "
                        "taken per round, then the best and the median (disk speed here drifts)")
    return ap


def start(a, tag, note=""):
    """Sets a.work to a new folder unless --work named one (made if missing) and prints the
    CPU line (with `note` after it); True when the folder is new, this run's own."""
    fresh = a.work is None
    a.work = a.work or work_dir(tag)
    os.makedirs(a.work, exist_ok=True)
    print(f"CPU: {cpu_model()}{note}")
    return fresh


def timed(cmd, check=True, env=None):
    """Runs cmd; returns (seconds, peak RSS in MiB, stdout, stderr, exit code). The peak RSS is
    the command's own, measured by GNU time from a small parent: a child forked from this
    Python process would count this process's pages too (Linux carries the pre-exec high-water
    mark into the child's ru_maxrss)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, *map(str, cmd)], stdout=out, stderr=err, env=env)
        dt = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        kib = rss.read().strip().splitlines()
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{stderr.strip()}")
    return dt, (int(kib[-1]) if kib and kib[-1].isdigit() else 0) / 1024, stdout, stderr, p.returncode


def cold(cmd, clear=None):
    """One run of cmd from an empty page cache, followed by `sync` so that its writes are on
    disk: (seconds, the sync included; peak RSS in MiB; stdout). `clear`: a folder removed
    first (the command's output from the run before)."""
    if clear:
        shutil.rmtree(clear, ignore_errors=True)
    drop_caches()
    t = time.perf_counter()
    _, rss, stdout, _, _ = timed(cmd)
    subprocess.run(["sync"])
    return time.perf_counter() - t, rss, stdout


def work_dir(tag):
    """A new folder for this run's files."""
    base = os.environ.get("TESSERA_BENCH_DIR") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"tessera-{tag}-", dir=base)


def _files(path):
    if os.path.isfile(path):
        yield path
        return
    for d, _, fs in os.walk(path):
        for f in fs:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                yield p


def physical_bytes(path):
    """Bytes the file or folder occupies on disk (allocated blocks)."""
    return sum(os.stat(p).st_blocks * 512 for p in _files(path))


def apparent_bytes(path):
    """The sizes of the file or folder's files, holes included."""
    return sum(os.stat(p).st_size for p in _files(path))


# The /proc/cpuinfo flags that decide a kernel path (printed with every benchmark's CPU line).
VECTOR_FLAGS = ("sse4_2", "avx", "f16c", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "bf16", "i8mm")


def cpu_model():
    """'<model name> (family F model M, <n> CPUs; vector flags: ...; best vector ISA: amx_bf16|avx512_bf16|avx512f|avx2|...)'
    from /proc/cpuinfo."""
    model, flags, ident = "unknown CPU", set(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model == "unknown CPU":
                    model = value
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
                elif key in ("cpu family", "model") and key not in ident:
                    ident[key] = value
    except OSError:
        pass
    best = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    family = f"family {ident['cpu family']} model {ident.get('model', '?')}, " if "cpu family" in ident else ""
    present = " ".join(f for f in VECTOR_FLAGS if f in flags) or "none of " + " ".join(VECTOR_FLAGS[:5])
    return f"{model} ({family}{os.cpu_count()} CPUs; vector flags: {present}; best vector ISA: {best})"


def drop_caches():
    """Writes dirty pages out and empties the page cache (root only; otherwise only the sync)."""
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def human(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000


def make_checkpoint(root, hidden, layers, tp, pp, vocab=32000):
    """A synthetic Nemotron-shaped reward model (random bf16 weights, seeded) as a legacy NeMo
    folder of TP x PP rank files under root, unless root already holds one."""
    import torch
    heads, groups = max(hidden // 128, 8), 8
    kv = hidden // heads
    qkv_rows = (heads + 2 * groups) * kv
    ffn = 4 * hidden
    if os.path.exists(os.path.join(root, "model_config.yaml")):
        return
    os.makedirs(root, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    per_stage = layers // pp
    for p in range(pp):
        for t in range(tp):
            sd = collections.OrderedDict()
            def rnd(*shape):
                return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)
            if p == 0:
                sd["model.embedding.word_embeddings.weight"] = rnd(vocab // tp, hidden)
            for l in range(per_stage):
                pre = f"model.decoder.layers.{l}."
                sd[pre + "self_attention.linear_qkv.layer_norm_weight"] = rnd(hidden)
                sd[pre + "self_attention.linear_qkv.layer_norm_bias"] = rnd(hidden)
                sd[pre + "self_attention.linear_qkv.weight"] = rnd(qkv_rows // tp, hidden)
                sd[pre + "self_attention.linear_proj.weight"] = rnd(hidden, hidden // tp)
                sd[pre + "mlp.linear_fc1.layer_norm_weight"] = rnd(hidden)
                sd[pre + "mlp.linear_fc1.layer_norm_bias"] = rnd(hidden)
                sd[pre + "mlp.linear_fc1.weight"] = rnd(ffn // tp, hidden)
                sd[pre + "mlp.linear_fc2.weight"] = rnd(hidden, ffn // tp)
            if p == pp - 1:
                sd["model.decoder.final_layernorm.weight"] = rnd(hidden)
                sd["model.decoder.final_layernorm.bias"] = rnd(hidden)
                sd["model.output_layer.weight"] = rnd(vocab // tp, hidden)
                sd["model.rm_head.weight"] = rnd(9, hidden // tp)
                sd["model.rm_head.bias"] = rnd(9)
            d = os.path.join(root, f"tp_rank_{t:02d}_pp_rank_{p:03d}")
            os.makedirs(d, exist_ok=True)
            torch.save(sd, os.path.join(d, "model_weights.ckpt"))
    # The same replicated norms on every TP rank: copy rank 0's values.
    for p in range(pp):
        base = torch.load(os.path.join(root, f"tp_rank_00_pp_rank_{p:03d}", "model_weights.ckpt"))
        for t in range(1, tp):
            path = os.path.join(root, f"tp_rank_{t:02d}_pp_rank_{p:03d}", "model_weights.ckpt")
            sd = torch.load(path)
            for k in sd:
                if "layer_norm" in k or "final_layernorm" in k or k.endswith("rm_head.bias"):
                    sd[k] = base[k]
            torch.save(sd, path)
    with open(os.path.join(root, "model_config.yaml"), "w") as f:
        f.write(f"""num_layers: {layers}
hidden_size: {hidden}
ffn_hidden_size: {ffn}
num_attention_heads: {heads}
num_query_groups: {groups}
kv_channels: {kv}
activation: squared-relu
normalization: layernorm1p
bias: false
position_embedding_type: rope
rotary_percentage: 0.5
share_embeddings_and_output_weights: false
tensor_model_parallel_size: {tp}
pipeline_model_parallel_size: {pp}
regression:
  num_attributes: 9
""")


def files_of(root):
    """The rank files (*.ckpt) of a legacy checkpoint, sorted."""
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.join(d, f) for f in fs if f.endswith(".ckpt")]
    return sorted(out)


def reshard_source(work, hidden=2048, layers=24):
    """bench_reshard.py's source checkpoint under work (TP4PP2 legacy, made once): (path, bytes)."""
    src = os.path.join(work, f"reshard-src-h{hidden}-l{layers}-tp4pp2")
    make_checkpoint(src, hidden, layers, 4, 2)
    return src, sum(os.path.getsize(f) for f in files_of(src))
