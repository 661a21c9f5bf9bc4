//! Unit tests of the preprocessing keys: parsing, validation, overrides
//! and the report of where each value came from.

use super::*;

fn props(pairs: &[(&str, &str)]) -> HashMap<String, Arc<Tensor>> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                format!("{PREFIX}{k}"),
                tract_onnx::prelude::rctensor0(v.to_string()),
            )
        })
        .collect()
}

fn declared(dims: &[Option<i64>], datum_type: Option<DatumType>) -> DeclaredInput {
    DeclaredInput {
        dims: Some(dims.to_vec()),
        datum_type,
    }
}

fn build(pairs: &[(&str, &str)], input: &DeclaredInput) -> Result<Preprocessing, String> {
    preprocessing_from_props(Path::new("m.onnx"), &props(pairs), input).map_err(|e| e.to_string())
}

fn err(pairs: &[(&str, &str)]) -> String {
    build(pairs, &DeclaredInput::default()).unwrap_err()
}

#[test]
fn keys_and_declared_shape_fill_the_preprocessing() {
    let unknown = DeclaredInput::default();
    assert_eq!(build(&[], &unknown).unwrap(), Preprocessing::default());
    let pre = build(
        &[
            ("input_size", "240x320"),
            ("mean", "1,2,3"),
            ("std", "4"),
            ("resize", "stretch"),
            ("layout", "nhwc"),
        ],
        &unknown,
    )
    .unwrap();
    assert_eq!((pre.height, pre.width), (240, 320));
    assert_eq!((pre.mean, pre.std), ([1.0, 2.0, 3.0], [4.0; 3]));
    assert_eq!(
        (pre.resize, pre.layout),
        (ResizeMode::Stretch, Layout::Nhwc)
    );

    let nhwc = declared(&[None, Some(160), Some(128), Some(3)], None);
    let pre = build(&[], &nhwc).unwrap();
    assert_eq!(
        (pre.height, pre.width, pre.layout),
        (160, 128, Layout::Nhwc)
    );
    // A symbolic batch and symbolic sides keep the defaults.
    let symbolic = declared(&[None, Some(3), None, None], Some(DatumType::F32));
    assert_eq!(build(&[], &symbolic).unwrap(), Preprocessing::default());
}

#[test]
fn input_size_is_bounded() {
    let e = err(&[("input_size", "100000")]);
    assert!(
        e.contains("'m.onnx'")
            && e.contains("layercorr.input_size = '100000'")
            && e.contains("4096"),
        "{e}"
    );
    let e = err(&[("input_size", "224x5000")]);
    assert!(e.contains("'224x5000'") && e.contains("4096"), "{e}");
    let e = err(&[("input_size", "99999999999999999999999")]);
    assert!(e.contains("not a size"), "{e}");
    let e = err(&[("input_size", "0")]);
    assert!(e.contains("not a size"), "{e}");
    let pre = build(&[("input_size", "4096")], &DeclaredInput::default()).unwrap();
    assert_eq!((pre.height, pre.width), (4096, 4096));

    let huge = declared(&[Some(1), Some(3), Some(100_000), Some(224)], None);
    let e = build(&[], &huge).unwrap_err();
    assert_eq!(
        e,
        "model 'm.onnx' declares input [1,3,100000,224] of 100000 x 224 pixels, \
         above the limit of 4096 pixels per side"
    );
}

#[test]
fn bad_std_and_mean_say_what_is_wrong() {
    let e = err(&[("std", "nan,1,1")]);
    assert_eq!(
        e,
        "model 'm.onnx' has invalid metadata layercorr.std = 'nan,1,1': has a NaN value"
    );
    assert!(err(&[("std", "1,inf,1")]).contains("infinite"));
    assert!(err(&[("std", "1,0,1")]).contains("has a zero"));
    let e = err(&[("std", "58,-57,57")]);
    assert!(e.contains("'58,-57,57'") && e.contains("negative"), "{e}");
    assert!(err(&[("std", "1,2")]).contains("not three numbers"));
    let e = err(&[("mean", "1,NaN,3")]);
    assert!(e.contains("layercorr.mean") && e.contains("NaN"), "{e}");
    assert!(err(&[("mean", "-inf")]).contains("infinite"));
    // A negative mean is fine.
    let pre = build(&[("mean", "-1")], &DeclaredInput::default()).unwrap();
    assert_eq!(pre.mean, [-1.0; 3]);
}

