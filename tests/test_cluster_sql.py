"""The SQL functions under layercorr.cluster, in one DuckDB process:
layer_corr_block (one block of a layer's matrix), activation_sum (the
column-mean pass of gram) and layer_cross (sums for feature-space CKA).

References: layer_corr on the whole layer (the function the blocks must
reproduce) and numpy/scipy from the definitions.
"""
from __future__ import annotations

import duckdb
import numpy as np
import pytest
from scipy.stats import rankdata

import layercorr

METHODS = ["pearson", "spearman", "cosine", "euclidean", "gram"]


@pytest.fixture()
def con(ext_path):
    c = layercorr.connect(extension=str(ext_path))
    rng = np.random.default_rng(7)
    n, d = 11, 37
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[x < -0.5] = 0  # ties for spearman
    keys = [f"img{i:02d}" for i in range(n)][::-1]  # arrival order not sorted
    c.execute("CREATE TABLE acts AS SELECT unnest(?::VARCHAR[]) AS path, "
              "unnest(?::FLOAT[][]) AS activation", [keys, x.tolist()])
    yield c, {k: x[i].astype(np.float64) for i, k in enumerate(keys)}
    c.close()


def _block(con, method, rows, cols, center=None):
    both = sorted(set(rows) & set(cols))
    side = ("CASE WHEN list_contains($b, path) THEN 'both' WHEN list_contains($r, path) "
            "THEN 'row' ELSE 'col' END")
    extra = ", $c::DOUBLE[]" if center is not None else ""
    params = {"b": both, "r": rows, "all": sorted(set(rows) | set(cols)), "m": method}
    if center is not None:
        params["c"] = list(center)
    return con.execute(
        f"SELECT layer_corr_block(path, activation, {side}, $m{extra}) FROM acts "
        "WHERE list_contains($all, path)", params).fetchone()[0]


@pytest.mark.parametrize("method", METHODS)
def test_blocks_equal_layer_corr(con, method):
    con, xs = con
    whole = con.execute("SELECT layer_corr(path, activation, ?) FROM acts", [method]).fetchone()[0]
    keys = list(whole["keys"])
    full = np.array(whole["matrix"], dtype=np.float64)
    center = None
    if method == "gram":
        s = con.execute("SELECT activation_sum(activation) FROM acts").fetchone()[0]
        assert s["n"] == len(keys)
        center = np.array(s["sum"]) / s["n"]
        np.testing.assert_allclose(center, np.mean([xs[k] for k in keys], axis=0), atol=1e-12)
    scale = np.abs(full).max() if method in ("euclidean", "gram") else 1.0
    for rows, cols in ((keys[:4], keys[6:]), (keys[2:7], keys[4:9]), (keys, keys)):
        b = _block(con, method, rows, cols, center)
        assert list(b["row_keys"]) == sorted(rows) and list(b["col_keys"]) == sorted(cols)
        assert b["method"] == method
        got = np.array(b["matrix"], dtype=np.float64)
        want = full[np.ix_([keys.index(k) for k in sorted(rows)],
                           [keys.index(k) for k in sorted(cols)])]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * scale, err_msg=method)


def test_blocks_against_numpy_definitions(con):
    con, xs = con
    rows, cols = ["img00", "img03", "img05"], ["img01", "img05", "img09"]
    X = np.stack([xs[k] for k in rows])
    Y = np.stack([xs[k] for k in cols])
    ref = {
        "pearson": np.corrcoef(X, Y)[:3, 3:],
        "spearman": np.corrcoef(rankdata(X, axis=1), rankdata(Y, axis=1))[:3, 3:],
        "cosine": (X / np.linalg.norm(X, axis=1, keepdims=True))
        @ (Y / np.linalg.norm(Y, axis=1, keepdims=True)).T,
        "euclidean": np.linalg.norm(X[:, None, :] - Y[None, :, :], axis=2),
    }
    for method, want in ref.items():
        got = np.array(_block(con, method, rows, cols)["matrix"], dtype=np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=method)
    mu = np.mean(list(xs.values()), axis=0)
    got = np.array(_block(con, "gram", rows, cols, mu)["matrix"], dtype=np.float64)
    np.testing.assert_allclose(got, (X - mu) @ (Y - mu).T, rtol=1e-6, atol=1e-5)


