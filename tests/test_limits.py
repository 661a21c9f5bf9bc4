"""DuckDB's memory_limit, interrupts and the extension's own settings (issue 13, 1 and 4).

* layer_corr refuses, with a named error giving N, a group whose N x N
  working memory would pass `memory_limit`, before allocating it (peak RSS of
  the host stays far below what the group would need);
* the scalar nn_activations fails with a named error when one chunk's results
  would pass `memory_limit`, and stops soon after an interrupt;
* `layercorr_spill_mb` and `layercorr_kernels` are DuckDB settings.

Every case runs in a child host process (killed past 4 GB RSS by the harness).
"""
from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

import lc_helpers as H
from lc_helpers import sql_str


def lit(p) -> str:
    return f"'{sql_str(p)}'"


N_BIG = 20000
TABLE = (f"CREATE TABLE t AS SELECT i, 'k' || lpad(i::VARCHAR, 6, '0') AS key, "
         f"[random()::FLOAT for x in range(8)] AS activation FROM range({N_BIG}) r(i)")
METHODS = ["pearson", "cosine", "spearman", "euclidean", "gram"]


def corr_statements():
    stmts = ["SELECT setseed(0.5)", TABLE]
    stmts += [f"SELECT len(r.keys) FROM (SELECT layer_corr(key, activation, '{m}') AS r FROM t)" for m in METHODS]
    stmts += ["SELECT len(r.keys) FROM (SELECT layer_corr(key, activation) AS r FROM t WHERE i < 2000)",
              "SELECT 42"]
    return stmts


def own_text(message: str) -> str:
    """The message without DuckDB's generic Out-of-Memory advice ("Possible
    solutions: ... SET memory_limit=..."), which mentions memory_limit whatever
    went wrong: the extension's own words must name the limit."""
    return message.split("Possible solutions")[0]


def check_corr(s):
    s.check_alive(n=len(corr_statements()), max_rss_mb=1536)
    assert s.results[1]["ok"], s.results[1]
    for m, rec in zip(METHODS, s.results[2:2 + len(METHODS)]):
        assert not rec["ok"], f"{m}: N = {N_BIG} under memory_limit = 1GB gave a result"
        assert rec["is_duckdb_error"], rec
        msg = own_text(rec["message"])
        assert "memory_limit" in msg, f"{m}: the error does not mention memory_limit: {rec['message'][:400]}"
        # N: the group's 20000, or the running count at which a streaming method
        # saw the limit would be passed (it cannot know the final N before then)
        ns = [int(x.replace(",", "").replace("_", "")) for x in
              re.findall(r"\bN\s*=\s*(\d[\d,_]*)", msg) + re.findall(r"\b(\d[\d,_]*)\s*x\s*\d", msg)]
        assert any(2000 < n <= N_BIG for n in ns), f"{m}: the error does not give N (<= {N_BIG}): {msg[:400]}"
        assert re.search(r"\d\s*(bytes|[KMGT]i?B)\b", msg), f"{m}: the error does not give the bytes needed: {msg[:400]}"
    small = s.results[-2]
    assert small["ok"] and small["rows"] == [[2000]], f"N = 2000 must still work under the same limit: {small}"
    assert s.results[-1]["rows"] == [[42]]


@pytest.mark.parametrize("how", ["config", "set"])
def test_layer_corr_memory_limit_python(how):
    """memory_limit set in the connection's config before LOAD, or by SET after
    it followed by layercorr_settings() (aggregates get no client context in
    DuckDB's C API; the README says how they see settings)."""
    if how == "config":
        s = H.run_py_measured(corr_statements(), config={"memory_limit": "1GB"}, timeout=300)
    else:
        s = H.run_py_measured(["SET memory_limit = '1GB'", "FROM layercorr_settings()"]
                              + corr_statements(), timeout=300)
        s.results = s.results[2:]
    check_corr(s)


