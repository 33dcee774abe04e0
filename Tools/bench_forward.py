#!/usr/bin/env python3
"""Benchmark for the engine (issue: the memory-mapped BF16 engine).

A synthetic Nemotron-shaped reward model (hidden 2048, ffn 8192, 16 layers, 16 heads, 8 query
groups, vocab 32000, squared ReLU, layernorm1p, RoPE on half of each head; bf16, TP1PP1 legacy,
read in place) scores a batch of 4 x 512 tokens. In one run, for every kernel path this CPU
supports (avx2, avx512, avx512bf16, amx; `--paths` to choose), it measures:

  * Tessera `forward --input` (the whole batch at once) with TESSERA_ISA=path, --precision bf16
    and fp32, `--repeat` runs: the forward pass's time (the fastest run, and the median), tokens/s,
    effective GFLOP/s, the share of attention and element-wise steps (`--timing`), peak RSS;
  * the GEMM peak of the path's class on the model's linear-layer shapes with 2 threads:
    Tessera's own kernels (Tools/gemm_peak.c, built from Sources/CKernels), numpy's sgemm
    (OpenBLAS held to the class with OPENBLAS_CORETYPE) and torch's matmul (oneDNN and MKL held
    to the class with ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, ATEN_CPU_CAPABILITY), and the
    class's hardware limit (register-only FMAs on both threads, vdpbf16ps for avx512bf16,
    tdpbf16ps on tiles for amx): on a
    shared cloud host the clock moves by a third from one minute to the next, so every rate is
    also given as a share of that limit measured in the same run;
  * transformers' NemotronForCausalLM on torch CPU (2 threads, held to the same class) with the
    same weights (converted from the checkpoint; its logits are checked against Tessera's) and
    the same tokens, in FP32 and, where the class has native BF16, in BF16: forward time (only
    the last position's logits, as Tessera; the fastest of a process's --hf-repeat runs), load
    time, peak RSS;
  * time to first output: `tessera forward --tokens 1` on this model and on one with 3x the
    layers (start-up must not grow with the model's size), against transformers' load + first
    forward;
  * bigger than memory: the batch under a 512 MiB memory cgroup (page cache charged too) on the
    24-layer checkpoint of bench_reshard.py (2.4 GB), with --max-memory.

The CPU model and the kernel path are printed with every figure. The machine may be shared
with other work: the runs go in --repeat rounds, each Tessera run followed by the transformers
run it is compared with (after which one untimed Tessera run warms the machine up again, as
transformers warms itself up with a first forward), and every ratio is given three ways: each
side's fastest run against the other's, the ratio of the medians, and the median of the
rounds' own ratios ("paired").

Effective GFLOP/s count the linear layers (2 x parameters x tokens) and attention
(4 x heads x head_dim per query-key pair of the causal triangle).
"""
import argparse, collections, json, os, random, resource, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402
from benchkit import make_checkpoint  # noqa: E402

ROOT = benchkit.ROOT
HIDDEN, FFN, HEADS, GROUPS, KV, VOCAB = 2048, 8192, 16, 8, 128, 32000


# The environment that holds each library to one instruction-set class, per Tessera path.
CLASS_ENV = {
    "avx2": {"OPENBLAS_CORETYPE": "Haswell", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"OPENBLAS_CORETYPE": "SkylakeX", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "ATEN_CPU_CAPABILITY": "avx512"},
    "avx512bf16": {"OPENBLAS_CORETYPE": "Cooperlake", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "ATEN_CPU_CAPABILITY": "avx512"},
    # torch's BF16 matmul goes through oneDNN, which uses AMX tiles when allowed: torch's best on such a CPU.
    "amx": {"OPENBLAS_CORETYPE": "Cooperlake", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "ATEN_CPU_CAPABILITY": "avx512"},
}
NATIVE_BF16 = {"avx512bf16", "amx"}  # classes where torch has a native BF16 matmul


