//! Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al.),
//! with PyTorch's layouts, parameter names and initialisation: [`LstmCell`] (one step, as
//! `torch.nn.LSTMCell`) and [`Lstm`] (one layer over a sequence, as `torch.nn.LSTM` with
//! `num_layers=1, batch_first=False`).
//!
//! One step from input x and state (h, c), σ the logistic sigmoid:
//!
//! ```text
//!   a  = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh           [B, 4H], split as [a_i | a_f | a_g | a_o]
//!   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//!   c' = f ⊙ c + i ⊙ g
//!   h' = o ⊙ tanh(c')
//! ```
//!
//! The gates come from two matmuls; everything after them is one fused op
//! ([`Tensor::lstm_cell_pointwise`]) whose forward and backward are each a single kernel.
//! [`Lstm`] runs a whole sequence as one op on the same fused kernels (see [`Lstm::forward`]);
//! [`Lstm::forward_stepwise`] records the same computation as a graph of cell steps.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::nn::{init, parameter, Module};
use crate::ops::lstm::{lstm_sequence, lstm_sequence_stepwise, SequenceArgs};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// One LSTM step, `torch.nn.LSTMCell`: `weight_ih` [4H, I], `weight_hh` [4H, H], `bias_ih` and
/// `bias_hh` `[4H]` (both present or both absent), the 4H rows ordered as the gates i, f, g, o.
///
/// The fields are public so that a cell can also be assembled from existing tensors as they
/// are (for example from leaves a gradient check perturbs), where [`LstmCell::from_parts`]
/// would make new leaves of them.
#[derive(Clone, Debug)]
pub struct LstmCell {
    /// [4H, I].
    pub weight_ih: Tensor,
    /// [4H, H].
    pub weight_hh: Tensor,
    /// `[4H]`, present exactly when `bias_hh` is.
    pub bias_ih: Option<Tensor>,
    /// `[4H]`, present exactly when `bias_ih` is.
    pub bias_hh: Option<Tensor>,
}

fn shape_error(op: &'static str, msg: String) -> Error {
    Error::shape(op, msg)
}

impl LstmCell {
    /// A cell with PyTorch's initialisation: every parameter drawn from U(-1/√H, 1/√H), in the
    /// order weight_ih, weight_hh, bias_ih, bias_hh, from `rng`.
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<LstmCell> {
        let g = 4 * hidden_size;
        let weight_ih = Tensor::try_zeros(&[g, input_size], dtype)?;
        let weight_hh = Tensor::try_zeros(&[g, hidden_size], dtype)?;
        let bias_ih = bias.then(|| Tensor::zeros(&[g], dtype));
        let bias_hh = bias.then(|| Tensor::zeros(&[g], dtype));
        let bound = if hidden_size > 0 {
            1.0 / (hidden_size as f64).sqrt()
        } else {
            0.0
        };
        for t in [
            Some(&weight_ih),
            Some(&weight_hh),
            bias_ih.as_ref(),
            bias_hh.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            init::uniform_(t, -bound, bound, rng)?;
        }
        LstmCell::from_parts(weight_ih, weight_hh, bias_ih, bias_hh)
    }

    /// A cell holding the given tensors (made leaves that require grad), after checking their
    /// shapes ([4H, I], [4H, H], `[4H]`, `[4H]`) and dtypes.
    pub fn from_parts(
        weight_ih: Tensor,
        weight_hh: Tensor,
        bias_ih: Option<Tensor>,
        bias_hh: Option<Tensor>,
    ) -> Result<LstmCell> {
        let cell = LstmCell {
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
        };
        cell.check_parameters("lstm_cell")?;
        Ok(LstmCell {
            weight_ih: parameter(cell.weight_ih)?,
            weight_hh: parameter(cell.weight_hh)?,
            bias_ih: cell.bias_ih.map(parameter).transpose()?,
            bias_hh: cell.bias_hh.map(parameter).transpose()?,
        })
    }

