//! The LSTM cell's pointwise part as one op: forward and backward each one fused kernel
//! (`kernels::cpu::lstm`).
//!
//! With pre-activation gates `a = [a_i | a_f | a_g | a_o]` ([B, 4H], PyTorch's order) and the
//! previous cell state c ([B, H]), σ the logistic sigmoid:
//!
//! ```text
//!   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//!   c' = f ⊙ c + i ⊙ g
//!   h' = o ⊙ tanh(c')
//! ```
//!
//! The engine's ops have one output, so the op ([`Op::LstmCell`]) produces `[h' | c']`, one
//! [B, 2H] tensor with h' in columns 0..H and c' in columns H..2H;
//! [`Tensor::lstm_cell_pointwise`] hands back the two halves as views.
//!
//! Its backward rule ([`lstm_cell_backward`]) runs the fused backward kernel when the gradient
//! is not being recorded (a plain `backward()`), and the same formulas as Tensor ops when it is
//! (`create_graph`), so that gradients of gradients are right.
//!
//! A whole sequence ([`lstm_sequence`], behind `nn::Lstm`) is one op too: the input projections
//! of all steps are one matmul, each step one recurrent matmul plus the fused kernel, on raw
//! buffers; its backward is backpropagation through time on raw buffers (the fused backward
//! kernel per step, then one matmul each for the input gradient and the two weight gradients).
//! Recorded for gradients of gradients, the same sequence is rebuilt step by step from
//! [`Tensor::lstm_cell_pointwise`] ([`lstm_sequence_stepwise`]) and differentiated.

use crate::backend::Storage;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::grad_mode::is_grad_enabled;
use crate::layout::Layout;
use crate::op::{CustomBackward, Op};
use crate::tensor::Tensor;
use kernels::cpu::for_each_index_parallel;
use kernels::cpu::lstm::{
    lstm_cell_backward as fused_backward, lstm_cell_forward_serial, on_pool, LstmFloat, Rows,
};
use kernels::cpu::matmul::{matmul, matmul_with, MatRef};
use std::sync::Arc;

/// (batch, hidden) of a valid (gates, c_prev) pair, or an error naming both shapes.
fn check(gates: &Tensor, c_prev: &Tensor) -> Result<(usize, usize)> {
    const OP: &str = "lstm_cell";
    gates.same_dtype(OP, c_prev)?;
    let (sg, sc) = (gates.shape(), c_prev.shape());
    let bad = |why: &str| {
        Err(Error::shape(
            OP,
            format!("{why} (gates {sg:?}, c_prev {sc:?}): need gates [B, 4H] and c_prev [B, H]"),
        ))
    };
    if sg.len() != 2 || sc.len() != 2 {
        return bad("gates and c_prev must have 2 axes");
    }
    if sg[1] % 4 != 0 {
        return bad("the gates' last axis is not a multiple of 4");
    }
    let (b, h) = (sg[0], sg[1] / 4);
    if sc != [b, h] {
        return bad("c_prev does not match the gates");
    }
    Ok((b, h))
}

impl Tensor {
    /// The fused pointwise LSTM cell as one [B, 2H] tensor `[h' | c']` (see
    /// [`Tensor::lstm_cell_pointwise`] for the equations and the shapes).
    pub fn lstm_cell_fused(gates: &Tensor, c_prev: &Tensor) -> Result<Tensor> {
        let (b, h) = check(gates, c_prev)?;
        let op = Op::LstmCell {
            gates: gates.clone(),
            c_prev: c_prev.clone(),
        };
        let storage = gates.storage().lstm_cell_forward(
            gates.layout(),
            &c_prev.storage(),
            c_prev.layout(),
            [b, h],
        )?;
        Ok(Tensor::from_op_result(storage, &[b, 2 * h], op))
    }

