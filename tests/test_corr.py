"""layer_corr, layer_similarity, rsa, corr_order against numpy / scipy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as ss
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import cdist, squareform

import lc_helpers as H
from lc_helpers import sql_str

LAYERS = ["input", "stem", "blocks.2", "blocks.5", "blocks.10", "head", "pool", "logits"]
N_REAL = 24


def load_table(con, name, keys, X, layer=None):
    """CREATE TABLE name(k VARCHAR, v FLOAT[] [, layer VARCHAR]) from rows of X (None = NULL)."""
    if layer is None:
        con.execute(f"CREATE OR REPLACE TABLE {name} (k VARCHAR, v FLOAT[])")
        con.executemany(f"INSERT INTO {name} VALUES (?, ?)",
                        [(k, None if x is None else np.asarray(x, np.float32).tolist()) for k, x in zip(keys, X)])
    else:
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} (layer VARCHAR, k VARCHAR, v FLOAT[])")
        con.executemany(f"INSERT INTO {name} VALUES (?, ?, ?)",
                        [(layer, k, np.asarray(x, np.float32).tolist()) for k, x in zip(keys, X)])


def corr(con, table, method=None, where=""):
    m = "" if method is None else f", '{method}'"
    keys, mat = con.execute(f"SELECT m.keys, m.matrix FROM (SELECT layer_corr(k, v{m}) AS m FROM {table} {where})").fetchone()
    return list(keys), np.array(mat, dtype=np.float64)


def random_data(n=50, d=3000, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((4, d))
    X = rng.standard_normal((n, 4)) @ base + 0.7 * rng.standard_normal((n, d))
    X[::7] += 1000.0  # rows with a large mean: 1000 + noise
    X[3::11] *= 50.0
    keys = [f"img{i:03d}" for i in range(n)]
    perm = rng.permutation(n)  # insert in a shuffled order
    return [keys[i] for i in perm], X[perm].astype(np.float32), keys, X.astype(np.float32)


@pytest.fixture
def rand(con):
    kshuf, Xshuf, keys, X = random_data()
    load_table(con, "r", kshuf, Xshuf)
    return keys, X.astype(np.float64)


def assert_matrix(name, got, want, atol):
    assert got.shape == want.shape, f"{name}: {got.shape} vs {want.shape}"
    d = np.abs(got - want)
    i, j = np.unravel_index(d.argmax(), d.shape)
    assert d.max() <= atol, f"{name}: max abs diff {d.max():.3g} at [{i}][{j}] ({got[i, j]} vs {want[i, j]})"


# --------------------------------------------------------------------------
# layer_corr on random data


def test_pearson_vs_numpy(con, rand):
    keys, X = rand
    k, m = corr(con, "r")
    assert k == keys == sorted(keys)
    assert_matrix("pearson", m, np.corrcoef(X), 1e-5)
    assert_matrix("pearson explicit", corr(con, "r", "pearson")[1], m, 0)


def test_spearman_vs_scipy(con):
    rng = np.random.default_rng(1)
    X = np.round(rng.standard_normal((30, 500)) + rng.standard_normal((30, 1)) * rng.standard_normal(500), 1)
    X[5] = np.exp(X[5])  # monotone transform: same ranks
    X = X.astype(np.float32)
    keys = [f"s{i:02d}" for i in range(30)]
    assert any(len(np.unique(x)) < len(x) for x in X), "the data should have ties"
    load_table(con, "sp", keys, X)
    k, m = corr(con, "sp", "spearman")
    assert k == keys
    want = ss.spearmanr(X.astype(np.float64), axis=1)[0]
    assert_matrix("spearman", m, want, 1e-5)


def test_cosine_vs_scipy(con, rand):
    keys, X = rand
    _, m = corr(con, "r", "cosine")
    assert_matrix("cosine", m, 1 - cdist(X, X, "cosine"), 1e-5)


def test_euclidean_vs_scipy(con, rand):
    keys, X = rand
    _, m = corr(con, "r", "euclidean")
    want = cdist(X, X, "euclidean")
    assert_matrix("euclidean", m, want, 1e-5 * want.max())
    assert np.abs(np.diag(m)).max() <= 1e-3


def test_gram_vs_numpy(con, rand):
    keys, X = rand
    _, m = corr(con, "r", "gram")
    Xc = X - X.mean(axis=0)
    want = Xc @ Xc.T
    assert_matrix("gram", m, want, 1e-5 * np.abs(want).max())


def test_keys_sorted_and_null_skipped(con):
    rng = np.random.default_rng(2)
    keys = ["zeta", "alpha", "Beta", "10", "9", "gamma", "nul"]
    X = [rng.standard_normal(40) for _ in keys]
    X[keys.index("nul")] = None
    load_table(con, "ks", keys, X)
    k, m = corr(con, "ks")
    kept = [key for key, x in zip(keys, X) if x is not None]
    assert k == sorted(kept)  # byte order: digits, upper case, lower case
    order = [keys.index(key) for key in k]
    want = np.corrcoef(np.stack([np.asarray(X[i], np.float32).astype(np.float64) for i in order]))
    assert_matrix("pearson with NULL row", m, want, 1e-5)


def test_float32_extremes(con):
    """Tiny magnitudes and large offsets: standardising must not under/overflow."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 256))
    X = np.concatenate([base * 1e-20, base * 1e15, base + 1e6]).astype(np.float32)
    keys = [f"e{i:02d}" for i in range(len(X))]
    load_table(con, "ex", keys, X)
    _, m = corr(con, "ex")
    assert_matrix("extreme magnitudes", m, np.corrcoef(X.astype(np.float64)), 1e-4)


