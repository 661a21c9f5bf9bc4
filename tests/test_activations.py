"""nn_activations / nn_layers against independent references.

References: onnxruntime on the same input tensor (with the ONNX model's
intermediate tensors added as graph outputs), and a numpy/Pillow
implementation of the preprocessing written from the design.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import lc_helpers as H
from lc_helpers import sql_str

N_PHOTOS = 10  # photos for the element-wise comparisons


def layers_sql(layers) -> str:
    return "[" + ", ".join(f"'{sql_str(x)}'" for x in layers) + "]::VARCHAR[]"


def activations(con, path, layers, model=None) -> dict[str, np.ndarray]:
    """name -> float32 vector for one image, in the order the extension returned them."""
    model = model or H.MODEL
    r = con.execute(
        f"SELECT e.layer AS layer, e.activation AS activation FROM "
        f"(SELECT unnest(nn_activations('{sql_str(model)}', '{sql_str(path)}', {layers_sql(layers)})) AS e)"
    ).fetchnumpy()
    return dict(zip([str(x) for x in r["layer"]], [np.asarray(a, np.float32) for a in r["activation"]]))


def activation_order(con, path, layers) -> list[str]:
    r = con.execute(
        f"SELECT list_transform(nn_activations('{sql_str(H.MODEL)}', '{sql_str(path)}', "
        f"{layers_sql(layers)}), lambda e: e.layer)").fetchone()
    return list(r[0])


def batch_activations(con, paths, layers) -> dict[str, np.ndarray]:
    """layer -> [len(paths), size] float32, rows in the order of `paths` (scalar form)."""
    values = ", ".join(f"({i}, '{sql_str(p)}')" for i, p in enumerate(paths))
    r = con.execute(
        f"SELECT i, e.layer AS layer, e.activation AS activation FROM "
        f"(SELECT i, unnest(nn_activations('{sql_str(H.MODEL)}', path, {layers_sql(layers)})) AS e "
        f" FROM (VALUES {values}) t(i, path)) ORDER BY i").fetchnumpy()
    out = {}
    for name in layers:
        sel = np.flatnonzero(r["layer"] == name)
        assert len(sel) == len(paths), f"{name}: {len(sel)} rows for {len(paths)} images"
        assert (r["i"][sel] == np.arange(len(paths))).all()
        out[name] = np.stack(r["activation"][sel]).astype(np.float32)
    return out


def as_input(vec) -> np.ndarray:
    assert vec.size == 3 * 224 * 224, vec.size
    return vec.reshape(1, 3, 224, 224)


def assert_close(name, got, want, atol):
    got = np.asarray(got, np.float64).ravel()
    want = np.asarray(want, np.float64).ravel()
    assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
    d = np.abs(got - want)
    worst = int(d.argmax())
    assert d.max() <= atol, (f"{name}: max abs diff {d.max():.3g} at {worst} "
                             f"(got {got[worst]}, want {want[worst]}), tolerance {atol:.3g}")


@pytest.fixture(scope="module")
def sample(photos):
    return photos[:N_PHOTOS]


# --------------------------------------------------------------------------
# preprocessing


def test_input_matches_reference_preprocessing(mcon, sample, model_path):
    stats = []
    for p in sample:
        got = activations(mcon, p, ["input"])["input"].reshape(3, 224, 224)
        want = H.reference_input(p, model_path)
        d = np.abs(got - want)
        stats.append((p.name, float(d.mean()), float(d.max())))
    worst_mean = max(s[1] for s in stats)
    worst_max = max(s[2] for s in stats)
    print(f"\ninput vs Pillow reference: worst mean abs {worst_mean:.4g}, worst max abs {worst_max:.4g}")
    # the brief's bound is mean < 0.02, max < 0.25; measured ~0.003 / 0.023, so tighter:
    assert worst_mean < 0.005 and worst_max < 0.05, stats


@pytest.mark.parametrize("box", [(0, 0, 512, 300), (100, 0, 400, 512), (0, 50, 512, 451)],
                         ids=["wide", "tall", "wide401"])
def test_input_centre_crop_matches_reference(mcon, photos, tmp_path, box, model_path):
    """Non-square images: shorter side to 224, centre crop."""
    src = tmp_path / "crop.png"
    with Image.open(photos[3]) as im:
        im.convert("RGB").crop(box).save(src)
    got = activations(mcon, src, ["input"])["input"].reshape(3, 224, 224)
    want = H.reference_input(src, model_path)
    d = np.abs(got - want)
    print(f"\n{box}: mean abs {d.mean():.4g}, max abs {d.max():.4g}")
    assert d.mean() < 0.005 and d.max() < 0.05
    # a crop that is off by one column would show as a shift: compare with shifted references
    shifted = np.abs(got[:, :, 1:] - want[:, :, :-1]).mean()
    assert d.mean() < shifted


@pytest.fixture(scope="module")
def decode_probe(photos, tmp_path_factory):
    """Images that isolate the preprocessing steps of photo 63 (whose top-1 margin is tiny)."""
    d = tmp_path_factory.mktemp("probe")
    with Image.open(photos[63]) as im:
        rgb = im.convert("RGB")
    small = rgb.resize((224, 224), Image.BILINEAR)
    small.save(d / "small.png")                                  # nothing to do but normalise
    rgb.save(d / "full.png")                                     # resize only, lossless source
    small.save(d / "s444.jpg", quality=95, subsampling=0)        # JPEG decode, no chroma subsampling
    small.save(d / "s420.jpg", quality=95, subsampling=2)        # JPEG decode, 4:2:0 chroma
    return d


def _levels(con, path, model_path):
    got = activations(con, path, ["input"])["input"].reshape(3, 224, 224)
    return np.abs(got - H.reference_input(path, model_path)) * 128  # in 8-bit grey levels


def test_input_exact_without_resize(mcon, decode_probe, model_path):
    d = _levels(mcon, decode_probe / "small.png", model_path)
    assert d.max() <= 1e-3, f"normalisation differs: max {d.max()} levels"


def test_resize_matches_pillow_bilinear(mcon, decode_probe, model_path):
    d = _levels(mcon, decode_probe / "full.png", model_path)
    print(f"\nresize 512->224 vs Pillow BILINEAR: mean {d.mean():.3f} levels, max {d.max():.3f}")
    assert d.max() <= 1.0 + 1e-3 and d.mean() < 0.25


@pytest.mark.parametrize("name", ["s444.jpg", "s420.jpg"])
def test_jpeg_decode_matches_libjpeg(mcon, decode_probe, model_path, name):
    """Decoding alone (224 x 224 JPEG, no resize) vs Pillow's libjpeg-turbo."""
    d = _levels(mcon, decode_probe / name, model_path)
    print(f"\n{name} decode vs libjpeg-turbo: mean {d.mean():.3f} levels, max {d.max():.3f}")
    # libjpeg-turbo's SIMD and plain C paths give the same pixels: no level may differ
    assert d.max() < 1e-3, f"{name}: up to {d.max():.3f} grey levels off libjpeg-turbo (mean {d.mean():.3f})"


