"""layercorr.cluster on a real two-node Ray cluster (two raylets on loopback).

Ray binds to the machine's interface address, and this machine may only
talk to loopback, so the cluster runs inside namespaces the test creates:
`unshare -n -p -f --mount-proc` (network and PID, as root), `ip link set lo
up`, then the body of this file as a child process. In the PID namespace
`ray stop --force` sees only this cluster's processes, and everything left
dies with the namespace.

The body starts a head (`ray start --head`, one CPU, small object store)
and a second node joining it on 127.0.0.1:6390, runs extract (8 photos,
2 layers, shards of 2), matrices and similarity through `address=`, checks
that tasks ran on both nodes, compares with the single-machine SQL (matrices
to 1e-6, similarity to 1e-9) and checks that a re-run of extract skips every
shard.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PORT = 6390
ADDRESS = f"127.0.0.1:{PORT}"
LAYERS = ["stem", "head"]


def run_in_namespace(test_file: str, timeout: float = 300) -> str:
    """Runs `python test_file body WORK` in new network + PID namespaces; returns its stdout.

    Fails the calling test (with both streams) unless the body exits 0 and
    prints CLUSTER-OK. Shared with tests/test_cluster_faults.py.
    """
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root: they create a network namespace with `unshare -n`",
                    pytrace=False)
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"the cluster tests need `{tool}` on PATH", pytrace=False)
    work = tempfile.mkdtemp(prefix="lcray")  # short: Ray's socket paths must stay < 108 bytes
    try:
        body = f"{sys.executable} {Path(test_file).resolve()} body {work}"
        env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        t0 = time.perf_counter()
        p = subprocess.run(
            ["unshare", "-n", "-p", "-f", "--mount-proc", "bash", "-c",
             f"ip link set lo up && exec {body}"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        took = time.perf_counter() - t0
        if p.returncode != 0:
            pytest.fail(f"cluster body failed (exit {p.returncode}, {took:.0f} s)\n"
                        f"--- stdout\n{p.stdout[-6000:]}\n--- stderr\n{p.stderr[-6000:]}",
                        pytrace=False)
        assert "CLUSTER-OK" in p.stdout, p.stdout[-3000:]
        return p.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_two_node_cluster(ext_path, model_path, photos):
    run_in_namespace(__file__)


# --------------------------------------------------------------------------- the body


def _ray(*args, check=True):
    exe = str(Path(sys.executable).parent / "ray")
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def _single_machine(photos):
    import layercorr

    con = layercorr.connect()
    con.execute("SET VARIABLE paths = ?::VARCHAR[]", [photos])
    con.execute(
        f"CREATE TABLE mats AS SELECT layer, layer_corr(path, activation) AS m "
        f"FROM nn_activations('{layercorr_model()}', getvariable('paths'), layers := ?::VARCHAR[]) "
        f"GROUP BY layer", [LAYERS])
    mats = {layer: (list(m["keys"]), np.array(m["matrix"], dtype=np.float64))
            for layer, m in con.execute("SELECT layer, m FROM mats").fetchall()}
    order = sorted(LAYERS)
    sim = con.execute(
        "SELECT layer_similarity(layer, m ORDER BY list_position(?::VARCHAR[], layer)) FROM mats",
        [order]).fetchone()[0]
    return mats, list(sim["layers"]), np.array(sim["matrix"], dtype=np.float64)


def layercorr_model() -> str:
    return str(REPO / "data" / "models" / "efficientnet_lite0.onnx")


def start_two_nodes(temp: str, num_cpus: int = 1, nodes: int = 2) -> set[str]:
    """`ray start` a head on ADDRESS and nodes-1 more nodes joining it (num_cpus each, small
    object stores), ray.init the driver; returns the node ids once all are alive."""
    common = [f"--num-cpus={num_cpus}", "--object-store-memory=100000000", "--disable-usage-stats"]
    _ray("start", "--head", f"--port={PORT}", "--include-dashboard=false",
         "--node-ip-address=127.0.0.1", f"--temp-dir={temp}", *common)
    for _ in range(nodes - 1):
        _ray("start", f"--address={ADDRESS}", "--node-ip-address=127.0.0.1", *common)
    import ray

    ray.init(address=ADDRESS, log_to_driver=False, logging_level="warning")
    deadline = time.time() + 60
    while len([n for n in ray.nodes() if n["Alive"]]) < nodes:
        if time.time() > deadline:
            raise RuntimeError(f"only {len(ray.nodes())} of {nodes} nodes joined: {ray.nodes()}")
        time.sleep(0.5)
    ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    # A node counts as joined in the GCS before its raylet's resources reach the scheduler;
    # run one task pinned to each node, so that the work of a test spreads over all of them
    # rather than queueing on the head while a new node's view catches up.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=num_cpus)
    def where() -> str:
        return ray.get_runtime_context().get_node_id()

    ran = ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(i, soft=False))
                   .remote() for i in ids], timeout=120)
    assert set(ran) == ids, (ran, ids)
    return ids


def stop_cluster() -> None:
    try:
        import ray

        ray.shutdown()
    finally:
        _ray("stop", "--force", check=False)


def _results_in_submission_order() -> None:
    """wait_all returns the results in the order the tasks were submitted, not the order
    they finished in: the drivers add up float sums over them, which must not depend on
    which worker was faster."""
    import ray
    from layercorr import _ray as R

    @ray.remote(num_cpus=0)
    def after(i: int, seconds: float) -> dict:
        time.sleep(seconds)
        return {"i": i, "ended": time.time()}

    res = R.wait_all(ray, [after.remote(0, 3.0), after.remote(1, 0.0)], None, "order")
    assert [r["i"] for r in res] == [0, 1], res
    assert res[1]["ended"] < res[0]["ended"], res  # they did finish the other way round


def body(work: str) -> None:
    import layercorr
    from layercorr import cluster

    temp = os.path.join(work, "r")
    photos = [str(REPO / "data" / "photos" / "classification" / f"{i}.jpg") for i in range(8)]
    manifest = os.path.join(work, "images.csv")
    with open(manifest, "w") as f:
        f.write("path,label\n")
        for i, p in enumerate(photos):
            f.write(f"{p},{'even' if i % 2 == 0 else 'odd'}\n")
    acts, mats_dir = os.path.join(work, "acts"), os.path.join(work, "mats")
    try:
        nodes = start_two_nodes(temp)
        _results_in_submission_order()

        t = time.perf_counter()
        ex = cluster.extract(layercorr_model(), manifest, LAYERS, acts, address=ADDRESS,
                             shard_size=2)
        print("extract", round(time.perf_counter() - t, 1), "s", flush=True)
        assert ex["shards"] == 4 and ex["shards_run"] == 4, ex
        assert ex["images"] == 8 and ex["rows"] == 16 and ex["bad_images"] == 0, ex
        assert set(ex["nodes"]) == nodes, (ex["nodes"], nodes)
        assert sorted(os.listdir(acts)) == ["_manifest.parquet"] + [
            f"shard-{i:05d}.parquet" for i in range(4)], os.listdir(acts)

        con = layercorr.connect()
        carried = con.execute(
            f"SELECT path, label, count(*) FROM read_parquet('{acts}/shard-*.parquet') "
            "GROUP BY ALL ORDER BY path").fetchall()
        assert len(carried) == 8 and all(c == 2 for _, _, c in carried), carried
        assert {p: lab for p, lab, _ in carried} == {
            p: ("even" if i % 2 == 0 else "odd") for i, p in enumerate(photos)}
        # shard rows ordered by (layer, path), so that a block task's filter skips row groups
        for i in range(4):
            order = con.execute(f"SELECT layer, path FROM read_parquet('{acts}/shard-{i:05d}.parquet')"
                                ).fetchall()
            assert order == sorted(order) and len(order) == 4, (i, order)

        t = time.perf_counter()
        mx = cluster.matrices(acts, mats_dir, address=ADDRESS)
        print("matrices", round(time.perf_counter() - t, 1), "s", flush=True)
        assert sorted(mx["layers"]) == sorted(LAYERS), mx
        assert set(mx["nodes"]) == nodes, (mx["nodes"], nodes)
        layers, sim = cluster.similarity(mats_dir)

        ref_mats, ref_layers, ref_sim = _single_machine(photos)
        got = {layer: (list(k), np.array(m, dtype=np.float64)) for layer, k, m in con.execute(
            f"SELECT layer, keys, matrix FROM read_parquet('{mats_dir}/layer-*.parquet')").fetchall()}
        assert set(got) == set(ref_mats)
        for layer, (keys, m) in got.items():
            rk, rm = ref_mats[layer]
            assert keys == rk == sorted(photos), layer
            assert m.shape == (8, 8)
            np.testing.assert_allclose(m, rm, rtol=0, atol=1e-6, err_msg=layer)
        assert layers == ref_layers == sorted(LAYERS)
        np.testing.assert_allclose(sim, ref_sim, rtol=0, atol=1e-9)

        again = cluster.extract(layercorr_model(), manifest, LAYERS, acts, address=ADDRESS,
                                shard_size=2)
        assert again["shards_run"] == 0 and again["shards_skipped"] == 4, again
        assert again["rows"] == 16 and again["images"] == 8, again
        print(json.dumps({"nodes": sorted(nodes), "similarity": sim.tolist()}), flush=True)
        print("CLUSTER-OK", flush=True)
    finally:
        stop_cluster()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "body":
    body(sys.argv[2])
