"""Per-layer N x N matrices as blocks on Ray workers, and the layer x layer
similarity reduced over those blocks (the `matrices` and `similarity` steps
of layercorr.cluster).

Each layer's keys (image paths, sorted) are cut into contiguous ranges of
`block_size` keys. One task per block pair I <= J runs the extension's
`layer_corr_block` on the activations of those keys and writes
out/blocks/<layer>/block-<I>-<J>.parquet (`layer, bi, bj, row_keys,
col_keys, matrix, method, row_sums, col_sums`). The `gram` method first
sums every shard's activations (`activation_sum`, one task per shard) for
the global column means it passes as `center`. One assembly task per layer
then writes out/layer-<name>.parquet (`layer, keys, matrix, method`, as
`layer_corr`'s result) unless assemble=False; out/_blocks.json records the
partition for `similarity`.
"""
from __future__ import annotations

import json
import math
import os
import re
import time

import layercorr

from . import _ray as R

INDEX = "_blocks.json"
BLOCK_METHODS = ("pearson", "cka")  # similarity methods reduced over blocks


def layer_file(layer: str) -> str:
    return "layer-" + re.sub(r"[^A-Za-z0-9._-]", "_", layer) + ".parquet"


def _stem(layer: str) -> str:
    return layer_file(layer)[len("layer-"):-len(".parquet")]


def _check_block_size(block_size):
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return block_size


def default_block_size(n: int, layers: int, cpus: int) -> int:
    """Keys per block so that there are about 4 block tasks per CPU over all layers."""
    target = 4 * max(cpus, 1)
    b = 1
    while layers * b * (b + 1) // 2 < target and b < n:
        b += 1
    return max(1, math.ceil(n / b))


def _source(con, files, where):
    """Registers the view `acts` over the activation files; checks its columns."""
    con.execute("SET VARIABLE lc_files = ?::VARCHAR[]", [files])
    try:
        cols = [r[0] for r in con.execute(
            "DESCRIBE SELECT * FROM read_parquet(getvariable('lc_files'), union_by_name := true)"
        ).fetchall()]
    except Exception as e:
        raise ValueError(f"cannot read the activations in {where}: {e}") from e
    for need in ("path", "layer", "activation"):
        if need not in cols:
            raise ValueError(f"the activations in {where} have no `{need}` column "
                             f"(columns: {', '.join(cols)})")
    con.execute("CREATE OR REPLACE TEMP VIEW acts AS "
                "FROM read_parquet(getvariable('lc_files'), union_by_name := true)")


def layer_keys(con, files, layers, where) -> dict[str, list[str]]:
    """{layer: its keys (paths) with a non-NULL activation, sorted}; needs the view `acts`.

    When the Parquet footers show that no activation is NULL, only `path`
    and `layer` are read, not the activations. A key twice in a layer is an
    error naming it.
    """
    present_only = "" if R.no_null_activations(con, files) else " AND activation IS NOT NULL"
    keys = {}
    for layer, k, distinct in con.execute(
            "SELECT layer, list(path ORDER BY path), count(DISTINCT path) FROM acts "
            f"WHERE list_contains(?::VARCHAR[], layer){present_only} GROUP BY layer",
            [list(layers)]).fetchall():
        if distinct != len(k):
            dup = next(a for a, b in zip(k, k[1:]) if a == b)  # sorted: neighbours
            raise ValueError(f"duplicate key '{dup}' in layer {layer} of {where}; "
                             "keys must be unique")
        keys[layer] = k
    return keys


def _check_method(con, method):
    try:
        con.execute("SELECT layer_corr_block('a', [1, 2]::FLOAT[], 'both', ?)", [method]).fetchall()
    except Exception as e:
        raise ValueError(str(e).split("\n")[0]) from None


# --------------------------------------------------------------------------- worker tasks