def test_float32_huge_values_correct_or_named_error(con):
    """|x| ~ 1e20 (squares overflow float32): a correct matrix, or an error naming the key."""
    import duckdb
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.standard_normal((3, 64)), rng.standard_normal((1, 64)) * 1e20]).astype(np.float32)
    keys = ["h0", "h1", "h2", "huge_key_q"]
    load_table(con, "hx", keys, X)
    try:
        _, m = corr(con, "hx")
    except duckdb.Error as e:
        assert "huge_key_q" in str(e), str(e)
    else:
        assert_matrix("huge magnitudes", m, np.corrcoef(X.astype(np.float64)), 1e-4)


# --------------------------------------------------------------------------
# real activations


@pytest.fixture(scope="module")
def real(mcon, photos):
    """Activations of N_REAL photos for LAYERS, in a table acts(layer, k, v) and in numpy."""
    values = ", ".join(f"('{sql_str(p)}', '{p.stem}')" for p in photos[:N_REAL])
    layers = "[" + ", ".join(f"'{x}'" for x in LAYERS) + "]"
    mcon.execute(f"""CREATE OR REPLACE TABLE acts AS
        SELECT k, e.layer AS layer, e.activation AS v FROM (
          SELECT k, unnest(nn_activations('{sql_str(H.MODEL)}', path, {layers})) AS e FROM (VALUES {values}) t(path, k))""")
    arrays = {}
    for layer in LAYERS:
        r = mcon.execute(f"SELECT k, v FROM acts WHERE layer = '{layer}' ORDER BY k").fetchnumpy()
        arrays[layer] = ([str(x) for x in r["k"]], np.stack(r["v"]).astype(np.float64))
    return arrays


@pytest.mark.parametrize("method", ["pearson", "spearman", "cosine", "euclidean", "gram"])
def test_real_layer_vs_reference(mcon, real, method):
    keys, X = real["blocks.5"]
    got_keys, m = corr(mcon, "acts", method, "WHERE layer = 'blocks.5'")
    assert got_keys == keys
    want = {"pearson": lambda: np.corrcoef(X),
            "spearman": lambda: ss.spearmanr(X, axis=1)[0],
            "cosine": lambda: 1 - cdist(X, X, "cosine"),
            "euclidean": lambda: cdist(X, X),
            "gram": lambda: (X - X.mean(0)) @ (X - X.mean(0)).T}[method]()
    scale = 1.0 if method in ("pearson", "spearman", "cosine") else np.abs(want).max()
    assert_matrix(method, m, want, 1e-5 * scale)