    /// The pointwise part of an LSTM cell, fused into one op. `gates` [B, 4H] holds the
    /// pre-activations in PyTorch's order (input i, forget f, cell g, output o; each H wide),
    /// `c_prev` [B, H] the previous cell state. With σ the logistic sigmoid:
    ///
    /// ```text
    ///   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    ///   c' = f ⊙ c_prev + i ⊙ g
    ///   h' = o ⊙ tanh(c')
    /// ```
    ///
    /// Returns (h', c'), both [B, H]: views of the op's single output `[h' | c']` [B, 2H]
    /// (columns 0..H and H..2H). Differentiable, also twice.
    ///
    /// ```
    /// use autograd::{DType, Tensor};
    /// let gates = Tensor::zeros(&[2, 12], DType::F32); // B = 2, H = 3
    /// let c = Tensor::ones(&[2, 3], DType::F32);
    /// let (h1, c1) = Tensor::lstm_cell_pointwise(&gates, &c).unwrap();
    /// // i = f = o = 1/2, g = 0: c' = c / 2, h' = tanh(1/2) / 2
    /// assert_eq!(c1.to_vec_f32(), vec![0.5; 6]);
    /// assert!((h1.to_vec_f32()[0] - 0.5f32.tanh() / 2.0).abs() < 1e-6);
    /// ```
    pub fn lstm_cell_pointwise(gates: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
        let hc = Tensor::lstm_cell_fused(gates, c_prev)?;
        let h = c_prev.shape()[1];
        Ok((hc.narrow(1, 0, h)?, hc.narrow(1, h, h)?))
    }
}

/// The fused backward kernel's gradients, those asked for in `want`.
fn backward_fused(
    gates: &Tensor,
    c_prev: &Tensor,
    out: &Tensor,
    g: &Tensor,
    want: [bool; 2],
) -> Result<Vec<Option<Tensor>>> {
    let (b, h) = (c_prev.shape()[0], c_prev.shape()[1]);
    let (sc, so, sg) = (c_prev.storage(), out.storage(), g.storage());
    let (da, dc) = gates.storage().lstm_cell_backward(
        gates.layout(),
        (&sc, c_prev.layout()),
        (&so, out.layout()),
        (&sg, g.layout()),
        [b, h],
    )?;
    let keep = |want: bool, s: Storage, shape: &[usize]| {
        want.then(|| Tensor::from_storage(s, Layout::contiguous(shape)))
    };
    Ok(vec![
        keep(want[0], da, &[b, 4 * h]),
        keep(want[1], dc, &[b, h]),
    ])
}

/// The backward rule of [`Op::LstmCell`]: gradients for (gates, c_prev) given the op's output
/// `out` = `[h' | c']` and its gradient `g` = `[dh' | dc']` (both [B, 2H]):
///
/// ```text
///   dc   = dc' + dh' ⊙ o ⊙ (1 - tanh²(c'))
///   da_i = dc ⊙ g ⊙ i (1 - i)        da_f = dc ⊙ c_prev ⊙ f (1 - f)
///   da_g = dc ⊙ i ⊙ (1 - g²)         da_o = dh' ⊙ tanh(c') ⊙ o (1 - o)
///   dc_prev = dc ⊙ f
/// ```
///
/// Without recording (a plain backward) this is one fused kernel; while recording
/// (`create_graph`) it is written in Tensor ops, so it can be differentiated again.
pub(crate) fn lstm_cell_backward(
    gates: &Tensor,
    c_prev: &Tensor,
    out: &Tensor,
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let want = [gates.requires_grad(), c_prev.requires_grad()];
    if !is_grad_enabled() {
        return backward_fused(gates, c_prev, out, g, want);
    }
    lstm_cell_backward_composite(gates, c_prev, out, g, want)
}