def _sum_task(driver_ext, file, layers):
    """n and the column sums of each layer in one shard file."""
    import numpy as np

    con = R.connect_worker(driver_ext)
    rows = con.execute(
        f"SELECT layer, s.n, s.sum FROM (SELECT layer, activation_sum(activation) AS s "
        f"FROM read_parquet({R.q(file)}) WHERE list_contains(?::VARCHAR[], layer) GROUP BY layer)",
        [layers]).fetchall()
    con.close()
    return {"sums": {layer: (n, np.asarray(s, dtype=np.float64)) for layer, n, s in rows if n},
            "node": R.node_id(), "pid": os.getpid(), "label": os.path.basename(file)}


def _block_task(driver_ext, files, layer, method, bi, bj, ri, rj, center, dest, crash_marker=None):
    """One block of one layer: layer_corr_block on keys ri=(lo, hi) x rj=(lo, hi)."""
    import numpy as np

    t0 = time.perf_counter()
    con = R.connect_worker(driver_ext)
    con.execute("SET VARIABLE files = ?::VARCHAR[]", [files])
    side = ("CASE WHEN path BETWEEN $li AND $hi THEN "
            "(CASE WHEN path BETWEEN $lj AND $hj THEN 'both' ELSE 'row' END) ELSE 'col' END")
    args = f"path, activation, {side}, $method" + (", $center::DOUBLE[]" if center is not None else "")
    params = {"li": ri[0], "hi": ri[1], "lj": rj[0], "hj": rj[1], "method": method, "layer": layer}
    if center is not None:
        params["center"] = [float(x) for x in center]
    con.execute(
        f"CREATE TEMP TABLE blk AS SELECT layer_corr_block({args}) AS b "
        "FROM read_parquet(getvariable('files'), union_by_name := true) "
        "WHERE layer = $layer AND activation IS NOT NULL "
        "AND (path BETWEEN $li AND $hi OR path BETWEEN $lj AND $hj)", params)
    r, c = con.execute("SELECT len(b.row_keys), len(b.col_keys) FROM blk").fetchone()
    flat = con.execute("SELECT unnest(flatten(b.matrix)) AS v FROM blk").fetchnumpy()["v"]
    m = np.asarray(flat, dtype=np.float32).reshape(r, c)
    row_sums = m.sum(axis=1, dtype=np.float64).tolist()
    col_sums = m.sum(axis=0, dtype=np.float64).tolist()
    R.atomic_copy(
        con, "SELECT $layer AS layer, $bi::INTEGER AS bi, $bj::INTEGER AS bj, b.row_keys, "
        "b.col_keys, b.matrix, b.method, $rs::DOUBLE[] AS row_sums, $cs::DOUBLE[] AS col_sums "
        "FROM blk", dest,
        {"layer": layer, "bi": bi, "bj": bj, "rs": row_sums, "cs": col_sums}, crash_marker)
    con.close()
    return {"layer": layer, "bi": bi, "bj": bj, "file": dest, "rows": r, "cols": c,
            "node": R.node_id(), "pid": os.getpid(), "label": f"{layer} {bi},{bj}",
            "seconds": time.perf_counter() - t0}


def _read_block(con, file):
    """(row_keys, col_keys, float32 matrix) of a block file."""
    import numpy as np

    rk, ck = con.execute(f"SELECT row_keys, col_keys FROM read_parquet({R.q(file)})").fetchone()
    flat = con.execute(
        f"SELECT unnest(flatten(matrix)) AS v FROM read_parquet({R.q(file)})").fetchnumpy()["v"]
    return rk, ck, np.asarray(flat, dtype=np.float32).reshape(len(rk), len(ck))


def _block_path(out, layer, bi, bj):
    return os.path.join(out, "blocks", _stem(layer), f"block-{bi:05d}-{bj:05d}.parquet")


