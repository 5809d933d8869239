//! Fused loss kernels: a loss and its reduction in one pass, where the composite would write
//! several full-size temporaries.

use crate::cpu::vector;
use crate::float::Float;
use rayon::prelude::*;

/// Elements per task; partial sums are added in chunk order, so the result does not depend on
/// the number of threads.
const CHUNK: usize = 1 << 14;

/// Σᵢ softplus(xᵢ) - xᵢ tᵢ, binary cross-entropy with logits summed, for equally long `x` and
/// `t`. softplus(x) = max(x, 0) + ln(1 + e^-|x|), stable for any x.
pub fn bce_with_logits_sum<T: Float>(x: &[T], t: &[T]) -> T {
    assert_eq!(x.len(), t.len(), "bce_with_logits_sum: lengths differ");
    if x.len() <= CHUNK {
        return bce_chunk(x, t);
    }
    let partials: Vec<T> = x
        .par_chunks(CHUNK)
        .zip(t.par_chunks(CHUNK))
        .map(|(x, t)| bce_chunk(x, t))
        .collect();
    partials.into_iter().fold(T::ZERO, |a, b| a + b)
}

fn bce_chunk<T: Float>(x: &[T], t: &[T]) -> T {
    vector::widest(
        #[inline(always)]
        || bce_lanes(x, t),
    )
}

/// The sum in 16 interleaved partial sums (see `reduce::fold_row`).
#[inline(always)]
fn bce_lanes<T: Float>(x: &[T], t: &[T]) -> T {
    const LANES: usize = 16;
    let term = |x: T, t: T| x.max(T::ZERO) + (-x.abs()).exp_vectorised().ln_1p_vectorised() - x * t;
    let (xc, tc) = (x.chunks_exact(LANES), t.chunks_exact(LANES));
    let tail = xc
        .remainder()
        .iter()
        .zip(tc.remainder())
        .fold(T::ZERO, |s, (&x, &t)| s + term(x, t));
    let mut lanes = [T::ZERO; LANES];
    for (xs, ts) in xc.zip(tc) {
        for ((lane, &x), &t) in lanes.iter_mut().zip(xs).zip(ts) {
            *lane += term(x, t);
        }
    }
    lanes.iter().fold(tail, |s, &v| s + v)
}

/// Softmax cross-entropy along the middle axis of `x` [outer, r, inner], one class
/// `targets[o * inner + i]` (each below r) per position (o, i):
/// loss = logsumexp_k x[o, k, i] - x[o, t, i]. Returns the losses and the logsumexps, each
/// [outer, inner]; the backward reads the latter ([`softmax_cross_entropy_backward`]). One
/// pass for the maxima and one for the sums, where log-softmax then a gather would write a full
/// [outer, r, inner] temporary.
pub fn softmax_cross_entropy<T: Float>(
    x: &[T],
    (outer, r, inner): (usize, usize, usize),
    targets: &[usize],
) -> (Vec<T>, Vec<T>) {
    assert_eq!(
        x.len(),
        outer * r * inner,
        "softmax_cross_entropy: x is not [outer, r, inner]"
    );
    assert_eq!(
        targets.len(),
        outer * inner,
        "softmax_cross_entropy: one target per position"
    );
    assert!(
        targets.iter().all(|&t| t < r),
        "softmax_cross_entropy: a target is out of range"
    );
    let inner = inner.max(1);
    let mut loss = vec![T::ZERO; outer * inner];
    let mut lse = vec![T::ZERO; outer * inner];
    let run = |(o, (loss, lse)): (usize, (&mut [T], &mut [T]))| {
        let block = &x[o * r * inner..(o + 1) * r * inner];
        let m = &mut vec![T::NEG_INFINITY; inner];
        for row in block.chunks_exact(inner) {
            for (mi, &v) in m.iter_mut().zip(row) {
                *mi = if v > *mi || v.is_nan() { v } else { *mi };
            }
        }
        let s = &mut vec![T::ZERO; inner];
        for row in block.chunks_exact(inner) {
            for ((si, &v), &mi) in s.iter_mut().zip(row).zip(m.iter()) {
                *si += (v - mi).exp_vectorised();
            }
        }
        for i in 0..inner {
            let l = m[i] + s[i].ln();
            lse[i] = l;
            loss[i] = l - block[targets[o * inner + i] * inner + i];
        }
    };
    if outer * r * inner >= CHUNK {
        loss.par_chunks_mut(inner)
            .zip(lse.par_chunks_mut(inner))
            .enumerate()
            .for_each(run);
    } else {
        loss.chunks_mut(inner)
            .zip(lse.chunks_mut(inner))
            .enumerate()
            .for_each(run);
    }
    (loss, lse)
}

