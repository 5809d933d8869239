//! Every differentiable op of the engine against central finite differences in f64, with
//! proptest drawing shapes (size-1 axes that broadcast, odd sizes), values and non-contiguous
//! (transposed) views. 32 cases per op unless PROPTEST_CASES says otherwise.

use autograd::{Indices, Result, Tensor};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tests::strategies::{
    away_from_zero, broadcast_pair, distinct, input, inputs_for, shape, stored, values, view,
};
use tests::{cases, gradcheck, Input, Tolerance};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    }
}

/// gradcheck of a one-input op, optionally seeing its input through a transposed view.
fn unary(
    x: &Input,
    transposed: bool,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    gradcheck(
        |xs| f(&view(&xs[0], transposed)?),
        &[stored(x, transposed)],
        Tolerance::default(),
    )
}

/// gradcheck of a two-input op, both inputs optionally seen through transposed views.
fn binary(
    a: &Input,
    b: &Input,
    transposed: bool,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> std::result::Result<(), String> {
    gradcheck(
        |xs| f(&view(&xs[0], transposed)?, &view(&xs[1], transposed)?),
        &[stored(a, transposed), stored(b, transposed)],
        Tolerance::default(),
    )
}

fn with_values(
    shape: Vec<usize>,
    vals: impl Strategy<Value = Vec<f64>>,
) -> impl Strategy<Value = Input> {
    vals.prop_map(move |d| Input::new(d, &shape))
}

fn any_shape() -> impl Strategy<Value = Vec<usize>> {
    shape(1, 3, 5)
}

fn axes_subset(rank: usize) -> impl Strategy<Value = Vec<isize>> {
    prop::collection::vec(any::<bool>(), rank).prop_map(|m| {
        m.iter()
            .enumerate()
            .filter(|(_, &b)| b)
            .map(|(i, _)| i as isize)
            .collect()
    })
}

/// A value strategy that stays 0.05 away from the clamp bounds -1 and 1.
fn off_clamp_bounds(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![-2.0..-1.05, -0.95..0.95, 1.05..2.0], n)
}

