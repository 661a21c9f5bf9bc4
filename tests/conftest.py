"""Fixtures for layercorr's tests.

Nothing is skipped: when the extension or the demo assets are missing, the
tests that need them FAIL with a message saying which make target to run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lc_helpers as H  # noqa: E402


def _need(path: Path, what: str, target: str):
    if not path.exists():
        pytest.fail(f"{what} is missing: {path} does not exist; run `make {target}` first",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return H.REPO


@pytest.fixture(scope="session")
def ext_path() -> Path:
    return _need(H.EXTENSION, "the layercorr extension", "build")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(H.DATA, "the demo data directory", "assets")


@pytest.fixture(scope="session")
def model_path(data_dir) -> Path:
    return _need(H.MODEL, "the EfficientNet-Lite0 model", "assets")


@pytest.fixture(scope="session")
def inception_path(data_dir) -> Path:
    return _need(H.INCEPTION, "the light_inception_v1 model", "assets")


@pytest.fixture(scope="session")
def photos(data_dir) -> list[Path]:
    _need(H.PHOTOS, "the demo photos", "assets")
    ps = H.photo_paths()
    if len(ps) != 100:
        pytest.fail(f"expected 100 photos in {H.PHOTOS}, found {len(ps)}; run `make assets`",
                    pytrace=False)
    return ps


@pytest.fixture(scope="session")
def cli_path() -> Path:
    return _need(H.CLI, "the DuckDB shell (duckdb-cli)", "venv")


def _connect(ext: Path):
    import duckdb
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{H.sql_str(ext)}'")
    return con


@pytest.fixture
def con(ext_path):
    """A fresh in-memory Python connection with the extension loaded."""
    c = _connect(ext_path)
    yield c
    c.close()


@pytest.fixture(scope="module")
def mcon(ext_path):
    """One connection per test module (for the expensive, read-only checks)."""
    c = _connect(ext_path)
    yield c
    c.close()


@pytest.fixture
def cli(ext_path, cli_path):
    """run(sql, load=True, json_mode=True) -> CliResult(stdout, stderr, returncode)."""
    return H.run_cli


@pytest.fixture
def pychild(ext_path):
    """run(statements, load=True) -> PySession: one connection in a child process."""
    return H.run_python_child