    fn check_parameters(&self, op: &'static str) -> Result<()> {
        let (wi, wh) = (self.weight_ih.shape(), self.weight_hh.shape());
        let shapes = || {
            format!(
                "weight_ih {wi:?}, weight_hh {wh:?}, bias_ih {:?}, bias_hh {:?}",
                self.bias_ih.as_ref().map(|b| b.shape().to_vec()),
                self.bias_hh.as_ref().map(|b| b.shape().to_vec())
            )
        };
        let ok_weights =
            wi.len() == 2 && wh.len() == 2 && wh[0] > 0 && wh[0] == wi[0] && wh[1] * 4 == wh[0];
        let g = wi.first().copied().unwrap_or(0);
        let ok_bias = match (&self.bias_ih, &self.bias_hh) {
            (Some(bi), Some(bh)) => bi.shape() == [g] && bh.shape() == [g],
            (None, None) => true,
            _ => false,
        };
        if !ok_weights || !ok_bias {
            return Err(shape_error(
                op,
                format!(
                    "need weight_ih [4H, I], weight_hh [4H, H] with H > 0 and both biases [4H] or neither; got {}",
                    shapes()
                ),
            ));
        }
        for t in self.parameters() {
            self.weight_ih.same_dtype(op, &t)?;
        }
        Ok(())
    }

    /// I, the features of each input.
    pub fn input_size(&self) -> usize {
        self.weight_ih.shape()[1]
    }

    /// H, the hidden (and cell) units.
    pub fn hidden_size(&self) -> usize {
        self.weight_hh.shape()[1]
    }

    /// The parameters' element type.
    pub fn dtype(&self) -> DType {
        self.weight_ih.dtype()
    }

    /// A zero state (h, c), both [batch, H], to start from, on the cell's device.
    pub fn zero_state(&self, batch: usize) -> (Tensor, Tensor) {
        let device = self.weight_ih.device();
        let z = Tensor::full_on(&[batch, self.hidden_size()], 0.0, self.dtype(), device)
            .unwrap_or_else(|e| panic!("an LSTM's zero state on {device}: {e}"));
        (z.clone(), z)
    }

    /// b_ih + b_hh, once, when the cell has biases.
    fn bias(&self) -> Result<Option<Tensor>> {
        match (&self.bias_ih, &self.bias_hh) {
            (Some(bi), Some(bh)) => bi.add(bh).map(Some),
            _ => Ok(None),
        }
    }

    /// Checks x [B, I] and h, c [B, H] against the cell; returns B.
    fn check_step(&self, op: &'static str, x: &Tensor, h: &Tensor, c: &Tensor) -> Result<usize> {
        self.check_parameters(op)?;
        let (i, hs) = (self.input_size(), self.hidden_size());
        let b = x.shape().first().copied().unwrap_or(0);
        if x.shape() != [b, i] || h.shape() != [b, hs] || c.shape() != [b, hs] {
            return Err(shape_error(
                op,
                format!(
                    "input {:?}, h {:?}, c {:?} do not fit weight_ih {:?}: need input [B, {i}] and h, c [B, {hs}]",
                    x.shape(),
                    h.shape(),
                    c.shape(),
                    self.weight_ih.shape()
                ),
            ));
        }
        for t in [x, h, c] {
            self.weight_ih.same_dtype(op, t)?;
        }
        Ok(b)
    }

    /// One step: x [B, I] and the state (h, c), both [B, H], give the new state (h', c'):
    /// a = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh, then c' = f ⊙ c + i ⊙ g and h' = o ⊙ tanh(c') by the
    /// fused op. Unbatched x `[I]` with h, c `[H]` gives h', c' `[H]` (as PyTorch).
    pub fn forward(&self, x: &Tensor, state: (&Tensor, &Tensor)) -> Result<(Tensor, Tensor)> {
        let (h, c) = state;
        if x.rank() == 1 && h.rank() == 1 && c.rank() == 1 {
            let (h1, c1) = self.forward(&x.unsqueeze(0)?, (&h.unsqueeze(0)?, &c.unsqueeze(0)?))?;
            return Ok((h1.squeeze(0)?, c1.squeeze(0)?));
        }
        self.check_step("lstm_cell", x, h, c)?;
        let gates = x
            .matmul(&self.weight_ih.t()?)?
            .add(&h.matmul(&self.weight_hh.t()?)?)?;
        let gates = match self.bias()? {
            Some(b) => gates.add(&b)?,
            None => gates,
        };
        Tensor::lstm_cell_pointwise(&gates, c)
    }
}