def test_group_by_layers(mcon, real):
    rows = mcon.execute("SELECT layer, m.keys, m.matrix FROM (SELECT layer, layer_corr(k, v) AS m FROM acts GROUP BY layer)").fetchall()
    assert sorted(r[0] for r in rows) == sorted(LAYERS)
    for layer, keys, mat in rows:
        k, X = real[layer]
        assert list(keys) == k
        assert_matrix(layer, np.array(mat, np.float64), np.corrcoef(X), 1e-5)


# --------------------------------------------------------------------------
# second order: layer_similarity, rsa


def upper(m):
    return m[np.triu_indices(m.shape[0], 1)]


def cka(a, b):
    n = a.shape[0]
    h = np.eye(n) - 1.0 / n
    a, b = h @ a @ h, h @ b @ h
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def corr_mats(mcon, real):
    """layer -> (keys, matrix) as returned by layer_corr (float32 values), and table lc."""
    pos = ", ".join(f"('{x}', {i})" for i, x in enumerate(LAYERS))
    mcon.execute(f"""CREATE OR REPLACE TABLE lc AS
        SELECT a.layer, p.pos, layer_corr(k, v) AS m, layer_corr(k, v, 'gram') AS g
        FROM acts a JOIN (VALUES {pos}) p(layer, pos) USING (layer) GROUP BY a.layer, p.pos""")
    out = {}
    for layer, keys, mat, gram in mcon.execute("SELECT layer, m.keys, m.matrix, g.matrix FROM lc").fetchall():
        out[layer] = (list(keys), np.array(mat, np.float64), np.array(gram, np.float64))
    return out


def similarity(con, method=None, what="m"):
    meth = "" if method is None else f", '{method}'"
    layers, mat = con.execute(f"SELECT s.layers, s.matrix FROM (SELECT layer_similarity(layer, {what}{meth} ORDER BY pos) AS s FROM lc)").fetchone()
    return list(layers), np.array(mat, np.float64)


def test_layer_similarity_pearson(mcon, corr_mats):
    layers, s = similarity(mcon)
    assert layers == LAYERS
    tri = np.stack([upper(corr_mats[x][1]) for x in LAYERS])
    assert_matrix("layer_similarity pearson", s, np.corrcoef(tri), 1e-6)
    # the structure is there: neighbouring layers are more alike than input vs logits
    assert s[0, 1] > s[0, -1]


def test_layer_similarity_spearman(mcon, corr_mats):
    layers, s = similarity(mcon, "spearman")
    assert layers == LAYERS
    tri = np.stack([upper(corr_mats[x][1]) for x in LAYERS])
    assert_matrix("layer_similarity spearman", s, ss.spearmanr(tri, axis=1)[0], 1e-6)


@pytest.mark.parametrize("what", ["m", "g"])
def test_layer_similarity_cka(mcon, corr_mats, what):
    layers, s = similarity(mcon, "cka", what)
    assert layers == LAYERS
    idx = 1 if what == "m" else 2
    want = np.array([[cka(corr_mats[a][idx], corr_mats[b][idx]) for b in LAYERS] for a in LAYERS])
    assert_matrix(f"layer_similarity cka on {what}", s, want, 1e-6)


def test_layer_similarity_order_by(mcon):
    layers, _ = mcon.execute("SELECT s.layers, s.matrix FROM (SELECT layer_similarity(layer, m ORDER BY pos DESC) AS s FROM lc)").fetchone()
    assert list(layers) == LAYERS[::-1]


