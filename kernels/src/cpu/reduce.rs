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
    let block = |(o, out_row): (usize, &mut [T])| {
        let base = o * r * inner;
        if inner == 1 {
            out_row[0] = fold_row(&x[base..base + r], init, f);
        } else {
            for j in 0..r {
                let row = &x[base + j * inner..base + (j + 1) * inner];
                for (acc, &v) in out_row.iter_mut().zip(row) {
                    *acc = f(*acc, v);
                }
            }
        }
    };
    if worth_splitting(x.len(), cost::ELEMENT_NS) && outer > 1 {
        out.par_chunks_mut(inner).enumerate().for_each(block);
    } else if worth_splitting(x.len(), cost::ELEMENT_NS) && inner > 1 {
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
    reduce(
        x,
        outer,
        r,
        inner,
        T::NEG_INFINITY,
        #[inline(always)]
        |a, b| {
            if b.is_nan() || b > a {
                b
            } else {
                a
            }
        },
    )
}

/// Softmax (or log-softmax) along the middle axis of a contiguous [outer, r, inner] buffer,
/// fused: one pass for the maximum, one for the normaliser, one to write.
pub fn softmax<T: Float>(x: &[T], outer: usize, r: usize, inner: usize, log: bool) -> Vec<T> {
    assert_eq!(
        x.len(),
        outer * r * inner,
        "softmax: buffer length does not match [outer, r, inner]"
    );
    let mut out = vec![T::ZERO; x.len()];
    let run = |(o, out_block): (usize, &mut [T])| {
        let xb = &x[o * r * inner..(o + 1) * r * inner];
        for i in 0..inner {
            let mut m = T::NEG_INFINITY;
            for j in 0..r {
                m = m.max(xb[j * inner + i]);
            }
            let mut s = T::ZERO;
            for j in 0..r {
                s += (xb[j * inner + i] - m).exp();
            }
            if log {
                let lse = m + s.ln();
                for j in 0..r {
                    out_block[j * inner + i] = xb[j * inner + i] - lse;
                }
            } else {
                let inv = T::ONE / s;
                for j in 0..r {
                    out_block[j * inner + i] = (xb[j * inner + i] - m).exp() * inv;
                }
            }
        }
    };
    let block = (r * inner).max(1);
    if worth_splitting(x.len(), cost::ELEMENT_NS) {
        out.par_chunks_mut(block).enumerate().for_each(run);
    } else {
        out.chunks_mut(block).enumerate().for_each(run);
    }
    out
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
    fn log_softmax_rows_normalise() {
        let x = [1.0f64, 2.0, 3.0, 1000.0, 1000.0, 1000.0];
        let y = softmax(&x, 2, 3, 1, true);
        for row in y.chunks(3) {
            let total: f64 = row.iter().map(|v| v.exp()).sum();
            assert!((total - 1.0).abs() < 1e-12);
        }
    }
}
