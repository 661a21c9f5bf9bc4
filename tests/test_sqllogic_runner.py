"""Tests of the sqllogictest runner itself, on core DuckDB SQL only."""
from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

import sqllogic

HOSTS = ["python", "cli"]
HEADER = "# name: selftest\n# group: [runner]\n\n"


def write(tmp_path: Path, body: str, name="t.test") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + textwrap.dedent(body))
    return p


@pytest.mark.parametrize("host", HOSTS)
def test_core_file_passes(host):
    p = Path(__file__).parent / "sql" / "runner" / "core_sql.test"
    res = sqllogic.run_file(p, host)
    assert res.ok, res.report()
    assert res.records_run == len(sqllogic.parse(p.read_text(), p).records)


BAD_CASES = {
    "wrong_value": ("""
        query I
        SELECT 41
        ----
        42
        """, "row 1 differs"),
    "float_outside_tolerance": ("""
        query R
        SELECT 0.3334
        ----
        0.3333
        """, "row 1 differs"),
    "wrong_row_count": ("""
        query I
        SELECT * FROM range(3)
        ----
        0
        1
        """, "expected 2 row(s), got 3"),
    "wrong_column_count": ("""
        query I
        SELECT 1, 2
        ----
        1	2
        """, "declares 1 column"),
    "statement_ok_fails": ("""
        statement ok
        SELECT * FROM no_such_table_xyz
        """, "statement failed"),
    "error_expected_but_ok": ("""
        statement error
        SELECT 1
        ----
        whatever
        """, "statement succeeded"),
    "wrong_error_message": ("""
        statement error
        SELECT * FROM no_such_table_xyz
        ----
        Binder Error: something else
        """, "does not contain"),
    "query_errors": ("""
        query I
        SELECT error('kaputt')
        ----
        1
        """, "query failed"),
    "unordered_without_rowsort": ("""
        query I
        SELECT * FROM (VALUES (2), (1)) ORDER BY 1 DESC
        ----
        1
        2
        """, "row 1 differs"),
    "text_differs": ("""
        query T
        SELECT [1, 2, 3]
        ----
        [1, 2]
        """, "row 1 differs"),
}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_runner_reports_failures(tmp_path, host, case):
    body, needle = BAD_CASES[case]
    p = write(tmp_path, textwrap.dedent(body) + "\nquery I\nSELECT 42\n----\n42\n")
    res = sqllogic.run_file(p, host)
    assert not res.ok
    assert len(res.failures) == 1, res.report()  # only the bad record; the host went on
    assert needle in res.report(), res.report()
    assert res.records_run == 2


@pytest.mark.parametrize("host", HOSTS)
def test_state_persists_between_records(tmp_path, host):
    p = write(tmp_path, """
        statement ok
        CREATE TABLE t AS SELECT 7 AS a

        statement ok
        INSERT INTO t VALUES (8)

        query I rowsort
        SELECT a FROM t
        ----
        7
        8
        """)
    res = sqllogic.run_file(p, host)
    assert res.ok, res.report()


@pytest.mark.parametrize("host", HOSTS)
def test_data_substitution(tmp_path, host):
    p = write(tmp_path, """
        query T
        SELECT '${DATA}'
        ----
        %s
        """ % sqllogic.DATA_DIR)
    assert sqllogic.run_file(p, host).ok


@pytest.mark.parametrize("host", HOSTS)
def test_require_missing_extension_fails_clearly(tmp_path, host):
    p = write(tmp_path, """
        require layercorr

        query I
        SELECT 1
        ----
        1
        """)
    res = sqllogic.run_file(p, host, extension=tmp_path / "nope.duckdb_extension")
    assert not res.ok
    assert "make build" in res.report()


def test_missing_header_fails(tmp_path):
    p = tmp_path / "x.test"
    p.write_text("query I\nSELECT 1\n----\n1\n")
    res = sqllogic.run_file(p, "python")
    assert not res.ok and "name:" in res.report()