def write_matrix(con, layer, keys, full, method, dest, crash_marker=None, arrow=None):
    """Writes `layer, keys, matrix, method` (one row, matrix FLOAT[][]) to dest, atomically.

    The n x n float32 array reaches DuckDB through pyarrow when it is
    installed (zero-copy lists); otherwise as a scan of numpy arrays, rows
    put together in SQL (slower, and 12 more bytes per entry). `arrow`
    forces one way (tests).
    """
    import numpy as np

    n = len(keys)
    if arrow is None:
        try:
            import pyarrow  # noqa: F401
            arrow = True
        except ImportError:
            arrow = False
    params = {"layer": layer, "keys": list(keys), "method": method}
    if arrow:
        import pyarrow as pa

        values = pa.array(np.ascontiguousarray(full, dtype=np.float32).reshape(-1))
        large = n * n >= 2**31
        inner_cls = pa.LargeListArray if large else pa.ListArray
        inner_off = np.arange(0, n * n + 1, n, dtype=np.int64 if large else np.int32)
        inner = inner_cls.from_arrays(pa.array(inner_off), values)
        matrix = pa.ListArray.from_arrays(pa.array([0, n], type=pa.int32()), inner)
        con.register("lc_matrix", pa.table({"matrix": matrix}))
        query = ("SELECT $layer AS layer, $keys::VARCHAR[] AS keys, "
                 "matrix::FLOAT[][] AS matrix, $method AS method FROM lc_matrix")
    else:
        k = np.arange(n * n, dtype=np.int64)
        lc_flat = {"i": k // n, "k": k,  # noqa: F841 - scanned by name below
                   "v": np.ascontiguousarray(full, dtype=np.float32).reshape(-1)}
        con.execute("CREATE OR REPLACE TEMP TABLE lc_matrix AS SELECT list(r ORDER BY i) AS matrix "
                    "FROM (SELECT i, list(v ORDER BY k) AS r FROM lc_flat GROUP BY i)")
        query = ("SELECT $layer AS layer, $keys::VARCHAR[] AS keys, matrix::FLOAT[][] AS matrix, "
                 "$method AS method FROM lc_matrix")
    R.atomic_copy(con, query, dest, params, crash_marker)


def _assemble_task(driver_ext, out, layer, n, nblocks, method, dest, crash_marker=None):
    """out/layer-<name>.parquet from the layer's blocks: `layer, keys, matrix, method`."""
    import numpy as np

    con = R.connect_worker(driver_ext)
    full = np.empty((n, n), dtype=np.float32)
    keys: list[str] = []
    offsets = [0]
    for b in range(nblocks):
        rk, _, m = _read_block(con, _block_path(out, layer, b, b))
        keys.extend(rk)
        offsets.append(offsets[-1] + len(rk))
        full[offsets[b]:offsets[b + 1], offsets[b]:offsets[b + 1]] = m
    if len(keys) != n:
        raise ValueError(f"layer {layer}: the diagonal blocks hold {len(keys)} keys, expected {n}")
    for bi in range(nblocks):
        for bj in range(bi + 1, nblocks):
            _, _, m = _read_block(con, _block_path(out, layer, bi, bj))
            rows, cols = slice(offsets[bi], offsets[bi + 1]), slice(offsets[bj], offsets[bj + 1])
            full[rows, cols] = m
            full[cols, rows] = m.T
    write_matrix(con, layer, keys, full, method, dest, crash_marker)
    con.close()
    return {"layer": layer, "file": dest, "n": n, "node": R.node_id(), "pid": os.getpid(),
            "label": layer}


# --------------------------------------------------------------------------- matrices


