"""layercorr.cluster survives a dead worker and a dead driver (two-node Ray cluster).

Same namespace cluster as tests/test_cluster.py (its helpers), one cluster
for every case:

1. clean run: extract (8 photos, 2 layers, shards of 2) and matrices;
2. a worker dies in the middle of extract: the first shard task to reach the
   rename writes its temporary file and then kills its own worker process
   (`_crash_marker=`, the test-only fault hook, see cluster._crash_once);
   Ray retries the task in another process, the half-written temporary file
   is not part of the dataset, and the shards equal the clean run's exactly;
3. the same in the middle of matrices (a block task dies): the matrices and
   the similarity equal the clean run's;
4. the driver is SIGKILLed (extract in a subprocess, killed as soon as the
   first shard file appears); a re-run skips the shards that were finished
   (not rewritten), runs the others, removes the leftover temporary files,
   and the dataset equals the clean run's.
"""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_cluster import (ADDRESS, LAYERS, REPO, layercorr_model,  # noqa: E402
                          run_in_namespace, start_two_nodes, stop_cluster)


def test_cluster_faults(ext_path, model_path, photos):
    out = run_in_namespace(__file__, timeout=300)
    for line in out.splitlines():
        if line.startswith("timing"):
            print(line)


# --------------------------------------------------------------------------- the body


def _acts(con, folder):
    """{(path, layer): activation as float32 array} of a shard-*.parquet dataset."""
    rows = con.execute(
        f"SELECT path, layer, activation FROM read_parquet('{folder}/shard-*.parquet')").fetchall()
    d = {(p, layer): np.array(a, dtype=np.float32) for p, layer, a in rows}
    assert len(d) == len(rows), "duplicate (path, layer) rows"
    return d


def _mats(con, folder):
    return {layer: (list(k), np.array(m, dtype=np.float64)) for layer, k, m in con.execute(
        f"SELECT layer, keys, matrix FROM read_parquet('{folder}/layer-*.parquet')").fetchall()}


def _same_acts(a, b):
    assert a.keys() == b.keys(), (sorted(a)[:4], sorted(b)[:4])
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def _same_mats(a, b):
    assert a.keys() == b.keys()
    for layer in a:
        assert a[layer][0] == b[layer][0], layer
        assert np.array_equal(a[layer][1], b[layer][1]), layer


def _tmp_files(folder):
    return glob.glob(os.path.join(folder, "**", ".tmp-*"), recursive=True)


def body(work: str) -> None:
    import layercorr
    from layercorr import cluster

    photos = [str(REPO / "data" / "photos" / "classification" / f"{i}.jpg") for i in range(8)]
    model = layercorr_model()
    t_all = time.perf_counter()
    try:
        start_two_nodes(os.path.join(work, "r"))
        con = layercorr.connect()

        # 1. clean run
        clean_acts, clean_mats = os.path.join(work, "a0"), os.path.join(work, "m0")
        cluster.extract(model, photos, LAYERS, clean_acts, address=ADDRESS, shard_size=2)
        cluster.matrices(clean_acts, clean_mats, address=ADDRESS)
        ref_acts, ref_mats = _acts(con, clean_acts), _mats(con, clean_mats)
        assert len(ref_acts) == 16 and set(ref_mats) == set(LAYERS)

        # 2. a worker dies in the middle of extract
        t = time.perf_counter()
        acts = os.path.join(work, "a1")
        marker = os.path.join(work, "crash-extract")
        ex = cluster.extract(model, photos, LAYERS, acts, address=ADDRESS, shard_size=2,
                             _crash_marker=marker)
        assert os.path.exists(marker), "the fault hook never fired"
        dead_pid = int(open(marker).read())
        assert ex["shards_run"] == 4 and ex["rows"] == 16, ex
        assert dead_pid not in {r["pid"] for r in ex["tasks"]}, (dead_pid, ex["tasks"])
        left = _tmp_files(acts)
        assert len(left) == 1, left  # the dead worker's half-done file, not in the dataset
        assert sorted(os.path.basename(f) for f in glob.glob(os.path.join(acts, "*.parquet"))) == [
            f"shard-{i:05d}.parquet" for i in range(4)]
        _same_acts(_acts(con, acts), ref_acts)
        print(f"timing extract with a killed worker {time.perf_counter() - t:.1f} s", flush=True)

        # 3. a worker dies in the middle of matrices
        t = time.perf_counter()
        mats = os.path.join(work, "m1")
        marker = os.path.join(work, "crash-matrices")
        mx = cluster.matrices(acts, mats, address=ADDRESS, _crash_marker=marker)
        assert os.path.exists(marker), "the fault hook never fired"
        dead_pid = int(open(marker).read())
        assert dead_pid not in {r["pid"] for r in mx["tasks"]}, (dead_pid, mx["tasks"])
        left = _tmp_files(mats)
        # the killed task was a block task: its half-written block is left aside
        assert len(left) == 1 and os.sep + "blocks" + os.sep in left[0], left
        _same_mats(_mats(con, mats), ref_mats)
        l1, s1 = cluster.similarity(mats)
        l0, s0 = cluster.similarity(clean_mats)
        assert l1 == l0 and np.array_equal(s1, s0)
        print(f"timing matrices with a killed worker {time.perf_counter() - t:.1f} s", flush=True)

        # 4. the driver is killed after the first shard is written; a re-run resumes
        t = time.perf_counter()
        acts = os.path.join(work, "a2")
        code = ("import sys; from layercorr import cluster; "
                f"cluster.extract({model!r}, {photos!r}, {LAYERS!r}, {acts!r}, "
                f"address={ADDRESS!r}, shard_size=1)")
        driver = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while not glob.glob(os.path.join(acts, "shard-*.parquet")):
            if driver.poll() is not None:
                raise RuntimeError(f"driver ended before any shard ({driver.returncode}): "
                                   f"{driver.stderr.read().decode()[-3000:]}")
            if time.time() > deadline:
                raise RuntimeError("no shard file within 120 s")
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(1)  # Ray ends the dead job's workers
        done = {f: os.stat(f).st_mtime_ns
                for f in glob.glob(os.path.join(acts, "shard-*.parquet"))}
        assert 1 <= len(done) < 8, sorted(done)
        again = cluster.extract(model, photos, LAYERS, acts, address=ADDRESS, shard_size=1)
        assert again["shards_skipped"] >= len(done), (again, sorted(done))
        assert again["shards_run"] + again["shards_skipped"] == 8, again
        assert again["shards_run"] >= 1, again
        assert again["images"] == 8 and again["rows"] == 16, again
        for f, mtime in done.items():
            assert os.stat(f).st_mtime_ns == mtime, f"{f} was rewritten"
        assert not _tmp_files(acts), _tmp_files(acts)
        assert len(glob.glob(os.path.join(acts, "shard-*.parquet"))) == 8
        _same_acts(_acts(con, acts), ref_acts)
        print(f"timing driver killed after {len(done)} of 8 shards, resumed "
              f"({again['shards_run']} run, {again['shards_skipped']} skipped) "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        print(f"timing fault body {time.perf_counter() - t_all:.1f} s", flush=True)
        print("CLUSTER-OK", flush=True)
    finally:
        stop_cluster()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "body":
    body(sys.argv[2])
