"""DuckDB's sandbox binds the extension as it binds read_csv (issue 13, 2).

Every file the extension reads or writes (models in nn_layers / nn_weights /
nn_activations, images in both forms of nn_activations, globs, write_png's
output) goes through DuckDB's file system, so `enable_external_access`,
`allowed_directories` and `disabled_filesystems` apply. The expected error
text is taken from read_csv on a path in the same host and the same
connection, not written here; both hosts (Python duckdb 2.0.x and the 1.5.6
shell) are tested, each case list in one child process.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest
from PIL import Image

import lc_helpers as H
from lc_helpers import sql_str

HOSTS = ["python", "cli"]


def lit(p) -> str:
    return f"'{sql_str(p)}'"


def characteristic(message: str) -> str:
    """The part of DuckDB's permission message that does not depend on the path:
    'file system operations are disabled by configuration' for
    'Permission Error: Cannot access file "x" - file system operations are ...'."""
    first = message.strip().splitlines()[0]
    first = re.sub(r"^[A-Za-z ]*Error: ", "", first)
    m = re.match(r'Cannot access file ".*" - (.*)$', first)
    out = (m.group(1) if m else first).strip()
    assert len(out) >= 10, f"cannot find DuckDB's permission text in {message!r}"
    return out


PNG_EXPR = "corr_heatmap(layer_corr(k, v))"
PNG_FROM = ("FROM (VALUES ('a', [1, 2, 3]::FLOAT[]), ('b', [1, 3, 2]::FLOAT[]), "
            "('c', [3, 1, 2]::FLOAT[])) t(k, v)")


@pytest.fixture(scope="module")
def box(tmp_path_factory, photos, model_path):
    root = tmp_path_factory.mktemp("sandbox")
    d = {"root": root, "in": root / "inside", "out": root / "outside"}
    for key in ("in", "out"):
        d[key].mkdir()
        m, p = d[key] / f"model_{key}.onnx", d[key] / f"photo_{key}.jpg"
        for src, dst in [(H.MODEL, m), (photos[0], p)]:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy(src, dst)
        (d[key] / f"table_{key}.csv").write_text("a,b\n1,2\n")
        d["model_" + key], d["photo_" + key], d["csv_" + key] = m, p, d[key] / f"table_{key}.csv"
    return d


def _fresh(path):
    if os.path.exists(path):
        os.unlink(path)
    return path


def file_statements(model, photo, glob_pattern, png_out):
    """name -> SQL for every function that touches a file."""
    return {
        "nn_layers": f"SELECT count(*) FROM nn_layers({lit(model)})",
        "nn_weights": f"SELECT count(*) FROM nn_weights({lit(model)})",
        "scalar": f"SELECT len(nn_activations({lit(model)}, {lit(photo)}, ['pool'])[1].activation)",
        "scalar_default_layers": f"SELECT len(nn_activations({lit(model)}, {lit(photo)}))",
        "table_list": f"SELECT count(*) FROM nn_activations({lit(model)}, [{lit(photo)}], layers := ['pool'])",
        "table_glob": f"SELECT count(*) FROM nn_activations({lit(model)}, {lit(glob_pattern)}, layers := ['pool'])",
        "write_png": f"SELECT write_png({lit(png_out)}, {PNG_EXPR}) {PNG_FROM}",
    }


@pytest.mark.parametrize("host", HOSTS)
def test_external_access_disabled(host, box):
    png = _fresh(box["in"] / f"disabled_{host}.png")
    cases = file_statements(box["model_in"], box["photo_in"], box["in"] / "*.jpg", png)
    stmts = ["SET enable_external_access = false",
             f"SELECT * FROM read_csv({lit(box['csv_in'])})"] + list(cases.values()) + [
        f"SELECT octet_length({PNG_EXPR}) {PNG_FROM}",  # no file involved: still works
        "SELECT 42"]
    s = H.run_host(host, stmts, timeout=120)
    s.check_alive(n=len(stmts))
    ref = s.results[1]
    assert not ref["ok"], f"read_csv was not refused: {ref}"
    text = characteristic(ref["message"])
    for name, rec in zip(cases, s.results[2:]):
        assert not rec["ok"], f"{host}: {name} worked with enable_external_access = false: {str(rec)[:300]}"
        assert rec["is_duckdb_error"], rec
        assert text in rec["message"], \
            f"{host}: {name}: {text!r} (read_csv's text) not in {rec['message'][:400]!r}"
    assert not png.exists(), "write_png wrote a file with enable_external_access = false"
    assert s.results[-2]["ok"] and s.results[-2]["rows"][0][0] > 100, s.results[-2]
    assert s.results[-1]["rows"] == [[42]]


@pytest.mark.parametrize("host", HOSTS)
def test_allowed_directories(host, box):
    inside, outside, root = box["in"], box["out"], box["root"]
    png_in, png_out = _fresh(inside / f"allowed_{host}.png"), _fresh(outside / f"allowed_{host}.png")
    png_dotdot = _fresh(outside / f"dotdot_{host}.png")
    good = file_statements(box["model_in"], box["photo_in"], inside / "*.jpg", png_in)
    bad = {}
    for k, v in file_statements(box["model_out"], box["photo_in"], outside / "*.jpg", png_out).items():
        bad["model outside: " + k] = v
    img_out = file_statements(box["model_in"], box["photo_out"], outside / "*.jpg", png_out)
    for k in ("scalar", "table_list", "table_glob"):
        bad["image outside: " + k] = img_out[k]
    bad["image outside: table list mixed"] = (
        f"SELECT count(*) FROM nn_activations({lit(box['model_in'])}, "
        f"[{lit(box['photo_in'])}, {lit(box['photo_out'])}], layers := ['pool'])")
    bad["glob spanning both folders"] = (
        f"SELECT count(*) FROM nn_activations({lit(box['model_in'])}, {lit(root / '*' / '*.jpg')}, "
        f"layers := ['pool'])")
    bad["image via ..: scalar"] = (
        f"SELECT len(nn_activations({lit(box['model_in'])}, {lit(str(inside) + '/../outside/photo_out.jpg')}, "
        f"['pool'])[1].activation)")
    bad["model via ..: nn_layers"] = f"SELECT count(*) FROM nn_layers({lit(str(inside) + '/../outside/model_out.onnx')})"
    bad["write_png via .."] = f"SELECT write_png({lit(str(inside) + '/../outside/' + png_dotdot.name)}, {PNG_EXPR}) {PNG_FROM}"

    stmts = [f"SET allowed_directories = [{lit(str(inside) + '/')}]",
             "SET enable_external_access = false",
             f"SELECT * FROM read_csv({lit(box['csv_out'])})",
             f"SELECT * FROM read_csv({lit(box['csv_in'])})"]
    n0 = len(stmts)
    stmts += list(good.values()) + list(bad.values()) + ["SELECT 42"]
    s = H.run_host(host, stmts, timeout=180)
    s.check_alive(n=len(stmts))
    assert s.results[0]["ok"] and s.results[1]["ok"], s.results[:2]
    ref, ref_in = s.results[2], s.results[3]
    assert not ref["ok"] and ref_in["ok"], f"read_csv semantics changed: {ref} / {ref_in}"
    text = characteristic(ref["message"])
    res_good = s.results[n0:n0 + len(good)]
    res_bad = s.results[n0 + len(good):-1]
    for name, rec in zip(good, res_good):
        assert rec["ok"], f"{host}: {name} inside the allowed directory failed: {rec['message'][:400]}"
    vals = dict(zip(good, [r["rows"][0][0] for r in res_good]))
    assert vals["nn_layers"] > 100 and vals["nn_weights"] > 10, vals
    assert vals["scalar"] == 1280 and vals["table_list"] == 1 and vals["table_glob"] == 1, vals
    assert png_in.exists(), "write_png inside the allowed directory wrote nothing"
    with Image.open(png_in) as im:
        im.load()
    sizes = {str(os.path.getsize(p)) for p in (box["photo_out"], box["model_out"])}
    for name, rec in zip(bad, res_bad):
        assert not rec["ok"], f"{host}: {name}: outside the allowed directory, yet: {str(rec)[:300]}"
        assert rec["is_duckdb_error"], rec
        assert text in rec["message"], \
            f"{host}: {name}: {text!r} (read_csv's text) not in {rec['message'][:400]!r}"
        leaked = [sz for sz in sizes if re.search(rf"\b{sz}\b", rec["message"])]
        assert not leaked, f"{host}: {name}: the error discloses the size of a file outside: {rec['message'][:400]}"
    assert not png_out.exists() and not png_dotdot.exists(), "write_png wrote outside the allowed directory"
    assert s.results[-1]["rows"] == [[42]]


@pytest.mark.parametrize("host", HOSTS)
def test_disabled_local_file_system(host, box):
    png = _fresh(box["in"] / f"nolocal_{host}.png")
    cases = file_statements(box["model_in"], box["photo_in"], box["in"] / "*.jpg", png)
    names = ["nn_layers", "scalar", "table_list", "write_png"]
    stmts = ["SET disabled_filesystems = 'LocalFileSystem'",
             f"SELECT * FROM read_csv({lit(box['csv_in'])})"] + [cases[n] for n in names] + ["SELECT 42"]
    s = H.run_host(host, stmts, timeout=120)
    s.check_alive(n=len(stmts))
    ref = s.results[1]
    assert s.results[0]["ok"] and not ref["ok"], s.results[:2]
    text = characteristic(ref["message"])
    for name, rec in zip(names, s.results[2:-1]):
        assert not rec["ok"] and text in rec["message"], \
            f"{host}: {name} with LocalFileSystem disabled: {text!r} not in {str(rec)[:400]}"
    assert not png.exists()
    assert s.results[-1]["rows"] == [[42]]


def test_write_png_writes_only_a_complete_png(tmp_path):
    """Eight bytes of PNG signature followed by a shell script are not a PNG."""
    evil, fine = tmp_path / "evil.sh", tmp_path / "fine.png"
    blob = r"'\x89\x50\x4E\x47\x0D\x0A\x1A\x0A#!/bin/sh\x0Aecho pwned\x0A'::BLOB"
    trunc = tmp_path / "truncated.png"
    stmts = [f"SELECT write_png({lit(evil)}, {blob})",
             f"SELECT write_png({lit(trunc)}, unhex(left(hex((SELECT {PNG_EXPR} {PNG_FROM})), 120)))",
             f"SELECT write_png({lit(fine)}, {PNG_EXPR}) {PNG_FROM}",
             "SELECT 42"]
    s = H.run_py_measured(stmts, timeout=60)
    s.check_alive(n=4)
    for rec, p in [(s.results[0], evil), (s.results[1], trunc)]:
        assert not rec["ok"] and rec["is_duckdb_error"], f"write_png accepted a non-PNG: {rec}"
        assert not p.exists(), f"write_png left {p.name} behind"
    assert s.results[2]["ok"], s.results[2]
    with Image.open(fine) as im:
        im.load()
        assert im.format == "PNG"
    assert s.results[-1]["rows"] == [[42]]


@pytest.mark.parametrize("host", ["python"])
def test_files_read_before_the_lockdown_are_not_served_after_it(host, box):
    """A model (and image) read while access was allowed is not served from a
    cache once `enable_external_access = false`: read_csv would re-read the
    file and fail, and so must the extension."""
    m, p = box["model_in"], box["photo_in"]
    stmts = [f"SELECT count(*) FROM nn_layers({lit(m)})",
             f"SELECT len(nn_activations({lit(m)}, {lit(p)}, ['pool'])[1].activation)",
             f"SELECT count(*) FROM read_csv({lit(box['csv_in'])})",
             "SET enable_external_access = false",
             f"SELECT count(*) FROM read_csv({lit(box['csv_in'])})",
             f"SELECT count(*) FROM nn_layers({lit(m)})",
             f"SELECT len(nn_activations({lit(m)}, {lit(p)}, ['pool'])[1].activation)",
             "SELECT 42"]
    s = H.run_host(host, stmts, timeout=120)
    s.check_alive(n=len(stmts))
    assert all(s.results[k]["ok"] for k in range(4)), s.results[:4]
    ref = s.results[4]
    assert not ref["ok"], ref
    text = characteristic(ref["message"])
    for name, rec in zip(["nn_layers", "nn_activations"], s.results[5:7]):
        assert not rec["ok"] and text in rec["message"], \
            f"{name} served a file read before enable_external_access = false: {str(rec)[:300]}"
    assert s.results[-1]["rows"] == [[42]]
