"""File systems registered with DuckDB serve model and image paths (issue 13, 2).

Python's `con.register_filesystem(fsspec.filesystem('memory'))` makes
`memory://` paths readable by read_csv; with the extension's files going
through DuckDB's own file system they serve nn_layers, nn_weights and both
forms of nn_activations too, with results identical to the same files read
from disk. Runs in a child process (one connection); comparisons are made in
SQL so that only booleans and counts cross the process boundary.
"""
from __future__ import annotations

import json

import pytest

import lc_helpers as H
from lc_helpers import sql_str

LAYERS = ["input", "stem", "blocks.8", "pool", "logits"]
LAYERS_SQL = "[" + ", ".join(f"'{x}'" for x in LAYERS) + "]"
MEM = "memory://lc"


def lit(p) -> str:
    return f"'{sql_str(p)}'"


SETUP = r"""
import json, pathlib
import fsspec
files = json.loads(FILES)
fs = fsspec.filesystem("memory")
for dst, src in files.items():
    fs.pipe(dst, pathlib.Path(src).read_bytes())
con.register_filesystem(fs)
"""


@pytest.fixture(scope="module")
def session(photos, model_path):
    local = photos[:3]
    files = {"/lc/model.onnx": str(H.MODEL)}
    files.update({f"/lc/photo_{i}.jpg": str(p) for i, p in enumerate(local)})
    mm, ml = lit(f"{MEM}/model.onnx"), lit(H.MODEL)
    mem_photos = [f"{MEM}/photo_{i}.jpg" for i in range(3)]
    values = ", ".join(f"({i}, {lit(p)}, {lit(m)})" for i, (p, m) in enumerate(zip(local, mem_photos)))
    local_names = {str(p): f"photo_{i}.jpg" for i, p in enumerate(local)}
    rename = "CASE " + " ".join(f"WHEN path = {lit(k)} THEN {lit(v)}" for k, v in local_names.items()) + " END"

    def table_join(mem_arg):
        return (f"SELECT count(*), count(*) FILTER (WHERE l.activation = m.activation), "
                f"count(*) FILTER (WHERE l.activation IS NOT NULL) FROM "
                f"(SELECT {rename} AS name, layer, activation FROM nn_activations({ml}, "
                f"[{', '.join(lit(p) for p in local)}], layers := {LAYERS_SQL})) l "
                f"JOIN (SELECT parse_filename(path) AS name, layer, activation FROM nn_activations({mm}, "
                f"{mem_arg}, layers := {LAYERS_SQL})) m USING (name, layer)")

    stmts = {
        "read_csv_sanity": f"SELECT count(*) FROM glob('{MEM}/*.jpg')",
        "nn_layers": (f"SELECT (SELECT list(row(layer, op, shape, size, position) ORDER BY position) "
                      f"FROM nn_layers({ml})) = (SELECT list(row(layer, op, shape, size, position) "
                      f"ORDER BY position) FROM nn_layers({mm})), (SELECT count(*) FROM nn_layers({mm}))"),
        "nn_weights": (f"SELECT (SELECT list(row(tensor, layer, shape, count, mean, std, min, max, near_zero) "
                       f"ORDER BY tensor) FROM nn_weights({ml})) = (SELECT list(row(tensor, layer, shape, "
                       f"count, mean, std, min, max, near_zero) ORDER BY tensor) FROM nn_weights({mm})), "
                       f"(SELECT count(*) FROM nn_weights({mm}))"),
        "scalar": (f"SELECT i, a = b, len(b), list_bool_and(list_transform(b, lambda e: e.activation IS NOT NULL)) "
                   f"FROM (SELECT i, nn_activations({ml}, pl, {LAYERS_SQL}) AS a, "
                   f"nn_activations({mm}, pm, {LAYERS_SQL}) AS b FROM (VALUES {values}) t(i, pl, pm)) ORDER BY i"),
        "scalar_mixed": (f"SELECT nn_activations({mm}, {lit(local[0])}, {LAYERS_SQL}) = "
                         f"nn_activations({ml}, {lit(mem_photos[0])}, {LAYERS_SQL}), "
                         f"nn_activations({ml}, {lit(local[0])}, {LAYERS_SQL}) = "
                         f"nn_activations({ml}, {lit(mem_photos[0])}, {LAYERS_SQL})"),
        "table_list": table_join("[" + ", ".join(lit(p) for p in mem_photos) + "]"),
        "table_glob": table_join(lit(f"{MEM}/*.jpg")),
        "set_paths": f"SET VARIABLE mem_paths = (SELECT list(file ORDER BY file) FROM glob({lit(MEM + '/*.jpg')}))",
        "table_glob_variable": table_join("getvariable('mem_paths')"),
        "alive": "SELECT 42",
    }
    setup = f"FILES = {json.dumps(json.dumps(files))}\n" + SETUP
    s = H.run_py_measured(list(stmts.values()), setup=setup, timeout=300)
    s.check_alive()
    return dict(zip(stmts, s.results)), s


def _ok(rec, what):
    assert rec["ok"], f"{what} on memory:// paths failed: {rec['message'][:600]}"
    return rec["rows"]


def test_memory_fs_is_registered(session):
    res, s = session
    s.check_alive(n=len(res))
    assert _ok(res["read_csv_sanity"], "DuckDB's own glob") == [[3]]
    assert res["alive"]["rows"] == [[42]]


def test_nn_layers_from_memory(session):
    res, _ = session
    same, n = _ok(res.get("nn_layers", {"ok": False, "message": "not run"}), "nn_layers")[0]
    assert n > 100 and same is True, f"nn_layers differs between memory:// and disk ({n} rows)"


def test_nn_weights_from_memory(session):
    res, _ = session
    same, n = _ok(res.get("nn_weights", {"ok": False, "message": "not run"}), "nn_weights")[0]
    assert n > 10 and same is True, f"nn_weights differs between memory:// and disk ({n} rows)"


def test_scalar_form_from_memory(session):
    res, _ = session
    rows = _ok(res.get("scalar", {"ok": False, "message": "not run"}), "scalar nn_activations")
    assert [r[0] for r in rows] == [0, 1, 2]
    for i, same, n, all_present in rows:
        assert n == len(LAYERS) and all_present, (i, n, all_present)
        assert same is True, f"photo {i}: activations from memory:// differ from the local file's"
    mixed = _ok(res.get("scalar_mixed", {"ok": False, "message": "not run"}), "mixed memory/local paths")
    assert mixed == [[True, True]], mixed


def test_glob_on_another_file_system_is_a_named_error(session):
    """The extension expands globs on the local file system only (DuckDB's
    C API has no glob); on memory:// it says so, and DuckDB's own glob()
    through a variable gives the list."""
    res, _ = session
    rec = res["table_glob"]
    assert not rec["ok"] and "globs work on local paths" in rec["message"], rec
    assert res["set_paths"]["ok"], res["set_paths"]


@pytest.mark.parametrize("form", ["table_list", "table_glob_variable"])
def test_table_form_from_memory(session, form):
    res, _ = session
    n, same, present = _ok(res.get(form, {"ok": False, "message": "not run"}), form)[0]
    assert n == 3 * len(LAYERS), f"{form}: {n} joined rows, expected {3 * len(LAYERS)}"
    assert present == n and same == n, f"{form}: {same} of {n} (image, layer) rows identical to disk"
