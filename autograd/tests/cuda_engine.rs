//! The engine on a CUDA device against the same computation on the CPU: values and gradients
//! through the public API, the model-facing path (`to_device`, ops, backward, Adam) with the
//! kernels of `kernels::cuda` underneath.
//!
//! Every test runs on the emulated CUDA device (the same .cu kernels and dispatch run on the
//! host: every machine, CI included) and on GPU 0 when there is one; REQUIRE_GPU=1 makes a
//! missing GPU fail them.

use autograd::optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig};
use autograd::{Conv2dOptions, ConvTranspose2dOptions, DType, Device, Mask, Tensor};

mod common;

use common::{leaf, values};

fn devices() -> Vec<Device> {
    common::cuda_devices()
}

/// Max |a - b| / max(1, max |b|).
fn distance(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| {
            if x.is_nan() || y.is_nan() {
                f64::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f64::max)
        / scale
}

/// Runs `f` on leaves made from `inputs` on the CPU and on `device`; compares the output and
/// every input's gradient of sum(output · weights).
fn check(
    what: &str,
    inputs: &[(&[f64], &[usize])],
    dtype: DType,
    tol: f64,
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    for device in devices() {
        let run = |on: Device| {
            let xs: Vec<Tensor> = inputs.iter().map(|(d, s)| leaf(d, s, dtype, on)).collect();
            let y = f(&xs);
            assert_eq!(y.device(), on, "{what}: the output is on {}", y.device());
            // a fixed, non-uniform upstream gradient
            let w = Tensor::from_slice(&values(y.numel(), 99), y.shape())
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .to_device(on)
                .unwrap();
            y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            let grads: Vec<Tensor> = xs
                .iter()
                .map(|x| x.grad().expect("every input gets a gradient"))
                .collect();
            (y, grads)
        };
        let (want, want_grads) = run(Device::Cpu);
        let (got, got_grads) = run(device);
        let d = distance(&got, &want);
        assert!(d <= tol, "{what} on {device}: output off by {d}");
        for (i, (g, w)) in got_grads.iter().zip(&want_grads).enumerate() {
            assert_eq!(
                g.device(),
                device,
                "{what}: gradient {i} is on {}",
                g.device()
            );
            let d = distance(g, w);
            assert!(d <= tol, "{what} on {device}: gradient {i} off by {d}");
        }
    }
}

#[test]
fn tensors_move_to_the_device_and_back_unchanged() {
    for device in devices() {
        for dtype in [DType::F32, DType::F64] {
            let data = values(37, 1);
            let x = Tensor::from_slice(&data, &[37])
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let on = x.to_device(device).unwrap();
            assert_eq!((on.device(), on.dtype()), (device, dtype));
            assert_eq!(on.to_vec_f64(), x.to_vec_f64());
            let back = on.to_device(Device::Cpu).unwrap();
            assert_eq!(back.device(), Device::Cpu);
            assert_eq!(back.to_vec_f64(), x.to_vec_f64());
            // a strided view comes back in its own order
            let m = Tensor::from_slice(&data[..36], &[6, 6])
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let view = m
                .to_device(device)
                .unwrap()
                .t()
                .unwrap()
                .narrow(0, 1, 3)
                .unwrap();
            let cpu_view = m.t().unwrap().narrow(0, 1, 3).unwrap();
            assert_eq!(view.to_vec_f64(), cpu_view.to_vec_f64());
            // constants are made on the device
            let z = Tensor::zeros(&[4], dtype).to_device(device).unwrap();
            assert_eq!(z.add_scalar(2.5).unwrap().to_vec_f64(), vec![2.5; 4]);
        }
    }
}

#[test]
fn operands_on_two_devices_are_an_error_naming_both() {
    for device in devices() {
        let a = Tensor::from_slice(&[1.0, 2.0], &[2]).unwrap();
        let b = a.to_device(device).unwrap();
        let e = a.add(&b).unwrap_err().to_string();
        assert!(e.contains("cpu") && e.contains(&device.to_string()), "{e}");
    }
}

#[test]
fn elementwise_ops_broadcasting_and_where_match_the_cpu() {
    let (x, y) = (values(12, 2), values(4, 3));
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        check(
            "elementwise",
            &[(&x, &[3, 4]), (&y, &[1, 4])],
            dtype,
            tol,
            |t| {
                let (x, y) = (&t[0], &t[1]);
                let a = x.relu().unwrap().mul(&y.sigmoid().unwrap()).unwrap();
                let b = x.tanh().unwrap().exp().unwrap().sub(y).unwrap();
                let c = x
                    .leaky_relu(0.2)
                    .unwrap()
                    .div(&y.square().unwrap().add_scalar(1.0).unwrap())
                    .unwrap();
                let mask = x.gt_scalar(0.0).unwrap();
                let w = Tensor::where_cond(&mask, &a, &b).unwrap();
                w.add(&c)
                    .unwrap()
                    .add(&x.t().unwrap().t().unwrap())
                    .unwrap()
            },
        );
    }
}

