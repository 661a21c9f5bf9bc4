"""Hostile input (issue 13): nothing a user hands in kills or runs away with the host.

Every case runs in its own child host process (a few related statements per
process, so the suite stays fast on 2 cores) and asserts:

* no signal and no hang (the child is killed after a timeout: a failed test);
* each statement gives a result or a DuckDB error naming the bad file / key;
* the child's peak RSS (wait4's ru_maxrss) stays under a bound;
* a follow-up `SELECT 42` on the same connection still answers.

Expected values come from Pillow and the model's own metadata, never from the
extension's earlier output.
"""
from __future__ import annotations

import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import lc_helpers as H
from lc_helpers import sql_str

MAX_RSS_MB = 1536  # the model's input is 224 px: no image may need more than this
S = 224
INPUT_LEN = 3 * S * S
POOL_LEN = 1280
COLOR = (200, 100, 50)
OTHER = (20, 220, 120)


def lit(p) -> str:
    return f"'{sql_str(p)}'"


def lst(paths) -> str:
    return "[" + ", ".join(lit(p) for p in paths) + "]::VARCHAR[]"


def channel_stats(x: str) -> str:
    """SQL: [min, max] of each channel plane of a 3 x 224 x 224 `input` vector."""
    parts = []
    for c in range(3):
        a, b = c * S * S + 1, (c + 1) * S * S
        parts += [f"list_min({x}[{a}:{b}])", f"list_max({x}[{a}:{b}])"]
    return "[" + ", ".join(parts) + "]"


def scalar_rows(model, path, skip: bool) -> str:
    """One row per returned entry: layer, activation IS NULL, length, input stats."""
    return (f"SELECT e.layer, e.activation IS NULL, len(e.activation), "
            f"CASE WHEN e.layer = 'input' THEN {channel_stats('e.activation')} END "
            f"FROM (SELECT unnest(nn_activations({lit(model)}, {lit(path)}, ['input', 'pool'], "
            f"{str(skip).lower()})) AS e)")


def table_rows(model, path, skip: bool) -> str:
    return (f"SELECT layer, activation IS NULL, len(activation), "
            f"CASE WHEN layer = 'input' THEN {channel_stats('activation')} END "
            f"FROM nn_activations({lit(model)}, {lst([path])}, layers := ['input', 'pool'], "
            f"skip_bad_images := {str(skip).lower()})")


