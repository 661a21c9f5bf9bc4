//! Unit tests of resizing, cropping, letterboxing and normalisation.

use super::*;

fn cover_size_default(src: (u32, u32), target: (u32, u32)) -> (u64, u64) {
    cover_size(src, target, None)
}

#[test]
fn letterbox_box_follows_pillow_pad() {
    // ImageOps.pad((w, h) -> (224, 224)): the long side fills, the other
    // is round(short / long * 224), centred with round(free / 2):
    // 93 / 2 = 46.5 rounds to 46.
    assert_eq!(letterbox_box((512, 300), (224, 224)), (0, 46, 224, 131));
    assert_eq!(letterbox_box((300, 512), (224, 224)), (46, 0, 131, 224));
    assert_eq!(letterbox_box((512, 512), (224, 224)), (0, 0, 224, 224));
    // round(0.5 * 1) is 0 in Python (half to even): 223 high, offset 0.
    assert_eq!(letterbox_box((2240, 2230), (224, 224)), (0, 0, 224, 223));
    // An extreme strip keeps at least one row.
    assert_eq!(letterbox_box((2_000_000, 1), (224, 224)), (0, 112, 224, 1));
}

#[test]
fn letterbox_pads_with_the_normalised_pad_value() {
    let img = RgbImage::from_pixel(40, 20, ::image::Rgb([200, 100, 50]));
    let pre = Preprocessing {
        width: 8,
        height: 8,
        resize: ResizeMode::Letterbox,
        pad_value: [10.0, 20.0, 30.0],
        mean: [0.0; 3],
        std: [2.0; 3],
        ..Preprocessing::default()
    };
    let out = preprocess(&img, &pre, Path::new("x.png")).unwrap();
    // NCHW: rows 0-1 and 6-7 are pad, rows 2-5 the image.
    for c in 0..3 {
        let plane = &out[c * 64..(c + 1) * 64];
        let (pad, px) = ([10.0, 20.0, 30.0][c] / 2.0, [200.0, 100.0, 50.0][c] / 2.0);
        assert!(plane[..16].iter().chain(&plane[48..]).all(|v| *v == pad));
        assert!(plane[16..48].iter().all(|v| *v == px));
    }
}

#[test]
fn cover_size_keeps_aspect_ratio() {
    assert_eq!(cover_size_default((512, 512), (224, 224)), (224, 224));
    assert_eq!(cover_size_default((640, 480), (224, 224)), (299, 224));
    assert_eq!(cover_size_default((480, 640), (224, 224)), (224, 299));
    assert_eq!(cover_size_default((100, 50), (224, 224)), (448, 224));
    assert_eq!(
        cover_size_default((1, 2_000_000), (224, 224)),
        (224, 448_000_000)
    );
}

/// A deterministic image with detail at every scale (a smooth
/// gradient plus pseudo-random noise).
fn textured(w: u32, h: u32) -> RgbImage {
    let mut state = 0x2545_f491_u32 ^ (w * 7919 + h);
    RgbImage::from_fn(w, h, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state >> 24) as u8;
        ::image::Rgb([
            ((x * 255) / w.max(1)) as u8 ^ (n & 0x3f),
            ((y * 255) / h.max(1)) as u8,
            n,
        ])
    })
}

/// The reference: resize the whole image to the cover size, then crop
/// the centre (what `torchvision.transforms.Resize` + `CenterCrop`
/// do).
fn resize_then_crop(img: &RgbImage, target: (u32, u32)) -> Vec<u8> {
    let (rw, rh) = cover_size(img.dimensions(), target, None);
    let (rw, rh) = (rw as u32, rh as u32);
    let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3).unwrap();
    let mut resized = Image::new(rw, rh, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new().resize(&src, &mut resized, &options).unwrap();
    let (left, top) = (
        ((rw - target.0) / 2) as usize,
        ((rh - target.1) / 2) as usize,
    );
    let stride = rw as usize * 3;
    let mut out = Vec::new();
    for y in 0..target.1 as usize {
        let row = &resized.buffer()[(top + y) * stride + left * 3..][..target.0 as usize * 3];
        out.extend_from_slice(row);
    }
    out
}

