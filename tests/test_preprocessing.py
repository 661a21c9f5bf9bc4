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


@pytest.mark.parametrize("which", ["demo", "inception"])
def test_node_is_the_onnx_node_name(mcon, model_path, inception_path, which):
    path = model_path if which == "demo" else inception_path
    m = onnx.load(str(path), load_external_data=False)
    want = {out: n.name for n in m.graph.node for out in n.output}
    rows = mcon.execute(
        f"SELECT layer, node, tract_op FROM nn_layers({lit(path)}) ORDER BY position").fetchall()
    assert rows[0][:2] == ("input", None)
    named = 0
    for layer, node, tract_op in rows[1:]:
        assert tract_op, layer
        # ONNX node names are optional; an unnamed node gives ''.
        assert (node or "") == want[layer], f"{layer}: node {node!r}, the file says {want[layer]!r}"
        named += bool(node)
    assert named > 0, "no node of the model has a name"


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


@pytest.mark.parametrize("size", [1, 16, 31])
def test_an_input_too_small_for_the_model_is_a_named_error(con, model_path, photos, size):
    """EfficientNet-Lite0 halves its maps five times: fed fewer than 32
    pixels a side, some layer's map becomes 0 x 0, and every pooled value and
    logit after it would be NaN (the layer itself an empty list). Both the
    listing and the forward pass refuse such an input, naming the layer; 32
    pixels still run, every logit finite."""
    import duckdb
    over = f"preprocess := {{'layercorr.input_size': '{size}'}}"
    for sql in (f"FROM nn_layers({lit(model_path)}, {over})",
                f"SELECT len(activation) FROM nn_activations({lit(model_path)}, {lit(photos[0])}, "
                f"layers := ['stem', 'logits'], {over})"):
        with pytest.raises(duckdb.Error, match=rf"fed 3 x {size} x {size} images makes layer '[^']+' "
                                               r"empty \(shape \d+ x 0 x 0\): the input is too small"):
            con.execute(sql).fetchall()
    logits = con.execute(
        f"SELECT activation FROM nn_activations({lit(model_path)}, {lit(photos[0])}, "
        f"layers := ['logits'], preprocess := {{'layercorr.input_size': '32'}})").fetchall()[0][0]
    assert len(logits) == 1000 and np.isfinite(np.asarray(logits)).all()


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


# --------------------------------------------------------------------------
# letterbox: fit inside, pad with pad_value, against Pillow's ImageOps.pad


def pillow_letterbox(im, size, pad, grey=False):
    """[C, S, S] pixels 0..255 as ImageOps.pad(im, (S, S), BILINEAR, color=pad)."""
    from PIL import ImageOps
    im = im.convert("L" if grey else "RGB")
    color = pad[0] if grey else tuple(pad)
    x = np.asarray(ImageOps.pad(im, (size, size), Image.BILINEAR, color=color), dtype=np.float64)
    return x[None] if grey else x.transpose(2, 0, 1)