def _expected_norm(path) -> np.ndarray:
    """Per-channel normalised value of a solid-colour image, from Pillow's decode."""
    meta = H.model_metadata(str(H.MODEL))
    mean = np.array([float(v) for v in meta["layercorr.mean"].split(",")])
    std = np.array([float(v) for v in meta["layercorr.std"].split(",")])
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        px = np.array(im.getpixel((w // 2, h // 2)), dtype=np.float64)
    return (px - mean) / std


def check_rows(rec, path, expected, skip: bool, what: str):
    """A result of scalar_rows/table_rows, or (skip false only) an error naming the file."""
    name = os.path.basename(path)
    if not rec["ok"]:
        assert not skip, f"{what}: skip_bad_images := true still failed: {rec['message'][:500]}"
        assert rec["is_duckdb_error"], f"{what}: not a DuckDB error: {rec}"
        assert name in rec["message"], f"{what}: the error does not name {name}: {rec['message'][:500]}"
        return "error"
    rows = rec["rows"]
    assert sorted(r[0] for r in rows) == ["input", "pool"], \
        f"{what}: expected one entry per requested layer (input, pool), got {rows!r:.500}"
    nulls = {r[0]: r[1] for r in rows}
    if not skip:
        assert not any(nulls.values()), f"{what}: NULL activation without skip_bad_images: {rows!r:.300}"
    for layer, isnull, n, stats in rows:
        if isnull:
            continue
        assert n == (INPUT_LEN if layer == "input" else POOL_LEN), f"{what}: {layer} has {n} values"
        if layer == "input":
            got = np.array(stats, dtype=np.float64).reshape(3, 2)
            tol = 2.5 / 128
            assert np.all(np.abs(got - expected[:, None]) <= tol), (
                f"{what}: the centre crop of this image is solid {COLOR}: constant planes {expected.round(4)}, "
                f"got per-channel [min, max] {got.round(4).tolist()}")
    return "null" if all(nulls.values()) else "value"


# --------------------------------------------------------------------------
# extreme aspect ratios (issue 13, 1: peak memory bounded by the model's input)


EXTREME = {
    # name: (format, width, height)
    "png_1x2000000": ("PNG", 1, 2_000_000),
    "png_2000000x1": ("PNG", 2_000_000, 1),
    "png_1x100000": ("PNG", 1, 100_000),
    "png_100000x1": ("PNG", 100_000, 1),
    "gif_1x65535": ("GIF", 1, 65535),  # GIF's largest side
    "gif_65535x1": ("GIF", 65535, 1),
    "jpg_1x65500": ("JPEG", 1, 65500),  # JPEG's largest side
    "jpg_65500x1": ("JPEG", 65500, 1),
    "tif_1x2000000": ("TIFF", 1, 2_000_000),
    "bmp_2000000x1": ("BMP", 2_000_000, 1),
}
EXT = {"PNG": "png", "GIF": "gif", "JPEG": "jpg", "TIFF": "tif", "BMP": "bmp"}


@pytest.fixture(scope="module")
def extreme_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("extreme")
    for name, (fmt, w, h) in EXTREME.items():
        # COLOR in a band around the centre of the long side, OTHER elsewhere:
        # the centre crop must see only COLOR (a crop from the wrong place, or
        # a squeeze of the whole side, would bring OTHER in)
        im = Image.new("RGB", (w, h), OTHER)
        long_side = max(w, h)
        band = min(1000, long_side // 10)
        a = long_side // 2 - band // 2
        box = (a, 0, a + band, h) if w > h else (0, a, w, a + band)
        im.paste(COLOR, box)
        if fmt == "GIF":
            im = im.quantize(colors=2)
        im.save(d / f"{name}.{EXT[fmt]}", fmt)
    return d


def _extreme_path(d, name):
    return d / f"{name}.{EXT[EXTREME[name][0]]}"


@pytest.mark.parametrize("name", list(EXTREME))
def test_extreme_aspect_ratio(name, extreme_dir, model_path):
    path = _extreme_path(extreme_dir, name)
    with Image.open(path) as im:
        assert im.size == EXTREME[name][1:], im.size
    expected = _expected_norm(path)
    stmts = [scalar_rows(H.MODEL, path, False), scalar_rows(H.MODEL, path, True),
             table_rows(H.MODEL, path, False), table_rows(H.MODEL, path, True), "SELECT 42"]
    s = H.run_py_measured(stmts, timeout=180)
    s.check_alive(n=len(stmts), max_rss_mb=MAX_RSS_MB)
    what = ["scalar", "scalar skip", "table", "table skip"]
    for rec, w, skip in zip(s.results, what, [False, True, False, True]):
        check_rows(rec, path, expected, skip, f"{name} {w}")
    assert s.results[-1]["rows"] == [[42]]


def test_extreme_aspect_ratio_cli(extreme_dir, model_path, cli_path):
    """The same in the 1.5.6 shell, for the two largest PNGs."""
    stmts = []
    for name in ["png_1x2000000", "png_2000000x1"]:
        p = _extreme_path(extreme_dir, name)
        stmts += [scalar_rows(H.MODEL, p, True), table_rows(H.MODEL, p, True)]
    stmts.append("SELECT 42")
    s = H.run_cli_measured(stmts, timeout=180)
    s.check_alive(n=len(stmts), max_rss_mb=MAX_RSS_MB)
    for k, name in enumerate(["png_1x2000000", "png_2000000x1"]):
        p = _extreme_path(extreme_dir, name)
        for j, w in enumerate(["scalar skip", "table skip"]):
            check_rows(s.results[2 * k + j], p, _expected_norm(p), True, f"cli {name} {w}")
    assert s.results[-1]["rows"] == [[42]]


def test_gif_with_a_huge_canvas(tmp_path, model_path):
    """A 1 x 1 frame on a logical screen of 65535 x 65535 (17 GB of RGBA if
    the canvas were allocated): an error or a result, never the allocation."""
    p = tmp_path / "canvas_65535.gif"
    Image.new("RGB", (1, 1), COLOR).quantize(colors=2).save(p, "GIF")
    b = bytearray(p.read_bytes())
    assert b[:6] in (b"GIF87a", b"GIF89a")
    b[6:10] = struct.pack("<HH", 65535, 65535)
    p.write_bytes(bytes(b))
    stmts = [scalar_rows(H.MODEL, p, False), table_rows(H.MODEL, p, True), "SELECT 42"]
    s = H.run_py_measured(stmts, timeout=120)
    s.check_alive(n=3, max_rss_mb=MAX_RSS_MB)
    rec = s.results[0]
    assert rec["ok"] or (rec["is_duckdb_error"] and p.name in rec["message"]), rec
    assert s.results[1]["ok"], s.results[1]
    assert s.results[-1]["rows"] == [[42]]


# --------------------------------------------------------------------------
# model metadata (issue 13, 1 and 5)


@pytest.fixture(scope="module")
def stamped(tmp_path_factory, model_path):
    d = tmp_path_factory.mktemp("stamped")
    cases = {
        "input_size_100000": {"input_size": "100000"},
        "input_size_0": {"input_size": "0"},
        "std_nan": {"std": "nan,nan,nan"},
        "std_negative": {"std": "-128,128,128"},
        "resize_zoom": {"resize": "zoom"},
        "layout_chwn": {"layout": "CHWN"},
    }
    return {k: H.stamp_model(H.MODEL, d / f"meta_{k}.onnx", **v) for k, v in cases.items()}


def test_huge_input_size_is_a_named_error(stamped, photos):
    m = stamped["input_size_100000"]
    stmts = [f"SELECT nn_activations({lit(m)}, {lit(photos[0])}, ['pool'])",
             f"SELECT count(*) FROM nn_activations({lit(m)}, {lst(photos[:1])}, layers := ['pool'], "
             f"skip_bad_images := true)",
             f"SELECT count(*) FROM nn_layers({lit(m)})",
             "SELECT 42"]
    s = H.run_py_measured(stmts, timeout=120)
    s.check_alive(n=len(stmts), max_rss_mb=MAX_RSS_MB)
    for rec, what in zip(s.results[:2], ["scalar", "table (skip_bad_images does not hide a bad model)"]):
        assert not rec["ok"], f"{what}: input_size = 100000 gave a result: {rec}"
        assert rec["is_duckdb_error"], rec
        assert "input_size" in rec["message"], f"{what}: error does not name the key: {rec['message'][:500]}"
        assert m.name in rec["message"], f"{what}: error does not name the model: {rec['message'][:500]}"
    layers = s.results[2]
    assert layers["ok"] or "input_size" in layers["message"], layers
    assert s.results[-1]["rows"] == [[42]]


@pytest.mark.parametrize("case,pattern,wrong", [
    ("input_size_0", r"input_size", None),
    ("std_nan", r"(?is)std.*nan|nan.*std", r"(?i)has a zero"),  # there is no zero in 'nan,nan,nan'
    ("std_negative", r"(?is)std.*(-128|negative|positive|> ?0)|(-128|negative).*std", None),
    ("resize_zoom", r"(?s)resize.*zoom|zoom.*resize", None),
    ("layout_chwn", r"(?s)layout.*CHWN|CHWN.*layout", None),
])
def test_bad_metadata_is_a_named_error(case, pattern, wrong, stamped, photos):
    m = stamped[case]
    stmts = [f"SELECT nn_activations({lit(m)}, {lit(photos[0])}, ['pool'])", "SELECT 42"]
    s = H.run_py_measured(stmts, timeout=120)
    s.check_alive(n=2, max_rss_mb=MAX_RSS_MB)
    rec = s.results[0]
    assert not rec["ok"], f"{case} was accepted silently: {str(rec)[:300]}"
    assert rec["is_duckdb_error"], rec
    assert re.search(pattern, rec["message"]), f"{case}: {pattern!r} not in {rec['message'][:500]!r}"
    assert m.name in rec["message"], f"{case}: the error does not name the model: {rec['message'][:500]}"
    assert not (wrong and re.search(wrong, rec["message"])), f"{case}: misleading message: {rec['message'][:300]}"
    assert s.results[1]["rows"] == [[42]]


# --------------------------------------------------------------------------
# FIFOs and character devices (issue 13, 3: no hangs)

SPECIAL_TIMEOUT = 20  # the child is killed after this; the statement itself must take < 10 s
SPECIAL_MAX_S = 10


@pytest.fixture(scope="module")
def fifos(tmp_path_factory):
    d = tmp_path_factory.mktemp("fifo")
    img, model = d / "fifo_image.jpg", d / "fifo_model.onnx"
    os.mkfifo(img)
    os.mkfifo(model)
    return {"image": img, "model": model}


def special_cases(fifos, photos):
    m, p = H.MODEL, photos[0]
    return {
        "fifo_image_scalar": (fifos["image"], f"SELECT nn_activations({lit(m)}, {lit(fifos['image'])}, ['pool'])"),
        "fifo_image_table": (fifos["image"], f"SELECT count(*) FROM nn_activations({lit(m)}, "
                                             f"{lst([fifos['image']])}, layers := ['pool'])"),
        "fifo_model_layers": (fifos["model"], f"SELECT count(*) FROM nn_layers({lit(fifos['model'])})"),
        "fifo_model_activations": (fifos["model"], f"SELECT nn_activations({lit(fifos['model'])}, {lit(p)}, ['pool'])"),
        "fifo_model_weights": (fifos["model"], f"SELECT count(*) FROM nn_weights({lit(fifos['model'])})"),
        "dev_zero_scalar": ("/dev/zero", f"SELECT nn_activations({lit(m)}, '/dev/zero', ['pool'])"),
        "dev_urandom_scalar": ("/dev/urandom", f"SELECT nn_activations({lit(m)}, '/dev/urandom', ['pool'])"),
        "dev_zero_table": ("/dev/zero", f"SELECT count(*) FROM nn_activations({lit(m)}, ['/dev/zero'], "
                                        f"layers := ['pool'])"),
        "dev_zero_model": ("/dev/zero", "SELECT count(*) FROM nn_layers('/dev/zero')"),
    }


SPECIAL = ["fifo_image_scalar", "fifo_image_table", "fifo_model_layers", "fifo_model_activations",
           "fifo_model_weights", "dev_zero_scalar", "dev_urandom_scalar", "dev_zero_table",
           "dev_zero_model"]


@pytest.mark.parametrize("case", SPECIAL)
def test_special_file_is_a_prompt_named_error(case, fifos, photos, model_path):
    path, sql = special_cases(fifos, photos)[case]
    s = H.run_py_measured([sql, "SELECT 42"], timeout=SPECIAL_TIMEOUT)
    s.check_alive(n=2, max_rss_mb=MAX_RSS_MB)
    rec = s.results[0]
    assert not rec["ok"], f"{case}: reading {path} gave a result: {str(rec)[:300]}"
    assert rec["is_duckdb_error"], rec
    assert str(path) in rec["message"] or os.path.basename(str(path)) in rec["message"], \
        f"{case}: the error does not name {path}: {rec['message'][:500]}"
    assert "0 bytes" not in rec["message"], f"{case}: misleading message: {rec['message'][:300]}"
    assert rec["elapsed"] < SPECIAL_MAX_S, f"{case}: took {rec['elapsed']:.1f} s"
    assert s.results[1]["rows"] == [[42]]


def test_fifo_and_device_cli(fifos, photos, cli_path):
    cases = special_cases(fifos, photos)
    names = ["fifo_image_scalar", "fifo_model_layers", "dev_urandom_scalar"]
    stmts = [cases[n][1] for n in names] + ["SELECT 42"]
    s = H.run_cli_measured(stmts, timeout=SPECIAL_TIMEOUT)
    s.check_alive(n=len(stmts), max_rss_mb=MAX_RSS_MB)
    for n, rec in zip(names, s.results):
        assert not rec["ok"] and os.path.basename(str(cases[n][0])) in rec["message"], (n, rec)
    assert s.results[-1]["rows"] == [[42]]


# --------------------------------------------------------------------------
# a directory symlink loop under a glob (issue 13, 2)


@pytest.fixture(scope="module")
def loop_dir(tmp_path_factory, photos):
    d = tmp_path_factory.mktemp("looped") / "d"
    (d / "sub").mkdir(parents=True)
    for src, dst in [(photos[0], d / "a.jpg"), (photos[1], d / "b.jpg"), (photos[2], d / "sub" / "c.jpg")]:
        dst.write_bytes(src.read_bytes())
    (d / "loop").symlink_to(d, target_is_directory=True)
    return d


@pytest.mark.parametrize("pattern", ["**/*.jpg", "*/*.jpg"])
def test_symlink_loop_glob(pattern, loop_dir, model_path):
    g = str(loop_dir / pattern)
    stmts = [f"SELECT path, count(*) FROM nn_activations({lit(H.MODEL)}, {lit(g)}, layers := ['pool']) "
             f"GROUP BY path ORDER BY path",
             f"SELECT file FROM glob({lit(g)}) ORDER BY file",
             "SELECT 42"]
    s = H.run_py_measured(stmts, timeout=120)
    s.check_alive(n=3, max_rss_mb=MAX_RSS_MB)
    rec, duck_glob = s.results[0], s.results[1]
    assert s.results[2]["rows"] == [[42]]
    if not rec["ok"]:
        assert rec["is_duckdb_error"] and str(loop_dir) in rec["message"], rec
        return
    paths = [r[0] for r in rec["rows"]]
    assert all(r[1] == 1 for r in rec["rows"]), f"a path came back more than once: {rec['rows']}"
    real = [os.path.realpath(p) for p in paths]
    assert len(set(real)) == len(real), f"one real image came back under several paths: {paths}"
    assert set(paths) <= {r[0] for r in duck_glob["rows"]}, \
        f"paths outside DuckDB's own glob: {paths} vs {duck_glob['rows']}"
    assert len(paths) >= 1
    if pattern.startswith("**"):
        assert set(real) == {str((loop_dir / n).resolve()) for n in ["a.jpg", "b.jpg", "sub/c.jpg"]}, paths


# --------------------------------------------------------------------------
# skip_bad_images means the same in both forms (issue 13, 5)


@pytest.fixture(scope="module")
def bad_jpeg(tmp_path_factory, photos):
    d = tmp_path_factory.mktemp("skipbad")
    p = d / "bad_half.jpg"
    b = photos[3].read_bytes()
    p.write_bytes(b[:200])
    return p


def test_skip_bad_images_same_rows_in_both_forms(bad_jpeg, photos, model_path):
    paths = [photos[0], bad_jpeg, photos[1]]
    values = ", ".join(f"({i}, {lit(p)})" for i, p in enumerate(paths))
    scalar = (f"SELECT path, e.layer, e.activation IS NULL, list_sum(e.activation) FROM "
              f"(SELECT p AS path, unnest(nn_activations({lit(H.MODEL)}, p, ['pool', 'logits'], true)) AS e "
              f" FROM (VALUES {values}) t(i, p)) ORDER BY ALL")
    table = (f"SELECT path, layer, activation IS NULL, list_sum(activation) FROM "
             f"nn_activations({lit(H.MODEL)}, {lst(paths)}, layers := ['pool', 'logits'], "
             f"skip_bad_images := true) ORDER BY ALL")
    raw = f"SELECT nn_activations({lit(H.MODEL)}, {lit(bad_jpeg)}, ['pool', 'logits'], true)::VARCHAR"
    s = H.run_py_measured([scalar, table, raw, "SELECT 42"], timeout=120)
    s.check_alive(n=4, max_rss_mb=MAX_RSS_MB)
    sc, tb, rw = s.results[:3]
    assert sc["ok"] and tb["ok"] and rw["ok"], (sc, tb, rw)
    bad = [r for r in tb["rows"] if r[0] == str(bad_jpeg)]
    assert [(r[1], r[2]) for r in bad] == [("logits", True), ("pool", True)], \
        f"table form: the bad image must give one row per layer with a NULL activation, got {bad}"
    assert rw["rows"][0][0] is not None and "pool" in rw["rows"][0][0], \
        f"scalar form: the bad image must give the list of (layer, NULL) entries, got {rw['rows']}"
    assert len(sc["rows"]) == len(tb["rows"]) == 6, (sc["rows"], tb["rows"])
    for a, b in zip(sc["rows"], tb["rows"]):
        assert a[:3] == b[:3], (a, b)
        if a[3] is not None:
            assert np.isclose(float(a[3]), float(b[3]), rtol=1e-5, atol=1e-4), (a, b)


# --------------------------------------------------------------------------
# a seeded corpus of mutated images through both forms


def _png_with_size(data: bytes, w: int, h: int) -> bytes:
    """The same PNG with IHDR width/height replaced (CRC fixed)."""
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", w, h)
    crc = zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF
    return data[:16] + bytes(ihdr) + struct.pack(">I", crc) + data[33:]


def _jpeg_with_size(data: bytes, w: int, h: int) -> bytes:
    """The same JPEG with the SOF0/SOF2 frame size replaced."""
    b = bytearray(data)
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            break
        marker, seglen = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(b)
        i += 2 + seglen
    return bytes(b)


def mutate(data: bytes, fmt: str, rng: np.random.Generator, k: int) -> bytes:
    kind = k % 5
    b = bytearray(data)
    if kind == 0:  # bit flips anywhere after the signature
        for _ in range(int(rng.integers(1, 33))):
            pos = int(rng.integers(8, len(b)))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 1:  # truncation
        return bytes(b[: int(rng.integers(1, len(b)))])
    if kind == 2:  # byte insertions
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.integers(2, len(b)))
            b[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
        return bytes(b)
    if kind == 3:  # a header that claims another size (huge, extreme, zero)
        w, h = [(1, 2_000_000), (2_000_000, 1), (65500, 65500), (0, 10), (1, 65500),
                (40000, 40000), (3, 1)][int(rng.integers(0, 7))]
        if fmt == "PNG":
            return _png_with_size(data, w, h)
        return _jpeg_with_size(data, min(w, 65535), min(h, 65535))
    # a region duplicated, then a few bit flips
    a = int(rng.integers(2, len(b) - 64))
    n = int(rng.integers(16, 2048))
    b[a:a] = b[a:a + n]
    pos = int(rng.integers(8, len(b)))
    b[pos] ^= 0x10
    return bytes(b)


CORPUS_PER_FORMAT = 100


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photos):
    """{'JPEG': [paths], 'PNG': [paths]}, 100 each, from 2 photos per format, seed 13."""
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(13)
    out = {}
    for fmt, srcs in [("JPEG", photos[10:12]), ("PNG", photos[12:14])]:
        bases = []
        for s in srcs:
            with Image.open(s) as im:
                im = im.convert("RGB").resize((160, 120))
                import io
                buf = io.BytesIO()
                im.save(buf, fmt)
                bases.append(buf.getvalue())
        files = []
        for k in range(CORPUS_PER_FORMAT):
            data = mutate(bases[k % 2], fmt, rng, k)
            p = d / f"mut_{fmt.lower()}_{k:03d}.{'jpg' if fmt == 'JPEG' else 'png'}"
            p.write_bytes(data)
            files.append(p)
        out[fmt] = files
    return out


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_mutated_corpus(fmt, corpus, model_path):
    files = corpus[fmt]
    values = ", ".join(f"({lit(p)})" for p in files)
    stmts = [
        f"SELECT path, count(*), bool_and(activation IS NULL), any_value(list_sum(activation)) "
        f"FROM nn_activations({lit(H.MODEL)}, {lst(files)}, layers := ['pool'], skip_bad_images := true) "
        f"GROUP BY path",
        f"SELECT p, a IS NULL, len(a), a[1].activation IS NULL, list_sum(a[1].activation) FROM "
        f"(SELECT p, nn_activations({lit(H.MODEL)}, p, ['pool'], true) AS a FROM (VALUES {values}) t(p))",
    ]
    stmts += [f"SELECT len(nn_activations({lit(H.MODEL)}, {lit(p)}, ['pool'], false)[1].activation)"
              for p in files]
    stmts += [f"SELECT count(*) FROM nn_activations({lit(H.MODEL)}, {lst(files)}, layers := ['pool'])",
              "SELECT 42"]
    s = H.run_py_measured(stmts, timeout=600)
    s.check_alive(n=len(stmts), max_rss_mb=MAX_RSS_MB)
    table, scalar, single = s.results[0], s.results[1], s.results[2:-2]
    whole, alive = s.results[-2], s.results[-1]
    assert alive["rows"] == [[42]]
    assert table["ok"], f"table form with skip_bad_images failed: {table['message'][:500]}"
    assert scalar["ok"], f"scalar form with skip_bad_images failed: {scalar['message'][:500]}"

    failed = set()
    for p, rec in zip(files, single):
        if rec["ok"]:
            assert rec["rows"] == [[POOL_LEN]], (p.name, rec)
        else:
            assert rec["is_duckdb_error"], (p.name, rec)
            assert p.name in rec["message"], f"the error does not name {p.name}: {rec['message'][:300]}"
            failed.add(str(p))
    assert failed, "no mutated file failed: the corpus is not hostile"
    assert len(failed) < len(files), "every mutated file failed: the corpus tests nothing else"

    t_rows = {r[0]: r for r in table["rows"]}
    assert set(t_rows) == {str(p) for p in files}, \
        f"table form: {len(set(map(str, files)) - set(t_rows))} paths have no rows (bad images must give NULL rows)"
    assert all(r[1] == 1 for r in t_rows.values()), "table form: more than one row per (path, layer)"
    assert {p for p, r in t_rows.items() if r[2]} == failed, "table form NULLs != files that fail alone"

    s_rows = {r[0]: r for r in scalar["rows"]}
    assert set(s_rows) == {str(p) for p in files}
    assert not any(r[1] for r in s_rows.values()), "scalar form: a bad image must give (layer, NULL) entries, not NULL"
    assert all(r[2] == 1 for r in s_rows.values())
    assert {p for p, r in s_rows.items() if r[3]} == failed, "scalar form NULLs != files that fail alone"
    for p in set(t_rows) - failed:
        a, b = t_rows[p][3], s_rows[p][4]
        assert np.isclose(float(a), float(b), rtol=1e-5, atol=1e-4), (p, a, b)

    assert not whole["ok"] and whole["is_duckdb_error"], whole
    assert any(os.path.basename(p) in whole["message"] for p in failed), whole["message"][:500]
