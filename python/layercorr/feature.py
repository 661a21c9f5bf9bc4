"""Exact linear CKA between layers in feature space, summed over shards on
Ray workers: for when the N x N matrices no longer fit anywhere.

One task per shard file runs the extension's `layer_cross(a, b)` for every
needed pair of layers (a <= b, the layer with itself included): n, the
column sums and X_aᵀ X_b, accumulated in f64. The driver adds the partial
sums and finishes, with μ the column means,

    Xcᵀ Yc = Xᵀ Y − n μ_x μ_yᵀ,   CKA = ‖Xcᵀ Yc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F),

which is linear CKA of the centred Gram matrices (Kornblith et al. 2019),
i.e. `layer_similarity(layer, m, 'cka')` over `layer_corr(..., 'gram')`,
without any N x N matrix. Memory per task is the D_a x D_b products of the
pairs (checked by the extension against memory_limit and a cap of 2^27
entries per pair), independent of N: pool wide layers first.
"""
from __future__ import annotations

import os

import layercorr

from . import _ray as R
from .blocks import _source


def _cross_task(driver_ext, file, pairs):
    """n, column sums and cross products of every pair of layers in one shard."""
    import numpy as np

    con = R.connect_worker(driver_ext)
    out = {}
    for a, b in pairs:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE c AS SELECT layer_cross(x.activation, y.activation) AS s "
            f"FROM read_parquet({R.q(file)}) x JOIN read_parquet({R.q(file)}) y USING (path) "
            "WHERE x.layer = $a AND y.layer = $b", {"a": a, "b": b})
        n, sa, sb = con.execute("SELECT s.n, s.sum_a, s.sum_b FROM c").fetchone()
        if not n:
            continue
        sa, sb = np.asarray(sa, dtype=np.float64), np.asarray(sb, dtype=np.float64)
        flat = con.execute("SELECT unnest(flatten(s.cross)) AS v FROM c").fetchnumpy()["v"]
        out[(a, b)] = (int(n), sa, sb, np.asarray(flat, dtype=np.float64).reshape(len(sa), len(sb)))
    con.close()
    return {"sums": out, "node": R.node_id(), "pid": os.getpid(),
            "label": os.path.basename(file)}


def feature_cka(activations, *, layers=None, address=None, runtime_env=None, progress=None):
    """Exact linear CKA between the layers of an extract() dataset, in feature space.

    activations: extract()'s folder, a glob or a file (`path, layer,
    activation`); layers: their order and subset (default: all, sorted by
    name). Rows with a NULL activation (skipped bad images) are left out.
    Returns (layers, L x L numpy array), equal to layer_similarity(...,
    'cka') over layer_corr(..., 'gram') matrices of the same activations.
    """
    import numpy as np

    files = R.dataset_files(str(activations), "shard")
    ext = layercorr.extension_path()
    con = layercorr.connect(extension=ext)
    try:
        _source(con, files, activations)
        present = [r[0] for r in con.execute(
            "SELECT DISTINCT layer FROM acts ORDER BY layer").fetchall()]
    finally:
        con.close()
    order = R.choose_layers(present, layers, activations)
    if len(order) < 2:
        raise ValueError(f"feature_cka needs at least 2 layers, got {len(order)}")
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i:]]

    ray = R.init(address)
    task = R.remote(ray, _cross_task, runtime_env)
    res = R.wait_all(ray, [task.remote(ext, f, pairs) for f in files], progress, "feature-cka")
    total = {}
    for r in res:
        for p, (n, sa, sb, cr) in r["sums"].items():
            if p in total:
                t = total[p]
                total[p] = (t[0] + n, t[1] + sa, t[2] + sb, t[3] + cr)
            else:
                total[p] = (n, sa, sb, cr)
    centred = {}
    for p in pairs:
        if p not in total:
            raise ValueError(f"layers {p[0]} and {p[1]} have no image with both activations")
        n, sa, sb, cr = total[p]
        centred[p] = cr - np.outer(sa, sb) / n  # Xcᵀ Yc = Xᵀ Y − n μ_x μ_yᵀ
    norm = {a: np.linalg.norm(centred[(a, a)]) for a in order}
    for a in order:
        if norm[a] == 0:
            raise ValueError(f"feature_cka: layer {a} is constant over the images")
    L = len(order)
    sim = np.eye(L)
    for i, a in enumerate(order):
        for j in range(i + 1, L):
            b = order[j]
            v = float(np.sum(centred[(a, b)] ** 2)) / (norm[a] * norm[b])
            sim[i, j] = sim[j, i] = v
    return list(order), sim
