#!/usr/bin/env python3
"""N x N Pearson correlation of activation rows: layercorr vs its peers.

What is compared, for N in {500, 2000} and D in {1008, 50176, 200704}
(`--quick` drops D = 200704), all on float32 input of the same shape:

* kernel   -- `layercorr_kernels::corr::correlation_matrix` alone, timed by
              the Rust example `corr_timing` (built here with cargo; it
              generates its own data with the same recipe as below);
* duckdb   -- `SELECT layer_corr(key, activation) FROM t` in DuckDB (Python
              client, the extension loaded, default 2 threads), result fetched
              to numpy (`fetchnumpy` + `np.vstack`, the fast path to an array);
              only this query is timed, not building the table. `duckdb
              in-db` is the same aggregate with only `len(keys)` fetched,
              i.e. without the conversion of the N x N result to Python;
* np f64   -- `np.corrcoef(x)` (float64 inside);
* np f32   -- float32 standardise + matmul: `z = (x - mean) / std`, `z @ z.T / D`;
* torch    -- `torch.corrcoef` on the float32 tensor, if torch imports.

Data: ReLU(offset_i + scale_i * (0.6 s + 0.8 e)) per row i, s a pattern shared
by all rows, e gaussian noise, offset in [-0.8, 0.8], scale in [0.5, 2] --
rows with different means and 20-80 % zeros, correlated like activations.

Every measurement runs in its own child process (this script with
`--worker`), one after the other, so that peak RSS is per run and the two
cores are never shared between two measurements. Times are medians of 3 runs
(also at 1.5 GiB of input: one run there swung by 1.4x on this machine),
after one untimed warm-up run for inputs up to 256 MiB (beyond that,
one-time costs are lost in the noise).
The DuckDB child alternates with the kernel: each of its rounds first runs
corr_timing once (a child process of its own, while the table waits in
memory), then the queries; "paired" is the median of the per-round ratios,
so that the machine's drift (1.5x over minutes here) cancels out of the
ratio instead of landing between two processes run minutes apart.
The numpy/torch children run without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.
The "max err" columns are the largest absolute difference to np.corrcoef's
float64 result on the same data.

The kernel's rate at the largest shape is read against numpy's SGEMM
2048^3 in rounds of one each (`kernel-sgemm` child), for the same reason.

Also: the second-order step (`layer_similarity`'s kernel): L = 20 matrices
of N = 2000, `compare::similarity_matrix` (pearson) vs numpy corrcoef of the
stacked strict upper triangles (extraction included, index arrays not).

Prints one table; writes out/bench/corr.json.
Usage: python benches/bench_corr.py [--quick] [--no-build]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

NS = (500, 2000)
DS = (1008, 50176, 200704)
WARM_UP_MAX_BYTES = 256 << 20  # up to this: one untimed warm-up run first (as corr_timing)
SIM_L, SIM_N = 20, 2000
PY_IMPLS = ("duckdb", "np64", "np32", "torch")


# --------------------------------------------------------------------------
# Data and workers (run in child processes)
# --------------------------------------------------------------------------

def make_activations(n: int, d: int, seed: int = 42):
    """float32 (n, d) activations, built in place (one n*d buffer)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(d, dtype=np.float32)
    offset = rng.uniform(-0.8, 0.8, n).astype(np.float32)[:, None]
    scale = rng.uniform(0.5, 2.0, n).astype(np.float32)[:, None]
    x = rng.standard_normal((n, d), dtype=np.float32)
    x *= 0.8
    x += 0.6 * shared
    x *= scale
    x += offset
    np.maximum(x, 0.0, out=x)
    return x