def test_cross_sums_and_feature_cka(con):
    con, _ = con
    rng = np.random.default_rng(3)
    n = 40
    a = rng.normal(size=(n, 6)).astype(np.float32)
    b = (a[:, :4] @ rng.normal(size=(4, 9)) + rng.normal(size=(n, 9))).astype(np.float32)
    con.execute("CREATE TABLE two AS SELECT unnest(?::FLOAT[][]) AS a, unnest(?::FLOAT[][]) AS b",
                [a.tolist(), b.tolist()])
    s = con.execute("SELECT layer_cross(a, b) FROM two").fetchone()[0]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert s["n"] == n
    np.testing.assert_allclose(s["sum_a"], a64.sum(0), rtol=1e-12)
    np.testing.assert_allclose(s["sum_b"], b64.sum(0), rtol=1e-12)
    np.testing.assert_allclose(np.array(s["cross"]), a64.T @ b64, rtol=1e-12, atol=1e-12)
    # sums of two halves add up to the whole
    con.execute("ALTER TABLE two ADD COLUMN half INTEGER DEFAULT 0")
    con.execute("UPDATE two SET half = (rowid % 2)")
    parts = con.execute("SELECT layer_cross(a, b) FROM two GROUP BY half").fetchall()
    total = sum(np.array(p[0]["cross"]) for p in parts)
    np.testing.assert_allclose(total, a64.T @ b64, rtol=1e-12, atol=1e-12)
    # NULL pairs are skipped, a half-NULL pair is an error
    con.execute("INSERT INTO two VALUES (NULL, NULL, 0)")
    assert con.execute("SELECT layer_cross(a, b).n FROM two").fetchone()[0] == n
    con.execute("INSERT INTO two VALUES ([1, 2, 3, 4, 5, 6], NULL, 0)")
    with pytest.raises(duckdb.Error, match="NULL"):
        con.execute("SELECT layer_cross(a, b) FROM two").fetchall()


def test_named_errors(con):
    con, _ = con
    def err(sql, *words, params=None):
        with pytest.raises(duckdb.Error) as e:
            con.execute(sql, params).fetchall()
        for w in words:
            assert w in str(e.value), (w, str(e.value))

    err("SELECT layer_corr_block(path, activation, 'diagonal', 'pearson') FROM acts",
        "diagonal", "row, col, both")
    err("SELECT layer_corr_block(path, activation, 'both', 'kendall') FROM acts", "kendall")
    err("SELECT layer_corr_block(path, activation, 'row', 'pearson') FROM acts",
        "0 col keys")
    err("SELECT layer_corr_block(k, a, 'both', 'pearson') FROM (VALUES ('x', [1, 2, 3]::FLOAT[]), "
        "('y', [1, 2]::FLOAT[])) t(k, a)", "'y'", "2 values", "3")
    err("SELECT layer_corr_block(k, a, 'both', 'pearson') FROM (VALUES ('x', [1, 2, 3]::FLOAT[]), "
        "('x', [3, 2, 1]::FLOAT[])) t(k, a)", "duplicate key 'x'")
    err("SELECT layer_corr_block(k, a, 'both', 'pearson') FROM (VALUES ('x', [1, 2, 3]::FLOAT[]), "
        "('c', [2, 2, 2]::FLOAT[])) t(k, a)", "'c'")
    err("SELECT layer_corr_block(k, a, 'both', 'gram', [0, 0]::DOUBLE[]) FROM (VALUES "
        "('x', [1, 2, 3]::FLOAT[]), ('y', [3, 2, 1]::FLOAT[])) t(k, a)", "center", "2 values")
    err("SELECT activation_sum(a) FROM (VALUES ([1, 2]::FLOAT[]), ([1, 2, 3]::FLOAT[])) t(a)",
        "3 values", "2")
    err("SELECT layer_cross(a, b) FROM (VALUES ([1, 2]::FLOAT[], [1]::FLOAT[]), "
        "([1, 2, 3]::FLOAT[], [1]::FLOAT[])) t(a, b)", "3 values")
    # sized against memory_limit before allocating (aggregates get no client
    # context: layercorr_settings() makes the extension read the new limit)
    con.execute("SET memory_limit = '20MB'")
    con.execute("FROM layercorr_settings()").fetchall()
    err("SELECT layer_cross(a, a) FROM (SELECT range(2500)::FLOAT[] AS a)", "memory_limit")
    err("SELECT layer_corr_block(i::VARCHAR, a, 'both', 'pearson') FROM "
        "(SELECT i, [i + j FOR j IN range(3000)]::FLOAT[] AS a FROM range(2000) t(i))",
        "memory_limit")
    # over the cap whatever memory_limit says
    con.execute("SET memory_limit = '20GB'")
    con.execute("FROM layercorr_settings()").fetchall()
    err("SELECT layer_cross(a, a) FROM (SELECT range(20000)::FLOAT[] AS a)", "2^27")