#[test]
fn reductions_and_softmax_match_the_cpu() {
    let x = values(2 * 3 * 5, 4);
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        check("sum over 0 and 2", &[(&x, &[2, 3, 5])], dtype, tol, |t| {
            t[0].sum(&[0, 2], false).unwrap()
        });
        check("max over 1", &[(&x, &[2, 3, 5])], dtype, tol, |t| {
            t[0].max(&[1], true).unwrap()
        });
        check(
            "mean of a permuted view",
            &[(&x, &[2, 3, 5])],
            dtype,
            tol,
            |t| t[0].permute(&[2, 0, 1]).unwrap().mean(&[1], false).unwrap(),
        );
        check("softmax", &[(&x, &[2, 3, 5])], dtype, tol, |t| {
            t[0].softmax(1).unwrap()
        });
        check("log_softmax", &[(&x, &[6, 5])], dtype, tol, |t| {
            t[0].log_softmax(-1).unwrap()
        });
    }
}

#[test]
fn matmuls_plain_transposed_and_batched_match_the_cpu() {
    let (a, b) = (values(2 * 5 * 7, 5), values(2 * 7 * 3, 6));
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        check(
            "matmul",
            &[(&a[..35], &[5, 7]), (&b[..21], &[7, 3])],
            dtype,
            tol,
            |t| t[0].matmul(&t[1]).unwrap(),
        );
        check(
            "matmul_t",
            &[(&a[..35], &[5, 7]), (&b[..21], &[3, 7])],
            dtype,
            tol,
            |t| t[0].matmul_t(&t[1]).unwrap(),
        );
        check(
            "batched",
            &[(&a, &[2, 5, 7]), (&b, &[2, 7, 3])],
            dtype,
            tol,
            |t| t[0].matmul(&t[1]).unwrap(),
        );
        check(
            "broadcast batch",
            &[(&a, &[2, 5, 7]), (&b[..21], &[7, 3])],
            dtype,
            tol,
            |t| t[0].matmul(&t[1]).unwrap(),
        );
    }
}