#[test]
fn cropped_resize_equals_resize_then_crop() {
    let cases = [
        ((640, 480), (224, 224)),
        ((480, 640), (224, 224)),
        ((500, 333), (224, 224)),
        ((333, 500), (224, 224)),
        ((100, 50), (224, 224)),
        ((50, 100), (224, 224)),
        ((224, 224), (224, 224)),
        ((1000, 999), (224, 224)),
        ((640, 480), (240, 320)),
        ((257, 1031), (224, 160)),
    ];
    for (src, target) in cases {
        let img = textured(src.0, src.1);
        let pre = Preprocessing {
            width: target.0,
            height: target.1,
            ..Preprocessing::default()
        };
        let ours = resize(&img, &pre, Path::new("x.png")).unwrap();
        let reference = resize_then_crop(&img, target);
        assert_eq!(ours.len(), reference.len());
        let worst = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let differing = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
        assert!(
            worst <= 1 && differing * 1000 <= ours.len(),
            "{src:?} -> {target:?}: {differing} values differ, by up to {worst}"
        );
    }
}

#[test]
fn horizontal_first_agrees_with_the_whole_image_resize() {
    // Wide, short images stretched to a tall input take the
    // horizontal-first path; compare with one whole-image resize.
    for (w, h, tw, th) in [
        (4000, 3, 224, 224),
        (3000, 40, 64, 200),
        (5000, 7, 300, 100),
    ] {
        let img = textured(w, h);
        let pre = Preprocessing {
            width: tw,
            height: th,
            resize: ResizeMode::Stretch,
            ..Preprocessing::default()
        };
        let ours = resize(&img, &pre, Path::new("x.png")).unwrap();
        let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3).unwrap();
        let mut reference = Image::new(tw, th, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new()
            .resize(&src, &mut reference, &options)
            .unwrap();
        let worst = ours
            .iter()
            .zip(reference.buffer())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "{w} x {h} -> {tw} x {th}: differs by {worst}");
    }
}

#[test]
fn extreme_aspect_ratios_stay_small() {
    // Each image is a few MB; the whole-image resize would need
    // hundreds of GB for the first two.
    for (w, h) in [(1, 2_000_000), (2_000_000, 1), (1, 100_000), (100_000, 1)] {
        let img = RgbImage::from_pixel(w, h, ::image::Rgb([200, 100, 50]));
        for resize in [ResizeMode::ShorterSideCenterCrop, ResizeMode::Stretch] {
            let pre = Preprocessing {
                resize,
                mean: [0.0; 3],
                std: [1.0; 3],
                ..Preprocessing::default()
            };
            let started = std::time::Instant::now();
            let t = preprocess(&img, &pre, Path::new("strip.png")).unwrap();
            assert_eq!(t.len(), 3 * 224 * 224);
            assert_eq!((t[0], t[224 * 224], t[2 * 224 * 224]), (200.0, 100.0, 50.0));
            assert!(
                started.elapsed().as_secs() < 20,
                "{w} x {h} took {:?}",
                started.elapsed()
            );
        }
    }
}

#[test]
fn constant_image_normalises_exactly() {
    let img = RgbImage::from_pixel(300, 200, ::image::Rgb([255, 127, 0]));
    let pre = Preprocessing::default();
    let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
    assert_eq!(t.len(), 3 * 224 * 224);
    let plane = 224 * 224;
    assert!((t[0] - 1.0).abs() < 1e-6);
    assert!(t[plane + 500].abs() < 1e-6);
    assert!((t[2 * plane + 7] + 127.0 / 128.0).abs() < 1e-6);
}