def matrices(activations, out, *, method="pearson", layers=None, address=None, block_size=None,
             assemble=True, runtime_env=None, progress=None, _crash_marker=None):
    """Per-layer N x N matrices of an extract() dataset, computed as blocks on Ray workers.

    activations: extract()'s folder (its shard-*.parquet files), a glob or a
    file, with columns `path, layer, activation`. Keys are the paths, sorted.
    block_size: keys per block (default: about four block tasks per CPU of
    the cluster). Writes out/blocks/<layer>/block-<I>-<J>.parquet for every
    block pair I <= J, out/_blocks.json (the partition), and, with
    assemble=True, out/layer-<name>.parquet with `layer, keys, matrix,
    method` as layer_corr's result. runtime_env: Ray's runtime_env for
    every task (e.g. {'env_vars': {'LAYERCORR_EXTENSION': path}}).
    `progress`: a callable(message), True (a bar on stderr) or None.
    Every block is recomputed (no resume); `_crash_marker` is fault
    injection for the tests only. Returns {layers, n, block_size, blocks,
    seconds, nodes, tasks}.
    """
    t0 = time.perf_counter()
    block_size = _check_block_size(block_size)
    files = R.dataset_files(str(activations), "shard")
    ext = layercorr.extension_path()
    con = layercorr.connect(extension=ext)
    try:
        _source(con, files, activations)
        _check_method(con, method)
        present = [r[0] for r in con.execute(
            "SELECT DISTINCT layer FROM acts ORDER BY layer").fetchall()]
        layers = R.choose_layers(present, layers, activations)
        if not layers:
            raise ValueError(f"no layers in {activations}")
        keys = layer_keys(con, files, layers, activations)
    finally:
        con.close()
    for x in layers:
        if len(keys.get(x, [])) < 2:
            raise ValueError(f"layer {x} has {len(keys.get(x, []))} non-NULL activations in "
                             f"{activations}; a matrix needs at least 2")
    names = {}
    for x in layers:
        f = layer_file(x)
        if f in names:
            raise ValueError(f"layers {names[f]} and {x} map to the same file name {f}")
        names[f] = x

    ray = R.init(address)
    nmax = max(len(keys[x]) for x in layers)
    if block_size is None:
        block_size = default_block_size(nmax, len(layers), R.cpus(ray))
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    R.remove_stale(out)
    for x in layers:
        os.makedirs(os.path.join(out, "blocks", _stem(x)), exist_ok=True)
        for old in os.listdir(os.path.join(out, "blocks", _stem(x))):
            os.remove(os.path.join(out, "blocks", _stem(x), old))
    index_path = os.path.join(out, INDEX)
    if os.path.exists(index_path):
        os.remove(index_path)  # written again once every block is done

    tasks = []
    centers = {x: None for x in layers}
    if method.strip().lower() == "gram":
        st = R.remote(ray, _sum_task, runtime_env)
        res = R.wait_all(ray, [st.remote(ext, f, layers) for f in files], progress,
                         "matrices column sums")
        tasks += res
        for x in layers:
            n = sum(r["sums"][x][0] for r in res if x in r["sums"])
            total = sum(r["sums"][x][1] for r in res if x in r["sums"])
            centers[x] = (total / n).tolist()

    bt = R.remote(ray, _block_task, runtime_env)
    work, plan = [], {}
    for x in layers:
        k = keys[x]
        nb = math.ceil(len(k) / block_size)
        ranges = [(k[b * block_size], k[min((b + 1) * block_size, len(k)) - 1]) for b in range(nb)]
        plan[x] = {"n": len(k), "blocks": nb, "dir": os.path.join("blocks", _stem(x))}
        for bi in range(nb):
            for bj in range(bi, nb):
                rows = (min(block_size, len(k) - bi * block_size)
                        + (min(block_size, len(k) - bj * block_size) if bi != bj else 0))
                work.append((rows, x, bi, bj, ranges[bi], ranges[bj]))
    # off-diagonal blocks (2B rows to read) first, the diagonal ones (B rows)
    # last, so the workers end close together (stable: layers keep their order)
    work.sort(key=lambda w: -w[0])
    refs = [bt.remote(ext, files, x, method, bi, bj, ri, rj, centers[x],
                      _block_path(out, x, bi, bj), _crash_marker)
            for _, x, bi, bj, ri, rj in work]
    res = R.wait_all(ray, refs, progress, "matrices blocks")
    tasks += res
    for r in res:
        want = min(block_size, plan[r["layer"]]["n"] - r["bi"] * block_size)
        if r["rows"] != want:
            raise RuntimeError(f"layer {r['layer']} block {r['bi']},{r['bj']} has {r['rows']} "
                               f"rows, expected {want}")
    index = {"method": method.strip().lower(), "block_size": block_size, "layers": plan}
    R.atomic_write(lambda tmp: open(tmp, "w").write(json.dumps(index, indent=1)), index_path)

    if assemble:
        at = R.remote(ray, _assemble_task, runtime_env)
        tasks += R.wait_all(ray, [at.remote(ext, out, x, plan[x]["n"], plan[x]["blocks"],
                                            index["method"], os.path.join(out, layer_file(x)),
                                            _crash_marker) for x in layers],
                            progress, "matrices assemble")
    return {"layers": list(layers), "n": {x: plan[x]["n"] for x in layers},
            "block_size": block_size, "blocks": len(refs),
            "seconds": time.perf_counter() - t0,
            "nodes": sorted({r["node"] for r in tasks}), "tasks": tasks}


