//! The pointwise part of an LSTM cell, fused: one pass forward, one pass backward.
//!
//! The gates arrive pre-activation as one row of 4H values per sample, in PyTorch's order
//! (input i, forget f, cell candidate g, output o), each block H wide. With σ the logistic
//! sigmoid:
//!
//! ```text
//!   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//!   c' = f ⊙ c + i ⊙ g
//!   h' = o ⊙ tanh(c')
//! ```
//!
//! The forward writes `[h' | c']` per row (a [B, 2H] buffer). The backward recomputes the
//! activations from the pre-activation gates (cheaper than storing them: five transcendental
//! functions per hidden unit against reading and writing 4H more values) and reads c' from
//! the forward's output. Given the upstream gradients dh' and dc' (also one `[dh' | dc']` row
//! per sample):
//!
//! ```text
//!   dc  = dc' + dh' ⊙ o ⊙ (1 - tanh²(c'))        (the total gradient reaching c')
//!   da_o = dh' ⊙ tanh(c') ⊙ o (1 - o)
//!   da_i = dc ⊙ g ⊙ i (1 - i)
//!   da_f = dc ⊙ c ⊙ f (1 - f)
//!   da_g = dc ⊙ i ⊙ (1 - g²)
//!   dc_prev = dc ⊙ f
//! ```
//!
//! Rows run in parallel with rayon once there is enough work. Inputs are [`Rows`]: each row
//! contiguous, rows any distance apart, so a column slice (the c' half of a `[h' | c']` buffer)
//! is read in place. For f32 the activations are branch-free approximations (exp by range
//! reduction and a polynomial, a few ulp): with AVX-512 the row loops are explicit intrinsics
//! (16 lanes, reciprocal estimates instead of divisions); otherwise portable loops over
//! equal-length slices that the compiler vectorises, built a second time for AVX2+FMA and
//! chosen at run time. f64 (the gradient checks' type) uses the exact library functions.

use crate::cpu::parallel::{cost, worth_splitting};
use crate::cpu::vector::{has_avx2_fma, has_avx512};
use crate::float::Float;
use rayon::prelude::*;

/// The element types of the fused LSTM kernels: how each computes σ and tanh.
pub trait LstmFloat: Float {
    /// True when the activations are branch-free, so worth the portable loop's AVX2 build.
    const VECTOR_ACTIVATIONS: bool;
    /// The logistic sigmoid 1 / (1 + e^-x).
    fn lstm_sigmoid(self) -> Self;
    /// The hyperbolic tangent.
    fn lstm_tanh(self) -> Self;
    /// Runs [`lstm_cell_forward`]'s row loop with explicit SIMD when this type has such a loop
    /// and the CPU runs it; returns false (having done nothing) otherwise.
    fn forward_rows_simd(
        _hidden: usize,
        _gates: Rows<Self>,
        _c_prev: Rows<Self>,
        _out: &mut [Self],
    ) -> bool {
        false
    }
    /// [`lstm_cell_backward`]'s row loop with explicit SIMD, as
    /// [`LstmFloat::forward_rows_simd`].
    #[allow(clippy::too_many_arguments)]
    fn backward_rows_simd(
        _hidden: usize,
        _gates: Rows<Self>,
        _c_prev: Rows<Self>,
        _out: Rows<Self>,
        _grad_out: Rows<Self>,
        _grad_gates: &mut [Self],
        _grad_c_prev: &mut [Self],
    ) -> bool {
        false
    }
}

impl LstmFloat for f64 {
    const VECTOR_ACTIVATIONS: bool = false;
    #[inline(always)]
    fn lstm_sigmoid(self) -> f64 {
        // split by sign so that e^x never overflows
        if self >= 0.0 {
            1.0 / (1.0 + (-self).exp())
        } else {
            let e = self.exp();
            e / (1.0 + e)
        }
    }
    #[inline(always)]
    fn lstm_tanh(self) -> f64 {
        self.tanh()
    }
}

