//! conv2d, conv_transpose2d and masked_conv2d against finite differences (f64), with proptest
//! drawing kernel sizes, strides, per-side paddings, dilations, output_padding, groups and odd
//! image sizes; second-order checks; and the autoregressive property of masked convolutions.

use autograd::{grad, Conv2dOptions, ConvTranspose2dOptions, DType, Mask, Result, Tensor};
use proptest::prelude::*;
use tests::{cases, fixed_weights, gradcheck, gradgradcheck, Input, Tolerance};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    }
}

#[derive(Clone, Debug)]
struct ConvCase {
    n: usize,
    groups: usize,
    cin_per_group: usize,
    cout_per_group: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    opts: Conv2dOptions,
    bias: bool,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1..=2usize,
        1..=2usize,
        1..=2usize,
        1..=3usize,
        1..=3usize,
        1..=3usize,
        1..=2usize,
        1..=2usize,
        (0..=2usize, 0..=2usize, 0..=2usize, 0..=2usize),
        1..=2usize,
        any::<bool>(),
    )
        .prop_flat_map(
            |(n, groups, cig, cog, kh, kw, stride, dilation, pad, extra, bias)| {
                // image at least as large as the dilated kernel, sometimes odd
                let min_h = dilation * (kh - 1) + 1;
                let min_w = dilation * (kw - 1) + 1;
                (min_h..min_h + 4, min_w..min_w + 4).prop_map(move |(h, w)| ConvCase {
                    n,
                    groups,
                    cin_per_group: cig,
                    cout_per_group: cog,
                    h: h + extra - 1,
                    w,
                    kh,
                    kw,
                    opts: Conv2dOptions {
                        stride: (stride, stride + extra - 1),
                        padding: pad,
                        dilation: (dilation, dilation),
                        groups,
                    },
                    bias,
                })
            },
        )
}

