//! [`Pointwise`] against tract's own evaluation of the same graph.

use tract_onnx::tract_core::ops::math::{add, max, min};

use crate::model::swap_in_own_kernels;

use super::*;
use crate::test_data::values;

/// `x -> EinSum(expr) with an O x I constant [-> + bias] -> outputs`.
fn graph(
    expr: &str,
    x_shape: &[usize],
    (o, i): (usize, usize),
    bias_shape: Option<&[usize]>,
    product_is_output: bool,
) -> TypedModel {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(x_shape)).unwrap();
    let weights = Tensor::from_shape(&[o, i], &values(o * i, 7)).unwrap();
    let w = model.add_const("w", weights).unwrap();
    let einsum = EinSum::new(expr.parse().unwrap(), f32::datum_type());
    let product = model.wire_node("product", einsum, &[x, w]).unwrap()[0];
    let mut outputs = vec![];
    if product_is_output {
        outputs.push(product);
    }
    if let Some(shape) = bias_shape {
        let n = shape.iter().product();
        let b = model
            .add_const("b", Tensor::from_shape(shape, &values(n, 9)).unwrap())
            .unwrap();
        outputs.push(model.wire_node("sum", add(), &[product, b]).unwrap()[0]);
    }
    model.select_output_outlets(&outputs).unwrap();
    model
}

fn run(model: TypedModel, x_shape: &[usize]) -> Vec<Vec<f32>> {
    let n = x_shape.iter().product();
    let input = Tensor::from_shape(x_shape, &values(n, 3)).unwrap();
    let plan = model.into_runnable().unwrap();
    let outputs = plan.run(tvec!(input.into_tvalue())).unwrap();
    outputs
        .iter()
        .map(|t| {
            t.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        })
        .collect()
}

fn ops_named(model: &TypedModel, name: &str) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op().name() == name)
        .count()
}

/// Replaces in copies of `model`, with the weights in each layout, checks
/// the count, and compares each run with tract's; returns the copy with
/// the layout this CPU would choose.
fn check(model: TypedModel, x_shape: &[usize], expect_replaced: usize) -> TypedModel {
    let want = run(model.clone(), x_shape);
    for layout in [WeightLayout::RowMajor, WeightLayout::Panels] {
        let mut ours = model.clone();
        let replaced = replace_pointwise_with(&mut ours, layout).unwrap();
        assert_eq!(replaced, expect_replaced);
        let got = run(ours, x_shape);
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.len(), g.len());
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{layout:?} value {i}: tract {a}, ours {b}"
                );
            }
        }
    }
    let mut ours = model;
    assert_eq!(replace_pointwise(&mut ours).unwrap(), expect_replaced);
    ours
}

#[test]
fn batched_and_batchless_products_with_bias_match_tract() {
    for (expr, x_shape, bias) in [
        ("NIHW,OI->NOHW", &[2, 5, 4, 3][..], &[1, 6, 1, 1][..]),
        ("IHW,OI->OHW", &[5, 4, 3], &[6, 1, 1]),
        ("NIHW,OI->OHW", &[1, 5, 7, 2], &[6, 1, 1]),
        ("IHW,OI->NOHW", &[5, 7, 2], &[1, 6, 1, 1]),
        ("IHW,OI->OHW", &[5, 4, 3], &[1, 1, 1]),
    ] {
        let model = graph(expr, x_shape, (6, 5), Some(bias), false);
        let ours = check(model, x_shape, 1);
        // The bias was taken into the product: no Add is left to run.
        let live = ours.clone().into_decluttered().unwrap();
        assert_eq!(ops_named(&live, "Add"), 0, "{expr}");
        assert_eq!(ops_named(&live, "LayercorrPointwise"), 1, "{expr}");
    }
}

#[test]
fn a_product_that_is_also_an_output_keeps_its_own_value() {
    let model = graph("IHW,OI->OHW", &[5, 4, 3], (6, 5), Some(&[6, 1, 1]), true);
    let ours = check(model, &[5, 4, 3], 1);
    let live = ours.into_decluttered().unwrap();
    assert_eq!(ops_named(&live, "Add"), 1);
}

#[test]
fn a_bias_varying_along_a_spatial_axis_is_not_fused() {
    let model = graph("IHW,OI->OHW", &[5, 4, 3], (6, 5), Some(&[1, 4, 1]), false);
    let ours = check(model, &[5, 4, 3], 1);
    let live = ours.into_decluttered().unwrap();
    assert_eq!(ops_named(&live, "Add"), 1);
}

#[test]
fn a_contraction_over_the_last_axis_is_a_product_per_row() {
    // out[i, h, o] = sum_w x[i, h, w] w[o, w]: I·H products of O x W by W x 1.
    check(
        graph("IHW,OW->IHO", &[5, 4, 3], (6, 3), None, true),
        &[5, 4, 3],
        1,
    );
}

#[test]
fn weights_stored_input_first_stay_tract_s() {
    check(
        graph("IHW,IO->OHW", &[5, 4, 3], (5, 6), None, true),
        &[5, 4, 3],
        0,
    );
}

/// `graph` with a ReLU6 (`Max` 0 then `Min` 6, as tract declutters `Clip`)
/// after the bias; `keep_max` makes the `Max`'s value an output too.
fn graph_with_relu6(keep_max: bool) -> TypedModel {
    let mut model = graph("IHW,OI->OHW", &[5, 4, 3], (6, 5), Some(&[6, 1, 1]), false);
    let sum = model.output_outlets().unwrap()[0];
    let zero = model.add_const("zero", tensor3(&[[[0f32]]])).unwrap();
    let six = model.add_const("six", tensor3(&[[[6f32]]])).unwrap();
    let low = model.wire_node("relu6.max", max(), &[sum, zero]).unwrap()[0];
    let high = model.wire_node("relu6.min", min(), &[low, six]).unwrap()[0];
    let outputs = if keep_max {
        vec![low, high]
    } else {
        vec![high]
    };
    model.select_output_outlets(&outputs).unwrap();
    model
}

/// Runs `model` as is and after `swap_in_own_kernels`; returns the
/// swapped model, decluttered.
fn swapped_and_checked(model: TypedModel) -> TypedModel {
    let mut ours = model.clone();
    swap_in_own_kernels(&mut ours).unwrap();
    let (want, got) = (run(model, &[5, 4, 3]), run(ours.clone(), &[5, 4, 3]));
    for (w, g) in want.iter().zip(&got) {
        for (i, (a, b)) in w.iter().zip(g).enumerate() {
            assert!((a - b).abs() < 1e-4, "value {i}: tract {a}, ours {b}");
        }
    }
    ours.into_decluttered().unwrap()
}

#[test]
fn a_following_relu6_is_taken_into_the_product() {
    let live = swapped_and_checked(graph_with_relu6(false));
    assert_eq!(ops_named(&live, "Max") + ops_named(&live, "Min"), 0);
    assert_eq!(ops_named(&live, "LayercorrPointwise"), 1);
}

#[test]
fn a_clamp_step_that_is_an_output_stops_the_fusion() {
    let live = swapped_and_checked(graph_with_relu6(true));
    assert_eq!(ops_named(&live, "Max"), 0);
    assert_eq!(ops_named(&live, "Min"), 1);
}
