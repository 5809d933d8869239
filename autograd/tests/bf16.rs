//! bf16 storage through the public API: casts to and from it, matmul and the convolutions on
//! it (products summed in f32, each result rounded once), forward and backward, on the CPU and
//! on a CUDA device (the emulated one everywhere, GPU 0 when there is one; REQUIRE_GPU=1 makes
//! a missing GPU fail); and every other op refusing it with an error that names the op.
//!
//! The reference is the same computation in f32 on the values the bf16 path sees: the inputs
//! and the upstream gradient rounded to bf16 first. The two then differ only where their f32
//! sums, added in different orders, fall on either side of a rounding boundary: one bf16 step.

use autograd::{Conv2dOptions, ConvTranspose2dOptions, DType, Device, Mask, Tensor};
use half::bf16;

mod common;

use common::{leaf, values};

/// The CPU and the CUDA devices.
fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    devices.extend(common::cuda_devices());
    devices
}

/// `v` rounded to bf16 (through f32, as the engine rounds f64).
fn rounded_values(v: &[f64]) -> Vec<f64> {
    v.iter()
        .map(|&x| bf16::from_f32(x as f32).to_f64())
        .collect()
}

/// How close a bf16 result must be to f32's.
#[derive(Clone, Copy)]
enum Rounded {
    /// Made by one op, rounded once: each element within one bf16 step (2^-7 of it, and an
    /// absolute slack for sums of this many terms that nearly cancel).
    Once { terms: usize },
    /// A sum of rounded parts, rounded again (a broadcast operand's gradient, two gradients of
    /// one tensor): each part's rounding scales with the part, so the whole is held to 2^-7 in
    /// norm.
    Twice,
}

fn once(terms: usize) -> Rounded {
    Rounded::Once { terms }
}

fn assert_close(got: &Tensor, want: &Tensor, rounded: Rounded, what: &str) {
    assert_eq!(got.dtype(), DType::BF16, "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (got, want) = (got.to_vec_f64(), want.to_vec_f64());
    match rounded {
        Rounded::Once { terms } => {
            for (i, (g, w)) in got.iter().zip(rounded_values(&want)).enumerate() {
                let slack = w.abs() * 2f64.powi(-7) + 1e-6 * terms as f64;
                assert!(
                    (g - w).abs() <= slack,
                    "{what}: element {i} is {g}, f32's {w}"
                );
            }
        }
        Rounded::Twice => {
            let diff: f64 = got.iter().zip(&want).map(|(g, w)| (g - w).powi(2)).sum();
            let norm: f64 = want.iter().map(|w| w * w).sum();
            let err = (diff / norm).sqrt();
            assert!(err <= 2f64.powi(-7), "{what}: relative error {err}");
        }
    }
}

#[test]
fn casts_round_to_nearest_even_and_widen_exactly() {
    let mut x: Vec<f64> = vec![
        0.0,
        -0.0,
        1.0 + 2f64.powi(-8),       // a tie, kept part even: down to 1
        1.0 + 3.0 * 2f64.powi(-8), // a tie, kept part odd: up
        1e-40,                     // an f32 subnormal
        3.4e38,                    // past bf16's largest: inf
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    x.extend(values(997, 1).iter().map(|v| v * 1e3));
    for device in devices() {
        let t = Tensor::from_slice(&x, &[x.len()])
            .unwrap()
            .to_device(device)
            .unwrap();
        let b = t.to_dtype(DType::BF16).unwrap();
        assert_eq!(b.dtype(), DType::BF16);
        let want = rounded_values(&x);
        assert_eq!(b.to_vec_f64(), want, "f64 -> bf16 on {device}");
        let wide = b.to_dtype(DType::F32).unwrap().to_vec_f32();
        let want_f32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        assert_eq!(wide, want_f32, "bf16 -> f32 on {device}");
        // a strided view copied in bf16 keeps its values
        let m = b.narrow(0, 0, 1000).unwrap().reshape(&[40, 25]).unwrap();
        let mt = m.t().unwrap().contiguous().unwrap();
        let (mv, mtv) = (m.to_vec_f64(), mt.to_vec_f64());
        assert!((0..40).all(|i| (0..25).all(|j| mtv[j * 40 + i] == mv[i * 25 + j])));
        // NaN stays NaN
        let nan = Tensor::from_slice(&[f64::NAN], &[1])
            .unwrap()
            .to_device(device)
            .unwrap();
        assert!(nan.to_dtype(DType::BF16).unwrap().to_vec_f64()[0].is_nan());
        assert_eq!(
            Tensor::full_on(&[3], 0.1, DType::BF16, device)
                .unwrap()
                .to_vec_f64(),
            rounded_values(&[0.1; 3])
        );
    }
}

/// `f(inputs)` in bf16 and in f32 on the rounded inputs, with the loss sum(f · r) for a fixed r:
/// the output made by one op, each input's gradient as `grads` says.
fn check_against_f32(
    what: &str,
    shapes: &[&[usize]],
    (terms, grads): (usize, &[Rounded]),
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    for device in devices() {
        let data: Vec<Vec<f64>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| rounded_values(&values(s.iter().product(), 10 + i as u64)))
            .collect();
        let low: Vec<Tensor> = data
            .iter()
            .zip(shapes)
            .map(|(d, s)| leaf(d, s, DType::BF16, device))
            .collect();
        let wide: Vec<Tensor> = data
            .iter()
            .zip(shapes)
            .map(|(d, s)| leaf(d, s, DType::F32, device))
            .collect();
        let y = f(&low);
        let y32 = f(&wide);
        assert_close(&y, &y32, once(terms), &format!("{what} on {device}"));
        // the upstream gradient reaches the bf16 path rounded: give the f32 path the same
        let r = rounded_values(&values(y32.numel(), 99));
        let r = Tensor::from_slice(&r, y32.shape())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_device(device)
            .unwrap();
        let loss = y
            .to_dtype(DType::F32)
            .unwrap()
            .mul(&r)
            .unwrap()
            .sum_all()
            .unwrap();
        loss.backward().unwrap();
        y32.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, (l, w)) in low.iter().zip(&wide).enumerate() {
            let (gl, gw) = (l.grad().unwrap(), w.grad().unwrap());
            assert_eq!(gl.device(), device);
            let what = format!("{what}: gradient of input {i} on {device}");
            assert_close(&gl, &gw, grads[i], &what);
        }
    }
}