def test_nulls_and_empty_groups(con):
    """NULL activations are left out, a NULL key or NULL element is a named
    error, an empty group gives n = 0 sums (nothing to divide) and an empty
    block an error; the host answers afterwards, each function named once."""
    con, _ = con
    rows = ("(VALUES ('x', [1, 2, 3]::FLOAT[]), ('y', NULL), ('z', [3, 1, 2]::FLOAT[])) t(k, a)")
    b = con.execute(f"SELECT layer_corr_block(k, a, 'both', 'pearson') FROM {rows}").fetchone()[0]
    assert b["row_keys"] == ["x", "z"] and b["col_keys"] == ["x", "z"]
    assert np.allclose(b["matrix"], np.corrcoef([[1, 2, 3], [3, 1, 2]]), atol=1e-6)
    s = con.execute(f"SELECT activation_sum(a) FROM {rows}").fetchone()[0]
    assert s["n"] == 2 and s["sum"] == [4.0, 3.0, 5.0]
    empty = con.execute("SELECT activation_sum(a), layer_cross(a, a) FROM "
                        "(VALUES ([1, 2]::FLOAT[])) t(a) WHERE false").fetchone()
    assert empty[0]["n"] == 0 and empty[0]["sum"] is None
    assert empty[1]["n"] == 0 and empty[1]["cross"] is None
    for sql, words in [
        ("SELECT layer_corr_block(k, a, 'both', 'pearson') FROM (VALUES ('x', [1, 2, 3]::FLOAT[])) "
         "t(k, a) WHERE false", ["0 row keys"]),
        ("SELECT layer_corr_block(k, a, 'both', 'pearson') FROM (VALUES ('x', [1, 2, 3]::FLOAT[]), "
         "(NULL, [1, 3, 2]::FLOAT[])) t(k, a)", ["key is NULL"]),
        ("SELECT activation_sum(a) FROM (VALUES ([1, NULL, 2]::FLOAT[])) t(a)", ["element 2"]),
        ("SELECT layer_cross(a, b) FROM (VALUES ([1, 2]::FLOAT[], NULL::FLOAT[]), "
         "([1, 2]::FLOAT[], [3]::FLOAT[])) t(a, b)", ["NULL and the other is not"]),
    ]:
        with pytest.raises(duckdb.Error) as e:
            con.execute(sql).fetchall()
        msg = str(e.value)
        for w in words:
            assert w in msg, (w, msg)
        name = sql.split("SELECT ")[1].split("(")[0]
        assert msg.count(name + ":") == 1, f"{name} named more than once: {msg}"
    assert con.execute("SELECT 42").fetchone()[0] == 42


