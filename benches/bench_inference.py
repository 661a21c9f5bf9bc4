#!/usr/bin/env python3
"""Inference throughput: layercorr's nn_activations in DuckDB vs onnxruntime.

Per image (the 100 photos of data/photos/classification, EfficientNet-Lite0,
224 px, 12 layers: input, stem, blocks.1/3/5/7/9/11/13/15, head, logits):

* SQL scalar -- `CREATE TABLE acts AS SELECT path, unnest(nn_activations(model,
                path, [12 layers]), recursive := true) FROM images`, DuckDB
                (Python client) with threads = all cores;
* SQL table  -- `CREATE TABLE acts AS FROM nn_activations(model, 'glob',
                layers := [...])`;
* the same two, not stored -- the scalar as `SELECT sum(len(a)) FROM (SELECT
                nn_activations(...) AS a FROM images)` (the function's
                call alone: no unnest, no table), the table form as
                `SELECT count(*), sum(len(activation)) FROM nn_activations(...)`;
                the difference to the stored forms is what DuckDB spends
                unnesting and storing, which for the scalar form follows the
                call on one thread (DuckDB calls a scalar function once per
                chunk of up to 2,048 rows), while the table form's storing
                overlaps the next images' forward passes;
* ORT        -- onnxruntime (Python), the same model with the 11 network
                tensors added as graph outputs (onnx), batch 1, sequential
                over the images, Pillow decode + bilinear resize of the
                shorter side + centre crop + (x - 127) / 128 included, all
                outputs kept in memory like the table keeps them;
                intra_op_num_threads = 1 and = 2;
* ORT 2 workers -- two Python threads, each with its own 1-thread session,
                each taking every other image;
* Pillow only -- the decode + preprocessing part of the ORT pipeline alone.

Each variant runs in its own child process: one untimed warm-up run (model
load, plan/session set-up, page cache), then the median of 3 timed runs.
"CPU" is (user + sys CPU time) / wall time of the child during the timed
runs, i.e. how many of the cores it kept busy.

End to end (issue 5; `--e2e` runs only this part, `--no-e2e` skips it;
about 60 s for one run of the three pipelines, `--e2e-runs` of them, 3 by
default, SQL and Python alternating, medians compared): 500 images = the 100 photos
x 5 deterministic Pillow variants (original, mirrored, cropped, brighter,
mirrored + cropped + darker) in a temporary directory; 12 layers; then one
N x N pearson matrix per layer and the 12 x 12 second-order matrix.
SQL stored: nn_activations (table form) into a table -> layer_corr(path,
activation) GROUP BY layer -> layer_similarity(layer, m ORDER BY position).
SQL one statement: the same, with nn_activations fed straight into
layer_corr (`SELECT layer, layer_corr(...) FROM nn_activations(...) GROUP BY
layer`), activations never stored, as in the Python pipeline. Python: onnxruntime
as "ORT 2 workers" (two threads, each its own 1-thread session: the fastest
of the onnxruntime settings above on this machine) -> np.corrcoef per layer
-> np.corrcoef of the 12 stacked upper triangles.
Every run is a fresh child process, model loading included; the two
12 x 12 results of the median runs are compared.

Prints the tables; writes out/bench/inference.json.
Usage: python benches/bench_inference.py [--e2e | --no-e2e] [--repeats 3] [--e2e-runs 3]
                                         [--extension FILE] [--json NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

MODEL = B.REPO / "data" / "models" / "efficientnet_lite0.onnx"
PHOTOS = B.REPO / "data" / "photos" / "classification"
LAYERS = ["input", "stem", "blocks.1", "blocks.3", "blocks.5", "blocks.7", "blocks.9",
          "blocks.11", "blocks.13", "blocks.15", "head", "logits"]
VARIANTS = 5
E2E_ORT_WORKERS = 2  # the Python end-to-end pipeline runs onnxruntime like "ORT 2 workers"


def sql_str(s) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def sql_list(xs) -> str:
    return "[" + ", ".join(sql_str(x) for x in xs) + "]"


def photo_paths(d: Path = PHOTOS) -> list[Path]:
    return sorted(d.glob("*.jpg"))


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, repeats: int) -> dict:
    """One untimed warm-up call, then `repeats` timed calls; wall and CPU time."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c, t = cpu_seconds(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_seconds() - c)
    return {"seconds_all": [round(w, 4) for w in walls], "seconds_median": B.median(walls),
            "cpu_util": round(sum(cpus) / sum(walls), 2)}


