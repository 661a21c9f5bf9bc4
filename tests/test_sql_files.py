"""Run every tests/sql/**/*.test file in both hosts: the Python package and the shell."""
from __future__ import annotations

from pathlib import Path

import pytest

import sqllogic

SQL_DIR = Path(__file__).resolve().parent / "sql"
FILES = sorted(SQL_DIR.rglob("*.test"))


def test_sql_files_exist():
    names = {p.name for p in FILES}
    for want in ["nn_layers.test", "nn_activations.test", "nn_activations_errors.test",
                 "layer_corr.test", "layer_corr_errors.test", "layer_similarity.test",
                 "rsa.test", "corr_order.test"]:
        assert want in names, f"missing tests/sql/{want}"


@pytest.mark.parametrize("host", ["python", "cli"])
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SQL_DIR)) for p in FILES])
def test_sql_file(path, host):
    text = path.read_text()
    if "require layercorr" in text and not sqllogic.EXTENSION.exists():
        pytest.fail(sqllogic.missing_extension_message(sqllogic.EXTENSION), pytrace=False)
    if "${DATA}" in text and not (sqllogic.DATA_DIR / "models" / "efficientnet_lite0.onnx").exists():
        pytest.fail(f"demo assets are missing under {sqllogic.DATA_DIR}; run `make assets` first",
                    pytrace=False)
    res = sqllogic.run_file(path, host)
    assert res.records_run > 0 or res.failures, f"{path}: no records were run"
    assert res.ok, res.report()