@pytest.mark.parametrize("method", ["pearson", "spearman", "cka"])
def test_rsa_equals_layer_similarity(mcon, corr_mats, method):
    _, s = similarity(mcon, method)
    r = mcon.execute(f"SELECT a.pos, b.pos, rsa(a.m, b.m, '{method}') FROM lc a, lc b").fetchall()
    assert len(r) == len(LAYERS) ** 2
    got = np.full((len(LAYERS), len(LAYERS)), np.nan)
    for i, j, v in r:
        got[i, j] = v
    assert_matrix(f"rsa {method}", got, s, 1e-6)
    if method == "pearson":
        dflt = mcon.execute("SELECT rsa(a.m, b.m) FROM lc a, lc b WHERE a.pos = 1 AND b.pos = 6").fetchone()[0]
        assert abs(dflt - s[1, 6]) <= 1e-9


# --------------------------------------------------------------------------
# corr_order


def scipy_order(keys, r):
    z = linkage(squareform(1 - r, checks=False), "average")
    return [keys[i] for i in leaves_list(z)], z


def test_corr_order_random(con, rand):
    keys, X = rand
    k, m = corr(con, "r")
    got = con.execute("SELECT corr_order(layer_corr(k, v)) FROM r").fetchone()[0]
    want, z = scipy_order(k, m)
    assert sorted(got) == sorted(k), "not a permutation of the keys"
    heights = np.sort(z[:, 2])
    assert np.diff(heights).min() > 1e-6, "test data has tied merge heights"
    assert list(got) == want


def test_corr_order_real(mcon, corr_mats):
    for layer in ("input", "blocks.5", "logits"):
        keys, m, _ = corr_mats[layer]
        got = mcon.execute(f"SELECT corr_order(m) FROM lc WHERE layer = '{layer}'").fetchone()[0]
        want, z = scipy_order(keys, m)
        assert sorted(got) == sorted(keys)
        if list(got) != want:
            # ties may make the order ambiguous: then only the same dendrogram is required
            h = np.sort(z[:, 2])
            assert np.diff(h).min() < 1e-6, f"{layer}: order {got} != scipy {want}, no ties"
            assert_same_dendrogram(keys, m, list(got))


def assert_same_dendrogram(keys, r, order):
    """`order` is a leaf order of scipy's tree: every cluster is contiguous in it."""
    z = linkage(squareform(1 - r, checks=False), "average")
    n = len(keys)
    members = {i: [i] for i in range(n)}
    pos = {keys[i]: order.index(keys[i]) for i in range(n)}
    for c, (a, b, _, _) in enumerate(z):
        members[n + c] = members[int(a)] + members[int(b)]
        p = sorted(pos[keys[i]] for i in members[n + c])
        assert p[-1] - p[0] + 1 == len(p), "a cluster is split in the order"


def test_corr_order_ties(con):
    """Two tight pairs at equal distance: any order keeping the pairs together is right."""
    m = "[[1, 0.9, 0.1, 0.1], [0.9, 1, 0.1, 0.1], [0.1, 0.1, 1, 0.9], [0.1, 0.1, 0.9, 1]]"
    got = con.execute(f"SELECT corr_order({{'keys': ['a', 'b', 'c', 'd'], 'matrix': {m}}}::STRUCT(keys VARCHAR[], matrix FLOAT[][]))").fetchone()[0]
    assert sorted(got) == ["a", "b", "c", "d"]
    assert abs(got.index("a") - got.index("b")) == 1 and abs(got.index("c") - got.index("d")) == 1
    r = np.array([[1, 0.9, 0.1, 0.1], [0.9, 1, 0.1, 0.1], [0.1, 0.1, 1, 0.9], [0.1, 0.1, 0.9, 1]])
    assert_same_dendrogram(["a", "b", "c", "d"], r, list(got))


# --------------------------------------------------------------------------
# errors (in a child process: a crash must not take the test run down)


ROWS3 = "('a', [1, 2, 3]::FLOAT[]), ('b', [3, 1, 2]::FLOAT[])"


