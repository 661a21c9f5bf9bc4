#!/usr/bin/env python3
"""Turn a Rust cdylib into a loadable DuckDB extension file.

DuckDB identifies a loadable extension by a 512-byte footer appended to the
shared library: eight NUL-padded 32-byte ASCII fields (three empty, then ABI
type, extension version, C API version, platform, magic "4") followed by a
256-byte signature, all zeros for an unsigned build. This script writes the
library with that footer to `<name>.duckdb_extension`.
"""

import argparse
import shutil
import sys
from pathlib import Path

FIELD = 32
SIGNATURE = 256


def field(text: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > FIELD:
        raise ValueError(f"footer field too long: {text!r}")
    return raw + b"\0" * (FIELD - len(raw))


def footer(extension_version: str, capi_version: str, platform: str) -> bytes:
    fields = [
        "",
        "",
        "",
        "C_STRUCT",
        extension_version,
        capi_version,
        platform,
        "4",
    ]
    data = b"".join(field(f) for f in fields) + b"\0" * SIGNATURE
    assert len(data) == 512
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("library", type=Path, help="the built cdylib (.so)")
    parser.add_argument("output", type=Path, help="<name>.duckdb_extension to write")
    parser.add_argument("--extension-version", default="v0.1.0")
    parser.add_argument("--capi-version", default="v1.5.6")
    parser.add_argument("--platform", default="linux_amd64")
    args = parser.parse_args()
    if not args.library.is_file():
        print(f"append_footer: library not found: {args.library}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    shutil.copyfile(args.library, tmp)
    with open(tmp, "ab") as out:
        out.write(footer(args.extension_version, args.capi_version, args.platform))
    tmp.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