def test_layer_corr_memory_limit_cli(cli_path):
    s = H.run_cli_measured(["SET memory_limit = '1GB'", "FROM layercorr_settings()"]
                           + corr_statements(), timeout=300)
    s.results = s.results[2:]
    check_corr(s)


def test_scalar_chunk_memory_limit(photos, model_path):
    """2048 rows of one photo with ['input', 'blocks.*']: one chunk's results
    are several GB, so under memory_limit = 300MB the scalar form must fail
    with a named error (not grow, not abort); a few rows still work."""
    act = f"nn_activations({lit(H.MODEL)}, p, ['input', 'blocks.*'])"
    stmts = [f"CREATE TABLE imgs AS SELECT {lit(photos[0])} AS p FROM range(2048)",
             f"SELECT sum(len(a)) FROM (SELECT {act} AS a FROM imgs)",
             "SELECT 42",
             f"SELECT sum(len(a)) FROM (SELECT {act} AS a FROM (SELECT p FROM imgs LIMIT 2))"]
    s = H.run_py_measured(stmts, config={"memory_limit": "300MB"}, timeout=300)
    s.check_alive(n=4, max_rss_mb=1024)  # one image with these layers needs ~50 MB, the host ~150 MB
    rec = s.results[1]
    assert not rec["ok"], "2048 images x ['input', 'blocks.*'] under memory_limit = 300MB gave a result"
    assert rec["is_duckdb_error"], rec
    assert "memory_limit" in own_text(rec["message"]), \
        f"the error does not name memory_limit (DuckDB's generic advice aside): {rec['message'][:400]}"
    assert rec["elapsed"] < 120, f"took {rec['elapsed']:.0f} s to fail"
    assert s.results[2]["rows"] == [[42]]
    assert s.results[3]["ok"], f"two images under the same limit failed: {s.results[3]['message'][:400]}"


_INTERRUPT_CHILD = r"""
import json, sys, threading, time
import duckdb
ext, model, photo, rows, after, form = json.load(sys.stdin)
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute("LOAD '" + ext.replace("'", "''") + "'")
con.execute(f"CREATE TABLE imgs AS SELECT '{photo}' AS p FROM range({rows})")
fired = {}
def fire():
    time.sleep(after)
    fired["t"] = time.monotonic()
    con.interrupt()
threading.Thread(target=fire, daemon=True).start()
t0 = time.monotonic()
rec = {}
try:
    if form == "scalar":
        con.execute(f"SELECT sum(len(a)) FROM (SELECT nn_activations('{model}', p, ['pool']) AS a FROM imgs)").fetchall()
    else:
        paths = "[" + ", ".join([f"'{photo}'"] * rows) + "]"
        con.execute(f"SELECT sum(len(activation)) FROM nn_activations('{model}', {paths}, layers := ['pool'])").fetchall()
    rec["ok"] = True
except duckdb.Error as e:
    rec.update(ok=False, type=type(e).__name__, message=str(e))
t1 = time.monotonic()
rec["total"] = t1 - t0
rec["after_interrupt"] = t1 - fired["t"] if "t" in fired else None
rec["alive"] = con.execute("SELECT 42").fetchall()[0][0]
print(json.dumps(rec), flush=True)
"""


def test_table_form_stops_on_interrupt(photos, model_path):
    """con.interrupt() 1.5 s into a 600-image table-form call: the query stops
    within 2 s. (A scalar function cannot see an interrupt through DuckDB's C
    API until its chunk is done; the README says so and points long runs to
    the table form.)"""
    spec = [str(H.EXTENSION), sql_str(H.MODEL), sql_str(photos[0]), 600, 1.5, "table"]
    r = H.run_measured([sys.executable, "-c", _INTERRUPT_CHILD], json.dumps(spec), timeout=240)
    assert not r.timed_out and not r.crashed, r.describe()
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert not rec["ok"], f"the query finished ({rec['total']:.1f} s) before the interrupt took effect"
    assert re.search(r"(?i)interrupt", rec["type"] + rec["message"]), rec
    assert rec["after_interrupt"] is not None and rec["after_interrupt"] < 2.0, \
        f"the table form stopped {rec['after_interrupt']:.1f} s after interrupt()"
    assert rec["alive"] == 42


