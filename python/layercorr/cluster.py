"""Extraction and per-layer matrices as Ray tasks, each a DuckDB connection with the extension.

    from layercorr import cluster
    cluster.extract(model, "images.parquet", ["stem", "head"], "out/acts", address="auto")
    cluster.matrices("out/acts", "out/mats", method="pearson")
    layers, sim = cluster.similarity("out/mats", layers=["stem", "head"])

Every task opens its own connection through `layercorr.connect`, runs the
project's SQL (`nn_activations`, `layer_corr`) on its shard and writes one
Parquet file atomically (a temporary name in the same folder, then
`os.replace`). The model, the images, the extension and the output folder are
reached by the same absolute path on every node (a shared file system, or a
single machine). Matrices are split by layer: one task per layer, each
holding that layer's N x N matrix (not yet blocks of images).
"""
from __future__ import annotations

import glob as _glob
import os
import re
import time
import uuid
from pathlib import Path

import layercorr

__all__ = ["extract", "matrices", "similarity"]

MANIFEST = "_manifest.parquet"
DEFAULT_SHARD_SIZE = 256


def _q(s) -> str:
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def _is_url(p: str) -> bool:
    return "://" in p


def _abs(p: str) -> str:
    return p if _is_url(p) else os.path.abspath(p)


TMP_PREFIX = ".tmp-"


def _crash_once(marker) -> None:
    """Fault injection, FOR TESTS ONLY: the first task to get here kills its own worker.

    `marker` is a file path (the private `_crash_marker=` argument of extract
    and matrices) or None (always, outside the fault tests). The first task
    that creates the marker (O_EXCL, so exactly one wins across processes and
    nodes sharing the folder) ends its worker process with os._exit(1), as a
    crash or an OOM kill would, after writing its temporary file and before
    renaming it into place. Ray sees the worker die and retries the task
    (max_retries); the retry finds the marker and runs normally.
    """
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os._exit(1)


def _atomic_copy(con, query: str, dest: str, params=None, crash_marker=None) -> None:
    """COPY (query) to a temporary file next to dest, then os.replace it into place.

    The temporary name starts with a dot and does not match shard-*/layer-*,
    so a file left by a killed worker is never read as a finished one.
    """
    folder = os.path.dirname(dest)
    tmp = os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(dest)}")
    try:
        con.execute(f"COPY ({query}) TO {_q(tmp)} (FORMAT parquet)", params)
        _crash_once(crash_marker)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _task_threads() -> int:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(round(cpus)))


def _init(address):
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    return ray


def _wait_all(ray, refs, progress, what):
    """ray.get every ref, calling progress once per finished task (in finishing order)."""
    results = []
    pending = list(refs)
    total = len(pending)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        r = ray.get(done[0])
        results.append(r)
        if progress:
            progress(f"{what} {len(results)}/{total} {r.get('label', '')}".rstrip())
    return results


def _dataset_files(where: str, prefix: str) -> list[str]:
    """A folder (its prefix-*.parquet files), a glob, or one file."""
    if os.path.isdir(where):
        files = sorted(_glob.glob(os.path.join(where, f"{prefix}-*.parquet")))
        if not files:
            raise FileNotFoundError(f"no {prefix}-*.parquet files in {where}")
        return [os.path.abspath(f) for f in files]
    files = sorted(_glob.glob(where))
    if not files:
        raise FileNotFoundError(f"no files match {where}")
    return [os.path.abspath(f) for f in files]


# --------------------------------------------------------------------------- extract


