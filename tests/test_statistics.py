"""Issue 16: debiased CKA, cka_rbf, procrustes, mutual_knn, bootstrap
intervals and permutation tests, in the real Python host, against numpy
references written from the published formulas (computed from the
features where the extension computes from matrices)."""
from __future__ import annotations

import duckdb
import numpy as np
import pytest
from scipy import stats

MATRIX = "STRUCT(keys VARCHAR[], matrix FLOAT[][], method VARCHAR)"


def add_layer(con, layer: str, x: np.ndarray, method: str, table: str = "mats"):
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (layer VARCHAR, m {MATRIX})")
    con.execute(
        f"INSERT INTO {table} SELECT ?, layer_corr(key, a::FLOAT[], ?) FROM "
        "(SELECT printf('k%05d', unnest(range(?))) AS key, unnest(?::DOUBLE[][]) AS a)",
        [layer, method, x.shape[0], x.tolist()],
    )


def literal(m: np.ndarray, method: str = "pearson") -> tuple[str, list]:
    """A matrix struct from numpy, as SQL text and its parameters."""
    keys = [f"k{i:05d}" for i in range(m.shape[0])]
    return ("struct_pack(keys := ?::VARCHAR[], matrix := ?::FLOAT[][], method := ?)",
            [keys, m.tolist(), method])


def rsa(con, a: str, b: str, method: str, table: str = "mats") -> float:
    return con.execute(
        f"SELECT rsa(x.m, y.m, ?) FROM {table} x, {table} y WHERE x.layer = ? AND y.layer = ?",
        [method, a, b]).fetchone()[0]


# --- references (Kornblith et al. 2019, reference code formulas) ---------

def gram_linear(x):
    return x @ x.T


def gram_rbf(x, threshold=1.0):
    dot = x @ x.T
    sq = np.diag(dot)
    sqd = -2 * dot + sq[:, None] + sq[None, :]
    return np.exp(-sqd / (2 * threshold ** 2 * np.median(sqd)))


def center_gram(g, unbiased=False):
    g = g.copy()
    if unbiased:
        n = g.shape[0]
        np.fill_diagonal(g, 0)
        means = np.sum(g, 0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        g -= means[:, None]
        g -= means[None, :]
        np.fill_diagonal(g, 0)
    else:
        means = np.mean(g, 0)
        means -= np.mean(means) / 2
        g -= means[:, None]
        g -= means[None, :]
    return g


def cka(gx, gy, debiased=False):
    gx, gy = center_gram(gx, debiased), center_gram(gy, debiased)
    return gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy))


def procrustes_ref(x, y):
    xc, yc = x - x.mean(0), y - y.mean(0)
    nuc = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    return nuc / (np.linalg.norm(xc) * np.linalg.norm(yc))


def mutual_knn_ref(sa, sb, k=10, smallest=False):
    """Huh et al.: mean over images of |knn_A(i) ∩ knn_B(i)| / k."""
    def knn(s):
        s = np.array(s, dtype=np.float64)
        s = -s if smallest else s
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1, kind="stable")[:, :k]
    a, b = knn(sa), knn(sb)
    return np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(a))])


def features(n, d, seed, shared=None, mix=0.0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, d))
    return x if shared is None else mix * shared + (1 - mix) * x


# --- measures -------------------------------------------------------------

def test_debiased_cka_removes_the_known_bias(con):
    n, d = 50, 5000
    x, y = features(n, d, 1), features(n, d, 2)
    add_layer(con, "x", x, "gram")
    add_layer(con, "y", y, "gram")
    biased, debiased = rsa(con, "x", "y", "cka"), rsa(con, "x", "y", "cka_debiased")
    want_b = cka(gram_linear(x), gram_linear(y))
    want_d = cka(gram_linear(x), gram_linear(y), debiased=True)
    assert abs(biased - want_b) < 1e-6
    assert abs(debiased - want_d) < 1e-6
    assert biased > 0.5, biased
    assert abs(debiased) < 0.05, debiased


def test_debiased_cka_related_features(con):
    n, d = 40, 30
    base = features(n, d, 3)
    x, y = features(n, d, 4, base, 0.7), features(n, d, 5, base, 0.5)
    add_layer(con, "x", x, "gram")
    add_layer(con, "y", y, "gram")
    add_layer(con, "xc", x, "cosine")
    got = rsa(con, "x", "y", "cka_debiased")
    assert abs(got - cka(gram_linear(x), gram_linear(y), debiased=True)) < 1e-6
    # Same value on an uncentred X Xᵀ (legacy struct: kind unknown).
    sql, params = literal(gram_linear(x).astype(np.float32))
    raw = con.execute(
        f"SELECT rsa({sql}::STRUCT(keys VARCHAR[], matrix FLOAT[][]), m, 'cka_debiased') "
        "FROM mats WHERE layer = 'y'", params).fetchone()[0]
    assert abs(raw - got) < 1e-5