impl Module for LstmCell {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("weight_ih".to_string(), self.weight_ih.clone()),
            ("weight_hh".to_string(), self.weight_hh.clone()),
        ];
        if let (Some(bi), Some(bh)) = (&self.bias_ih, &self.bias_hh) {
            out.push(("bias_ih".to_string(), bi.clone()));
            out.push(("bias_hh".to_string(), bh.clone()));
        }
        out
    }
}

/// A single-layer LSTM over a sequence, `torch.nn.LSTM(input_size, hidden_size)` with
/// `num_layers=1, batch_first=False`: its [`LstmCell`] applied step by step along the time
/// axis (axis 0).
/// Its parameters are named as PyTorch's: "weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
/// "bias_hh_l0".
#[derive(Clone, Debug)]
pub struct Lstm {
    /// The cell applied at every step.
    pub cell: LstmCell,
}

impl Lstm {
    /// A layer with PyTorch's initialisation (see [`LstmCell::new`]).
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Lstm> {
        Ok(Lstm {
            cell: LstmCell::new(input_size, hidden_size, bias, dtype, rng)?,
        })
    }

    /// I, the features of each step's input.
    pub fn input_size(&self) -> usize {
        self.cell.input_size()
    }

    /// H, the hidden (and cell) units.
    pub fn hidden_size(&self) -> usize {
        self.cell.hidden_size()
    }

    /// Runs the sequence x [T, B, I] from `state` (h_0, c_0), both [1, B, H] as PyTorch's
    /// (num_layers, batch, hidden), or from zeros when `None`. Returns the hidden states of
    /// every step, [T, B, H], and the final state (h_T, c_T), both [1, B, H].
    ///
    /// The whole sequence is one op: the input projections x_t W_ihᵀ + b_ih + b_hh of all steps
    /// are one matmul, then each step is one recurrent matmul and the fused pointwise kernel;
    /// the backward is backpropagation through time with the fused backward kernel and one
    /// matmul each for dx, dW_ih and dW_hh. Gradients of gradients go through the step-by-step
    /// graph of [`Lstm::forward_stepwise`], which computes the same function.
    pub fn forward(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        self.run(x, state, lstm_sequence)
    }

    /// [`Lstm::forward`] as a recorded graph of per-step ops: a_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ
    /// (+ b_ih + b_hh) and [`Tensor::lstm_cell_pointwise`] for every step. Same values and
    /// gradients; slower (more ops, smaller matmuls), but every step is visible in the graph.
    pub fn forward_stepwise(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        self.run(x, state, lstm_sequence_stepwise)
    }

    fn run(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
        sequence: fn(&Tensor, SequenceArgs) -> Result<Tensor>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        const OP: &str = "lstm";
        let cell = &self.cell;
        cell.check_parameters(OP)?;
        let (i_size, h_size) = (cell.input_size(), cell.hidden_size());
        let xs = x.shape();
        if xs.len() != 3 || xs[2] != i_size || xs[0] == 0 {
            return Err(shape_error(
                OP,
                format!(
                    "input {xs:?} does not fit weight_ih {:?}: need a non-empty [T, B, {i_size}]",
                    cell.weight_ih.shape()
                ),
            ));
        }
        let (steps, b) = (xs[0], xs[1]);
        let state = match state {
            None => None,
            Some((h0, c0)) => {
                if h0.shape() != [1, b, h_size] || c0.shape() != [1, b, h_size] {
                    return Err(shape_error(
                        OP,
                        format!(
                            "h_0 {:?} and c_0 {:?} must be [1, {b}, {h_size}] for input {xs:?}",
                            h0.shape(),
                            c0.shape()
                        ),
                    ));
                }
                Some((h0.squeeze(0)?, c0.squeeze(0)?))
            }
        };
        for t in [
            Some(x),
            state.as_ref().map(|s| &s.0),
            state.as_ref().map(|s| &s.1),
        ]
        .into_iter()
        .flatten()
        {
            cell.weight_ih.same_dtype(OP, t)?;
        }
        let args = SequenceArgs {
            weight_ih: &cell.weight_ih,
            weight_hh: &cell.weight_hh,
            bias: cell.bias_ih.as_ref().zip(cell.bias_hh.as_ref()),
            state: state.as_ref().map(|(h, c)| (h, c)),
        };
        // y = [h_1, ..., h_T, c_T]
        let y = sequence(x, args)?;
        Ok((
            y.narrow(0, 0, steps)?,
            (y.narrow(0, steps - 1, 1)?, y.narrow(0, steps, 1)?),
        ))
    }
}