def test_input_range_and_layout(mcon, photos):
    x = activations(mcon, photos[0], ["input"])["input"]
    assert x.dtype == np.float32 and x.shape == (150528,)
    assert x.min() >= -127 / 128 - 1e-6 and x.max() <= 128 / 128 + 1e-6
    # channel-major: the three channel planes of a colour photo differ
    c = x.reshape(3, -1)
    assert not np.allclose(c[0], c[1]) and not np.allclose(c[1], c[2])


# --------------------------------------------------------------------------
# against onnxruntime on the same input tensor


def test_logits_match_onnxruntime(mcon, sample):
    for p in sample:
        a = activations(mcon, p, ["input", "logits"])
        ref = H.ort_run(as_input(a["input"]))["logits"][0]
        assert_close(f"{p.name} logits", a["logits"], ref, 1e-4)


@pytest.mark.parametrize("layer", ["stem.conv", "stem", "blocks.0.project", "blocks.1.expand",
                                   "blocks.5", "blocks.9.depthwise", "blocks.15", "head", "pool"])
def test_intermediate_layers_match_onnxruntime(mcon, sample, layer):
    for p in sample[:3]:
        a = activations(mcon, p, ["input", layer])
        ref = H.ort_run(as_input(a["input"]), names=[layer])[layer][0]
        assert_close(f"{p.name} {layer}", a[layer], ref, 1e-4 * max(1.0, float(np.abs(ref).max())))