# --------------------------------------------------------------------------
# settings


@pytest.mark.parametrize("host", ["python", "cli"])
def test_settings_are_duckdb_settings(host, ext_path):
    stmts = ["SELECT current_setting('layercorr_spill_mb')",
             "SELECT current_setting('layercorr_kernels')",
             "SET layercorr_spill_mb = 64",
             "SELECT current_setting('layercorr_spill_mb')",
             "SELECT 42"]
    s = H.run_host(host, stmts, timeout=60)
    s.check_alive(n=len(stmts))
    for k, rec in enumerate(s.results):
        assert rec["ok"], f"{host}: {stmts[k]!r} failed: {rec['message'][:400]}"
    assert s.results[0]["rows"][0][0] not in (None, ""), s.results[0]
    assert s.results[1]["rows"][0][0] not in (None, ""), s.results[1]
    assert str(s.results[3]["rows"][0][0]).strip() == "64", s.results[3]
    assert s.results[4]["rows"] == [[42]]


def test_settings_unknown_before_load():
    s = H.run_py_measured(["SELECT current_setting('layercorr_spill_mb')", "SELECT 42"], load=False)
    s.check_alive(n=2)
    assert not s.results[0]["ok"], "layercorr_spill_mb exists without the extension?"


def test_spill_setting_gives_the_same_matrix():
    """A 1 MB spill limit puts the row store in a file (2000 x 256 floats = 2 MB):
    the matrix must equal the in-memory one."""
    stmts = ["SELECT setseed(0.25)",
             "CREATE TABLE t AS SELECT 'k' || lpad(i::VARCHAR, 5, '0') AS key, "
             "[random()::FLOAT for x in range(256)] AS activation FROM range(2000) r(i)",
             "CREATE TABLE a AS SELECT layer_corr(key, activation) AS m FROM t",
             "SET layercorr_spill_mb = 1",
             "CREATE TABLE b AS SELECT layer_corr(key, activation) AS m FROM t",
             "SELECT (SELECT m FROM a) = (SELECT m FROM b), (SELECT len(m.keys) FROM b)"]
    s = H.run_py_measured(stmts, timeout=180)
    s.check_alive(n=len(stmts), max_rss_mb=1536)
    for k, rec in enumerate(s.results):
        assert rec["ok"], f"{stmts[k][:60]!r}: {rec['message'][:400]}"
    assert s.results[-1]["rows"] == [[True, 2000]], s.results[-1]


def test_kernels_setting_switches_the_ops(photos, model_path):
    """layercorr_kernels = 'tract' (the documented alternative) gives the same logits
    within float tolerance."""
    q = f"SELECT nn_activations({lit(H.MODEL)}, {lit(photos[0])}, ['logits'])[1].activation::VARCHAR"
    s = H.run_py_measured([q, "SET layercorr_kernels = 'tract'",
                           "SELECT current_setting('layercorr_kernels')", q], timeout=120)
    s.check_alive(n=4, max_rss_mb=1536)
    for rec in s.results:
        assert rec["ok"], rec
    assert s.results[2]["rows"] == [["tract"]], s.results[2]
    a, b = (np.array([float(v) for v in s.results[k]["rows"][0][0].strip("[]").split(",")]) for k in (0, 3))
    assert a.shape == b.shape == (1000,)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-4), np.abs(a - b).max()


@pytest.mark.parametrize("host", ["python", "cli"])
def test_a_bad_kernels_value_is_named(host, photos):
    """An unknown layercorr_kernels value is an error naming it when
    nn_activations reads the setting; the host lives on, and a good value
    works again."""
    q = f"SELECT len(nn_activations({lit(H.MODEL)}, {lit(photos[0])}, ['logits'])[1].activation)"
    stmts = ["SET layercorr_kernels = 'fast'", q, "SET layercorr_kernels = 'layercorr'", q]
    s = H.run_host(host, stmts, timeout=120)
    s.check_alive(n=len(stmts))
    assert not s.results[1]["ok"], s.results[1]
    assert "layercorr_kernels is 'fast'" in s.results[1]["message"], s.results[1]
    assert s.results[3]["ok"] and s.results[3]["rows"] == [[1000]], s.results[3]


