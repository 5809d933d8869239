//! A whole single-layer LSTM over a sequence, forward and backpropagation through time, on raw
//! buffers: the input projections of all steps as one matmul, each step one recurrent matmul
//! plus the fused cell ([`crate::cpu::lstm`]); backward, the fused cell backward per step, then
//! one matmul each for the input gradient and the two weight gradients.
//!
//! ```text
//!   a_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ + (b_ih + b_hh)
//!   (h_t, c_t) = lstm_cell(a_t, c_{t-1})
//! ```

use crate::cpu::elementwise::add_into;
use crate::cpu::for_each_index_parallel;
use crate::cpu::lstm::{lstm_cell_backward, lstm_cell_forward_serial, Rows};
use crate::cpu::matmul::{matmul, matmul_with, MatRef};
use crate::cpu::shared_rows::SharedRows;
use crate::desc::LstmSequenceShape;
use crate::float::Float;
use std::borrow::Cow;

/// Rows of the batch per block of the forward's recurrence (see [`lstm_sequence_forward`]).
const BLOCK_ROWS: usize = 32;

/// The operands of one layer: x as the matrix [T·B, I], `w_ih` [4H, I], `w_hh` [4H, H], the
/// biases `[4H]` (both or neither), the initial state h_0 [B, H] (any strides) and c_0 [B, H]
/// (contiguous); absent states are zeros.
#[derive(Clone, Copy)]
pub struct SequenceOperands<'a, T> {
    /// The inputs of every step, [T·B, I].
    pub x: MatRef<'a, T>,
    /// Input-to-hidden weights [4H, I].
    pub w_ih: MatRef<'a, T>,
    /// Hidden-to-hidden weights [4H, H].
    pub w_hh: MatRef<'a, T>,
    /// The two biases (b_ih, b_hh), `[4H]` each.
    pub bias: Option<(&'a [T], &'a [T])>,
    /// The initial hidden state [B, H]; zeros when absent.
    pub h0: Option<MatRef<'a, T>>,
    /// The initial cell state [B, H], contiguous; zeros when absent.
    pub c0: Option<&'a [T]>,
}

/// What the forward keeps for the backward: every step's pre-activation gates [T·B, 4H] and
/// cell outputs [h | c] [T·B, 2H] (owned buffers from the forward, borrowed ones into the
/// backward).
#[derive(Clone, Copy, Debug)]
pub struct SequenceTape<B> {
    /// Pre-activation gates of every step, [T·B, 4H].
    pub gates: B,
    /// Cell outputs [h | c] of every step, [T·B, 2H].
    pub hc: B,
}

/// The gradients the backward was asked for (`x`, the weights, the summed bias and h_0 may be
/// left out); c_0's is always there (it costs nothing extra).
#[derive(Clone, Debug, Default)]
pub struct SequenceGrads<T> {
    /// Gradient of x, [T·B, I].
    pub x: Option<Vec<T>>,
    /// Gradient of `w_ih`, [4H, I].
    pub w_ih: Option<Vec<T>>,
    /// Gradient of `w_hh`, [4H, H].
    pub w_hh: Option<Vec<T>>,
    /// Gradient of the bias, `[4H]` (the same for both biases).
    pub bias: Option<Vec<T>>,
    /// Gradient of h_0, [B, H].
    pub h0: Option<Vec<T>>,
    /// Gradient of c_0, [B, H].
    pub c0: Vec<T>,
}

/// Which gradients to compute.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequenceWants {
    /// Compute the gradient of x.
    pub x: bool,
    /// Compute the gradient of `w_ih`.
    pub w_ih: bool,
    /// Compute the gradient of `w_hh`.
    pub w_hh: bool,
    /// Compute the bias gradient.
    pub bias: bool,
    /// Compute the gradient of h_0.
    pub h0: bool,
}

/// The initial cell state, zeros when there is none.
fn c0_or_zeros<T: Float>(c0: Option<&[T]>, len: usize) -> Cow<'_, [T]> {
    c0.map_or_else(|| Cow::Owned(vec![T::ZERO; len]), Cow::Borrowed)
}

/// `acc += p + q`, elementwise.
fn add2_into<T: Float>(acc: &mut [T], p: &[T], q: &[T]) {
    for ((a, &p), &q) in acc.iter_mut().zip(p).zip(q) {
        *a += p + q;
    }
}

