//! Stride-1 convolutions with few output channels, such as an image head (a 7 x 7 convolution
//! from 32 feature planes to 1 or 3 image planes), computed without im2col.
//!
//! Through im2col every element of the column matrix (c_in · taps x positions) is gathered and
//! packed to serve only c_out multiply-adds; with 3 outputs the packing costs more than the
//! arithmetic, and the micro-kernel's 8 rows are mostly padding. Here each input plane is
//! copied once, zero-padded to width wp = pl + w + pr, and every tap reads it at an offset:
//!
//! ```text
//!   grid[o][q] = Σ_c Σ_(i,j) w[o, c, i, j] · xp[c][q + i·wp + j]        q = oh·wp + ow
//!   dW[o, c, i, j] = Σ_q dy_grid[o][q] · xp[c][q + i·wp + j]
//! ```
//!
//! The output is computed on the padded width (the columns ow ≥ wo are dropped, and read as
//! zeros of dy for the weight gradient), so a tap is one long run of positions rather than a
//! short run per output row. A strip of positions for every output channel stays in registers
//! while all taps of all input channels are added into it.
//!
//! The input gradient is a convolution of dy with the flipped kernel and the two channel axes
//! swapped ([`flipped`]): its outputs are the c_in planes, many, so it takes the im2col path
//! with a short inner dimension (c_out · taps) instead of the product of inner size c_out that
//! the transposed form would run.

use crate::cpu::scratch::Scratch;
use crate::cpu::vector::widest;
use crate::desc::conv::ConvGeometry;
use crate::float::Float;
use rayon::prelude::*;

/// At most this many output channels take the direct path.
const MAX_OUTPUTS: usize = 4;

/// Positions of a strip (four AVX-512 vectors of f32).
const STRIP: usize = 64;

/// True for the convolutions computed here: one group, stride and dilation 1, at most
/// [`MAX_OUTPUTS`] output channels, more than one tap (a 1x1 convolution's columns are its
/// input, with nothing to gather), and enough multiply-adds per output for the strip to pay.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.groups == 1
        && g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.c_out <= MAX_OUTPUTS
        && g.taps.len() > 1
        && g.k_per_group() >= 16
        && !g.is_empty()
}

/// True when the input gradient may be taken as [`flipped`]'s forward convolution: as
/// [`applies`], and no side padded by a whole kernel (the flipped convolution's padding,
/// kernel - 1 - pad, must not be negative).
pub(super) fn input_grad_applies(g: &ConvGeometry) -> bool {
    let (pt, pb, pl, pr) = g.pad;
    applies(g) && pt < g.kh && pb < g.kh && pl < g.kw && pr < g.kw
}

/// The padded planes' layout and the taps' offsets into them.
struct Layout {
    /// Padded width, pl + w + pr.
    wp: usize,
    /// Grid positions computed: ho·wp rounded up to whole strips.
    positions: usize,
    /// Elements of one padded plane, with room for the last strip's furthest tap.
    plane: usize,
    /// Per active tap (i, j): i·wp + j.
    offsets: Vec<usize>,
}

impl Layout {
    fn of(g: &ConvGeometry) -> Layout {
        let wp = g.pad.2 + g.w + g.pad.3;
        let positions = (g.ho * wp).next_multiple_of(STRIP);
        Layout {
            wp,
            positions,
            plane: positions + (g.kh - 1) * wp + g.kw - 1,
            offsets: g.taps.iter().map(|&(i, j)| i * wp + j).collect(),
        }
    }

    /// One sample's c_in planes [c_in, h, w] copied into zero-padded planes.
    fn pad_input<T: Float>(&self, x: &[T], g: &ConvGeometry, out: &mut [T]) {
        out.fill(T::ZERO);
        let (pt, pl) = (g.pad.0, g.pad.2);
        for (src, dst) in x
            .chunks_exact(g.h * g.w)
            .zip(out.chunks_exact_mut(self.plane))
        {
            for (r, row) in src.chunks_exact(g.w).enumerate() {
                let at = (r + pt) * self.wp + pl;
                dst[at..at + g.w].copy_from_slice(row);
            }
        }
    }
}

