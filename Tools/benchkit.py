"""Small helpers shared by the benchmark and proof scripts in Tools/.

- `timed(cmd)`: wall time, peak RSS (from the child's own rusage) and output of one run;
- `work_dir(tag)`: a fresh folder per run (never a fixed path two runs could share),
  under $TESSERA_BENCH_DIR or the system's temporary folder;
- `physical_bytes` / `apparent_bytes`: what a file or folder occupies on disk, and its size;
- `cpu_model()`: the CPU's model name and its vector extensions, printed with every figure;
- `drop_caches()`: an empty page cache (root only; a no-op otherwise).
"""
import os
import subprocess
import tempfile
import time


def timed(cmd, check=True, env=None):
    """Runs cmd; returns (seconds, peak RSS in MiB, stdout, stderr, exit code). The peak RSS
    is the child's own (wait4), not the maximum over every child this script ran."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{stderr.strip()}")
    return dt, usage.ru_maxrss / 1024, stdout, stderr, p.returncode


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


def cpu_model():
    """'<model name> [avx512bf16|avx512f|avx2|...]' from /proc/cpuinfo."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    best = next((f for f in ("avx512_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    return f"{model} ({os.cpu_count()} CPUs, best vector ISA: {best})"


def drop_caches():
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