# --------------------------------------------------------------------------
# layer_similarity and layer_similarity_ci: the L x L results and the
# resampled values of every pair are counted against memory_limit before
# they are allocated; the matrices held, as they arrive.
# --------------------------------------------------------------------------

# A 3-key matrix whose corner entry varies with `i`, so that layers differ.
MATRIX_3 = ("{'keys': ['a','b','c'], 'matrix': [[1, 0.5, (i % 97) / 100], [0.5, 1, 0.3], "
            "[(i % 97) / 100, 0.3, 1]]::FLOAT[][]}")


def similarity_over(layers: int, call: str) -> str:
    """`call` (on columns `layer` and `m`) over `layers` 3-key matrices."""
    return (f"SELECT len(s.layers) FROM (SELECT {call} AS s FROM "
            f"(SELECT 'l' || i AS layer, {MATRIX_3} AS m FROM range({layers}) t(i)))")


def check_similarity_limit(rec, needle: str):
    assert not rec["ok"], f"gave a result under memory_limit = 1GB: {rec}"
    assert rec["is_duckdb_error"], rec
    msg = own_text(rec["message"])
    assert "memory_limit" in msg and needle in msg, msg[:400]
    assert re.search(r"\d+ bytes", msg), f"the error does not give the bytes needed: {msg[:400]}"


def test_layer_similarity_counts_its_results_against_memory_limit():
    """12,000 layers make a 12,000 x 12,000 similarity matrix (1.15 GB in
    f64, before DuckDB's copy): refused up front, where it used to be
    computed past the limit (and 60,000 layers past the machine's memory).
    200 layers x 100,000 resamples keep 15.9 GB of resampled values:
    refused. Small groups still work under the same limit."""
    stmts = [similarity_over(12000, "layer_similarity(layer, m)"),
             similarity_over(200, "layer_similarity_ci(layer, m, 'pearson', 100000)"),
             similarity_over(50, "layer_similarity(layer, m)"),
             similarity_over(30, "layer_similarity_ci(layer, m, 'pearson', 200)")]
    s = H.run_py_measured(stmts, config={"memory_limit": "1GB"}, timeout=300)
    s.check_alive(n=len(stmts), max_rss_mb=1024)
    check_similarity_limit(s.results[0], "12000 matrices")
    check_similarity_limit(s.results[1], "100000 resamples")
    assert s.results[2]["ok"] and s.results[2]["rows"] == [[50]], s.results[2]
    assert s.results[3]["ok"] and s.results[3]["rows"] == [[30]], s.results[3]


# --------------------------------------------------------------------------
# layer_corr over many large groups: `layercorr_spill_mb` is per group, so
# the groups of one query together spill past half of memory_limit.
# --------------------------------------------------------------------------

MANY_GROUPS, GROUP_ROWS, GROUP_VALUES = 6, 2048, 16384
MANY_GROUPS_SETUP = f"""
import numpy as np, pyarrow as pa
con.execute("ATTACH '{{db}}' AS f")
con.execute("USE f")
con.execute("CREATE TABLE t (g INTEGER, key VARCHAR, activation FLOAT[])")
rng = np.random.default_rng(7)
for g in range({MANY_GROUPS}):
    x = rng.standard_normal(({GROUP_ROWS}, {GROUP_VALUES}), dtype=np.float32)
    offsets = np.arange(0, ({GROUP_ROWS} + 1) * {GROUP_VALUES}, {GROUP_VALUES}, dtype=np.int32)
    rows = pa.table({{"g": np.full({GROUP_ROWS}, g, dtype=np.int32),
                      "key": [f"k{{i:05d}}" for i in range({GROUP_ROWS})],
                      "activation": pa.ListArray.from_arrays(offsets, pa.array(x.ravel()))}})
    con.execute("INSERT INTO t SELECT * FROM rows")
"""


