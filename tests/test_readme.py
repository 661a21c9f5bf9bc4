"""The README's examples run as written.

A user copies the README's SQL into the DuckDB shell and its Python into a
notebook, from the repository root after `make demo`. Every ```sql block
whose files `make demo` provides runs here in the shell (duckdb-cli 1.5.6),
in the README's order, on one fresh database, and the ```python notebook
block in the venv's Python, each from a directory laid out like the
repository (its `build/` and `data/`, an empty `out/`), so that the
figures they write land beside the test. Blocks about the user's own files
(`my_model.onnx`) or a Ray cluster are illustrations; the test checks that
it found the others, so a renamed or rewritten example cannot drop out
unseen.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

import lc_helpers as H

README = H.REPO / "README.md"
MODEL = "data/models/efficientnet_lite0.onnx"
PHOTOS = "data/photos/classification/*.jpg"


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def runnable(block: str) -> bool:
    """Whether a block uses only what `make demo` provides."""
    return "my_model" not in block and "my_photos" not in block and "cluster." not in block


@pytest.fixture
def workdir(tmp_path, ext_path, model_path) -> Path:
    """A directory laid out like the repository, as the README's paths expect."""
    for name in ("build", "data"):
        (tmp_path / name).symlink_to(H.REPO / name, target_is_directory=True)
    (tmp_path / "out").mkdir()
    return tmp_path


def run_shell(cli: Path, db: Path, sql: str, cwd: Path) -> str:
    proc = subprocess.run([str(cli), "-unsigned", "-bail", "-csv", str(db)], input=sql,
                          cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"README SQL failed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "Error" not in proc.stderr, proc.stderr[-2000:]
    return proc.stdout


def test_the_readme_sql_runs_in_the_shell_as_written(workdir, cli_path, photos):
    sql = [b for b in blocks("sql") if runnable(b)]
    assert len(sql) >= 2, "the README's tour and its one-statement example are missing"
    assert "LOAD" in sql[0], "the tour no longer loads the extension first"
    db = workdir / "readme.duckdb"
    run_shell(cli_path, db, "\n".join(sql), workdir)

    figure = workdir / "out" / "similarity.png"
    assert figure.exists(), "the tour did not write out/similarity.png"
    with Image.open(figure) as img:
        assert img.width >= 200 and img.height >= 200
        assert len(np.unique(np.asarray(img.convert("L")))) > 10, "the heatmap is blank"

    with duckdb.connect(str(db), read_only=True) as con:
        # The tour's matrices: one per captured layer, every photo once.
        n = len(photos)
        rows = con.execute("SELECT layer, len(m.keys), len(m.matrix) FROM matrices").fetchall()
        layers = {r[0] for r in rows}
        assert {"input", "stem", "head", "pool", "logits"} <= layers
        assert any(layer.startswith("blocks.") for layer in layers)
        assert all(k == n and m == n for _, k, m in rows), rows
        # The one-statement example: exactly its five layers.
        mats = con.execute("SELECT layer, m.matrix FROM mats ORDER BY layer").fetchall()
        assert [r[0] for r in mats] == sorted(["input", "stem", "blocks.5", "head", "logits"])
        for layer, matrix in mats:
            r = np.array(matrix, dtype=np.float64)
            assert r.shape == (n, n), layer
            np.testing.assert_allclose(np.diag(r), 1.0, atol=1e-5, err_msg=layer)
            np.testing.assert_allclose(r, r.T, atol=1e-6, err_msg=layer)


def test_the_readme_subset_through_a_variable(workdir, cli_path, photos):
    """The README's way to hand a subset's paths to the table form."""
    assert "getvariable('paths')" in README.read_text()
    sql = f"""
LOAD 'build/release/layercorr.duckdb_extension';
CREATE TABLE images AS SELECT file AS path, row_number() OVER (ORDER BY file) AS i
FROM glob('{PHOTOS}');
SET VARIABLE paths = (SELECT list(path) FROM images WHERE i % 3 = 0);
SELECT count(DISTINCT path), count(*) FROM nn_activations('{MODEL}', getvariable('paths'),
                                                         layers := ['stem', 'logits']);
"""
    out = run_shell(cli_path, workdir / "subset.duckdb", sql, workdir).strip().splitlines()
    expected = len(photos) // 3
    assert out[-1] == f"{expected},{2 * expected}", out


def test_the_readme_notebook_block_runs(workdir, photos):
    (notebook,) = [b for b in blocks("python") if runnable(b)]
    check = """
assert r.shape == (len(keys), len(keys)) == (EXPECTED, EXPECTED), r.shape
assert keys == sorted(keys)
assert np.allclose(np.diag(r), 1.0, atol=1e-5) and np.allclose(r, r.T, atol=1e-6)
print("ok", len(keys))
""".replace("EXPECTED", str(len(photos)))
    proc = subprocess.run([sys.executable, "-c", notebook + check], cwd=workdir,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", str(len(photos))]
