"""layercorr from Python: the built extension and DuckDB connections with it loaded.

    import layercorr
    con = layercorr.connect()
    con.sql("FROM nn_layers('data/models/efficientnet_lite0.onnx')")

`layercorr.cluster` runs extraction and the per-layer matrices as Ray tasks.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["extension_path", "connect", "ENV_VAR"]

ENV_VAR = "LAYERCORR_EXTENSION"

# python/layercorr/__init__.py -> the checkout's root (editable install)
_CHECKOUT = Path(__file__).resolve().parent.parent.parent
_DEFAULT = _CHECKOUT / "build" / "release" / "layercorr.duckdb_extension"


def extension_path() -> str:
    """Absolute path of the built extension.

    The environment variable LAYERCORR_EXTENSION overrides the default, the
    checkout's build/release/layercorr.duckdb_extension (`make build`).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser().resolve()
        if not p.is_file():
            raise FileNotFoundError(
                f"layercorr extension not found: {p} (from ${ENV_VAR}) is not a file")
        return str(p)
    if not _DEFAULT.is_file():
        raise FileNotFoundError(
            f"layercorr extension not found: {_DEFAULT} does not exist; run `make build` "
            f"in {_CHECKOUT} or set ${ENV_VAR}")
    return str(_DEFAULT)


def connect(database: str = ":memory:", *, extension: str | None = None, **config):
    """A duckdb connection with allow_unsigned_extensions and the extension loaded.

    Keyword arguments are DuckDB settings (threads=1, memory_limit='2GB', ...).
    """
    import duckdb

    path = extension or extension_path()
    cfg = {k: (str(v) if not isinstance(v, str) else v) for k, v in config.items()}
    cfg.setdefault("allow_unsigned_extensions", "true")
    con = duckdb.connect(database, config=cfg)
    con.execute("LOAD '" + path.replace("'", "''") + "'")
    return con