def test_every_layer_matches_onnxruntime(mcon, photos):
    """All named tensors of one image at once (glob '*')."""
    a = activations(mcon, photos[7], ["*"])
    names = [n for n, _ in H.graph_tensors()]
    missing = [n for n in names if n not in a]
    assert not missing, f"'*' did not return {missing[:10]}"
    x = a["input"] if "input" in a else activations(mcon, photos[7], ["input"])["input"]
    ref = H.ort_run(as_input(x), names=names)
    for n in names:
        assert_close(n, a[n], ref[n][0], 1e-4 * max(1.0, float(np.abs(ref[n]).max())))


def test_inception_layers_match_onnxruntime(mcon, photos, inception_path):
    """A second network, GoogLeNet-structured: its 7x7 stride-2 stem, 3x3 and
    1x1 convolutions with ReLU run on layercorr's dense and pointwise kernels
    (with the ReLU taken in), its LRNs on layercorr's, its pooling and
    Concat on tract's. Every
    activation of the image must match onnxruntime on the same input."""
    a = activations(mcon, photos[3], ["*"], model=inception_path)
    x = a["input"] if "input" in a else activations(
        mcon, photos[3], ["input"], model=inception_path)["input"]
    names = [n for n in a if n != "input"]
    assert len(names) > 20, names
    ref = H.ort_run(as_input(x), names=names, model_path=inception_path)
    for n in names:
        assert_close(n, a[n], ref[n][0], 1e-4 * max(1.0, float(np.abs(ref[n]).max())))


def test_top1_all_photos(mcon, photos, model_path):
    """Extension logits vs onnxruntime, all 100 photos.

    On the extension's own input tensor: logits close and top-1 equal for
    every photo. On our independent Pillow/numpy preprocessing (which differs
    from the extension's SIMD resize by at most a grey level or so): top-1
    equal, except where onnxruntime's own top-2 margin on the reference
    tensor is below 0.02 logits and the extension picks that runner-up — a
    coin toss that a one-level pixel difference can flip.
    """
    got = batch_activations(mcon, photos, ["input", "logits"])
    assert got["logits"].shape == (100, 1000)
    same_input = np.concatenate([H.ort_run(got["input"][i:i + 10].reshape(-1, 3, 224, 224))["logits"]
                                 for i in range(0, 100, 10)])
    assert_close("logits (100 photos)", got["logits"], same_input, 1e-4)
    top_ext = got["logits"].argmax(1)
    np.testing.assert_array_equal(top_ext, same_input.argmax(1))
    ours = np.stack([H.reference_input(p, model_path) for p in photos])
    own = np.concatenate([H.ort_run(ours[i:i + 10])["logits"] for i in range(0, 100, 10)])
    top_ref = own.argmax(1)
    order = np.argsort(own, axis=1)
    srt = np.sort(own, axis=1)
    margins = srt[:, -1] - srt[:, -2]
    bad = [(photos[i].name, int(top_ext[i]), int(top_ref[i]), round(float(margins[i]), 4))
           for i in np.flatnonzero(top_ext != top_ref)
           if not (margins[i] < 0.02 and top_ext[i] == order[i, -2])]
    assert not bad, ("top-1 differs from onnxruntime on the reference preprocessing "
                     f"(photo, extension, reference, reference top-1 margin): {bad}")
    assert (top_ext == top_ref).sum() >= 98
    # the classifier is not degenerate on these photos
    assert len(np.unique(top_ext)) > 20