@pytest.mark.parametrize("sql,needles", [
    (f"SELECT layer_corr(k, v) FROM (VALUES {ROWS3}, ('short_k', [1, 2]::FLOAT[])) t(k, v)", ["short_k"]),
    (f"SELECT layer_corr(k, v) FROM (VALUES {ROWS3}, ('dup_key_q', [2, 2, 1]::FLOAT[]), ('dup_key_q', [1, 2, 2]::FLOAT[])) t(k, v)",
     ["dup_key_q"]),
    ("SELECT layer_corr(k, v) FROM (VALUES ('only_k', [1, 2, 3]::FLOAT[])) t(k, v)", []),
    (f"SELECT layer_corr(k, v) FROM (VALUES {ROWS3}, ('const_k', [4, 4, 4]::FLOAT[])) t(k, v)", ["const_k"]),
    (f"SELECT layer_corr(k, v, 'spearman') FROM (VALUES {ROWS3}, ('const_k', [4, 4, 4]::FLOAT[])) t(k, v)", ["const_k"]),
    (f"SELECT layer_corr(k, v, 'pearsonn') FROM (VALUES {ROWS3}) t(k, v)",
     ["pearsonn", "pearson", "spearman", "cosine", "euclidean", "gram"]),
    ("SELECT layer_similarity(l, m) FROM (SELECT 'L1' l, {'keys': ['a', 'b', 'c'], 'matrix': [[1, .5, .2], [.5, 1, .1], [.2, .1, 1]]}::STRUCT(keys VARCHAR[], matrix FLOAT[][]) m "
     "UNION ALL SELECT 'L2', {'keys': ['a', 'b', 'x_other'], 'matrix': [[1, .5, .2], [.5, 1, .1], [.2, .1, 1]]}::STRUCT(keys VARCHAR[], matrix FLOAT[][]))", ["key"]),
    ("SELECT layer_similarity(l, m, 'ckaa') FROM (SELECT 'L1' l, {'keys': ['a', 'b', 'c'], 'matrix': [[1, .5, .2], [.5, 1, .1], [.2, .1, 1]]}::STRUCT(keys VARCHAR[], matrix FLOAT[][]) m)",
     ["ckaa", "pearson", "spearman", "cka"]),
], ids=["lengths", "duplicate", "one_row", "zero_variance", "zero_variance_spearman", "method",
        "similarity_keys", "similarity_method"])
def test_errors(pychild, sql, needles):
    s = pychild([sql, "SELECT 42"])
    assert not s.crashed, f"host crashed: {H.describe_returncode(s.returncode)}\n{s.stderr[-2000:]}"
    assert len(s.results) == 2, s.stderr[-2000:]
    bad, alive = s.results
    assert not bad["ok"] and bad["is_duckdb_error"], bad
    msg = bad["message"]
    for n in needles:
        assert n.lower() in msg.lower(), f"{n!r} not in {msg!r}"
    assert alive["rows"] == [[42]]