/// The forward: Y [T + 1, B, H] (`Y[t] = h_{t+1}` for t < T, `Y[T] = c_T`) and the tape. Blocks of
/// batch rows run through the whole recurrence on their own threads: rows never meet, so no
/// thread waits for another between steps, and the blocks depend on the batch size alone, so
/// the result does not depend on the number of threads.
pub fn lstm_sequence_forward<T: Float>(
    d: LstmSequenceShape,
    op: SequenceOperands<T>,
) -> (Vec<T>, SequenceTape<Vec<T>>) {
    let LstmSequenceShape {
        steps,
        batch,
        input,
        hidden,
    } = d;
    let (tb, g4, h2) = (steps * batch, 4 * hidden, 2 * hidden);
    if batch == 0 || steps == 0 {
        // no step: Y is [c_0]
        let y = match op.c0 {
            Some(c0) if steps == 0 => c0.to_vec(),
            _ => vec![T::ZERO; (steps + 1) * batch * hidden],
        };
        let tape = SequenceTape {
            gates: Vec::new(),
            hc: Vec::new(),
        };
        return (y, tape);
    }
    let (w_ih_t, w_hh_t) = (op.w_ih.t(), op.w_hh.t());
    // the input projections of all steps
    let mut gates = vec![T::ZERO; tb * g4];
    matmul(tb, input, g4, op.x, w_ih_t, &mut gates);
    let bias: Option<Vec<T>> = op
        .bias
        .map(|(bi, bh)| bi.iter().zip(bh).map(|(&a, &b)| a + b).collect());
    let c0 = c0_or_zeros(op.c0, batch * hidden);
    let mut hc = vec![T::ZERO; tb * h2];
    let blocks = batch.div_ceil(BLOCK_ROWS);
    let (gates_rows, hc_rows) = (
        SharedRows::new(&mut gates, g4),
        SharedRows::new(&mut hc, h2),
    );
    let run_block = |blk: usize| {
        let b0 = blk * BLOCK_ROWS;
        let bs = BLOCK_ROWS.min(batch - b0);
        let mut recurrent = vec![T::ZERO; bs * g4];
        for t in 0..steps {
            // SAFETY: rows t·B + b0 .. t·B + b0 + bs of gates and hc belong to this block
            // alone, and step t - 1's rows (read below) are disjoint from step t's.
            let gates_t = unsafe { gates_rows.rows_mut(t * batch + b0, bs) };
            let hc_t = unsafe { hc_rows.rows_mut(t * batch + b0, bs) };
            let hc_prev = (t > 0).then(|| unsafe { hc_rows.rows((t - 1) * batch + b0, bs) });
            let h_prev = match (hc_prev, op.h0) {
                (Some(prev), _) => Some(MatRef::dense(prev, 0, h2)),
                (None, Some(h0)) => Some(MatRef {
                    offset: h0.offset + b0 * h0.row_stride,
                    ..h0
                }),
                (None, None) => None, // h_0 = 0: nothing to add
            };
            // a_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ + (b_ih + b_hh), in one pass over the gates
            match (h_prev, &bias) {
                (Some(h_prev), bias) => {
                    matmul_with(bs, hidden, g4, h_prev, w_hh_t, &mut recurrent, 1);
                    for (row, rec) in gates_t.chunks_exact_mut(g4).zip(recurrent.chunks_exact(g4)) {
                        match bias {
                            Some(b) => add2_into(row, rec, b),
                            None => add_into(row, rec),
                        }
                    }
                }
                (None, Some(b)) => {
                    for row in gates_t.chunks_exact_mut(g4) {
                        add_into(row, b);
                    }
                }
                (None, None) => {}
            }
            let c_prev = match hc_prev {
                None => Rows::contiguous(&c0[b0 * hidden..(b0 + bs) * hidden], hidden),
                Some(prev) => Rows {
                    data: &prev[hidden..],
                    stride: h2,
                },
            };
            lstm_cell_forward_serial(bs, hidden, Rows::contiguous(gates_t, g4), c_prev, hc_t);
        }
    };
    if blocks > 1 {
        for_each_index_parallel(blocks, run_block);
    } else {
        run_block(0);
    }
    // Y = [h_1, ..., h_T, c_T]
    let mut y = vec![T::ZERO; (steps + 1) * batch * hidden];
    for (yr, row) in y.chunks_exact_mut(hidden).zip(hc.chunks_exact(h2)) {
        yr.copy_from_slice(&row[..hidden]);
    }
    for (yr, row) in y[tb * hidden..]
        .chunks_exact_mut(hidden)
        .zip(hc[(tb - batch) * h2..].chunks_exact(h2))
    {
        yr.copy_from_slice(&row[hidden..]);
    }
    (y, SequenceTape { gates, hc })
}