impl LstmFloat for f32 {
    const VECTOR_ACTIVATIONS: bool = true;
    #[inline(always)]
    fn lstm_sigmoid(self) -> f32 {
        1.0 / (1.0 + exp_f32(-self))
    }
    #[inline(always)]
    fn lstm_tanh(self) -> f32 {
        tanh_f32(self)
    }
    fn forward_rows_simd(
        hidden: usize,
        gates: Rows<f32>,
        c_prev: Rows<f32>,
        out: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { avx512::forward_rows(hidden, gates, c_prev, out) };
            return true;
        }
        let _ = (hidden, gates, c_prev, out);
        false
    }
    fn backward_rows_simd(
        hidden: usize,
        gates: Rows<f32>,
        c_prev: Rows<f32>,
        out: Rows<f32>,
        grad_out: Rows<f32>,
        grad_gates: &mut [f32],
        grad_c_prev: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe {
                avx512::backward_rows(
                    hidden,
                    gates,
                    c_prev,
                    out,
                    grad_out,
                    grad_gates,
                    grad_c_prev,
                )
            };
            return true;
        }
        let _ = (
            hidden,
            gates,
            c_prev,
            out,
            grad_out,
            grad_gates,
            grad_c_prev,
        );
        false
    }
}

/// e^x for f32 without branches: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-7
/// polynomial, 2^n put into the exponent bits. The argument is clamped to [-87, 88], where
/// the result stays a normal float (e^-87 ~ 1.6e-38 stands in for anything smaller, e^88 for
/// anything larger: σ and tanh only need the limits).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split into a part exact in f32 and the rest (Cody & Waite)
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // adding and subtracting 1.5 * 2^23 rounds to the nearest integer
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Horner in r of the Taylor series of e^r to degree 7 (error below 2^-24 on |r| <= ln2/2)
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // n sits in the low mantissa bits of `shifted` (whose bits are those of 1.5 * 2^23 + n):
    // 2^n's bits are (n + 127) << 23, integer arithmetic that vectorises (a float-to-int cast
    // would not: it saturates)
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// tanh for f32 without branches: an odd polynomial for |x| < 0.625 (Cephes' tanhf, where
/// 1 - 2 / (e^2x + 1) would lose digits to cancellation) and 1 - 2 / (e^2|x| + 1) with x's sign
/// beyond.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let s = x * x;
    let p = -5.704_988_7e-3 * s + 2.063_909e-2;
    let p = p * s - 5.373_971_6e-2;
    let p = p * s + 1.333_144_2e-1;
    let p = p * s - 3.333_328e-1;
    let small = p * s * x + x;
    let large = 1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0);
    let large = large.copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

/// Hidden units per rayon task.
const UNITS_PER_TASK: usize = 4096;

fn rows_per_task(batch: usize, hidden: usize) -> usize {
    if !worth_splitting(batch * hidden, cost::LSTM_UNIT_NS) || hidden == 0 {
        batch.max(1)
    } else {
        UNITS_PER_TASK.div_ceil(hidden).clamp(1, batch.max(1))
    }
}

/// Read-only rows of a row-major matrix whose rows may be spaced further apart than their
/// width (a column slice of a wider matrix, such as the c' half of `[h' | c']`): row r starts at
/// `data[r * stride]`. The kernels know each operand's width.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a, T> {
    pub data: &'a [T],
    pub stride: usize,
}

impl<'a, T> Rows<'a, T> {
    /// Rows stored back to back, `width` apart.
    pub fn contiguous(data: &'a [T], width: usize) -> Rows<'a, T> {
        Rows {
            data,
            stride: width,
        }
    }

    /// Row r, `width` wide.
    #[inline(always)]
    fn row(&self, r: usize, width: usize) -> &'a [T] {
        &self.data[r * self.stride..r * self.stride + width]
    }

    /// The rows from `first` on.
    fn skip(self, first: usize) -> Rows<'a, T> {
        let start = (first * self.stride).min(self.data.len());
        Rows {
            data: &self.data[start..],
            stride: self.stride,
        }
    }

    fn check(&self, op: &str, name: &str, batch: usize, width: usize) {
        let need = if batch == 0 || width == 0 {
            0
        } else {
            (batch - 1) * self.stride + width
        };
        assert!(
            self.stride >= width && self.data.len() >= need,
            "{op}: {name} holds {} values with row stride {}, too few for {batch} rows of {width}",
            self.data.len(),
            self.stride
        );
    }
}

fn check_output(op: &str, name: &str, len: usize, batch: usize, width: usize) {
    assert_eq!(
        len,
        batch * width,
        "{op}: {name} has {len} values, expected {batch} rows of {width}"
    );
}

/// The fused forward. `gates` holds rows of 4H pre-activations (order i, f, g, o), `c_prev` rows
/// of H; writes `out` [batch, 2H] (contiguous), each row h' then c'.
pub fn lstm_cell_forward<T: LstmFloat>(
    batch: usize,
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: &mut [T],
) {
    forward_checked("lstm_cell_forward", batch, hidden, gates, c_prev, out, true)
}

