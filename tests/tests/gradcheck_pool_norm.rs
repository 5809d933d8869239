//! Padding, upsampling, pooling and the 2-D normalisation layers against central finite
//! differences in f64, with proptest drawing odd image sizes, kernel sizes, strides, paddings,
//! dilations and factors, and (half the time) a non-contiguous input: the leaf is stored with H
//! and W swapped and the op sees its transpose. 32 cases per test unless PROPTEST_CASES says
//! otherwise. Max pooling draws tie-free inputs so that no window sits on a kink.
//!
//! Second order: every op here is built from differentiable Tensor ops, so gradients of
//! gradients must also match; BatchNorm2d in training and the pooling / bilinear ops (each
//! followed by tanh, so that their backward receives an input-dependent gradient) are checked.

use autograd::nn::{BatchNorm2d, InstanceNorm2d, Module};
use autograd::{DType, Result, Tensor};
use proptest::prelude::*;
use tests::strategies::{distinct, input, stored, view};
use tests::{cases, gradcheck, gradgradcheck, Input, Tolerance};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    }
}

/// Second-order checks difference a gradient: a larger step and absolute tolerance (as in
/// second_order.rs).
fn tol2() -> Tolerance {
    Tolerance {
        rel: 1e-5,
        abs: 1e-6,
        step: 1e-5,
    }
}