def _read_manifest(con, images) -> tuple[list[str], bool]:
    """Loads the images into the temp table `manifest` (path absolute + carried columns).

    Returns (paths in order, whether there are carried columns).
    """
    if isinstance(images, (list, tuple)):
        paths = [str(p) for p in images]
        con.execute("CREATE OR REPLACE TEMP TABLE src AS SELECT unnest(?::VARCHAR[]) AS path",
                    [paths])
        carried = False
    else:
        images = str(images)
        low = images.lower()
        if low.endswith((".parquet", ".csv", ".tsv", ".csv.gz")) and not _glob.has_magic(images):
            if not os.path.exists(images) and not _is_url(images):
                raise FileNotFoundError(f"image manifest not found: {images}")
            reader = "read_parquet" if low.endswith(".parquet") else "read_csv"
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE src AS FROM {reader}({_q(images)})")
            except Exception as e:
                raise ValueError(f"cannot read the image manifest {images}: {e}") from e
            cols = [r[0] for r in con.execute("DESCRIBE src").fetchall()]
            if "path" not in cols:
                raise ValueError(
                    f"the image manifest {images} has no `path` column (columns: {', '.join(cols)})")
            nulls = con.execute("SELECT count(*) FROM src WHERE path IS NULL").fetchone()[0]
            if nulls:
                raise ValueError(f"the image manifest {images} has {nulls} NULL paths")
            con.execute("CREATE OR REPLACE TEMP TABLE src AS "
                        "SELECT * REPLACE (CAST(path AS VARCHAR) AS path) FROM src")
            carried = len(cols) > 1
        else:
            paths = sorted(_glob.glob(images))
            if not paths:
                raise FileNotFoundError(f"no images match {images}")
            con.execute("CREATE OR REPLACE TEMP TABLE src AS SELECT unnest(?::VARCHAR[]) AS path",
                        [paths])
            carried = False
    orig = [r[0] for r in con.execute("SELECT path FROM src").fetchall()]
    if not orig:
        raise ValueError(f"no images in {images!r}")
    dup = con.execute("SELECT path FROM src GROUP BY path HAVING count(*) > 1 LIMIT 1").fetchone()
    if dup:
        raise ValueError(f"image {dup[0]} is listed more than once")
    absolute = [_abs(p) for p in orig]
    con.execute("CREATE OR REPLACE TEMP TABLE pathmap AS "
                "SELECT unnest(?::VARCHAR[]) AS orig, unnest(?::VARCHAR[]) AS abs", [orig, absolute])
    con.execute("CREATE OR REPLACE TEMP TABLE manifest AS "
                "SELECT m.abs AS path, s.* EXCLUDE (path) FROM src s JOIN pathmap m ON s.path = m.orig")
    return absolute, carried


def _extract_shard(ext, model, paths, layers, pool, skip_bad, manifest, dest, shard,
                   crash_marker=None):
    con = layercorr.connect(extension=ext, threads=_task_threads())
    con.execute("SET VARIABLE paths = ?::VARCHAR[]", [paths])
    acts = (f"FROM nn_activations({_q(model)}, getvariable('paths'), layers := ?::VARCHAR[], "
            f"skip_bad_images := {'true' if skip_bad else 'false'}, pool := {_q(pool)})")
    if manifest:
        query = (f"SELECT a.path, a.layer, a.activation, m.* EXCLUDE (path) FROM ({acts}) a "
                 f"LEFT JOIN read_parquet({_q(manifest)}) m ON a.path = m.path")
    else:
        query = f"SELECT path, layer, activation {acts}"
    _atomic_copy(con, query, dest, [layers], crash_marker)
    rows, bad = con.execute(
        "SELECT count(*), count(DISTINCT path) FILTER (WHERE activation IS NULL) "
        f"FROM read_parquet({_q(dest)})").fetchone()
    con.close()
    return {"shard": shard, "file": dest, "images": len(paths), "rows": rows, "bad": bad,
            "node": _node_id(), "pid": os.getpid(), "label": os.path.basename(dest)}