def make_layer_matrices(l: int, n: int, seed: int = 42):
    """l symmetric n x n float32 matrices with unit diagonal, related to each other."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    mats = []
    for k in range(l):
        w = np.float32(k / l)
        m = (1 - w) * base + w * rng.uniform(-1, 1, (n, n)).astype(np.float32)
        m = np.triu(m, 1)
        m = m + m.T
        np.fill_diagonal(m, 1.0)
        mats.append(m)
    return mats


def timed_runs(fn, repeats: int, warm_up: bool) -> tuple[list[float], object]:
    """Times `fn()` `repeats` times after an optional untimed call."""
    if warm_up:
        fn()
        gc.collect()
    times, out = [], None
    for _ in range(repeats):
        out = None
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def load_duckdb_table(con, x, threads) -> None:
    """CREATE TABLE t (key VARCHAR, activation FLOAT[]) holding the rows of x.

    Row by row: a 1-D numpy array is scanned as one FLOAT column and list()
    turns it into the row's FLOAT[]; one thread keeps the values in order,
    which is checked on the first and last rows. (A function of its own: the
    replacement scan keeps this frame's locals alive, and with them `x`,
    until the frame is gone.)
    """
    import numpy as np

    n = x.shape[0]
    con.execute("CREATE TABLE t (key VARCHAR, activation FLOAT[])")
    con.execute("SET threads = 1")
    for i in range(n):
        row = x[i]  # noqa: F841 - referenced by name in the query
        con.execute(f"INSERT INTO t SELECT 'k{i:05d}', list(column0) FROM row")
    con.execute(f"SET threads = {threads}")
    for i in (0, n - 1):
        got = con.execute(f"SELECT activation FROM t WHERE key = 'k{i:05d}'").fetchnumpy()
        if not np.array_equal(np.asarray(got["activation"][0], dtype=np.float32), x[i]):
            raise RuntimeError(f"row {i} differs after loading into DuckDB")


def kernel_once(binary: str, n: int, d: int) -> tuple[float, float]:
    """Wall and CPU seconds of one corr_timing run (its own data, its own process)."""
    out = subprocess.run([binary, str(n), str(d), "pearson", "1"], capture_output=True,
                         text=True, check=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    return rec["seconds_median"], rec.get("cpu_seconds_median", float("nan"))


def cpu_seconds() -> float:
    """User + system CPU time of every thread of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker_corr(impl: str, n: int, d: int, repeats: int, save: str | None,
                kernel_binary: str | None = None) -> dict:
    """One implementation on one shape; returns timings and memory."""
    import numpy as np

    warm_up = n * d * 4 <= WARM_UP_MAX_BYTES
    t0 = time.perf_counter()
    x = make_activations(n, d)
    rec = {"impl": impl, "n": n, "d": d, "input_bytes": n * d * 4,
           "generate_seconds": round(time.perf_counter() - t0, 3), "warm_up": warm_up}

    if impl == "duckdb":
        import duckdb

        con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
        con.execute(f"LOAD '{B.EXTENSION}'")
        threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
        t0 = time.perf_counter()
        load_duckdb_table(con, x, threads)
        rec["load_seconds"] = round(time.perf_counter() - t0, 2)
        del x
        gc.collect()
        B.reset_peak_rss()
        rec["rss_before_query_bytes"] = B.rss_bytes()
        rec["threads"] = int(threads)

        def run():
            r = con.execute("SELECT r.keys AS keys, r.matrix AS matrix FROM "
                            "(SELECT layer_corr(key, activation) AS r FROM t)").fetchnumpy()
            return np.vstack(r["matrix"][0])

        def run_in_db():
            return con.execute("SELECT len(r.keys) FROM "
                               "(SELECT layer_corr(key, activation) AS r FROM t)").fetchall()

        def scan():
            return con.execute("SELECT max(len(activation)) FROM t").fetchall()

        # Rounds: the bare kernel (one run of corr_timing, a child of this
        # process, on the same recipe of data), then the query fetched, in
        # the database, and the scan alone. The machine's speed drifts by
        # up to 1.5x over minutes, so kernel and DuckDB are compared within
        # each round (paired ratios) rather than across processes.
        if warm_up:
            run()
        times, in_db, scans, kernel, out = [], [], [], [], None
        # CPU seconds of the in-database query and of the kernel, per round:
        # steadier than wall time when other processes share the cores.
        in_db_cpu, kernel_cpu, scan_cpu = [], [], []
        # Peak RSS per kind of query (the peak is reset before each): the
        # aggregate's, and the scan's alone, the floor of any aggregate
        # over the table (the table plus one scanned vector of lists).
        peaks = {"query": 0, "scan": 0}
        for _ in range(repeats):
            if kernel_binary:
                wall, cpu = kernel_once(kernel_binary, n, d)
                kernel.append(wall)
                kernel_cpu.append(cpu)
            out = None
            for fn, acc, kind in ((run, times, "query"), (run_in_db, in_db, "query"),
                                  (scan, scans, "scan")):
                gc.collect()
                B.reset_peak_rss()
                t, c = time.perf_counter(), cpu_seconds()
                res = fn()
                acc.append(time.perf_counter() - t)
                if fn is run_in_db:
                    in_db_cpu.append(cpu_seconds() - c)
                elif fn is scan:
                    scan_cpu.append(cpu_seconds() - c)
                peaks[kind] = max(peaks[kind], B.peak_rss_bytes())
                if fn is run:
                    out = res
        rec["query_peak_rss_bytes"] = peaks["query"]
        rec["scan_peak_rss_bytes"] = peaks["scan"]
        rec["in_db_seconds_all"] = in_db
        rec["in_db_seconds_median"] = B.median(in_db)
        # The floor of any aggregate over this table: DuckDB reading the
        # lists out of storage (a LIST scan reads every child value).
        rec["scan_seconds_all"] = scans
        rec["scan_seconds_median"] = B.median(scans)
        if kernel:
            rec["paired_kernel_seconds_all"] = kernel
            rec["paired_ratio_median"] = B.median([t / k for t, k in zip(times, kernel)])
            rec["paired_in_db_ratio_median"] = B.median([t / k for t, k in zip(in_db, kernel)])
            rec["paired_kernel_cpu_seconds_all"] = kernel_cpu
            rec["in_db_cpu_seconds_all"] = in_db_cpu
            rec["scan_cpu_seconds_all"] = scan_cpu
            rec["paired_in_db_cpu_ratio_median"] = B.median(
                [t / k for t, k in zip(in_db_cpu, kernel_cpu) if k > 0])
        rec["duckdb_version"] = duckdb.__version__
    elif impl == "np64":
        times, out = timed_runs(lambda: np.corrcoef(x), repeats, warm_up)
    elif impl == "np32":
        def run():
            mean = x.mean(axis=1, keepdims=True)
            std = x.std(axis=1, keepdims=True)
            z = (x - mean) / std
            return (z @ z.T) / np.float32(d)

        times, out = timed_runs(run, repeats, warm_up)
    elif impl == "torch":
        import torch

        tx = torch.from_numpy(x)
        times, out = timed_runs(lambda: torch.corrcoef(tx).numpy(), repeats, warm_up)
        rec["torch_version"] = torch.__version__
        rec["torch_threads"] = torch.get_num_threads()
    else:
        raise ValueError(impl)

    rec["seconds_all"] = [round(t, 6) for t in times]
    rec["seconds_median"] = B.median(times)
    rec["peak_rss_bytes"] = B.peak_rss_bytes()
    if save:
        np.save(save, np.asarray(out, dtype=np.float64 if impl == "np64" else np.float32))
    return rec


