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
//! is read in place. σ and tanh are the engine's own ([`Float::sigmoid_vectorised`],
//! [`Float::tanh_vectorised`]: branch-free f32 approximations within 2 ulp, the exact library
//! functions in f64), the same that `Tensor::sigmoid` and `Tensor::tanh` compute, so the
//! fused cell and its Tensor-op form agree. The row loops are plain loops over equal-length
//! slices, compiled for AVX-512 (else AVX2) where the CPU has it ([`crate::cpu::vector::widest`]).

use crate::cpu::parallel::{cost, worth_splitting};
use crate::cpu::vector;
use crate::float::Float;
use rayon::prelude::*;

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
    /// The elements, row r from `data[r * stride]`.
    pub data: &'a [T],
    /// The distance between the starts of consecutive rows.
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
pub fn lstm_cell_forward<T: Float>(
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
pub fn lstm_cell_forward_serial<T: Float>(
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
fn forward_checked<T: Float>(
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
pub fn lstm_cell_backward<T: Float>(
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

// ----- per-row loops ---------------------------------------------------------------------------
// Each handles out.len() / (2H) (forward) or grad_c_prev.len() / H (backward) rows.

fn forward_rows<T: Float>(hidden: usize, gates: Rows<T>, c_prev: Rows<T>, out: &mut [T]) {
    vector::widest(
        #[inline(always)]
        || forward_rows_inline(hidden, gates, c_prev, out),
    )
}

#[allow(clippy::too_many_arguments)]
fn backward_rows<T: Float>(
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: Rows<T>,
    grad_out: Rows<T>,
    grad_gates: &mut [T],
    grad_c_prev: &mut [T],
) {
    vector::widest(
        #[inline(always)]
        || {
            backward_rows_inline(
                hidden,
                gates,
                c_prev,
                out,
                grad_out,
                grad_gates,
                grad_c_prev,
            )
        },
    )
}

#[inline(always)]
fn forward_rows_inline<T: Float>(hidden: usize, gates: Rows<T>, c_prev: Rows<T>, out: &mut [T]) {
    let h = hidden;
    for (r, y) in out.chunks_exact_mut(2 * h).enumerate() {
        forward_row(h, gates.row(r, 4 * h), c_prev.row(r, h), y);
    }
}

/// One row of the forward: gates `a` [4H], `c_prev` [H] -> `y` = [h' | c'] [2H]. A function of
/// its own so that its slices are arguments, which the compiler knows not to overlap: written
/// inline in the loop over rows, the vectoriser's overlap checks span every row, fail, and the
/// scalar loop runs.
#[inline(always)]
fn forward_row<T: Float>(h: usize, a: &[T], c_prev: &[T], y: &mut [T]) {
    // every slice exactly h long, so that the loop below has no bounds checks
    let (ai, af, ag, ao) = (&a[..h], &a[h..2 * h], &a[2 * h..3 * h], &a[3 * h..4 * h]);
    let cp = &c_prev[..h];
    let (yh, yc) = y.split_at_mut(h);
    let (yh, yc) = (&mut yh[..h], &mut yc[..h]);
    for j in 0..h {
        let i = ai[j].sigmoid_vectorised();
        let f = af[j].sigmoid_vectorised();
        let g = ag[j].tanh_vectorised();
        let o = ao[j].sigmoid_vectorised();
        let c = f * cp[j] + i * g;
        yc[j] = c;
        yh[j] = o * c.tanh_vectorised();
    }
}

#[inline(always)]
fn backward_rows_inline<T: Float>(
    hidden: usize,
    gates: Rows<T>,
    c_prev: Rows<T>,
    out: Rows<T>,
    grad_out: Rows<T>,
    grad_gates: &mut [T],
    grad_c_prev: &mut [T],
) {
    let h = hidden;
    let rows = grad_gates
        .chunks_exact_mut(4 * h)
        .zip(grad_c_prev.chunks_exact_mut(h))
        .enumerate();
    for (r, (da, dcp)) in rows {
        let c = &out.row(r, 2 * h)[h..2 * h];
        let dy = grad_out.row(r, 2 * h);
        backward_row(h, gates.row(r, 4 * h), c_prev.row(r, h), c, dy, da, dcp);
    }
}

/// One row of the backward: gates `a` [4H], `c_prev` [H], the forward's `c` (c') [H] and the
/// upstream `dy` = [dh' | dc'] [2H] -> `da` [4H] and `dc_prev` [H]. A function of its own for
/// the reason given at [`forward_row`].
#[inline(always)]
fn backward_row<T: Float>(
    h: usize,
    a: &[T],
    c_prev: &[T],
    c: &[T],
    dy: &[T],
    da: &mut [T],
    dc_prev: &mut [T],
) {
    let one = T::ONE;
    // every slice exactly h long, so that the loop below has no bounds checks
    let (ai, af, ag, ao) = (&a[..h], &a[h..2 * h], &a[2 * h..3 * h], &a[3 * h..4 * h]);
    let (cp, yc) = (&c_prev[..h], &c[..h]);
    let (dyh, dyc) = (&dy[..h], &dy[h..2 * h]);
    let (dai, rest) = da.split_at_mut(h);
    let (daf, rest) = rest.split_at_mut(h);
    let (dag, dao) = rest.split_at_mut(h);
    let (dai, daf, dag, dao) = (&mut dai[..h], &mut daf[..h], &mut dag[..h], &mut dao[..h]);
    let dcp = &mut dc_prev[..h];
    for j in 0..h {
        let i = ai[j].sigmoid_vectorised();
        let f = af[j].sigmoid_vectorised();
        let g = ag[j].tanh_vectorised();
        let o = ao[j].sigmoid_vectorised();
        let tc = yc[j].tanh_vectorised();
        let dh = dyh[j];
        let dc = dyc[j] + dh * o * (one - tc * tc);
        dao[j] = dh * tc * o * (one - o);
        dai[j] = dc * g * i * (one - i);
        daf[j] = dc * cp[j] * f * (one - f);
        dag[j] = dc * i * (one - g * g);
        dcp[j] = dc * f;
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
        // the loop as built for baseline x86-64 and as dispatched (AVX-512 where the CPU has it);
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
        let loops: [(&str, Fwd, Bwd); 2] = [
            (
                "baseline",
                forward_rows_inline::<f32>,
                backward_rows_inline::<f32>,
            ),
            (
                "dispatched",
                |h, a, c, o| forward_rows(h, a, c, o),
                |h, a, c, y, dy, dg, dc| backward_rows(h, a, c, y, dy, dg, dc),
            ),
        ];
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