def test_layer_corr_many_groups_spill_past_half_the_memory_limit(tmp_path):
    """Six groups of 2048 rows x 16384 values (128 MB of rows each, 768 MB
    in all) count 390 MB each with their rows in memory, 2.3 GB together.
    Under memory_limit = 1600MB the groups past half the limit move their
    rows to the spill file and the query gives the matrices it gives under
    8GB, bit for bit; the previous build refused the fourth group. With
    spilling off the same query is still refused, naming memory_limit."""
    query = "SELECT g, layer_corr(key, activation) AS m FROM t GROUP BY g"
    stmts = ["SET memory_limit = '8GB'", "FROM layercorr_settings()",
             f"CREATE TABLE reference AS {query}",
             "SET memory_limit = '1600MB'", "FROM layercorr_settings()",
             f"CREATE TABLE limited AS {query}",
             "SELECT count(*), bool_and(a.m.keys = b.m.keys AND a.m.matrix = b.m.matrix) "
             "FROM reference a JOIN limited b USING (g)",
             "SET layercorr_spill_mb = 'off'", "FROM layercorr_settings()",
             f"SELECT sum(len(m.keys)) FROM ({query})"]
    setup = MANY_GROUPS_SETUP.replace("{db}", str(tmp_path / "groups.duckdb"))
    s = H.run_py_measured(stmts, setup=setup, config={"temp_directory": str(tmp_path / "spill")},
                          timeout=600)
    s.check_alive(n=len(stmts))
    assert s.results[2]["ok"], s.results[2]
    assert s.results[5]["ok"], f"six groups under memory_limit = 1600MB: {s.results[5]}"
    assert s.results[6]["rows"] == [[MANY_GROUPS, True]], s.results[6]
    off = s.results[9]
    assert not off["ok"] and "memory_limit" in own_text(off["message"]), off


# --------------------------------------------------------------------------
# line_plot: long labels and many points take time in proportion to them,
# and plots with more lines or points than a picture can hold are named
# errors before anything is laid out.
# --------------------------------------------------------------------------

def test_line_plot_long_labels_and_many_points():
    stmts = [
        # A 100,000-character series name and x label: cut to fit the legend
        # and the axis (each cut used to measure the whole label again, one
        # character at a time: minutes).
        "SELECT octet_length(line_plot(repeat('s', 100000), x, y)) > 0 FROM "
        "(VALUES (repeat('x', 100000), 1.0), ('b', 2.0)) t(x, y)",
        # 100,000 x positions of one series (their index used to be found by
        # a linear search per point: a minute).
        "SELECT octet_length(line_plot('s', 'x' || i, i::DOUBLE)) > 0 FROM range(100000) r(i)",
        # More lines than a plot can tell apart.
        "SELECT line_plot('s' || (i % 1000), 'x', i::DOUBLE) FROM range(1000) r(i)",
        # Series x positions past what one plot lays out (30 series of
        # 200,000 positions).
        "SELECT line_plot('s' || (i % 30), 'x' || (i // 30), i::DOUBLE) FROM range(6000000) r(i)",
    ]
    s = H.run_py_measured(stmts, timeout=120)
    s.check_alive(n=len(stmts), max_rss_mb=3072)
    assert s.results[0]["ok"] and s.results[0]["rows"] == [[True]], s.results[0]
    assert s.results[1]["ok"] and s.results[1]["rows"] == [[True]], s.results[1]
    many = s.results[2]
    assert not many["ok"] and many["is_duckdb_error"], many
    assert "1000 series" in many["message"] and "512" in many["message"], many["message"][:300]
    cells = s.results[3]
    assert not cells["ok"] and cells["is_duckdb_error"], cells
    assert "30 series x 200000 x positions" in cells["message"], cells["message"][:300]
    # The function's name once, not twice.
    assert "line_plot: line_plot" not in many["message"] + cells["message"]