#[test]
fn nhwc_interleaves_channels() {
    let img = RgbImage::from_pixel(10, 10, ::image::Rgb([1, 2, 3]));
    let pre = Preprocessing {
        height: 4,
        width: 4,
        mean: [0.0; 3],
        std: [1.0; 3],
        resize: ResizeMode::Stretch,
        layout: Layout::Nhwc,
        ..Preprocessing::default()
    };
    let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
    assert_eq!(&t[..6], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
}

#[test]
fn raw_values_skip_mean_and_std() {
    let img = RgbImage::from_pixel(30, 20, ::image::Rgb([255, 7, 0]));
    let pre = Preprocessing {
        height: 8,
        width: 8,
        values: InputValues::Raw,
        ..Preprocessing::default()
    };
    let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
    assert_eq!((t[0], t[64], t[128]), (255.0, 7.0, 0.0));
}

#[test]
fn grey_input_uses_pillow_luma() {
    // Pillow: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
    let cases = [
        ([255, 0, 0], 76),
        ([0, 255, 0], 150),
        ([0, 0, 255], 29),
        ([255, 255, 255], 255),
        ([10, 20, 30], 18),
        ([128, 128, 128], 128),
    ];
    for (rgb, expected) in cases {
        let img = RgbImage::from_pixel(1, 1, ::image::Rgb(rgb));
        assert_eq!(luma(&img), vec![expected], "{rgb:?}");
    }
    let img = RgbImage::from_pixel(40, 30, ::image::Rgb([10, 20, 30]));
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let pre = Preprocessing {
            height: 5,
            width: 6,
            channels: 1,
            mean: [2.0, 100.0, 100.0],
            std: [4.0, 1.0, 1.0],
            layout,
            ..Preprocessing::default()
        };
        assert_eq!(pre.tensor_len(), 30);
        let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
        assert_eq!(t, vec![4.0; 30]);
    }
    let shape = |layout| {
        Preprocessing {
            channels: 1,
            layout,
            ..Preprocessing::default()
        }
        .shape()
    };
    assert_eq!(shape(Layout::Nchw), [1, 224, 224]);
    assert_eq!(shape(Layout::Nhwc), [224, 224, 1]);
}

#[test]
fn oversized_or_odd_inputs_are_errors() {
    let img = RgbImage::from_pixel(4, 4, ::image::Rgb([0, 0, 0]));
    let big = Preprocessing {
        width: MAX_INPUT_SIDE + 1,
        ..Preprocessing::default()
    };
    let err = preprocess(&img, &big, Path::new("a.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.png") && err.contains("4097"), "{err}");
    let two = Preprocessing {
        channels: 2,
        ..Preprocessing::default()
    };
    let err = preprocess(&img, &two, Path::new("a.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 input channels"), "{err}");
}

#[test]
fn resize_size_then_crop_and_bgr() {
    assert_eq!(cover_size((512, 384), (224, 224), Some(256)), (341, 256));
    assert_eq!(cover_size((100, 100), (224, 224), Some(200)), (224, 224));
    let img = RgbImage::from_pixel(300, 200, ::image::Rgb([200, 100, 50]));
    let pre = Preprocessing {
        resize_size: Some(256),
        channel_order: ChannelOrder::Bgr,
        mean: [0.0; 3],
        std: [1.0; 3],
        ..Preprocessing::default()
    };
    let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
    let plane = 224 * 224;
    assert_eq!((t[0], t[plane], t[2 * plane]), (50.0, 100.0, 200.0));
    for name in ["bilinear", "bicubic", "lanczos", "nearest", "area"] {
        let interpolation = Interpolation::parse(name).unwrap();
        assert_eq!(interpolation.name(), name);
        let pre = Preprocessing {
            interpolation,
            ..pre.clone()
        };
        let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
        assert!(t[..plane].iter().all(|v| *v == 50.0), "{name}");
    }
    assert_eq!(Interpolation::parse("cubic"), None);
}