/// The backward in Tensor ops (recorded under `create_graph`). Also what the tests compare
/// the fused kernel with.
pub(crate) fn lstm_cell_backward_composite(
    gates: &Tensor,
    c_prev: &Tensor,
    out: &Tensor,
    g: &Tensor,
    want: [bool; 2],
) -> Result<Vec<Option<Tensor>>> {
    let h = c_prev.shape()[1];
    let gate = |k: usize| gates.narrow(1, k * h, h);
    let (i, f, gg, o) = (
        gate(0)?.sigmoid()?,
        gate(1)?.sigmoid()?,
        gate(2)?.tanh()?,
        gate(3)?.sigmoid()?,
    );
    // σ'(a) = σ (1 - σ)
    let dsig = |s: &Tensor| s.mul(&s.one_minus()?);
    let tc = out.narrow(1, h, h)?.tanh()?;
    let (dh, dc_out) = (g.narrow(1, 0, h)?, g.narrow(1, h, h)?);
    let dc = dc_out.add(&dh.mul(&o)?.mul(&tc.square()?.one_minus()?)?)?;
    let grad_gates = if want[0] {
        let di = dc.mul(&gg)?.mul(&dsig(&i)?)?;
        let df = dc.mul(c_prev)?.mul(&dsig(&f)?)?;
        let dg = dc.mul(&i)?.mul(&gg.square()?.one_minus()?)?;
        let d_o = dh.mul(&tc)?.mul(&dsig(&o)?)?;
        Some(Tensor::concat(&[di, df, dg, d_o], 1)?)
    } else {
        None
    };
    let grad_c_prev = if want[1] { Some(dc.mul(&f)?) } else { None };
    Ok(vec![grad_gates, grad_c_prev])
}

// ----- a whole sequence as one op ----------------------------------------------------------------

/// The parameters and initial state of one LSTM layer, as [`lstm_sequence`] takes them:
/// `weight_ih` [4H, I], `weight_hh` [4H, H], the biases [4H] (both or neither) and the initial
/// state h_0, c_0 [B, H] (zeros when absent). Shapes are checked by the caller (`nn::Lstm`).
#[derive(Clone, Copy)]
pub(crate) struct SequenceArgs<'a> {
    pub weight_ih: &'a Tensor,
    pub weight_hh: &'a Tensor,
    pub bias: Option<(&'a Tensor, &'a Tensor)>,
    pub state: Option<(&'a Tensor, &'a Tensor)>,
}

impl<'a> SequenceArgs<'a> {
    /// The op's inputs: x, weight_ih, weight_hh, then bias_ih, bias_hh and h_0, c_0 when present.
    fn inputs(&self, x: &Tensor) -> Vec<Tensor> {
        let mut v = vec![x.clone(), self.weight_ih.clone(), self.weight_hh.clone()];
        if let Some((bi, bh)) = self.bias {
            v.extend([bi.clone(), bh.clone()]);
        }
        if let Some((h0, c0)) = self.state {
            v.extend([h0.clone(), c0.clone()]);
        }
        v
    }

    /// The inverse of [`SequenceArgs::inputs`]; returns x too.
    fn from_inputs(inputs: &'a [Tensor], bias: bool, state: bool) -> (&'a Tensor, Self) {
        let bias_at = 3;
        let state_at = if bias { 5 } else { 3 };
        (
            &inputs[0],
            SequenceArgs {
                weight_ih: &inputs[1],
                weight_hh: &inputs[2],
                bias: bias.then(|| (&inputs[bias_at], &inputs[bias_at + 1])),
                state: state.then(|| (&inputs[state_at], &inputs[state_at + 1])),
            },
        )
    }
}

/// The single-layer LSTM over x [T, B, I] as one op. Returns Y [T + 1, B, H]: Y[t] = h_{t+1}
/// for t < T (the outputs, Y[T - 1] also being h_T) and Y[T] = c_T. Its backward is
/// backpropagation through time on raw buffers; under `create_graph` the sequence is rebuilt
/// step by step with recorded ops ([`lstm_sequence_stepwise`]) and differentiated instead.
pub(crate) fn lstm_sequence(x: &Tensor, args: SequenceArgs) -> Result<Tensor> {
    // The loop runs on a pool thread: one hand-over for the whole sequence, not one per kernel
    // call. Grad mode is per thread, so the op is recorded back on this one.
    let (value, tape): (Tensor, Arc<dyn CustomBackward>) = match x.dtype() {
        DType::F32 => {
            let (v, t) = on_pool(|| sequence_typed::<f32>(x, args))?;
            (v, Arc::new(t))
        }
        DType::F64 => {
            let (v, t) = on_pool(|| sequence_typed::<f64>(x, args))?;
            (v, Arc::new(t))
        }
    };
    Ok(Tensor::from_custom_op(&value, args.inputs(x), tape))
}

