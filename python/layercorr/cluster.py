"""layercorr on a Ray cluster: extraction, per-layer matrices in blocks, similarity.

    from layercorr import cluster
    cluster.extract(model, "images.parquet", ["stem", "head"], "out/acts", address="auto")
    cluster.matrices("out/acts", "out/mats", method="pearson")
    layers, sim = cluster.similarity("out/mats", layers=["stem", "head"])
    layers, cka = cluster.feature_cka("out/acts")   # when N x N does not fit

Every task opens its own connection through `layercorr.connect`, runs the
project's SQL (`nn_activations`, `layer_corr_block`, `activation_sum`,
`layer_cross`) on its shard or block and writes one Parquet file atomically
(a temporary name in the same folder, then `os.replace`). The model, the
images and the output folder are reached by the same absolute path on every
node (a shared file system, or a single machine). The extension too, or a
worker finds it through $LAYERCORR_EXTENSION, which Ray's `runtime_env`
(`runtime_env={"env_vars": {"LAYERCORR_EXTENSION": path}}`) sets for every
task of a call. Matrices are computed as blocks of keys (layercorr.blocks),
feature-space CKA as sums over shards (layercorr.feature).
"""
from __future__ import annotations

import glob as _glob
import os
import time

import layercorr

from . import _ray as R
from ._ray import TMP_PREFIX, crash_once as _crash_once  # noqa: F401 - the tests' fault hook
from .blocks import matrices, similarity
from .feature import feature_cka

__all__ = ["extract", "matrices", "similarity", "feature_cka"]

MANIFEST = "_manifest.parquet"
DEFAULT_SHARD_SIZE = 256
ROW_GROUP_BYTES = 2 << 20  # shard files: small enough to skip, large enough to compress
_q, _abs, _is_url = R.q, R.absolute, R.is_url


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
    t0 = time.perf_counter()
    con = R.connect_worker(ext)
    con.execute("SET VARIABLE paths = ?::VARCHAR[]", [paths])
    acts = (f"FROM nn_activations({_q(model)}, getvariable('paths'), layers := ?::VARCHAR[], "
            f"skip_bad_images := {'true' if skip_bad else 'false'}, pool := {_q(pool)})")
    if manifest:
        query = (f"SELECT a.path, a.layer, a.activation, m.* EXCLUDE (path) FROM ({acts}) a "
                 f"LEFT JOIN read_parquet({_q(manifest)}) m ON a.path = m.path")
    else:
        query = f"SELECT path, layer, activation {acts}"
    counts = {}

    def write(tmp):
        # rows ordered by (layer, path) in row groups of about ROW_GROUP_BYTES: a
        # block task's `layer = ? AND path BETWEEN ...` then skips, by the row
        # groups' min/max statistics, the other layers and keys of the shard
        con.execute(f"COPY (SELECT * FROM ({query}) ORDER BY layer, path) TO {_q(tmp)} "
                    f"(FORMAT parquet, ROW_GROUP_SIZE_BYTES {ROW_GROUP_BYTES})", [layers])
        if R.no_null_activations(con, [tmp]):  # the footer says: no failed image
            rows = con.execute(f"SELECT num_rows FROM parquet_file_metadata({_q(tmp)})").fetchone()[0]
            bad = 0
        else:
            rows, bad = con.execute(
                "SELECT count(*), count(DISTINCT path) FILTER (WHERE activation IS NULL) "
                f"FROM read_parquet({_q(tmp)})").fetchone()
        if bad == len(paths):
            raise ValueError(
                f"every image of shard {shard} failed ({len(paths)} images, the first "
                f"{paths[0]}); check the paths and the files (shard not written)")
        counts.update(rows=rows, bad=bad)

    R.atomic_write(write, dest, crash_marker)
    con.close()
    return {"shard": shard, "file": dest, "images": len(paths), "rows": counts["rows"],
            "bad": counts["bad"], "node": R.node_id(), "pid": os.getpid(),
            "label": os.path.basename(dest), "seconds": time.perf_counter() - t0}