fn conv_inputs(c: &ConvCase, seed: u64) -> Vec<Input> {
    let cin = c.groups * c.cin_per_group;
    let cout = c.groups * c.cout_per_group;
    let mut inputs = vec![
        Input::new(
            fixed_weights(c.n * cin * c.h * c.w, seed),
            &[c.n, cin, c.h, c.w],
        ),
        Input::new(
            fixed_weights(cout * c.cin_per_group * c.kh * c.kw, seed + 1),
            &[cout, c.cin_per_group, c.kh, c.kw],
        ),
    ];
    if c.bias {
        inputs.push(Input::new(fixed_weights(cout, seed + 2), &[cout]));
    }
    inputs
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conv2d(c in conv_case(), seed in any::<u64>()) {
        let f = |xs: &[Tensor]| xs[0].conv2d(&xs[1], xs.get(2), &c.opts);
        prop_assert_eq!(gradcheck(f, &conv_inputs(&c, seed), Tolerance::default()), Ok(()));
    }

    #[test]
    fn masked_conv2d(c in conv_case(), mask_a in any::<bool>(), seed in any::<u64>()) {
        let mask = if mask_a { Mask::A } else { Mask::B };
        let f = |xs: &[Tensor]| xs[0].masked_conv2d(&xs[1], xs.get(2), mask, &c.opts);
        prop_assert_eq!(gradcheck(f, &conv_inputs(&c, seed), Tolerance::default()), Ok(()));
    }

    #[test]
    fn conv_transpose2d(
        (n, groups, cig, cog, h, w, k, stride, pad, dilation, out_pad, bias) in
            (1..=2usize, 1..=2usize, 1..=2usize, 1..=2usize, 1..=4usize, 1..=4usize, 1..=4usize, 1..=3usize, 0..=2usize, 1..=2usize, 0..=2usize, any::<bool>()),
        seed in any::<u64>(),
    ) {
        let out_pad = out_pad % stride.max(dilation);
        let pad = pad.min((dilation * (k - 1) + out_pad) / 2); // keep the output non-empty
        let opts = ConvTranspose2dOptions { stride: (stride, stride), padding: (pad, pad), output_padding: (out_pad, out_pad), dilation: (dilation, dilation), groups };
        let (cin, cout) = (groups * cig, groups * cog);
        let mut inputs = vec![
            Input::new(fixed_weights(n * cin * h * w, seed), &[n, cin, h, w]),
            Input::new(fixed_weights(cin * cog * k * k, seed + 1), &[cin, cog, k, k]),
        ];
        if bias {
            inputs.push(Input::new(fixed_weights(cout, seed + 2), &[cout]));
        }
        let f = |xs: &[Tensor]| xs[0].conv_transpose2d(&xs[1], xs.get(2), &opts);
        prop_assert_eq!(gradcheck(f, &inputs, Tolerance::default()), Ok(()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4 + 1, ..ProptestConfig::default() })]

    /// Gradients of gradients through conv2d and conv_transpose2d (WGAN-GP on a DCGAN critic).
    #[test]
    fn second_order(c in conv_case(), seed in any::<u64>()) {
        let f = |xs: &[Tensor]| xs[0].conv2d(&xs[1], xs.get(2), &c.opts)?.tanh();
        prop_assert_eq!(gradgradcheck(f, &conv_inputs(&c, seed), Tolerance { rel: 1e-5, abs: 1e-6, step: 1e-5 }), Ok(()));
        let t = ConvTranspose2dOptions::default().stride(c.opts.stride.0).groups(c.groups);
        let cin = c.groups * c.cin_per_group;
        let inputs = [
            Input::new(fixed_weights(c.n * cin * 3 * 2, seed), &[c.n, cin, 3, 2]),
            Input::new(fixed_weights(cin * c.cout_per_group * c.kh * c.kw, seed + 1), &[cin, c.cout_per_group, c.kh, c.kw]),
        ];
        let f = |xs: &[Tensor]| xs[0].conv_transpose2d(&xs[1], None, &t)?.tanh();
        prop_assert_eq!(gradgradcheck(f, &inputs, Tolerance { rel: 1e-5, abs: 1e-6, step: 1e-5 }), Ok(()));
    }
}

/// d out[pixel] / d x for every input pixel, for a single-channel image of size h x w.
fn dependence(f: &dyn Fn(&Tensor) -> Result<Tensor>, h: usize, w: usize, pixel: usize) -> Vec<f64> {
    let x = Tensor::from_vec(fixed_weights(h * w, 9), &[1, 1, h, w])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = f(&x).unwrap();
    let c = y.shape()[1];
    // sum the output channels at this pixel
    let pick = Tensor::from_vec(
        (0..c * h * w)
            .map(|i| if i % (h * w) == pixel { 1.0 } else { 0.0 })
            .collect::<Vec<f64>>(),
        &[1, c, h, w],
    )
    .unwrap();
    let target = y.mul(&pick).unwrap().sum_all().unwrap();
    grad(&[target], &[], &[x], false).unwrap()[0]
        .clone()
        .map(|g| g.to_vec_f64())
        .unwrap_or(vec![0.0; h * w])
}