def extract(model, images, layers, out, *, pool="none", address=None,
            shard_size=DEFAULT_SHARD_SIZE, skip_bad_images=False, progress=None,
            _crash_marker=None):
    """Activations of `layers` for every image, one Parquet file per shard under `out`.

    images: a Parquet or CSV file with a `path` column (other columns are
    carried into every row), a glob pattern, or a list of paths. Paths are
    made absolute. Writes out/shard-00000.parquet ... with columns
    `path, layer, activation` plus the carried ones; a shard whose file
    already exists is skipped (resume: re-run with the same arguments).
    `progress(message)` is called after every finished task. Temporary
    files (.tmp-*) left in `out` by a killed run are removed first: one
    driver per output folder. `_crash_marker` is fault injection for the
    tests only (see _crash_once).
    Returns {shards, shards_run, shards_skipped, images, rows, bad_images,
    seconds, nodes, tasks}.
    """
    t0 = time.perf_counter()
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if isinstance(layers, str):
        layers = [layers]
    layers = [str(x) for x in layers]
    model = _abs(str(model))
    ext = layercorr.extension_path()
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    for stale in _glob.glob(os.path.join(out, TMP_PREFIX + "*")):
        os.remove(stale)  # half-written by a killed worker or driver: never complete

    con = layercorr.connect(extension=ext)
    # model and layers checked on the driver: the extension's own named errors
    con.execute(f"FROM nn_activations({_q(model)}, []::VARCHAR[], layers := ?::VARCHAR[], "
                f"pool := {_q(pool)})", [layers]).fetchall()
    paths, carried = _read_manifest(con, images)
    manifest = None
    if carried:
        manifest = os.path.join(out, MANIFEST)
        _atomic_copy(con, "FROM manifest", manifest)
    con.close()

    ray = _init(address)
    task = ray.remote(max_retries=3, scheduling_strategy="SPREAD")(_extract_shard)
    shards = [paths[i:i + shard_size] for i in range(0, len(paths), shard_size)]
    refs, existing = [], []
    for i, sp in enumerate(shards):
        dest = os.path.join(out, f"shard-{i:05d}.parquet")
        if os.path.exists(dest):
            existing.append(dest)
            continue
        refs.append(task.remote(ext, model, sp, layers, pool, skip_bad_images, manifest, dest, i,
                                _crash_marker))
    results = _wait_all(ray, refs, progress, "extract")
    rows = sum(r["rows"] for r in results)
    bad = sum(r["bad"] for r in results)
    if existing:
        con = layercorr.connect(extension=ext)
        con.execute("SET VARIABLE files = ?::VARCHAR[]", [existing])
        r, b = con.execute("SELECT count(*), count(DISTINCT path) FILTER (WHERE activation IS NULL) "
                           "FROM read_parquet(getvariable('files'))").fetchone()
        con.close()
        rows += r
        bad += b
    return {"shards": len(shards), "shards_run": len(results), "shards_skipped": len(existing),
            "images": len(paths), "rows": rows, "bad_images": bad,
            "seconds": time.perf_counter() - t0,
            "nodes": sorted({r["node"] for r in results}),
            "tasks": sorted(results, key=lambda r: r["shard"])}


# --------------------------------------------------------------------------- matrices


def _layer_file(layer: str) -> str:
    return "layer-" + re.sub(r"[^A-Za-z0-9._-]", "_", layer) + ".parquet"


def _layer_matrix(ext, files, layer, method, dest, crash_marker=None):
    con = layercorr.connect(extension=ext, threads=_task_threads())
    con.execute("SET VARIABLE files = ?::VARCHAR[]", [files])
    query = ("SELECT layer, m.keys AS keys, m.matrix AS matrix FROM ("
             "SELECT layer, layer_corr(path, activation, ?) AS m "
             "FROM read_parquet(getvariable('files'), union_by_name := true) "
             "WHERE layer = ? GROUP BY layer)")
    _atomic_copy(con, query, dest, [method, layer], crash_marker)
    n = con.execute(f"SELECT len(keys) FROM read_parquet({_q(dest)})").fetchone()
    con.close()
    if n is None:
        raise ValueError(f"layer {layer} has no activations")
    return {"layer": layer, "file": dest, "n": n[0], "node": _node_id(), "pid": os.getpid(),
            "label": layer}


def matrices(activations, out, *, method="pearson", layers=None, address=None, progress=None,
             _crash_marker=None):
    """Per-layer N x N matrices (layer_corr) of an extract() dataset: one Ray task per layer.

    activations: extract()'s folder (its shard-*.parquet files), a glob or a
    file. Writes out/layer-<name>.parquet with columns `layer, keys, matrix`
    (keys sorted), as layer_corr's result. Every layer is recomputed (no
    resume); `_crash_marker` is fault injection for the tests only.
    Returns {layers, seconds, nodes, tasks}.
    """
    t0 = time.perf_counter()
    files = _dataset_files(str(activations), "shard")
    ext = layercorr.extension_path()
    con = layercorr.connect(extension=ext)
    con.execute("SET VARIABLE files = ?::VARCHAR[]", [files])
    present = [r[0] for r in con.execute(
        "SELECT DISTINCT layer FROM read_parquet(getvariable('files'), union_by_name := true) "
        "ORDER BY layer").fetchall()]
    con.close()
    if layers is None:
        layers = present
    else:
        layers = [layers] if isinstance(layers, str) else list(layers)
        missing = [x for x in layers if x not in present]
        if missing:
            raise ValueError(f"layer {missing[0]} is not in {activations} "
                             f"(layers there: {', '.join(present)})")
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    names = {}
    for x in layers:
        f = _layer_file(x)
        if f in names:
            raise ValueError(f"layers {names[f]} and {x} map to the same file name {f}")
        names[f] = x

    ray = _init(address)
    task = ray.remote(max_retries=3, scheduling_strategy="SPREAD")(_layer_matrix)
    refs = [task.remote(ext, files, x, method, os.path.join(out, _layer_file(x)), _crash_marker)
            for x in layers]
    results = _wait_all(ray, refs, progress, "matrices")
    return {"layers": list(layers), "seconds": time.perf_counter() - t0,
            "nodes": sorted({r["node"] for r in results}),
            "tasks": sorted(results, key=lambda r: layers.index(r["layer"]))}


