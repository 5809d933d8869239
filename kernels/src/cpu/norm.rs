//! Batch normalisation in training mode, fused: the statistics, the normalisation and the
//! affine map in one call forward, and the three gradients in one call backward, where the
//! composite of Tensor ops writes and reads back a dozen full-size temporaries.
//!
//! x is viewed as `[n, c, s]`: samples, channels, positions per channel (1 for `BatchNorm1d` on
//! [N, C]). For each channel, over its m = n·s values,
//!
//! ```text
//!   forward    μ = Σx / m,  σ² = Σ(x - μ)² / m (biased),  y = (x - μ) / √(σ² + ε) · w + b
//!   backward   db = Σdy,  dw = Σ dy (x - μ) / √(σ² + ε),
//!              dx = w / √(σ² + ε) · (dy - Σdy / m - (x - μ) / (σ² + ε) · Σ dy (x - μ) / m)
//! ```
//!
//! Sums run in f64 (two passes for the variance), so an f32 channel of any length keeps its
//! statistics to f32's precision; the elementwise passes run in the data's type. Channels are
//! split into blocks processed in parallel, each block summed in the same order whatever the
//! number of threads, so results do not depend on it.

use crate::cpu::parallel::{cost, worth_splitting};
use crate::cpu::vector;
use crate::float::Float;
use rayon::prelude::*;
use std::ops::Range;

/// y, the batch mean μ and the biased batch variance σ² (each `[c]`) of x `[n, c, s]`.
pub fn batch_norm_forward<T: Float>(
    x: &[T],
    weight: &[T],
    bias: &[T],
    (n, c, s): (usize, usize, usize),
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let dims = (n, c, s);
    check_lengths(
        "batch_norm_forward",
        x.len(),
        dims,
        &[weight.len(), bias.len()],
    );
    let m = (n * s) as f64;
    let mean: Vec<T> = channel_sums(dims, |block, acc| {
        for_each_band(x, None, dims, &block, |band, _| {
            add_row_sums(band, s, acc, |v, _| v.to_f64());
        })
    })
    .into_iter()
    .map(|[sum]| T::from_f64(sum / m))
    .collect();
    let var: Vec<f64> = channel_sums(dims, |block, acc| {
        let mu = &mean[block.clone()];
        for_each_band(x, None, dims, &block, |band, _| {
            add_row_sums(band, s, acc, |v, k| {
                let d = v.to_f64() - mu[k].to_f64();
                d * d
            });
        })
    })
    .into_iter()
    .map(|[sum]| sum / m)
    .collect();
    // y = (x - μ) · scale + b per channel, scale = w / √(σ² + ε)
    let scale: Vec<T> = (0..c)
        .map(|ch| T::from_f64(weight[ch].to_f64() / (var[ch] + eps).sqrt()))
        .collect();
    let y = map_samples(x, None, dims, |x, _, y| {
        if s == 1 {
            // one value per channel: a vector loop across the channels
            let channels = mean.iter().zip(&scale).zip(bias);
            for ((y, &x), ((&mu, &a), &b)) in y.iter_mut().zip(x).zip(channels) {
                *y = (x - mu) * a + b;
            }
            return;
        }
        for_each_channel_row(x, s, y, |ch, x, y| {
            let (mu, a, b) = (mean[ch], scale[ch], bias[ch]);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - mu) * a + b;
            }
        })
    });
    (y, mean, var.into_iter().map(T::from_f64).collect())
}