/// The weights [c_out, k] as [k][c_out]: the outputs' weights of one (channel, tap) adjacent.
fn by_tap<T: Float>(w_active: &[T], g: &ConvGeometry) -> Vec<T> {
    let k = g.k_per_group();
    (0..k)
        .flat_map(|ct| (0..g.c_out).map(move |o| w_active[o * k + ct]))
        .collect()
}

/// y = conv(x, w) for the convolutions [`applies`] accepts: x [n, c_in, h, w], w_active
/// [c_out, c_in · T] -> y [n, c_out, ho, wo].
pub(super) fn forward<T: Float>(x: &[T], w_active: &[T], g: &ConvGeometry) -> Vec<T> {
    match g.c_out {
        1 => forward_with::<T, 1>(x, w_active, g),
        2 => forward_with::<T, 2>(x, w_active, g),
        3 => forward_with::<T, 3>(x, w_active, g),
        _ => forward_with::<T, 4>(x, w_active, g),
    }
}

fn forward_with<T: Float, const OUT: usize>(x: &[T], w_active: &[T], g: &ConvGeometry) -> Vec<T> {
    debug_assert_eq!(g.c_out, OUT);
    let layout = Layout::of(g);
    let weights = by_tap(w_active, g);
    let (l, wp) = (g.out_positions(), layout.wp);
    let mut y = vec![T::ZERO; g.n * g.out_size()];
    y.par_chunks_mut(g.out_size())
        .zip(x.par_chunks(g.in_size()))
        .for_each(|(y, x)| {
            let mut padded = Scratch::take(g.c_in * layout.plane);
            layout.pad_input(x, g, padded.as_mut_slice());
            let padded = padded.as_slice();
            for q0 in (0..layout.positions).step_by(STRIP) {
                let acc = widest(
                    #[inline(always)]
                    || strip_sums::<T, OUT>(padded, &weights, &layout, q0),
                );
                for (s, q) in (q0..q0 + STRIP).enumerate() {
                    let (oh, ow) = (q / wp, q % wp);
                    if oh < g.ho && ow < g.wo {
                        for (o, sums) in acc.iter().enumerate() {
                            y[o * l + oh * g.wo + ow] = sums[s];
                        }
                    }
                }
            }
        });
    y
}

/// One strip of the grid, every output channel: Σ over channels and taps of the weight times
/// the padded plane read at the tap's offset.
#[inline(always)]
fn strip_sums<T: Float, const OUT: usize>(
    padded: &[T],
    weights: &[T],
    layout: &Layout,
    q0: usize,
) -> [[T; STRIP]; OUT] {
    let mut acc = [[T::ZERO; STRIP]; OUT];
    let taps = layout.offsets.len();
    for (plane, w_channel) in padded
        .chunks_exact(layout.plane)
        .zip(weights.chunks_exact(taps * OUT))
    {
        for (&offset, w) in layout.offsets.iter().zip(w_channel.chunks_exact(OUT)) {
            let xs: &[T; STRIP] = plane[q0 + offset..q0 + offset + STRIP]
                .try_into()
                .expect("a strip");
            for (sums, &w) in acc.iter_mut().zip(w) {
                for (a, &v) in sums.iter_mut().zip(xs) {
                    *a += w * v;
                }
            }
        }
    }
    acc
}

/// dW = Σₙ Σ_q dy[n] · xp[n] at each tap's offset, for the convolutions [`applies`] accepts:
/// -> [c_out, c_in · T] (active taps). Each sample's sum is its own; they are added in sample
/// order, so the bits do not depend on the thread count.
pub(super) fn weight_grad<T: Float>(x: &[T], dy: &[T], g: &ConvGeometry) -> Vec<T> {
    match g.c_out {
        1 => weight_grad_with::<T, 1>(x, dy, g),
        2 => weight_grad_with::<T, 2>(x, dy, g),
        3 => weight_grad_with::<T, 3>(x, dy, g),
        _ => weight_grad_with::<T, 4>(x, dy, g),
    }
}