# --------------------------------------------------------------------------
# DuckDB side
# --------------------------------------------------------------------------

def extension() -> Path:
    """The extension under test: `--extension` (passed to the children
    through the environment), else the build's."""
    return Path(os.environ.get("LAYERCORR_BENCH_EXTENSION", B.EXTENSION))


def duckdb_connect():
    import duckdb

    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD {sql_str(extension())}")
    con.execute(f"SET threads = {os.cpu_count()}")
    con.execute("SET enable_progress_bar = false")
    return con


def scalar_sql(table: str = "images") -> str:
    return (f"CREATE OR REPLACE TABLE acts AS SELECT path, unnest(nn_activations("
            f"{sql_str(MODEL)}, path, {sql_list(LAYERS)}), recursive := true) FROM {table}")


def worker_sql(form: str, repeats: int) -> dict:
    con = duckdb_connect()
    paths = photo_paths()
    con.execute("CREATE TABLE images AS SELECT unnest(?::VARCHAR[]) AS path",
                [[str(p) for p in paths]])
    table = (f"nn_activations({sql_str(MODEL)}, {sql_str(PHOTOS / '*.jpg')}, "
             f"layers := {sql_list(LAYERS)})")
    scalar = f"nn_activations({sql_str(MODEL)}, path, {sql_list(LAYERS)})"
    # The "not stored" forms compute and hand over every activation (the
    # sums read each list's length) without unnesting or storing them.
    query, expect = {
        "scalar": (scalar_sql(), None),
        "table": (f"CREATE OR REPLACE TABLE acts AS FROM {table}", None),
        "scalar-only": (f"SELECT sum(len(a)) FROM (SELECT {scalar} AS a FROM images)",
                        len(paths) * len(LAYERS)),
        "table-only": (f"SELECT count(*), sum(len(activation)) FROM {table}",
                       len(paths) * len(LAYERS)),
    }[form]
    got = []
    rec = timed(lambda: got.append(con.execute(query).fetchall()), repeats)
    if expect is None:
        rows, layers = con.execute("SELECT count(*), count(DISTINCT layer) FROM acts").fetchall()[0]
        if (rows, layers) != (len(paths) * len(LAYERS), len(LAYERS)):
            raise RuntimeError(f"acts has {rows} rows / {layers} layers")
    elif got[-1][0][0] != expect:
        raise RuntimeError(f"{form}: {got[-1]} (expected {expect} entries)")
    rec.update(images=len(paths), threads=int(con.execute(
        "SELECT current_setting('threads')").fetchall()[0][0]))
    return rec


# --------------------------------------------------------------------------
# onnxruntime side
# --------------------------------------------------------------------------

def model_with_outputs(names: list[str]) -> bytes:
    """The ONNX model with `names` (tensor names) added as graph outputs."""
    import onnx

    m = onnx.load(str(MODEL))
    have = {o.name for o in m.graph.output}
    produced = {o for n in m.graph.node for o in n.output}
    for name in names:
        if name not in produced:
            raise ValueError(f"{name} is not a tensor of {MODEL.name}")
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m.SerializeToString()