def worker_similarity(l: int, n: int, repeats: int) -> dict:
    """numpy: corrcoef of the L stacked strict upper triangles."""
    import numpy as np

    mats = make_layer_matrices(l, n)
    iu = np.triu_indices(n, 1)

    def run():
        tri = np.stack([m[iu] for m in mats])
        return np.corrcoef(tri)

    times, _ = timed_runs(run, repeats, True)
    tri = np.stack([m[iu] for m in mats])
    corr_only, _ = timed_runs(lambda: np.corrcoef(tri), repeats, True)
    return {"impl": "np-sim", "l": l, "n": n, "seconds_all": [round(t, 6) for t in times],
            "seconds_median": B.median(times), "corrcoef_only_seconds_all": corr_only,
            "corrcoef_only_seconds_median": B.median(corr_only),
            "peak_rss_bytes": B.peak_rss_bytes()}


SGEMM_SIZE = 2048
# Columns of the block numpy's SYRK is timed on: the kernel's chunk width at
# N = 2000.
SYRK_COLUMNS = 4096


def sgemm_rates(repeats: int = 3) -> dict:
    """GFLOP/s of a float32 2048^3 matrix product (median of `repeats`, after
    one warm-up) in numpy's BLAS and, if installed, torch: the machine's
    best general product rate at hand, to read the kernel's rate against
    (symmetry counted: the kernel does N^2 D / 2 multiply-adds)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32)
    b = rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32)
    flops = 2 * SGEMM_SIZE**3
    products = {"numpy": lambda: a @ b}
    if B.torch_version():
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        products["torch"] = lambda: ta @ tb
    rates = {}
    for name, fn in products.items():
        times, _ = timed_runs(fn, repeats, True)
        rates[name] = round(flops / B.median(times) / 1e9, 1)
    return rates


def worker_kernel_vs_sgemm(n: int, d: int, repeats: int, kernel_binary: str) -> dict:
    """Rounds of the kernel (one corr_timing run at N x D) followed by numpy's
    SGEMM 2048^3 and numpy's `x @ x.T` of an N x 4096 float32 block (which
    OpenBLAS takes as a SYRK, the same symmetric product as the kernel's,
    counted as N^2 * 4096 flops), each the median of 3 products, so that the
    rates are read in the same minute: the machine's speed drifts by up to
    1.5x over minutes, and an SGEMM timed minutes away from the kernel moved
    their ratio between 60% and 92% in one day. The figures are the medians
    of the per-round ratios (the kernel counted as N^2 * D flops, as above)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32)
    b = rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32)
    x = rng.standard_normal((n, SYRK_COLUMNS), dtype=np.float32)
    a @ b, x @ x.T  # warm-up: BLAS threads started, pages touched
    kernel_rates, sgemm, syrk = [], [], []
    for _ in range(repeats):
        wall, _ = kernel_once(kernel_binary, n, d)
        kernel_rates.append(round(n * n * d / wall / 1e9, 1))
        times, _ = timed_runs(lambda: a @ b, 3, False)
        sgemm.append(round(2 * SGEMM_SIZE**3 / B.median(times) / 1e9, 1))
        times, _ = timed_runs(lambda: x @ x.T, 3, False)
        syrk.append(round(n * n * SYRK_COLUMNS / B.median(times) / 1e9, 1))
    return {"n": n, "d": d, "kernel_gflops_all": kernel_rates, "sgemm_gflops_all": sgemm,
            "syrk_gflops_all": syrk,
            "paired_ratio_median": B.median([k / s for k, s in zip(kernel_rates, sgemm)]),
            "paired_syrk_ratio_median": B.median([k / s for k, s in zip(kernel_rates, syrk)])}