@pytest.mark.parametrize("arrow", [True, False])
def test_write_matrix_round_trip(ext_path, tmp_path, arrow):
    """The assembly's writer, with and without pyarrow: layer_corr's fields, values exact."""
    from layercorr.blocks import write_matrix

    con = layercorr.connect(extension=str(ext_path))
    rng = np.random.default_rng(1)
    n = 37
    full = rng.normal(size=(n, n)).astype(np.float32)
    keys = [f"k{i:03d}" for i in range(n)]
    dest = str(tmp_path / "layer-x.parquet")
    write_matrix(con, "x", keys, full, "gram", dest, arrow=arrow)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer-x.parquet"]
    cols = con.execute(f"DESCRIBE SELECT * FROM '{dest}'").fetchall()
    assert [(c[0], c[1]) for c in cols] == [("layer", "VARCHAR"), ("keys", "VARCHAR[]"),
                                            ("matrix", "FLOAT[][]"), ("method", "VARCHAR")]
    layer, k, m, method = con.execute(f"SELECT * FROM '{dest}'").fetchone()
    assert layer == "x" and k == keys and method == "gram"
    assert np.array_equal(np.array(m, dtype=np.float32), full)


def _dataset(con, folder, rows, writer="duckdb"):
    """Writes rows (path, layer, activation or None) as two shard files; returns their paths."""
    files = []
    for i, part in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2:])):
        f = str(folder / f"shard-{i:05d}.parquet")
        if writer == "duckdb":
            con.execute("COPY (SELECT unnest(?::VARCHAR[]) AS path, unnest(?::VARCHAR[]) AS layer, "
                        "unnest(?::FLOAT[][]) AS activation) TO '" + f + "' (FORMAT parquet)",
                        [[r[0] for r in part], [r[1] for r in part], [r[2] for r in part]])
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"path": [r[0] for r in part], "layer": [r[1] for r in part],
                                     "activation": pa.array([r[2] for r in part],
                                                            type=pa.list_(pa.float32()))}), f)
        files.append(f)
    return files


@pytest.mark.parametrize("case", ["clean", "null", "empty", "pyarrow"])
def test_layer_keys_and_null_footers(ext_path, tmp_path, case):
    """The matrices driver's key listing: from the footers when they prove no NULL
    activation, else from the column; both equal the keys read from the data."""
    from layercorr import _ray as R
    from layercorr.blocks import _source, layer_keys

    con = layercorr.connect(extension=str(ext_path))
    rng = np.random.default_rng(3)
    rows = [(f"img{i:02d}", layer, rng.normal(size=5).tolist())
            for i in range(8)[::-1] for layer in ("a", "b")]
    if case == "null":
        rows[3] = (rows[3][0], rows[3][1], None)  # a skipped bad image in one layer
    if case == "empty":
        rows[5] = (rows[5][0], rows[5][1], [])
    files = _dataset(con, tmp_path, rows, "pyarrow" if case == "pyarrow" else "duckdb")
    # what the footers may claim, against the data itself
    nulls = sum(r[2] is None for r in rows)
    assert R.no_null_activations(con, files) == (case == "clean")
    assert nulls == (1 if case == "null" else 0)
    _source(con, files, str(tmp_path))
    keys = layer_keys(con, files, ["a", "b"], str(tmp_path))
    want = {lay: sorted(p for p, x, a in rows if x == lay and a is not None) for lay in "ab"}
    assert keys == want
    # a key twice in a layer is named
    dup = _dataset(con, tmp_path, rows + [("img03", "b", [1.0] * 5)])
    _source(con, dup, str(tmp_path))
    with pytest.raises(ValueError, match="duplicate key 'img03' in layer b"):
        layer_keys(con, dup, ["a", "b"], str(tmp_path))
    con.close()