/// The same function as [`lstm_sequence`], built from recorded ops: per step
/// a_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ (+ b_ih + b_hh), then [`Tensor::lstm_cell_pointwise`].
/// Each step multiplies its own x_t: slicing the steps out of one recorded product would cost
/// a full-size gradient per step in the backward pass.
pub(crate) fn lstm_sequence_stepwise(x: &Tensor, args: SequenceArgs) -> Result<Tensor> {
    let (steps, b, i) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let hidden = args.weight_hh.shape()[1];
    let w_ih_t = args.weight_ih.t()?;
    let w_hh_t = args.weight_hh.t()?;
    let bias = args.bias.map(|(bi, bh)| bi.add(bh)).transpose()?;
    let (mut h, mut c) = match args.state {
        Some((h0, c0)) => (h0.clone(), c0.clone()),
        None => {
            let z = Tensor::zeros(&[b, hidden], x.dtype());
            (z.clone(), z)
        }
    };
    let mut rows = Vec::with_capacity(steps + 1);
    for t in 0..steps {
        let x_t = x.narrow(0, t, 1)?.reshape(&[b, i])?;
        let gates = x_t.matmul(&w_ih_t)?.add(&h.matmul(&w_hh_t)?)?;
        let gates = match &bias {
            Some(bias) => gates.add(bias)?,
            None => gates,
        };
        (h, c) = Tensor::lstm_cell_pointwise(&gates, &c)?;
        rows.push(h.clone());
    }
    rows.push(c);
    Tensor::stack(&rows, 0)
}

/// A 2-D tensor's storage as a matmul operand (no copy, any strides).
fn mat<'a, T: Element>(storage: &'a Storage, layout: &Layout) -> MatRef<'a, T> {
    MatRef {
        data: storage.as_cpu().as_slice::<T>(),
        offset: layout.offset,
        row_stride: layout.strides[0],
        col_stride: layout.strides[1],
    }
}

/// The transpose of a matmul operand.
fn transposed<T>(m: MatRef<T>) -> MatRef<T> {
    MatRef {
        row_stride: m.col_stride,
        col_stride: m.row_stride,
        ..m
    }
}

/// A contiguous [rows, cols] buffer as a matmul operand.
fn dense<T>(data: &[T], offset: usize, cols: usize) -> MatRef<'_, T> {
    MatRef {
        data,
        offset,
        row_stride: cols,
        col_stride: 1,
    }
}

/// `acc += add`, elementwise.
fn add_into<T: Element>(acc: &mut [T], add: &[T]) {
    for (a, &b) in acc.iter_mut().zip(add) {
        *a += b;
    }
}

/// `acc += p + q`, elementwise.
fn add2_into<T: Element>(acc: &mut [T], p: &[T], q: &[T]) {
    for ((a, &p), &q) in acc.iter_mut().zip(p).zip(q) {
        *a += p + q;
    }
}

/// Rows of the batch per block of the sequence forward's recurrence (see `sequence_typed`).
const SEQUENCE_BLOCK_ROWS: usize = 32;

