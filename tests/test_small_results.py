"""Smaller wrong or unclear results named in issue 13 (5), one test each:

* `corr_heatmap(m, order)` with a duplicate key in `order` is an error;
* `layer_corr` on tiny but non-constant values (around 1e-38, float32
  underflow if the variance were computed in float32) gives the correlation,
  not "constant (zero variance)";
* empty activations are an error that says so.

All statements run in one child host process; references come from numpy.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import lc_helpers as H

TINY = {
    "a": [2e-38, 3e-38, 5e-38, 4e-38],
    "b": [5e-38, 2e-38, 3e-38, 6e-38],
    "c": [3e-38, 3e-38, 6e-38, 2e-38],
}


def _values(d):
    return ", ".join(f"('{k}', [{', '.join(repr(x) for x in v)}]::FLOAT[])" for k, v in d.items())


MAT = ("(SELECT layer_corr(k, v) FROM (VALUES ('a', [1, 2, 3]::FLOAT[]), ('b', [1, 3, 2]::FLOAT[]), "
       "('c', [3, 1, 2]::FLOAT[])) t(k, v))")

STATEMENTS = {
    "heatmap_duplicate_order": f"SELECT octet_length(corr_heatmap({MAT}, ['a', 'a', 'c']))",
    "heatmap_good_order": f"SELECT octet_length(corr_heatmap({MAT}, ['c', 'a', 'b']))",
    "tiny_values": f"SELECT r.keys, r.matrix FROM (SELECT layer_corr(k, v) AS r FROM (VALUES {_values(TINY)}) t(k, v))",
    "empty_vectors": "SELECT layer_corr(k, v) FROM (VALUES ('a', []::FLOAT[]), ('b', []::FLOAT[])) t(k, v)",
    "alive": "SELECT 42",
}


@pytest.fixture(scope="module")
def results(ext_path):
    s = H.run_py_measured(list(STATEMENTS.values()), timeout=60)
    s.check_alive(n=len(STATEMENTS), max_rss_mb=1024)
    assert s.results[-1]["rows"] == [[42]]
    return dict(zip(STATEMENTS, s.results))


def test_corr_heatmap_duplicate_key_in_order(results):
    rec = results["heatmap_duplicate_order"]
    assert not rec["ok"], "corr_heatmap drew a key twice (order ['a', 'a', 'c']) instead of refusing"
    assert rec["is_duckdb_error"] and re.search(r"'?a'?", rec["message"]) and \
        re.search(r"(?i)duplicate|twice|more than once", rec["message"]), rec["message"][:400]
    good = results["heatmap_good_order"]
    assert good["ok"] and good["rows"][0][0] > 100, good


def test_layer_corr_tiny_values_are_not_constant(results):
    rec = results["tiny_values"]
    assert rec["ok"], f"values around 1e-38 were refused: {rec['message'][:400]}"
    keys, matrix = rec["rows"][0]
    assert keys == sorted(TINY)
    x = np.array([np.array(TINY[k], dtype=np.float32).astype(np.float64) for k in keys])
    ref = np.corrcoef(x)
    got = np.array(matrix, dtype=np.float64)
    assert np.allclose(got, ref, atol=1e-5), f"got {got.round(5).tolist()}, numpy {ref.round(5).tolist()}"


def test_layer_corr_empty_activation_says_empty(results):
    rec = results["empty_vectors"]
    assert not rec["ok"] and rec["is_duckdb_error"], rec
    assert re.search(r"(?i)empty", rec["message"]), f"the error does not say 'empty': {rec['message'][:400]}"
