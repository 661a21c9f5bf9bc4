#!/usr/bin/env python3
"""Stamp an ONNX model with the preprocessing layercorr should use.

layercorr reads `layercorr.*` keys from the model's `metadata_props`:
input size, the shorter side before the centre crop, per-channel mean and
std on the 0-255 pixel scale (in the tensor's channel order), how the image
is fitted (shorter side then centre crop, stretch, or letterbox: fit
inside and pad with --pad-value), the resampling
filter, RGB or BGR, the tensor layout, EXIF rotation and transparency. Run
this once on your own model file; the weights are untouched.

Examples:
    # torchvision: Resize(256), CenterCrop(224), ImageNet normalisation
    python scripts/set_preprocessing.py model.onnx --size 224 --resize-size 256 \
        --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375
    # timm (e.g. resnet50.a1_in1k): bicubic, crop_pct 0.95
    python scripts/set_preprocessing.py model.onnx --size 224 --resize-size 235 \
        --interpolation bicubic --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375
    # Keras / Caffe-style ResNet50: BGR, mean subtraction only, NHWC
    python scripts/set_preprocessing.py model.onnx --size 224 --resize-size 256 \
        --channel-order BGR --mean 103.939,116.779,123.68 --std 1 --layout NHWC
    # YOLO-style letterbox: fit inside 640, pad with grey 114, 0..1 scale
    python scripts/set_preprocessing.py model.onnx --size 640 --resize letterbox \
        --pad-value 114 --mean 0 --std 255
"""

import argparse
import sys

import onnx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="ONNX file to update in place (or see --output)")
    parser.add_argument("--output", help="write here instead of in place")
    parser.add_argument("--size", help="input size: 224 or HxW such as 240x320")
    parser.add_argument("--mean", help="r,g,b mean on the 0-255 scale")
    parser.add_argument("--std", help="r,g,b standard deviation on the 0-255 scale")
    parser.add_argument("--resize", choices=["shorter_side_then_center_crop", "stretch", "letterbox"])
    parser.add_argument("--pad-value", help="letterbox border, 0-255: one value or one per channel (r,g,b in tensor order)")
    parser.add_argument("--layout", choices=["NCHW", "NHWC"])
    parser.add_argument("--resize-size", help="shorter side before the centre crop (torchvision Resize(N))")
    parser.add_argument("--channel-order", choices=["RGB", "BGR"])
    parser.add_argument("--interpolation", choices=["bilinear", "bicubic", "lanczos", "nearest", "area"])
    parser.add_argument("--exif", choices=["apply", "ignore"], help="rotate by the EXIF orientation (default apply)")
    parser.add_argument("--alpha", choices=["drop", "composite"], help="transparency: drop it or blend onto --background")
    parser.add_argument("--background", help="colour for --alpha composite: white, black or r,g,b (0-255)")
    args = parser.parse_args()
    if args.resize_size is not None and not args.resize_size.strip().isdigit():
        print(f"set_preprocessing: --resize-size must be a number of pixels, got {args.resize_size!r}", file=sys.stderr)
        return 2

    values = {
        "layercorr.input_size": args.size,
        "layercorr.mean": args.mean,
        "layercorr.std": args.std,
        "layercorr.resize": args.resize,
        "layercorr.layout": args.layout,
        "layercorr.resize_size": args.resize_size,
        "layercorr.channel_order": args.channel_order,
        "layercorr.interpolation": args.interpolation,
        "layercorr.exif": args.exif,
        "layercorr.alpha": args.alpha,
        "layercorr.background": args.background,
        "layercorr.pad_value": args.pad_value,
    }
    for key in ("layercorr.mean", "layercorr.std", "layercorr.pad_value"):
        if values[key] is not None:
            parts = values[key].split(",")
            if len(parts) not in (1, 3) or not all(p.strip().replace(".", "", 1).isdigit() for p in parts):
                print(f"set_preprocessing: {key} must be one or three numbers, got {values[key]!r}", file=sys.stderr)
                return 2
    model = onnx.load(args.model)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if value is None:
            continue
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, args.output or args.model)
    for p in model.metadata_props:
        if p.key.startswith("layercorr."):
            print(f"{p.key} = {p.value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
