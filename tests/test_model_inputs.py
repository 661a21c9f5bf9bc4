"""Models whose input is not the demo's float [N, 3, S, S] (issue 13, 5), and
adaptive pooling to a grid larger than the map.

Tiny ONNX models are built here with the onnx package; references are Pillow
(shorter side to S with BILINEAR, centre crop) and numpy, never the
extension's own output. Each case runs in a child host process.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

import lc_helpers as H
from lc_helpers import sql_str

MAX_RSS_MB = 1536


def lit(p) -> str:
    return f"'{sql_str(p)}'"


def tiny_model(path, in_type, in_shape, op, out_type, meta=None, **attrs):
    """input 'x' (in_type, in_shape) -> op -> output 'y' (out_type, same shape)."""
    import onnx
    from onnx import helper
    x = helper.make_tensor_value_info("x", in_type, in_shape)
    y = helper.make_tensor_value_info("y", out_type, in_shape)
    node = helper.make_node(op, ["x"], ["y"], name="y_node", **attrs)
    g = helper.make_graph([node], "tiny", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="layercorr-tests")
    m.ir_version = 8
    for k, v in (meta or {}).items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from onnx import TensorProto
    d = tmp_path_factory.mktemp("tiny")
    return {
        "uint8": tiny_model(d / "tiny_uint8.onnx", TensorProto.UINT8, [1, 3, 8, 8], "Cast",
                            TensorProto.FLOAT, to=TensorProto.FLOAT),
        "grey": tiny_model(d / "tiny_grey.onnx", TensorProto.FLOAT, [1, 1, 8, 8], "Relu", TensorProto.FLOAT,
                           meta={"layercorr.mean": "0", "layercorr.std": "1", "layercorr.input_size": "8"}),
        "flat10": tiny_model(d / "tiny_flat10.onnx", TensorProto.FLOAT, [1, 10], "Relu", TensorProto.FLOAT),
    }


@pytest.fixture(scope="module")
def test_images(tmp_path_factory, photos):
    """Lossless, non-square images (so the centre crop matters): one wide, one tall."""
    d = tmp_path_factory.mktemp("tinyimg")
    out = []
    for i, box in [(0, (0, 60, 512, 360)), (1, (100, 0, 400, 512))]:
        with Image.open(photos[i]) as im:
            p = d / f"img_{i}.png"
            im.convert("RGB").crop(box).save(p)
            out.append(p)
    return out


def pillow_pixels(path, size: int, grey: bool) -> np.ndarray:
    """[C, S, S] float pixels 0..255: shorter side to S (BILINEAR), centre crop."""
    with Image.open(path) as im:
        im = im.convert("L" if grey else "RGB")
        w, h = im.size
        s = min(w, h)
        nw, nh = round(w * size / s), round(h * size / s)
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        x = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float64)
    return x[None] if grey else x.transpose(2, 0, 1)


def fetch_layers(model, paths, layers):
    stmts = [f"SELECT list_transform(nn_activations({lit(model)}, {lit(p)}, "
             f"[{', '.join(lit(x) for x in layers)}]), lambda e: [e.layer, e.activation::VARCHAR])"
             for p in paths] + ["SELECT 42"]
    s = H.run_py_measured(stmts, timeout=120)
    s.check_alive(n=len(stmts), max_rss_mb=MAX_RSS_MB)
    assert s.results[-1]["rows"] == [[42]]
    out = []
    for p, rec in zip(paths, s.results):
        assert rec["ok"], f"{model.name} on {p.name}: {rec['message'][:500]}"
        entries = rec["rows"][0][0]
        got = {}
        for layer, vec in entries:
            got[layer] = np.array([float(v) for v in vec.strip("[]").split(",")], dtype=np.float64)
        out.append(got)
    return out


@pytest.mark.parametrize("kind", ["uint8", "grey"])
def test_input_type_and_channels(kind, tiny, test_images):
    """UINT8 input: raw 0..255 pixels; 1-channel input: grey pixels (Pillow's 'L')."""
    grey = kind == "grey"
    got = fetch_layers(tiny[kind], test_images, ["input", "y"])
    c = 1 if grey else 3
    for p, g in zip(test_images, got):
        ref = pillow_pixels(p, 8, grey).ravel()
        for layer in ["input", "y"]:
            v = g[layer]
            assert v.size == c * 64, f"{kind} {layer}: {v.size} values, expected {c} x 8 x 8"
            assert v.min() >= -0.5 and v.max() <= 255.5 and v.max() > 2, \
                f"{kind} {layer}: values not on the 0..255 pixel scale: [{v.min()}, {v.max()}]"
            mad = np.abs(v - ref).mean()
            assert mad <= 1.0, f"{kind} {layer} on {p.name}: mean |diff| to Pillow {mad:.2f} grey levels"
        if kind == "uint8":
            assert np.allclose(g["input"], np.round(g["input"])), "UINT8 input must be whole pixel values"


def test_flat_input_model_is_a_named_error(tiny, photos):
    m = tiny["flat10"]
    s = H.run_py_measured([f"SELECT nn_activations({lit(m)}, {lit(photos[0])})",
                           f"SELECT count(*) FROM nn_activations({lit(m)}, [{lit(photos[0])}])",
                           "SELECT 42"], timeout=60)
    s.check_alive(n=3, max_rss_mb=MAX_RSS_MB)
    for rec in s.results[:2]:
        assert not rec["ok"] and rec["is_duckdb_error"], rec
        msg = rec["message"]
        assert m.name in msg, f"the error does not name the model: {msg[:500]}"
        assert re.search(r"\[\s*1\s*,\s*10\s*\]|\b1\s*[x×,]\s*10\b", msg), \
            f"the error does not give the declared input shape [1, 10]: {msg[:500]}"
    assert s.results[-1]["rows"] == [[42]]


def adaptive_avg_pool(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """PyTorch's adaptive_avg_pool2d: bin i covers [floor(i*in/out), ceil((i+1)*in/out))."""
    c, h, w = x.shape
    out = np.empty((c, oh, ow), np.float64)
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


def test_adaptive_pool_larger_than_the_map(photos, model_path):
    """pool := 'avg113x113' on the 32 x 112 x 112 stem: PyTorch's bins or an error,
    never the unpooled vector."""
    C, H_, K = 2, 112, 113  # compare the first two channels
    p = lit(photos[0])
    stmts = [
        f"SELECT (nn_activations({lit(H.MODEL)}, {p}, ['stem'], false, 'none')[1].activation)[1:{C * H_ * H_}]::VARCHAR",
        f"SELECT len(a), a[1:{C * K * K}]::VARCHAR FROM "
        f"(SELECT nn_activations({lit(H.MODEL)}, {p}, ['stem'], false, 'avg113x113')[1].activation AS a)",
        f"SELECT count(*), min(len(activation)) FROM nn_activations({lit(H.MODEL)}, [{p}], layers := ['stem'], "
        f"pool := 'avg113x113')",
        "SELECT 42",
    ]
    s = H.run_py_measured(stmts, timeout=120)
    s.check_alive(n=4, max_rss_mb=MAX_RSS_MB)
    raw, pooled, table = s.results[:3]
    assert raw["ok"], raw
    if not pooled["ok"]:
        assert pooled["is_duckdb_error"] and re.search(r"113", pooled["message"]), pooled
        assert not table["ok"] and re.search(r"113", table["message"]), table
        return
    n, vec = pooled["rows"][0]
    assert n != 32 * H_ * H_, "avg113x113 returned the unpooled 112 x 112 map"
    assert n == 32 * K * K, f"avg113x113 on [32, 112, 112] gave {n} values"
    x = np.array([float(v) for v in raw["rows"][0][0].strip("[]").split(",")]).reshape(C, H_, H_)
    got = np.array([float(v) for v in vec.strip("[]").split(",")]).reshape(C, K, K)
    ref = adaptive_avg_pool(x, K, K)
    assert np.allclose(got, ref, rtol=1e-5, atol=1e-5), f"max |diff| {np.abs(got - ref).max()}"
    assert table["ok"] and table["rows"] == [[1, 32 * K * K]], table


# --------------------------------------------------------------------------
# pooling follows each layer's layout: an NHWC model's `input` is [H, W, C]


def test_pool_on_an_nhwc_input_gives_channel_means(con, photos, tmp_path):
    from onnx import TensorProto
    model = tiny_model(tmp_path / "nhwc224.onnx", TensorProto.FLOAT, [1, 224, 224, 3], "Relu", TensorProto.FLOAT,
                       meta={"layercorr.mean": "0", "layercorr.std": "1"})
    p = lit(photos[0])
    raw = con.execute(f"SELECT activation FROM nn_activations({lit(model)}, [{p}], layers := ['input'])").fetchone()[0]
    x = np.asarray(raw, dtype=np.float64).reshape(224, 224, 3)
    for pool, want in [("avg", x.mean(axis=(0, 1))), ("max", x.max(axis=(0, 1)))]:
        got = con.execute(f"SELECT activation FROM nn_activations({lit(model)}, [{p}], layers := ['input'], "
                          f"pool := '{pool}')").fetchone()[0]
        assert len(got) == 3, f"pool := '{pool}' gave {len(got)} values, not 3 channel values"
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=pool)
        scalar = con.execute(f"SELECT nn_activations({lit(model)}, {p}, ['input'], false, '{pool}')[1].activation"
                             ).fetchone()[0]
        assert scalar == got
    # A 2x2 grid keeps channels last: [2, 2, 3], each cell a quadrant's mean.
    grid = con.execute(f"SELECT activation FROM nn_activations({lit(model)}, [{p}], layers := ['input'], "
                       "pool := 'avg2x2')").fetchone()[0]
    want = np.stack([[x[:112, :112].mean(axis=(0, 1)), x[:112, 112:].mean(axis=(0, 1))],
                     [x[112:, :112].mean(axis=(0, 1)), x[112:, 112:].mean(axis=(0, 1))]])
    np.testing.assert_allclose(np.asarray(grid).reshape(2, 2, 3), want, rtol=1e-5)
    # The Relu that follows keeps the input's layout: its 3 channel means
    # (the pixels are not negative, so they are the input's).
    y = con.execute(f"SELECT activation FROM nn_activations({lit(model)}, [{p}], layers := ['y'], "
                    "pool := 'avg')").fetchone()[0]
    np.testing.assert_allclose(y, x.mean(axis=(0, 1)), rtol=1e-5)


def test_shape_errors_point_to_nn_model(con, photos, tmp_path):
    """A graph fixed to 8 x 8 inputs (Reshape to 192 values) asked to take 16 x 16."""
    import duckdb
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 192])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 192])
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], [shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp_path / "fixed8.onnx"
    onnx.save(m, str(path))
    ok = con.execute(f"SELECT shape FROM nn_layers({lit(path)}) WHERE layer = 'y'").fetchone()[0]
    assert ok == [192]
    for q in (f"FROM nn_layers({lit(path)}, preprocess := {{'input_size': 16}})",
              f"FROM nn_activations({lit(path)}, [{lit(photos[0])}], layers := ['y'], "
              "preprocess := {'input_size': 16})"):
        with pytest.raises(duckdb.Error) as e:
            con.execute(q).fetchall()
        assert f"nn_model('{path}')" in str(e.value), str(e.value)


def test_pool_follows_layouts_through_transposes(con, photos, tmp_path):
    """x [1, 16, 16, 3] -> Transpose to NCHW -> Relu -> Transpose back to NHWC -> Relu:
    every layer pools to its 3 channels, whichever axis holds them."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 16, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 3])
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("Transpose", ["r"], ["back"], perm=[0, 2, 3, 1]),
             helper.make_node("Relu", ["back"], ["y"])]
    g = helper.make_graph(nodes, "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    for k, v in {"mean": "0", "std": "1"}.items():
        e = m.metadata_props.add()
        e.key, e.value = f"layercorr.{k}", v
    path = tmp_path / "transposes.onnx"
    onnx.save(m, str(path))
    p = lit(photos[1])
    raw = con.execute(f"SELECT activation FROM nn_activations({lit(path)}, [{p}], layers := ['input'])").fetchone()[0]
    want = np.asarray(raw, dtype=np.float64).reshape(16, 16, 3).mean(axis=(0, 1))
    rows = dict(con.execute(f"SELECT layer, activation FROM nn_activations({lit(path)}, [{p}], "
                            "layers := ['input', 't', 'r', 'back', 'y'], pool := 'avg')").fetchall())
    for layer in ("input", "t", "r", "back", "y"):
        np.testing.assert_allclose(rows[layer], want, rtol=1e-5, err_msg=layer)