#[test]
fn unknown_resize_and_layout_list_the_valid_values() {
    let e = err(&[("resize", "zoom")]);
    assert_eq!(
        e,
        "model 'm.onnx' has invalid metadata layercorr.resize = 'zoom': \
         valid: shorter_side_then_center_crop, stretch, letterbox"
    );
    let e = err(&[("layout", "CHWN")]);
    assert!(e.contains("'CHWN'") && e.contains("NCHW, NHWC"), "{e}");
}

#[test]
fn uint8_inputs_take_raw_pixels_and_odd_types_are_errors() {
    let u8_input = declared(&[Some(1), Some(3), Some(32), Some(32)], Some(DatumType::U8));
    let pre = build(&[], &u8_input).unwrap();
    assert_eq!(pre.values, InputValues::Raw);
    assert_eq!((pre.height, pre.width), (32, 32));
    for float in [DatumType::F16, DatumType::F32, DatumType::F64] {
        let input = declared(&[None, Some(3), None, None], Some(float));
        assert_eq!(build(&[], &input).unwrap().values, InputValues::Normalised);
    }
    let int = declared(&[None, Some(3), None, None], Some(DatumType::I64));
    let e = build(&[], &int).unwrap_err();
    assert!(e.contains("I64") && e.contains("uint8"), "{e}");
}

#[test]
fn one_channel_inputs_are_grey() {
    let nchw = declared(&[None, Some(1), Some(28), Some(28)], None);
    let pre = build(&[], &nchw).unwrap();
    assert_eq!((pre.channels, pre.layout), (1, Layout::Nchw));
    assert_eq!(pre.shape(), [1, 28, 28]);
    let nhwc = declared(&[None, Some(28), Some(28), Some(1)], None);
    let pre = build(&[], &nhwc).unwrap();
    assert_eq!((pre.channels, pre.layout), (1, Layout::Nhwc));
    assert_eq!(pre.tensor_len(), 28 * 28);
}

#[test]
fn inputs_that_are_not_images_are_named_errors() {
    let vector = declared(&[Some(1), Some(10)], None);
    let e = build(&[], &vector).unwrap_err();
    assert_eq!(
        e,
        "model 'm.onnx' declares input [1,10], which layercorr cannot feed: \
         2 dimensions instead of 4; layercorr feeds images as [N,C,H,W] or \
         [N,H,W,C] with C = 1 or 3"
    );
    let four = declared(&[None, Some(4), Some(224), Some(224)], None);
    let e = build(&[], &four).unwrap_err();
    assert!(
        e.contains("[?,4,224,224]") && e.contains("has 4 entries"),
        "{e}"
    );
    let five = declared(&[Some(1), Some(5), Some(8), Some(8), Some(3)], None);
    assert!(build(&[], &five).unwrap_err().contains("5 dimensions"));
    // A layout key that puts the channels on a spatial axis.
    let nchw = declared(&[Some(1), Some(3), Some(224), Some(224)], None);
    let e = build(&[("layout", "NHWC")], &nchw).unwrap_err();
    assert!(
        e.contains("layercorr.layout = 'NHWC'") && e.contains("has 224 entries"),
        "{e}"
    );
}

#[test]
fn report_names_where_each_value_came_from() {
    let input = declared(&[None, Some(3), Some(160), Some(128)], Some(DatumType::F32));
    let p = props(&[("mean", "1,2,3")]);
    let pre = preprocessing_from_props(Path::new("m.onnx"), &p, &input).unwrap();
    let report = preprocessing_report(&pre, &p, &input);
    let get = |k: &str| {
        let r = report.iter().find(|r| r.key == k).unwrap();
        (r.value.as_str(), r.source.as_str())
    };
    assert_eq!(get("input_size"), ("160x128", "declared shape"));
    assert_eq!(get("mean"), ("1,2,3", "metadata"));
    assert_eq!(get("std"), ("128", "default"));
    assert_eq!(get("layout"), ("NCHW", "declared shape"));
    assert_eq!(get("resize"), ("shorter_side_then_center_crop", "default"));
    assert_eq!(get("values"), ("normalised", "declared type"));
}