def test_cka_rbf_matches_kornblith(con):
    n, d = 40, 20
    base = features(n, d, 6)
    x, y = features(n, d, 7, base, 0.6), features(n, d, 8, base, 0.6)
    add_layer(con, "x", x, "euclidean")
    add_layer(con, "y", y, "euclidean")
    got = rsa(con, "x", "y", "cka_rbf")
    assert abs(got - cka(gram_rbf(x), gram_rbf(y))) < 1e-5


def test_procrustes_matches_svd_of_features(con):
    for n, d in [(40, 10), (30, 60)]:
        base = features(n, d, 9)
        x, y = features(n, d, 10, base, 0.6), features(n, d, 11, base, 0.4)
        con.execute("DROP TABLE IF EXISTS mats")
        add_layer(con, "x", x, "gram")
        add_layer(con, "y", y, "gram")
        got = rsa(con, "x", "y", "procrustes")
        assert abs(got - procrustes_ref(x, y)) < 1e-5, (n, d)


@pytest.mark.parametrize("method", ["pearson", "cosine", "euclidean"])
def test_mutual_knn_matches_numpy(con, method):
    n, d = 60, 25
    base = features(n, d, 12)
    x, y = features(n, d, 13, base, 0.6), features(n, d, 14, base, 0.6)
    add_layer(con, "x", x, method)
    add_layer(con, "y", y, method)
    got = rsa(con, "x", "y", "mutual_knn")

    def sim(f):
        if method == "pearson":
            return np.corrcoef(f)
        if method == "cosine":
            u = f / np.linalg.norm(f, axis=1, keepdims=True)
            return u @ u.T
        return np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
    want = mutual_knn_ref(sim(x), sim(y), smallest=method == "euclidean")
    assert abs(got - want) < 1e-5
    assert 0.1 < got < 1.0


def test_layer_similarity_new_methods_match_rsa(con):
    n, d = 30, 12
    base = features(n, d, 15)
    for i, mix in enumerate([0.9, 0.6, 0.3]):
        add_layer(con, f"g{i}", features(n, d, 20 + i, base, mix), "gram")
        add_layer(con, f"e{i}", features(n, d, 20 + i, base, mix), "euclidean", "dists")
    for method, table in [("cka_debiased", "mats"), ("procrustes", "mats"),
                          ("mutual_knn", "mats"), ("cka_rbf", "dists")]:
        r = con.execute(f"SELECT layer_similarity(layer, m, ? ORDER BY layer) FROM {table}",
                        [method]).fetchone()[0]
        s = np.array(r["matrix"])
        assert np.allclose(np.diag(s), 1.0)
        assert np.allclose(s, s.T)
        for i, a in enumerate(r["layers"]):
            for j, b in enumerate(r["layers"]):
                if i != j:
                    assert abs(s[i, j] - rsa(con, a, b, method, table)) < 1e-12, method


def test_layer_corr_records_its_method(con):
    x = features(6, 4, 16)
    add_layer(con, "x", x, "gram")
    t, m = con.execute("SELECT typeof(m), m.method FROM mats").fetchone()
    assert t == 'STRUCT(keys VARCHAR[], matrix FLOAT[][], "method" VARCHAR)' and m == "gram"
    assert con.execute("SELECT (layer_corr(k, v)).method FROM (VALUES ('a', [1, 2, 3]::FLOAT[]), "
                       "('b', [3, 1, 2]::FLOAT[])) t(k, v)").fetchone()[0] == "pearson"


def test_wrong_matrix_kind_is_a_named_error(con):
    x, y = features(12, 5, 17), features(12, 5, 18)
    add_layer(con, "p", x, "pearson")
    add_layer(con, "g", y, "gram")
    with pytest.raises(duckdb.Error, match=r"procrustes.*'pearson'.*gram"):
        rsa(con, "p", "g", "procrustes")
    with pytest.raises(duckdb.Error, match=r"cka_rbf.*'gram'.*euclidean"):
        rsa(con, "g", "g", "cka_rbf")
    with pytest.raises(duckdb.Error, match=r"procrustes.*'pearson'.*matrix 0 is 'p'"):
        con.execute("SELECT layer_similarity(layer, m, 'procrustes') FROM mats").fetchall()
    with pytest.raises(duckdb.Error, match=r"'ckaa'.*cka_debiased.*mutual_knn"):
        rsa(con, "g", "g", "ckaa")


