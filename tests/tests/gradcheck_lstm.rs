//! The LSTM against central finite differences in f64: the fused pointwise op (first and
//! second order), the cell with all its parameters, and a short sequence; plus a check that the
//! fused-kernel backward and the Tensor-op (create_graph) backward agree.

use autograd::nn::{Lstm, LstmCell, Module};
use autograd::{grad, DType, Result, Rng, Tensor};
use proptest::prelude::*;
use tests::strategies::{stored, values, view};
use tests::{cases, gradcheck, gradgradcheck, Input, Tolerance};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    }
}

/// An input of `shape` with values in [lo, hi].
fn input(shape: Vec<usize>, lo: f64, hi: f64) -> impl Strategy<Value = Input> {
    let n = shape.iter().product();
    values(n, lo, hi).prop_map(move |d| Input::new(d, &shape))
}

/// (gates [B, 4H], c_prev [B, H]) for random B, H.
fn pointwise_inputs() -> impl Strategy<Value = (Input, Input)> {
    (1..4usize, 1..5usize).prop_flat_map(|(b, h)| {
        (
            input(vec![b, 4 * h], -2.5, 2.5),
            input(vec![b, h], -2.0, 2.0),
        )
    })
}

/// h' and c' side by side (the harness weights every element of its output with its own
/// random weight, so both outputs get upstream gradients), computed through the two views.
fn both(h: Tensor, c: Tensor) -> Result<Tensor> {
    Tensor::concat(&[h, c], 1)
}

/// The cell as (x, h, c, weight_ih, weight_hh, bias_ih, bias_hh) inputs.
fn cell_of(xs: &[Tensor]) -> LstmCell {
    LstmCell {
        weight_ih: xs[3].clone(),
        weight_hh: xs[4].clone(),
        bias_ih: Some(xs[5].clone()),
        bias_hh: Some(xs[6].clone()),
    }
}

fn cell_inputs(b: usize, i: usize, h: usize) -> impl Strategy<Value = Vec<Input>> {
    let g = 4 * h;
    (
        input(vec![b, i], -1.5, 1.5),
        input(vec![b, h], -1.0, 1.0),
        input(vec![b, h], -1.5, 1.5),
        input(vec![g, i], -0.8, 0.8),
        input(vec![g, h], -0.8, 0.8),
        input(vec![g], -0.5, 0.5),
        input(vec![g], -0.5, 0.5),
    )
        .prop_map(|(x, h, c, wi, wh, bi, bh)| vec![x, h, c, wi, wh, bi, bh])
}

