//! proptest strategies for the gradient checks: random shapes (size-1 axes, odd sizes),
//! broadcast-compatible pairs, values kept away from kinks, and non-contiguous views.

use crate::Input;
use autograd::{Result as EngineResult, Tensor};
use proptest::prelude::*;

/// A shape of rank `min_rank..=max_rank` with axes of size 1..=max_dim.
pub fn shape(
    min_rank: usize,
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, min_rank..=max_rank)
}

/// Values in [lo, hi].
pub fn values(n: usize, lo: f64, hi: f64) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(lo..=hi, n)
}

/// Values with magnitude in [lo, hi] and random sign: away from the kink at 0.
pub fn away_from_zero(n: usize, lo: f64, hi: f64) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        (lo..=hi, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v }),
        n,
    )
}

/// An input of a random shape with values in [lo, hi].
pub fn input(
    shape: impl Strategy<Value = Vec<usize>>,
    lo: f64,
    hi: f64,
) -> impl Strategy<Value = Input> {
    shape.prop_flat_map(move |s| {
        let n = s.iter().product();
        values(n, lo, hi).prop_map(move |d| Input::new(d, &s))
    })
}

/// Distinct values (a shuffled ramp plus jitter), so max has no ties and its kinks are far.
pub fn distinct(shape: impl Strategy<Value = Vec<usize>>) -> impl Strategy<Value = Input> {
    shape.prop_flat_map(|s| {
        let n: usize = s.iter().product();
        (
            Just(s),
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            values(n, -0.2, 0.2),
        )
            .prop_map(|(s, perm, jitter)| {
                Input::new(
                    perm.iter()
                        .zip(jitter)
                        .map(|(&p, j)| p as f64 + j)
                        .collect(),
                    &s,
                )
            })
    })
}

/// A pair of shapes that broadcast together: the second is the first with some axes set to 1
/// and possibly some leading axes dropped (or the roles swapped).
pub fn broadcast_pair(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1, max_rank, max_dim).prop_flat_map(|full| {
        let rank = full.len();
        (
            Just(full),
            prop::collection::vec(any::<bool>(), rank),
            0..rank,
            any::<bool>(),
        )
            .prop_map(|(full, ones, drop, swap)| {
                let reduced: Vec<usize> = full
                    .iter()
                    .zip(&ones)
                    .map(|(&d, &one)| if one { 1 } else { d })
                    .collect();
                let reduced = reduced[drop..].to_vec();
                if swap {
                    (reduced, full)
                } else {
                    (full, reduced)
                }
            })
    })
}

/// Inputs for a pair of shapes, values in [lo, hi].
pub fn inputs_for(
    shapes: (Vec<usize>, Vec<usize>),
    lo: f64,
    hi: f64,
) -> impl Strategy<Value = (Input, Input)> {
    let (a, b) = shapes;
    let (na, nb) = (a.iter().product(), b.iter().product());
    (values(na, lo, hi), values(nb, lo, hi))
        .prop_map(move |(da, db)| (Input::new(da, &a), Input::new(db, &b)))
}

/// Swaps the last two axes of a shape (rank >= 2): the leaf is stored this way and the op sees
/// its transpose, a non-contiguous view of the requested shape.
pub fn stored_transposed(input: &Input) -> Input {
    let s = &input.shape;
    if s.len() < 2 {
        return input.clone();
    }
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    let batch: usize = s[..s.len() - 2].iter().product();
    let mut data = vec![0.0; input.data.len()];
    for b in 0..batch {
        for i in 0..r {
            for j in 0..c {
                data[b * r * c + j * r + i] = input.data[b * r * c + i * c + j];
            }
        }
    }
    let mut shape = s.clone();
    let n = shape.len();
    shape.swap(n - 2, n - 1);
    Input::new(data, &shape)
}

/// The op's view of a leaf stored by [`stored_transposed`] (or the leaf itself).
pub fn view(x: &Tensor, transposed: bool) -> EngineResult<Tensor> {
    if transposed && x.rank() >= 2 {
        x.t()
    } else {
        Ok(x.clone())
    }
}

/// The stored form of an input for a test that may view it transposed.
pub fn stored(input: &Input, transposed: bool) -> Input {
    if transposed {
        stored_transposed(input)
    } else {
        input.clone()
    }
}