def test_batched_equals_single(mcon, photos):
    """A query over many rows (batched inside) gives the vectors of one-image queries."""
    many = batch_activations(mcon, photos[:12], ["blocks.3", "logits"])
    for i in (0, 5, 11):
        one = activations(mcon, photos[i], ["blocks.3", "logits"])
        for name in ("blocks.3", "logits"):
            assert_close(f"{photos[i].name} {name}", many[name][i], one[name],
                         1e-5 * max(1.0, float(np.abs(one[name]).max())))


# --------------------------------------------------------------------------
# nn_layers


def test_nn_layers_match_onnxruntime_shapes(mcon, photos):
    r = mcon.execute(f"SELECT layer, op, shape, size, position FROM nn_layers('{sql_str(H.MODEL)}')").fetchall()
    rows = {x[0]: x for x in r}
    assert len(rows) == len(r), "duplicate layer names"
    tensors = H.graph_tensors()
    names = [n for n, _ in tensors]
    x = H.reference_input(photos[0])[None]
    ref = H.ort_run(x, names=names)
    missing = [n for n in names if n not in rows]
    assert not missing, f"nn_layers misses named tensors: {missing}"
    for n, op in tensors:
        _, lop, shape, size, pos = rows[n]
        assert list(shape) == list(ref[n].shape[1:]), f"{n}: {shape} vs {ref[n].shape[1:]}"
        assert size == int(np.prod(ref[n].shape[1:])), n
        assert isinstance(lop, str) and lop, n
        if op == "Conv":
            assert "conv" in lop.lower(), (n, lop)
    assert rows["input"][2] == [3, 224, 224] and rows["input"][4] == 0
    extra = set(rows) - set(names) - {"input", "image"}
    assert not extra, f"nn_layers lists unknown layers {sorted(extra)}"
    # positions are a topological order: every producer comes before its consumers
    import onnx
    g = onnx.load(str(H.MODEL), load_external_data=False).graph
    for node in g.node:
        for i in node.input:
            if i in rows:
                for o in node.output:
                    assert rows[i][4] < rows[o][4], f"{i} (pos {rows[i][4]}) feeds {o} (pos {rows[o][4]})"


def test_nn_layers_inception_branches(mcon, inception_path):
    """GoogLeNet-structured model: the inception branches (Concat inputs) are layers."""
    import onnx
    g = onnx.load(str(inception_path)).graph
    consts = {o for n in g.node if n.op_type == "ConstantOfShape" for o in n.output}
    concat = [n for n in g.node if n.op_type == "Concat"][0]
    branches = [i for i in concat.input if i not in consts]
    assert len(branches) == 4
    rows = {x[0]: x for x in mcon.execute(
        f"SELECT layer, shape FROM nn_layers('{sql_str(inception_path)}')").fetchall()}
    ref = H.ort_run(np.zeros((1, 3, 224, 224), np.float32), names=branches + [concat.output[0]],
                    model_path=inception_path)
    for n in branches + [concat.output[0]]:
        assert n in rows, f"branch tensor {n} not listed"
        assert list(rows[n][1]) == list(ref[n].shape[1:]), n
    # channel counts of the four branches add up to the Concat's
    assert sum(rows[b][1][0] for b in branches) == rows[concat.output[0]][1][0]