fn weights(shape: &[usize], seed: u64) -> Tensor {
    // all-positive weights so that no dependence cancels by accident
    let v: Vec<f64> = fixed_weights(shape.iter().product(), seed)
        .iter()
        .map(|w| w.abs() + 0.1)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn masked_convolutions_are_autoregressive_in_raster_order() {
    let (h, w) = (5, 6);
    let w_a = weights(&[3, 1, 5, 5], 1);
    let w_b = weights(&[3, 3, 3, 3], 2);
    let w_b_col = weights(&[2, 3, 3, 1], 3); // a k x 1 kernel, as PixelRNN's input-to-state
    let a = |x: &Tensor| x.masked_conv2d(&w_a, None, Mask::A, &Conv2dOptions::default().padding(2));
    let b_only = |x: &Tensor| {
        x.masked_conv2d(
            &weights(&[3, 1, 3, 3], 4),
            None,
            Mask::B,
            &Conv2dOptions::default().padding(1),
        )
    };
    let a_then_b = |x: &Tensor| {
        a(x)?
            .tanh()?
            .masked_conv2d(&w_b, None, Mask::B, &Conv2dOptions::default().padding(1))
    };
    let a_b_col = |x: &Tensor| {
        a_then_b(x)?.tanh()?.masked_conv2d(
            &w_b_col,
            None,
            Mask::B,
            &Conv2dOptions::default().padding_sides(1, 1, 0, 0),
        )
    };
    for pixel in 0..h * w {
        for (name, f, may_see_self) in [
            ("mask A", &a as &dyn Fn(&Tensor) -> Result<Tensor>, false),
            ("mask B", &b_only, true),
            ("A then B", &a_then_b, false),
            ("A, B, then B (3x1)", &a_b_col, false),
        ] {
            let d = dependence(f, h, w, pixel);
            for (q, &v) in d.iter().enumerate() {
                let allowed = q < pixel || (q == pixel && may_see_self);
                assert!(
                    allowed || v == 0.0,
                    "{name}: output pixel {pixel} depends on input pixel {q} ({v})"
                );
            }
            // and the layers do see the past: the pixel to the left and the one above
            if pixel % w > 0 {
                assert!(
                    d[pixel - 1] != 0.0,
                    "{name}: output pixel {pixel} ignores its left neighbour"
                );
            }
            if pixel >= w {
                assert!(
                    d[pixel - w] != 0.0,
                    "{name}: output pixel {pixel} ignores the pixel above"
                );
            }
        }
    }
}

#[test]
fn masked_taps_get_zero_weight_gradient_and_do_not_change_the_output() {
    let x = Tensor::from_vec(fixed_weights(2 * 2 * 5 * 5, 3), &[2, 2, 5, 5]).unwrap();
    let w = Tensor::from_vec(fixed_weights(4 * 2 * 3 * 3, 4), &[4, 2, 3, 3])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = x
        .masked_conv2d(&w, None, Mask::A, &Conv2dOptions::default().padding(1))
        .unwrap();
    y.sum_all().unwrap().backward().unwrap();
    let g = w.grad().unwrap().to_vec_f64();
    let taps = autograd::mask_taps(3, 3, Some(Mask::A));
    for (i, v) in g.iter().enumerate() {
        let (r, c) = ((i % 9) / 3, i % 3);
        assert_eq!(
            *v == 0.0,
            !taps.contains(&(r, c)),
            "tap ({r}, {c}) gradient {v}"
        );
    }
    // the masked taps' values are never read
    let mut changed = w.to_vec_f64();
    for (i, v) in changed.iter_mut().enumerate() {
        if !taps.contains(&((i % 9) / 3, i % 3)) {
            *v = 1e6;
        }
    }
    let w2 = Tensor::from_vec(changed, &[4, 2, 3, 3]).unwrap();
    let y2 = x
        .masked_conv2d(&w2, None, Mask::A, &Conv2dOptions::default().padding(1))
        .unwrap();
    assert_eq!(y.to_vec_f64(), y2.to_vec_f64());
    // and it equals a plain convolution with the masked taps zeroed
    let mut zeroed = w.to_vec_f64();
    for (i, v) in zeroed.iter_mut().enumerate() {
        if !taps.contains(&((i % 9) / 3, i % 3)) {
            *v = 0.0;
        }
    }
    let y3 = x
        .conv2d(
            &Tensor::from_vec(zeroed, &[4, 2, 3, 3]).unwrap(),
            None,
            &Conv2dOptions::default().padding(1),
        )
        .unwrap();
    let diff = y
        .sub(&y3)
        .unwrap()
        .abs()
        .unwrap()
        .max(&[], false)
        .unwrap()
        .item()
        .unwrap();
    assert!(diff < 1e-12, "{diff}");
    let _ = DType::F64;
}
