//! [`DenseConv`] against the definition of a convolution
//! ([`crate::test_data::reference_conv`]).

use super::*;
use crate::test_data::{reference_conv, values};
use tract_onnx::tract_core::internal::EvalOp;

fn check(g: Dense, bias_len: usize) {
    let data = values(g.batch * g.in_channels * g.in_h * g.in_w, 1);
    let kernel = values(g.out_channels * g.depth(), 2);
    let bias = values(bias_len, 3);
    let shape: &[usize] = if g.batch_axis {
        &[g.batch, g.in_channels, g.in_h, g.in_w]
    } else {
        &[g.in_channels, g.in_h, g.in_w]
    };
    let inputs = tvec!(
        Tensor::from_shape(shape, &data).unwrap().into_tvalue(),
        Tensor::from_shape(&[g.out_channels, g.in_channels, g.k_h, g.k_w], &kernel)
            .unwrap()
            .into_tvalue(),
        Tensor::from_shape(&[bias_len], &bias)
            .unwrap()
            .into_tvalue(),
    );
    let op = DenseConv::new(g);
    let got = op.eval_out_of_plan(inputs).unwrap().unwrap();
    assert_eq!(got[0].shape(), &g.output_shape()[..]);
    let view = got[0].try_as_plain_ram().unwrap();
    let got = view.as_slice::<f32>().unwrap();
    let want = reference_conv(&g, &data, &kernel, &bias);
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() < 1e-4, "{g:?}: value {i}: {a} vs {b}");
    }
}

fn geometry(size: usize, k: usize, stride: usize, pads: (usize, usize)) -> Dense {
    let out = |n: usize| (n + pads.0 + pads.1 - k) / stride + 1;
    Dense(ConvShape {
        batch: 2,
        batch_axis: true,
        in_channels: 3,
        out_channels: 5,
        groups: 1,
        in_h: size,
        in_w: size + 1,
        k_h: k,
        k_w: k,
        stride_h: stride,
        stride_w: stride,
        pad_top: pads.0,
        pad_left: pads.0,
        out_h: out(size),
        out_w: out(size + 1),
    })
}

#[test]
fn matches_the_definition_for_strides_kernels_and_paddings() {
    for (size, k, stride, pads) in [
        (9, 3, 1, (1, 1)),
        (9, 5, 1, (2, 2)),
        (10, 3, 2, (0, 1)),
        (11, 3, 2, (1, 1)),
        (12, 5, 2, (1, 2)),
        (7, 3, 1, (0, 0)),
        (8, 3, 3, (1, 1)),
        (8, 1, 2, (0, 0)),
        (6, 7, 2, (3, 3)),
        (3, 5, 1, (2, 2)),
    ] {
        check(geometry(size, k, stride, pads), 5);
    }
}

#[test]
fn a_batch_one_image_without_batch_axis_and_a_single_bias_work() {
    let mut g = geometry(10, 3, 2, (0, 1));
    g.0.batch = 1;
    g.0.batch_axis = false;
    check(g, 5);
    check(geometry(9, 3, 1, (1, 1)), 1);
}