def worker_info() -> dict:
    return {"numpy_blas": B.numpy_blas_info(), "torch": B.torch_version(),
            "sgemm_gflops": sgemm_rates()}


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def build_kernel_example() -> Path:
    """cargo build --release of the timing example; returns the binary."""
    target = Path(os.environ.get("CARGO_TARGET_DIR",
                                 Path.home() / ".cache" / "layercorr" / "target"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    print("building crates/kernels/examples/corr_timing.rs (cargo --release) ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "layercorr-kernels",
                    "--example", "corr_timing"], cwd=B.REPO, env=env, check=True)
    return target / "release" / "examples" / "corr_timing"


RUNNER = B.QuietRunner(threshold=0.3, retries=1, budget_s=150)


def child(args: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    return RUNNER.run(cmd, env=B.clean_env())


def repeats_for(n: int, d: int, repeats: int) -> int:
    """Timed runs for a shape: the same for every shape (medians)."""
    return repeats


def run_shape(binary: Path, n: int, d: int, repeats: int, impls: list[str], tmp: Path) -> dict:
    reps = repeats_for(n, d, repeats)
    res = {"n": n, "d": d, "repeats": reps, "loadavg_start": B.loadavg()}
    print(f"  N={n} D={d} ({n * d * 4 / 2**20:.0f} MiB, {reps} run(s)):", end="", flush=True)
    res["kernel"] = RUNNER.run([str(binary), str(n), str(d), "pearson", str(reps)])
    print(f" kernel {res['kernel']['seconds_median']:.3f}s", end="", flush=True)
    for impl in impls:
        save = tmp / f"{impl}_{n}_{d}.npy"
        extra = ["--kernel-binary", str(binary)] if impl == "duckdb" else []
        res[impl] = child(["--impl", impl, "--n", str(n), "--d", str(d),
                           "--repeats", str(reps), "--save", str(save), *extra])
        print(f", {impl} {res[impl]['seconds_median']:.3f}s", end="", flush=True)
    print(flush=True)
    res["loadavg_end"] = B.loadavg()
    # Accuracy against numpy's float64 corrcoef of the same data.
    import numpy as np

    ref_path = tmp / f"np64_{n}_{d}.npy"
    if ref_path.exists():
        ref = np.load(ref_path)
        for impl in impls:
            p = tmp / f"{impl}_{n}_{d}.npy"
            if impl != "np64" and p.exists():
                res[impl]["max_abs_err_vs_f64"] = float(np.abs(np.load(p) - ref).max())
                p.unlink()
        ref_path.unlink()
    return res


def report(results: list[dict], sim: dict, info: dict, impls: list[str]) -> None:
    has_torch = True  # columns always shown; "-" when torch is not installed
    print()
    print("N x N Pearson correlation, float32 input, seconds (median) and ratios to the kernel")
    headers = ["N", "D", "runs", "kernel", "duckdb", "duckdb in-db", "scan", "np f64", "np f32"]
    headers += ["torch"] if has_torch else []
    headers += ["duckdb/kern", "paired", "in-db paired", "in-db CPU", "np64/kern", "np32/kern"]
    headers += ["torch/kern"] if has_torch else []
    headers += ["err duckdb", "err np32"] + (["err torch"] if has_torch else [])
    headers += ["load", "others", "reruns"]
    rows = []
    for r in results:
        k = r["kernel"]["seconds_median"]
        g = lambda impl, key="seconds_median": r.get(impl, {}).get(key)  # noqa: E731
        row = [r["n"], r["d"], r["repeats"], B.fmt(k), B.fmt(g("duckdb")),
               B.fmt(g("duckdb", "in_db_seconds_median")), B.fmt(g("duckdb", "scan_seconds_median")),
               B.fmt(g("np64")), B.fmt(g("np32"))]
        row += [B.fmt(g("torch"))] if has_torch else []
        row += [B.fmt(B.ratio(g("duckdb"), k), ".2f"), B.fmt(g("duckdb", "paired_ratio_median"), ".2f"),
                B.fmt(g("duckdb", "paired_in_db_ratio_median"), ".2f"),
                B.fmt(g("duckdb", "paired_in_db_cpu_ratio_median"), ".2f"),
                B.fmt(B.ratio(g("np64"), k), ".2f"),
                B.fmt(B.ratio(g("np32"), k), ".2f")]
        row += [B.fmt(B.ratio(g("torch"), k), ".2f")] if has_torch else []
        row += [B.fmt(g("duckdb", "max_abs_err_vs_f64"), ".1e"),
                B.fmt(g("np32", "max_abs_err_vs_f64"), ".1e")]
        row += [B.fmt(g("torch", "max_abs_err_vs_f64"), ".1e")] if has_torch else []
        runs = [r[k] for k in ("kernel", *PY_IMPLS) if k in r]
        row += [f"{r['loadavg_start'][0]:.1f}",
                f"{max(x['other_busy_cores'] for x in runs):.2f}",
                str(sum(x["attempts"] - 1 for x in runs))]
        rows.append(row)
    B.print_table(headers, rows)
    print("duckdb = query + fetchnumpy + np.vstack; duckdb in-db = same aggregate, only len(keys) "
          "fetched; paired = median over rounds of duckdb / kernel, where each round runs the "
          "kernel (corr_timing, 1 run) and then the queries, so both see the machine in the same "
          "minute; in-db CPU = the same for CPU seconds (user + system, all threads) of the in-database query over the kernel's, steadier when other processes share the cores; scan = DuckDB reading the lists alone (max(len(activation))), the floor of "
          "any aggregate over the table; err = max |r - np.corrcoef float64|;\nload = 1-min load average before the "
          "shape (includes this benchmark's own 2 threads once it runs); others = CPU cores kept "
          "busy by other processes (or stolen by the hypervisor) during the row's runs, the worst "
          "of the row (0 = quiet); reruns = runs repeated because others > 0.3 (the least "
          "disturbed is kept)")

    big = [r for r in results if (r["n"], r["d"]) == (2000, 200704)]
    if big:
        r = big[0]
        inp = r["kernel"]["input_bytes"]
        print()
        print(f"Peak memory at N=2000, D=200704 (input N*D*4 = {inp / 2**30:.2f} GiB), per child process")
        mrows = [["kernel (corr_timing)", B.fmt(r["kernel"]["peak_rss_bytes"] / 2**30, ".2f"),
                  B.fmt(r["kernel"]["peak_rss_bytes"] / inp, ".2f"), "input + kernel working memory"]]
        if "duckdb" in r:
            dq = r["duckdb"]
            mrows.append(["duckdb: whole process", B.fmt(dq["peak_rss_bytes"] / 2**30, ".2f"),
                          B.fmt(dq["peak_rss_bytes"] / inp, ".2f"),
                          "incl. generating the numpy input and loading the table"])
            mrows.append(["duckdb: during the query", B.fmt(dq["query_peak_rss_bytes"] / 2**30, ".2f"),
                          B.fmt(dq["query_peak_rss_bytes"] / inp, ".2f"),
                          f"peak reset after loading; RSS before the query "
                          f"{dq['rss_before_query_bytes'] / 2**30:.2f} GiB (the table)"])
            extra = dq["query_peak_rss_bytes"] - dq["rss_before_query_bytes"]
            mrows.append(["duckdb: query's own growth", B.fmt(extra / 2**30, ".2f"),
                          B.fmt(extra / inp, ".2f"), "query peak minus RSS before it"])
            if dq.get("scan_peak_rss_bytes"):
                scan_peak = dq["scan_peak_rss_bytes"]
                mrows.append(["duckdb: scanning the lists alone", B.fmt(scan_peak / 2**30, ".2f"),
                              B.fmt(scan_peak / inp, ".2f"),
                              "max(len(activation)): the table plus one scanned vector, the "
                              "floor of any aggregate over it"])
                own = dq["query_peak_rss_bytes"] - scan_peak
                mrows.append(["duckdb: layer_corr beyond the scan", B.fmt(own / 2**30, ".2f"),
                              B.fmt(own / inp, ".2f"), "query peak minus the scan's"])
        for impl, label in (("np64", "np.corrcoef f64"), ("np32", "numpy f32 standardise+matmul"),
                            ("torch", "torch.corrcoef")):
            if impl in r:
                mrows.append([label, B.fmt(r[impl]["peak_rss_bytes"] / 2**30, ".2f"),
                              B.fmt(r[impl]["peak_rss_bytes"] / inp, ".2f"), "incl. the input"])
        B.print_table(["run", "peak RSS GiB", "x input", "note"], mrows, "lrrl")

    if sim:
        print()
        print(f"Second-order step: L={sim['l']} matrices of N={sim['n']}, pearson of upper triangles")
        k, npy = sim["kernel"]["seconds_median"], sim["numpy"]["seconds_median"]
        npc = sim["numpy"]["corrcoef_only_seconds_median"]
        ko, no = sim["kernel"]["other_busy_cores"], sim["numpy"]["other_busy_cores"]
        B.print_table(["implementation", "seconds", "ratio to kernel", "others"],
                      [["similarity_matrix (Rust, from the N x N matrices)", B.fmt(k), "1.00", B.fmt(ko, ".2f")],
                       ["numpy: extract triangles + corrcoef", B.fmt(npy), B.fmt(B.ratio(npy, k), ".2f"),
                        B.fmt(no, ".2f")],
                       ["numpy: corrcoef of given triangles", B.fmt(npc), B.fmt(B.ratio(npc, k), ".2f"),
                        B.fmt(no, ".2f")]])

    vs = info.get("kernel_vs_sgemm")
    if vs:
        print()
        print(f"Kernel vs numpy's SGEMM {SGEMM_SIZE}^3 float32 (both cores), read in the same "
              f"rounds: kernel at N={vs['n']} D={vs['d']} "
              f"{', '.join(f'{v:.0f}' for v in vs['kernel_gflops_all'])} GFLOP/s counting the "
              f"N^2*D flops of the symmetric product, SGEMM "
              f"{', '.join(f'{v:.0f}' for v in vs['sgemm_gflops_all'])} GFLOP/s: "
              f"{100 * vs['paired_ratio_median']:.0f}% of the SGEMM (median of the rounds' ratios); "
              f"numpy x @ x.T (OpenBLAS's SYRK) of N x {SYRK_COLUMNS} "
              f"{', '.join(f'{v:.0f}' for v in vs['syrk_gflops_all'])} GFLOP/s: kernel at "
              f"{100 * vs['paired_syrk_ratio_median']:.0f}% of it")
    rates = info.get("sgemm_gflops", {})
    if rates:
        print("SGEMM at the start, both cores: "
              + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in rates.items()))
    nb = info.get("numpy_blas", {})
    print()
    print(f"numpy {nb.get('numpy')} BLAS: {nb.get('blas')}, runtime core "
          f"{nb.get('openblas_runtime_core', '?')}, {nb.get('openblas_threads', '?')} threads "
          f"(OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset in the numpy children); build: "
          f"{nb.get('blas_build_config')}")
    print(f"torch: {info.get('torch') or 'not installed'}")
    print(f"load average at end: {B.loadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="drop D = 200704")
    ap.add_argument("--shapes", help="comma-separated NxD shapes instead of the default grid, "
                    "e.g. 500x1008,2000x50176")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per shape (default 3)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    ap.add_argument("--no-similarity", action="store_true", help="skip the second-order step")
    ap.add_argument("--impls", default=",".join(PY_IMPLS),
                    help="Python-side implementations to run (default: all available)")
    ap.add_argument("--json", default="corr.json", help="file name under out/bench/")
    # Child-process mode.
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--d", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--l", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    ap.add_argument("--kernel-binary", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        if args.impl == "info":
            rec = worker_info()
        elif args.impl == "kernel-sgemm":
            rec = worker_kernel_vs_sgemm(args.n, args.d, args.repeats, args.kernel_binary)
        elif args.impl == "np-sim":
            rec = worker_similarity(args.l, args.n, args.repeats)
        else:
            rec = worker_corr(args.impl, args.n, args.d, args.repeats, args.save,
                              args.kernel_binary)
        print(json.dumps(rec))
        return

    t_start = time.perf_counter()
    info = B.machine_header("layercorr: correlation kernels vs peers")
    if not B.EXTENSION.exists():
        sys.exit(f"{B.EXTENSION} is missing: run `make build` first")
    info.update(child(["--impl", "info"]))
    impls = [i for i in args.impls.split(",") if i]
    if "torch" in impls and not info["torch"]:
        impls.remove("torch")
    binary = build_kernel_example() if not args.no_build else Path(
        os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/layercorr/target")
    ) / "release" / "examples" / "corr_timing"

    if args.shapes:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
    else:
        shapes = [(n, d) for n in NS for d in DS if not (args.quick and d == max(DS))]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_corr_") as tmp:
        for n, d in shapes:
            results.append(run_shape(binary, n, d, args.repeats, impls, Path(tmp)))

    # The kernel against the machine's SGEMM, both read in the same rounds,
    # at the largest shape measured.
    big_n, big_d = max(shapes, key=lambda s: s[0] ** 2 * s[1])
    print(f"  kernel vs SGEMM, N={big_n} D={big_d}:", end="", flush=True)
    vs_sgemm = child(["--impl", "kernel-sgemm", "--n", str(big_n), "--d", str(big_d),
                      "--repeats", str(args.repeats), "--kernel-binary", str(binary)])
    print(f" {100 * vs_sgemm['paired_ratio_median']:.0f}%", flush=True)
    info["kernel_vs_sgemm"] = vs_sgemm

    sim = {}
    if not args.no_similarity:
        print(f"  second-order L={SIM_L} N={SIM_N}:", end="", flush=True)
        sim = {"l": SIM_L, "n": SIM_N,
               "kernel": RUNNER.run([str(binary), "--similarity", str(SIM_L), str(SIM_N),
                                     str(args.repeats)]),
               "numpy": child(["--impl", "np-sim", "--l", str(SIM_L), "--n", str(SIM_N),
                               "--repeats", str(args.repeats)])}
        print(f" kernel {sim['kernel']['seconds_median']:.3f}s, "
              f"numpy {sim['numpy']['seconds_median']:.3f}s", flush=True)

    report(results, sim, info, impls)
    info["loadavg_end"] = B.loadavg()
    info["total_seconds"] = round(time.perf_counter() - t_start, 1)
    path = B.write_json(args.json, {"machine": info, "impls": impls, "corr": results,
                                    "similarity": sim, "quick": args.quick})
    print(f"total {info['total_seconds']:.0f} s; results in {path.relative_to(B.REPO)}")


if __name__ == "__main__":
    main()