fn weight_grad_with<T: Float, const OUT: usize>(x: &[T], dy: &[T], g: &ConvGeometry) -> Vec<T> {
    let layout = Layout::of(g);
    let (k, l, wp) = (g.k_per_group(), g.out_positions(), layout.wp);
    let partials: Vec<Vec<T>> = x
        .par_chunks(g.in_size())
        .zip(dy.par_chunks(g.out_size()))
        .map(|(x, dy)| {
            let mut padded = Scratch::take(g.c_in * layout.plane);
            layout.pad_input(x, g, padded.as_mut_slice());
            // dy on the grid: zero in the columns past wo and the positions past ho·wp
            let mut grid = vec![T::ZERO; OUT * layout.positions];
            for (o, plane) in grid.chunks_exact_mut(layout.positions).enumerate() {
                for oh in 0..g.ho {
                    let src = o * l + oh * g.wo;
                    plane[oh * wp..oh * wp + g.wo].copy_from_slice(&dy[src..src + g.wo]);
                }
            }
            let mut dw = vec![T::ZERO; OUT * k];
            let taps = layout.offsets.len();
            for (c, plane) in padded.as_slice().chunks_exact(layout.plane).enumerate() {
                for (t, &offset) in layout.offsets.iter().enumerate() {
                    let sums = widest(
                        #[inline(always)]
                        || tap_dots::<T, OUT>(&grid, &plane[offset..], layout.positions),
                    );
                    for (o, s) in sums.into_iter().enumerate() {
                        dw[o * k + c * taps + t] = s;
                    }
                }
            }
            dw
        })
        .collect();
    super::sum_in_order(&partials, OUT * k)
}

/// Per output channel o: Σ_q grid[o][q] · xs[q] over the `positions` grid positions, summed a
/// strip at a time in lanes and the lanes then in order.
#[inline(always)]
fn tap_dots<T: Float, const OUT: usize>(grid: &[T], xs: &[T], positions: usize) -> [T; OUT] {
    let mut acc = [[T::ZERO; STRIP]; OUT];
    for q0 in (0..positions).step_by(STRIP) {
        let x: &[T; STRIP] = xs[q0..q0 + STRIP].try_into().expect("a strip");
        for (o, lanes) in acc.iter_mut().enumerate() {
            let d: &[T; STRIP] = grid[o * positions + q0..o * positions + q0 + STRIP]
                .try_into()
                .expect("a strip");
            for ((a, &dv), &xv) in lanes.iter_mut().zip(d).zip(x) {
                *a += dv * xv;
            }
        }
    }
    acc.map(|lanes| lanes.into_iter().fold(T::ZERO, |s, v| s + v))
}

/// The input gradient's convolution: dx = conv(dy, w') with w'[c, o, i', j'] = w[o, c, kh-1-i',
/// kw-1-j'] and padding kernel - 1 - pad on each side, for the convolutions
/// [`input_grad_applies`] accepts. Returns its geometry and active weights [c_in, c_out · T]
/// (the flipped taps, which are in row-major order again).
pub(super) fn flipped<T: Float>(w_active: &[T], g: &ConvGeometry) -> (ConvGeometry, Vec<T>) {
    let (pt, pb, pl, pr) = g.pad;
    let taps: Vec<(usize, usize)> = g
        .taps
        .iter()
        .rev()
        .map(|&(i, j)| (g.kh - 1 - i, g.kw - 1 - j))
        .collect();
    let t = taps.len();
    let k = g.k_per_group();
    let weights = (0..g.c_in)
        .flat_map(|c| {
            (0..g.c_out)
                .flat_map(move |o| (0..t).map(move |tf| w_active[o * k + c * t + (t - 1 - tf)]))
        })
        .collect();
    let geometry = ConvGeometry {
        n: g.n,
        c_in: g.c_out,
        h: g.ho,
        w: g.wo,
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        stride: (1, 1),
        pad: (g.kh - 1 - pt, g.kh - 1 - pb, g.kw - 1 - pl, g.kw - 1 - pr),
        dilation: (1, 1),
        groups: 1,
        ho: g.h,
        wo: g.w,
        taps,
    };
    (geometry, weights)
}
