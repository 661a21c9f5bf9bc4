"""Model facts and preprocessing (issue 15): `nn_layers.op` is the ONNX
operator type, `nn_model` describes the file.

References are independent of the extension: the onnx package for graph
facts, hashlib for the file's hash.
"""
from __future__ import annotations

import hashlib

import onnx
import pytest
from onnx import TensorProto, helper

import lc_helpers as H
from lc_helpers import sql_str


def lit(p) -> str:
    return f"'{sql_str(p)}'"


def onnx_op_types(path) -> dict[str, str]:
    m = onnx.load(str(path), load_external_data=False)
    return {out: n.op_type for n in m.graph.node for out in n.output}


@pytest.mark.parametrize("which", ["demo", "inception"])
def test_op_is_the_onnx_operator_type(mcon, model_path, inception_path, which):
    path = model_path if which == "demo" else inception_path
    want = onnx_op_types(path)
    rows = mcon.execute(f"SELECT layer, op FROM nn_layers({lit(path)}) ORDER BY position").fetchall()
    assert rows[0] == ("input", "Input")
    assert len(rows) > 10
    for layer, op in rows[1:]:
        assert layer in want, f"{layer} is not the output of any node"
        assert op == want[layer], f"{layer}: op {op!r}, the ONNX node is {want[layer]!r}"
    ops = {op for _, op in rows}
    if which == "demo":
        # ReLU6 is written as Clip in the demo model; tract would call it Max/Min.
        assert {"Conv", "Clip", "Add"} <= ops, ops
    else:
        assert {"Conv", "Relu", "Concat"} <= ops, ops


def test_where_op_filters_relu(mcon, inception_path):
    n = mcon.execute(f"SELECT count(*) FROM nn_layers({lit(inception_path)}) WHERE op = 'Relu'").fetchone()[0]
    want = sum(1 for op in onnx_op_types(inception_path).values() if op == "Relu")
    assert n == want and n > 0


def _facts(con, path):
    cur = con.execute(f"FROM nn_model({lit(path)})")
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    assert len(rows) == 1
    return dict(zip(names, rows[0]))


@pytest.mark.parametrize("which", ["demo", "inception"])
def test_nn_model_reports_the_file(mcon, model_path, inception_path, which):
    path = model_path if which == "demo" else inception_path
    m = onnx.load(str(path), load_external_data=False)
    got = _facts(mcon, path)
    assert got["model"] == str(path)
    assert got["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert got["ir_version"] == m.ir_version
    assert got["opset"] == next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert got["producer_name"] == m.producer_name
    assert got["producer_version"] == m.producer_version
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    assert got["input_name"] == inputs[0].name
    assert got["input_type"] == "float"
    dims = [d.dim_value if d.HasField("dim_value") else "?" for d in inputs[0].type.tensor_type.shape.dim]
    assert got["input_shape"] == "[" + ",".join(str(d) for d in dims) + "]"
    assert got["outputs"] == [o.name for o in m.graph.output]
    pre = {p["key"]: (p["value"], p["source"]) for p in got["preprocessing"]}
    props = {p.key: p.value for p in m.metadata_props}
    for key in ("input_size", "mean", "std", "resize", "layout"):
        assert key in pre, pre
        if f"layercorr.{key}" in props:
            assert pre[key][1] == "metadata", (key, pre[key])
        else:
            assert pre[key][1] in ("declared shape", "default"), (key, pre[key])


def test_nn_model_sources_of_a_stamped_model(con, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 3, 32, 48])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 32, 48])
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)
    g = helper.make_graph([node], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="unit",
                          producer_version="9.9")
    m.ir_version = 8
    e = m.metadata_props.add()
    e.key, e.value = "layercorr.resize", "stretch"
    path = tmp_path / "stamped.onnx"
    onnx.save(m, str(path))
    got = _facts(con, path)
    assert (got["producer_name"], got["producer_version"], got["opset"]) == ("unit", "9.9", 13)
    assert (got["input_name"], got["input_type"], got["input_shape"]) == ("x", "uint8", "[?,3,32,48]")
    pre = {p["key"]: (p["value"], p["source"]) for p in got["preprocessing"]}
    assert pre["input_size"] == ("32x48", "declared shape")
    assert pre["resize"] == ("stretch", "metadata")
    assert pre["layout"] == ("NCHW", "declared shape")
    assert pre["values"][1] == "declared type"


def test_nn_model_bad_file_is_a_named_error(con, tmp_path):
    bad = tmp_path / "nope.onnx"
    bad.write_bytes(b"not a model")
    import duckdb
    with pytest.raises(duckdb.Error, match="nope.onnx"):
        con.execute(f"FROM nn_model({lit(bad)})").fetchall()