def test_nn_layers_inception_all_shapes(mcon, inception_path):
    """Every tensor that depends on the image is listed with onnxruntime's per-image shape;
    constant tensors (weights made by ConstantOfShape, Reshape of a weight) have no batch
    axis, so if listed at all they keep their full shape."""
    import onnx
    g = onnx.load(str(inception_path)).graph
    const_shape = {}
    for n in g.node:
        if n.op_type == "ConstantOfShape":
            const_shape[n.output[0]] = None
    # activations: tensors that depend on the image (constant subgraphs such as Reshape(weight) do not)
    live = {i.name for i in g.input} - {t.name for t in g.initializer}
    for n in g.node:
        if any(i in live for i in n.input):
            live.update(o for o in n.output if o)
    names = [o for n in g.node for o in n.output if o in live]
    others = [o for n in g.node for o in n.output if o and o not in live and o not in const_shape]
    ref = H.ort_run(np.zeros((1, 3, 224, 224), np.float32), names=names + list(const_shape) + others,
                    model_path=inception_path)
    rows = mcon.execute(f"SELECT layer, shape FROM nn_layers('{sql_str(inception_path)}')").fetchall()
    bad = []
    for layer, shape in rows:
        if layer in const_shape or layer in others:
            if list(shape) != list(ref[layer].shape):
                bad.append((layer, list(shape), "constant", list(ref[layer].shape)))
        elif layer in ref and list(shape) != list(ref[layer].shape[1:]):
            bad.append((layer, list(shape), list(ref[layer].shape[1:])))
    act_bad = [b for b in bad if b[2] != "constant"]
    assert not bad, (f"{len(bad)} wrong shapes ({len(act_bad)} activations, {len(bad) - len(act_bad)} "
                     f"constants), e.g. {(act_bad or bad)[:5]}")
    # A Dropout's second output is its mask, not an activation (and at
    # inference it is all ones): nn_layers leaves it out on purpose.
    masks = {n.output[1] for n in g.node if n.op_type == "Dropout" and len(n.output) > 1}
    missing = [n for n in names if n not in {r[0] for r in rows} and n not in masks]
    assert not missing, f"activations missing from nn_layers: {missing}"


# --------------------------------------------------------------------------
# layer selection


def test_glob_patterns_expand_in_model_order(mcon, photos):
    order = [n for n, _ in H.graph_tensors()]
    proj = activation_order(mcon, photos[0], ["blocks.*.project"])
    assert proj == [f"blocks.{i}.project" for i in range(16)]
    stem = activation_order(mcon, photos[0], ["stem*"])
    assert stem == [n for n in order if n.startswith("stem")] == ["stem.conv", "stem"]
    mixed = activation_order(mcon, photos[0], ["logits", "blocks.1?"])
    assert mixed == ["logits"] + [f"blocks.{i}" for i in range(10, 16)]


def test_request_order_and_same_vectors(mcon, photos):
    req = ["logits", "input", "blocks.2.depthwise", "stem", "pool"]
    a = activations(mcon, photos[1], req)
    assert list(a) == req
    for name in req:
        alone = activations(mcon, photos[1], [name])[name]
        assert_close(name, a[name], alone, 1e-6 * max(1.0, float(np.abs(alone).max())))


def test_glob_vectors_equal_explicit(mcon, photos):
    g = activations(mcon, photos[2], ["blocks.1?.project"])
    e = activations(mcon, photos[2], [f"blocks.{i}.project" for i in range(10, 16)])
    assert list(g) == list(e)
    for k in g:
        assert_close(k, g[k], e[k], 1e-6 * max(1.0, float(np.abs(e[k]).max())))


def test_outputs_overload(mcon, photos):
    r = mcon.execute(f"SELECT list_transform(nn_activations('{sql_str(H.MODEL)}', "
                     f"'{sql_str(photos[0])}'), lambda e: e.layer)").fetchone()[0]
    assert list(r) == ["logits"]