proptest! {
    #![proptest_config(config())]

    // ----- unary -----------------------------------------------------------------------------

    #[test]
    fn neg(x in input(any_shape(), -2.0, 2.0), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.neg()), Ok(()));
    }

    #[test]
    fn exp(x in input(any_shape(), -2.0, 2.0), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.exp()), Ok(()));
    }

    #[test]
    fn log(x in input(any_shape(), 0.3, 3.0), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.log()), Ok(()));
    }

    #[test]
    fn sqrt(x in input(any_shape(), 0.3, 3.0), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.sqrt()), Ok(()));
    }

    #[test]
    fn pow(x in input(any_shape(), 0.3, 2.0), p in prop::sample::select(vec![-1.5, 0.5, 2.0, 3.0, 1.7]), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.powf(p)), Ok(()));
    }

    #[test]
    fn abs(x in any_shape().prop_flat_map(|s| { let n = s.iter().product(); with_values(s, away_from_zero(n, 0.05, 2.0)) }), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.abs()), Ok(()));
    }

    #[test]
    fn sigmoid(x in input(any_shape(), -4.0, 4.0), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.sigmoid()), Ok(()));
    }

    #[test]
    fn tanh(x in input(any_shape(), -3.0, 3.0), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.tanh()), Ok(()));
    }

    #[test]
    fn relu(x in any_shape().prop_flat_map(|s| { let n = s.iter().product(); with_values(s, away_from_zero(n, 0.05, 2.0)) }), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.relu()), Ok(()));
    }

    #[test]
    fn leaky_relu(x in any_shape().prop_flat_map(|s| { let n = s.iter().product(); with_values(s, away_from_zero(n, 0.05, 2.0)) }), slope in 0.01..0.5f64, t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.leaky_relu(slope)), Ok(()));
    }

    #[test]
    fn softplus(x in input(any_shape(), -5.0, 5.0), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.softplus()), Ok(()));
    }

    #[test]
    fn elu(x in any_shape().prop_flat_map(|s| { let n = s.iter().product(); with_values(s, away_from_zero(n, 0.05, 2.0)) }), alpha in 0.1..2.0f64, t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.elu(alpha)), Ok(()));
    }

    #[test]
    fn clamp(x in any_shape().prop_flat_map(|s| { let n = s.iter().product(); with_values(s, off_clamp_bounds(n)) }), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.clamp(-1.0, 1.0)), Ok(()));
    }

    #[test]
    fn scalar_arithmetic(x in input(any_shape(), -2.0, 2.0), c in -3.0..3.0f64, t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.mul_scalar(c)?.add_scalar(c)?.sub_scalar(0.5)?.div_scalar(1.5)), Ok(()));
    }

    // ----- binary, with broadcasting -----------------------------------------------------------

    #[test]
    fn add((a, b) in broadcast_pair(4, 4).prop_flat_map(|p| inputs_for(p, -2.0, 2.0)), t in any::<bool>()) {
        prop_assert_eq!(binary(&a, &b, t, |x, y| x.add(y)), Ok(()));
    }

    #[test]
    fn sub((a, b) in broadcast_pair(4, 4).prop_flat_map(|p| inputs_for(p, -2.0, 2.0)), t in any::<bool>()) {
        prop_assert_eq!(binary(&a, &b, t, |x, y| x.sub(y)), Ok(()));
    }

    #[test]
    fn mul((a, b) in broadcast_pair(4, 4).prop_flat_map(|p| inputs_for(p, -2.0, 2.0)), t in any::<bool>()) {
        prop_assert_eq!(binary(&a, &b, t, |x, y| x.mul(y)), Ok(()));
    }

    #[test]
    fn div((a, b) in broadcast_pair(4, 4).prop_flat_map(|p| inputs_for(p, 0.5, 2.0)), t in any::<bool>()) {
        prop_assert_eq!(binary(&a, &b, t, |x, y| x.div(y)), Ok(()));
    }

    #[test]
    fn maximum_and_minimum(a in input(any_shape(), -2.0, 2.0), t in any::<bool>(), seed in any::<u64>()) {
        // b differs from a by at least 0.1 everywhere, so no element sits on the tie
        let gap: Vec<f64> = tests::fixed_weights(a.data.len(), seed).iter().map(|w| if *w < 0.0 { w - 0.1 } else { w + 0.1 }).collect();
        let b = Input::new(a.data.iter().zip(&gap).map(|(x, g)| x + g).collect(), &a.shape);
        prop_assert_eq!(binary(&a, &b, t, |x, y| x.maximum(y)), Ok(()));
        prop_assert_eq!(binary(&a, &b, t, |x, y| x.minimum(y)), Ok(()));
    }

    #[test]
    fn where_select((a, b) in broadcast_pair(3, 4).prop_flat_map(|p| inputs_for(p, -2.0, 2.0)), seed in any::<u64>()) {
        let shape = autograd::layout::broadcast_shapes("test", &a.shape, &b.shape).unwrap();
        let mask: Vec<f64> = tests::fixed_weights(shape.iter().product(), seed).iter().map(|w| if *w > 0.0 { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, &shape).unwrap();
        prop_assert_eq!(binary(&a, &b, false, |x, y| Tensor::where_cond(&mask, x, y)), Ok(()));
    }

    // ----- reductions and normalisers ------------------------------------------------------------

    #[test]
    fn sum((x, axes) in any_shape().prop_flat_map(|s| (input(Just(s.clone()), -2.0, 2.0), axes_subset(s.len()))), keepdim in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.sum(&axes, keepdim)), Ok(()));
    }

    #[test]
    fn mean((x, axes) in any_shape().prop_flat_map(|s| (input(Just(s.clone()), -2.0, 2.0), axes_subset(s.len()))), keepdim in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.mean(&axes, keepdim)), Ok(()));
    }

    #[test]
    fn max((x, axes) in any_shape().prop_flat_map(|s| (distinct(Just(s.clone())), axes_subset(s.len()))), keepdim in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.max(&axes, keepdim)), Ok(()));
    }

    #[test]
    fn logsumexp((x, axes) in any_shape().prop_flat_map(|s| (input(Just(s.clone()), -3.0, 3.0), axes_subset(s.len()))), keepdim in any::<bool>(), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.logsumexp(&axes, keepdim)), Ok(()));
    }

    #[test]
    fn softmax((x, axis) in any_shape().prop_flat_map(|s| (input(Just(s.clone()), -3.0, 3.0), 0..s.len())), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.softmax(axis as isize)), Ok(()));
    }

    #[test]
    fn log_softmax((x, axis) in any_shape().prop_flat_map(|s| (input(Just(s.clone()), -3.0, 3.0), 0..s.len())), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.log_softmax(axis as isize)), Ok(()));
    }

    // ----- matmul ----------------------------------------------------------------------------

    #[test]
    fn matmul_2d(m in 1..6usize, k in 1..6usize, n in 1..6usize, ta in any::<bool>(), tb in any::<bool>(), seed in any::<u64>()) {
        let a = Input::new(tests::fixed_weights(m * k, seed), &[m, k]);
        let b = Input::new(tests::fixed_weights(k * n, seed + 1), &[k, n]);
        let r = gradcheck(|xs| view(&xs[0], ta)?.matmul(&view(&xs[1], tb)?), &[stored(&a, ta), stored(&b, tb)], Tolerance::default());
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn matmul_batched_broadcast((ba, bb) in broadcast_pair(2, 3), m in 1..4usize, k in 1..4usize, n in 1..4usize, t in any::<bool>(), seed in any::<u64>()) {
        let sa = [&ba[..], &[m, k]].concat();
        let sb = [&bb[..], &[k, n]].concat();
        let a = Input::new(tests::fixed_weights(sa.iter().product(), seed), &sa);
        let b = Input::new(tests::fixed_weights(sb.iter().product(), seed + 1), &sb);
        prop_assert_eq!(binary(&a, &b, t, |x, y| x.matmul(y)), Ok(()));
    }

    #[test]
    fn matmul_t(batch in proptest::collection::vec(1..3usize, 0..3), m in 1..5usize, k in 1..5usize, n in 1..5usize, ta in any::<bool>(), seed in any::<u64>()) {
        // a [..., m, k] times a 2-D w [n, k] transposed (a Linear layer); a possibly transposed
        let sa = [&batch[..], &[m, k]].concat();
        let a = Input::new(tests::fixed_weights(sa.iter().product(), seed), &sa);
        let w = Input::new(tests::fixed_weights(n * k, seed + 1), &[n, k]);
        let ta = ta && batch.is_empty();
        let r = gradcheck(|xs| view(&xs[0], ta)?.matmul_t(&xs[1]), &[stored(&a, ta), w], Tolerance::default());
        prop_assert_eq!(r, Ok(()));
    }

    // ----- fused losses ----------------------------------------------------------------------

    #[test]
    fn bce_with_logits((x, y) in shape(1, 3, 5).prop_flat_map(|s| (input(Just(s.clone()), -4.0, 4.0), input(Just(s), 0.0, 1.0))), reduction in 0..3usize, t in any::<bool>()) {
        // logits and targets both differentiated; Sum and Mean are the fused op
        use autograd::nn::{loss, Reduction};
        let r = [Reduction::Sum, Reduction::Mean, Reduction::None][reduction];
        prop_assert_eq!(binary(&x, &y, t, |a, b| loss::bce_with_logits(a, b, r)), Ok(()));
    }

    #[test]
    fn softmax_cross_entropy(x in input(shape(1, 4, 4), -3.0, 3.0), axis in 0..4usize, seed in any::<u64>(), t in any::<bool>()) {
        // the fused op along any axis, the logits possibly a transposed view; one target per
        // position drawn from the seed
        use autograd::nn::loss;
        let axis = axis % x.shape.len();
        let positions = x.shape.iter().product::<usize>() / x.shape[axis];
        let targets: Vec<usize> = (0..positions)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % x.shape[axis] as u64) as usize)
            .collect();
        prop_assert_eq!(unary(&x, t, |a| loss::softmax_cross_entropy(a, axis as isize, &targets)), Ok(()));
    }

    // ----- shape ops -------------------------------------------------------------------------

    #[test]
    fn reshape(x in input(shape(2, 3, 5), -2.0, 2.0), t in any::<bool>()) {
        let n = x.data.len();
        prop_assert_eq!(unary(&x, t, |v| v.reshape(&[n])?.reshape(&[1, n, 1])?.mul(&v.reshape(&[1, n, 1])?)), Ok(()));
        prop_assert_eq!(unary(&x, t, |v| v.unsqueeze(1)?.squeeze(1)?.flatten_from(1)), Ok(()));
    }

    #[test]
    fn permute((x, perm) in shape(1, 4, 4).prop_flat_map(|s| { let r = s.len(); (input(Just(s), -2.0, 2.0), Just((0..r).collect::<Vec<_>>()).prop_shuffle()) }), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.permute(&perm)?.exp()), Ok(()));
    }

    #[test]
    fn transpose((x, a, b) in shape(2, 4, 4).prop_flat_map(|s| { let r = s.len(); (input(Just(s), -2.0, 2.0), 0..r, 0..r) }), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.transpose(a as isize, b as isize)?.tanh()), Ok(()));
    }

    #[test]
    fn narrow((x, axis, start, len) in any_shape().prop_flat_map(|s| { let r = s.len(); (Just(s), 0..r) }).prop_flat_map(|(s, axis)| {
        let d = s[axis];
        (input(Just(s), -2.0, 2.0), Just(axis), 0..d).prop_flat_map(move |(x, axis, start)| (Just(x), Just(axis), Just(start), 1..=d - start))
    }), t in any::<bool>()) {
        prop_assert_eq!(unary(&x, t, |v| v.narrow(axis as isize, start, len)?.square()), Ok(()));
    }

    #[test]
    fn expand((small, full) in broadcast_pair(4, 4).prop_map(|(a, b)| if (a.len(), a.iter().product::<usize>()) <= (b.len(), b.iter().product::<usize>()) { (a, b) } else { (b, a) }), seed in any::<u64>()) {
        let x = Input::new(tests::fixed_weights(small.iter().product(), seed), &small);
        prop_assert_eq!(unary(&x, false, |v| v.expand(&full)?.mul(&v.expand(&full)?)), Ok(()));
    }

    #[test]
    fn concat_and_stack((s, axis) in shape(1, 3, 4).prop_flat_map(|s| { let r = s.len(); (Just(s), 0..r) }), extra in 1..4usize, seed in any::<u64>()) {
        let mut s2 = s.clone();
        s2[axis] = extra;
        let a = Input::new(tests::fixed_weights(s.iter().product(), seed), &s);
        let b = Input::new(tests::fixed_weights(s2.iter().product(), seed + 1), &s2);
        let c = Input::new(tests::fixed_weights(s.iter().product(), seed + 2), &s);
        let r = gradcheck(|xs| Tensor::concat(&[xs[0].clone(), xs[1].clone(), xs[2].clone()], axis as isize)?.square(), &[a.clone(), b, c.clone()], Tolerance::default());
        prop_assert_eq!(r, Ok(()));
        let r = gradcheck(|xs| Tensor::stack(&[xs[0].clone(), xs[1].clone()], axis)?.square(), &[a, c], Tolerance::default());
        prop_assert_eq!(r, Ok(()));
    }

    // ----- indexing --------------------------------------------------------------------------

    #[test]
    fn index_select((x, axis, idx) in shape(1, 3, 4).prop_flat_map(|s| { let r = s.len(); (Just(s), 0..r) }).prop_flat_map(|(s, axis)| {
        let d = s[axis];
        (input(Just(s), -2.0, 2.0), Just(axis), prop::collection::vec(0..d, 1..6))
    }), t in any::<bool>()) {
        // repeated indices make the backward accumulate
        prop_assert_eq!(unary(&x, t, |v| v.index_select(axis as isize, &idx)?.square()), Ok(()));
    }

    #[test]
    fn gather((x, axis, m, seed) in shape(1, 3, 4).prop_flat_map(|s| { let r = s.len(); (input(Just(s), -2.0, 2.0), 0..r, 1..5usize, any::<u64>()) }), t in any::<bool>()) {
        let mut ishape = x.shape.clone();
        ishape[axis] = m;
        let n = x.shape[axis];
        let idx: Vec<usize> = tests::fixed_weights(ishape.iter().product(), seed).iter().map(|w| ((w + 1.0) * 0.5 * n as f64) as usize % n).collect();
        let index = Indices::new(idx, &ishape).unwrap();
        prop_assert_eq!(unary(&x, t, |v| v.gather(axis as isize, &index)?.square()), Ok(()));
    }

    #[test]
    fn index_add_and_scatter_add((x, axis, size, seed) in shape(1, 3, 4).prop_flat_map(|s| { let r = s.len(); (input(Just(s), -2.0, 2.0), 0..r, 1..5usize, any::<u64>()) })) {
        let m = x.shape[axis];
        let pick = |n: usize, salt: u64| -> Vec<usize> { tests::fixed_weights(n, seed ^ salt).iter().map(|w| ((w + 1.0) * 0.5 * size as f64) as usize % size).collect() };
        let idx = pick(m, 1);
        prop_assert_eq!(unary(&x, false, |v| v.index_add(axis as isize, &idx, size)?.square()), Ok(()));
        let index = Indices::new(pick(x.data.len(), 2), &x.shape).unwrap();
        prop_assert_eq!(unary(&x, false, |v| v.scatter_add(axis as isize, &index, size)?.square()), Ok(()));
    }
}

#[test]
fn one_hot_is_a_constant_with_one_one_per_row() {
    let t = Tensor::one_hot(&[2, 0, 1], 3, autograd::DType::F64).unwrap();
    assert_eq!(
        t.to_vec_f64(),
        vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    );
    assert!(!t.requires_grad());
    assert!(Tensor::one_hot(&[3], 3, autograd::DType::F64).is_err());
}

#[test]
fn values_strategy_respects_bounds() {
    // guards the strategies the checks above rely on to stay off kinks
    let mut runner = proptest::test_runner::TestRunner::default();
    let v = values(50, 0.3, 3.0)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    assert!(v.iter().all(|x| (0.3..=3.0).contains(x)));
    let v = away_from_zero(50, 0.05, 2.0)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    assert!(v.iter().all(|x| x.abs() >= 0.05));
}
