"""Bad input in real hosts: the Python package and the DuckDB shell.

Every case runs in a child process (one connection / one shell process), so
that a crash of the host is a failed test and not the end of the test run;
after each bad statement the same connection or process must still answer
`SELECT 42`.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import lc_helpers as H
from lc_helpers import sql_str


@pytest.fixture(scope="module")
def bad_files(photos, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {}
    files["text_model"] = d / "text_model_q.onnx"
    files["text_model"].write_text("this is a text file, not an ONNX model\n" * 20)
    src = photos[0].read_bytes()
    files["truncated"] = d / "truncated_q.jpg"
    files["truncated"].write_bytes(src[: len(src) // 2])
    rng = np.random.default_rng(7)
    files["garbage"] = d / "garbage_q.jpg"
    files["garbage"].write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["garbage_jpeg_header"] = d / "garbage_header_q.jpg"
    files["garbage_jpeg_header"].write_bytes(src[:600] + rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["empty"] = d / "empty_q.jpg"
    files["empty"].write_bytes(b"")
    files["huge"] = d / "huge_q.png"
    Image.new("RGB", (10000, 10000), (120, 30, 200)).save(files["huge"], compress_level=1)
    files["directory"] = d / "a_directory_q.jpg"
    files["directory"].mkdir()
    return files


M = lambda: sql_str(H.MODEL)  # noqa: E731


def nn(model_sql: str, path_sql: str, layers_sql: str = "['pool']") -> str:
    return f"SELECT nn_activations({model_sql}, {path_sql}, {layers_sql}) AS a"


def lit(p) -> str:
    return f"'{sql_str(p)}'"


def error_cases(files, photos):
    """name -> (sql, regex the message must match)."""
    photo = lit(photos[0])
    model = lit(H.MODEL)
    return {
        "missing_model": (nn(lit(H.DATA / "models" / "missing_model_q.onnx"), photo), r"missing_model_q\.onnx"),
        "text_as_model": (nn(lit(files["text_model"]), photo), r"text_model_q\.onnx"),
        "missing_image": (nn(model, lit(H.PHOTOS / "missing_photo_q.jpg")), r"missing_photo_q\.jpg"),
        "truncated_jpeg": (nn(model, lit(files["truncated"])), r"truncated_q\.jpg"),
        "garbage_bytes": (nn(model, lit(files["garbage"])), r"garbage_q\.jpg"),
        "garbage_after_jpeg_header": (nn(model, lit(files["garbage_jpeg_header"])), r"garbage_header_q\.jpg"),
        "zero_byte_file": (nn(model, lit(files["empty"])), r"empty_q\.jpg"),
        "huge_image": (nn(model, lit(files["huge"])), r"huge_q\.png"),
        "directory_as_image": (nn(model, lit(files["directory"])), r"a_directory_q\.jpg"),
        "unknown_layer": (nn(model, photo, "['blocks.3.expandd']"),
                          r"(?s)^(?=.*blocks\.3\.expandd)(?=.*nearest)(?=.*blocks\.3\.expand\b)"),
        "null_model": (nn("NULL::VARCHAR", photo), r"(?i)model is null"),
        "empty_layer_list": (nn(model, photo, "[]::VARCHAR[]"), r"(?i)(empty|no layers)"),
        "table_form_missing_image": (
            f"SELECT * FROM nn_activations({model}, [{lit(H.PHOTOS / 'missing_photo_t.jpg')}], layers := ['pool'])",
            r"missing_photo_t\.jpg"),
        "table_form_corrupt_image": (
            f"SELECT * FROM nn_activations({model}, [{photo}, {lit(files['truncated'])}], layers := ['pool'])",
            r"truncated_q\.jpg"),
    }


CASES = ["missing_model", "text_as_model", "missing_image", "truncated_jpeg", "garbage_bytes",
         "garbage_after_jpeg_header", "zero_byte_file", "huge_image", "directory_as_image",
         "unknown_layer", "null_model", "empty_layer_list", "table_form_missing_image",
         "table_form_corrupt_image"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_python_host(case, bad_files, photos, pychild):
    sql, pattern = error_cases(bad_files, photos)[case]
    s = pychild([sql, "SELECT 42", f"SELECT len(nn_activations({lit(H.MODEL)}, {lit(photos[1])}, ['pool'])[1].activation)"])
    assert not s.crashed, f"Python host crashed: {H.describe_returncode(s.returncode)}\n{s.stderr[-3000:]}"
    assert len(s.results) == 3, f"child stopped early (rc {s.returncode}):\n{s.stderr[-3000:]}"
    bad, alive, still_works = s.results
    assert not bad["ok"], f"no error for {case}: {bad}"
    assert bad["is_duckdb_error"], bad
    assert re.search(pattern, bad["message"]), f"message does not match {pattern!r}: {bad['message']!r}"
    assert alive == {"ok": True, "rows": [[42]]}
    assert still_works == {"ok": True, "rows": [[1280]]}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_cli_host(case, bad_files, photos, cli):
    sql, pattern = error_cases(bad_files, photos)[case]
    r = cli(f"{sql};\nSELECT 42 AS answer;\n"
            f"SELECT len(nn_activations({lit(H.MODEL)}, {lit(photos[1])}, ['pool'])[1].activation) AS n;\n")
    r.check_alive()
    assert re.search(pattern, r.stderr), f"stderr does not match {pattern!r}:\n{r.stderr[-3000:]}"
    assert "Error" in r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("[")]
    assert [{"answer": 42}] in out, r.stdout[-3000:]
    assert [{"n": 1280}] in out, r.stdout[-3000:]
    assert r.returncode == 1  # the shell reports that a statement failed


def test_null_path_gives_null_python(con, photos):
    rows = con.execute(f"SELECT nn_activations({lit(H.MODEL)}, p, ['pool']) FROM "
                       f"(VALUES (NULL::VARCHAR), ({lit(photos[0])}), (NULL)) t(p)").fetchall()
    assert rows[0][0] is None and rows[2][0] is None
    assert rows[1][0] is not None and len(rows[1][0][0]["activation"]) == 1280


def test_null_path_gives_null_cli(cli, photos):
    r = cli(f"SELECT nn_activations({lit(H.MODEL)}, NULL::VARCHAR, ['pool']) IS NULL AS isnull, 42 AS answer;\n")
    r.check_alive()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"isnull": True, "answer": 42}]


def test_one_bad_image_in_a_table_names_it(pychild, bad_files, photos):
    values = ", ".join(f"({lit(p)})" for p in photos[:5] + [bad_files["truncated"]] + photos[5:9])
    s = pychild([f"SELECT count(nn_activations({lit(H.MODEL)}, p, ['pool'])) FROM (VALUES {values}) t(p)",
                 "SELECT 42"])
    assert not s.crashed and len(s.results) == 2, s.stderr[-3000:]
    assert not s.results[0]["ok"] and "truncated_q.jpg" in s.results[0]["message"]
    assert s.results[1]["rows"] == [[42]]


def test_many_errors_in_one_process_cli(cli, bad_files, photos):
    """All the bad statements in one shell process, then real work."""
    sql = "".join(f"{c[0]};\n" for c in error_cases(bad_files, photos).values())
    r = cli(sql + f"SELECT len(nn_activations({lit(H.MODEL)}, {lit(photos[2])}, ['logits'])[1].activation) AS n;\n")
    r.check_alive()
    assert r.stderr.count("Error") >= len(CASES)
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [{"n": 1000}]


def memory_limit_cases(photos):
    """Statements that make DuckDB throw inside a C API call the extension
    makes (the memory limit is hit while the result grows): a DuckDB error,
    not an abort of the host ("Rust cannot catch foreign exceptions")."""
    table = ("CREATE TABLE t AS SELECT 'k' || lpad(i::VARCHAR, 5, '0') AS key, "
             "[random()::FLOAT for x in range(16)] AS activation FROM range(6000) r(i)")
    many = "[" + ", ".join([lit(photos[0])] * 10) + "]"
    return [
        table,
        "SET memory_limit = '60MB'",
        "SELECT len(r.keys) AS n FROM (SELECT layer_corr(key, activation) AS r FROM t)",
        "SET memory_limit = '8MB'",
        f"CREATE TABLE a AS FROM nn_activations({lit(H.MODEL)}, {many}, layers := ['input', 'stem'])",
        "SET memory_limit = '4GB'",
        # The aggregate sees the settings as last read by a layercorr call:
        # the 8 MB above, until this call reads the new limit.
        "SELECT count(*) > 0 FROM layercorr_settings()",
        "SELECT len(r.keys) AS n FROM (SELECT layer_corr(key, activation) AS r FROM t)",
    ]


def test_memory_limit_inside_a_c_api_call_python(pychild, photos):
    s = pychild(memory_limit_cases(photos))
    assert not s.crashed, f"Python host crashed: {H.describe_returncode(s.returncode)}\n{s.stderr[-3000:]}"
    assert len(s.results) == 8, s.stderr[-3000:]
    corr, acts = s.results[2], s.results[4]
    assert not corr["ok"] and corr["is_duckdb_error"], corr
    assert re.search(r"6000 x 6000 matrix .*Out of Memory", corr["message"]), corr["message"]
    assert not acts["ok"] and re.search(r"nn_activations: .*(Out of Memory|memory_limit)", acts["message"]), acts
    assert s.results[7] == {"ok": True, "rows": [[6000]]}


def test_memory_limit_inside_a_c_api_call_cli(cli, photos):
    r = cli("".join(f"{s};\n" for s in memory_limit_cases(photos)))
    r.check_alive()
    assert re.search(r"6000 x 6000 matrix .*Out of Memory", r.stderr), r.stderr[-3000:]
    assert re.search(r"nn_activations: .*(Out of Memory|memory_limit)", r.stderr), r.stderr[-3000:]
    out = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("[")]
    assert [o for o in out if "n" in o[0]] == [[{"n": 6000}]], r.stdout[-3000:]