def test_legacy_structs_still_bind(con):
    x = features(8, 5, 19)
    add_layer(con, "x", x, "pearson")
    legacy = "m::STRUCT(keys VARCHAR[], matrix FLOAT[][])"
    row = con.execute(f"SELECT rsa({legacy}, m), rsa({legacy}, {legacy}, 'procrustes') IS NOT NULL, "
                      f"len(corr_order({legacy})) FROM mats").fetchone()
    assert abs(row[0] - 1) < 1e-12 and row[2] == 8


def test_debiased_needs_four_images(con):
    add_layer(con, "x", features(3, 4, 20), "gram")
    with pytest.raises(duckdb.Error, match=r"cka_debiased.*at least 4"):
        rsa(con, "x", "x", "cka_debiased")


# --- bootstrap ------------------------------------------------------------

def rdm_pair(n, r, seed):
    """Two symmetric matrices whose upper triangles correlate about r."""
    g = np.random.default_rng(seed)
    a, e = g.standard_normal((n, n)), g.standard_normal((n, n))
    a, e = (a + a.T) / 2, (e + e.T) / 2
    b = r * a + np.sqrt(1 - r * r) * e
    np.fill_diagonal(a, 1)
    np.fill_diagonal(b, 1)
    return a, b


def boot(con, a, b, *args):
    sa, pa = literal(a)
    sb, pb = literal(b)
    extra = "".join(f", {v!r}" if isinstance(v, str) else f", {v}" for v in args)
    return con.execute(f"SELECT rsa_bootstrap({sa}, {sb}{extra})", pa + pb).fetchone()[0]


def test_bootstrap_is_reproducible_and_covers_the_estimate(con):
    a, b = rdm_pair(40, 0.5, 1)
    r1 = boot(con, a, b, "pearson", 300, 7)
    r2 = boot(con, a, b, "pearson", 300, 7)
    r3 = boot(con, a, b, "pearson", 300, 8)
    assert r1 == r2 and r1 != r3
    assert r1["ci_low"] < r1["estimate"] < r1["ci_high"]
    assert r1["se"] > 0
    narrow = boot(con, a, b, "pearson", 300, 7, 0.5)
    assert narrow["ci_high"] - narrow["ci_low"] < r1["ci_high"] - r1["ci_low"]
    default = boot(con, a, b)
    assert default == boot(con, a, b, "pearson", 1000, 0x5EED, 0.95)
    est = con.execute(f"SELECT rsa({literal(a)[0]}, {literal(b)[0]})",
                      literal(a)[1] + literal(b)[1]).fetchone()[0]
    assert default["estimate"] == est


def test_bootstrap_interval_width_matches_a_numpy_bootstrap(con):
    # rsatoolbox-style reference: resample images, drop pairs of an image
    # with its own copy, correlate the remaining upper-triangle entries.
    n = 60
    a, b = rdm_pair(n, 0.4, 2)
    g = np.random.default_rng(0)
    iu = np.triu_indices(n, 1)
    vals = []
    for _ in range(1000):
        idx = g.integers(0, n, n)
        i, j = idx[iu[0]], idx[iu[1]]
        keep = i != j
        vals.append(np.corrcoef(a[i[keep], j[keep]], b[i[keep], j[keep]])[0, 1])
    lo, hi = np.percentile(vals, [2.5, 97.5])
    got = boot(con, a, b, "pearson", 1000, 3)
    width = got["ci_high"] - got["ci_low"]
    assert abs(width - (hi - lo)) < 0.15 * (hi - lo), (width, hi - lo)
    assert abs(got["se"] - np.std(vals, ddof=1)) < 0.15 * np.std(vals, ddof=1)


def test_bootstrap_same_at_any_thread_count(ext_path):
    a, b = rdm_pair(50, 0.3, 4)
    out = []
    for threads in (1, 2):
        c = duckdb.connect(config={"allow_unsigned_extensions": "true", "threads": threads})
        c.execute(f"LOAD '{ext_path}'")
        out.append([boot(c, a, b, m, 200, 5) for m in ("pearson", "spearman", "cka_debiased")])
        c.close()
    assert out[0] == out[1]


