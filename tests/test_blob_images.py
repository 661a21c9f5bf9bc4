"""Images as BLOBs: the scalar form over a BLOB column and the table form
over a BLOB[] give exactly the activations of the same files by path;
NULL BLOBs give NULL rows, undecodable ones named errors (or NULL
activations with skip_bad_images), and BLOBs are held to the file size cap.

The reference is the extension's own path input, an independent code path
for reading (DuckDB's file system) that meets the BLOB path only at decoding.
"""
from __future__ import annotations

import duckdb
import pytest

from lc_helpers import sql_str

LAYERS = "['input', 'stem', 'logits']"


def lit(p) -> str:
    return f"'{sql_str(p)}'"


def test_scalar_blob_equals_path(con, model_path, photos):
    files = "[" + ", ".join(lit(p) for p in photos[:4]) + "]"
    rows = con.execute(f"""
        SELECT filename, nn_activations({lit(model_path)}, content, {LAYERS}) = nn_activations({lit(model_path)}, filename, {LAYERS}),
               len(nn_activations({lit(model_path)}, content, {LAYERS}))
        FROM read_blob({files})""").fetchall()
    assert len(rows) == 4
    for name, same, n in rows:
        assert same and n == 3, name


def test_scalar_blob_overloads_take_skip_pool_and_override(con, model_path, photos):
    p = lit(photos[0])
    got = con.execute(f"""
        SELECT nn_activations({lit(model_path)}, content, {LAYERS}, false, 'avg', MAP {{'resize': 'stretch'}})
        FROM read_blob({p})""").fetchone()[0]
    want = con.execute(f"""
        SELECT nn_activations({lit(model_path)}, {p}, {LAYERS}, false, 'avg', MAP {{'resize': 'stretch'}})""").fetchone()[0]
    assert got == want
    outputs = con.execute(f"SELECT nn_activations({lit(model_path)}, content) FROM read_blob({p})").fetchone()[0]
    assert [e["layer"] for e in outputs] == [e["layer"] for e in con.execute(
        f"SELECT nn_activations({lit(model_path)}, {p})").fetchone()[0]]


def test_table_blob_list_equals_paths(con, model_path, photos):
    paths = photos[:3]
    con.execute("SET VARIABLE blobs = (SELECT list(content ORDER BY filename) FROM read_blob("
                + "[" + ", ".join(lit(p) for p in paths) + "]))")
    order = sorted(str(p) for p in paths)
    got = con.execute(f"""
        SELECT image, layer, activation
        FROM nn_activations({lit(model_path)}, getvariable('blobs'), layers := {LAYERS})
        ORDER BY image, layer""").fetchall()
    want = con.execute(f"""
        SELECT path, layer, activation
        FROM nn_activations({lit(model_path)}, [{", ".join(lit(p) for p in order)}], layers := {LAYERS})
        ORDER BY path, layer""").fetchall()
    assert [r[0] for r in got] == [i + 1 for i in range(3) for _ in range(3)]
    assert [(order[r[0] - 1], r[1], r[2]) for r in got] == want


def test_null_blob_gives_null(con, model_path, photos):
    assert con.execute(f"SELECT nn_activations({lit(model_path)}, NULL::BLOB, {LAYERS})").fetchone()[0] is None
    con.execute(f"SET VARIABLE blobs = (SELECT [NULL::BLOB, content, NULL] FROM read_blob({lit(photos[0])}))")
    rows = con.execute(f"""
        SELECT image, layer, activation IS NULL
        FROM nn_activations({lit(model_path)}, getvariable('blobs'), layers := ['input', 'logits'])""").fetchall()
    assert sorted(rows) == [(1, "input", True), (1, "logits", True), (2, "input", False), (2, "logits", False),
                            (3, "input", True), (3, "logits", True)]


def test_undecodable_blob_is_a_named_error_unless_skipped(con, model_path, photos):
    with pytest.raises(duckdb.Error, match=r"BLOB in row 2"):
        con.execute(f"""SELECT nn_activations({lit(model_path)}, b, {LAYERS})
                        FROM (VALUES (1, (SELECT content FROM read_blob({lit(photos[0])}))), (2, 'not an image'::BLOB)) t(i, b)
                        ORDER BY i""").fetchall()
    con.execute(f"SET VARIABLE blobs = (SELECT [content, 'garbage'::BLOB] FROM read_blob({lit(photos[0])}))")
    with pytest.raises(duckdb.Error, match=r"BLOB 2 of the list"):
        con.execute(f"FROM nn_activations({lit(model_path)}, getvariable('blobs'), layers := ['input'])").fetchall()
    rows = con.execute(f"""SELECT image, activation IS NULL FROM nn_activations({lit(model_path)}, getvariable('blobs'),
                           layers := ['input'], skip_bad_images := true) ORDER BY image""").fetchall()
    assert rows == [(1, False), (2, True)]
    skipped = con.execute(f"SELECT nn_activations({lit(model_path)}, 'garbage'::BLOB, ['input'], true)").fetchone()[0]
    assert skipped == [{"layer": "input", "activation": None}]


def test_blob_over_the_size_cap_is_refused(con, model_path):
    """A BLOB over the 256 MB file cap is refused by size, not decoded."""
    with pytest.raises(duckdb.Error, match=r"above the limit of 268435456 bytes"):
        con.execute(f"SELECT nn_activations({lit(model_path)}, repeat('x', 268435457)::BLOB, ['input'])").fetchall()