/// [`lstm_cell_forward`] on the calling thread only, for callers that already run one block of
/// rows per thread (an LSTM sequence split by batch rows).
pub fn lstm_cell_forward_serial<T: LstmFloat>(
    batch: usize,
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: &mut [T],
) {
    forward_checked(
        "lstm_cell_forward_serial",
        batch,
        hidden,
        gates,
        c_prev,
        out,
        false,
    )
}

/// The forward's shape checks, then its rows: split across threads when `parallel` and there
/// are enough of them.
fn forward_checked<T: LstmFloat>(
    op: &str,
    batch: usize,
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: &mut [T],
    parallel: bool,
) {
    let h = hidden;
    gates.check(op, "gates", batch, 4 * h);
    c_prev.check(op, "c_prev", batch, h);
    check_output(op, "out", out.len(), batch, 2 * h);
    if batch == 0 || h == 0 {
        return;
    }
    let rows = if parallel {
        rows_per_task(batch, h)
    } else {
        batch
    };
    if rows >= batch {
        forward_rows(h, gates, c_prev, out);
    } else {
        out.par_chunks_mut(rows * 2 * h)
            .enumerate()
            .for_each(|(k, o)| {
                let first = k * rows;
                forward_rows(h, gates.skip(first), c_prev.skip(first), o)
            });
    }
}

/// The fused backward. `gates` (rows of 4H) and `c_prev` (rows of H) are the forward's inputs,
/// `out` (rows of 2H: h', c') its output and `grad_out` (rows of 2H: dh', dc') the gradient with
/// respect to that output. Writes `grad_gates` [batch, 4H] and `grad_c_prev` [batch, H], both
/// contiguous.
#[allow(clippy::too_many_arguments)]
pub fn lstm_cell_backward<T: LstmFloat>(
    batch: usize,
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: Rows<T>,
    grad_out: Rows<T>,
    grad_gates: &mut [T],
    grad_c_prev: &mut [T],
) {
    const OP: &str = "lstm_cell_backward";
    let h = hidden;
    gates.check(OP, "gates", batch, 4 * h);
    c_prev.check(OP, "c_prev", batch, h);
    out.check(OP, "out", batch, 2 * h);
    grad_out.check(OP, "grad_out", batch, 2 * h);
    check_output(OP, "grad_gates", grad_gates.len(), batch, 4 * h);
    check_output(OP, "grad_c_prev", grad_c_prev.len(), batch, h);
    if batch == 0 || h == 0 {
        return;
    }
    let rows = rows_per_task(batch, h);
    if rows >= batch {
        backward_rows(h, gates, c_prev, out, grad_out, grad_gates, grad_c_prev);
    } else {
        grad_gates
            .par_chunks_mut(rows * 4 * h)
            .zip(grad_c_prev.par_chunks_mut(rows * h))
            .enumerate()
            .for_each(|(k, (dg, dc))| {
                let first = k * rows;
                backward_rows(
                    h,
                    gates.skip(first),
                    c_prev.skip(first),
                    out.skip(first),
                    grad_out.skip(first),
                    dg,
                    dc,
                )
            });
    }
}

// ----- per-row loops, compiled twice for f32 (baseline and AVX2+FMA) ---------------------------
// Each handles out.len() / (2H) (forward) or grad_c_prev.len() / H (backward) rows.

fn forward_rows<T: LstmFloat>(hidden: usize, gates: Rows<T>, c_prev: Rows<T>, out: &mut [T]) {
    if T::forward_rows_simd(hidden, gates, c_prev, out) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if T::VECTOR_ACTIVATIONS && has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time just above).
        unsafe { forward_rows_avx2(hidden, gates, c_prev, out) };
        return;
    }
    forward_rows_inline(hidden, gates, c_prev, out)
}

