//! The recurrence of a PixelRNN layer on raw buffers: an LSTM swept over a grid of positions
//! (van den Oord et al. 2016, section 3), forward and backward, with the fused LSTM cell
//! ([`crate::cpu::lstm`]) and our matmul.
//!
//! Given the input-to-state part of the gates at every position, `pre` [B, R, C, 4H] (channels
//! last), and the state-to-state weights `w` [K H, 4H], each position (r, c) computes
//!
//! ```text
//!   gates(r, c) = pre(r, c) + [h(r + dr_1, c + dc_1) | ... | h(r + dr_K, c + dc_K)] w
//!   (h, cell)(r, c) = lstm_cell(gates(r, c), cell((r, c) + cell_from))
//! ```
//!
//! with zeros for states outside the grid; the taps (dr_k, dc_k) and `cell_from` are the
//! [`crate::desc::Sweep`]'s, their schedule a [`GridPlan`]. The positions are computed in waves (a row, or an anti-diagonal r + c = const),
//! each wave one matmul and one fused cell call over all its positions and images; every tap of
//! a position lies in an earlier wave.

use crate::cpu::elementwise::add_into;
use crate::cpu::lstm::{lstm_cell_backward, lstm_cell_forward, Rows};
use crate::cpu::matmul::{matmul, MatRef};
use crate::desc::lstm::{GridPlan, NONE};
use crate::float::Float;

/// What the forward keeps, all in slot order: the gates [P, 4H], the taps' states [P, K H],
/// the previous cells [P, H] and the cell's outputs [h | c] [P, 2H] (owned from the forward,
/// borrowed into the backward).
#[derive(Clone, Copy, Debug)]
pub struct GridTape<B> {
    /// Pre-activation gates [P, 4H].
    pub gates: B,
    /// The states each slot's taps read, [P, K H].
    pub taps: B,
    /// The cell state each slot continues, [P, H].
    pub c_prev: B,
    /// The cell's outputs [h | c], [P, 2H].
    pub out: B,
}

/// The forward: h [B, R, C, H] (row-major, like `pre`) and the tape, for `pre` [B, R, C, 4H]
/// and `w` [K H, 4H], both contiguous.
pub fn grid_lstm_forward<T: Float>(
    plan: &GridPlan,
    pre_v: &[T],
    w_v: &[T],
) -> (Vec<T>, GridTape<Vec<T>>) {
    let (h, k) = (plan.hidden, plan.taps);
    let (g4, h2, kh, p) = (4 * h, 2 * h, k * h, plan.order.len());
    assert!(
        pre_v.len() == p * g4 && w_v.len() == kh * g4,
        "grid_lstm_forward: pre has {} values, w {}, for {p} positions of {h} units and {k} taps",
        pre_v.len(),
        w_v.len()
    );
    let mut gates = vec![T::ZERO; p * g4];
    let mut taps = vec![T::ZERO; p * kh];
    let mut c_prev = vec![T::ZERO; p * h];
    let mut out = vec![T::ZERO; p * h2];
    let mut rec = vec![T::ZERO; plan.widest() * g4];
    for wave in plan.waves() {
        let n = wave.len();
        for slot in wave.clone() {
            let q = plan.order[slot];
            gates[slot * g4..(slot + 1) * g4].copy_from_slice(&pre_v[q * g4..(q + 1) * g4]);
            for t in 0..k {
                let src = plan.tap_src[slot * k + t];
                if src != NONE {
                    let at = slot * kh + t * h;
                    taps[at..at + h].copy_from_slice(&out[src * h2..src * h2 + h]);
                }
            }
            let src = plan.cell_src[slot];
            if src != NONE {
                c_prev[slot * h..(slot + 1) * h]
                    .copy_from_slice(&out[src * h2 + h..(src + 1) * h2]);
            }
        }
        matmul(
            n,
            kh,
            g4,
            MatRef::dense(&taps, wave.start * kh, kh),
            MatRef::dense(w_v, 0, g4),
            &mut rec[..n * g4],
        );
        for (g, r) in gates[wave.start * g4..wave.end * g4].iter_mut().zip(&rec) {
            *g += *r;
        }
        let (_, rest) = out.split_at_mut(wave.start * h2);
        lstm_cell_forward(
            n,
            h,
            Rows::contiguous(&gates[wave.start * g4..wave.end * g4], g4),
            Rows::contiguous(&c_prev[wave.start * h..wave.end * h], h),
            &mut rest[..n * h2],
        );
    }
    let mut y = vec![T::ZERO; p * h];
    for (slot, &q) in plan.order.iter().enumerate() {
        y[q * h..(q + 1) * h].copy_from_slice(&out[slot * h2..slot * h2 + h]);
    }
    (
        y,
        GridTape {
            gates,
            taps,
            c_prev,
            out,
        },
    )
}

