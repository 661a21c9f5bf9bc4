"""layercorr.cluster: 1 worker vs 2 workers, beside the single-process SQL doing the same work.

    .venv/bin/python benches/bench_cluster.py [--images 200] [--shard-size 25] [--block-size 50]

Needs root (like tests/test_cluster.py): it re-runs itself inside new network
and PID namespaces (`unshare -n -p -f --mount-proc`, loopback up) and there
starts Ray clusters of one-CPU nodes on 127.0.0.1 with the helpers of
tests/test_cluster.py: first one node, then two. Each does

- extract: `cluster.extract` of N demo photos (default all 200 of
  data/photos/classification and data/photos/enhancement), five unpooled
  layers, one per stage of EfficientNet-Lite0 (stem, blocks.2, blocks.4,
  blocks.9, head: 401408 + 75264 + 31360 + 21952 + 62720 = 592704 floats,
  2.4 MB per image), shards of --shard-size images;
- matrices: `cluster.matrices` (Pearson) as blocks of --block-size keys
  (the same blocks for 1 and 2 workers: 10 block pairs per layer for 200
  images in blocks of 50), one task per block pair and layer running
  `layer_corr_block`, then one assembly task per layer writing the whole
  N x N matrix, as `layer_corr`'s result;

after a warm-up shard per node (worker processes started, extension and
model loaded, the task's memory touched once, photos in the page cache). The same work is timed in one
process without Ray, the SQL a user would run: `COPY (FROM
nn_activations(...)) TO parquet` and `layer_corr` per layer, with DuckDB
threads = 1 and = 2 (in a child process whose RAYON_NUM_THREADS, the
extension's own kernel threads, is the same number; a one-CPU Ray task
gets one such thread too). Prints the machine (SIMD level, load), images/s, the
ratios and the time inside the tasks (their sum over the workers' wall
time is how busy the workers were); JSON in out/bench/cluster.json. Not
part of `make test`; `make bench-cluster` runs it. Run it on a quiet
machine: a second worker needs a free core.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benches"))
sys.path.insert(0, str(REPO / "tests"))

LAYERS = ["stem", "blocks.2", "blocks.4", "blocks.9", "head"]
MODEL = str(REPO / "data" / "models" / "efficientnet_lite0.onnx")


def photos(n: int) -> list[str]:
    """The first n demo photos: classification/0.jpg ..., then enhancement/0.jpg ..."""
    ps = []
    for sub in ("classification", "enhancement"):
        d = REPO / "data" / "photos" / sub
        ps += sorted(d.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else 1 << 30)
    if len(ps) < n:
        raise SystemExit(f"need {n} photos in data/photos/{{classification,enhancement}}, "
                         f"found {len(ps)}; run `make assets`")
    return [str(p) for p in ps[:n]]


def sql_run(paths, work, threads):
    """The single-process SQL: extraction to Parquet, then layer_corr per layer."""
    import layercorr

    con = layercorr.connect(threads=threads)
    acts = os.path.join(work, f"sql{threads}.parquet")
    con.execute("SET VARIABLE paths = ?::VARCHAR[]", [paths])
    t = time.perf_counter()
    con.execute(f"COPY (SELECT path, layer, activation FROM nn_activations('{MODEL}', "
                "getvariable('paths'), layers := ?::VARCHAR[])) TO '" + acts + "' (FORMAT parquet)",
                [LAYERS])
    t_ex = time.perf_counter() - t
    t = time.perf_counter()
    for i, layer in enumerate(LAYERS):
        con.execute(f"COPY (SELECT layer, m.keys AS keys, m.matrix AS matrix FROM (SELECT layer, "
                    f"layer_corr(path, activation) AS m FROM read_parquet('{acts}') WHERE layer = ? "
                    f"GROUP BY layer)) TO '{work}/sqlm{threads}-{i}.parquet' (FORMAT parquet)",
                    [layer])
    t_mx = time.perf_counter() - t
    con.close()
    os.remove(acts)
    return t_ex, t_mx


def sql_child(n, work, threads):
    """sql_run in a child process whose rayon pool (the extension's kernels) has `threads`
    threads, as DuckDB: the pool is sized once per process, from RAYON_NUM_THREADS."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--images", str(n),
                        "--sql", str(threads), "--body", work],
                       env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"single-process SQL run failed:\n{p.stdout}\n{p.stderr}")
    return tuple(json.loads(p.stdout.strip().splitlines()[-1]))


def cluster_run(paths, work, nodes, shard_size, block_size):
    from layercorr import cluster
    from test_cluster import ADDRESS, start_two_nodes, stop_cluster

    tag = f"k{nodes}"
    try:
        start_two_nodes(os.path.join(work, f"r{nodes}"), num_cpus=1, nodes=nodes)
        # warm-up: one full shard per node (worker processes started, extension and model
        # loaded, the task's memory touched once), as in the steady state of a long run
        cluster.extract(MODEL, paths[:nodes * shard_size], LAYERS, os.path.join(work, f"w{tag}"),
                        address=ADDRESS, shard_size=shard_size)
        shutil.rmtree(os.path.join(work, f"w{tag}"), ignore_errors=True)
        acts, mats = os.path.join(work, f"a{tag}"), os.path.join(work, f"m{tag}")
        t = time.perf_counter()
        ex = cluster.extract(MODEL, paths, LAYERS, acts, address=ADDRESS, shard_size=shard_size)
        t_ex = time.perf_counter() - t
        t = time.perf_counter()
        mx = cluster.matrices(acts, mats, address=ADDRESS, block_size=block_size)
        t_mx = time.perf_counter() - t
        assert ex["shards_run"] == ex["shards"] and len(mx["layers"]) == len(LAYERS)
        ex_tasks = [r["seconds"] for r in ex["tasks"]]
        bl_tasks = [r["seconds"] for r in mx["tasks"] if "bi" in r and "seconds" in r]
        return {"extract_s": t_ex, "matrices_s": t_mx, "extract_nodes": len(ex["nodes"]),
                "matrices_nodes": len(mx["nodes"]), "blocks": mx["blocks"],
                "block_size": mx["block_size"], "extract_task_s": ex_tasks,
                "block_task_s": bl_tasks}
    finally:
        stop_cluster()
        shutil.rmtree(os.path.join(work, f"a{tag}"), ignore_errors=True)


