"""The analysis scripts end to end, and the numbers behind their figures.

`sql/demo.sql` then every `sql/0*.sql` script runs in the DuckDB shell
(duckdb-cli 1.5.6) on a fresh database, exactly as the README tells users
to run them; each must succeed and write legible PNGs. The layer x layer
matrix of the demo is then checked: ones on the diagonal, symmetric, and
similarity to the input falling with depth (Spearman < 0).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

import lc_helpers as H

SCRIPTS = sorted((H.REPO / "sql").glob("0*.sql"))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory, ext_path, model_path, photos, cli_path) -> Path:
    db = tmp_path_factory.mktemp("analysis") / "demo.duckdb"
    run_script(cli_path, db, H.REPO / "sql" / "demo.sql")
    return db


def run_script(cli: Path, db: Path, script: Path) -> str:
    proc = subprocess.run(
        [str(cli), "-unsigned", "-bail", str(db)],
        stdin=script.open(),
        cwd=H.REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"{script.name} failed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "Error" not in proc.stderr, f"{script.name}: {proc.stderr[-2000:]}"
    return proc.stdout


def figures_of(script: Path) -> list[Path]:
    return [H.REPO / p for p in re.findall(r"write_png\('([^']+\.png)'", script.read_text())]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_runs_and_writes_legible_pngs(script, demo_db, cli_path):
    figures = figures_of(script)
    assert figures, f"{script.name} writes no figure"
    for f in figures:
        f.unlink(missing_ok=True)
    run_script(cli_path, demo_db, script)
    for f in figures:
        assert f.exists(), f"{script.name} did not write {f}"
        with Image.open(f) as img:
            img.load()
            width, height = img.size
            assert width >= 400 and height >= 300, f"{f.name} is only {width} x {height}"
            pixels = np.asarray(img.convert("L"))
        # Text and data on a white background: a real share of dark pixels
        # (labels, frame) and of non-white ones (the data itself).
        assert (pixels < 100).mean() > 0.001, f"{f.name} has no text or lines"
        assert (pixels < 250).mean() > 0.01, f"{f.name} is nearly blank"


def test_layer_similarity_of_the_demo(demo_db, ext_path):
    con = duckdb.connect(str(demo_db), read_only=True, config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{H.sql_str(ext_path)}'")
    layers, matrix = con.execute(
        """SELECT s.layers, s.matrix FROM (
               SELECT layer_similarity(layer, m ORDER BY position) AS s
               FROM matrices JOIN layers USING (layer))"""
    ).fetchone()
    positions = dict(con.execute("SELECT layer, position FROM layers").fetchall())
    con.close()
    sim = np.array(matrix)
    assert layers[0] == "input" and layers[-1] == "logits"
    assert [positions[layer] for layer in layers] == sorted(positions[layer] for layer in layers)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-12)
    np.testing.assert_allclose(sim, sim.T, atol=1e-12)
    to_input = sim[0, 1:]
    depth = [positions[layer] for layer in layers[1:]]
    rho = spearmanr(depth, to_input).statistic
    assert rho < 0, f"similarity to input does not fall with depth (Spearman {rho:.3f})"
    assert to_input[-1] < to_input[0], "the logits are not further from the input than the first layer"
