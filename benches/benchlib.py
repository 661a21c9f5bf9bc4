"""Helpers shared by the benchmark scripts in this directory.

Machine description (CPU, AVX-512 or not, load average), per-process memory
from /proc, medians, plain-text tables and the JSON result files under
out/bench/. Nothing here measures anything by itself.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "out" / "bench"
EXTENSION = REPO / "build" / "release" / "layercorr.duckdb_extension"

# Environment variables that change which BLAS kernel or cache size OpenBLAS
# assumes; the numpy timings run in a child process without them.
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def proc_status_kb(field: str, pid: str = "self") -> int:
    """A `kB` field of /proc/<pid>/status (VmHWM, VmRSS, ...), in kB; 0 if absent."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_bytes() -> int:
    """Peak resident set size (VmHWM) of this process, in bytes."""
    return proc_status_kb("VmHWM") * 1024


def rss_bytes() -> int:
    """Current resident set size (VmRSS) of this process, in bytes."""
    return proc_status_kb("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def loadavg() -> tuple[float, float, float]:
    """os.getloadavg(), rounded."""
    return tuple(round(x, 2) for x in os.getloadavg())


def cpu_info() -> dict:
    """CPU model, logical CPUs and the SIMD level that matters for the kernels."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = "avx512f" if "avx512f" in flags else "avx2+fma" if {"avx2", "fma"} <= flags else "other"
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "simd": simd,
        "mem_total_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def busy_processes(limit: int = 5, min_cpu: float = 20.0) -> list[str]:
    """Other processes using CPU right now (psutil, short sample), for the report."""
    try:
        import psutil
    except ImportError:
        return []
    me = os.getpid()
    procs = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            pass
    time.sleep(0.5)
    busy = []
    for p in procs:
        try:
            c = p.cpu_percent(None)
            if c >= min_cpu and p.pid != me:
                busy.append((c, f"{p.info['name']}({p.pid}) {c:.0f}%"))
        except psutil.Error:
            pass
    return [s for _, s in sorted(busy, reverse=True)[:limit]]


def machine_header(title: str) -> dict:
    """Prints and returns what a reader needs to judge the numbers."""
    info = cpu_info()
    info["loadavg_start"] = loadavg()
    info["busy_at_start"] = busy_processes()
    info["blas_env_in_parent"] = {k: os.environ[k] for k in BLAS_ENV_VARS if k in os.environ}
    info["started"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"== {title} ==")
    print(f"machine: {info['cpu_model']}, {info['logical_cpus']} logical CPUs, "
          f"SIMD {info['simd']}, {info['mem_total_gib']} GiB, Linux {info['kernel']}")
    print(f"load average (1/5/15 min) at start: {info['loadavg_start']}"
          + (f"; busy: {', '.join(info['busy_at_start'])}" if info["busy_at_start"] else ""))
    if info["blas_env_in_parent"]:
        print(f"BLAS environment in this shell (unset for numpy runs): {info['blas_env_in_parent']}")
    sys.stdout.flush()
    return info


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or a != a or b != b:
        return None
    return a / b


def fmt(x, spec: str = ".3f", none: str = "-") -> str:
    if x is None or (isinstance(x, float) and x != x):
        return none
    return format(x, spec)


def print_table(headers: list[str], rows: list[list[str]], aligns: str | None = None) -> None:
    """A plain-text table; `aligns` is one of 'l'/'r' per column (default: first l, rest r)."""
    aligns = aligns or "l" + "r" * (len(headers) - 1)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                         for c, w, a in zip(cells, widths, aligns))

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    sys.stdout.flush()


def write_json(name: str, payload: dict) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
        f.write("\n")
    return path


def clean_env(drop_blas: bool = True) -> dict:
    """This process's environment without the BLAS overrides."""
    env = dict(os.environ)
    if drop_blas:
        for k in BLAS_ENV_VARS:
            env.pop(k, None)
    return env


def busy_cpu_seconds() -> float:
    """CPU time spent by the whole machine so far (user, nice, system, irq,
    softirq and steal from /proc/stat; idle and iowait excluded), in seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_json(cmd: list[str], env: dict | None = None, timeout: float = 1800) -> dict:
    """Runs a child that prints one JSON object on its last stdout line; returns it.

    Adds `other_busy_cores`: the machine's CPU time not spent by this child
    (other processes, and the hypervisor's steal), per second of the child's
    wall time -- 0 on a quiet machine, 1 when another process kept a whole
    core busy meanwhile. Raises RuntimeError with the child's stderr when it
    fails.
    """
    busy0, mine0, t0 = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    others = (busy_cpu_seconds() - busy0) - (children_cpu_seconds() - mine0)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {p.returncode}):\n"
                           f"{p.stderr[-3000:]}\n{p.stdout[-1000:]}")
    rec = json.loads(lines[-1])
    rec["other_busy_cores"] = round(max(others, 0.0) / wall, 2) if wall > 0 else 0.0
    rec["child_wall_seconds"] = round(wall, 2)
    return rec


class QuietRunner:
    """run_json, repeated while other processes disturbed the run.

    A child whose `other_busy_cores` exceeds `threshold` is run again (up to
    `retries` more times, and only while the script is within `budget_s`
    seconds of its start, so that a machine busy for longer -- a cold
    build -- does not double the run time); the least disturbed attempt is
    kept and the number of attempts recorded. Short interruptions (a test
    run, an incremental build) are thus absorbed, and the table says how
    quiet each kept run was.
    """

    def __init__(self, threshold: float = 0.3, retries: int = 2, budget_s: float = 420.0):
        self.threshold, self.retries, self.budget_s = threshold, retries, budget_s
        self.start = time.perf_counter()

    def run(self, cmd: list[str], env: dict | None = None, timeout: float = 1800) -> dict:
        best = None
        for attempt in range(1 + self.retries):
            rec = run_json(cmd, env=env, timeout=timeout)
            rec["attempts"] = attempt + 1
            if best is None or rec["other_busy_cores"] < best["other_busy_cores"]:
                best = rec
            if (rec["other_busy_cores"] <= self.threshold
                    or time.perf_counter() - self.start > self.budget_s):
                break
        best["attempts"] = rec["attempts"]
        return best


def numpy_blas_info() -> dict:
    """numpy's BLAS library, its build configuration and the core type OpenBLAS picked at run time."""
    import ctypes
    import glob

    import numpy as np

    info = {"numpy": np.__version__}
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{cfg.get('name')} {cfg.get('version')}"
        info["blas_build_config"] = cfg.get("openblas configuration")
    except Exception as e:  # noqa: BLE001 - informational only
        info["blas"] = f"unknown ({e})"
    libdir = Path(np.__file__).parent.parent / "numpy.libs"
    for lib in glob.glob(str(libdir / "lib*openblas*.so*")):
        try:
            dll = ctypes.CDLL(lib)
            for sym in ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                        "openblas_get_corename"):
                if hasattr(dll, sym):
                    fn = getattr(dll, sym)
                    fn.restype = ctypes.c_char_p
                    info["openblas_runtime_core"] = fn().decode()
                    break
            for sym in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                        "openblas_get_num_threads"):
                if hasattr(dll, sym):
                    fn = getattr(dll, sym)
                    fn.restype = ctypes.c_int
                    info["openblas_threads"] = fn()
                    break
        except OSError:
            pass
    info["blas_env"] = {k: os.environ[k] for k in BLAS_ENV_VARS if k in os.environ}
    return info


def torch_version() -> str | None:
    """torch's version if `import torch` works, else None."""
    try:
        import torch  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return torch.__version__
