//! Reductions over one contiguous block of axes. The caller views the input as [outer, r, inner]
//! (row-major, contiguous) and reduces the middle axis, giving [outer, inner]; any set of adjacent
//! axes reduces this way, and other sets are permuted into adjacency first.

use crate::cpu::parallel::{cost, worth_splitting};
use crate::cpu::vector;
use crate::float::Float;
use rayon::prelude::*;

fn reduce<T: Float>(
    x: &[T],
    outer: usize,
    r: usize,
    inner: usize,
    init: T,
    f: impl Fn(T, T) -> T + Sync + Copy,
) -> Vec<T> {
    let mut out = vec![init; outer * inner];
    if inner == 1 {
        // one output per contiguous row of r: rows go to tasks in runs, so that a short row (a
        // pooling window, the gradient of an expanded axis) is not a task of its own
        let run = outer.div_ceil(4 * rayon::current_num_threads()).max(1);
        let rows = |(c, part): (usize, &mut [T])| {
            for (k, acc) in part.iter_mut().enumerate() {
                let base = (c * run + k) * r;
                *acc = fold_row(&x[base..base + r], init, f);
            }
        };
        if worth_splitting(x.len(), cost::ELEMENT_NS) {
            out.par_chunks_mut(run).enumerate().for_each(rows);
        } else {
            out.chunks_mut(run).enumerate().for_each(rows);
        }
        return out;
    }
    let block = |(o, out_row): (usize, &mut [T])| {
        let base = o * r * inner;
        for j in 0..r {
            let row = &x[base + j * inner..base + (j + 1) * inner];
            for (acc, &v) in out_row.iter_mut().zip(row) {
                *acc = f(*acc, v);
            }
        }
    };
    if worth_splitting(x.len(), cost::ELEMENT_NS) && outer > 1 {
        out.par_chunks_mut(inner).enumerate().for_each(block);
    } else if worth_splitting(x.len(), cost::ELEMENT_NS) {
        // one outer block: split the inner axis across threads instead
        let chunk = inner.div_ceil(rayon::current_num_threads()).max(64);
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(ci, out_part)| {
                let start = ci * chunk;
                for j in 0..r {
                    let row = &x[j * inner + start..j * inner + start + out_part.len()];
                    for (acc, &v) in out_part.iter_mut().zip(row) {
                        *acc = f(*acc, v);
                    }
                }
            });
    } else {
        out.chunks_mut(inner.max(1)).enumerate().for_each(block);
    }
    out
}

/// Independent partial results in [`fold_row`]: a single running float sum waits on every
/// addition in turn (the compiler may not reorder it); 32 lanes fill two AVX-512 registers and
/// keep the adder busy.
const LANES: usize = 32;

/// `f` folded over one contiguous row, in `LANES` interleaved partial results combined at the
/// end. The order depends only on the row's length, never on the thread count.
fn fold_row<T: Float>(row: &[T], init: T, f: impl Fn(T, T) -> T + Copy) -> T {
    if row.len() < LANES {
        // no full chunk: the lanes would stay `init`, which changes nothing folded in
        return row.iter().fold(init, |acc, &v| f(acc, v));
    }
    vector::widest(
        #[inline(always)]
        || fold_row_lanes(row, init, f),
    )
}

#[inline(always)]
fn fold_row_lanes<T: Float>(row: &[T], init: T, f: impl Fn(T, T) -> T + Copy) -> T {
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(init, |acc, &v| f(acc, v));
    let mut lanes = [init; LANES];
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, v);
        }
    }
    lanes.iter().fold(tail, |acc, &v| f(acc, v))
}

/// Sum over the middle axis of a contiguous [outer, r, inner] buffer.
pub fn sum<T: Float>(x: &[T], outer: usize, r: usize, inner: usize) -> Vec<T> {
    reduce(
        x,
        outer,
        r,
        inner,
        T::ZERO,
        #[inline(always)]
        |a, b| a + b,
    )
}

/// Maximum over the middle axis of a contiguous [outer, r, inner] buffer (NaN propagates).
pub fn max<T: Float>(x: &[T], outer: usize, r: usize, inner: usize) -> Vec<T> {
    reduce(x, outer, r, inner, T::NEG_INFINITY, max_propagating_nan)
}

/// The larger of two values, NaN if either is.
#[inline(always)]
fn max_propagating_nan<T: Float>(a: T, b: T) -> T {
    if b.is_nan() || b > a {
        b
    } else {
        a
    }
}

/// Softmax (or log-softmax) along the middle axis of a contiguous [outer, r, inner] buffer,
/// fused: one pass for the maximum, one computing each exponential once (into the output) with
/// the normaliser, one to scale.
pub fn softmax<T: Float>(x: &[T], outer: usize, r: usize, inner: usize, log: bool) -> Vec<T> {
    assert_eq!(
        x.len(),
        outer * r * inner,
        "softmax: buffer length does not match [outer, r, inner]"
    );
    let mut out = vec![T::ZERO; x.len()];
    let block = (r * inner).max(1);
    let run = |(o, out_block): (usize, &mut [T])| {
        let xb = &x[o * block..(o + 1) * block];
        vector::widest(
            #[inline(always)]
            || softmax_block(xb, out_block, inner.max(1), log),
        )
    };
    if worth_splitting(x.len(), cost::ELEMENT_NS) {
        out.par_chunks_mut(block).enumerate().for_each(run);
    } else {
        out.chunks_mut(block).enumerate().for_each(run);
    }
    out
}