/// The gradient of [`softmax_cross_entropy`] with respect to `x`, given the gradient `grad` of
/// each position's loss and the logsumexps `lse` it returned:
/// dx[o, k, i] = grad[o, i] (exp(x[o, k, i] - lse[o, i]) - [k = t[o, i]]), in one pass.
pub fn softmax_cross_entropy_backward<T: Float>(
    x: &[T],
    (outer, r, inner): (usize, usize, usize),
    targets: &[usize],
    lse: &[T],
    grad: &[T],
) -> Vec<T> {
    assert_eq!(
        x.len(),
        outer * r * inner,
        "softmax_cross_entropy_backward: x is not [outer, r, inner]"
    );
    assert!(
        targets.len() == outer * inner && lse.len() == outer * inner && grad.len() == outer * inner,
        "softmax_cross_entropy_backward: targets, lse and grad need one value per position"
    );
    let inner = inner.max(1);
    let mut dx = vec![T::ZERO; x.len()];
    let block = (r * inner).max(1);
    let run = |(o, out): (usize, &mut [T])| {
        let xb = &x[o * block..(o + 1) * block];
        let (l, g) = (
            &lse[o * inner..(o + 1) * inner],
            &grad[o * inner..(o + 1) * inner],
        );
        for (row_out, row) in out.chunks_exact_mut(inner).zip(xb.chunks_exact(inner)) {
            for (((d, &v), &li), &gi) in row_out.iter_mut().zip(row).zip(l).zip(g) {
                *d = gi * (v - li).exp_vectorised();
            }
        }
        for i in 0..inner {
            out[targets[o * inner + i] * inner + i] -= g[i];
        }
    };
    if x.len() >= CHUNK {
        dx.par_chunks_mut(block).enumerate().for_each(run);
    } else {
        dx.chunks_mut(block).enumerate().for_each(run);
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_term_by_term_sum() {
        let n = 100_003;
        let x: Vec<f64> = (0..n)
            .map(|i| ((i * 7919 % 2001) as f64 - 1000.0) / 40.0)
            .collect();
        let t: Vec<f64> = (0..n).map(|i| (i % 3) as f64 / 2.0).collect();
        let want: f64 = x
            .iter()
            .zip(&t)
            .map(|(&x, &t)| x.max(0.0) + (-x.abs()).exp().ln_1p() - x * t)
            .sum();
        let got = bce_with_logits_sum(&x, &t);
        assert!((got - want).abs() <= 1e-9 * want.abs(), "{got} vs {want}");
        // saturated logits stay finite
        assert!(bce_with_logits_sum(&[1e4f32, -1e4], &[0.0, 1.0]) == 2e4);
    }

    #[test]
    fn softmax_cross_entropy_matches_the_definition() {
        // along a middle axis (inner > 1) and the last (inner 1), with large logits
        for (outer, r, inner) in [(3, 5, 4), (2, 7, 1), (1, 256, 9)] {
            let x: Vec<f64> = (0..outer * r * inner)
                .map(|i| ((i * 7919 % 1001) as f64 - 500.0) / 7.0)
                .collect();
            let t: Vec<usize> = (0..outer * inner).map(|i| (i * 31) % r).collect();
            let g: Vec<f64> = (0..outer * inner).map(|i| 0.5 + i as f64 / 3.0).collect();
            let (loss, lse) = softmax_cross_entropy(&x, (outer, r, inner), &t);
            let dx = softmax_cross_entropy_backward(&x, (outer, r, inner), &t, &lse, &g);
            for o in 0..outer {
                for i in 0..inner {
                    let at = |k: usize| x[(o * r + k) * inner + i];
                    let m = (0..r).map(at).fold(f64::NEG_INFINITY, f64::max);
                    let want_lse = m + (0..r).map(|k| (at(k) - m).exp()).sum::<f64>().ln();
                    let p = o * inner + i;
                    assert!((lse[p] - want_lse).abs() < 1e-12);
                    assert!((loss[p] - (want_lse - at(t[p]))).abs() < 1e-12);
                    for k in 0..r {
                        let want =
                            g[p] * ((at(k) - want_lse).exp() - if k == t[p] { 1.0 } else { 0.0 });
                        assert!(
                            (dx[(o * r + k) * inner + i] - want).abs() < 1e-12,
                            "{o} {k} {i}"
                        );
                    }
                }
            }
        }
    }
}