#[test]
fn convolutions_and_their_gradients_match_the_cpu() {
    let x = values(2 * 3 * 9 * 8, 7);
    let w = values(4 * 3 * 4 * 4, 8);
    let bias = values(4, 9);
    let opts = Conv2dOptions {
        stride: (2, 2),
        padding: (1, 1, 1, 1),
        ..Default::default()
    };
    let t_opts = ConvTranspose2dOptions {
        stride: (2, 2),
        padding: (1, 1),
        output_padding: (0, 0),
        dilation: (1, 1),
        groups: 1,
    };
    let wm = values(5 * 3 * 3 * 3, 10);
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        check(
            "conv2d stride 2",
            &[(&x, &[2, 3, 9, 8]), (&w, &[4, 3, 4, 4]), (&bias, &[4])],
            dtype,
            tol,
            |t| t[0].conv2d(&t[1], Some(&t[2]), &opts).unwrap(),
        );
        // [2, 4, 4, 4] through a [4, 3, 4, 4] kernel: the transposed convolution
        check(
            "conv_transpose2d",
            &[(&x[..128], &[2, 4, 4, 4]), (&w, &[4, 3, 4, 4])],
            dtype,
            tol,
            |t| t[0].conv_transpose2d(&t[1], None, &t_opts).unwrap(),
        );
        let same = Conv2dOptions {
            padding: (1, 1, 1, 1),
            ..Default::default()
        };
        for mask in [Mask::A, Mask::B] {
            check(
                "masked conv2d",
                &[(&x, &[2, 3, 9, 8]), (&wm, &[5, 3, 3, 3])],
                dtype,
                tol,
                |t| t[0].masked_conv2d(&t[1], None, mask, &same).unwrap(),
            );
        }
    }
}

#[test]
fn concat_casts_and_views_match_the_cpu() {
    let (a, b) = (values(2 * 3 * 4, 11), values(2 * 2 * 4, 12));
    check(
        "concat",
        &[(&a, &[2, 3, 4]), (&b, &[2, 2, 4])],
        DType::F64,
        1e-12,
        |t| {
            Tensor::concat(&[t[0].clone(), t[1].clone()], 1)
                .unwrap()
                .tanh()
                .unwrap()
        },
    );
    check(
        "to_dtype and back",
        &[(&a, &[2, 3, 4])],
        DType::F64,
        1e-6,
        |t| {
            t[0].to_dtype(DType::F32)
                .unwrap()
                .exp()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
        },
    );
    check("narrowed", &[(&a, &[2, 3, 4])], DType::F64, 1e-12, |t| {
        t[0].narrow(2, 1, 2).unwrap().sigmoid().unwrap()
    });
}