/// A row-major [rows, width] buffer whose disjoint row ranges several threads fill at once.
struct SharedRows<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: threads only reach disjoint rows through it (the callers' contract below).
unsafe impl<T: Send> Sync for SharedRows<T> {}

impl<T> SharedRows<T> {
    fn new(buf: &mut [T]) -> Self {
        SharedRows {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    /// Rows `first..first + count` of width `width`, writable.
    ///
    /// # Safety
    /// No other reference to these rows may be live while the slice is.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows_mut(&self, first: usize, count: usize, width: usize) -> &mut [T] {
        assert!(
            (first + count) * width <= self.len,
            "SharedRows: rows out of range"
        );
        // SAFETY: in bounds (checked); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(first * width), count * width) }
    }

    /// Rows `first..first + count` of width `width`, read-only.
    ///
    /// # Safety
    /// No writable reference to these rows may be live while the slice is.
    unsafe fn rows(&self, first: usize, count: usize, width: usize) -> &[T] {
        assert!(
            (first + count) * width <= self.len,
            "SharedRows: rows out of range"
        );
        // SAFETY: in bounds (checked); not written meanwhile by the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr.add(first * width), count * width) }
    }
}

/// Sizes of one sequence.
#[derive(Clone, Copy)]
struct Dims {
    steps: usize,
    batch: usize,
    input: usize,
    hidden: usize,
}

/// What the forward keeps for the backward: every step's pre-activation gates [T·B, 4H] and
/// output rows [h | c] [T·B, 2H].
struct SequenceTape<T> {
    dims: Dims,
    bias: bool,
    state: bool,
    gates: Vec<T>,
    hc: Vec<T>,
}

/// x [T, B, I] as the matrix [T·B, I] (a view when possible) with its storage.
fn x_matrix(x: &Tensor, d: Dims) -> Result<Tensor> {
    x.detach().reshape(&[d.steps * d.batch, d.input])
}

/// The forward on raw buffers: Y and what the backward needs. Records nothing.
fn sequence_typed<T: Element + LstmFloat>(
    x: &Tensor,
    args: SequenceArgs,
) -> Result<(Tensor, SequenceTape<T>)> {
    let d = Dims {
        steps: x.shape()[0],
        batch: x.shape()[1],
        input: x.shape()[2],
        hidden: args.weight_hh.shape()[1],
    };
    let Dims {
        steps,
        batch,
        input,
        hidden,
    } = d;
    let (tb, g4, h2) = (steps * batch, 4 * hidden, 2 * hidden);
    let tape = |gates, hc| SequenceTape {
        dims: d,
        bias: args.bias.is_some(),
        state: args.state.is_some(),
        gates,
        hc,
    };
    if batch == 0 {
        let value = Tensor::zeros(&[steps + 1, 0, hidden], x.dtype());
        return Ok((value, tape(Vec::new(), Vec::new())));
    }
    let x2 = x_matrix(x, d)?;
    let (sx, swi, swh) = (
        x2.storage(),
        args.weight_ih.storage(),
        args.weight_hh.storage(),
    );
    let w_ih_t = transposed(mat::<T>(&swi, args.weight_ih.layout()));
    let w_hh_t = transposed(mat::<T>(&swh, args.weight_hh.layout()));
    // the input projections of all steps
    let mut gates = vec![T::ZERO; tb * g4];
    matmul(
        tb,
        input,
        g4,
        mat::<T>(&sx, x2.layout()),
        w_ih_t,
        &mut gates,
    );
    let bias: Option<Vec<T>> = args.bias.map(|(bi, bh)| {
        let (bi, bh) = (bi.contiguous_data::<T>(), bh.contiguous_data::<T>());
        bi.iter().zip(bh.iter()).map(|(&a, &b)| a + b).collect()
    });
    let h0 = args
        .state
        .map(|(h0, _)| (h0.storage(), h0.layout().clone()));
    let c0 = match args.state {
        Some((_, c0)) => c0.contiguous_data::<T>().into_vec(),
        None => vec![T::ZERO; batch * hidden],
    };
    let mut hc = vec![T::ZERO; tb * h2];
    // Rows of the batch never meet in the recurrence, so blocks of rows run through all the
    // steps independently, one block per thread, with no hand-off between threads per step.
    // The blocks are fixed by the batch size alone, so results do not depend on thread count.
    let blocks = batch.div_ceil(SEQUENCE_BLOCK_ROWS);
    let (gates_rows, hc_rows) = (SharedRows::new(&mut gates), SharedRows::new(&mut hc));
    let run_block = |blk: usize| {
        let b0 = blk * SEQUENCE_BLOCK_ROWS;
        let bs = SEQUENCE_BLOCK_ROWS.min(batch - b0);
        let mut recurrent = vec![T::ZERO; bs * g4];
        for t in 0..steps {
            // SAFETY: rows t·B + b0 .. t·B + b0 + bs of gates and hc belong to this block
            // alone, and step t - 1's rows (read below) are disjoint from step t's.
            let gates_t = unsafe { gates_rows.rows_mut(t * batch + b0, bs, g4) };
            let hc_t = unsafe { hc_rows.rows_mut(t * batch + b0, bs, h2) };
            let hc_prev = (t > 0).then(|| unsafe { hc_rows.rows((t - 1) * batch + b0, bs, h2) });
            let h_prev = match (hc_prev, &h0) {
                (Some(prev), _) => Some(dense(prev, 0, h2)),
                (None, Some((s, l))) => Some(MatRef {
                    offset: l.offset + b0 * l.strides[0],
                    ..mat::<T>(s, l)
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
    let value = Tensor::from_vec(y, &[steps + 1, batch, hidden])?;
    Ok((value, tape(gates, hc)))
}

impl<T: Element + LstmFloat> CustomBackward for SequenceTape<T> {
    fn name(&self) -> &'static str {
        "lstm"
    }

    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (x, args) = SequenceArgs::from_inputs(inputs, self.bias, self.state);
        let grads: Vec<Option<Tensor>> = if is_grad_enabled() {
            // create_graph: differentiate the recorded step-by-step sequence instead
            let y = lstm_sequence_stepwise(x, args)?;
            crate::grad(&[y], std::slice::from_ref(grad), inputs, true)?
        } else {
            on_pool(|| self.bptt(inputs, x, args, grad))?
        };
        // (inputs that do not require grad get zeros, which the engine ignores)
        grads
            .into_iter()
            .zip(inputs)
            .map(|(g, t)| match g {
                Some(g) => Ok(g),
                None => Tensor::scalar(0.0, t.dtype()).expand(t.shape()),
            })
            .collect()
    }
}

impl<T: Element + LstmFloat> SequenceTape<T> {
    /// Backpropagation through time on raw buffers. `grad` is dL/dY, [T + 1, B, H].
    fn bptt(
        &self,
        inputs: &[Tensor],
        x: &Tensor,
        args: SequenceArgs,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let Dims {
            steps,
            batch,
            input,
            hidden,
        } = self.dims;
        let (tb, g4, h2, bh) = (steps * batch, 4 * hidden, 2 * hidden, batch * hidden);
        if batch == 0 {
            // nothing flows: zeros everywhere (left to the caller)
            return Ok(vec![None; inputs.len()]);
        }
        let want_x = x.requires_grad();
        let want_h0 = args.state.is_some_and(|(h0, _)| h0.requires_grad());
        let dy = grad.contiguous_data::<T>();
        let dy = &dy[..];
        let swh = args.weight_hh.storage();
        let w_hh = mat::<T>(&swh, args.weight_hh.layout());
        let c0 = match args.state {
            Some((_, c0)) => c0.contiguous_data::<T>().into_vec(),
            None => vec![T::ZERO; bh],
        };
        let hc = &self.hc;
        // dL/d(gates) of every step, [T·B, 4H]
        let mut dgates = vec![T::ZERO; tb * g4];
        let mut dhc = vec![T::ZERO; batch * h2];
        let mut dh_next = vec![T::ZERO; bh];
        let mut dc = dy[tb * hidden..].to_vec();
        let mut dc_prev = vec![T::ZERO; bh];
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
                Rows::contiguous(&c0[..], hidden)
            } else {
                Rows {
                    data: &hc[(t - 1) * batch * h2 + hidden..],
                    stride: h2,
                }
            };
            let dgates_t = &mut dgates[t * batch * g4..(t + 1) * batch * g4];
            fused_backward(
                batch,
                hidden,
                Rows::contiguous(&self.gates[t * batch * g4..(t + 1) * batch * g4], g4),
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
                    dense(dgates_t, 0, g4),
                    w_hh,
                    &mut dh_next,
                );
            }
        }
        let dgates_t = transposed(dense(&dgates[..], 0, g4));
        let wants: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
        let mut out: Vec<Option<Tensor>> = vec![None; inputs.len()];
        if want_x {
            let swi = args.weight_ih.storage();
            let mut dx = vec![T::ZERO; tb * input];
            let w_ih = mat::<T>(&swi, args.weight_ih.layout());
            matmul(tb, g4, input, dense(&dgates[..], 0, g4), w_ih, &mut dx);
            out[0] = Some(Tensor::from_vec(dx, x.shape())?);
        }
        if wants[1] {
            let x2 = x_matrix(x, self.dims)?;
            let sx = x2.storage();
            let mut dw = vec![T::ZERO; g4 * input];
            matmul(g4, tb, input, dgates_t, mat::<T>(&sx, x2.layout()), &mut dw);
            out[1] = Some(Tensor::from_vec(dw, &[g4, input])?);
        }
        if wants[2] {
            // dW_hh = Σ_t dgates_tᵀ h_{t-1}: steps 1.. read h from the tape, step 0 reads h_0
            let mut dw = vec![T::ZERO; g4 * hidden];
            if steps > 1 {
                let later = MatRef {
                    offset: batch * g4,
                    ..dgates_t
                };
                matmul(g4, tb - batch, hidden, later, dense(hc, 0, h2), &mut dw);
            }
            if let Some((h0, _)) = args.state {
                let s0 = h0.storage();
                let mut first = vec![T::ZERO; g4 * hidden];
                matmul(
                    g4,
                    batch,
                    hidden,
                    dgates_t,
                    mat::<T>(&s0, h0.layout()),
                    &mut first,
                );
                add_into(&mut dw, &first);
            }
            out[2] = Some(Tensor::from_vec(dw, &[g4, hidden])?);
        }
        if self.bias && (wants[3] || wants[4]) {
            let mut db = vec![T::ZERO; g4];
            for row in dgates.chunks_exact(g4) {
                add_into(&mut db, row);
            }
            let db = Tensor::from_vec(db, &[g4])?;
            out[3] = Some(db.clone());
            out[4] = Some(db);
        }
        if self.state {
            let at = if self.bias { 5 } else { 3 };
            if want_h0 {
                out[at] = Some(Tensor::from_vec(dh_next, &[batch, hidden])?);
            }
            out[at + 1] = Some(Tensor::from_vec(dc, &[batch, hidden])?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad;
    use crate::rng::Rng;

    fn leaf(shape: &[usize], rng: &mut Rng) -> Tensor {
        Tensor::randn(shape, DType::F64, rng)
            .mul_scalar(1.5)
            .unwrap()
            .requires_grad_(true)
            .unwrap()
    }

    #[test]
    fn shapes_are_checked() {
        let z = |s: &[usize]| Tensor::zeros(s, DType::F32);
        let e = Tensor::lstm_cell_pointwise(&z(&[2, 10]), &z(&[2, 3]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lstm_cell") && e.contains("[2, 10]") && e.contains("[2, 3]"),
            "{e}"
        );
        assert!(Tensor::lstm_cell_pointwise(&z(&[2, 12]), &z(&[3, 3])).is_err());
        assert!(Tensor::lstm_cell_pointwise(&z(&[12]), &z(&[3])).is_err());
        assert!(
            Tensor::lstm_cell_pointwise(&z(&[2, 12]), &Tensor::zeros(&[2, 3], DType::F64)).is_err()
        );
        let (h, c) = Tensor::lstm_cell_pointwise(&z(&[0, 12]), &z(&[0, 3])).unwrap();
        assert_eq!((h.shape(), c.shape()), (&[0, 3][..], &[0, 3][..]));
    }

    #[test]
    fn fused_and_composite_backward_agree() {
        let mut rng = Rng::new(3);
        let (b, h) = (5, 7);
        let gates = leaf(&[b, 4 * h], &mut rng);
        let c_prev = leaf(&[b, h], &mut rng);
        let hc = Tensor::lstm_cell_fused(&gates, &c_prev).unwrap();
        let g = Tensor::randn(&[b, 2 * h], DType::F64, &mut rng);
        let fused = grad(
            std::slice::from_ref(&hc),
            std::slice::from_ref(&g),
            &[gates.clone(), c_prev.clone()],
            false,
        )
        .unwrap();
        let composite =
            lstm_cell_backward_composite(&gates, &c_prev, &hc, &g, [true, true]).unwrap();
        for (a, b) in fused.iter().zip(&composite) {
            let (a, b) = (
                a.as_ref().unwrap().to_vec_f64(),
                b.as_ref().unwrap().to_vec_f64(),
            );
            let err = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-12, "{err}");
        }
    }
}
