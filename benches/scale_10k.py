"""Scale run: 10,000 images x 12 layers into a persistent database, then
every per-layer matrix, with peak memory reported.

The 100 demo photos are repeated with small deterministic perturbations
(mirror, crop, brightness/colour shifts, rotation) into `data/scale/`, so
that every image is a distinct file. The run happens in the DuckDB shell
(duckdb-cli) as a user would type it, with DuckDB's progress bar on; peak
RSS is read from the finished process (`/usr/bin/time`-style, via
`resource.getrusage(RUSAGE_CHILDREN)`). Finally the activations of the
first 500 images are compared with a direct 500-image run: they must be
identical.

    .venv/bin/python benches/scale_10k.py [--images 10000] [--pool avg4x4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / ".venv/bin/duckdb"
EXT = ROOT / "build/release/layercorr.duckdb_extension"
MODEL = ROOT / "data/models/efficientnet_lite0.onnx"
PHOTOS = sorted((ROOT / "data/photos/classification").glob("*.jpg"))
LAYERS = ["input", "stem", "blocks.1", "blocks.3", "blocks.5", "blocks.7", "blocks.9",
          "blocks.11", "blocks.13", "blocks.15", "head", "logits"]


def perturb(img: Image.Image, k: int) -> Image.Image:
    """Variant k of a photo: deterministic and small."""
    rng = np.random.default_rng(k)
    if k % 2:
        img = ImageOps.mirror(img)
    w, h = img.size
    m = int(rng.integers(0, 40))
    img = img.crop((m, m // 2, w - m // 2, h - m))
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.85, 1.15)))
    img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.8, 1.2)))
    if k % 5 == 4:
        img = img.rotate(float(rng.uniform(-8, 8)))
    return img


def make_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        photo = PHOTOS[i % len(PHOTOS)]
        path = folder / f"{i:05d}_{photo.stem}.jpg"
        if not path.exists():
            with Image.open(photo) as src:
                perturb(src.convert("RGB"), i // len(PHOTOS)).save(path, quality=90)
        paths.append(path)
    return paths


def run_cli(db: Path, sql: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([str(CLI), "-unsigned", "-bail", str(db)], input=sql, text=True,
                          capture_output=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"duckdb failed: {proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--pool", default="avg4x4")
    parser.add_argument("--subset", type=int, default=500)
    parser.add_argument("--memory-limit", default="7GB",
                        help="DuckDB memory_limit for the matrices step (default 7GB)")
    parser.add_argument("--matrices-only", action="store_true",
                        help="reuse out/bench/scale.duckdb from an earlier run; compute only the matrices")
    parser.add_argument("--group-by", action="store_true",
                        help="all matrices in one GROUP BY layer statement instead of one statement per layer")
    args = parser.parse_args()

    t0 = time.perf_counter()
    paths = make_images(ROOT / "data/scale", args.images)
    print(f"{len(paths)} images ready in {time.perf_counter() - t0:.0f} s", flush=True)
    out = ROOT / "out/bench"
    out.mkdir(parents=True, exist_ok=True)
    db = out / "scale.duckdb"
    if not args.matrices_only:
        db.unlink(missing_ok=True)
    layers = ", ".join(f"'{layer}'" for layer in LAYERS)
    glob = ROOT / "data/scale/*.jpg"

    activations_sql = f"""
        LOAD '{EXT}';
        SET enable_progress_bar = true;
        CREATE TABLE images AS SELECT file AS path FROM glob('{glob}') ORDER BY file LIMIT {args.images};
        CREATE TABLE activations AS
        SELECT path, unnest(nn_activations('{MODEL}', path, [{layers}], false, '{args.pool}'), recursive := true)
        FROM images;
        SELECT count(*) AS rows, count(DISTINCT path) AS images FROM activations;
    """
    if args.matrices_only:
        seconds_acts, rss_acts = None, None
        run_cli(db, "DROP TABLE IF EXISTS matrices;")
    else:
        seconds_acts, stdout = run_cli(db, activations_sql)
        rss_acts = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(stdout)
        print(f"activations: {seconds_acts:.0f} s ({args.images / seconds_acts:.1f} images/s), peak RSS {rss_acts / 2**30:.2f} GiB", flush=True)

    # One statement per layer: each 10,000 x 10,000 result (400 MB) is
    # written to the table before the next is computed. A single
    # `GROUP BY layer` over all 12 layers makes DuckDB hold all 12 results
    # (4.8 GB) in one output chunk and then copy them into storage, which
    # peaked at about 20 GiB here (`--group-by` measures that form).
    # DuckDB's buffer pool keeps written blocks cached up to its
    # memory_limit (80% of RAM by default); 7 GB bounds that cache (4 and 6 GB
    # were too little for DuckDB's own checkpoint of the 400 MB matrices, and
    # 8 GB peaked at 11.9-12.2 GiB in all). The
    # aggregate's own memory (a group's rows up to 256 MB, spilled to a
    # temporary file past that, plus about 8 N² bytes while one matrix is
    # computed) is outside DuckDB's accounting.
    if args.group_by:
        matrices_sql = f"""
            LOAD '{EXT}';
            SET memory_limit = '{args.memory_limit}';
            CREATE TABLE matrices AS SELECT layer, layer_corr(path, activation) AS m FROM activations GROUP BY layer;
        """
    else:
        matrices_sql = f"""
            LOAD '{EXT}';
            SET memory_limit = '{args.memory_limit}';
            CREATE TABLE matrices (layer VARCHAR, m STRUCT(keys VARCHAR[], matrix FLOAT[][]));
        """ + "".join(
            f"INSERT INTO matrices SELECT layer, layer_corr(path, activation) FROM activations "
            f"WHERE layer = '{layer}' GROUP BY layer;\n" for layer in LAYERS)
    matrices_sql += "SELECT layer, len(m.keys) AS n FROM matrices ORDER BY layer;\n"
    seconds_m, stdout = run_cli(db, matrices_sql)
    rss_all = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(stdout)
    print(f"matrices: {seconds_m:.0f} s, peak RSS of any run so far {rss_all / 2**30:.2f} GiB", flush=True)

    # The first `subset` images again, directly, in a fresh database.
    sub_db = out / "scale_subset.duckdb"
    sub_db.unlink(missing_ok=True)
    subset_sql = f"""
        LOAD '{EXT}';
        CREATE TABLE images AS SELECT file AS path FROM glob('{glob}') ORDER BY file LIMIT {args.subset};
        CREATE TABLE activations AS
        SELECT path, unnest(nn_activations('{MODEL}', path, [{layers}], false, '{args.pool}'), recursive := true)
        FROM images;
        ATTACH '{db}' AS big (READ_ONLY);
        SELECT count(*) AS compared, count(*) FILTER (a.activation <> b.activation) AS different
        FROM activations a JOIN big.activations b USING (path, layer);
    """
    _, stdout = run_cli(sub_db, subset_sql)
    print(stdout)
    result = {"images": args.images, "pool": args.pool, "activation_seconds": seconds_acts,
              "matrix_seconds": seconds_m, "matrices_in_one_group_by": args.group_by, "memory_limit": args.memory_limit,
              "matrices_only": args.matrices_only, "peak_rss_bytes": rss_all, "subset_check": stdout.strip()}
    (out / "scale_10k.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