/// The optimizers the models use, by name.
fn optimizer(name: &str, params: &[Tensor]) -> Box<dyn Optimizer> {
    match name {
        "adam" => Box::new(Adam::new(params.to_vec(), AdamConfig::default()).unwrap()),
        "sgd" => Box::new(
            Sgd::new(
                params.to_vec(),
                SgdConfig {
                    lr: 0.05,
                    momentum: 0.9,
                    nesterov: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        _ => Box::new(
            RmsProp::new(
                params.to_vec(),
                RmsPropConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
    }
}

/// A two-layer MLP trained for a few steps on the device and on the CPU from the same weights
/// and data, by each optimizer: the losses and parameters stay together.
#[test]
fn a_few_optimizer_steps_of_an_mlp_agree_with_the_cpu() {
    let (n, d, h) = (16, 10, 8);
    let x = values(n * d, 13);
    let target = values(n, 14);
    let w1 = values(d * h, 15);
    let w2 = values(h, 16);
    let data = |v: &[f64], shape: &[usize], on: Device| {
        Tensor::from_slice(v, shape)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_device(on)
            .unwrap()
    };
    for device in devices() {
        for name in ["adam", "sgd", "rmsprop"] {
            let train = |on: Device| {
                let params = [
                    leaf(&w1, &[d, h], DType::F32, on),
                    leaf(&vec![0.0; h], &[h], DType::F32, on),
                    leaf(&w2, &[h, 1], DType::F32, on),
                ];
                let mut opt = optimizer(name, &params);
                let (x, y) = (data(&x, &[n, d], on), data(&target, &[n, 1], on));
                let mut losses = Vec::new();
                for _ in 0..5 {
                    let hidden = x.matmul(&params[0]).unwrap().add(&params[1]).unwrap();
                    let out = hidden.relu().unwrap().matmul(&params[2]).unwrap();
                    let loss = out.sub(&y).unwrap().square().unwrap().mean_all().unwrap();
                    losses.push(loss.item().unwrap());
                    opt.minimize(&loss).unwrap();
                }
                (params, losses)
            };
            let (want, want_losses) = train(Device::Cpu);
            let (got, got_losses) = train(device);
            assert!(want_losses[4] < want_losses[0], "{name}: {want_losses:?}");
            for (g, w) in got_losses.iter().zip(&want_losses) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{name}: {got_losses:?} vs {want_losses:?}"
                );
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.device(), device);
                let dist = distance(g, w);
                assert!(
                    dist <= 1e-5,
                    "{name}: parameter {i} on {device} off by {dist}"
                );
            }
        }
    }
}

#[test]
fn index_ops_and_the_lstm_cell_match_the_cpu() {
    let x = values(4 * 6 * 3, 17);
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        // repeats, so the backward's index_add adds several rows into one
        check("index_select", &[(&x, &[4, 6, 3])], dtype, tol, |t| {
            t[0].index_select(1, &[5, 0, 5, 2]).unwrap()
        });
        check("gather", &[(&x, &[4, 6, 3])], dtype, tol, |t| {
            let index: Vec<usize> = (0..4 * 2 * 3).map(|p| (p * 7) % 6).collect();
            let index = autograd::Indices::new(index, &[4, 2, 3]).unwrap();
            t[0].gather(1, &index).unwrap()
        });
        let (gates, c) = (values(3 * 4 * 5, 18), values(3 * 5, 19));
        check(
            "lstm cell",
            &[(&gates, &[3, 20]), (&c, &[3, 5])],
            dtype,
            tol,
            |t| Tensor::lstm_cell_fused(&t[0], &t[1]).unwrap(),
        );
    }
}

#[test]
fn batch_and_instance_norm_in_training_match_the_cpu() {
    use autograd::nn::{BatchNorm1d, BatchNorm2d, InstanceNorm2d};
    let (x, w, b) = (values(4 * 3 * 5 * 2, 21), values(3, 22), values(3, 23));
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        let inputs = [(&x[..], &[4, 3, 5, 2][..]), (&w, &[3]), (&b, &[3])];
        check("batch_norm2d", &inputs, dtype, tol, |t| {
            let mut bn = BatchNorm2d::new(3, dtype).unwrap();
            (bn.weight, bn.bias) = (t[1].clone(), t[2].clone());
            bn.forward(&t[0]).unwrap()
        });
        check("instance_norm2d", &inputs, dtype, tol, |t| {
            let mut norm = InstanceNorm2d::with_options(3, 1e-5, 0.1, true, false, dtype).unwrap();
            (norm.weight, norm.bias) = (Some(t[1].clone()), Some(t[2].clone()));
            norm.forward(&t[0]).unwrap()
        });
        let inputs = [(&x[..12], &[4, 3][..]), (&w, &[3]), (&b, &[3])];
        check("batch_norm1d", &inputs, dtype, tol, |t| {
            let mut bn = BatchNorm1d::new(3, dtype).unwrap();
            (bn.weight, bn.bias) = (t[1].clone(), t[2].clone());
            bn.forward(&t[0]).unwrap()
        });
    }
}

#[test]
fn the_fused_softmax_cross_entropy_matches_the_cpu() {
    use autograd::nn::loss::softmax_cross_entropy;
    let x = values(3 * 5 * 4, 24);
    let targets: Vec<usize> = (0..3 * 4).map(|p| (p * 3 + 1) % 5).collect();
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        check(
            "softmax_cross_entropy",
            &[(&x, &[3, 5, 4])],
            dtype,
            tol,
            |t| softmax_cross_entropy(&t[0], 1, &targets).unwrap(),
        );
    }
}