def test_table_form_equals_scalar(mcon, photos):
    paths = photos[20:24]
    layers = ["blocks.3", "pool", "logits"]
    plist = "[" + ", ".join(f"'{sql_str(p)}'" for p in paths) + "]"
    t = mcon.execute(f"SELECT path, layer, activation FROM nn_activations('{sql_str(H.MODEL)}', {plist}, "
                     f"layers := {layers_sql(layers)})").fetchnumpy()
    assert len(t["path"]) == len(paths) * len(layers)
    s = batch_activations(mcon, paths, layers)
    seen = set()
    for path, layer, act in zip(t["path"], t["layer"], t["activation"]):
        i = [str(p) for p in paths].index(str(path))
        seen.add((i, str(layer)))
        assert_close(f"{path} {layer}", act, s[str(layer)][i], 1e-5 * max(1.0, float(np.abs(act).max())))
    assert len(seen) == len(paths) * len(layers)


def test_table_form_glob_of_paths(mcon, photos):
    pattern = str(H.PHOTOS / "2*.jpg")
    r = mcon.execute(f"SELECT path, activation FROM nn_activations('{sql_str(H.MODEL)}', '{sql_str(pattern)}', "
                     f"layers := ['pool'])").fetchnumpy()
    want = sorted(str(p) for p in H.PHOTOS.glob("2*.jpg"))
    assert sorted(str(p) for p in r["path"]) == want
    one = activations(mcon, H.PHOTOS / "25.jpg", ["pool"])["pool"]
    k = [str(p) for p in r["path"]].index(str(H.PHOTOS / "25.jpg"))
    assert_close("25.jpg pool", r["activation"][k], one, 1e-5)


# --------------------------------------------------------------------------
# image formats


