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

use crate::backend::{Held, SequenceInputs, SequenceTape, SequenceWants, Storage};
use crate::error::{Error, Result};
use crate::grad_mode::is_grad_enabled;
use crate::layout::Layout;
use crate::op::{zeros_where_missing, CustomBackward, Op};
use crate::tensor::Tensor;
use kernels::cpu::on_pool;
use kernels::desc::LstmSequenceShape;
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
    let shape = sequence_shape(x, args);
    let x2 = x_matrix(x, shape)?;
    // The loop runs on a pool thread: one hand-over for the whole sequence, not one per kernel
    // call. Grad mode is per thread, so the op is recorded back on this one.
    let (y, tape) = on_pool(|| {
        with_inputs(&x2, args, |inputs| {
            Storage::lstm_sequence_forward(inputs, shape)
        })
    })?;
    let value = Tensor::from_storage(
        y,
        Layout::contiguous(&[shape.steps + 1, shape.batch, shape.hidden]),
    );
    let backward = SequenceBackward {
        shape,
        bias: args.bias.is_some(),
        state: args.state.is_some(),
        tape,
    };
    Ok(Tensor::from_custom_op(
        &value,
        args.inputs(x),
        Arc::new(backward),
    ))
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
            let z = Tensor::full_on(&[b, hidden], 0.0, x.dtype(), x.device())?;
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

fn sequence_shape(x: &Tensor, args: SequenceArgs) -> LstmSequenceShape {
    LstmSequenceShape {
        steps: x.shape()[0],
        batch: x.shape()[1],
        input: x.shape()[2],
        hidden: args.weight_hh.shape()[1],
    }
}

/// x [T, B, I] as the matrix [T·B, I] (a view when possible).
fn x_matrix(x: &Tensor, d: LstmSequenceShape) -> Result<Tensor> {
    x.detach().reshape(&[d.steps * d.batch, d.input])
}

/// Runs `f` on the layer's operands as the backends take them (`x2`: x as [T·B, I]).
fn with_inputs<R>(
    x2: &Tensor,
    args: SequenceArgs,
    f: impl FnOnce(&SequenceInputs<Storage>) -> R,
) -> R {
    let held = |t: &Tensor| (t.storage(), t.layout().clone());
    let (x, w_ih, w_hh) = (held(x2), held(args.weight_ih), held(args.weight_hh));
    let bias = args.bias.map(|(bi, bh)| (held(bi), held(bh)));
    let state = args.state.map(|(h0, c0)| (held(h0), held(c0)));
    fn op((s, l): &(Arc<Held>, Layout)) -> (&Storage, &Layout) {
        (s.storage(), l)
    }
    f(&SequenceInputs {
        x: op(&x),
        w_ih: op(&w_ih),
        w_hh: op(&w_hh),
        bias: bias.as_ref().map(|(a, b)| (op(a), op(b))),
        state: state.as_ref().map(|(a, b)| (op(a), op(b))),
    })
}

/// The recorded sequence's backward: what the forward kept, and which optional inputs there
/// are.
struct SequenceBackward {
    shape: LstmSequenceShape,
    bias: bool,
    state: bool,
    tape: SequenceTape<Storage>,
}

impl CustomBackward for SequenceBackward {
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
        zeros_where_missing(grads, inputs)
    }
}

impl SequenceBackward {
    /// Backpropagation through time by the backend. `grad` is dL/dY, [T + 1, B, H].
    fn bptt(
        &self,
        inputs: &[Tensor],
        x: &Tensor,
        args: SequenceArgs,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let d = self.shape;
        let mut out: Vec<Option<Tensor>> = vec![None; inputs.len()];
        if d.batch == 0 {
            // nothing flows: zeros everywhere (left to the caller)
            return Ok(out);
        }
        let wanted = |i: usize| inputs.get(i).is_some_and(|t| t.requires_grad());
        let wants = SequenceWants {
            x: x.requires_grad(),
            w_ih: wanted(1),
            w_hh: wanted(2),
            bias: self.bias && (wanted(3) || wanted(4)),
            h0: args.state.is_some_and(|(h0, _)| h0.requires_grad()),
        };
        let x2 = x_matrix(x, d)?;
        let dy = grad.storage();
        let tape = SequenceTape {
            gates: &self.tape.gates,
            hc: &self.tape.hc,
        };
        let g = with_inputs(&x2, args, |inputs| {
            Storage::lstm_sequence_backward(inputs, d, tape, (&dy, grad.layout()), wants)
        })?;
        let (g4, bh) = (4 * d.hidden, [d.batch, d.hidden]);
        let tensor =
            |s: Storage, shape: &[usize]| Tensor::from_storage(s, Layout::contiguous(shape));
        out[0] = g.x.map(|s| tensor(s, x.shape()));
        out[1] = g.w_ih.map(|s| tensor(s, &[g4, d.input]));
        out[2] = g.w_hh.map(|s| tensor(s, &[g4, d.hidden]));
        if let Some(db) = g.bias {
            let db = tensor(db, &[g4]);
            out[3] = Some(db.clone());
            out[4] = Some(db);
        }
        if self.state {
            let at = if self.bias { 5 } else { 3 };
            out[at] = g.h0.map(|s| tensor(s, &bh));
            out[at + 1] = Some(tensor(g.c0, &bh));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
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