#[test]
fn pooling_upsampling_and_padding_match_the_cpu() {
    let x = values(2 * 3 * 7 * 9, 27);
    let shape: &[usize] = &[2, 3, 7, 9];
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        let one = |what: &str, f: &dyn Fn(&Tensor) -> Tensor| {
            check(what, &[(&x, shape)], dtype, tol, |t| f(&t[0]));
        };
        one("max_pool2d", &|t| {
            t.max_pool2d((3, 2), (2, 2), (1, 0), (1, 1)).unwrap()
        });
        one("avg_pool2d", &|t| {
            t.avg_pool2d((2, 3), (2, 1), (1, 1), false).unwrap()
        });
        one("upsample_nearest2d", &|t| t.upsample_nearest2d(2).unwrap());
        one("upsample_bilinear2d", &|t| {
            t.upsample_bilinear2d(2, false).unwrap()
        });
        one("pad2d", &|t| t.pad2d((1, 2, 0, 3)).unwrap());
        one("pad2d_reflect", &|t| t.pad2d_reflect((2, 1, 3, 0)).unwrap());
    }
}

#[test]
fn the_fused_bce_with_logits_matches_the_cpu_and_stays_on_the_device() {
    use autograd::nn::loss::{bce_with_logits, Reduction};
    let x: Vec<f64> = values(7 * 33, 25).iter().map(|v| 6.0 * v).collect();
    let t: Vec<f64> = values(7 * 33, 26).iter().map(|v| (v + 1.0) / 2.0).collect();
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        for reduction in [Reduction::Sum, Reduction::Mean] {
            // the targets through a transposed view, so the kernel reads them strided
            check(
                &format!("bce_with_logits {reduction:?}"),
                &[(&x, &[7, 33]), (&t, &[33, 7])],
                dtype,
                tol,
                |a| {
                    let y = bce_with_logits(&a[0], &a[1].t().unwrap(), reduction).unwrap();
                    assert_eq!(y.shape(), &[] as &[usize]);
                    y
                },
            );
        }
    }
}

#[test]
fn the_pixelrnn_grid_recurrence_matches_the_cpu() {
    // [B, R, C, 4H] gates into a Row LSTM (3 taps) and a Diagonal BiLSTM sweep (2 taps)
    let (b, r, c, h) = (2, 4, 5, 3);
    let pre = values(b * r * c * 4 * h, 20);
    for (sweep, taps) in [
        (autograd::Sweep::Rows, 3),
        (autograd::Sweep::DiagonalLeft, 2),
        (autograd::Sweep::DiagonalRight, 2),
    ] {
        let w = values(taps * h * 4 * h, 21);
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            check(
                "grid_lstm",
                &[(&pre, &[b, r, c, 4 * h]), (&w, &[taps * h, 4 * h])],
                dtype,
                tol,
                |t| Tensor::grid_lstm(&t[0], &t[1], sweep).unwrap(),
            );
        }
    }
}

#[test]
fn the_lstm_over_a_sequence_matches_the_cpu() {
    use autograd::nn::{Lstm, LstmCell};
    let (steps, batch, input, hidden) = (4, 3, 5, 6);
    let x = values(steps * batch * input, 22);
    let (w_ih, w_hh) = (
        values(4 * hidden * input, 23),
        values(4 * hidden * hidden, 24),
    );
    let (b_ih, b_hh) = (values(4 * hidden, 25), values(4 * hidden, 26));
    let (h0, c0) = (values(batch * hidden, 27), values(batch * hidden, 28));
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        check(
            "lstm sequence",
            &[
                (&x, &[steps, batch, input]),
                (&w_ih, &[4 * hidden, input]),
                (&w_hh, &[4 * hidden, hidden]),
                (&b_ih, &[4 * hidden]),
                (&b_hh, &[4 * hidden]),
                (&h0, &[1, batch, hidden]),
                (&c0, &[1, batch, hidden]),
            ],
            dtype,
            tol,
            |t| {
                let lstm = Lstm {
                    cell: LstmCell {
                        weight_ih: t[1].clone(),
                        weight_hh: t[2].clone(),
                        bias_ih: Some(t[3].clone()),
                        bias_hh: Some(t[4].clone()),
                    },
                };
                let (y, (h, c)) = lstm.forward(&t[0], Some((&t[5], &t[6]))).unwrap();
                Tensor::concat(&[y, h, c], 0).unwrap()
            },
        );
    }
}