def _png16_rgb(path, arr16: np.ndarray):
    """Write a 16-bit RGB PNG by hand (Pillow cannot)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path.write_bytes(png)


@pytest.fixture(scope="module")
def format_images(photos, tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    with Image.open(photos[4]) as im:
        rgb = im.convert("RGB")
    out = {}
    rgb.save(d / "rgb.png")
    out["rgb_png"] = d / "rgb.png"
    rgb.convert("L").save(d / "grey.jpg", quality=95)
    out["grey_jpg"] = d / "grey.jpg"
    rgb.convert("L").save(d / "grey.png")
    out["grey_png"] = d / "grey.png"
    rgb.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    out["cmyk_jpg"] = d / "cmyk.jpg"
    a = np.asarray(rgb)
    rgba = np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(d / "rgba_opaque.png")
    out["rgba_opaque_png"] = d / "rgba_opaque.png"
    alpha = np.tile(np.linspace(0, 255, a.shape[1]).astype(np.uint8), (a.shape[0], 1))
    Image.fromarray(np.dstack([a, alpha])).save(d / "rgba_alpha.png")
    out["rgba_alpha_png"] = d / "rgba_alpha.png"
    _png16_rgb(d / "rgb16.png", a.astype(np.uint16) * 257)
    out["rgb16_png"] = d / "rgb16.png"
    grey16 = (np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    Image.fromarray(grey16).save(d / "grey16.png")
    out["grey16_png"] = d / "grey16.png"
    # the files really have the formats we think
    with Image.open(out["cmyk_jpg"]) as im:
        assert im.mode == "CMYK"
    with Image.open(out["grey16_png"]) as im:
        assert im.mode.startswith("I")
    with Image.open(out["rgb16_png"]) as im:
        im.load()
    return out


@pytest.mark.parametrize("kind", ["rgb_png", "grey_jpg", "grey_png", "cmyk_jpg", "rgba_opaque_png",
                                  "rgba_alpha_png", "rgb16_png", "grey16_png"])
def test_image_formats_run(mcon, format_images, kind):
    a = activations(mcon, format_images[kind], ["input", "logits"])
    x = a["input"]
    assert x.shape == (150528,) and np.isfinite(x).all()
    assert x.min() >= -127 / 128 - 1e-6 and x.max() <= 1 + 1e-6
    assert x.std() > 0.05, "a flat image came out"
    assert np.isfinite(a["logits"]).all() and a["logits"].shape == (1000,)


@pytest.mark.parametrize("kind", ["grey_jpg", "grey_png", "grey16_png"])
def test_greyscale_gives_three_equal_channels(mcon, format_images, kind, model_path):
    x = activations(mcon, format_images[kind], ["input"])["input"].reshape(3, 224, 224)
    assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])
    if kind != "grey16_png":
        want = H.reference_input(format_images[kind], model_path)
        assert np.abs(x - want).mean() < 0.02


@pytest.mark.parametrize("kind", ["rgba_opaque_png", "rgb16_png"])
def test_same_picture_same_input(mcon, format_images, kind):
    """An opaque RGBA PNG and a 16-bit PNG of the same pixels give the 8-bit RGB input."""
    base = activations(mcon, format_images["rgb_png"], ["input"])["input"]
    x = activations(mcon, format_images[kind], ["input"])["input"]
    d = np.abs(x - base)
    assert d.mean() < 0.01 and d.max() < 0.1, (float(d.mean()), float(d.max()))


def test_grey16_matches_grey8(mcon, format_images):
    a = activations(mcon, format_images["grey_png"], ["input"])["input"]
    b = activations(mcon, format_images["grey16_png"], ["input"])["input"]
    d = np.abs(a - b)
    assert d.mean() < 0.01 and d.max() < 0.1, (float(d.mean()), float(d.max()))


def test_threads_do_not_change_results(ext_path, photos):
    """The scalar runs on all DuckDB threads; one thread gives the same vectors."""
    import duckdb
    res = {}
    for threads in (1, 2):
        c = duckdb.connect(config={"allow_unsigned_extensions": "true", "threads": str(threads)})
        c.execute(f"LOAD '{sql_str(ext_path)}'")
        res[threads] = batch_activations(c, photos[30:46], ["blocks.8", "logits"])
        c.close()
    for name in ("blocks.8", "logits"):
        assert_close(f"{name} threads 1 vs 2", res[1][name], res[2][name],
                     1e-5 * max(1.0, float(np.abs(res[1][name]).max())))


def test_own_kernels_agrees_with_tracts(photos, tmp_path):
    """layercorr swaps its own convolutions (depthwise, dense, 1x1, with
    the clamp after them; crates/engine/src/model/) in for tract's;
    `SET layercorr_kernels = 'tract'` keeps tract's.
    Both runs must agree to float32 rounding on every layer of the
    network, and must not be the same computation (else the swap did not
    happen)."""
    paths = "[" + ", ".join(f"'{sql_str(p)}'" for p in photos[:3]) + "]"
    outputs = {}
    for variant in ("own", "tract"):
        out = tmp_path / f"{variant}.parquet"
        kernel = "tract" if variant == "tract" else "layercorr"
        s = H.run_python_child([
            f"SET layercorr_kernels = '{kernel}'",
            f"COPY (SELECT path, layer, activation FROM nn_activations('{sql_str(H.MODEL)}', "
            f"{paths}, layers := ['*']) ORDER BY path, layer) TO '{sql_str(out)}'"])
        assert not s.crashed and len(s.results) == 2 and all(r["ok"] for r in s.results), (
            s.results, s.stderr[-2000:])
        outputs[variant] = out
    import duckdb

    con = duckdb.connect()
    own = con.execute(f"FROM '{sql_str(outputs['own'])}'").fetchall()
    tract = con.execute(f"FROM '{sql_str(outputs['tract'])}'").fetchall()
    assert [r[:2] for r in own] == [r[:2] for r in tract] and len(own) > 100
    differ = 0
    for (path, layer, a), (_, _, b) in zip(own, tract):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert_close(f"{path} {layer}", a, b, 1e-4 * max(1.0, float(np.abs(b).max())))
        differ += int(not np.array_equal(a, b))
    assert differ > 0, "own and tract kernels gave bit-identical results: was the op swapped in?"
