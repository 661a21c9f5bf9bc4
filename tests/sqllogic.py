#!/usr/bin/env python3
"""A small sqllogictest-style runner for layercorr's SQL tests.

DuckDB's own runner is not on PyPI, so this module reads the subset of its
format that our tests use and runs a file in a real DuckDB host:

* ``python`` -- the Python package (``duckdb`` 2.0.x), in-process;
* ``cli``    -- the DuckDB shell (``.venv/bin/duckdb -unsigned``), one process
  per file, statements fed on stdin in JSON output mode with a unique marker
  query between statements, so that each statement's output (or error text)
  can be cut out of the shell's combined stdout/stderr.

Format (records are separated by blank lines)::

    # name: tests/sql/foo.test          header comments (name, group)
    # group: [layercorr]

    require layercorr                    LOAD the built extension

    statement ok
    CREATE TABLE t AS SELECT 1 AS a

    statement error
    SELECT nope()
    ----
    expected substring of the error message      (<REGEX>:pattern also works)

    query IR rowsort                     column types; rowsort|nosort|valuesort
    SELECT a, a / 3 FROM t
    ----
    1	0.333333333

Expected rows are tab-separated; ``NULL`` is SQL NULL, ``(empty)`` the empty
string. Values are rendered the DuckDB way (``[1, 2]``, ``{'k': v}``) and
compared token by token: text exactly, integers exactly, floats with
``|a - b| <= 1e-6 * max(1, |a|, |b|)``. ``${DATA}`` is replaced by the
repository's data directory, ``${TEST_DIR}`` by the test file's directory and
``${TMP}`` by a fresh temporary directory.

A crash of the host (a signal, or the shell's wrapper exiting with 128+) is a
failure. Run from the command line::

    python tests/sqllogic.py --host python|cli|both FILE...
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import decimal
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"
EXTENSION = REPO / "build" / "release" / "layercorr.duckdb_extension"
CLI = REPO / ".venv" / "bin" / "duckdb"
REL_TOL = 1e-6
CLI_TIMEOUT = 900

KNOWN_EXTENSIONS = {"layercorr"}


# --------------------------------------------------------------------------
# parsing


@dataclasses.dataclass
class Record:
    kind: str  # "require" | "statement_ok" | "statement_error" | "query"
    line: int  # 1-based line number of the directive
    sql: str = ""
    expected: list = dataclasses.field(default_factory=list)  # rows or message lines
    types: str = ""
    sort: str = "nosort"
    arg: str = ""  # extension name for require

    def describe(self) -> str:
        head = {"require": f"require {self.arg}", "statement_ok": "statement ok",
                "statement_error": "statement error",
                "query": f"query {self.types} {self.sort}"}[self.kind]
        return f"line {self.line}: {head}\n{self.sql}"


@dataclasses.dataclass
class TestFile:
    path: Path
    name: str | None
    group: str | None
    records: list


class ParseError(Exception):
    pass


def parse(text: str, path: Path | str = "<string>") -> TestFile:
    lines = text.splitlines()
    name = group = None
    records: list[Record] = []
    i = 0
    n = len(lines)

    def block(start: int) -> tuple[list[str], int]:
        """Lines from start up to a blank line or '----' (exclusive)."""
        out = []
        j = start
        while j < n and lines[j].strip() != "" and lines[j].rstrip() != "----":
            out.append(lines[j])
            j += 1
        return out, j

    def until_blank(start: int) -> tuple[list[str], int]:
        out = []
        j = start
        while j < n and lines[j].strip() != "":
            out.append(lines[j])
            j += 1
        return out, j

    while i < n:
        raw = lines[i]
        s = raw.strip()
        if not s:
            i += 1
            continue
        if s.startswith("#"):
            m = re.match(r"#\s*name:\s*(.*)", s)
            if m:
                name = m.group(1).strip()
            m = re.match(r"#\s*group:\s*(.*)", s)
            if m:
                group = m.group(1).strip()
            i += 1
            continue
        words = s.split()
        lineno = i + 1
        if words[0] == "require":
            if len(words) != 2:
                raise ParseError(f"{path}:{lineno}: require takes one extension name")
            records.append(Record("require", lineno, arg=words[1]))
            i += 1
        elif words[0] == "statement":
            if len(words) != 2 or words[1] not in ("ok", "error"):
                raise ParseError(f"{path}:{lineno}: expected 'statement ok' or 'statement error'")
            sql_lines, j = block(i + 1)
            if not sql_lines:
                raise ParseError(f"{path}:{lineno}: statement without SQL")
            rec = Record("statement_" + words[1], lineno, sql="\n".join(sql_lines))
            if j < n and lines[j].rstrip() == "----":
                if words[1] != "error":
                    raise ParseError(f"{path}:{lineno}: '----' after 'statement ok'")
                rec.expected, j = until_blank(j + 1)
            i = j
            records.append(rec)
        elif words[0] == "query":
            if len(words) < 2 or not re.fullmatch(r"[ITRB]+", words[1]):
                raise ParseError(f"{path}:{lineno}: 'query' needs column types made of I, T, R, B")
            sort = words[2] if len(words) > 2 else "nosort"
            if sort not in ("nosort", "rowsort", "valuesort") or len(words) > 3:
                raise ParseError(f"{path}:{lineno}: unsupported query options {words[2:]}")
            sql_lines, j = block(i + 1)
            if not sql_lines:
                raise ParseError(f"{path}:{lineno}: query without SQL")
            if j >= n or lines[j].rstrip() != "----":
                raise ParseError(f"{path}:{lineno}: query without '----' and expected rows")
            rows, j = until_blank(j + 1)
            records.append(Record("query", lineno, sql="\n".join(sql_lines), types=words[1],
                                  sort=sort, expected=rows))
            i = j
        else:
            raise ParseError(f"{path}:{lineno}: unknown directive {raw!r}")
    return TestFile(Path(path), name, group, records)


def substitute(sql: str, variables: dict) -> str:
    def rep(m):
        key = m.group(1)
        if key not in variables:
            raise ParseError(f"unknown variable ${{{key}}}")
        return str(variables[key])
    return re.sub(r"\$\{(\w+)\}", rep, sql)


# --------------------------------------------------------------------------
# rendering and comparing values


def render(v) -> str:
    """DuckDB-style text for a Python value (from the Python API or from JSON)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.date, datetime.datetime, datetime.time)):
        return v.isoformat(sep=" ") if isinstance(v, datetime.datetime) else v.isoformat()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(render(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"'{k}': {render(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02X}" for b in bytes(v))
    if isinstance(v, str):
        return v if v != "" else "(empty)"
    try:  # numpy scalars and the like
        import numpy as np
        if isinstance(v, np.generic):
            return render(v.item())
        if isinstance(v, np.ndarray):
            return render(v.tolist())
    except ImportError:  # pragma: no cover
        pass
    return str(v)


_NUM = re.compile(
    r"(?<![\w.])[-+]?(?:(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|inf(?:inity)?|nan)(?![\w])",
    re.IGNORECASE)


def _tokens(s: str):
    """Split into alternating text and number tokens; whitespace is dropped."""
    out = []
    pos = 0
    for m in _NUM.finditer(s):
        if m.start() > pos:
            out.append(("t", re.sub(r"\s+", "", s[pos:m.start()])))
        out.append(("n", m.group(0)))
        pos = m.end()
    if pos < len(s):
        out.append(("t", re.sub(r"\s+", "", s[pos:])))
    return [t for t in out if not (t[0] == "t" and t[1] == "")]


def _is_int_token(t: str) -> bool:
    return re.fullmatch(r"[-+]?\d+", t) is not None


def numbers_match(a: str, b: str, rel_tol: float = REL_TOL) -> bool:
    if _is_int_token(a) and _is_int_token(b):
        return int(a) == int(b)
    x, y = float(a.lower().replace("infinity", "inf")), float(b.lower().replace("infinity", "inf"))
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= rel_tol * max(1.0, abs(x), abs(y))


def values_match(expected: str, actual: str, rel_tol: float = REL_TOL) -> bool:
    if expected == actual:
        return True
    te, ta = _tokens(expected), _tokens(actual)
    if len(te) != len(ta):
        return False
    for (ke, ve), (ka, va) in zip(te, ta):
        if ke != ka:
            return False
        if ke == "t" and ve != va:
            return False
        if ke == "n" and not numbers_match(ve, va, rel_tol):
            return False
    return True


def _sort_rows(rows, mode):
    if mode == "rowsort":
        return sorted(rows, key=lambda r: "\t".join(r))
    if mode == "valuesort":
        return sorted(v for r in rows for v in r)
    return rows


def compare_query(rec: Record, ncols: int | None, rows: list[list[str]]) -> str | None:
    """None if the result matches, else a message."""
    if ncols is not None and ncols != len(rec.types):
        return (f"query declares {len(rec.types)} column(s) ({rec.types}) but the result has "
                f"{ncols}\nactual rows:\n" + "\n".join("\t".join(r) for r in rows))
    expected = [r.split("\t") for r in rec.expected]
    if rec.sort == "valuesort":
        exp_vals = _sort_rows(expected, "valuesort")
        act_vals = _sort_rows(rows, "valuesort")
        ok = len(exp_vals) == len(act_vals) and all(
            values_match(e, a) for e, a in zip(exp_vals, act_vals))
        if not ok:
            return f"values differ\nexpected: {exp_vals}\nactual:   {act_vals}"
        return None
    bad_width = [r for r in expected if len(r) != len(rec.types)]
    if bad_width:
        return (f"expected row {bad_width[0]!r} has {len(bad_width[0])} tab-separated value(s), "
                f"query declares {len(rec.types)}")
    exp = _sort_rows(expected, rec.sort)
    act = _sort_rows(rows, rec.sort)
    problem = None
    if len(exp) != len(act):
        problem = f"expected {len(exp)} row(s), got {len(act)}"
    else:
        for k, (e, a) in enumerate(zip(exp, act)):
            if len(e) != len(a) or not all(values_match(x, y) for x, y in zip(e, a)):
                problem = f"row {k + 1} differs"
                break
    if problem:
        return (problem + "\nexpected:\n" + "\n".join("\t".join(r) for r in exp)
                + "\nactual:\n" + "\n".join("\t".join(r) for r in act))
    return None


def error_matches(expected_lines: list[str], message: str) -> bool:
    if not expected_lines:
        return True
    want = "\n".join(expected_lines).strip()
    if want.startswith("<REGEX>:"):
        return re.search(want[len("<REGEX>:"):], message, re.DOTALL) is not None
    return want in message


# --------------------------------------------------------------------------
# hosts


@dataclasses.dataclass
class Outcome:
    """What the host said about one record."""
    error: str | None = None   # error text if the statement failed
    ncols: int | None = None   # number of result columns (None if unknown)
    rows: list | None = None   # rendered rows (lists of str)
    missing: bool = False      # no output at all (host died before it)
    stray: str | None = None   # text the host printed that is neither a result nor an error


@dataclasses.dataclass
class Failure:
    record: Record | None
    message: str

    def __str__(self):
        head = self.record.describe() if self.record else "(file)"
        return f"{head}\n--> {self.message}"


@dataclasses.dataclass
class Result:
    path: Path
    host: str
    failures: list
    crashed: bool = False
    returncode: int | None = None
    records_run: int = 0

    @property
    def ok(self):
        return not self.failures

    def report(self) -> str:
        lines = [f"{self.path} [{self.host}]: {len(self.failures)} failure(s) "
                 f"in {self.records_run} record(s)"
                 + (f"; HOST CRASHED (returncode {self.returncode})" if self.crashed else "")]
        for f in self.failures:
            lines.append("-" * 60)
            lines.append(str(f))
        return "\n".join(lines)


def missing_extension_message(ext: Path) -> str:
    return (f"the layercorr extension is not built: {ext} does not exist; "
            f"run `make build` first")


def check_record(rec: Record, out: Outcome) -> str | None:
    msg = _check_record(rec, out)
    if out.stray:
        msg = (msg + "\n" if msg else "") + (
            f"the host printed unexpected output (not a result, not an error): {out.stray[:2000]!r}")
    return msg


def _check_record(rec: Record, out: Outcome) -> str | None:
    if rec.kind == "statement_ok":
        if out.error is not None:
            return f"statement failed: {out.error}"
    elif rec.kind == "statement_error":
        if out.error is None:
            return "statement succeeded but an error was expected" + (
                f" containing {chr(10).join(rec.expected)!r}" if rec.expected else "")
        if not error_matches(rec.expected, out.error):
            return (f"error message does not contain the expected text\nexpected: "
                    f"{chr(10).join(rec.expected)!r}\nactual:   {out.error!r}")
    elif rec.kind == "query":
        if out.error is not None:
            return f"query failed: {out.error}"
        return compare_query(rec, out.ncols, out.rows or [])
    return None


def crashed_returncode(rc: int | None) -> bool:
    """True when a return code means the process died from a signal.

    subprocess reports a signal as a negative code; the `.venv/bin/duckdb`
    wrapper re-raises the child's code with SystemExit, so a signal there
    shows as 256 - signal (e.g. 245 for SIGSEGV); shells use 128 + signal.
    """
    return rc is not None and (rc < 0 or rc >= 128)


def describe_returncode(rc: int) -> str:
    sig = -rc if rc < 0 else (256 - rc if rc > 192 else rc - 128)
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return f"returncode {rc} ({name})"


def _variables(path: Path, tmpdir: str) -> dict:
    return {"DATA": str(DATA_DIR), "TEST_DIR": str(Path(path).resolve().parent), "TMP": tmpdir}


def run_python(tf: TestFile, extension: Path = EXTENSION) -> Result:
    """Run in this process with the duckdb Python package."""
    import duckdb

    res = Result(tf.path, "python", [])
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    tmpdir = tempfile.mkdtemp(prefix="sqllogic-")
    try:
        variables = _variables(tf.path, tmpdir)
        for rec in tf.records:
            res.records_run += 1
            if rec.kind == "require":
                msg = _require_python(con, rec.arg, extension)
                if msg:
                    res.failures.append(Failure(rec, msg))
                    return res  # nothing after a failed require can mean anything
                continue
            sql = substitute(rec.sql, variables)
            out = Outcome()
            try:
                cur = con.execute(sql)
                if rec.kind == "query":
                    desc = cur.description
                    out.ncols = len(desc) if desc is not None else 0
                    out.rows = [[render(v) for v in row] for row in cur.fetchall()]
                else:
                    try:
                        cur.fetchall()
                    except duckdb.InvalidInputException as e:
                        if "no open result set" not in str(e):
                            raise
            except duckdb.Error as e:
                out.error = f"{type(e).__name__}: {e}"
            msg = check_record(rec, out)
            if msg:
                res.failures.append(Failure(rec, msg))
    finally:
        con.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    return res


def _require_python(con, name: str, extension: Path) -> str | None:
    import duckdb
    if name not in KNOWN_EXTENSIONS:
        return f"require: unknown extension {name!r} (known: {sorted(KNOWN_EXTENSIONS)})"
    if not extension.exists():
        return missing_extension_message(extension)
    try:
        con.execute(f"LOAD '{_sql_str(extension)}'")
    except duckdb.Error as e:
        return f"LOAD '{extension}' failed: {e}"
    return None


def _sql_str(p) -> str:
    return str(p).replace("'", "''")


def run_python_subprocess(path: Path, extension: Path = EXTENSION,
                          python: str = sys.executable, timeout: int = CLI_TIMEOUT) -> Result:
    """Run the Python host in a child process, so that a crash is a failure, not the end."""
    cmd = [python, str(Path(__file__).resolve()), "--host", "python", "--json-report",
           "--extension", str(extension), str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    res = Result(Path(path), "python", [], returncode=proc.returncode)
    if crashed_returncode(proc.returncode):
        res.crashed = True
        res.failures.append(Failure(None, (
            f"the Python host crashed: {describe_returncode(proc.returncode)}\n"
            f"stdout tail:\n{proc.stdout[-3000:]}\nstderr tail:\n{proc.stderr[-3000:]}")))
        return res
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        res.failures.append(Failure(None, f"runner child printed no report (rc {proc.returncode})"
                                          f"\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"))
        return res
    res.records_run = report["records_run"]
    for f in report["failures"]:
        res.failures.append(Failure(None, f))
    if proc.stderr.strip():
        res.failures.append(Failure(None, "the host printed unexpected output on stderr: "
                                          f"{proc.stderr.strip()[:2000]!r}"))
    return res


_MARK_PREFIX = "__slt_mark_"


def run_cli(tf: TestFile, extension: Path = EXTENSION, cli_cmd: list | None = None,
            timeout: int = CLI_TIMEOUT) -> Result:
    """Run every record of a file through one DuckDB shell process."""
    res = Result(tf.path, "cli", [])
    cli_cmd = cli_cmd or [str(CLI), "-unsigned"]
    token = uuid.uuid4().hex[:8]
    tmpdir = tempfile.mkdtemp(prefix="sqllogic-")
    try:
        variables = _variables(tf.path, tmpdir)
        script = []
        sent = []  # records whose SQL went to the shell, in order

        def mark(k):
            return f"{_MARK_PREFIX}{token}_{k}"

        script.append(f"SELECT '{mark('start')}' AS __slt;")
        for rec in tf.records:
            if rec.kind == "require":
                if rec.arg not in KNOWN_EXTENSIONS:
                    res.failures.append(Failure(rec, f"require: unknown extension {rec.arg!r}"))
                    break
                if not extension.exists():
                    res.failures.append(Failure(rec, missing_extension_message(extension)))
                    break
                sql = f"LOAD '{_sql_str(extension)}';"
            else:
                sql = substitute(rec.sql, variables).rstrip()
                if not sql.endswith(";"):
                    sql += ";"
            script.append(sql)
            sent.append(rec)
            script.append(f"SELECT '{mark(len(sent) - 1)}' AS __slt;")
        stdin = "\n".join(script) + "\n"
        try:
            proc = subprocess.run(cli_cmd + ["-json"], input=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired as e:
            res.failures.append(Failure(None, f"the shell did not finish within {timeout} s"))
            res.crashed = True
            return res
        res.returncode = proc.returncode
        chunks = _split_cli_output(proc.stdout, token)
        if "start" not in chunks:
            res.failures.append(Failure(None, "the shell never answered the first marker query\n"
                                              + proc.stdout[-3000:]))
        for k, rec in enumerate(sent):
            res.records_run += 1
            if str(k) not in chunks:
                what = ("the shell stopped before answering this statement"
                        + (f" ({describe_returncode(proc.returncode)})"
                           if crashed_returncode(proc.returncode) else ""))
                res.failures.append(Failure(rec, what + "\noutput tail:\n" + proc.stdout[-2000:]))
                break
            text = chunks[str(k)]
            if rec.kind == "require":
                if text.strip():
                    res.failures.append(Failure(rec, f"LOAD failed: {text.strip()}"))
                    break
                continue
            out = _cli_outcome(text)
            msg = check_record(rec, out)
            if msg:
                res.failures.append(Failure(rec, msg))
        if crashed_returncode(proc.returncode):
            res.crashed = True
            res.failures.append(Failure(None, f"the shell crashed: "
                                              f"{describe_returncode(proc.returncode)}"))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return res


def _split_cli_output(text: str, token: str) -> dict:
    """Map marker id -> the output between the previous marker and this one.

    The script is `start-marker, sql_0, marker 0, sql_1, marker 1, ...`, so the
    text just before marker k is record k's output (result JSON or error text).
    """
    pat = re.compile(r'^\[\{"__slt":"' + re.escape(_MARK_PREFIX + token) + r'_(\w+)"\}\]\s*$',
                     re.MULTILINE)
    matches = list(pat.finditer(text))
    out = {}
    for a, m in enumerate(matches):
        out[m.group(1)] = text[matches[a - 1].end():m.start()] if a > 0 else ""
    return out


_ERROR_LINE = re.compile(r"^[A-Z][A-Za-z ]*Error: ", re.MULTILINE)


def _cli_outcome(text: str) -> Outcome:
    """Classify one statement's shell output: JSON result(s), an error, or stray text.

    A DuckDB error is a line starting with '<Kind> Error: '. Any other text that is
    not a JSON result (e.g. something the extension printed itself) is kept as
    `stray` and reported as a failure of its own."""
    s = text.strip()
    if not s:
        return Outcome(ncols=None, rows=[])
    if _ERROR_LINE.search(s):
        return Outcome(error=s)
    dec = json.JSONDecoder(object_pairs_hook=lambda pairs: pairs)
    results, stray = [], []
    for block in _json_blocks(s):
        try:
            obj, end = dec.raw_decode(block)
            if block[end:].strip() or not isinstance(obj, list):
                raise json.JSONDecodeError("trailing text", block, end)
            results.append(obj)
        except json.JSONDecodeError:
            stray.append(block)
    out = Outcome(ncols=None, rows=[])
    if results:
        last = results[-1]
        out.rows = [[render(_pairs_to_value(v)) for _, v in row] for row in last]
        out.ncols = len(last[0]) if last else None
    if stray:
        out.stray = "\n".join(stray)
    return out


def _json_blocks(s: str):
    """Split shell output into candidate blocks: a JSON result starts with '[' at the
    start of a line and runs to the line ending in ']'; other lines are single blocks."""
    lines = s.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("["):
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith("]"):
                j += 1
            yield "\n".join(lines[i:j + 1])
            i = j + 1
        else:
            if lines[i].strip():
                yield lines[i]
            i += 1


def _pairs_to_value(v):
    """JSON object_pairs_hook gives lists of pairs for objects; turn them into dicts."""
    if isinstance(v, list):
        if v and all(isinstance(p, tuple) and len(p) == 2 for p in v):
            return {k: _pairs_to_value(x) for k, x in v}
        return [_pairs_to_value(x) for x in v]
    return v


def run_file(path, host: str, extension: Path = EXTENSION, in_process: bool = False) -> Result:
    path = Path(path)
    try:
        tf = parse(path.read_text(), path)
    except ParseError as e:
        return Result(path, host, [Failure(None, f"parse error: {e}")])
    if tf.name is None or tf.group is None:
        return Result(path, host, [Failure(None, "missing '# name:' or '# group:' header")])
    if host == "python":
        return run_python(tf, extension) if in_process else run_python_subprocess(path, extension)
    if host == "cli":
        return run_cli(tf, extension)
    raise ValueError(f"unknown host {host!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--host", choices=["python", "cli", "both"], default="both")
    ap.add_argument("--extension", default=str(EXTENSION))
    ap.add_argument("--json-report", action="store_true",
                    help="(internal) print one JSON line with the failures, python host only")
    args = ap.parse_args(argv)
    ext = Path(args.extension)
    hosts = ["python", "cli"] if args.host == "both" else [args.host]
    if args.json_report:
        assert hosts == ["python"] and len(args.files) == 1
        path = Path(args.files[0])
        try:
            tf = parse(path.read_text(), path)
            res = run_python(tf, ext)
        except ParseError as e:
            res = Result(path, "python", [Failure(None, f"parse error: {e}")])
        print(json.dumps({"records_run": res.records_run,
                          "failures": [str(f) for f in res.failures]}))
        return 0
    bad = 0
    for f in args.files:
        for h in hosts:
            res = run_file(f, h, ext)
            print(res.report())
            bad += not res.ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