impl Module for Lstm {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.cell
            .named_parameters()
            .into_iter()
            .map(|(n, t)| (format!("{n}_l0"), t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_shapes_and_init() {
        let mut rng = Rng::new(0);
        let cell = LstmCell::new(3, 4, true, DType::F32, &mut rng).unwrap();
        let names: Vec<String> = cell
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]);
        assert_eq!(cell.weight_ih.shape(), &[16, 3]);
        assert_eq!(cell.weight_hh.shape(), &[16, 4]);
        assert!(cell
            .parameters()
            .iter()
            .all(|p| p.requires_grad() && p.to_vec_f64().iter().all(|v| v.abs() <= 0.5)));
        let lstm = Lstm::new(3, 4, false, DType::F32, &mut rng).unwrap();
        let names: Vec<String> = lstm
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["weight_ih_l0", "weight_hh_l0"]);
        // same seed, same weights
        let a = Lstm::new(2, 2, true, DType::F64, &mut Rng::new(5)).unwrap();
        let b = Lstm::new(2, 2, true, DType::F64, &mut Rng::new(5)).unwrap();
        assert_eq!(a.cell.weight_hh.to_vec_f64(), b.cell.weight_hh.to_vec_f64());
    }

    #[test]
    fn shape_errors_name_the_op_and_shapes() {
        let mut rng = Rng::new(1);
        let cell = LstmCell::new(3, 4, true, DType::F32, &mut rng).unwrap();
        let (h, c) = cell.zero_state(2);
        let e = cell
            .forward(&Tensor::zeros(&[2, 5], DType::F32), (&h, &c))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lstm_cell") && e.contains("[2, 5]") && e.contains("[16, 3]"),
            "{e}"
        );
        let x = Tensor::zeros(&[2, 3], DType::F32);
        assert!(cell
            .forward(&x, (&h, &Tensor::zeros(&[2, 5], DType::F32)))
            .is_err());
        assert!(cell
            .forward(&x.to_dtype(DType::F64).unwrap(), (&h, &c))
            .is_err());
        assert!(LstmCell::from_parts(
            Tensor::zeros(&[16, 3], DType::F32),
            Tensor::zeros(&[16, 4], DType::F32),
            Some(Tensor::zeros(&[16], DType::F32)),
            None
        )
        .is_err());
        assert!(LstmCell::from_parts(
            Tensor::zeros(&[12, 3], DType::F32),
            Tensor::zeros(&[12, 4], DType::F32),
            None,
            None
        )
        .is_err());
        assert!(LstmCell::new(3, 0, true, DType::F32, &mut rng).is_err());
        let lstm = Lstm { cell };
        // an empty batch runs (and differentiates) to empty results
        let x0 = Tensor::zeros(&[4, 0, 3], DType::F32)
            .requires_grad_(true)
            .unwrap();
        let (out, (h_n, _)) = lstm.forward(&x0, None).unwrap();
        assert_eq!((out.shape(), h_n.shape()), (&[4, 0, 4][..], &[1, 0, 4][..]));
        let g = crate::grad(
            std::slice::from_ref(&out),
            &[out.zeros_like()],
            std::slice::from_ref(&x0),
            false,
        )
        .unwrap();
        assert_eq!(g[0].as_ref().unwrap().shape(), &[4, 0, 3]);
        let e = lstm
            .forward(&Tensor::zeros(&[5, 2, 4], DType::F32), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lstm") && e.contains("[5, 2, 4]"), "{e}");
        assert!(lstm
            .forward(&Tensor::zeros(&[0, 2, 3], DType::F32), None)
            .is_err());
        let h0 = Tensor::zeros(&[2, 4], DType::F32);
        let e = lstm
            .forward(&Tensor::zeros(&[5, 2, 3], DType::F32), Some((&h0, &h0)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, 2, 4]"), "{e}");
    }

    #[test]
    fn sequence_records_only_in_grad_mode() {
        // the fused sequence computes on a pool thread; grad mode is the caller's
        let mut rng = Rng::new(4);
        let lstm = Lstm::new(2, 3, true, DType::F32, &mut rng).unwrap();
        let x = Tensor::randn(&[3, 2, 2], DType::F32, &mut rng)
            .requires_grad_(true)
            .unwrap();
        let (out, (h_n, c_n)) = crate::no_grad(|| lstm.forward(&x, None)).unwrap();
        assert!(!out.requires_grad() && !h_n.requires_grad() && !c_n.requires_grad());
        let (out, _) = lstm.forward(&x, None).unwrap();
        assert!(out.requires_grad());
        assert_eq!(out.op().map(|op| op.name()), Some("narrow"));
    }

    #[test]
    fn sequence_equals_cell_steps_in_both_modes() {
        let mut rng = Rng::new(2);
        let lstm = Lstm::new(3, 5, true, DType::F64, &mut rng).unwrap();
        let x = Tensor::randn(&[4, 2, 3], DType::F64, &mut rng);
        let h0 = Tensor::randn(&[1, 2, 5], DType::F64, &mut rng);
        let c0 = Tensor::randn(&[1, 2, 5], DType::F64, &mut rng);
        let (out, (h_n, c_n)) = lstm.forward(&x, Some((&h0, &c0))).unwrap();
        let (out2, (h_n2, _)) = crate::no_grad(|| lstm.forward(&x, Some((&h0, &c0)))).unwrap();
        assert_eq!(out.shape(), &[4, 2, 5]);
        assert_eq!(h_n.shape(), &[1, 2, 5]);
        let (mut h, mut c) = (h0.squeeze(0).unwrap(), c0.squeeze(0).unwrap());
        for t in 0..4 {
            let x_t = x.narrow(0, t, 1).unwrap().squeeze(0).unwrap();
            (h, c) = lstm.cell.forward(&x_t, (&h, &c)).unwrap();
            let o_t = out.narrow(0, t, 1).unwrap().to_vec_f64();
            let d = h
                .to_vec_f64()
                .iter()
                .zip(&o_t)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(d < 1e-12, "step {t}: {d}");
        }
        let close = |a: &Tensor, b: &Tensor| {
            a.to_vec_f64()
                .iter()
                .zip(b.to_vec_f64())
                .all(|(x, y)| (x - y).abs() < 1e-12)
        };
        assert!(close(&c_n.squeeze(0).unwrap(), &c));
        assert!(close(&out, &out2) && close(&h_n, &h_n2));
        // unbatched cell step
        let (h1, c1) = lstm
            .cell
            .forward(
                &x.narrow(0, 0, 1)
                    .unwrap()
                    .reshape(&[2, 3])
                    .unwrap()
                    .narrow(0, 0, 1)
                    .unwrap()
                    .squeeze(0)
                    .unwrap(),
                (
                    &Tensor::zeros(&[5], DType::F64),
                    &Tensor::zeros(&[5], DType::F64),
                ),
            )
            .unwrap();
        assert_eq!((h1.shape(), c1.shape()), (&[5][..], &[5][..]));
    }
}