def ort_session(model: bytes, intra: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def preprocess(path, size: int = 224):
    """Pillow: RGB, bilinear resize of the shorter side to `size`, centre crop,
    (x - 127) / 128, [1, 3, size, size] float32."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        nw, nh = round(w * size / s), round(h * size / s)
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        x = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)
    x -= 127.0
    x *= 1.0 / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def ort_outputs() -> list[str]:
    return [n for n in LAYERS if n != "input"]


def ort_pipeline(sess, paths) -> list[dict]:
    """Sequential decode + preprocess + run; returns every image's 12 activations."""
    names = ort_outputs()
    out = []
    for p in paths:
        x = preprocess(p)
        vals = sess.run(names, {"image": x})
        acts = {"input": x}
        acts.update(zip(names, vals))
        out.append(acts)
    return out


def ort_parallel(sessions, paths) -> list[dict]:
    """ort_pipeline with one Python thread per session, thread k taking every
    k-th image; returns the activations in the order of `paths`."""
    k = len(sessions)
    if k == 1:
        return ort_pipeline(sessions[0], paths)
    parts: list = [None] * k
    errors: list = []

    def work(i):
        try:
            parts[i] = ort_pipeline(sessions[i], paths[i::k])
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    out: list = [None] * len(paths)
    for i, part in enumerate(parts):
        out[i::k] = part
    return out


def worker_ort(intra: int, workers: int, repeats: int) -> dict:
    import onnxruntime as ort

    model = model_with_outputs(ort_outputs())
    paths = photo_paths()
    sessions = [ort_session(model, intra) for _ in range(workers)]
    rec = timed(lambda: ort_parallel(sessions, paths), repeats)
    rec.update(images=len(paths), intra_op_threads=intra, workers=workers,
               onnxruntime=ort.__version__)
    return rec


def worker_preprocess(repeats: int) -> dict:
    paths = photo_paths()
    rec = timed(lambda: [preprocess(p) for p in paths], repeats)
    rec["images"] = len(paths)
    return rec


# --------------------------------------------------------------------------
# End to end (500 images)
# --------------------------------------------------------------------------

def make_variants(dest: Path) -> list[Path]:
    """The 100 photos x 5: original, mirrored, cropped, brighter, mirrored + cropped + darker.

    Crops keep 80-95 % of each side at an offset that depends on the photo
    index, so every file is different but deterministic.
    """
    from PIL import Image, ImageEnhance, ImageOps

    out = []
    for i, src in enumerate(photo_paths()):
        with Image.open(src) as im:
            im = im.convert("RGB")
            w, h = im.size
            f = 0.80 + 0.15 * ((i * 37) % 100) / 100
            cw, ch = int(w * f), int(h * f)
            ox, oy = (i * 53) % (w - cw + 1), (i * 29) % (h - ch + 1)
            crop = im.crop((ox, oy, ox + cw, oy + ch))
            variants = [
                None,
                ImageOps.mirror(im),
                crop,
                ImageEnhance.Brightness(im).enhance(1.25),
                ImageEnhance.Brightness(ImageOps.mirror(crop)).enhance(0.8),
            ]
        for v, img in enumerate(variants[:VARIANTS]):
            path = dest / f"{src.stem}_{v}.jpg"
            if img is None:
                shutil.copyfile(src, path)
            else:
                img.save(path, quality=92)
            out.append(path)
    return sorted(out)


def similarity_step(con, steps: dict, t_all: float) -> dict:
    """The last step of both SQL pipelines: the 12 x 12 matrix from the
    table `mats`; returns the pipeline's record."""
    import numpy as np

    t = time.perf_counter()
    layers, matrix = con.execute(
        "SELECT s.layers, s.matrix FROM (SELECT layer_similarity(m.layer, m.m ORDER BY l.position) AS s "
        "FROM mats m JOIN layers l USING (layer))").fetchall()[0]
    steps["layer_similarity"] = time.perf_counter() - t
    n = con.execute("SELECT len(m.keys) FROM mats LIMIT 1").fetchall()[0][0]
    return {"images": n, "steps": steps, "seconds": time.perf_counter() - t_all,
            "layers": list(layers), "similarity": np.asarray(matrix).tolist()}


def worker_e2e_sql(image_dir: Path) -> dict:
    """The whole analysis in SQL, step by step, in a fresh process."""
    t_all = time.perf_counter()
    steps = {}
    t = time.perf_counter()
    con = duckdb_connect()
    con.execute(f"CREATE TABLE layers AS FROM nn_layers({sql_str(MODEL)})")
    con.execute(f"CREATE TABLE images AS SELECT file AS path FROM glob({sql_str(image_dir / '*.jpg')})")
    steps["connect, load, images"] = time.perf_counter() - t
    t = time.perf_counter()
    # The table form: the faster of the two on this machine (see per-image table).
    con.execute(f"CREATE TABLE acts AS FROM nn_activations({sql_str(MODEL)}, "
                f"{sql_str(image_dir / '*.jpg')}, layers := {sql_list(LAYERS)})")
    steps["nn_activations"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("CREATE TABLE mats AS SELECT layer, layer_corr(path, activation) AS m "
                "FROM acts GROUP BY layer")
    steps["layer_corr x 12"] = time.perf_counter() - t
    return similarity_step(con, steps, t_all)


def worker_e2e_sql_fused(image_dir: Path) -> dict:
    """The same analysis in SQL with the activations never stored: one
    statement feeds nn_activations straight into layer_corr (what Python's
    pipeline does too: its activations live only in memory)."""
    t_all = time.perf_counter()
    steps = {}
    t = time.perf_counter()
    con = duckdb_connect()
    con.execute(f"CREATE TABLE layers AS FROM nn_layers({sql_str(MODEL)})")
    steps["connect, load"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute(f"CREATE TABLE mats AS SELECT layer, layer_corr(path, activation) AS m "
                f"FROM nn_activations({sql_str(MODEL)}, {sql_str(image_dir / '*.jpg')}, "
                f"layers := {sql_list(LAYERS)}) GROUP BY layer")
    steps["nn_activations -> layer_corr x 12"] = time.perf_counter() - t
    return similarity_step(con, steps, t_all)


def worker_pixel_check(count: int) -> dict:
    """Largest |nn_activations' input - preprocess()| over the first photos.

    Explains the difference between the SQL and Python end-to-end results:
    the extension and Pillow decode JPEG and resize with different code.
    """
    import numpy as np

    con = duckdb_connect()
    worst, mean = 0.0, []
    for p in photo_paths()[:count]:
        (acts,) = con.execute(f"SELECT nn_activations({sql_str(MODEL)}, {sql_str(p)}, ['input'])"
                              ).fetchall()[0]
        a = np.asarray(acts[0]["activation"], dtype=np.float32)
        diff = np.abs(a - preprocess(p).reshape(-1))
        worst = max(worst, float(diff.max()))
        mean.append(float(diff.mean()))
    return {"photos": count, "max_abs_diff": worst, "mean_abs_diff": float(np.mean(mean))}


def worker_e2e_python(image_dir: Path) -> dict:
    """The same analysis with onnxruntime + numpy, in a fresh process."""
    import numpy as np

    t_all = time.perf_counter()
    steps = {}
    t = time.perf_counter()
    model = model_with_outputs(ort_outputs())
    sessions = [ort_session(model, 1) for _ in range(E2E_ORT_WORKERS)]
    paths = photo_paths(image_dir)
    steps["sessions"] = time.perf_counter() - t
    t = time.perf_counter()
    acts = ort_parallel(sessions, paths)
    steps["onnxruntime + Pillow"] = time.perf_counter() - t
    t = time.perf_counter()
    mats = []
    for layer in LAYERS:
        x = np.stack([a[layer].reshape(-1) for a in acts])
        mats.append(np.corrcoef(x))
    del acts, x
    steps["np.corrcoef x 12"] = time.perf_counter() - t
    t = time.perf_counter()
    iu = np.triu_indices(len(paths), 1)
    sim = np.corrcoef(np.stack([m[iu] for m in mats]))
    steps["corrcoef of triangles"] = time.perf_counter() - t
    return {"images": len(paths), "steps": steps, "seconds": time.perf_counter() - t_all,
            "layers": LAYERS, "similarity": sim.tolist()}


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

RUNNER = B.QuietRunner(threshold=0.3, retries=1, budget_s=120)


def child(args: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    return RUNNER.run(cmd, env=B.clean_env(), timeout=3600)


def check_layers() -> None:
    """Every requested layer exists in nn_layers (fails early with the missing ones)."""
    con = duckdb_connect()
    have = {r[0] for r in con.execute(f"SELECT layer FROM nn_layers({sql_str(MODEL)})").fetchall()}
    missing = [layer for layer in LAYERS if layer not in have]
    if missing:
        sys.exit(f"layers not in nn_layers({MODEL.name}): {missing}")
    con.close()


def per_image(repeats: int) -> list[dict]:
    variants = [
        ("SQL scalar nn_activations", ["--kind", "sql", "--form", "scalar"]),
        ("SQL table nn_activations", ["--kind", "sql", "--form", "table"]),
        ("call only: SQL scalar (no unnest, no table)", ["--kind", "sql", "--form", "scalar-only"]),
        ("call only: SQL table form (no table)", ["--kind", "sql", "--form", "table-only"]),
        ("ORT intra_op=1, sequential", ["--kind", "ort", "--intra", "1", "--workers", "1"]),
        ("ORT intra_op=2, sequential", ["--kind", "ort", "--intra", "2", "--workers", "1"]),
        ("ORT 2 workers x 1 thread", ["--kind", "ort", "--intra", "1", "--workers", "2"]),
        ("Pillow decode+preprocess only", ["--kind", "prep"]),
    ]
    results = []
    for label, args in variants:
        load = B.loadavg()
        print(f"  {label} ...", end="", flush=True)
        rec = child(args + ["--repeats", str(repeats)])
        rec.update(label=label, loadavg_start=load)
        rec["images_per_second"] = rec["images"] / rec["seconds_median"]
        rec["ms_per_image"] = 1000 * rec["seconds_median"] / rec["images"]
        print(f" {rec['ms_per_image']:.1f} ms/image", flush=True)
        results.append(rec)
    return results


def report_per_image(results: list[dict], repeats: int) -> None:
    ort1 = next(r for r in results if r["label"].startswith("ORT intra_op=1"))
    ort2 = next(r for r in results if r["label"].startswith("ORT intra_op=2"))
    print()
    print(f"Inference, EfficientNet-Lite0 224 px, {ort1['images']} photos, 12 layers kept; "
          f"median of {repeats} runs after a warm-up")
    rows = []
    for r in results:
        rows.append([r["label"], B.fmt(r["images_per_second"], ".1f"), B.fmt(r["ms_per_image"], ".1f"),
                     B.fmt(r["cpu_util"], ".2f"), B.fmt(r["cpu_util"] * r["ms_per_image"], ".1f"),
                     B.fmt(B.ratio(r["ms_per_image"], ort1["ms_per_image"]), ".2f"),
                     B.fmt(B.ratio(r["ms_per_image"], ort2["ms_per_image"]), ".2f"),
                     f"{r['loadavg_start'][0]:.1f}", f"{r['other_busy_cores']:.2f}",
                     str(r["attempts"] - 1)])
    B.print_table(["variant", "images/s", "ms/image", "CPU", "CPU ms/image", "time/ORT1", "time/ORT2", "load",
                   "others", "reruns"], rows)
    print("time/ORT1, time/ORT2 = this row's ms/image over onnxruntime's (sequential, 1 or 2 intra-op "
          "threads; decode + preprocess included);\nCPU = cores this variant kept busy during its "
          "timed runs; CPU ms/image = CPU x ms/image, the work per image (a steadier figure than "
          "wall time when others load the machine); load = 1-min load average before the row; others = cores kept busy by "
          "other processes meanwhile (0 = quiet); reruns = repeated because others > 0.3")
    report_goals(results)


def report_goals(results: list[dict]) -> dict:
    """The speed ratios the inference goals are stated in (peer's time over
    ours: 1 = as fast, 0.5 = half as fast), from this run."""
    by = {r["label"]: r for r in results}
    table, scalar = by["SQL table nn_activations"], by["SQL scalar nn_activations"]
    ort = [r for r in results if r["label"].startswith("ORT")]
    best = min(ort, key=lambda r: r["ms_per_image"])
    stored_scalar = scalar["ms_per_image"] - by["call only: SQL scalar (no unnest, no table)"]["ms_per_image"]
    goals = {
        "table_vs_best_ort": B.ratio(best["ms_per_image"], table["ms_per_image"]),
        "best_ort": best["label"],
        "scalar_vs_table": B.ratio(table["ms_per_image"], scalar["ms_per_image"]),
        "scalar_cores": scalar["cpu_util"],
        "scalar_unnest_store_ms_per_image": stored_scalar,
    }
    print(f"speed, table form / onnxruntime's best ({best['label']}): "
          f"{B.fmt(goals['table_vs_best_ort'], '.2f')}x; scalar form / table form: "
          f"{B.fmt(goals['scalar_vs_table'], '.2f')}x with {scalar['cpu_util']:.2f} cores busy; "
          f"the scalar form's unnest + store after its call: {stored_scalar:.1f} ms/image")
    return goals


def median_run(runs: list[dict]) -> dict:
    """The run whose total is the median (its steps are reported)."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def end_to_end(runs: int) -> dict:
    """Both pipelines `runs` times, alternating SQL and Python, each run in a
    fresh child; the medians are compared."""
    import numpy as np

    sqls, fused, pys = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        t = time.perf_counter()
        paths = make_variants(Path(tmp))
        made = time.perf_counter() - t
        print(f"  {len(paths)} images made in {made:.1f} s", flush=True)
        for k in range(runs):
            print(f"  run {k + 1}/{runs}: SQL stored ...", end="", flush=True)
            load_sql = B.loadavg()
            sql = child(["--kind", "e2e-sql", "--dir", tmp])
            print(f" {sql['seconds']:.1f} s; SQL one statement ...", end="", flush=True)
            load_fused = B.loadavg()
            one = child(["--kind", "e2e-sql-fused", "--dir", tmp])
            print(f" {one['seconds']:.1f} s; Python ...", end="", flush=True)
            load_py = B.loadavg()
            py = child(["--kind", "e2e-python", "--dir", tmp])
            print(f" {py['seconds']:.1f} s", flush=True)
            sql["loadavg_start"], one["loadavg_start"], py["loadavg_start"] = (
                load_sql, load_fused, load_py)
            sqls.append(sql)
            fused.append(one)
            pys.append(py)
    sql, one, py = median_run(sqls), median_run(fused), median_run(pys)
    pixels = B.run_json([sys.executable, str(Path(__file__).resolve()), "--worker",
                         "--kind", "pixel-check"], env=B.clean_env())
    diff = float(np.abs(np.asarray(sql["similarity"]) - np.asarray(py["similarity"])).max())
    diff_fused = float(np.abs(np.asarray(sql["similarity"]) - np.asarray(one["similarity"])).max())
    return {"images": len(paths), "make_images_seconds": made, "sql": sql, "sql_fused": one,
            "python": py, "runs": runs, "sql_seconds_all": [r["seconds"] for r in sqls],
            "sql_fused_seconds_all": [r["seconds"] for r in fused],
            "python_seconds_all": [r["seconds"] for r in pys],
            "max_abs_diff_stored_vs_one_statement": diff_fused,
            "layers_match": sql["layers"] == py["layers"], "max_abs_diff_similarity": diff,
            "pixels": pixels}


def report_e2e(e: dict) -> None:
    sql, py = e["sql"], e["python"]
    print()
    print(f"End to end: {e['images']} images, 12 layers -> 12 N x N pearson matrices -> 12 x 12 "
          f"second-order matrix (the median of {e['runs']} runs each, alternating, every run in a "
          f"fresh process, model loading included; steps of the median run)")
    one = e["sql_fused"]
    rows = [[f"SQL stored: {k}", B.fmt(v, ".2f")] for k, v in sql["steps"].items()]
    rows.append(["SQL stored total (activations kept in a table)", B.fmt(sql["seconds"], ".2f")])
    rows += [[f"SQL one statement: {k}", B.fmt(v, ".2f")] for k, v in one["steps"].items()]
    rows.append(["SQL one statement total (activations not stored)", B.fmt(one["seconds"], ".2f")])
    rows += [[f"Python: {k}", B.fmt(v, ".2f")] for k, v in py["steps"].items()]
    rows.append([f"Python total (onnxruntime {E2E_ORT_WORKERS} workers + numpy)",
                 B.fmt(py["seconds"], ".2f")])
    rows.append(["ratio SQL stored / Python (medians)",
                 B.fmt(B.ratio(sql["seconds"], py["seconds"]), ".2f")])
    rows.append(["ratio SQL one statement / Python (medians)",
                 B.fmt(B.ratio(one["seconds"], py["seconds"]), ".2f")])
    B.print_table(["step", "seconds"], rows)
    print("all runs: SQL stored " + ", ".join(f"{v:.2f}" for v in e["sql_seconds_all"])
          + "; SQL one statement " + ", ".join(f"{v:.2f}" for v in e["sql_fused_seconds_all"])
          + "; Python " + ", ".join(f"{v:.2f}" for v in e["python_seconds_all"]))
    print(f"12 x 12 results of the two SQL pipelines: max difference "
          f"{e['max_abs_diff_stored_vs_one_statement']:.1e}")
    print(f"12 x 12 results: layers in the same order: {e['layers_match']}; "
          f"max |SQL - Python| = {e['max_abs_diff_similarity']:.1e} (input pixels differ: max "
          f"{e['pixels']['max_abs_diff'] * 128:.1f}/128, mean {e['pixels']['mean_abs_diff'] * 128:.2f}/128 "
          f"over {e['pixels']['photos']} photos: JPEG decoder and resize differ);\nload at start SQL {sql['loadavg_start'][0]:.1f}, "
          f"Python {py['loadavg_start'][0]:.1f}; others SQL {sql['other_busy_cores']:.2f}, "
          f"Python {py['other_busy_cores']:.2f}; reruns SQL {sql['attempts'] - 1}, "
          f"Python {py['attempts'] - 1}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--e2e", action="store_true", help="run only the 500-image end-to-end part")
    g.add_argument("--no-e2e", action="store_true", help="skip the end-to-end part")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per variant (default 3)")
    ap.add_argument("--e2e-runs", type=int, default=3,
                    help="end-to-end runs of each pipeline, alternating (default 3)")
    ap.add_argument("--json", default="inference.json", help="file name under out/bench/")
    ap.add_argument("--extension", help="the extension file to load (default: the build's), "
                    "e.g. a copy of an earlier build for a before/after comparison")
    # Child-process mode.
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--form", help=argparse.SUPPRESS)
    ap.add_argument("--intra", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        if args.kind == "sql":
            rec = worker_sql(args.form, args.repeats)
        elif args.kind == "ort":
            rec = worker_ort(args.intra, args.workers, args.repeats)
        elif args.kind == "prep":
            rec = worker_preprocess(args.repeats)
        elif args.kind == "e2e-sql":
            rec = worker_e2e_sql(Path(args.dir))
        elif args.kind == "pixel-check":
            rec = worker_pixel_check(20)
        elif args.kind == "e2e-sql-fused":
            rec = worker_e2e_sql_fused(Path(args.dir))
        elif args.kind == "e2e-python":
            rec = worker_e2e_python(Path(args.dir))
        else:
            raise ValueError(args.kind)
        print(json.dumps(rec))
        return

    if args.extension:
        os.environ["LAYERCORR_BENCH_EXTENSION"] = str(Path(args.extension).resolve())
    t_start = time.perf_counter()
    info = B.machine_header("layercorr: inference, nn_activations vs onnxruntime")
    print(f"extension: {extension()}")
    for what, path in (("extension", extension()), ("model", MODEL), ("photos", PHOTOS)):
        if not path.exists():
            sys.exit(f"{what} missing: {path}; run `make build` and `make assets` first")
    check_layers()
    payload = {"machine": info, "layers": LAYERS, "repeats": args.repeats}
    if not args.e2e:
        payload["per_image"] = per_image(args.repeats)
        report_per_image(payload["per_image"], args.repeats)
    if not args.no_e2e:
        print()
        print("end to end (500 images):", flush=True)
        t = time.perf_counter()
        payload["e2e"] = end_to_end(max(1, args.e2e_runs))
        payload["e2e"]["wall_seconds"] = time.perf_counter() - t
        report_e2e(payload["e2e"])
    info["loadavg_end"] = B.loadavg()
    info["total_seconds"] = round(time.perf_counter() - t_start, 1)
    print(f"load average at end: {info['loadavg_end']}")
    path = B.write_json(args.json, payload)
    print(f"total {info['total_seconds']:.0f} s; results in {path.relative_to(B.REPO)}")


if __name__ == "__main__":
    main()