def test_pearson_larger_matrix(con):
    """N = 200, D = 20000 pearson vs numpy."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 20000)).astype(np.float32)
    X[:, :100] += rng.standard_normal((200, 1)).astype(np.float32) * 5
    con.execute("CREATE TABLE big AS SELECT 'b' || lpad(i::VARCHAR, 3, '0') AS k, v FROM "
                "(SELECT unnest(range(200)) AS i, unnest(?::FLOAT[][]) AS v)", [X.tolist()])
    k, m = corr(con, "big")
    assert len(k) == 200
    assert_matrix("pearson N=200 D=20000", m, np.corrcoef(X.astype(np.float64)), 1e-5)


# --------------------------------------------------------------------------
# rows spilled to a temporary file (SET layercorr_spill_mb)

def set_option(con, name, value):
    """SET an option; `layercorr_settings()` makes the aggregates see it
    (they get no client context of their own)."""
    con.execute(f"SET {name} = '{value}'")
    return dict(con.execute("FROM layercorr_settings()").fetchall())


@pytest.mark.parametrize("method", ["pearson", "spearman", "cosine", "euclidean", "gram"])
def test_spilled_rows_give_the_same_matrix(con, rand, method):
    assert set_option(con, "layercorr_spill_mb", "off")["layercorr_spill_mb"] == "off"
    keys, in_memory = corr(con, "r", method)
    set_option(con, "layercorr_spill_mb", "0")
    keys_spilled, spilled = corr(con, "r", method)
    assert keys_spilled == keys
    assert_matrix(method, spilled, in_memory, 1e-6)


def test_spilled_rows_over_several_chunks_and_groups(con):
    """3000 rows per group arrive in several DuckDB chunks; every group spills."""
    rng = np.random.default_rng(5)
    n, d = 3000, 40
    con.execute("CREATE TABLE big (g INTEGER, k VARCHAR, v FLOAT[])")
    data = {}
    for g in range(3):
        X = (rng.standard_normal((n, 3)) @ rng.standard_normal((3, d)) + rng.standard_normal((n, d))).astype(np.float32)
        data[g] = X
        con.executemany("INSERT INTO big VALUES (?, ?, ?)", [(g, f"k{i:05d}", X[i].tolist()) for i in range(n)])
    set_option(con, "layercorr_spill_mb", "0")
    rows = con.execute("SELECT g, m.keys, m.matrix FROM (SELECT g, layer_corr(k, v) AS m FROM big GROUP BY g) ORDER BY g").fetchall()
    assert [r[0] for r in rows] == [0, 1, 2]
    for g, keys, mat in rows:
        assert keys == [f"k{i:05d}" for i in range(n)]
        assert_matrix(f"group {g}", np.array(mat, dtype=np.float64), np.corrcoef(data[g].astype(np.float64)), 1e-5)


def test_wide_spilled_rows_written_whole_are_read_back(con):
    """Rows of 16400 values (64 KiB and more: padded to 4 KiB in the spill
    file). The first chunk's 2048 rows are multiplied as they arrive and
    written to the file by a thread of their own, past the page cache where
    the file system allows; the last 500 wait for the end and are then
    multiplied with them, reading them back from the file."""
    set_option(con, "layercorr_spill_mb", "0")
    n, d = 2548, 16400
    con.execute(f"CREATE TABLE wide AS SELECT 'w' || lpad(i::VARCHAR, 4, '0') AS k, "
                f"list_transform(range({d}), lambda j: ((hash(i * {d} + j) % 1000) / 1000.0 "
                f"+ (i % 7) * (j % 3))::FLOAT) AS v FROM range({n}) t(i)")
    keys, mat = corr(con, "wide")
    assert keys == [f"w{i:04d}" for i in range(n)]
    X = con.execute("SELECT v FROM wide ORDER BY k").fetchnumpy()["v"]
    X = np.stack(X).astype(np.float64)
    assert_matrix("wide spilled", mat, np.corrcoef(X), 1e-5)


@pytest.mark.parametrize("spill", ["off", "0"])
@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_groups_sharing_chunks_are_multiplied_behind_the_scan(con, spill, method):
    """Three groups whose rows alternate, so that each DuckDB chunk brings
    each group about 680 rows of 8192 values (22 MB): such blocks are
    copied into the group's store during the call and multiplied on a
    thread of their own while DuckDB scans on, in memory or from the
    spill file."""
    set_option(con, "layercorr_spill_mb", spill)
    n, d = 700, 8192
    con.execute(f"CREATE TABLE shared AS SELECT g, 'k' || lpad(i::VARCHAR, 4, '0') AS k, "
                f"list_transform(range({d}), lambda j: ((hash(i * {d} + j + g * 7777) % 1000) / 1000.0 "
                f"+ (i % 5) * (j % 3) * (g + 1))::FLOAT) AS v "
                f"FROM range({n}) a(i), range(3) b(g) ORDER BY i, g")
    rows = con.execute(f"SELECT g, m.keys, m.matrix FROM (SELECT g, layer_corr(k, v, '{method}') AS m "
                       f"FROM shared GROUP BY g) ORDER BY g").fetchall()
    assert [r[0] for r in rows] == [0, 1, 2]
    for g, keys, mat in rows:
        assert keys == [f"k{i:04d}" for i in range(n)]
        X = np.stack(con.execute(f"SELECT v FROM shared WHERE g = {g} ORDER BY k").fetchnumpy()["v"])
        X = X.astype(np.float64)
        if method == "spearman":
            X = ss.rankdata(X, axis=1)
        assert_matrix(f"{method} group {g}", np.array(mat, dtype=np.float64), np.corrcoef(X), 1e-5)


def test_a_nan_in_a_block_multiplied_behind_the_scan_names_its_key(con):
    """A NaN in a block whose products run after the call has returned is
    found there and reported by the group's next call, naming its key."""
    n, d = 700, 8192
    con.execute(f"CREATE TABLE shared_nan AS SELECT g, 'k' || lpad(i::VARCHAR, 4, '0') AS k, "
                f"list_transform(range({d}), lambda j: CASE WHEN g = 1 AND i = 400 AND j = 17 "
                f"THEN 'nan'::FLOAT ELSE ((hash(i * {d} + j) % 1000) / 1000.0)::FLOAT END) AS v "
                f"FROM range({n}) a(i), range(3) b(g) ORDER BY i, g")
    with pytest.raises(Exception, match="k0400") as err:
        con.execute("SELECT g, layer_corr(k, v) FROM shared_nan GROUP BY g").fetchall()
    assert "NaN" in str(err.value) or "non-finite" in str(err.value), str(err.value)