@pytest.mark.parametrize("text", ["statement maybe\nSELECT 1\n", "query X\nSELECT 1\n----\n1\n",
                                  "query I\nSELECT 1\n", "frobnicate\n"])
def test_parse_errors(text):
    with pytest.raises(sqllogic.ParseError):
        sqllogic.parse(HEADER + text)


def test_values_match():
    m = sqllogic.values_match
    assert m("0.5", "0.5000001")
    assert not m("0.5", "0.5001")
    assert m("[1.0, 0.5]", "[1, 0.50000004]")
    assert not m("[1.0, 0.5]", "[1.0, 0.5, 0.2]")
    assert not m("3", "4")
    assert m("1e-7", "0.0")  # absolute floor 1e-6
    assert not m("abc", "abd")
    assert m("nan", "NaN") and m("inf", "Infinity") and not m("inf", "-inf")
    assert m("{'keys': [a, b]}", "{'keys': [a, b]}")
    assert not m("{'keys': [a, b]}", "{'keys': [b, a]}")
    assert not m("blocks.5", "blocks.6")


def test_crash_detection_cli(tmp_path):
    """A shell that dies from a signal is a failure, reported as a crash."""
    fake = tmp_path / "fake_duckdb"
    fake.write_text("#!/bin/sh\ncat >/dev/null\nkill -SEGV $$\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    tf = sqllogic.parse(HEADER + "query I\nSELECT 1\n----\n1\n", tmp_path / "c.test")
    res = sqllogic.run_cli(tf, cli_cmd=[str(fake)])
    assert res.crashed and not res.ok
    assert "SIGSEGV" in res.report()


def test_crash_detection_cli_wrapper_exit_code(tmp_path):
    """The venv wrapper turns a child's SIGSEGV into exit status 245."""
    fake = tmp_path / "fake_duckdb"
    fake.write_text("#!/bin/sh\ncat >/dev/null\nexit 245\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    tf = sqllogic.parse(HEADER + "query I\nSELECT 1\n----\n1\n", tmp_path / "c.test")
    res = sqllogic.run_cli(tf, cli_cmd=[str(fake)])
    assert res.crashed and not res.ok


def test_crash_detection_python_host(tmp_path):
    """The Python host runs in a child process; a child killed by a signal is a crash."""
    fake_py = tmp_path / "fake_python"
    fake_py.write_text("#!/bin/sh\nkill -ABRT $$\n")
    fake_py.chmod(fake_py.stat().st_mode | stat.S_IEXEC)
    p = write(tmp_path, "query I\nSELECT 1\n----\n1\n")
    res = sqllogic.run_python_subprocess(p, python=str(fake_py))
    assert res.crashed and not res.ok and "SIGABRT" in res.report()
    assert not sqllogic.crashed_returncode(1) and not sqllogic.crashed_returncode(0)


def test_cli_output_classification():
    o = sqllogic._cli_outcome('[{"a":1},\n{"a":2}]\n')
    assert o.error is None and o.rows == [["1"], ["2"]] and o.ncols == 1 and not o.stray
    o = sqllogic._cli_outcome('Invalid Input Error: boom\n')
    assert o.error and "boom" in o.error
    o = sqllogic._cli_outcome('debug 0.001\n[{"a":1}]\n')
    assert o.error is None and o.rows == [["1"]] and o.stray == "debug 0.001"
    o = sqllogic._cli_outcome('noise only\n')
    assert o.error is None and o.stray == "noise only"
    o = sqllogic._cli_outcome('[{"a":[1,2]}]')
    assert o.rows == [["[1, 2]"]]


def test_stray_output_is_a_failure():
    rec = sqllogic.Record("statement_ok", 1, sql="SELECT 1")
    assert "unexpected output" in sqllogic.check_record(rec, sqllogic.Outcome(rows=[], stray="dbg"))
    assert sqllogic.check_record(rec, sqllogic.Outcome(rows=[])) is None