def extract(model, images, layers, out, *, pool="none", address=None,
            shard_size=DEFAULT_SHARD_SIZE, skip_bad_images=False, runtime_env=None,
            progress=None, _crash_marker=None):
    """Activations of `layers` for every image, one Parquet file per shard under `out`.

    images: a Parquet or CSV file with a `path` column (other columns are
    carried into every row), a glob pattern, or a list of paths. Paths are
    made absolute. Writes out/shard-00000.parquet ... with columns
    `path, layer, activation` plus the carried ones; a shard whose file
    already exists is skipped (resume: re-run with the same arguments).
    A shard whose images all fail (skip_bad_images=True) is an error and
    is not written; without skip_bad_images the first bad image is. The
    error is raised on the driver. runtime_env: Ray's runtime_env for every
    task (e.g. {'env_vars': {'LAYERCORR_EXTENSION': path}}).
    `progress`: a callable(message) called after every finished task, True
    (a bar on stderr) or None. Temporary
    files (.tmp-*) left in `out` by a killed run are removed first: one
    driver per output folder. `_crash_marker` is fault injection for the
    tests only (see _crash_once).
    Returns {shards, shards_run, shards_skipped, images, rows, bad_images,
    seconds, nodes, tasks}.
    """
    t0 = time.perf_counter()
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if isinstance(layers, str):
        layers = [layers]
    layers = [str(x) for x in layers]
    model = _abs(str(model))
    ext = layercorr.extension_path()
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    R.remove_stale(out)  # half-written by a killed worker or driver: never complete

    con = layercorr.connect(extension=ext)
    # model and layers checked on the driver: the extension's own named errors
    con.execute(f"FROM nn_activations({_q(model)}, []::VARCHAR[], layers := ?::VARCHAR[], "
                f"pool := {_q(pool)})", [layers]).fetchall()
    paths, carried = _read_manifest(con, images)
    manifest = None
    if carried:
        manifest = os.path.join(out, MANIFEST)
        R.atomic_copy(con, "FROM manifest", manifest)
    con.close()

    ray = R.init(address)
    task = R.remote(ray, _extract_shard, runtime_env)
    shards = [paths[i:i + shard_size] for i in range(0, len(paths), shard_size)]
    refs, existing = [], []
    for i, sp in enumerate(shards):
        dest = os.path.join(out, f"shard-{i:05d}.parquet")
        if os.path.exists(dest):
            existing.append(dest)
            continue
        refs.append(task.remote(ext, model, sp, layers, pool, skip_bad_images, manifest, dest, i,
                                _crash_marker))
    results = R.wait_all(ray, refs, progress, "extract")
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
    m = sub.add_parser("matrices", help="per-layer N x N matrices, computed as blocks")
    m.add_argument("activations")
    m.add_argument("out")
    m.add_argument("--method", default="pearson")
    m.add_argument("--layers", help="comma-separated layers (default: all)")
    m.add_argument("--block-size", type=int, default=None,
                   help="keys per block (default: about 4 block tasks per CPU)")
    m.add_argument("--no-assemble", action="store_true",
                   help="keep only the blocks; no layer-*.parquet with the whole matrix")
    s = sub.add_parser("similarity", help="the L x L matrix (pearson, cka: reduced over blocks)")
    s.add_argument("matrices")
    s.add_argument("--method", default="pearson")
    s.add_argument("--layers", help="comma-separated layers, in this order (default: sorted)")
    f = sub.add_parser("feature-cka", help="exact linear CKA in feature space (no N x N matrix)")
    f.add_argument("activations")
    f.add_argument("--layers", help="comma-separated layers, in this order (default: sorted)")
    for sp in (e, m, s, f):
        sp.add_argument("--address", default=None,
                        help="Ray cluster to join (host:port or 'auto'); default: a local Ray")
        sp.add_argument("--runtime-env", default=None, type=json.loads,
                        help="Ray runtime_env as JSON, e.g. "
                             "'{\"env_vars\": {\"LAYERCORR_EXTENSION\": \"/x.duckdb_extension\"}}'")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)

    bar = None if a.quiet else True
    split = (lambda v: [x for x in v.split(",") if x] if v else None)
    if a.cmd == "extract":
        r = mod.extract(a.model, a.images, split(a.layers), a.out, pool=a.pool, address=a.address,
                        shard_size=a.shard_size, skip_bad_images=a.skip_bad_images,
                        runtime_env=a.runtime_env, progress=bar)
        r.pop("tasks")
    elif a.cmd == "matrices":
        r = mod.matrices(a.activations, a.out, method=a.method, layers=split(a.layers),
                         address=a.address, block_size=a.block_size,
                         assemble=not a.no_assemble, runtime_env=a.runtime_env, progress=bar)
        r.pop("tasks")
    elif a.cmd == "similarity":
        layers, sim = mod.similarity(a.matrices, method=a.method, layers=split(a.layers),
                                     address=a.address, runtime_env=a.runtime_env, progress=bar)
        r = {"layers": layers, "matrix": sim.tolist()}
    else:
        layers, sim = mod.feature_cka(a.activations, layers=split(a.layers), address=a.address,
                                      runtime_env=a.runtime_env, progress=bar)
        r = {"layers": layers, "cka": sim.tolist()}
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