def flops(layers, seqs, last_layer_all_positions=True):
    """The forward's FLOPs. transformers runs the last layer on every position; Tessera runs its
    output projection and MLP only on each sequence's last position (the only one read), so its
    own work is counted with last_layer_all_positions=False."""
    per_layer = (HEADS + 2 * GROUPS) * KV * HIDDEN + HIDDEN * HEADS * KV + 2 * FFN * HIDDEN
    linear = 2 * per_layer * layers * sum(seqs)
    attention = sum(4 * HEADS * KV * n * (n + 1) // 2 for n in seqs) * layers
    if not last_layer_all_positions:
        linear -= 2 * (HIDDEN * HEADS * KV + 2 * FFN * HIDDEN) * (sum(seqs) - len(seqs))
    return linear + attention


def hf_worker(a):
    """Runs in a subprocess: transformers' Nemotron on the checkpoint's weights."""
    t_start = time.perf_counter()
    import torch
    from transformers import NemotronConfig, NemotronForCausalLM
    from transformers.models.nemotron.modeling_nemotron import NemotronRotaryEmbedding
    torch.set_num_threads(2)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.hf]
    sd = torch.load(os.path.join(a.ckpt, "tp_rank_00_pp_rank_000", "model_weights.ckpt"), weights_only=True)
    layers = sum(1 for k in sd if k.endswith("linear_qkv.weight"))
    cfg = NemotronConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=layers,
                         num_attention_heads=HEADS, head_dim=KV, num_key_value_heads=GROUPS, hidden_act="relu2",
                         max_position_embeddings=4096, norm_eps=1e-5, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})
    from hf_interop import hf_tensors   # the documented NeMo -> HF split (QKV per query group)
    hf = hf_tensors({k[len("model."):]: v for k, v in sd.items() if torch.is_tensor(v)},
                    {"num_attention_heads": HEADS, "num_key_value_heads": GROUPS, "head_dim": KV, "num_hidden_layers": layers})
    hf.pop("score.weight", None)
    with torch.device("meta"):
        model = NemotronForCausalLM(cfg)
    model.load_state_dict({k: v.to(dtype) for k, v in hf.items()}, assign=True, strict=True)
    model.model.rotary_emb = NemotronRotaryEmbedding(config=cfg)  # its buffers are not in the state dict
    model.eval()
    seqs = [json.loads(l) for l in open(a.batch)]
    ids = torch.tensor(seqs)
    with torch.inference_mode():
        t = time.perf_counter()
        out = model(ids[:1, :1], logits_to_keep=1)
        first = time.perf_counter() - t_start
        times = []
        for _ in range(a.hf_repeat):   # the fastest against Tessera's fastest, the median against its median
            t = time.perf_counter()
            out = model(ids, logits_to_keep=1)
            times.append(time.perf_counter() - t)
    logits = out.logits[:, -1].float()
    print(json.dumps({"forward": min(times), "median": statistics.median(times), "first_output": first, "logits": logits.tolist(),
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peaks(a, tokens, paths):
    """GEMM GFLOP/s on the linear shapes, per path: Tessera's kernels, numpy sgemm, torch matmul (2 threads)."""
    shapes = [((HEADS + 2 * GROUPS) * KV, HIDDEN), (HIDDEN, HEADS * KV), (FFN, HIDDEN), (HIDDEN, FFN)]
    exe = os.path.join(a.work, "gemm_peak")
    src = [os.path.join(ROOT, "Sources/CKernels", f) for f in sorted(os.listdir(os.path.join(ROOT, "Sources/CKernels"))) if f.endswith(".c")]
    subprocess.run(["clang", "-O3", "-I" + os.path.join(ROOT, "Sources/CKernels/include"), *src,
                    os.path.join(ROOT, "Tools/gemm_peak.c"), "-lpthread", "-lm", "-o", exe], check=True)
    out = {p: {} for p in paths}
    r = subprocess.run([exe, "2", str(tokens)] + [str(x) for s in shapes for x in s], capture_output=True, text=True, check=True)
    for line in r.stdout.splitlines():
        path, kind, _, gf = line.split()
        if path in out:
            out[path]["hardware FMA peak" if kind == "fma-peak" else "tessera " + kind] = float(gf)
    code = f"""
import time, numpy as np, torch
torch.set_num_threads(2)
shapes = {shapes}
T = {tokens}
res = {{}}
for name, mk in (("numpy sgemm fp32", lambda s: (np.random.rand(T, s[1]).astype(np.float32), np.random.rand(s[0], s[1]).astype(np.float32))),
                 ("torch bf16", lambda s: (torch.randn(T, s[1]).bfloat16(), torch.randn(s[0], s[1]).bfloat16())),
                 ("torch fp32", lambda s: (torch.randn(T, s[1]), torch.randn(s[0], s[1])))):
    total = 0.0
    for s in shapes:
        x, w = mk(s)
        best = 1e9
        for _ in range(3):
            t = time.perf_counter(); x @ w.T; best = min(best, time.perf_counter() - t)
        total += best
    res[name] = sum(2 * T * n * k for n, k in shapes) / total / 1e9
print(res)
"""
    for path in paths:
        env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", **CLASS_ENV.get(path, {}))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        out[path].update(eval(r.stdout.strip()))
    return out


def cgroup_run(a, cmd, limit_mb):
    cg = "/sys/fs/cgroup/memory/tessera-bench-forward"
    try:
        os.makedirs(cg, exist_ok=True)
        with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit_mb << 20))
        with open(os.path.join(cg, "memory.max_usage_in_bytes"), "w") as f:
            f.write("0")
    except OSError as e:
        return None, f"skipped: {e}"
    benchkit.drop_caches()
    t = time.perf_counter()
    r = subprocess.run(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec " + " ".join(cmd)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    peak = int(open(os.path.join(cg, "memory.max_usage_in_bytes")).read()) >> 20
    return dt, ("completed" if r.returncode == 0 else "FAILED " + r.stderr.strip()) + f", cgroup peak (RSS + page cache) {peak} MiB"


def supported_paths(a, ckpt):
    """The kernel paths of --paths this CPU runs (the others are refused by tessera)."""
    paths = []
    for path in a.paths.split(","):
        r = subprocess.run([a.tessera, "forward", ckpt, "--tokens", "1"], capture_output=True, text=True,
                           env=dict(os.environ, TESSERA_ISA=path))
        if r.returncode == 0:
            paths.append(path)
        else:
            print(f"kernel path {path}: refused by this CPU ({r.stderr.strip()})")
    return paths


# One path and precision's --repeat runs: forward seconds (fastest, median and each round's), the
# outputs, peak RSS MiB, median whole-process seconds and median attention + element-wise share (%).
TesseraRuns = collections.namedtuple("TesseraRuns", "fastest median rounds outputs rss_mib whole share")


def tessera_run(a, ckpt, batch, path, precision):
    """One Tessera forward of the batch: (forward s from --timing, whole process s, stdout, peak RSS MiB, share %)."""
    cmd = [a.tessera, "forward", ckpt, "--input", batch, "--precision", precision, "--json", "--timing"]
    whole, rss, stdout, stderr, _ = benchkit.timed(cmd, env=dict(os.environ, TESSERA_ISA=path))
    forward = float(stderr.split("forward: ")[1].split()[0])
    share = float(stderr.split("(")[-1].split("%")[0]) if "% attention" in stderr else float("nan")
    return forward, whole, stdout, rss, share


def transformers_run(a, ckpt, batch, path, precision):
    """One transformers process (load, warm-up, --hf-repeat forwards) with torch held to the path's class."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--hf", precision, "--ckpt", ckpt, "--batch", batch, "--hf-repeat", str(a.hf_repeat)],
                       capture_output=True, text=True, env=dict(os.environ, **CLASS_ENV.get(path, {})))
    if r.returncode != 0:
        sys.exit("transformers run failed: " + r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def paired_runs(a, ckpt, batch, paths):
    """({(path, precision): TesseraRuns}, {(path, precision): transformers' figures}).

    The runs go in --repeat rounds, each running every Tessera configuration once and, right
    after it, the transformers run it is compared with: on a shared host whose speed moves from
    one minute to the next, each round's pair sees the same machine, and the median of the
    rounds' ratios (the "paired" ratio) does not depend on which side ran in a fast minute.
    transformers takes the fastest of its process's forwards (the first warms it up); a Tessera
    run right after a transformers process is preceded by one untimed Tessera run, as the first
    process after it ran 1-4% slower (measured on a Zen 3 host: 17.69 then 17.04 s, 17.56 then
    16.68 s; the second run alike whatever its precision)."""
    runs, hf_rounds = collections.defaultdict(list), collections.defaultdict(list)
    after_transformers = False
    for _ in range(a.repeat):
        for path in paths:
            for precision in ("bf16", "fp32"):
                if after_transformers:
                    tessera_run(a, ckpt, batch, path, precision)
                runs[(path, precision)].append(tessera_run(a, ckpt, batch, path, precision))
                after_transformers = not a.skip_transformers and (precision == "fp32" or path in NATIVE_BF16)
                if after_transformers:
                    hf_rounds[(path, precision)].append(transformers_run(a, ckpt, batch, path, precision))
    results = {}
    for key, rs in runs.items():
        out = [json.loads(l) for l in rs[0][2].splitlines()]
        assert all(o["kernel_path"] == key[0] for o in out)
        forwards = [r[0] for r in rs]
        results[key] = TesseraRuns(min(forwards), statistics.median(forwards), forwards, out, max(r[3] for r in rs),
                                   statistics.median([r[1] for r in rs]), statistics.median([r[4] for r in rs]))
    hf = {}
    for key, hs in hf_rounds.items():
        rounds = [h["forward"] for h in hs]
        hf[key] = dict(hs[-1], forward=min(rounds), median=statistics.median(rounds), rounds=rounds,
                       rss_mib=max(h["rss_mib"] for h in hs))
    if hf:
        first = next(k for k in hf if k[1] == "fp32")
        ours = [o["logits"] for o in results[(first[0], "fp32")].outputs]
        diff = max(abs(x - y) for o, h in zip(ours, hf[first]["logits"]) for x, y in zip(o, h))
        print(f"same model: transformers FP32 and Tessera FP32 last-position logits differ by at most {diff:.2e}")
    return results, hf


def ratios(h, t):
    """torch's time / Tessera's (h: transformers' figures, t: TesseraRuns): fastest against
    fastest, median against median, and paired (the median over rounds of the round's own ratio)."""
    return h["forward"] / t.fastest, h["median"] / t.median, statistics.median(x / y for x, y in zip(h["rounds"], t.rounds))


def print_results(paths, results, hf, pk, tokens, work, own):
    """Tessera's GFLOP/s count its own work (`own`), transformers' the whole model's (`work`)."""
    print(f"{'forward pass of the batch':44} {'seconds':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'attn+elem':>9} {'peak RSS':>9}  whole process")
    for path in paths:
        for precision in ("bf16", "fp32"):
            r = results[(path, precision)]
            print(f"{'tessera ' + path + ' ' + precision:44} {r.fastest:8.2f} {tokens / r.fastest:9.0f} {own / r.fastest / 1e9:8.0f} "
                  f"{r.share:8.1f}% {r.rss_mib:7.0f} MiB  {r.whole:.2f} s")
        for precision in ("fp32", "bf16"):
            if (path, precision) in hf:
                h = hf[(path, precision)]
                print(f"{'transformers (torch held to ' + path + ') ' + precision:44} {h['forward']:8.2f} {tokens / h['forward']:9.0f} "
                      f"{work / h['forward'] / 1e9:8.0f} {'':9} {h['rss_mib']:7.0f} MiB")
    for path in paths:
        bf = results[(path, "bf16")].fastest
        line = f"{path}:"
        if (path, "fp32") in hf:
            b, f = ratios(hf[(path, "fp32")], results[(path, "bf16")]), ratios(hf[(path, "fp32")], results[(path, "fp32")])
            line += (f" Tessera BF16 / torch FP32 {b[0]:.2f}x, Tessera FP32 / torch FP32 {f[0]:.2f}x (medians: {b[1]:.2f}x, {f[1]:.2f}x; "
                     f"paired: {b[2]:.2f}x, {f[2]:.2f}x);")
        if (path, "bf16") in hf:
            r = ratios(hf[(path, "bf16")], results[(path, "bf16")])
            line += f" Tessera BF16 / torch BF16 {r[0]:.2f}x (medians: {r[1]:.2f}x; paired: {r[2]:.2f}x);"
            tb = pk[path].get("torch bf16")
            if tb:
                line += f" Tessera BF16 GEMM {pk[path]['tessera bf16']:.0f} GFLOP/s = {pk[path]['tessera bf16'] / tb:.0%} of torch BF16's ({tb:.0f});"
        sg = pk[path].get("numpy sgemm fp32")
        if sg:
            line += (f" Tessera BF16 GEMM {pk[path]['tessera bf16']:.0f} GFLOP/s = {pk[path]['tessera bf16'] / sg:.0%} of numpy sgemm "
                     f"({sg:.0f}); the BF16 forward's effective {own / bf / 1e9:.0f} GFLOP/s = {own / bf / 1e9 / sg:.0%} of it")
            if (path, "fp32") in hf:
                torch_rate = work / hf[(path, "fp32")]["forward"] / 1e9
                line += (f"; torch FP32's forward runs at {torch_rate:.0f} GFLOP/s = {torch_rate / sg:.0%} of numpy sgemm, so 1.3x torch "
                         f"FP32 needs {1.3 * torch_rate * own / work / sg:.0%} of it on Tessera's own work")
        print(line)
        for precision in ("bf16", "fp32"):
            if (path, precision) in hf:
                pairs = zip(results[(path, precision)].rounds, hf[(path, precision)]["rounds"])
                print(f"{path} {precision} rounds, Tessera / torch seconds: " + ", ".join(f"{t:.2f} / {h:.2f}" for t, h in pairs))
        if (path, "bf16") not in hf and (path, "fp32") in hf:  # no native BF16 in torch here: BF16 against torch's FP32
            pairs = zip(results[(path, "bf16")].rounds, hf[(path, "fp32")]["rounds"])
            print(f"{path} rounds, Tessera BF16 / torch FP32 seconds: " + ", ".join(f"{t:.2f} / {h:.2f}" for t, h in pairs))
        fma = pk[path].get("hardware FMA peak")
        if fma:
            line = (f"{path} against the hardware limit (register-only FMAs, same run, {fma:.0f} GFLOP/s): Tessera BF16 GEMM "
                    f"{pk[path]['tessera bf16'] / fma:.0%}, Tessera BF16 forward {own / bf / 1e9 / fma:.0%}")
            if sg:
                line += f", numpy sgemm {sg / fma:.0%}"
            if (path, "fp32") in hf:
                torch_share = work / hf[(path, "fp32")]["forward"] / 1e9 / fma
                line += f", torch FP32 forward {torch_share:.0%}"
                if path not in NATIVE_BF16:  # the target there is torch's BF16
                    line += f"; 1.3x torch FP32 needs Tessera's own work at {1.3 * torch_share * own / work:.0%} of the limit"
            print(line)



def main():
    ap = benchkit.arguments(rounds=3)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--paths", default="avx2,avx512,avx512bf16,amx", help="kernel paths to measure (those the CPU refuses are skipped)")
    ap.add_argument("--skip-memory", action="store_true", help="skip the start-up and 512 MiB cgroup runs")
    ap.add_argument("--hf-repeat", type=int, default=2, help="forwards per transformers process, one process per round (its fastest counts)")
    ap.add_argument("--hf", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--batch", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.hf:
        return hf_worker(a)
    benchkit.start(a, "bench-forward", f"; machine shared with other work: {a.repeat} rounds, each Tessera run followed by its transformers run (and an untimed Tessera run after each transformers run); each figure is "
                   "the fastest round, ratios also as medians and paired (the median of the rounds' own ratios)")
    ckpt = os.path.join(a.work, f"engine-h{HIDDEN}-l{a.layers}-tp1pp1")
    big = os.path.join(a.work, f"engine-h{HIDDEN}-l{3 * a.layers}-tp1pp1")
    make_checkpoint(ckpt, HIDDEN, a.layers, 1, 1, vocab=VOCAB)
    make_checkpoint(big, HIDDEN, 3 * a.layers, 1, 1, vocab=VOCAB)
    rng = random.Random(0)
    seqs = [[rng.randrange(VOCAB) for _ in range(a.length)] for _ in range(a.sequences)]
    batch = os.path.join(a.work, "engine-batch.jsonl")
    with open(batch, "w") as f:
        for s in seqs:
            f.write(json.dumps(s) + "\n")
    tokens = sum(len(s) for s in seqs)
    work = flops(a.layers, [len(s) for s in seqs])
    own = flops(a.layers, [len(s) for s in seqs], last_layer_all_positions=False)
    size = benchkit.apparent_bytes(ckpt)
    print(f"model: hidden {HIDDEN}, ffn {FFN}, {a.layers} layers, {HEADS} heads, {GROUPS} query groups, vocab {VOCAB}; "
          f"checkpoint {size / 2**30:.2f} GiB (bf16, TP1PP1 legacy); batch {a.sequences} x {a.length} = {tokens} tokens, "
          f"{work / 1e12:.2f} TFLOP")

    paths = supported_paths(a, ckpt)
    pk = peaks(a, tokens, paths)
    for path in paths:
        print(f"GEMM peak, class {path}, linear shapes, 2 threads (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in pk[path].items()))
    results, hf = paired_runs(a, ckpt, batch, paths)
    print_results(paths, results, hf, pk, tokens, work, own)

    ids = ",".join(str(s) for s in seqs[0][:1])

    def first_output(path):
        """(start-up s, whole 1-token run s): best of 3, page cache warm."""
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            r = subprocess.run([a.tessera, "forward", path, "--tokens", ids, "--timing"], capture_output=True, text=True, check=True)
            runs.append((float(r.stderr.split("start-up: ")[1].split()[0]), time.perf_counter() - t))
        return min(runs)

    if a.skip_memory:
        return
    subprocess.run(["cat"] + [os.path.join(d, f) for d, _, fs in os.walk(big) for f in fs], stdout=subprocess.DEVNULL)
    (s_small, w_small), (s_big, w_big) = first_output(ckpt), first_output(big)
    big_size = benchkit.apparent_bytes(big)
    line = (f"start-up (process start to checkpoint opened and mapped): {s_small * 1000:.0f} ms on {size / 2**30:.1f} GiB, "
            f"{s_big * 1000:.0f} ms on {big_size / 2**30:.1f} GiB ({3 * a.layers} layers); first output of a 1-token run "
            f"(every weight read once): {w_small * 1000:.0f} ms and {w_big * 1000:.0f} ms")
    if hf:
        line += f"; transformers (import, load, first forward): {next(iter(hf.values()))['first_output']:.2f} s on {size / 2**30:.1f} GiB"
    print(line)

    reshard_src, _ = benchkit.reshard_source(a.work)
    src_size = benchkit.apparent_bytes(reshard_src)
    dt, status = cgroup_run(a, [a.tessera, "forward", reshard_src, "--input", batch, "--max-memory", "400M", "--json"], 512)
    print(f"under a 512 MiB memory cgroup, --max-memory 400M, checkpoint {src_size / 2**20:.0f} MiB (24 layers, TP4PP2), "
          f"the same batch: " + (f"{dt:.1f} s, {status}" if dt else status))


if __name__ == "__main__":
    main()
