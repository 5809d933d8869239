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
}