#[allow(clippy::too_many_arguments)]
fn backward_rows<T: LstmFloat>(
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: Rows<T>,
    grad_out: Rows<T>,
    grad_gates: &mut [T],
    grad_c_prev: &mut [T],
) {
    if T::backward_rows_simd(
        hidden,
        gates,
        c_prev,
        out,
        grad_out,
        grad_gates,
        grad_c_prev,
    ) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if T::VECTOR_ACTIVATIONS && has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time just above).
        unsafe {
            backward_rows_avx2(
                hidden,
                gates,
                c_prev,
                out,
                grad_out,
                grad_gates,
                grad_c_prev,
            )
        };
        return;
    }
    backward_rows_inline(
        hidden,
        gates,
        c_prev,
        out,
        grad_out,
        grad_gates,
        grad_c_prev,
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_rows_avx2<T: LstmFloat>(
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: &mut [T],
) {
    forward_rows_inline(hidden, gates, c_prev, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_rows_avx2<T: LstmFloat>(
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: Rows<T>,
    grad_out: Rows<T>,
    grad_gates: &mut [T],
    grad_c_prev: &mut [T],
) {
    backward_rows_inline(
        hidden,
        gates,
        c_prev,
        out,
        grad_out,
        grad_gates,
        grad_c_prev,
    )
}

#[inline(always)]
fn forward_rows_inline<T: LstmFloat>(
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: &mut [T],
) {
    let h = hidden;
    for (r, y) in out.chunks_exact_mut(2 * h).enumerate() {
        // every slice exactly h long, so that the loop below has no bounds checks
        let a = gates.row(r, 4 * h);
        let (ai, af, ag, ao) = (&a[..h], &a[h..2 * h], &a[2 * h..3 * h], &a[3 * h..4 * h]);
        let cp = c_prev.row(r, h);
        let (yh, yc) = y.split_at_mut(h);
        let (yh, yc) = (&mut yh[..h], &mut yc[..h]);
        for j in 0..h {
            let i = ai[j].lstm_sigmoid();
            let f = af[j].lstm_sigmoid();
            let g = ag[j].lstm_tanh();
            let o = ao[j].lstm_sigmoid();
            let c = f * cp[j] + i * g;
            yc[j] = c;
            yh[j] = o * c.lstm_tanh();
        }
    }
}

#[inline(always)]
fn backward_rows_inline<T: LstmFloat>(
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: Rows<T>,
    grad_out: Rows<T>,
    grad_gates: &mut [T],
    grad_c_prev: &mut [T],
) {
    let h = hidden;
    let one = T::ONE;
    let rows = grad_gates
        .chunks_exact_mut(4 * h)
        .zip(grad_c_prev.chunks_exact_mut(h))
        .enumerate();
    for (r, (da, dcp)) in rows {
        // every slice exactly h long, so that the loop below has no bounds checks
        let a = gates.row(r, 4 * h);
        let (ai, af, ag, ao) = (&a[..h], &a[h..2 * h], &a[2 * h..3 * h], &a[3 * h..4 * h]);
        let cp = c_prev.row(r, h);
        let yc = &out.row(r, 2 * h)[h..2 * h];
        let dy = grad_out.row(r, 2 * h);
        let (dyh, dyc) = (&dy[..h], &dy[h..2 * h]);
        let (dai, rest) = da.split_at_mut(h);
        let (daf, rest) = rest.split_at_mut(h);
        let (dag, dao) = rest.split_at_mut(h);
        let (dai, daf, dag, dao) = (&mut dai[..h], &mut daf[..h], &mut dag[..h], &mut dao[..h]);
        let dcp = &mut dcp[..h];
        for j in 0..h {
            let i = ai[j].lstm_sigmoid();
            let f = af[j].lstm_sigmoid();
            let g = ag[j].lstm_tanh();
            let o = ao[j].lstm_sigmoid();
            let tc = yc[j].lstm_tanh();
            let dh = dyh[j];
            let dc = dyc[j] + dh * o * (one - tc * tc);
            dao[j] = dh * tc * o * (one - o);
            dai[j] = dc * g * i * (one - i);
            daf[j] = dc * cp[j] * f * (one - f);
            dag[j] = dc * i * (one - g * g);
            dcp[j] = dc * f;
        }
    }
}

/// The f32 row loops in AVX-512 intrinsics: 16 hidden units per step (the row's tail under a
/// mask), σ and tanh from one exp each (`vscalefps` for the 2^n), reciprocals from `vrcp14ps`
/// plus one Newton step instead of divisions, fused multiply-adds throughout.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Rows;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }

    /// e^x with x clamped to [-87, 88]: n = round(x log2 e), r = x - n ln 2 (in two parts),
    /// e^r by its degree-7 Taylor polynomial, scaled by 2^n.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, splat(-87.0)), splat(88.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, splat(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, splat(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, splat(-2.121_944_4e-4), r);
        let mut p = splat(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm512_fmadd_ps(p, r, splat(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// 1 / d: the 14-bit estimate refined by one Newton step, r (2 - d r).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn recip(d: __m512) -> __m512 {
        let r = _mm512_rcp14_ps(d);
        _mm512_fmadd_ps(_mm512_fnmadd_ps(d, r, splat(1.0)), r, r)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sigmoid(x: __m512) -> __m512 {
        recip(_mm512_add_ps(
            splat(1.0),
            exp(_mm512_sub_ps(_mm512_setzero_ps(), x)),
        ))
    }

    /// As `tanh_f32`: the odd polynomial below |x| = 0.625, 1 - 2 / (e^2|x| + 1) with x's sign
    /// above.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tanh(x: __m512) -> __m512 {
        let a = _mm512_abs_ps(x);
        let s = _mm512_mul_ps(x, x);
        let mut p = splat(-5.704_988_7e-3);
        for c in [2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
            p = _mm512_fmadd_ps(p, s, splat(c));
        }
        let small = _mm512_fmadd_ps(_mm512_mul_ps(p, s), x, x);
        let e = exp(_mm512_add_ps(a, a));
        let large = _mm512_fnmadd_ps(splat(2.0), recip(_mm512_add_ps(e, splat(1.0))), splat(1.0));
        let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
        let large = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(large), sign));
        let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, splat(0.625));
        _mm512_mask_blend_ps(is_small, large, small)
    }

    /// The lanes of columns j.. of a row `width` long.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mask(j: usize, width: usize) -> __mmask16 {
        let left = width - j;
        if left >= 16 {
            0xFFFF
        } else {
            (1u16 << left) - 1
        }
    }

    /// Loads the lanes `k` of `row[j..]` (the masked-off lanes are neither read nor set).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(row: &[f32], j: usize, k: __mmask16) -> __m512 {
        debug_assert!(j + (k.count_ones() as usize) <= row.len());
        // SAFETY: lanes with k set are within row[j..j + 16] and, by `mask`, within the row.
        unsafe { _mm512_maskz_loadu_ps(k, row.as_ptr().add(j)) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store(row: &mut [f32], j: usize, k: __mmask16, v: __m512) {
        debug_assert!(j + (k.count_ones() as usize) <= row.len());
        // SAFETY: as for `load`.
        unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr().add(j), k, v) }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn forward_rows(h: usize, gates: Rows<f32>, c_prev: Rows<f32>, out: &mut [f32]) {
        for (r, y) in out.chunks_exact_mut(2 * h).enumerate() {
            let a = gates.row(r, 4 * h);
            let (ai, af, ag, ao) = (&a[..h], &a[h..2 * h], &a[2 * h..3 * h], &a[3 * h..]);
            let cp = c_prev.row(r, h);
            let (yh, yc) = y.split_at_mut(h);
            for j in (0..h).step_by(16) {
                let k = mask(j, h);
                let i = sigmoid(load(ai, j, k));
                let f = sigmoid(load(af, j, k));
                let g = tanh(load(ag, j, k));
                let o = sigmoid(load(ao, j, k));
                let c = _mm512_fmadd_ps(f, load(cp, j, k), _mm512_mul_ps(i, g));
                store(yc, j, k, c);
                store(yh, j, k, _mm512_mul_ps(o, tanh(c)));
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn backward_rows(
        h: usize,
        gates: Rows<f32>,
        c_prev: Rows<f32>,
        out: Rows<f32>,
        grad_out: Rows<f32>,
        grad_gates: &mut [f32],
        grad_c_prev: &mut [f32],
    ) {
        let one = splat(1.0);
        let rows = grad_gates
            .chunks_exact_mut(4 * h)
            .zip(grad_c_prev.chunks_exact_mut(h))
            .enumerate();
        for (r, (da, dcp)) in rows {
            let a = gates.row(r, 4 * h);
            let (ai, af, ag, ao) = (&a[..h], &a[h..2 * h], &a[2 * h..3 * h], &a[3 * h..]);
            let cp = c_prev.row(r, h);
            let yc = &out.row(r, 2 * h)[h..];
            let dy = grad_out.row(r, 2 * h);
            let (dyh, dyc) = dy.split_at(h);
            let (dai, rest) = da.split_at_mut(h);
            let (daf, rest) = rest.split_at_mut(h);
            let (dag, dao) = rest.split_at_mut(h);
            for j in (0..h).step_by(16) {
                let k = mask(j, h);
                let i = sigmoid(load(ai, j, k));
                let f = sigmoid(load(af, j, k));
                let g = tanh(load(ag, j, k));
                let o = sigmoid(load(ao, j, k));
                let tc = tanh(load(yc, j, k));
                let dh = load(dyh, j, k);
                // dc = dc' + dh' o (1 - tanh²(c'))
                let dc = _mm512_fmadd_ps(
                    _mm512_mul_ps(dh, o),
                    _mm512_fnmadd_ps(tc, tc, one),
                    load(dyc, j, k),
                );
                let dsig = |s: __m512| _mm512_mul_ps(s, _mm512_sub_ps(one, s));
                store(dao, j, k, _mm512_mul_ps(_mm512_mul_ps(dh, tc), dsig(o)));
                store(dai, j, k, _mm512_mul_ps(_mm512_mul_ps(dc, g), dsig(i)));
                let cpv = load(cp, j, k);
                store(daf, j, k, _mm512_mul_ps(_mm512_mul_ps(dc, cpv), dsig(f)));
                store(
                    dag,
                    j,
                    k,
                    _mm512_mul_ps(_mm512_mul_ps(dc, i), _mm512_fnmadd_ps(g, g, one)),
                );
                store(dcp, j, k, _mm512_mul_ps(dc, f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows<T>(data: &[T], width: usize) -> Rows<'_, T> {
        Rows::contiguous(data, width)
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn f32_activations_are_close_to_exact() {
        let mut worst_exp = 0.0f64;
        let mut worst_sig = 0.0f64;
        let mut worst_tanh = 0.0f64;
        for k in -200_000..=200_000 {
            let x = k as f32 * 1e-4; // [-20, 20]
            let xd = f64::from(x);
            let e = f64::from(exp_f32(x));
            worst_exp = worst_exp.max(((e - xd.exp()) / xd.exp()).abs());
            let s = f64::from(x.lstm_sigmoid());
            worst_sig = worst_sig.max(((s - sig(xd)) / sig(xd)).abs());
            let t = f64::from(x.lstm_tanh());
            if x != 0.0 {
                worst_tanh = worst_tanh.max(((t - xd.tanh()) / xd.tanh()).abs());
            }
        }
        assert!(worst_exp < 4e-7, "exp relative error {worst_exp}");
        assert!(worst_sig < 4e-7, "sigmoid relative error {worst_sig}");
        assert!(worst_tanh < 4e-7, "tanh relative error {worst_tanh}");
        // limits
        for x in [-1e30f32, -200.0, -88.5, 88.5, 200.0, 1e30] {
            let s = x.lstm_sigmoid();
            let t = x.lstm_tanh();
            assert!(
                s.is_finite() && (0.0..=1.0).contains(&s),
                "sigmoid({x}) = {s}"
            );
            assert!((t.abs() - 1.0).abs() < 1e-7, "tanh({x}) = {t}");
        }
        assert_eq!(0.0f32.lstm_tanh(), 0.0);
        assert_eq!(0.0f32.lstm_sigmoid(), 0.5);
    }

    /// The straightforward formulas, one hidden unit at a time, in f64.
    fn reference(gates: &[f64], c_prev: &[f64], b: usize, h: usize) -> Vec<f64> {
        let mut out = vec![0.0; b * 2 * h];
        for r in 0..b {
            for j in 0..h {
                let a = |k: usize| gates[r * 4 * h + k * h + j];
                let c = sig(a(1)) * c_prev[r * h + j] + sig(a(0)) * a(2).tanh();
                out[r * 2 * h + j] = sig(a(3)) * c.tanh();
                out[r * 2 * h + h + j] = c;
            }
        }
        out
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0
            })
            .collect()
    }

    #[test]
    fn forward_matches_reference_serial_and_parallel() {
        for &(b, h) in &[(1, 1), (3, 5), (64, 256), (130, 300), (7, 5000)] {
            let gates = values(b * 4 * h, 1);
            let c_prev = values(b * h, 2);
            let want = reference(&gates, &c_prev, b, h);
            let mut got = vec![0.0f64; b * 2 * h];
            lstm_cell_forward(b, h, rows(&gates, 4 * h), rows(&c_prev, h), &mut got);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-14, "f64 b={b} h={h}: {err}");
            let g32: Vec<f32> = gates.iter().map(|&v| v as f32).collect();
            let c32: Vec<f32> = c_prev.iter().map(|&v| v as f32).collect();
            let mut got32 = vec![0.0f32; b * 2 * h];
            lstm_cell_forward(b, h, rows(&g32, 4 * h), rows(&c32, h), &mut got32);
            let err = got32
                .iter()
                .zip(&want)
                .map(|(a, b)| (f64::from(*a) - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 2e-6, "f32 b={b} h={h}: {err}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (b, h) = (2, 3);
        let gates = values(b * 4 * h, 3);
        let c_prev = values(b * h, 4);
        let w = values(b * 2 * h, 5);
        let loss = |gates: &[f64], c_prev: &[f64]| -> f64 {
            reference(gates, c_prev, b, h)
                .iter()
                .zip(&w)
                .map(|(y, w)| y * w)
                .sum()
        };
        let mut out = vec![0.0; b * 2 * h];
        lstm_cell_forward(b, h, rows(&gates, 4 * h), rows(&c_prev, h), &mut out);
        let mut dg = vec![0.0; b * 4 * h];
        let mut dc = vec![0.0; b * h];
        lstm_cell_backward(
            b,
            h,
            rows(&gates, 4 * h),
            rows(&c_prev, h),
            rows(&out, 2 * h),
            rows(&w, 2 * h),
            &mut dg,
            &mut dc,
        );
        let eps = 1e-6;
        for k in 0..gates.len() {
            let (mut p, mut m) = (gates.clone(), gates.clone());
            p[k] += eps;
            m[k] -= eps;
            let num = (loss(&p, &c_prev) - loss(&m, &c_prev)) / (2.0 * eps);
            assert!((num - dg[k]).abs() < 1e-8, "gate {k}: {} vs {num}", dg[k]);
        }
        for k in 0..c_prev.len() {
            let (mut p, mut m) = (c_prev.clone(), c_prev.clone());
            p[k] += eps;
            m[k] -= eps;
            let num = (loss(&gates, &p) - loss(&gates, &m)) / (2.0 * eps);
            assert!((num - dc[k]).abs() < 1e-8, "c_prev {k}: {} vs {num}", dc[k]);
        }
    }

    #[test]
    fn parallel_backward_equals_serial() {
        let (b, h) = (120, 300);
        assert!(
            rows_per_task(b, h) < b,
            "the test must take the parallel path"
        );
        let gates: Vec<f32> = values(b * 4 * h, 6).iter().map(|&v| v as f32).collect();
        let c_prev: Vec<f32> = values(b * h, 7).iter().map(|&v| v as f32).collect();
        let dy: Vec<f32> = values(b * 2 * h, 8).iter().map(|&v| v as f32).collect();
        let mut out = vec![0.0f32; b * 2 * h];
        lstm_cell_forward(b, h, rows(&gates, 4 * h), rows(&c_prev, h), &mut out);
        let mut dg = vec![0.0f32; b * 4 * h];
        let mut dc = vec![0.0f32; b * h];
        lstm_cell_backward(
            b,
            h,
            rows(&gates, 4 * h),
            rows(&c_prev, h),
            rows(&out, 2 * h),
            rows(&dy, 2 * h),
            &mut dg,
            &mut dc,
        );
        // row by row, serially
        for r in 0..b {
            let mut dg1 = vec![0.0f32; 4 * h];
            let mut dc1 = vec![0.0f32; h];
            backward_rows(
                h,
                rows(&gates[r * 4 * h..(r + 1) * 4 * h], 4 * h),
                rows(&c_prev[r * h..(r + 1) * h], h),
                rows(&out[r * 2 * h..(r + 1) * 2 * h], 2 * h),
                rows(&dy[r * 2 * h..(r + 1) * 2 * h], 2 * h),
                &mut dg1,
                &mut dc1,
            );
            assert_eq!(dg1, dg[r * 4 * h..(r + 1) * 4 * h]);
            assert_eq!(dc1, dc[r * h..(r + 1) * h]);
        }
    }

    #[test]
    fn strided_rows_read_like_contiguous_ones() {
        // c_prev as the right half of a [B, 2H] buffer, gates inside a wider [B, 4H + 3] one
        let (b, h) = (5, 3);
        let gates = values(b * 4 * h, 9);
        let c_prev = values(b * h, 10);
        let mut wide_gates = vec![9.0; b * (4 * h + 3)];
        let mut hc = vec![7.0; b * 2 * h];
        for r in 0..b {
            wide_gates[r * (4 * h + 3)..r * (4 * h + 3) + 4 * h]
                .copy_from_slice(&gates[r * 4 * h..(r + 1) * 4 * h]);
            hc[r * 2 * h + h..(r + 1) * 2 * h].copy_from_slice(&c_prev[r * h..(r + 1) * h]);
        }
        let mut want = vec![0.0; b * 2 * h];
        lstm_cell_forward(b, h, rows(&gates, 4 * h), rows(&c_prev, h), &mut want);
        let mut got = vec![0.0; b * 2 * h];
        let strided_gates = Rows {
            data: &wide_gates[..],
            stride: 4 * h + 3,
        };
        let strided_c = Rows {
            data: &hc[h..],
            stride: 2 * h,
        };
        lstm_cell_forward(b, h, strided_gates, strided_c, &mut got);
        assert_eq!(got, want);
    }

    /// The f64 backward of `reference` rows, for comparing the f32 loops with.
    fn reference_backward(
        gates: &[f64],
        c_prev: &[f64],
        dy: &[f64],
        b: usize,
        h: usize,
    ) -> Vec<f64> {
        let out = reference(gates, c_prev, b, h);
        let mut dg = vec![0.0; b * 4 * h];
        let mut dc = vec![0.0; b * h];
        backward_rows_inline(
            h,
            rows(gates, 4 * h),
            rows(c_prev, h),
            rows(&out, 2 * h),
            rows(dy, 2 * h),
            &mut dg,
            &mut dc,
        );
        dg.extend(dc);
        dg
    }

    #[test]
    fn every_f32_row_loop_agrees_with_f64() {
        // the portable loop, its AVX2 build and the explicit SIMD one, whichever the CPU runs;
        // h = 37 leaves a tail after 16-lane blocks; the last row holds extreme pre-activations
        let (b, h) = (4, 37);
        let mut gates = values(b * 4 * h, 11);
        for (k, v) in gates[(b - 1) * 4 * h..].iter_mut().enumerate() {
            *v = [-1e30, -100.0, -88.5, -20.0, 20.0, 88.5, 100.0, 1e30][k % 8];
        }
        let c_prev = values(b * h, 12);
        let dy = values(b * 2 * h, 13);
        let want_fwd = reference(&gates, &c_prev, b, h);
        let want_bwd = reference_backward(&gates, &c_prev, &dy, b, h);
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let (g32, c32, dy32) = (f(&gates), f(&c_prev), f(&dy));
        type Fwd = fn(usize, Rows<f32>, Rows<f32>, &mut [f32]);
        type Bwd = fn(usize, Rows<f32>, Rows<f32>, Rows<f32>, Rows<f32>, &mut [f32], &mut [f32]);
        let mut loops: Vec<(&str, Fwd, Bwd)> = vec![(
            "portable",
            forward_rows_inline::<f32>,
            backward_rows_inline::<f32>,
        )];
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY (both): only pushed when the CPU has AVX2 and FMA
            loops.push((
                "avx2",
                |h, a, c, o| unsafe { forward_rows_avx2(h, a, c, o) },
                |h, a, c, y, dy, dg, dc| unsafe { backward_rows_avx2(h, a, c, y, dy, dg, dc) },
            ));
        }
        loops.push((
            "dispatched",
            |h, a, c, o| forward_rows(h, a, c, o),
            |h, a, c, y, dy, dg, dc| backward_rows(h, a, c, y, dy, dg, dc),
        ));
        for (name, fwd, bwd) in loops {
            let mut out = vec![0.0f32; b * 2 * h];
            fwd(h, rows(&g32, 4 * h), rows(&c32, h), &mut out);
            let mut dg = vec![0.0f32; b * 4 * h];
            let mut dc = vec![0.0f32; b * h];
            bwd(
                h,
                rows(&g32, 4 * h),
                rows(&c32, h),
                rows(&out, 2 * h),
                rows(&dy32, 2 * h),
                &mut dg,
                &mut dc,
            );
            dg.extend(dc);
            for (what, got, want) in [("forward", &out, &want_fwd), ("backward", &dg, &want_bwd)] {
                for (k, (a, w)) in got.iter().zip(want.iter()).enumerate() {
                    let err = (f64::from(*a) - w).abs();
                    assert!(
                        err <= 4e-6 * (1.0 + w.abs()),
                        "{name} {what} [{k}]: {a} vs {w}"
                    );
                }
            }
        }
    }
}