/// Softmax over the rows of one [r, inner] block, for each of its `inner` columns. The loops run
/// along contiguous memory so that they vectorise (with the engine's vectorisable exp): along a
/// row when `inner` is 1, across the columns' running maxima and sums otherwise.
#[inline(always)]
fn softmax_block<T: Float>(xb: &[T], out: &mut [T], inner: usize, log: bool) {
    if inner == 1 {
        let m = fold_row_lanes(xb, T::NEG_INFINITY, max_propagating_nan);
        for (o, &v) in out.iter_mut().zip(xb) {
            *o = (v - m).exp_vectorised();
        }
        let s = fold_row_lanes(
            out,
            T::ZERO,
            #[inline(always)]
            |a, b| a + b,
        );
        if log {
            let lse = m + s.ln();
            for (o, &v) in out.iter_mut().zip(xb) {
                *o = v - lse;
            }
        } else {
            let inv = T::ONE / s;
            for o in out.iter_mut() {
                *o *= inv;
            }
        }
        return;
    }
    let mut m = vec![T::NEG_INFINITY; inner];
    for row in xb.chunks_exact(inner) {
        for (mi, &v) in m.iter_mut().zip(row) {
            *mi = max_propagating_nan(*mi, v);
        }
    }
    let mut s = vec![T::ZERO; inner];
    for (o_row, row) in out.chunks_exact_mut(inner).zip(xb.chunks_exact(inner)) {
        for ((o, &v), (&mi, si)) in o_row.iter_mut().zip(row).zip(m.iter().zip(s.iter_mut())) {
            let e = (v - mi).exp_vectorised();
            *o = e;
            *si += e;
        }
    }
    if log {
        let lse: Vec<T> = m.iter().zip(&s).map(|(&mi, &si)| mi + si.ln()).collect();
        for (o_row, row) in out.chunks_exact_mut(inner).zip(xb.chunks_exact(inner)) {
            for ((o, &v), &l) in o_row.iter_mut().zip(row).zip(&lse) {
                *o = v - l;
            }
        }
    } else {
        let inv: Vec<T> = s.iter().map(|&si| T::ONE / si).collect();
        for o_row in out.chunks_exact_mut(inner) {
            for (o, &k) in o_row.iter_mut().zip(&inv) {
                *o *= k;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_axis_of_a_matrix() {
        let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2,3]
        assert_eq!(sum(&x, 1, 2, 3), vec![5.0, 7.0, 9.0]);
        assert_eq!(sum(&x, 2, 3, 1), vec![6.0, 15.0]);
        assert_eq!(max(&x, 1, 2, 3), vec![4.0, 5.0, 6.0]);
    }

    #[test]
    fn short_rows_sum_and_max_as_their_definition() {
        // pooling windows: many rows of 2 or 3 (split across tasks, and not), and rows at and
        // around the lanes' width
        for (outer, r) in [(40_000, 2), (5, 3), (700, 31), (700, 32), (3, 33), (4, 0)] {
            let x: Vec<f64> = (0..outer * r)
                .map(|i| ((i * 7919) % 1000) as f64 - 500.0)
                .collect();
            let sums = sum(&x, outer, r, 1);
            let maxima = max(&x, outer, r, 1);
            for o in 0..outer {
                let row = &x[o * r..(o + 1) * r];
                let want: f64 = row.iter().sum();
                assert!((sums[o] - want).abs() < 1e-9, "({outer}, {r}) row {o}");
                let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(maxima[o], top, "({outer}, {r}) row {o}");
            }
        }
    }

    #[test]
    fn softmax_matches_the_definition_along_any_axis() {
        // rows long enough for the lanes and a tail (inner 1), and columns (inner > 1)
        for (outer, r, inner) in [(3, 77, 1), (2, 9, 13), (1, 1, 4), (4, 5, 1)] {
            let n = outer * r * inner;
            let x: Vec<f64> = (0..n)
                .map(|k| ((k * 7919 % 1000) as f64 / 50.0) - 10.0)
                .collect();
            for log in [false, true] {
                let y = softmax(&x, outer, r, inner, log);
                let y32 = softmax(
                    &x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                    outer,
                    r,
                    inner,
                    log,
                );
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |j: usize| o * r * inner + j * inner + i;
                        let m = (0..r).map(|j| x[at(j)]).fold(f64::MIN, f64::max);
                        let s: f64 = (0..r).map(|j| (x[at(j)] - m).exp()).sum();
                        for j in 0..r {
                            let want = if log {
                                x[at(j)] - m - s.ln()
                            } else {
                                (x[at(j)] - m).exp() / s
                            };
                            assert!((y[at(j)] - want).abs() < 1e-13, "{outer} {r} {inner}");
                            let tol = 1e-5 * want.abs().max(1.0);
                            assert!((f64::from(y32[at(j)]) - want).abs() < tol, "f32");
                        }
                    }
                }
            }
        }
        // a NaN makes its own column NaN and no other
        let y = softmax(&[1.0f32, f32::NAN, 0.0, 2.0], 1, 2, 2, false);
        assert!(y[1].is_nan() && y[3].is_nan());
        assert!((y[0] + y[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn log_softmax_rows_normalise() {
        let x = [1.0f64, 2.0, 3.0, 1000.0, 1000.0, 1000.0];
        let y = softmax(&x, 2, 3, 1, true);
        for row in y.chunks(3) {
            let total: f64 = row.iter().map(|v| v.exp()).sum();
            assert!((total - 1.0).abs() < 1e-12);
        }
    }
}