/// An image shape: [N, C, H, W] with N, C in 1..=2 (or [C, H, W] when `chw`), H and W drawn from
/// the given ranges.
fn image(
    h: std::ops::RangeInclusive<usize>,
    w: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Vec<usize>> {
    (1..=2usize, 1..=2usize, h, w, any::<bool>()).prop_map(|(n, c, h, w, chw)| {
        if chw {
            vec![c, h, w]
        } else {
            vec![n, c, h, w]
        }
    })
}

/// gradcheck of a one-input op, optionally seeing its input through a transposed (H <-> W) view.
fn check(
    x: &Input,
    t: bool,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    gradcheck(
        |xs| f(&view(&xs[0], t)?),
        &[stored(x, t)],
        Tolerance::default(),
    )
}

/// gradgradcheck of `f` and of `tanh(f)`.
fn check_second(
    x: &Input,
    t: bool,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    gradgradcheck(|xs| f(&view(&xs[0], t)?), &[stored(x, t)], tol2())?;
    gradgradcheck(|xs| f(&view(&xs[0], t)?)?.tanh(), &[stored(x, t)], tol2())
}

/// A pooling window along one axis: (kernel, stride, padding <= kernel / 2, dilation), and an
/// axis size (odd and even) that the dilated window fits into.
fn window(max_dilation: usize) -> impl Strategy<Value = (usize, usize, usize, usize, usize)> {
    (1..=3usize, 1..=3usize, 1..=max_dilation).prop_flat_map(|(k, s, d)| {
        let span = d * (k - 1) + 1;
        (Just(k), Just(s), 0..=k / 2, Just(d), span..=span + 4)
    })
}

/// An image whose (H, W) fit the two windows, with values from `values`.
fn pooled_input<S: Strategy<Value = Input>>(
    wh: (usize, usize, usize, usize, usize),
    ww: (usize, usize, usize, usize, usize),
    values: impl Fn(Vec<usize>) -> S,
) -> impl Strategy<Value = Input> {
    image(wh.4..=wh.4, ww.4..=ww.4).prop_flat_map(values)
}

/// Inputs for a norm layer: x [N, C, H, W] with at least `min_nhw` values per channel and
/// `min_hw` per plane, plus per-channel weight and bias.
fn norm_inputs(min_nhw: usize, min_hw: usize) -> impl Strategy<Value = (Input, Input, Input)> {
    (1..=3usize, 1..=3usize, 1..=4usize, 1..=4usize)
        .prop_filter("enough values per statistic", move |(n, _, h, w)| {
            n * h * w >= min_nhw && h * w >= min_hw
        })
        .prop_flat_map(|(n, c, h, w)| {
            (
                input(Just(vec![n, c, h, w]), -2.0, 2.0),
                input(Just(vec![c]), 0.5, 1.5),
                input(Just(vec![c]), -1.0, 1.0),
            )
        })
}

/// BatchNorm2d in training mode with the given input, weight and bias.
fn batch_norm_train(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let mut bn = BatchNorm2d::new(w.shape()[0], DType::F64)?;
    bn.weight = w.clone();
    bn.bias = b.clone();
    bn.forward(x)
}

proptest! {
    #![proptest_config(config())]

    // ----- padding -----------------------------------------------------------------------------

    #[test]
    fn zero_padding(x in input(image(1..=5, 1..=5), -2.0, 2.0), pads in (0..=3usize, 0..=3usize, 0..=3usize, 0..=3usize), t in any::<bool>()) {
        prop_assert_eq!(check(&x, t, |v| v.pad2d(pads)), Ok(()));
    }

    #[test]
    fn reflection_padding((x, pads) in image(1..=6, 1..=6).prop_flat_map(|s| {
        let r = s.len();
        let (h, w) = (s[r - 2], s[r - 1]);
        (input(Just(s), -2.0, 2.0), (0..w, 0..w, 0..h, 0..h))
    }), t in any::<bool>()) {
        prop_assert_eq!(check(&x, t, |v| v.pad2d_reflect(pads)?.square()), Ok(()));
    }

    // ----- upsampling --------------------------------------------------------------------------

    #[test]
    fn upsample_nearest(x in input(image(1..=4, 1..=5), -2.0, 2.0), factor in 1..=3usize, t in any::<bool>()) {
        prop_assert_eq!(check(&x, t, |v| v.upsample_nearest2d(factor)), Ok(()));
    }

    #[test]
    fn upsample_bilinear(x in input(image(1..=4, 1..=5), -2.0, 2.0), factor in 1..=3usize, align in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(check(&x, t, |v| v.upsample_bilinear2d(factor, align)), Ok(()));
    }

    // ----- pooling -----------------------------------------------------------------------------

    #[test]
    fn avg_pool((wh, ww, x) in (window(1), window(1)).prop_flat_map(|(wh, ww)| {
        (Just(wh), Just(ww), pooled_input(wh, ww, |s| input(Just(s), -2.0, 2.0)))
    }), include in any::<bool>(), t in any::<bool>()) {
        let r = check(&x, t, |v| v.avg_pool2d((wh.0, ww.0), (wh.1, ww.1), (wh.2, ww.2), include));
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn max_pool((wh, ww, x) in (window(2), window(2)).prop_flat_map(|(wh, ww)| {
        (Just(wh), Just(ww), pooled_input(wh, ww, |s| distinct(Just(s))))
    }), t in any::<bool>()) {
        let r = check(&x, t, |v| v.max_pool2d((wh.0, ww.0), (wh.1, ww.1), (wh.2, ww.2), (wh.3, ww.3)));
        prop_assert_eq!(r, Ok(()));
    }

    // ----- normalisation -----------------------------------------------------------------------

    #[test]
    fn batch_norm_2d_train((x, w, b) in norm_inputs(2, 1), t in any::<bool>()) {
        let r = gradcheck(
            |xs| batch_norm_train(&view(&xs[0], t)?, &xs[1], &xs[2]),
            &[stored(&x, t), w, b],
            Tolerance::default(),
        );
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn batch_norm_2d_eval((x, w, b) in norm_inputs(1, 1), stats in (prop::collection::vec(-1.0..1.0f64, 3), prop::collection::vec(0.5..2.0f64, 3))) {
        let c = w.shape[0];
        let r = gradcheck(
            |xs| {
                let mut bn = BatchNorm2d::new(c, DType::F64)?;
                bn.running_mean.copy_from(&Tensor::from_slice(&stats.0[..c], &[c])?)?;
                bn.running_var.copy_from(&Tensor::from_slice(&stats.1[..c], &[c])?)?;
                bn.weight = xs[1].clone();
                bn.bias = xs[2].clone();
                bn.eval();
                bn.forward(&xs[0])
            },
            &[x, w, b],
            Tolerance::default(),
        );
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn instance_norm_2d_train((x, w, b) in norm_inputs(2, 2), affine in any::<bool>(), track in any::<bool>(), t in any::<bool>()) {
        let c = w.shape[0];
        let r = if affine {
            gradcheck(
                |xs| {
                    let mut norm = InstanceNorm2d::with_options(c, 1e-5, 0.1, true, track, DType::F64)?;
                    norm.weight = Some(xs[1].clone());
                    norm.bias = Some(xs[2].clone());
                    norm.forward(&view(&xs[0], t)?)
                },
                &[stored(&x, t), w, b],
                Tolerance::default(),
            )
        } else {
            check(&x, t, |v| InstanceNorm2d::with_options(c, 1e-5, 0.1, false, track, DType::F64)?.forward(v))
        };
        prop_assert_eq!(r, Ok(()));
    }
}

proptest! {
    #![proptest_config(config())]

    // ----- second order ------------------------------------------------------------------------

    #[test]
    fn batch_norm_2d_train_second_order((x, w, b) in norm_inputs(3, 1), t in any::<bool>()) {
        let r = gradgradcheck(
            |xs| batch_norm_train(&view(&xs[0], t)?, &xs[1], &xs[2])?.tanh(),
            &[stored(&x, t), w, b],
            tol2(),
        );
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn pooling_second_order((wh, ww, x) in (window(2), window(2)).prop_flat_map(|(wh, ww)| {
        (Just(wh), Just(ww), pooled_input(wh, ww, |s| distinct(Just(s))))
    })) {
        // distinct values are spread out: scale them into tanh's curved range
        let x = Input::new(x.data.iter().map(|v| v * 0.05).collect(), &x.shape);
        let r = check_second(&x, false, |v| v.max_pool2d((wh.0, ww.0), (wh.1, ww.1), (wh.2, ww.2), (wh.3, ww.3)));
        prop_assert_eq!(r, Ok(()));
        let (kh, kw) = (wh.0, ww.0);
        if wh.3 == 1 && ww.3 == 1 {
            let r = check_second(&x, false, |v| v.avg_pool2d((kh, kw), (wh.1, ww.1), (wh.2, ww.2), true));
            prop_assert_eq!(r, Ok(()));
        }
    }

    #[test]
    fn tiling_windows_and_nearest_upsampling_second_order((kh, kw, x) in (1..=3usize, 1..=3usize).prop_flat_map(|(kh, kw)| {
        let tiled = image(1..=3, 1..=3).prop_map(move |mut s| {
            let r = s.len();
            s[r - 2] *= kh;
            s[r - 1] *= kw;
            s
        });
        (Just(kh), Just(kw), input(tiled, -1.5, 1.5))
    }), t in any::<bool>()) {
        // stride = kernel and no padding: average pooling as a sum over blocks, whose backward
        // is the broadcast nearest upsampling is built from
        prop_assert_eq!(check(&x, t, |v| v.avg_pool2d((kh, kw), (kh, kw), (0, 0), true)), Ok(()));
        prop_assert_eq!(check_second(&x, t, |v| v.avg_pool2d((kh, kw), (kh, kw), (0, 0), false)), Ok(()));
        prop_assert_eq!(check_second(&x, t, |v| v.upsample_nearest2d(kw)), Ok(()));
    }

    #[test]
    fn upsample_and_pad_second_order(x in input(image(2..=4, 2..=4), -1.5, 1.5), factor in 1..=3usize, align in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(check_second(&x, t, |v| v.upsample_bilinear2d(factor, align)), Ok(()));
        prop_assert_eq!(check_second(&x, t, |v| v.pad2d_reflect((1, 0, 0, 1))?.pad2d((0, 1, 1, 0))), Ok(()));
    }
}

#[test]
fn layers_have_pytorch_state_names() {
    let bn = BatchNorm2d::new(3, DType::F32).unwrap();
    let names: Vec<String> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
    let plain = InstanceNorm2d::new(3, DType::F32).unwrap();
    assert!(plain.state_dict().is_empty());
}