# --------------------------------------------------------------------------- similarity


def _sim_task(driver_ext, files, diag):
    """Sums of one block coordinate over every layer's block there.

    Returns the L x L inner products of the blocks as they count in the full
    matrices (an off-diagonal block twice: it stands for its mirror too),
    and, over the strict upper triangle, the L x L inner products, the
    per-layer sums and the number of entries.
    """
    import numpy as np

    con = R.connect_worker(driver_ext)
    mats = [_read_block(con, f)[2] for f in files]
    con.close()
    r, c = mats[0].shape
    L = len(mats)
    full = np.zeros((L, L))
    up = np.zeros((L, L))
    s_up = np.zeros(L)
    rows_per = max(1, (1 << 22) // max(c, 1))  # ~4M entries of L layers at a time
    for start in range(0, r, rows_per):
        stop = min(r, start + rows_per)
        v = np.stack([m[start:stop].astype(np.float64).reshape(-1) for m in mats])
        full += v @ v.T
        if diag:
            # strict upper triangle: column index above the row index
            upper = np.arange(c)[None, :] > np.arange(start, stop)[:, None]
            u = v[:, upper.reshape(-1)]
        else:
            u = v
        up += u @ u.T
        s_up += u.sum(axis=1)
    if not diag:
        full *= 2
    count = r * (r - 1) // 2 if diag else r * c
    return {"full": full, "up": up, "s_up": s_up, "count": count, "node": R.node_id(),
            "pid": os.getpid(), "label": os.path.basename(files[0])}


def _read_index(where):
    path = os.path.join(where, INDEX)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _row_sums(con, where, layer, info, block_size):
    import numpy as np

    n = info["n"]
    r = np.zeros(n)
    files = os.path.join(where, info["dir"], "block-*.parquet")
    for bi, bj, rs, cs in con.execute(
            f"SELECT bi, bj, row_sums, col_sums FROM read_parquet({R.q(files)})").fetchall():
        r[bi * block_size:bi * block_size + len(rs)] += rs
        if bi != bj:
            r[bj * block_size:bj * block_size + len(cs)] += cs
    return r


def _keys_of(con, where, info):
    files = os.path.join(where, info["dir"], "block-*.parquet")
    rows = con.execute(f"SELECT row_keys FROM read_parquet({R.q(files)}) WHERE bi = bj "
                       "ORDER BY bi").fetchall()
    return [k for (ks,) in rows for k in ks]


def similarity(matrices, *, method="pearson", layers=None, address=None, runtime_env=None,
               progress=None, con=None):
    """The L x L similarity of a matrices() dataset, equal to layer_similarity.

    `pearson` and `cka` are reduced over the blocks (one Ray task per block
    coordinate, reading that block of every layer; the driver merges the
    sums), so no N x N matrix sits in one process. Other methods, or a
    folder without _blocks.json, run layer_similarity on the assembled
    layer-*.parquet matrices in the driver's connection.
    layers: the order (and subset) of the layers; default all, sorted by name.
    Returns (layer names, L x L numpy array).
    """
    import numpy as np

    where = str(matrices)
    index = _read_index(where) if os.path.isdir(where) else None
    m = method.strip().lower() if isinstance(method, str) else method
    if index is None or m not in BLOCK_METHODS:
        return _similarity_sql(where, method, layers, con)

    present = sorted(index["layers"])
    order = R.choose_layers(present, layers, matrices)
    if len(order) < 2:
        raise ValueError(f"similarity needs at least 2 layers, got {len(order)}")
    ext = layercorr.extension_path()
    bs = index["block_size"]
    own = layercorr.connect(extension=ext)
    try:
        keys = {x: _keys_of(own, where, index["layers"][x]) for x in order}
        for x in order[1:]:
            if keys[x] != keys[order[0]]:
                raise ValueError(f"layers {order[0]} and {x} are on different keys "
                                 f"({len(keys[order[0]])} and {len(keys[x])} keys); "
                                 "matrices must be on the same keys")
        info = index["layers"][order[0]]
        n, nb = info["n"], info["blocks"]
        rows = np.stack([_row_sums(own, where, x, index["layers"][x], bs) for x in order])
    finally:
        own.close()

    ray = R.init(address)
    st = R.remote(ray, _sim_task, runtime_env)
    refs = []
    for bi in range(nb):
        for bj in range(bi, nb):
            files = [_block_path(os.path.abspath(where), x, bi, bj) for x in order]
            refs.append(st.remote(ext, files, bi == bj))
    res = R.wait_all(ray, refs, progress, "similarity blocks")
    if m == "pearson":
        g = sum(r["up"] for r in res)
        s = sum(r["s_up"] for r in res)
        p = sum(r["count"] for r in res)
        cov = g - np.outer(s, s) / p
    else:
        g = sum(r["full"] for r in res)
        rm = rows / n  # row means
        gm = rows.sum(axis=1) / (n * n)  # grand means
        cov = g - 2 * n * (rm @ rm.T) + n * n * np.outer(gm, gm)
    d = np.sqrt(np.diag(cov))
    if np.any(d <= 0):
        bad = order[int(np.argmin(d))]
        raise ValueError(f"{m}: the matrix of layer {bad} is constant")
    sim = cov / np.outer(d, d)
    np.fill_diagonal(sim, 1.0)
    return list(order), sim


def _similarity_sql(where, method, layers, con):
    """layer_similarity over the assembled layer-*.parquet files, in the driver."""
    import numpy as np

    files = R.dataset_files(where, "layer")
    own = con is None
    if own:
        con = layercorr.connect()
    try:
        con.execute("SET VARIABLE lc_files = ?::VARCHAR[]", [files])
        src = "read_parquet(getvariable('lc_files'), union_by_name := true)"
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        present = [r[0] for r in con.execute(f"SELECT layer FROM {src} ORDER BY layer").fetchall()]
        order = R.choose_layers(present, layers, where)
        mat = ("{'keys': keys, 'matrix': matrix, 'method': method}" if "method" in cols
               else "{'keys': keys, 'matrix': matrix}")
        row = con.execute(
            f"SELECT layer_similarity(layer, {mat}, ? "
            "ORDER BY list_position(?::VARCHAR[], layer)) AS s "
            f"FROM {src} WHERE list_contains(?::VARCHAR[], layer)",
            [method, order, order]).fetchone()[0]
    finally:
        if own:
            con.close()
    return list(row["layers"]), np.array(row["matrix"], dtype=np.float64)
