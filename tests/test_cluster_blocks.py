"""Block matrices, block similarity, feature-space CKA, runtime_env and bad
input of layercorr.cluster on a real two-node Ray cluster.

Same namespace cluster as tests/test_cluster.py (its helpers). The two
raylets are started with $LAYERCORR_EXTENSION pointing at a file that does
not exist, so a task finds the extension only through the `runtime_env`
of the call (`env_vars` naming a copy of the extension in the work
folder): a call without it fails on the driver with the worker's error
naming the missing file, and every other call passes it.

On 8 demo photos, 3 pooled layers, blocks of 3 keys (3 x 3 blocks, 6 tasks
per layer):

- every method's assembled matrix equals the single-machine layer_corr on
  the same activations (1e-6; euclidean and gram relative to the largest
  entry), and each block file holds its keys, its entries and its row and
  column sums (numpy);
- similarity by blocks (pearson, cka; on pearson and gram matrices) equals
  layer_similarity on the same matrices to 1e-9; spearman falls back to it;
- feature_cka equals layer_similarity(..., 'cka') over layer_corr(...,
  'gram') to 1e-6, and numpy's linear CKA from the activations;
- the command line runs matrices and feature-cka with --runtime-env and
  prints a progress bar;
- bad input is an error raised on the driver with nothing left that looks
  complete: block size, method, unknown layer, missing column, unreadable
  manifest, a shard whose images all fail.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_cluster import (ADDRESS, REPO, layercorr_model,  # noqa: E402
                          run_in_namespace, start_two_nodes, stop_cluster)

LAYERS3 = ["blocks.2", "head", "stem"]
METHODS = ["pearson", "spearman", "cosine", "euclidean", "gram"]


def test_cluster_blocks(ext_path, model_path, photos):
    out = run_in_namespace(__file__, timeout=420)
    for line in out.splitlines():
        if line.startswith("timing"):
            print(line)


# --------------------------------------------------------------------------- the body


def _raises(fn, kind, *words):
    try:
        fn()
    except kind as e:
        text = str(e)
        for w in words:
            assert w in text, f"{w!r} not in {text!r}"
        return text
    raise AssertionError(f"no {kind.__name__} raised (wanted {words})")


def _linear_cka(x, y):
    """Kornblith et al.'s linear CKA from activations (numpy, float64)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def body(work: str) -> None:
    import layercorr
    from layercorr import cluster

    photos = [str(REPO / "data" / "photos" / "classification" / f"{i}.jpg") for i in range(8)]
    model = layercorr_model()
    # DuckDB derives the entry point from the file name: keep it, change the folder
    os.makedirs(os.path.join(work, "ext"))
    ext_copy = os.path.join(work, "ext", "layercorr.duckdb_extension")
    shutil.copy(layercorr.extension_path(), ext_copy)
    env = {"env_vars": {layercorr.ENV_VAR: ext_copy}}
    missing_ext = os.path.join(work, "missing.duckdb_extension")
    t_all = time.perf_counter()
    try:
        # the raylets (and so every worker) see a wrong extension path
        os.environ[layercorr.ENV_VAR] = missing_ext
        start_two_nodes(os.path.join(work, "r"))
        del os.environ[layercorr.ENV_VAR]
        con = layercorr.connect()

        # without runtime_env the workers cannot load the extension
        acts = os.path.join(work, "acts")
        _raises(lambda: cluster.extract(model, photos, LAYERS3, acts, address=ADDRESS,
                                        shard_size=3, pool="avg"),
                FileNotFoundError, missing_ext)
        assert not glob.glob(os.path.join(acts, "shard-*")), os.listdir(acts)

        t = time.perf_counter()
        ex = cluster.extract(model, photos, LAYERS3, acts, address=ADDRESS, shard_size=3,
                             pool="avg", runtime_env=env)
        assert ex["shards_run"] == 3 and ex["rows"] == 24 and len(ex["nodes"]) == 2, ex
        print(f"timing extract {time.perf_counter() - t:.1f} s", flush=True)

        rows = con.execute(f"SELECT path, layer, activation FROM read_parquet('{acts}/shard-*.parquet')"
                           ).fetchall()
        x = {layer: {} for layer in LAYERS3}
        for p, layer, a in rows:
            x[layer][p] = np.array(a, dtype=np.float64)
        keys = sorted(photos)
        con.execute(f"CREATE TABLE acts AS FROM read_parquet('{acts}/shard-*.parquet')")

        # every method: assembled matrices and blocks against layer_corr
        ref = {}
        for method in METHODS:
            t = time.perf_counter()
            mats = os.path.join(work, f"m-{method}")
            mx = cluster.matrices(acts, mats, method=method, address=ADDRESS, block_size=3,
                                  runtime_env=env)
            assert mx["blocks"] == 3 * 6 and mx["block_size"] == 3, mx
            assert len(mx["nodes"]) == 2, mx["nodes"]
            print(f"timing matrices {method} {time.perf_counter() - t:.1f} s", flush=True)
            want = {layer: (list(m["keys"]), np.array(m["matrix"], dtype=np.float64))
                    for layer, m in con.execute(
                        "SELECT layer, layer_corr(path, activation, ?) FROM acts GROUP BY layer",
                        [method]).fetchall()}
            ref[method] = want
            got = {layer: (list(k), np.array(m, dtype=np.float64), meth)
                   for layer, k, m, meth in con.execute(
                       f"SELECT layer, keys, matrix, method FROM read_parquet('{mats}/layer-*.parquet')"
                   ).fetchall()}
            assert sorted(got) == sorted(LAYERS3)
            for layer in LAYERS3:
                k, m, meth = got[layer]
                wk, wm = want[layer]
                assert k == wk == keys and meth == method
                scale = np.abs(wm).max() if method in ("euclidean", "gram") else 1.0
                np.testing.assert_allclose(m, wm, rtol=0, atol=1e-6 * scale,
                                           err_msg=f"{method} {layer}")
            # one off-diagonal block file: keys, entries and sums
            bf = glob.glob(os.path.join(mats, "blocks", "head", "block-00000-00002.parquet"))
            assert len(bf) == 1, os.listdir(os.path.join(mats, "blocks", "head"))
            rk, ck, bm, rs, cs = con.execute(
                f"SELECT row_keys, col_keys, matrix, row_sums, col_sums FROM read_parquet('{bf[0]}')"
            ).fetchone()
            assert rk == keys[:3] and ck == keys[6:], (rk, ck)
            bm = np.array(bm, dtype=np.float64)
            np.testing.assert_allclose(bm, got["head"][1][:3, 6:], rtol=0, atol=0)
            np.testing.assert_allclose(rs, bm.sum(1), rtol=1e-12)
            np.testing.assert_allclose(cs, bm.sum(0), rtol=1e-12)

        # similarity over blocks against layer_similarity on the same matrices
        for mats_method, sim_methods in (("pearson", ["pearson", "cka", "spearman"]),
                                         ("gram", ["cka", "pearson"])):
            mats = os.path.join(work, f"m-{mats_method}")
            con.execute("CREATE OR REPLACE TABLE lm AS SELECT layer, "
                        "{'keys': keys, 'matrix': matrix, 'method': method} AS m "
                        f"FROM read_parquet('{mats}/layer-*.parquet')")
            for sm in sim_methods:
                layers, sim = cluster.similarity(mats, method=sm, address=ADDRESS,
                                                 runtime_env=env)
                row = con.execute("SELECT layer_similarity(layer, m, ? ORDER BY layer) FROM lm",
                                  [sm]).fetchone()[0]
                assert layers == list(row["layers"]) == sorted(LAYERS3)
                np.testing.assert_allclose(sim, np.array(row["matrix"]), rtol=0, atol=1e-9,
                                           err_msg=f"{sm} on {mats_method}")
        # the order and subset of layers is the caller's
        layers, sim = cluster.similarity(os.path.join(work, "m-pearson"), method="cka",
                                         layers=["stem", "head"], address=ADDRESS,
                                         runtime_env=env)
        assert layers == ["stem", "head"] and sim.shape == (2, 2)

        # feature-space CKA
        t = time.perf_counter()
        layers, fc = cluster.feature_cka(acts, address=ADDRESS, runtime_env=env)
        print(f"timing feature_cka {time.perf_counter() - t:.1f} s", flush=True)
        con.execute("CREATE OR REPLACE TABLE gm AS SELECT layer, "
                    "layer_corr(path, activation, 'gram') AS m FROM acts GROUP BY layer")
        row = con.execute("SELECT layer_similarity(layer, m, 'cka' ORDER BY layer) FROM gm"
                          ).fetchone()[0]
        assert layers == list(row["layers"]) == sorted(LAYERS3)
        np.testing.assert_allclose(fc, np.array(row["matrix"]), rtol=0, atol=1e-6)
        for i, a in enumerate(layers):
            for j, b in enumerate(layers):
                xa = np.stack([x[a][p] for p in keys])
                xb = np.stack([x[b][p] for p in keys])
                assert abs(fc[i, j] - _linear_cka(xa, xb)) < 1e-9, (a, b)

        # command line: matrices and feature-cka with --runtime-env, progress bars
        cli_env = dict(os.environ, RAY_AUTH_MODE="disabled")
        cli_env.pop(layercorr.ENV_VAR, None)
        mats = os.path.join(work, "m-cli")
        p = subprocess.run([sys.executable, "-m", "layercorr.cluster", "matrices", acts, mats,
                            "--address", ADDRESS, "--block-size", "4", "--layers", "head,stem",
                            "--runtime-env", json.dumps(env)],
                           capture_output=True, text=True, timeout=180, cwd=REPO, env=cli_env)
        assert p.returncode == 0, p.stderr[-3000:]
        r = json.loads(p.stdout)
        assert r["blocks"] == 2 * 3 and sorted(r["layers"]) == ["head", "stem"], r
        assert "matrices blocks [" in p.stderr and "6/6" in p.stderr, p.stderr[-2000:]
        got = dict(con.execute(f"SELECT layer, matrix FROM read_parquet('{mats}/layer-*.parquet')"
                               ).fetchall())
        np.testing.assert_allclose(np.array(got["head"], dtype=np.float64),
                                   ref["pearson"]["head"][1], rtol=0, atol=1e-6)
        p = subprocess.run([sys.executable, "-m", "layercorr.cluster", "feature-cka", acts,
                            "--address", ADDRESS, "--layers", "stem,head",
                            "--runtime-env", json.dumps(env)],
                           capture_output=True, text=True, timeout=180, cwd=REPO, env=cli_env)
        assert p.returncode == 0, p.stderr[-3000:]
        r = json.loads(p.stdout)
        assert r["layers"] == ["stem", "head"], r
        assert abs(r["cka"][0][1] - fc[layers.index("stem"), layers.index("head")]) < 1e-12

        # bad input: a clear error on the driver, nothing that looks complete
        bad = os.path.join(work, "bad")
        for bs in (0, -2, 2.5, True):
            _raises(lambda: cluster.matrices(acts, bad, block_size=bs, address=ADDRESS,
                                             runtime_env=env), ValueError, "block_size")
        _raises(lambda: cluster.matrices(acts, bad, method="kendall", address=ADDRESS,
                                         runtime_env=env), ValueError, "kendall")
        _raises(lambda: cluster.matrices(acts, bad, layers=["nope"], address=ADDRESS,
                                         runtime_env=env), ValueError, "nope", "head")
        _raises(lambda: cluster.feature_cka(acts, layers=["head", "nope"], address=ADDRESS,
                                            runtime_env=env), ValueError, "nope")
        _raises(lambda: cluster.extract(model, photos, ["nope"], bad, address=ADDRESS,
                                        runtime_env=env), Exception, "nope")
        nocol = os.path.join(work, "nocol")
        os.makedirs(nocol)
        con.execute(f"COPY (SELECT path, layer FROM acts) TO '{nocol}/shard-00000.parquet'")
        _raises(lambda: cluster.matrices(nocol, bad, address=ADDRESS, runtime_env=env),
                ValueError, "activation")
        _raises(lambda: cluster.feature_cka(nocol, address=ADDRESS, runtime_env=env),
                ValueError, "activation")
        manifest = os.path.join(work, "broken.parquet")
        with open(manifest, "wb") as f:
            f.write(b"this is not parquet")
        _raises(lambda: cluster.extract(model, manifest, ["head"], bad, address=ADDRESS,
                                        runtime_env=env), ValueError, manifest)
        nopath = os.path.join(work, "nopath.csv")
        with open(nopath, "w") as f:
            f.write("file,label\na.jpg,x\n")
        _raises(lambda: cluster.extract(model, nopath, ["head"], bad, address=ADDRESS,
                                        runtime_env=env), ValueError, "path", nopath)
        # a shard whose images all fail: shards of 2, the last shard two non-images
        junk = [os.path.join(work, f"junk{i}.jpg") for i in range(2)]
        for j in junk:
            with open(j, "w") as f:
                f.write("not an image")
        out_bad = os.path.join(work, "acts-bad")
        _raises(lambda: cluster.extract(model, photos[:2] + junk, ["head"], out_bad,
                                        address=ADDRESS, shard_size=2, skip_bad_images=True,
                                        pool="avg", runtime_env=env),
                ValueError, "every image of shard 1", junk[0])
        assert not os.path.exists(os.path.join(out_bad, "shard-00001.parquet"))
        assert not glob.glob(os.path.join(out_bad, ".tmp-*"))
        # without skip_bad_images the bad image itself is named
        out_bad2 = os.path.join(work, "acts-bad2")
        _raises(lambda: cluster.extract(model, junk, ["head"], out_bad2, address=ADDRESS,
                                        runtime_env=env), Exception, "junk")
        assert not glob.glob(os.path.join(out_bad2, "shard-*")), os.listdir(out_bad2)
        print(f"timing blocks body {time.perf_counter() - t_all:.1f} s", flush=True)
        print("CLUSTER-OK", flush=True)
    finally:
        stop_cluster()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "body":
    body(sys.argv[2])