def test_layer_similarity_ci(con):
    n, d = 30, 10
    base = features(n, d, 21)
    for i, mix in enumerate([0.9, 0.6, 0.3]):
        add_layer(con, f"L{i}", features(n, d, 30 + i, base, mix), "gram")
    r = con.execute("SELECT layer_similarity_ci(layer, m, 'cka', 200, 1 ORDER BY layer) FROM mats"
                    ).fetchone()[0]
    s = con.execute("SELECT layer_similarity(layer, m, 'cka' ORDER BY layer) FROM mats").fetchone()[0]
    assert r["layers"] == s["layers"] == ["L0", "L1", "L2"]
    assert np.allclose(r["matrix"], s["matrix"], atol=1e-12)
    lo, hi, est = np.array(r["ci_low"]), np.array(r["ci_high"]), np.array(r["matrix"])
    assert np.all(lo <= hi) and np.allclose(np.diag(lo), 1) and np.allclose(lo, lo.T)
    off = ~np.eye(3, dtype=bool)
    assert np.all(lo[off] < est[off] + 0.05) and np.all(est[off] - 0.05 < hi[off])
    again = con.execute("SELECT layer_similarity_ci(layer, m, 'cka', 200, 1 ORDER BY layer) "
                        "FROM mats").fetchone()[0]
    assert again == r


# --- permutation ----------------------------------------------------------

def perm(con, a, b, *args, method_a="pearson", method_b="pearson"):
    sa, pa = literal(a, method_a)
    sb, pb = literal(b, method_b)
    extra = "".join(f", {v!r}" if isinstance(v, str) else f", {v}" for v in args)
    return con.execute(f"SELECT rsa_permutation({sa}, {sb}{extra})", pa + pb).fetchone()[0]


def test_permutation_detects_a_planted_correlation(con):
    a, b = rdm_pair(200, 0.3, 5)
    r = perm(con, a, b, "pearson", 999)
    assert r["p_value"] < 0.01 and abs(r["p_value"] - 1 / 1000) < 1e-12
    assert abs(r["estimate"] - 0.3) < 0.05
    assert perm(con, a, b, "pearson", 999) == r


def test_permutation_p_values_are_uniform_under_independence(con):
    ps = []
    for s in range(200):
        a, b = rdm_pair(20, 0.0, 1000 + s)
        ps.append(perm(con, a, b, "pearson", 199, s)["p_value"])
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert min(ps) >= 1 / 200


# --- bad input ------------------------------------------------------------

@pytest.mark.parametrize("args,pattern", [
    (("pearson", 0), r"resamples must be between 1 and 100000, got 0"),
    (("pearson", -5), r"resamples.*got -5"),
    (("pearson", 100001), r"resamples.*got 100001"),
    (("pearson", 10, 1, 0.0), r"level must be strictly between 0 and 1, got 0"),
    (("pearson", 10, 1, 1.5), r"level.*got 1.5"),
    (("kendall",), r"'kendall'.*valid methods: pearson, spearman, cka, cka_debiased"),
])
def test_bootstrap_bad_arguments(con, args, pattern):
    a, b = rdm_pair(10, 0.5, 6)
    with pytest.raises(duckdb.Error, match=pattern):
        boot(con, a, b, *args)


def test_bad_arguments_named(con):
    a, b = rdm_pair(10, 0.5, 7)
    with pytest.raises(duckdb.Error, match=r"permutations must be between 1 and 100000, got 0"):
        perm(con, a, b, "pearson", 0)
    sa, pa = literal(a)
    sb, pb = literal(b)
    with pytest.raises(duckdb.Error, match=r"seed is NULL"):
        con.execute(f"SELECT rsa_permutation({sa}, {sb}, 'pearson', 10, NULL::BIGINT)",
                    pa + pb).fetchall()
    with pytest.raises(duckdb.Error, match=r"cka_debiased.*at least 4"):
        boot(con, a[:3, :3], b[:3, :3], "cka_debiased")
    keys = [f"x{i}" for i in range(10)]
    with pytest.raises(duckdb.Error, match=r"different keys.*'k00000'.*'x0'"):
        con.execute(f"SELECT rsa_permutation({sa}, struct_pack(keys := ?::VARCHAR[], "
                    "matrix := ?::FLOAT[][], method := 'pearson'))", pa + [keys, b.tolist()]).fetchall()
    with pytest.raises(duckdb.Error, match=r"procrustes.*'euclidean'.*gram"):
        perm(con, a, b, "procrustes", 10, method_a="euclidean")
