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


# --- preprocessing keys against Pillow doing the same steps --------------------

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS,
               "nearest": Image.NEAREST, "area": Image.BOX}


def pillow_input(path, size=224, resize_size=None, interpolation="bilinear", bgr=False):
    """[3, S, S] pixels 0..255: shorter side to resize_size (else S), centre crop S."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = max(resize_size or size, size)
        scale = side / min(w, h)
        nw, nh = max(round(w * scale), size), max(round(h * scale), size)
        im = im.resize((nw, nh), PIL_FILTERS[interpolation])
        left, top = (nw - size) // 2, (nh - size) // 2
        x = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float64)
    if bgr:
        x = x[..., ::-1]
    return x.transpose(2, 0, 1)


@pytest.fixture(scope="module")
def shaped_photos(photos, tmp_path_factory):
    """Lossless photos: square, wide, tall and an extreme strip."""
    d = tmp_path_factory.mktemp("shaped")
    out = []
    for i, box in [(0, (0, 0, 512, 512)), (1, (0, 60, 512, 360)), (2, (100, 0, 400, 512)),
                   (3, (0, 200, 512, 260))]:
        with Image.open(photos[i]) as im:
            p = d / f"shaped_{i}.png"
            im.convert("RGB").crop(box).save(p)
            out.append(p)
    return out


def _input_of(con, model, path):
    vec = con.execute(f"SELECT nn_activations({lit(model)}, {lit(path)}, ['input'])[1].activation").fetchone()[0]
    return np.asarray(vec, dtype=np.float64).reshape(3, 224, 224)


CASES = [
    ({}, {}),
    ({"resize_size": 256}, {"resize_size": 256}),
    ({"resize_size": 256, "channel_order": "BGR"}, {"resize_size": 256, "bgr": True}),
    ({"interpolation": "bicubic"}, {"interpolation": "bicubic"}),
    ({"interpolation": "lanczos", "resize_size": 232}, {"interpolation": "lanczos", "resize_size": 232}),
    ({"interpolation": "nearest"}, {"interpolation": "nearest"}),
    ({"interpolation": "area", "resize_size": 300}, {"interpolation": "area", "resize_size": 300}),
]


@pytest.mark.parametrize("keys,ref", CASES, ids=[str(k) for k, _ in CASES])
def test_input_matches_pillow(con, model_path, shaped_photos, tmp_path, keys, ref):
    model = H.stamp_model(model_path, tmp_path / "stamped.onnx", mean="0", std="1", **keys)
    for p in shaped_photos:
        got = _input_of(con, model, p)
        want = pillow_input(p, **ref)
        diff = np.abs(got - want)
        assert diff.mean() <= 1.0, f"{keys} on {p.name}: mean |diff| {diff.mean():.3f}, max {diff.max()}"
        if ref.get("interpolation") != "nearest":
            assert diff.max() <= 8, f"{keys} on {p.name}: max |diff| {diff.max()}"


@pytest.mark.parametrize("key,value,valid", [
    ("interpolation", "cubic", "bilinear, bicubic, lanczos, nearest, area"),
    ("channel_order", "GBR", "RGB, BGR"),
    ("exif", "maybe", "apply, ignore"),
    ("alpha", "keep", "drop, composite"),
])
def test_unknown_values_are_named_errors(con, model_path, tmp_path, key, value, valid):
    import duckdb
    model = H.stamp_model(model_path, tmp_path / "bad.onnx", **{key: value})
    with pytest.raises(duckdb.Error) as e:
        con.execute(f"FROM nn_layers({lit(model)})").fetchall()
    msg = str(e.value)
    assert f"layercorr.{key} = '{value}'" in msg and valid in msg, msg


def test_nn_model_reports_stamped_keys(con, model_path, tmp_path):
    model = H.stamp_model(model_path, tmp_path / "keys.onnx", resize_size=256, channel_order="BGR",
                          interpolation="bicubic")
    pre = {p["key"]: (p["value"], p["source"]) for p in _facts(con, model)["preprocessing"]}
    assert pre["resize_size"] == ("256", "metadata")
    assert pre["channel_order"] == ("BGR", "metadata")
    assert pre["interpolation"] == ("bicubic", "metadata")
    assert pre["exif"] == ("apply", "default")
    assert pre["alpha"] == ("drop", "default")


def test_set_preprocessing_stamps_every_key(model_path, tmp_path):
    import subprocess
    import sys
    out = tmp_path / "stamped_by_script.onnx"
    r = subprocess.run([sys.executable, str(H.REPO / "scripts" / "set_preprocessing.py"), str(model_path),
                        "--output", str(out), "--resize-size", "256", "--channel-order", "BGR",
                        "--interpolation", "lanczos", "--exif", "ignore", "--alpha", "composite",
                        "--background", "0,0,0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert {k: props[k] for k in props if k in (
        "layercorr.resize_size", "layercorr.channel_order", "layercorr.interpolation",
        "layercorr.exif", "layercorr.alpha", "layercorr.background")} == {
        "layercorr.resize_size": "256", "layercorr.channel_order": "BGR",
        "layercorr.interpolation": "lanczos", "layercorr.exif": "ignore",
        "layercorr.alpha": "composite", "layercorr.background": "0,0,0"}


# --------------------------------------------------------------------------
# EXIF orientation and transparency, against Pillow doing the same steps


def _pillow_tensor(im, size=224):
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(round(w * scale), size), max(round(h * scale), size)
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float64).transpose(2, 0, 1)


@pytest.mark.parametrize("exif", ["apply", "ignore"])
def test_exif_orientation_matches_pillow(con, model_path, photos, tmp_path, exif):
    """A JPEG whose EXIF says 'rotate 90 CW' (orientation 6), cropped to a
    wide strip so that a missed rotation cannot pass."""
    from PIL import ImageOps
    with Image.open(photos[5]) as im:
        strip = im.convert("RGB").crop((0, 100, 512, 356))
    exif_data = Image.Exif()
    exif_data[274] = 6
    path = tmp_path / f"rotated_{exif}.jpg"
    strip.save(path, quality=95, exif=exif_data.tobytes())
    model = H.stamp_model(model_path, tmp_path / f"exif_{exif}.onnx", mean="0", std="1", exif=exif)
    got = _input_of(con, model, path)
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im) if exif == "apply" else im
        want = _pillow_tensor(im.convert("RGB"))
    assert np.abs(got - want).mean() <= 1.0, f"exif={exif}: mean |diff| {np.abs(got - want).mean():.2f}"


def test_alpha_composite_matches_pillow(con, model_path, photos, tmp_path):
    with Image.open(photos[6]) as im:
        rgba = im.convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    path = tmp_path / "transparent.png"
    rgba.save(path)
    model = H.stamp_model(model_path, tmp_path / "alpha.onnx", mean="0", std="1", alpha="composite")
    got = _input_of(con, model, path)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    want = _pillow_tensor(Image.alpha_composite(white, rgba).convert("RGB"))
    assert np.abs(got - want).mean() <= 1.0, f"mean |diff| {np.abs(got - want).mean():.2f}"
    dropped = _input_of(con, H.stamp_model(model_path, tmp_path / "drop.onnx", mean="0", std="1"), path)
    assert np.abs(dropped - want).mean() > 5, "alpha=drop gave the composited pixels"