#[test]
fn overrides_win_and_bad_ones_are_named_as_overrides() {
    let p = props(&[("resize", "stretch"), ("mean", "1,2,3")]);
    let input = DeclaredInput::default();
    let overrides = Overrides::new(vec![
        ("layercorr.resize".into(), "letterbox".into()),
        ("Pad_Value".into(), "114".into()),
    ])
    .unwrap();
    let keys = Keys {
        props: &p,
        overrides: &overrides,
    };
    let pre = preprocessing_from_keys(Path::new("m.onnx"), &keys, &input).unwrap();
    assert_eq!(pre.resize, ResizeMode::Letterbox);
    assert_eq!(pre.pad_value, [114.0; 3]);
    assert_eq!(pre.mean, [1.0, 2.0, 3.0]);
    let report = report_keys(&pre, &keys, &input);
    let source = |k: &str| report.iter().find(|r| r.key == k).unwrap().source.clone();
    assert_eq!(source("resize"), "override");
    assert_eq!(source("pad_value"), "override");
    assert_eq!(source("mean"), "metadata");

    let bad = Overrides::new(vec![("resize".into(), "zoom".into())]).unwrap();
    let keys = Keys {
        props: &p,
        overrides: &bad,
    };
    let e = preprocessing_from_keys(Path::new("m.onnx"), &keys, &input)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "preprocess override resize = 'zoom': valid: shorter_side_then_center_crop, stretch, letterbox"
    );
    let e = Overrides::new(vec![("zoom".into(), "2".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("preprocess key 'zoom' is unknown; valid: input_size"),
        "{e}"
    );
    let e = Overrides::new(vec![("std".into(), "1".into()), ("STD".into(), "2".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'STD' is given twice"), "{e}");
    // A metadata error stays a metadata error under unrelated overrides.
    let p = props(&[("resize", "zoom")]);
    let keys = Keys {
        props: &p,
        overrides: &overrides,
    };
    assert!(preprocessing_from_keys(Path::new("m.onnx"), &keys, &input).is_ok());
    let other = Overrides::new(vec![("std".into(), "2".into())]).unwrap();
    let keys = Keys {
        props: &p,
        overrides: &other,
    };
    let e = preprocessing_from_keys(Path::new("m.onnx"), &keys, &input)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid metadata layercorr.resize = 'zoom'"),
        "{e}"
    );
}

#[test]
fn new_keys_parse_and_bad_values_list_the_valid_ones() {
    let pre = build(
        &[
            ("resize_size", "256"),
            ("channel_order", "bgr"),
            ("interpolation", "Bicubic"),
            ("exif", "ignore"),
            ("alpha", "composite"),
            ("background", "0,128,255"),
        ],
        &DeclaredInput::default(),
    )
    .unwrap();
    assert_eq!(pre.resize_size, Some(256));
    assert_eq!(pre.channel_order, ChannelOrder::Bgr);
    assert_eq!(pre.interpolation, Interpolation::Bicubic);
    assert!(!pre.exif);
    assert_eq!(pre.alpha, Alpha::Composite([0, 128, 255]));
    let pre = build(&[("alpha", "composite")], &DeclaredInput::default()).unwrap();
    assert_eq!(pre.alpha, Alpha::Composite([255; 3]));

    let e = err(&[("interpolation", "cubic")]);
    assert_eq!(
        e,
        "model 'm.onnx' has invalid metadata layercorr.interpolation = 'cubic': \
         valid: bilinear, bicubic, lanczos, nearest, area"
    );
    assert!(err(&[("channel_order", "GBR")]).contains("valid: RGB, BGR"));
    assert!(err(&[("exif", "yes")]).contains("valid: apply, ignore"));
    assert!(err(&[("alpha", "keep")]).contains("valid: drop, composite"));
    assert!(err(&[("resize_size", "0")]).contains("layercorr.resize_size = '0'"));
    assert!(err(&[("background", "300")]).contains("not a colour"));
}