#[test]
fn matmul_and_its_gradients_in_bf16_match_f32() {
    check_against_f32(
        "matmul",
        &[&[37, 70], &[70, 45]],
        (70, &[once(45), once(37)]),
        |t| t[0].matmul(&t[1]).unwrap(),
    );
    // a transposed operand (a strided view) and a batch: the broadcast operand's gradient is
    // the sum over the batch of three rounded products, rounded again
    check_against_f32(
        "matmul of a transpose",
        &[&[3, 70, 37], &[45, 70]],
        (70, &[once(45), Rounded::Twice]),
        |t| {
            t[0].transpose(1, 2)
                .unwrap()
                .matmul(&t[1].t().unwrap())
                .unwrap()
        },
    );
    // one operand used twice: its two gradients are added (in f32, rounded once)
    check_against_f32("a x a^T", &[&[20, 33]], (33, &[Rounded::Twice]), |t| {
        t[0].matmul(&t[0].t().unwrap()).unwrap()
    });
}

#[test]
fn the_convolutions_and_their_gradients_in_bf16_match_f32() {
    let down = Conv2dOptions {
        stride: (2, 2),
        padding: (1, 1, 1, 1),
        ..Default::default()
    };
    check_against_f32(
        "conv2d 4x4 stride 2",
        &[&[3, 8, 14, 14], &[16, 8, 4, 4]],
        (8 * 16, &[once(16 * 16), once(3 * 7 * 7)]),
        |t| t[0].conv2d(&t[1], None, &down).unwrap(),
    );
    let same = Conv2dOptions {
        padding: (1, 1, 1, 1),
        ..Default::default()
    };
    check_against_f32(
        "masked conv2d B",
        &[&[2, 6, 9, 9], &[5, 6, 3, 3]],
        (6 * 9, &[once(5 * 9), once(2 * 81)]),
        |t| t[0].masked_conv2d(&t[1], None, Mask::B, &same).unwrap(),
    );
    let up = ConvTranspose2dOptions {
        stride: (2, 2),
        padding: (1, 1),
        ..Default::default()
    };
    check_against_f32(
        "conv_transpose2d 4x4 stride 2",
        &[&[2, 16, 7, 7], &[16, 8, 4, 4]],
        (16 * 16, &[once(8 * 16), once(2 * 14 * 14)]),
        |t| t[0].conv_transpose2d(&t[1], None, &up).unwrap(),
    );
}

#[test]
fn other_ops_refuse_bf16_naming_themselves() {
    for device in devices() {
        let x = Tensor::from_slice(&values(12, 3), &[3, 4])
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap()
            .to_device(device)
            .unwrap();
        let refused: [(&str, autograd::Result<Tensor>); 6] = [
            ("exp", x.exp()),
            ("add", x.add(&x)),
            ("sum", x.sum_all()),
            ("softmax", x.softmax(-1)),
            ("concat", Tensor::concat(&[x.clone(), x.clone()], 0)),
            // a bias is added after the convolution: the add refuses, not the convolution
            ("add", {
                let img = x.reshape(&[1, 1, 3, 4]).unwrap();
                let w = Tensor::full_on(&[2, 1, 1, 1], 0.5, DType::BF16, device).unwrap();
                let b = Tensor::full_on(&[2], 0.5, DType::BF16, device).unwrap();
                img.conv2d(&w, Some(&b), &Conv2dOptions::default())
            }),
        ];
        for (op, result) in refused {
            let e = result.expect_err(op).to_string();
            assert!(
                e.contains(op) && e.contains("bf16"),
                "{op} on {device}: {e}"
            );
        }
    }
}