/// (dx, dw, db) of [`batch_norm_forward`] given dy (shaped like x) and the forward's μ and σ².
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<T: Float>(
    x: &[T],
    dy: &[T],
    weight: &[T],
    mean: &[T],
    var: &[T],
    (n, c, s): (usize, usize, usize),
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let dims = (n, c, s);
    let per_channel = [weight.len(), mean.len(), var.len()];
    check_lengths("batch_norm_backward", x.len(), dims, &per_channel);
    assert_eq!(
        dy.len(),
        x.len(),
        "batch_norm_backward: dy and x differ in length"
    );
    let m = (n * s) as f64;
    // per channel: Σdy and Σ dy (x - μ)
    let sums: Vec<[f64; 2]> = channel_sums(dims, |block, acc| {
        let mu = &mean[block.clone()];
        for_each_band(x, Some(dy), dims, &block, |band, grads| {
            add_row_pair_sums(band, grads, s, acc, mu);
        })
    });
    let invstd: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (v.to_f64() + eps).sqrt())
        .collect();
    // dx = a (dy - k1 - (x - μ) k2) with a = w/√(σ²+ε), k1 = Σdy/m, k2 = Σdy(x-μ)/(m(σ²+ε))
    let a: Vec<T> = (0..c)
        .map(|ch| T::from_f64(weight[ch].to_f64() * invstd[ch]))
        .collect();
    let k1: Vec<T> = sums
        .iter()
        .map(|&[sum_dy, _]| T::from_f64(sum_dy / m))
        .collect();
    let k2: Vec<T> = (0..c)
        .map(|ch| T::from_f64(sums[ch][1] / m * invstd[ch] * invstd[ch]))
        .collect();
    let dx = map_samples(x, Some(dy), dims, |x, dy, dx| {
        if s == 1 {
            let channels = mean.iter().zip(&a).zip(&k1).zip(&k2);
            for (((dx, &x), &g), (((&mu, &a), &k1), &k2)) in
                dx.iter_mut().zip(x).zip(dy).zip(channels)
            {
                *dx = a * (g - k1 - (x - mu) * k2);
            }
            return;
        }
        for_each_channel_row(x, s, dx, |ch, x, dx| {
            let (mu, a, k1, k2) = (mean[ch], a[ch], k1[ch], k2[ch]);
            let dy = &dy[ch * s..(ch + 1) * s];
            for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                *dx = a * (g - k1 - (x - mu) * k2);
            }
        })
    });
    let dw = (0..c)
        .map(|ch| T::from_f64(sums[ch][1] * invstd[ch]))
        .collect();
    let db = sums
        .iter()
        .map(|&[sum_dy, _]| T::from_f64(sum_dy))
        .collect();
    (dx, dw, db)
}

fn check_lengths(op: &str, len: usize, (n, c, s): (usize, usize, usize), per_channel: &[usize]) {
    assert_eq!(len, n * c * s, "{op}: {len} values for [{n}, {c}, {s}]");
    for &l in per_channel {
        assert_eq!(l, c, "{op}: a per-channel operand of {l} for {c} channels");
    }
}

/// Elements a block of channels should hold at least before the channels are split into blocks
/// summed in parallel.
const BLOCK_ELEMENTS: usize = 1 << 15;

/// K f64 sums per channel: `fill(block, acc)` adds a block of channels' sums into `acc`
/// (`block.len()` entries), blocks in parallel. The blocks depend only on the shape, and each
/// channel is summed in order over its samples, so the result does not depend on the threads.
fn channel_sums<const K: usize>(
    (n, c, s): (usize, usize, usize),
    fill: impl Fn(Range<usize>, &mut [[f64; K]]) + Sync,
) -> Vec<[f64; K]> {
    let per_block = (BLOCK_ELEMENTS / (n * s).max(1)).clamp(1, c.max(1));
    let blocks: Vec<Range<usize>> = (0..c)
        .step_by(per_block)
        .map(|c0| c0..(c0 + per_block).min(c))
        .collect();
    let run = |block: &Range<usize>| {
        let mut acc = vec![[0.0; K]; block.len()];
        vector::widest(
            #[inline(always)]
            || fill(block.clone(), &mut acc),
        );
        acc
    };
    let parts: Vec<Vec<[f64; K]>> =
        if blocks.len() > 1 && worth_splitting(n * c * s, cost::ELEMENT_NS) {
            blocks.par_iter().map(run).collect()
        } else {
            blocks.iter().map(run).collect()
        };
    parts.concat()
}