def similarity(matrices, *, method="pearson", layers=None, con=None):
    """layer_similarity over a matrices() dataset, in the driver's connection.

    layers: the order (and subset) of the layers; default all, sorted by name.
    Returns (layer names, L x L numpy array).
    """
    import numpy as np

    files = _dataset_files(str(matrices), "layer")
    own = con is None
    if own:
        con = layercorr.connect()
    try:
        con.execute("SET VARIABLE lc_files = ?::VARCHAR[]", [files])
        src = "read_parquet(getvariable('lc_files'))"
        present = [r[0] for r in con.execute(f"SELECT layer FROM {src} ORDER BY layer").fetchall()]
        order = present if layers is None else ([layers] if isinstance(layers, str) else list(layers))
        missing = [x for x in order if x not in present]
        if missing:
            raise ValueError(f"layer {missing[0]} is not in {matrices} "
                             f"(layers there: {', '.join(present)})")
        row = con.execute(
            "SELECT layer_similarity(layer, {'keys': keys, 'matrix': matrix}, ? "
            "ORDER BY list_position(?::VARCHAR[], layer)) AS s "
            f"FROM {src} WHERE list_contains(?::VARCHAR[], layer)",
            [method, order, order]).fetchone()[0]
    finally:
        if own:
            con.close()
    return list(row["layers"]), np.array(row["matrix"], dtype=np.float64)


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    import argparse
    import json

    # run through the imported module, so Ray ships functions by reference
    from layercorr import cluster as mod

    p = argparse.ArgumentParser(prog="python -m layercorr.cluster",
                                description="layercorr on a Ray cluster")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="activations, one Parquet file per shard")
    e.add_argument("model")
    e.add_argument("images", help="Parquet/CSV file with a path column, or a glob")
    e.add_argument("out")
    e.add_argument("--layers", required=True, help="comma-separated layer names or patterns")
    e.add_argument("--pool", default="none")
    e.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)
    e.add_argument("--skip-bad-images", action="store_true")
    m = sub.add_parser("matrices", help="per-layer N x N matrices, one task per layer")
    m.add_argument("activations")
    m.add_argument("out")
    m.add_argument("--method", default="pearson")
    m.add_argument("--layers", help="comma-separated layers (default: all)")
    s = sub.add_parser("similarity", help="the L x L matrix (runs on the driver)")
    s.add_argument("matrices")
    s.add_argument("--method", default="pearson")
    s.add_argument("--layers", help="comma-separated layers, in this order (default: sorted)")
    for sp in (e, m):
        sp.add_argument("--address", default=None,
                        help="Ray cluster to join (host:port or 'auto'); default: a local Ray")
    a = p.parse_args(argv)

    def say(msg):
        print(msg, flush=True)

    split = (lambda v: [x for x in v.split(",") if x] if v else None)
    if a.cmd == "extract":
        r = mod.extract(a.model, a.images, split(a.layers), a.out, pool=a.pool, address=a.address,
                        shard_size=a.shard_size, skip_bad_images=a.skip_bad_images, progress=say)
        r.pop("tasks")
    elif a.cmd == "matrices":
        r = mod.matrices(a.activations, a.out, method=a.method, layers=split(a.layers),
                         address=a.address, progress=say)
        r.pop("tasks")
    else:
        layers, sim = mod.similarity(a.matrices, method=a.method, layers=split(a.layers))
        r = {"layers": layers, "matrix": sim.tolist()}
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