@pytest.fixture(scope="module")
def letterbox_photos(photos, tmp_path_factory):
    """Colour (wide, tall, extreme strip), grey, RGBA and an EXIF-rotated JPEG."""
    d = tmp_path_factory.mktemp("letterbox")
    out = {}
    with Image.open(photos[0]) as im:
        rgb = im.convert("RGB")
    for name, box in [("wide", (0, 60, 512, 360)), ("tall", (100, 0, 400, 512)),
                      ("strip", (0, 200, 512, 230)), ("square", (0, 0, 512, 512))]:
        out[name] = d / f"{name}.png"
        rgb.crop(box).save(out[name])
    out["grey"] = d / "grey.png"
    rgb.crop((0, 0, 300, 512)).convert("L").save(out["grey"])
    rgba = rgb.crop((0, 0, 512, 300)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    out["rgba"] = d / "rgba.png"
    rgba.save(out["rgba"])
    exif = Image.Exif()
    exif[274] = 6
    out["exif"] = d / "exif.jpg"
    rgb.crop((0, 100, 512, 356)).save(out["exif"], quality=95, exif=exif.tobytes())
    return out


def _reference_letterbox(path, size, pad):
    from PIL import ImageOps
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return pillow_letterbox(im, size, pad)


@pytest.mark.parametrize("pad", [(0, 0, 0), (114, 114, 114), (10, 200, 30)])
def test_letterbox_matches_pillow(con, model_path, letterbox_photos, tmp_path, pad):
    pad_text = str(pad[0]) if len(set(pad)) == 1 else ",".join(map(str, pad))
    keys = {"resize": "letterbox", "mean": "0", "std": "1"}
    if pad != (0, 0, 0):
        keys["pad_value"] = pad_text
    model = H.stamp_model(model_path, tmp_path / "letterbox.onnx", **keys)
    for name, p in letterbox_photos.items():
        if name == "grey":
            continue
        got = _input_of(con, model, p)
        want = _reference_letterbox(p, 224, pad)
        diff = np.abs(got - want)
        assert diff.mean() <= 1.0, f"{name}, pad {pad}: mean |diff| {diff.mean():.3f}, max {diff.max()}"
        assert diff.max() <= 8, f"{name}, pad {pad}: max |diff| {diff.max()}"
        # The border is exactly the pad value where Pillow has it too.
        border = (want == np.asarray(pad, dtype=np.float64)[:, None, None]).all(axis=0)
        if name in ("wide", "strip", "exif", "rgba"):
            rows = border[0].all() and border[-1].all()
            cols = border[:, 0].all() and border[:, -1].all()
            assert rows or cols, f"{name}: no pad rows or columns"
        if border.any():
            assert (got[:, border] == np.asarray(pad, dtype=np.float64)[:, None]).mean() > 0.99, name


def test_letterbox_grey_input_matches_pillow(con, letterbox_photos, tmp_path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 64, 64])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    for k, v in {"mean": "0", "std": "1", "resize": "letterbox", "pad_value": "77"}.items():
        e = m.metadata_props.add()
        e.key, e.value = f"layercorr.{k}", v
    path = tmp_path / "grey64.onnx"
    onnx.save(m, str(path))
    for name in ("grey", "wide", "tall"):
        p = letterbox_photos[name]
        vec = con.execute(f"SELECT nn_activations({lit(path)}, {lit(p)}, ['input'])[1].activation").fetchone()[0]
        got = np.asarray(vec, dtype=np.float64).reshape(1, 64, 64)
        with Image.open(p) as im:
            want = pillow_letterbox(im, 64, (77,), grey=True)
        diff = np.abs(got - want)
        assert diff.mean() <= 1.0 and diff.max() <= 8, f"{name}: mean {diff.mean():.3f} max {diff.max()}"