/// `f(band, other_band)` for each sample's slice of channels `block` (`block.len() · s` values;
/// `other_band` empty without `other`), samples in order.
#[inline(always)]
fn for_each_band<'a, T>(
    x: &'a [T],
    other: Option<&'a [T]>,
    (n, c, s): (usize, usize, usize),
    block: &Range<usize>,
    mut f: impl FnMut(&'a [T], &'a [T]),
) {
    for i in 0..n {
        let at = (i * c + block.start) * s..(i * c + block.end) * s;
        f(&x[at.clone()], other.map_or(&[][..], |o| &o[at]));
    }
}

/// acc[k][0] += Σ term(v, k) over row k of `band` (rows of s; k indexes the block's channels).
#[inline(always)]
fn add_row_sums<T: Float>(
    band: &[T],
    s: usize,
    acc: &mut [[f64; 1]],
    term: impl Fn(T, usize) -> f64,
) {
    if s == 1 {
        // one value per channel: a vector loop across the channels
        for (k, (a, &v)) in acc.iter_mut().zip(band).enumerate() {
            a[0] += term(v, k);
        }
        return;
    }
    for (k, (a, row)) in acc.iter_mut().zip(band.chunks_exact(s)).enumerate() {
        let mut lanes = [0.0f64; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail: f64 = chunks.remainder().iter().map(|&v| term(v, k)).sum();
        for chunk in chunks {
            for (l, &v) in lanes.iter_mut().zip(chunk) {
                *l += term(v, k);
            }
        }
        a[0] += lanes.iter().sum::<f64>() + tail;
    }
}

/// acc[k] += [Σ dy, Σ dy (x - μ_k)] over row k of the bands.
#[inline(always)]
fn add_row_pair_sums<T: Float>(x: &[T], dy: &[T], s: usize, acc: &mut [[f64; 2]], mu: &[T]) {
    if s == 1 {
        for (((a, &x), &g), &mu) in acc.iter_mut().zip(x).zip(dy).zip(mu) {
            let g = g.to_f64();
            a[0] += g;
            a[1] += g * (x.to_f64() - mu.to_f64());
        }
        return;
    }
    for (k, a) in acc.iter_mut().enumerate() {
        let (x, dy) = (&x[k * s..(k + 1) * s], &dy[k * s..(k + 1) * s]);
        let mu = mu[k].to_f64();
        let (mut sum, mut dot) = ([0.0f64; LANES], [0.0f64; LANES]);
        let (xc, dc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
        for (&x, &g) in xc.remainder().iter().zip(dc.remainder()) {
            a[0] += g.to_f64();
            a[1] += g.to_f64() * (x.to_f64() - mu);
        }
        for (xs, gs) in xc.zip(dc) {
            for l in 0..LANES {
                let g = gs[l].to_f64();
                sum[l] += g;
                dot[l] += g * (xs[l].to_f64() - mu);
            }
        }
        a[0] += sum.iter().sum::<f64>();
        a[1] += dot.iter().sum::<f64>();
    }
}

/// A new `[n, c, s]` buffer, each sample's `[c, s]` slab written by `f(x_slab, other_slab,
/// out_slab)` (`other_slab` empty without `other`), samples in parallel when large enough.
fn map_samples<T: Float>(
    x: &[T],
    other: Option<&[T]>,
    (n, c, s): (usize, usize, usize),
    f: impl Fn(&[T], &[T], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    let per_sample = (c * s).max(1);
    let sample = |(i, out): (usize, &mut [T])| {
        let at = i * per_sample..i * per_sample + out.len();
        let o = other.map_or(&[][..], |o| &o[at.clone()]);
        vector::widest(
            #[inline(always)]
            || f(&x[at], o, out),
        )
    };
    if n > 1 && worth_splitting(x.len(), cost::ELEMENT_NS) {
        out.par_chunks_mut(per_sample).enumerate().for_each(sample);
    } else {
        out.chunks_mut(per_sample).enumerate().for_each(sample);
    }
    out
}

/// `f(channel, x_row, out_row)` for each channel's row of s in a sample's slab.
#[inline(always)]
fn for_each_channel_row<T>(
    x: &[T],
    s: usize,
    out: &mut [T],
    mut f: impl FnMut(usize, &[T], &mut [T]),
) {
    for (ch, (x, out)) in x.chunks(s.max(1)).zip(out.chunks_mut(s.max(1))).enumerate() {
        f(ch, x, out);
    }
}

const LANES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions above, channel by channel, in f64.
    fn reference(
        x: &[f64],
        dy: &[f64],
        w: &[f64],
        b: &[f64],
        (n, c, s): (usize, usize, usize),
        eps: f64,
    ) -> [Vec<f64>; 5] {
        let m = (n * s) as f64;
        let values = |ch: usize, v: &[f64]| -> Vec<f64> {
            (0..n)
                .flat_map(|i| v[(i * c + ch) * s..(i * c + ch + 1) * s].to_vec())
                .collect()
        };
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut dw, mut db, mut means) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let (xs, gs) = (values(ch, x), values(ch, dy));
            let mu = xs.iter().sum::<f64>() / m;
            let var = xs.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / m;
            let sd = (var + eps).sqrt();
            let xhat: Vec<f64> = xs.iter().map(|v| (v - mu) / sd).collect();
            let mean_g = gs.iter().sum::<f64>() / m;
            let mean_gx = gs.iter().zip(&xhat).map(|(g, h)| g * h).sum::<f64>() / m;
            means[ch] = mu;
            db[ch] = gs.iter().sum();
            dw[ch] = mean_gx * m;
            for i in 0..n {
                for p in 0..s {
                    let (at, k) = ((i * c + ch) * s + p, i * s + p);
                    y[at] = xhat[k] * w[ch] + b[ch];
                    dx[at] = w[ch] / sd * (gs[k] - mean_g - xhat[k] * mean_gx);
                }
            }
        }
        [y, dx, dw, db, means]
    }

    fn values(len: usize, seed: u64) -> Vec<f64> {
        (0..len)
            .map(|i| {
                let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ seed);
                ((h >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 1.5
            })
            .collect()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "at {i}: {x} vs {y}");
        }
    }

    #[test]
    fn forward_and_backward_match_the_definitions() {
        // s = 1 (BatchNorm1d on [N, C]), a ragged s, and one large enough to go parallel
        for dims in [(5, 3, 1), (4, 2, 13), (64, 16, 49)] {
            let (n, c, s) = dims;
            assert!(n != 64 || worth_splitting(n * c * s, cost::ELEMENT_NS));
            let (x, dy) = (values(n * c * s, 1), values(n * c * s, 2));
            let (w, b) = (values(c, 3), values(c, 4));
            let [y, dx, dw, db, mean] = reference(&x, &dy, &w, &b, dims, 1e-5);
            let (y64, mean64, var64) = batch_norm_forward(&x, &w, &b, dims, 1e-5);
            close(&y64, &y, 1e-12);
            close(&mean64, &mean, 1e-12);
            let (dx64, dw64, db64) = batch_norm_backward(&x, &dy, &w, &mean64, &var64, dims, 1e-5);
            close(&dx64, &dx, 1e-11);
            close(&dw64, &dw, 1e-11);
            close(&db64, &db, 1e-11);
            // f32 to f32's precision
            let f = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let g = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let (y32, m32, v32) = batch_norm_forward(&f(&x), &f(&w), &f(&b), dims, 1e-5);
            close(&g(&y32), &y, 1e-5);
            let (dx32, dw32, _) =
                batch_norm_backward(&f(&x), &f(&dy), &f(&w), &m32, &v32, dims, 1e-5);
            close(&g(&dx32), &dx, 1e-4);
            close(&g(&dw32), &dw, 1e-4);
        }
    }
}
