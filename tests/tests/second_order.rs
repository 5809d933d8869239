//! Gradients of gradients against finite differences, for the ops WGAN-GP's gradient penalty
//! differentiates through. Each op is checked alone and followed by tanh, so that the upstream
//! gradient its backward receives depends on the inputs too.

use autograd::{Result, Tensor};
use proptest::prelude::*;
use tests::strategies::{away_from_zero, broadcast_pair, input, inputs_for, shape, stored, view};
use tests::{cases, gradgradcheck, Input, Tolerance};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    }
}

fn tol() -> Tolerance {
    Tolerance {
        rel: 1e-5,
        abs: 1e-6,
        step: 1e-5,
    }
}

fn check1(
    x: &Input,
    t: bool,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    let alone = gradgradcheck(|xs| f(&view(&xs[0], t)?), &[stored(x, t)], tol());
    alone.and_then(|_| gradgradcheck(|xs| f(&view(&xs[0], t)?)?.tanh(), &[stored(x, t)], tol()))
}

fn check2(
    a: &Input,
    b: &Input,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    let alone = gradgradcheck(|xs| f(&xs[0], &xs[1]), &[a.clone(), b.clone()], tol());
    alone.and_then(|_| {
        gradgradcheck(
            |xs| f(&xs[0], &xs[1])?.tanh(),
            &[a.clone(), b.clone()],
            tol(),
        )
    })
}

fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    shape(1, 3, 4)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn add((a, b) in broadcast_pair(3, 3).prop_flat_map(|p| inputs_for(p, -1.5, 1.5))) {
        prop_assert_eq!(check2(&a, &b, |x, y| x.add(y)), Ok(()));
    }

    #[test]
    fn mul((a, b) in broadcast_pair(3, 3).prop_flat_map(|p| inputs_for(p, -1.5, 1.5))) {
        prop_assert_eq!(check2(&a, &b, |x, y| x.mul(y)), Ok(()));
    }

    #[test]
    fn matmul(m in 1..4usize, k in 1..4usize, n in 1..4usize, batched in any::<bool>(), seed in any::<u64>()) {
        let (sa, sb) = if batched { (vec![2, m, k], vec![k, n]) } else { (vec![m, k], vec![k, n]) };
        let a = Input::new(tests::fixed_weights(sa.iter().product(), seed), &sa);
        let b = Input::new(tests::fixed_weights(sb.iter().product(), seed + 7), &sb);
        prop_assert_eq!(check2(&a, &b, |x, y| x.matmul(y)), Ok(()));
    }

    #[test]
    fn softmax_cross_entropy(x in input(shape(1, 3, 4), -3.0, 3.0), axis in 0..3usize, seed in any::<u64>(), t in any::<bool>()) {
        // gradients of gradients: the recorded backward in Tensor ops
        use autograd::nn::loss;
        let axis = axis % x.shape.len();
        let positions = x.shape.iter().product::<usize>() / x.shape[axis];
        let targets: Vec<usize> = (0..positions)
            .map(|i| (seed.wrapping_add(i as u64 * 5) % x.shape[axis] as u64) as usize)
            .collect();
        prop_assert_eq!(check1(&x, t, |a| loss::softmax_cross_entropy(a, axis as isize, &targets)), Ok(()));
    }

    #[test]
    fn bce_with_logits((x, y) in shape(1, 3, 4).prop_flat_map(|s| (input(Just(s.clone()), -3.0, 3.0), input(Just(s), 0.0, 1.0))), mean in any::<bool>()) {
        use autograd::nn::{loss, Reduction};
        let r = if mean { Reduction::Mean } else { Reduction::Sum };
        prop_assert_eq!(check2(&x, &y, |a, b| loss::bce_with_logits(a, b, r)), Ok(()));
    }

    #[test]
    fn matmul_t(m in 1..4usize, k in 1..4usize, n in 1..4usize, batched in any::<bool>(), seed in any::<u64>()) {
        let sa = if batched { vec![2, m, k] } else { vec![m, k] };
        let a = Input::new(tests::fixed_weights(sa.iter().product(), seed), &sa);
        let w = Input::new(tests::fixed_weights(n * k, seed + 7), &[n, k]);
        prop_assert_eq!(check2(&a, &w, |x, y| x.matmul_t(y)), Ok(()));
    }

    #[test]
    fn sigmoid(x in input(small_shape(), -3.0, 3.0), t in any::<bool>()) {
        prop_assert_eq!(check1(&x, t, |v| v.sigmoid()), Ok(()));
    }

    #[test]
    fn tanh(x in input(small_shape(), -2.0, 2.0), t in any::<bool>()) {
        prop_assert_eq!(check1(&x, t, |v| v.tanh()), Ok(()));
    }

    #[test]
    fn leaky_relu(x in small_shape().prop_flat_map(|s| { let n = s.iter().product(); away_from_zero(n, 0.05, 2.0).prop_map(move |d| Input::new(d, &s)) }), t in any::<bool>()) {
        prop_assert_eq!(check1(&x, t, |v| v.leaky_relu(0.2)), Ok(()));
    }

    #[test]
    fn sum((x, axes) in small_shape().prop_flat_map(|s| { let r = s.len(); (input(Just(s), -2.0, 2.0), prop::collection::vec(0..r as isize, 0..r)) }), keepdim in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(check1(&x, t, |v| v.sum(&axes, keepdim)), Ok(()));
    }

    #[test]
    fn mean((x, axes) in small_shape().prop_flat_map(|s| { let r = s.len(); (input(Just(s), -2.0, 2.0), prop::collection::vec(0..r as isize, 0..r)) }), keepdim in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(check1(&x, t, |v| v.mean(&axes, keepdim)), Ok(()));
    }

    #[test]
    fn pow(x in input(small_shape(), 0.4, 2.0), p in prop::sample::select(vec![-1.5, 0.5, 2.0, 3.0]), t in any::<bool>()) {
        prop_assert_eq!(check1(&x, t, |v| v.powf(p)), Ok(()));
    }

    #[test]
    fn sqrt(x in input(small_shape(), 0.4, 3.0), t in any::<bool>()) {
        prop_assert_eq!(check1(&x, t, |v| v.sqrt()), Ok(()));
    }
}

#[test]
fn gradient_penalty_shape_of_computation() {
    // WGAN-GP: || d D(x) / dx ||_2 for a tiny critic D(x) = sum(tanh(x W) v), differentiated w.r.t. W
    let x = Input::new(tests::fixed_weights(6, 3), &[2, 3]);
    let w = Input::new(tests::fixed_weights(12, 4), &[3, 4]);
    let r = tests::gradcheck(
        |xs| {
            // the penalty differentiates inside the function, so it records even when the
            // harness evaluates it for finite differences
            let _recording = autograd::GradModeGuard::set(true);
            let (x, w) = (xs[0].clone(), xs[1].clone());
            let d = x.matmul(&w)?.tanh()?.sum_all()?;
            let gx = autograd::grad(&[d], &[], std::slice::from_ref(&x), true)?[0]
                .clone()
                .expect("D depends on x");
            gx.square()?
                .sum(&[1], false)?
                .add_scalar(1e-12)?
                .sqrt()?
                .sub_scalar(1.0)?
                .square()?
                .mean_all()
        },
        &[x, w],
        tol(),
    );
    assert_eq!(r, Ok(()));
}