def test_letterbox_nhwc_pads_each_channel(con, model_path, letterbox_photos, tmp_path):
    """pad_value per channel lands in the right channel of an NHWC tensor."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 32, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 32, 3])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    for k, v in {"mean": "0", "std": "1", "resize": "letterbox", "pad_value": "1,2,3"}.items():
        e = m.metadata_props.add()
        e.key, e.value = f"layercorr.{k}", v
    path = tmp_path / "nhwc32.onnx"
    onnx.save(m, str(path))
    p = letterbox_photos["strip"]
    vec = con.execute(f"SELECT nn_activations({lit(path)}, {lit(p)}, ['input'])[1].activation").fetchone()[0]
    got = np.asarray(vec, dtype=np.float64).reshape(32, 32, 3)
    with Image.open(p) as im:
        want = pillow_letterbox(im, 32, (1, 2, 3)).transpose(1, 2, 0)
    diff = np.abs(got - want)
    assert diff.mean() <= 1.0 and diff.max() <= 8, f"mean {diff.mean():.3f} max {diff.max()}"
    assert (got[0] == [1, 2, 3]).all()


@pytest.mark.parametrize("value", ["300", "1,2", "-1", "grey"])
def test_bad_pad_value_is_a_named_error(con, model_path, tmp_path, value):
    import duckdb
    model = H.stamp_model(model_path, tmp_path / "badpad.onnx", resize="letterbox", pad_value=value)
    with pytest.raises(duckdb.Error) as e:
        con.execute(f"FROM nn_layers({lit(model)})").fetchall()
    assert f"layercorr.pad_value = '{value}'" in str(e.value) and "0 to 255" in str(e.value), str(e.value)


def test_set_preprocessing_stamps_letterbox(model_path, tmp_path):
    import subprocess
    import sys
    out = tmp_path / "letterbox_by_script.onnx"
    r = subprocess.run([sys.executable, str(H.REPO / "scripts" / "set_preprocessing.py"), str(model_path),
                        "--output", str(out), "--resize", "letterbox", "--pad-value", "114"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert (props["layercorr.resize"], props["layercorr.pad_value"]) == ("letterbox", "114")


# --------------------------------------------------------------------------
# per-query override of the preprocessing keys


def test_override_equal_to_metadata_gives_identical_activations(con, model_path, photos, tmp_path):
    keys = {"resize": "letterbox", "pad_value": "114", "interpolation": "bicubic", "resize_size": "256",
            "channel_order": "BGR", "mean": "1,2,3", "std": "50,60,70"}
    stamped = H.stamp_model(model_path, tmp_path / "stamped_keys.onnx", **keys)
    plain = H.stamp_model(model_path, tmp_path / "plain.onnx")
    paths = "[" + ", ".join(lit(p) for p in photos[:3]) + "]"
    layers = "['input', 'stem', 'logits']"
    q = "SELECT path, layer, activation FROM nn_activations({m}, {paths}, layers := {layers}{extra}) ORDER BY ALL"
    want = con.execute(q.format(m=lit(stamped), paths=paths, layers=layers, extra="")).fetchall()
    struct = "{" + ", ".join(f"'{k}': '{v}'" for k, v in keys.items()) + "}"
    got = con.execute(q.format(m=lit(plain), paths=paths, layers=layers,
                               extra=f", preprocess := {struct}")).fetchall()
    assert got == want
    as_map = "MAP {" + ", ".join(f"'{k}': '{v}'" for k, v in keys.items()) + "}"
    got_map = con.execute(q.format(m=lit(plain), paths=paths, layers=layers,
                                   extra=f", preprocess := {as_map}")).fetchall()
    assert got_map == want
    # The scalar form takes the same keys as a MAP after the layer list.
    scalar = con.execute(
        f"SELECT nn_activations({lit(plain)}, {lit(photos[0])}, {layers}, {as_map})").fetchone()[0]
    scalar_want = con.execute(
        f"SELECT nn_activations({lit(stamped)}, {lit(photos[0])}, {layers})").fetchone()[0]
    assert scalar == scalar_want
    # ... and after skip_bad_images and pool.
    pooled = con.execute(
        f"SELECT nn_activations({lit(plain)}, {lit(photos[0])}, {layers}, false, 'avg', {as_map})").fetchone()[0]
    pooled_want = con.execute(
        f"SELECT nn_activations({lit(stamped)}, {lit(photos[0])}, {layers}, false, 'avg')").fetchone()[0]
    assert pooled == pooled_want
    # Without an override the plain model gives other values.
    other = con.execute(f"SELECT nn_activations({lit(plain)}, {lit(photos[0])}, {layers})").fetchone()[0]
    assert other != scalar_want


def test_override_changes_the_input_size(con, model_path, photos):
    (shape,) = con.execute(
        f"SELECT shape FROM nn_layers({lit(model_path)}) WHERE layer = 'input'").fetchone()
    assert shape == [3, 224, 224]
    vec = con.execute(
        f"SELECT activation FROM nn_activations({lit(model_path)}, [{lit(photos[0])}], layers := ['input'], "
        "preprocess := {'input_size': 160})").fetchone()[0]
    assert len(vec) == 3 * 160 * 160


def test_nn_model_reports_overrides(con, model_path):
    got = con.execute(
        f"SELECT preprocessing FROM nn_model({lit(model_path)}, "
        "preprocess := {'resize': 'letterbox', 'pad_value': '114'})").fetchone()[0]
    pre = {p["key"]: (p["value"], p["source"]) for p in got}
    assert pre["resize"] == ("letterbox", "override")
    assert pre["pad_value"] == ("114", "override")
    assert pre["mean"][1] == "metadata"
    plain = {p["key"]: p["source"] for p in _facts(con, model_path)["preprocessing"]}
    assert plain["resize"] != "override"


@pytest.mark.parametrize("arg,needle", [
    ("{'resise': 'stretch'}", "preprocess key 'resise' is unknown; valid: input_size"),
    ("MAP {'zoom': '2'}", "preprocess key 'zoom' is unknown"),
    ("{'resize': 'zoom'}", "preprocess override resize = 'zoom': valid: shorter_side_then_center_crop, stretch, letterbox"),
    ("{'pad_value': '999'}", "preprocess override pad_value = '999'"),
    ("{'interpolation': 'cubic'}", "valid: bilinear, bicubic"),
    ("'letterbox'", "STRUCT or a MAP"),
])
def test_bad_overrides_are_named_errors(con, model_path, photos, arg, needle):
    import duckdb
    for q in (f"FROM nn_activations({lit(model_path)}, [{lit(photos[0])}], layers := ['input'], preprocess := {arg})",
              f"FROM nn_model({lit(model_path)}, preprocess := {arg})"):
        with pytest.raises(duckdb.Error) as e:
            con.execute(q).fetchall()
        assert needle in str(e.value), str(e.value)
    if arg.startswith("MAP"):
        with pytest.raises(duckdb.Error) as e:
            con.execute(f"SELECT nn_activations({lit(model_path)}, {lit(photos[0])}, ['input'], {arg})").fetchall()
        assert needle in str(e.value), str(e.value)