/// Backpropagation through time: the gradients `wants` asks for, given dL/dY `dy`
/// [T + 1, B, H] (contiguous) and the forward's tape.
pub fn lstm_sequence_backward<T: Float>(
    d: LstmSequenceShape,
    op: SequenceOperands<T>,
    tape: SequenceTape<&[T]>,
    dy: &[T],
    wants: SequenceWants,
) -> SequenceGrads<T> {
    let LstmSequenceShape {
        steps,
        batch,
        input,
        hidden,
    } = d;
    let (tb, g4, h2, bh) = (steps * batch, 4 * hidden, 2 * hidden, batch * hidden);
    assert_eq!(
        dy.len(),
        (steps + 1) * bh,
        "lstm_sequence_backward: dY's size"
    );
    if batch == 0 || steps == 0 {
        return SequenceGrads {
            c0: dy[tb * hidden..].to_vec(),
            ..SequenceGrads::default()
        };
    }
    let c0 = c0_or_zeros(op.c0, bh);
    let hc = tape.hc;
    // dL/d(gates) of every step, [T·B, 4H]
    let mut dgates = vec![T::ZERO; tb * g4];
    let mut dhc = vec![T::ZERO; batch * h2];
    let mut dh_next = vec![T::ZERO; bh];
    let mut dc = dy[tb * hidden..].to_vec();
    let mut dc_prev = vec![T::ZERO; bh];
    let want_h0 = wants.h0 && op.h0.is_some();
    for t in (0..steps).rev() {
        // [dh | dc] of step t's output: its own output gradient plus what step t + 1 sent back
        let dy_t = &dy[t * bh..(t + 1) * bh];
        for (r, row) in dhc.chunks_exact_mut(h2).enumerate() {
            let (dh, dcr) = row.split_at_mut(hidden);
            dh.copy_from_slice(&dy_t[r * hidden..(r + 1) * hidden]);
            if t + 1 < steps {
                add_into(dh, &dh_next[r * hidden..(r + 1) * hidden]);
            }
            dcr.copy_from_slice(&dc[r * hidden..(r + 1) * hidden]);
        }
        let c_prev = if t == 0 {
            Rows::contiguous(&c0, hidden)
        } else {
            Rows {
                data: &hc[(t - 1) * batch * h2 + hidden..],
                stride: h2,
            }
        };
        let dgates_t = &mut dgates[t * batch * g4..(t + 1) * batch * g4];
        lstm_cell_backward(
            batch,
            hidden,
            Rows::contiguous(&tape.gates[t * batch * g4..(t + 1) * batch * g4], g4),
            c_prev,
            Rows::contiguous(&hc[t * batch * h2..(t + 1) * batch * h2], h2),
            Rows::contiguous(&dhc[..], h2),
            dgates_t,
            &mut dc_prev,
        );
        std::mem::swap(&mut dc, &mut dc_prev);
        if t > 0 || want_h0 {
            matmul(
                batch,
                g4,
                hidden,
                MatRef::dense(dgates_t, 0, g4),
                op.w_hh,
                &mut dh_next,
            );
        }
    }
    let dgates_t = MatRef::dense(&dgates[..], 0, g4).t();
    let mut grads = SequenceGrads {
        c0: dc,
        ..SequenceGrads::default()
    };
    if wants.x {
        let mut dx = vec![T::ZERO; tb * input];
        matmul(
            tb,
            g4,
            input,
            MatRef::dense(&dgates[..], 0, g4),
            op.w_ih,
            &mut dx,
        );
        grads.x = Some(dx);
    }
    if wants.w_ih {
        let mut dw = vec![T::ZERO; g4 * input];
        matmul(g4, tb, input, dgates_t, op.x, &mut dw);
        grads.w_ih = Some(dw);
    }
    if wants.w_hh {
        // dW_hh = Σ_t dgates_tᵀ h_{t-1}: steps 1.. read h from the tape, step 0 reads h_0
        let mut dw = vec![T::ZERO; g4 * hidden];
        if steps > 1 {
            let later = MatRef {
                offset: batch * g4,
                ..dgates_t
            };
            matmul(
                g4,
                tb - batch,
                hidden,
                later,
                MatRef::dense(hc, 0, h2),
                &mut dw,
            );
        }
        if let Some(h0) = op.h0 {
            let mut first = vec![T::ZERO; g4 * hidden];
            matmul(g4, batch, hidden, dgates_t, h0, &mut first);
            add_into(&mut dw, &first);
        }
        grads.w_hh = Some(dw);
    }
    if wants.bias && op.bias.is_some() {
        let mut db = vec![T::ZERO; g4];
        for row in dgates.chunks_exact(g4) {
            add_into(&mut db, row);
        }
        grads.bias = Some(db);
    }
    if want_h0 {
        grads.h0 = Some(dh_next);
    }
    grads
}