fn second_order_tol() -> Tolerance {
    Tolerance {
        rel: 1e-5,
        abs: 1e-6,
        step: 1e-5,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pointwise((gates, c) in pointwise_inputs(), transposed in any::<bool>()) {
        // gates optionally seen through a transposed (non-contiguous) view
        let r = gradcheck(
            |xs| {
                let (h, c) = Tensor::lstm_cell_pointwise(&view(&xs[0], transposed)?, &xs[1])?;
                both(h, c)
            },
            &[stored(&gates, transposed), c],
            Tolerance::default(),
        );
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn pointwise_followed_by_more_ops((gates, c) in pointwise_inputs()) {
        // the upstream gradients reaching the op depend on its outputs, and h' feeds c's use
        let r = gradcheck(
            |xs| {
                let (h, c) = Tensor::lstm_cell_pointwise(&xs[0], &xs[1])?;
                both(h.mul(&c)?.tanh()?, c.square()?)
            },
            &[gates, c],
            Tolerance::default(),
        );
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn pointwise_second_order((gates, c) in pointwise_inputs()) {
        let r = gradgradcheck(
            |xs| {
                let (h, c) = Tensor::lstm_cell_pointwise(&xs[0], &xs[1])?;
                both(h, c)
            },
            &[gates.clone(), c.clone()],
            second_order_tol(),
        );
        prop_assert_eq!(r, Ok(()));
        // with a nonlinearity after it, the upstream gradient depends on the inputs too
        let r = gradgradcheck(
            |xs| {
                let (h, c) = Tensor::lstm_cell_pointwise(&xs[0], &xs[1])?;
                both(h, c)?.tanh()
            },
            &[gates, c],
            second_order_tol(),
        );
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn cell(inputs in (1..4usize, 1..4usize, 1..4usize).prop_flat_map(|(b, i, h)| cell_inputs(b, i, h))) {
        let r = gradcheck(
            |xs| {
                let (h, c) = cell_of(xs).forward(&xs[0], (&xs[1], &xs[2]))?;
                both(h, c)
            },
            &inputs,
            Tolerance::default(),
        );
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn sequence(
        case in sequence_case(1..4, 1..3, 1..4, 1..4),
        stepwise in any::<bool>(),
    ) {
        let r = gradcheck(|xs| run_sequence(&case, xs, stepwise), &case.inputs, Tolerance::default());
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn sequence_second_order(case in sequence_case(1..3, 1..2, 1..3, 1..3)) {
        // create_graph through the fused sequence: its backward rebuilds the steps as ops
        let r = gradgradcheck(|xs| run_sequence(&case, xs, false), &case.inputs, second_order_tol());
        prop_assert_eq!(r, Ok(()));
    }
}

/// A sequence check: x [T, B, I], the four parameters (or two, without biases) and, when
/// `state`, h_0 and c_0 [1, B, H], in that order.
#[derive(Clone, Debug)]
struct SequenceCase {
    bias: bool,
    state: bool,
    inputs: Vec<Input>,
}

fn sequence_case(
    steps: std::ops::Range<usize>,
    batch: std::ops::Range<usize>,
    input_size: std::ops::Range<usize>,
    hidden: std::ops::Range<usize>,
) -> impl Strategy<Value = SequenceCase> {
    (
        steps,
        batch,
        input_size,
        hidden,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(t, b, i, h, bias, state)| {
            let g = 4 * h;
            let mut parts = vec![
                input(vec![t, b, i], -1.5, 1.5),
                input(vec![g, i], -0.8, 0.8),
                input(vec![g, h], -0.8, 0.8),
            ];
            if bias {
                parts.extend([input(vec![g], -0.5, 0.5), input(vec![g], -0.5, 0.5)]);
            }
            if state {
                parts.extend([
                    input(vec![1, b, h], -1.0, 1.0),
                    input(vec![1, b, h], -1.5, 1.5),
                ]);
            }
            parts.prop_map(move |inputs| SequenceCase {
                bias,
                state,
                inputs,
            })
        })
}

/// The layer of a [`SequenceCase`] over the harness's leaves `xs`, run fused or step by step;
/// returns [outputs; h_T; c_T] along the time axis.
fn run_sequence(case: &SequenceCase, xs: &[Tensor], stepwise: bool) -> Result<Tensor> {
    let bias_at = 3;
    let state_at = if case.bias { 5 } else { 3 };
    let lstm = Lstm {
        cell: LstmCell {
            weight_ih: xs[1].clone(),
            weight_hh: xs[2].clone(),
            bias_ih: case.bias.then(|| xs[bias_at].clone()),
            bias_hh: case.bias.then(|| xs[bias_at + 1].clone()),
        },
    };
    let state = case.state.then(|| (&xs[state_at], &xs[state_at + 1]));
    let (out, (h_n, c_n)) = if stepwise {
        lstm.forward_stepwise(&xs[0], state)?
    } else {
        lstm.forward(&xs[0], state)?
    };
    Tensor::concat(&[out, h_n, c_n], 0)
}

/// With a constant input and frozen input weights the fused sequence skips dx and dW_ih: the
/// gradients it does compute must still be right.
#[test]
fn sequence_with_constant_input_and_frozen_input_weights() {
    let mut rng = Rng::new(11);
    let (t, b, i, h) = (3, 2, 3, 2);
    let x = Tensor::randn(&[t, b, i], DType::F64, &mut rng);
    let w_ih = Tensor::randn(&[4 * h, i], DType::F64, &mut rng)
        .mul_scalar(0.5)
        .unwrap();
    let inputs: Vec<Input> = [vec![4 * h, h], vec![1, b, h], vec![1, b, h]]
        .iter()
        .map(|s| {
            let v = Tensor::randn(s, DType::F64, &mut rng)
                .mul_scalar(0.7)
                .unwrap();
            Input::new(v.to_vec_f64(), s)
        })
        .collect();
    let r = gradcheck(
        |xs| {
            let lstm = Lstm {
                cell: LstmCell {
                    weight_ih: w_ih.clone(),
                    weight_hh: xs[0].clone(),
                    bias_ih: None,
                    bias_hh: None,
                },
            };
            let (out, (h_n, c_n)) = lstm.forward(&x, Some((&xs[1], &xs[2])))?;
            Tensor::concat(&[out, h_n, c_n], 0)
        },
        &inputs,
        Tolerance::default(),
    );
    assert_eq!(r, Ok(()));
}

/// The fused sequence and the step-by-step graph compute the same function: same outputs and
/// same gradients (f64, to rounding), also for a longer, wider sequence than the
/// finite-difference checks can afford.
#[test]
fn fused_sequence_equals_stepwise_sequence() {
    let mut rng = Rng::new(5);
    let (t, b, i, h) = (9, 5, 6, 17);
    let lstm = Lstm::new(i, h, true, DType::F64, &mut rng).unwrap();
    let x = Tensor::randn(&[t, b, i], DType::F64, &mut rng)
        .requires_grad_(true)
        .unwrap();
    let h0 = Tensor::randn(&[1, b, h], DType::F64, &mut rng)
        .requires_grad_(true)
        .unwrap();
    let c0 = Tensor::randn(&[1, b, h], DType::F64, &mut rng)
        .requires_grad_(true)
        .unwrap();
    let upstream: Vec<Tensor> = [vec![t, b, h], vec![1, b, h], vec![1, b, h]]
        .iter()
        .map(|s| Tensor::randn(s, DType::F64, &mut rng))
        .collect();
    let mut wrt = vec![x.clone(), h0.clone(), c0.clone()];
    wrt.extend(lstm.parameters());
    let run = |stepwise: bool| {
        let (out, (h_n, c_n)) = if stepwise {
            lstm.forward_stepwise(&x, Some((&h0, &c0))).unwrap()
        } else {
            lstm.forward(&x, Some((&h0, &c0))).unwrap()
        };
        let grads = grad(
            &[out.clone(), h_n.clone(), c_n.clone()],
            &upstream,
            &wrt,
            false,
        )
        .unwrap();
        let mut all = vec![out, h_n, c_n];
        all.extend(grads.into_iter().map(|g| g.unwrap()));
        all
    };
    let (fused, stepwise) = (run(false), run(true));
    for (k, (a, b)) in fused.iter().zip(&stepwise).enumerate() {
        assert_eq!(a.shape(), b.shape(), "tensor {k}");
        let err = a
            .to_vec_f64()
            .iter()
            .zip(b.to_vec_f64())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "tensor {k}: max difference {err}");
    }
}

/// A plain backward runs the fused kernel, a create_graph backward the Tensor-op formulas:
/// both must give the same gradients (f64, to rounding).
#[test]
fn fused_backward_equals_composite_backward() {
    let mut rng = Rng::new(7);
    for &(b, h) in &[(1, 1), (3, 5), (16, 33)] {
        let gates = Tensor::randn(&[b, 4 * h], DType::F64, &mut rng)
            .mul_scalar(2.0)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let c_prev = Tensor::randn(&[b, h], DType::F64, &mut rng)
            .requires_grad_(true)
            .unwrap();
        let (h1, c1) = Tensor::lstm_cell_pointwise(&gates, &c_prev).unwrap();
        let gh = Tensor::randn(&[b, h], DType::F64, &mut rng);
        let gc = Tensor::randn(&[b, h], DType::F64, &mut rng);
        let run = |create_graph: bool| {
            grad(
                &[h1.clone(), c1.clone()],
                &[gh.clone(), gc.clone()],
                &[gates.clone(), c_prev.clone()],
                create_graph,
            )
            .unwrap()
        };
        let (fused, composite) = (run(false), run(true));
        for (k, (a, c)) in fused.iter().zip(&composite).enumerate() {
            let (a, c) = (a.as_ref().unwrap(), c.as_ref().unwrap());
            assert!(!a.requires_grad() && c.requires_grad(), "input {k}");
            let err = a
                .to_vec_f64()
                .iter()
                .zip(c.to_vec_f64())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-12, "b={b} h={h} input {k}: max difference {err}");
        }
    }
}

/// Only the inputs that require grad get one; f32 works as f64 does.
#[test]
fn gradients_only_where_asked_and_in_f32() {
    let mut rng = Rng::new(8);
    let gates = Tensor::randn(&[4, 12], DType::F32, &mut rng)
        .requires_grad_(true)
        .unwrap();
    let c_prev = Tensor::randn(&[4, 3], DType::F32, &mut rng);
    let (h, c) = Tensor::lstm_cell_pointwise(&gates, &c_prev).unwrap();
    h.add(&c).unwrap().sum_all().unwrap().backward().unwrap();
    let g = gates.grad().unwrap();
    assert_eq!(g.shape(), &[4, 12]);
    assert_eq!(g.dtype(), DType::F32);
    assert!(c_prev.grad().is_none());
}