def body(work: str, n: int, shard_size: int, block_size) -> None:
    import benchlib as B

    info = B.machine_header(f"layercorr.cluster: {n} photos, {len(LAYERS)} unpooled layers "
                            f"({', '.join(LAYERS)}), shards of {shard_size}")
    paths = photos(n)
    if block_size is None:
        block_size = max(1, (n + 3) // 4)  # the same 4 x 4 blocks per layer for 1 and 2 workers
    res = {}
    for th in (1, 2):
        res[f"sql{th}"] = sql_child(n, work, th)
        print(f"single-process SQL, {th} thread(s): extract {res[f'sql{th}'][0]:.2f} s, "
              f"matrices {res[f'sql{th}'][1]:.2f} s  (load {B.loadavg()})", flush=True)
    runs = {}
    for k in (1, 2):
        r = cluster_run(paths, work, k, shard_size, block_size)
        runs[k] = r
        res[f"ray{k}"] = (r["extract_s"], r["matrices_s"])
        ex, bl = r["extract_task_s"], r["block_task_s"]
        print(f"Ray, {k} one-CPU node(s): extract {r['extract_s']:.2f} s on {r['extract_nodes']} "
              f"node(s) ({len(ex)} shard tasks, {sum(ex):.2f} s inside them, "
              f"busy {sum(ex) / (k * r['extract_s']):.0%}); matrices {r['matrices_s']:.2f} s on "
              f"{r['matrices_nodes']} node(s) ({r['blocks']} block tasks of {r['block_size']} "
              f"keys, {sum(bl):.2f} s inside them, mean {sum(bl) / max(len(bl), 1):.3f} s, "
              f"busy {sum(bl) / (k * r['matrices_s']):.0%})  (load {B.loadavg()})", flush=True)

    rows = []
    for key, label in (("sql1", "single-process SQL, 1 thread (layer_corr)"),
                       ("sql2", "single-process SQL, 2 threads (layer_corr)"),
                       ("ray1", "Ray, 1 worker (1 one-CPU node), blocks"),
                       ("ray2", "Ray, 2 workers (2 one-CPU nodes), blocks")):
        t_ex, t_mx = res[key]
        rows.append([label, f"{n / t_ex:.2f}", f"{t_ex:.2f}", f"{n / t_mx:.1f}", f"{t_mx:.2f}"])
    print()
    B.print_table(["", "extract images/s", "extract s", "matrices images/s", "matrices s"], rows)
    r = {
        "extract 2 workers / 1 worker": res["ray1"][0] / res["ray2"][0],
        "matrices 2 workers / 1 worker": res["ray1"][1] / res["ray2"][1],
        "extract 2 workers / SQL 2 threads": res["sql2"][0] / res["ray2"][0],
        "matrices 2 workers / SQL 2 threads": res["sql2"][1] / res["ray2"][1],
        "extract 1 worker / SQL 1 thread": res["sql1"][0] / res["ray1"][0],
        "matrices 1 worker / SQL 1 thread": res["sql1"][1] / res["ray1"][1],
    }
    print()
    for k, v in r.items():
        print(f"{k}: {v:.2f}x (throughput ratio)")
    print(f"SIMD {info['simd']}; load average at start {info['loadavg_start']}, now "
          f"{B.loadavg()} (on a loaded machine a second worker has no free core)", flush=True)
    B.write_json("cluster.json", {"machine": info, "images": n, "layers": LAYERS,
                                  "shard_size": shard_size, "block_size": block_size,
                                  "seconds": res, "runs": runs, "ratios": r,
                                  "loadavg_end": B.loadavg()})
    print("BENCH-OK", flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--shard-size", type=int, default=25)
    p.add_argument("--block-size", type=int, default=None,
                   help="keys per matrices block (default: a quarter of the images, 10 block tasks per layer)")
    p.add_argument("--body", help=argparse.SUPPRESS)
    p.add_argument("--sql", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.sql:
        print(json.dumps(sql_run(photos(a.images), a.body, a.sql)))
        return 0
    if a.body:
        body(a.body, a.images, a.shard_size, a.block_size)
        return 0
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        raise SystemExit("bench_cluster needs root and `unshare` (network namespace, as the tests)")
    # the namespace sees only its own processes: say here what else is running
    import benchlib as B

    busy = B.busy_processes()
    print(f"before the namespace: load average {B.loadavg()}"
          + (f"; busy: {', '.join(busy)}" if busy else "; no other busy process"), flush=True)
    work = tempfile.mkdtemp(prefix="lcbench")
    try:
        cmd = (f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} "
               f"--images {a.images} --shard-size {a.shard_size} --body {work}"
               + (f" --block-size {a.block_size}" if a.block_size else ""))
        env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        return subprocess.run(["unshare", "-n", "-p", "-f", "--mount-proc", "bash", "-c", cmd],
                              env=env, cwd=REPO).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