def test_spill_folder_problems_are_named(con, rand, tmp_path):
    """Spill files go to DuckDB's temp_directory; a bad folder or a bad
    layercorr_spill_mb value is an error naming it."""
    set_option(con, "layercorr_spill_mb", "0")
    set_option(con, "temp_directory", "/nonexistent/layercorr_spill_dir")
    with pytest.raises(Exception, match="layercorr_spill_dir"):
        corr(con, "r")
    spill_dir = tmp_path / "spill_here"
    assert set_option(con, "temp_directory", str(spill_dir))["temp_directory"] == str(spill_dir)
    keys, _ = corr(con, "r")
    assert spill_dir.is_dir() and len(keys) > 2
    con.execute("SET layercorr_spill_mb = 'lots'")
    with pytest.raises(Exception, match="layercorr_spill_mb is 'lots'"):
        con.execute("FROM layercorr_settings()").fetchall()


def test_groups_split_across_threads_and_chunks_are_merged(con):
    """130,000 rows in 1000 interleaved groups: two row groups, so DuckDB's
    two threads each build part of every group and combine them; keys (md5)
    arrive out of order. Every group matches numpy on its sorted rows."""
    con.execute("SET threads = 2")
    con.execute("SELECT setseed(0.25)")
    con.execute("CREATE TABLE many AS SELECT i % 1000 AS g, md5(i::VARCHAR) AS k, "
                "[random() + (i % 7) * 0.1 * j FOR j IN range(8)]::FLOAT[] AS v "
                "FROM range(130000) t(i)")
    got = {g: (keys, np.array(m, dtype=np.float64)) for g, keys, m in con.execute(
        "SELECT g, m.keys, m.matrix FROM (SELECT g, layer_corr(k, v) AS m FROM many GROUP BY g)").fetchall()}
    assert len(got) == 1000
    for g in (0, 1, 517, 999):
        rows = con.execute("SELECT k, v FROM many WHERE g = ? ORDER BY k", [g]).fetchall()
        keys, m = got[g]
        assert keys == [r[0] for r in rows]
        want = np.corrcoef(np.array([r[1] for r in rows], dtype=np.float64))
        assert_matrix(f"group {g}", m, want, 1e-5)