impl<T: Float> GridTape<&[T]> {
    /// Backpropagation through the waves, last to first: d pre [B, R, C, 4H] and d w [K H, 4H]
    /// given dL/dh `dy` [B, R, C, H] (contiguous) and the forward's `w_v`.
    pub fn backward(self, plan: &GridPlan, w_v: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
        let (h, k) = (plan.hidden, plan.taps);
        let (g4, h2, kh, p) = (4 * h, 2 * h, k * h, plan.order.len());
        assert!(
            dy.len() == p * h && w_v.len() == kh * g4,
            "grid_lstm_backward: dy has {} values, w {}, for {p} positions of {h} units",
            dy.len(),
            w_v.len()
        );
        // dL/dh and dL/dc of every slot, gathering what later waves send back
        let mut dh = vec![T::ZERO; p * h];
        for (slot, &q) in plan.order.iter().enumerate() {
            dh[slot * h..(slot + 1) * h].copy_from_slice(&dy[q * h..(q + 1) * h]);
        }
        let mut dc = vec![T::ZERO; p * h];
        let mut dgates = vec![T::ZERO; p * g4];
        let widest = plan.widest();
        let mut dhc = vec![T::ZERO; widest * h2];
        let mut dc_prev = vec![T::ZERO; widest * h];
        let mut dtaps = vec![T::ZERO; widest * kh];
        for wave in plan.waves().rev() {
            let n = wave.len();
            for (i, slot) in wave.clone().enumerate() {
                dhc[i * h2..i * h2 + h].copy_from_slice(&dh[slot * h..(slot + 1) * h]);
                dhc[i * h2 + h..(i + 1) * h2].copy_from_slice(&dc[slot * h..(slot + 1) * h]);
            }
            lstm_cell_backward(
                n,
                h,
                Rows::contiguous(&self.gates[wave.start * g4..wave.end * g4], g4),
                Rows::contiguous(&self.c_prev[wave.start * h..wave.end * h], h),
                Rows::contiguous(&self.out[wave.start * h2..wave.end * h2], h2),
                Rows::contiguous(&dhc[..n * h2], h2),
                &mut dgates[wave.start * g4..wave.end * g4],
                &mut dc_prev[..n * h],
            );
            // d taps = d gates wᵀ
            matmul(
                n,
                g4,
                kh,
                MatRef::dense(&dgates, wave.start * g4, g4),
                MatRef::dense(w_v, 0, g4).t(),
                &mut dtaps[..n * kh],
            );
            for (i, slot) in wave.clone().enumerate() {
                let src = plan.cell_src[slot];
                if src != NONE {
                    add_into(
                        &mut dc[src * h..(src + 1) * h],
                        &dc_prev[i * h..(i + 1) * h],
                    );
                }
                for t in 0..k {
                    let src = plan.tap_src[slot * k + t];
                    if src != NONE {
                        let at = i * kh + t * h;
                        add_into(&mut dh[src * h..(src + 1) * h], &dtaps[at..at + h]);
                    }
                }
            }
        }
        let mut dpre = vec![T::ZERO; p * g4];
        for (slot, &q) in plan.order.iter().enumerate() {
            dpre[q * g4..(q + 1) * g4].copy_from_slice(&dgates[slot * g4..(slot + 1) * g4]);
        }
        // d w = tapsᵀ d gates
        let mut dw = vec![T::ZERO; kh * g4];
        matmul(
            kh,
            p,
            g4,
            MatRef::dense(self.taps, 0, kh).t(),
            MatRef::dense(&dgates, 0, g4),
            &mut dw,
        );
        (dpre, dw)
    }
}
