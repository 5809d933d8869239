//! The recurrence of a PixelRNN layer as one op: an LSTM swept over a grid of positions
//! (`kernels::cpu::grid_lstm` has the equations and the wave schedule; the [`Sweep`] says which
//! neighbours feed each position), with forward and backward through the backend.
//!
//! [`Tensor::grid_lstm_reference`] computes the same with recorded Tensor ops the way the paper
//! describes it (rows one at a time; the map skewed, swept column by column, unskewed, and
//! mirrored for the right-to-left direction). The tests compare the two, and the op's backward
//! uses it when gradients of gradients are asked for (`create_graph`): the backward rule of the
//! fused op lives here, beside that Tensor-op form.

use crate::backend::{GridTape, Storage};
use crate::error::{Error, Result};
use crate::grad_mode::is_grad_enabled;
use crate::layout::Layout;
use crate::op::{zeros_where_missing, CustomBackward};
use crate::tensor::Tensor;
use kernels::cpu::on_pool;
use kernels::desc::{GridPlan, Sweep};
use std::sync::Arc;

/// What the backward needs: the schedule, the forward's tape, and the sweep (for the
/// reference under `create_graph`).
struct GridBackward {
    plan: GridPlan,
    sweep: Sweep,
    tape: GridTape<Storage>,
}

impl CustomBackward for GridBackward {
    fn name(&self) -> &'static str {
        "grid_lstm"
    }

    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (pre, w) = (&inputs[0], &inputs[1]);
        if is_grad_enabled() {
            // create_graph: differentiate the recorded reference instead
            let y = Tensor::grid_lstm_reference(pre, w, self.sweep)?;
            let g = crate::grad(&[y], std::slice::from_ref(grad), inputs, true)?;
            return zeros_where_missing(g, inputs);
        }
        let t = &self.tape;
        let tape = GridTape {
            gates: &t.gates,
            taps: &t.taps,
            c_prev: &t.c_prev,
            out: &t.out,
        };
        let (sw, sg) = (w.storage(), grad.storage());
        let (dpre, dw) = on_pool(|| {
            Storage::grid_lstm_backward(&self.plan, tape, (&sw, w.layout()), (&sg, grad.layout()))
        })?;
        Ok(vec![
            Tensor::from_storage(dpre, Layout::contiguous(pre.shape())),
            Tensor::from_storage(dw, Layout::contiguous(w.shape())),
        ])
    }
}

/// (B, R, C, H) of a valid (pre, w) pair, or an error naming both shapes.
fn check(pre: &Tensor, w: &Tensor, sweep: Sweep) -> Result<[usize; 4]> {
    const OP: &str = "grid_lstm";
    let (sp, sw) = (pre.shape(), w.shape());
    if pre.dtype() != w.dtype() {
        return Err(Error::dtype(
            OP,
            format!(
                "pre {sp:?} is {} but w {sw:?} is {}",
                pre.dtype(),
                w.dtype()
            ),
        ));
    }
    let k = sweep.taps().len();
    let ok = sp.len() == 4
        && sp[3] % 4 == 0
        && sp[3] > 0
        && sp[1] > 0
        && sp[2] > 0
        && sw == [k * sp[3] / 4, sp[3]];
    if !ok {
        return Err(Error::shape(
            OP,
            format!(
                "needs pre [B, R, C, 4H] (R, C, H > 0) and w [{k} H, 4H] for a {sweep:?} sweep, got pre {sp:?} and w {sw:?}"
            ),
        ));
    }
    Ok([sp[0], sp[1], sp[2], sp[3] / 4])
}

impl Tensor {
    /// The LSTM swept over the grid (see the module's documentation): h [B, R, C, H] for the
    /// input-to-state gates `pre` [B, R, C, 4H] (order i, f, g, o) and the state-to-state
    /// weights `w` [K H, 4H] (K = `sweep.taps().len()`, block k of rows for tap k). One op;
    /// differentiable (twice through [`Tensor::grid_lstm_reference`]).
    pub fn grid_lstm(pre: &Tensor, w: &Tensor, sweep: Sweep) -> Result<Tensor> {
        let [b, rows, cols, h] = check(pre, w, sweep)?;
        if b == 0 {
            return Tensor::full_on(&[0, rows, cols, h], 0.0, pre.dtype(), pre.device());
        }
        let plan = GridPlan::new(sweep, b, rows, cols, h);
        let (sp, sw) = (pre.storage(), w.storage());
        let (y, tape) = on_pool(|| sp.grid_lstm_forward(pre.layout(), (&sw, w.layout()), &plan))?;
        let value = Tensor::from_storage(y, Layout::contiguous(&[b, rows, cols, h]));
        Ok(Tensor::from_custom_op(
            &value,
            vec![pre.clone(), w.clone()],
            Arc::new(GridBackward { plan, sweep, tape }),
        ))
    }

    /// This tensor moved by `by` (±1, or more) along `axis`, zeros shifted in.
    pub fn shift(&self, axis: usize, by: isize) -> Result<Tensor> {
        shift(self, axis, by)
    }
    /// [`Tensor::grid_lstm`] in recorded Tensor ops: the Row LSTM row by row; the Diagonal BiLSTM on the
    /// skewed map column by column (mirrored first for [`Sweep::DiagonalRight`]).
    pub fn grid_lstm_reference(pre: &Tensor, w: &Tensor, sweep: Sweep) -> Result<Tensor> {
        let [b, rows, cols, h] = check(pre, w, sweep)?;
        match sweep {
            Sweep::Rows => {
                // rows first: [R, B, C, 4H]; the row above at columns c - 1, c, c + 1
                let steps = split_first(&pre.permute(&[1, 0, 2, 3])?.contiguous()?)?;
                scan(steps, w, h, &[1, 0, -1])?
                    .reshape(&[rows, b, cols, h])?
                    .permute(&[1, 0, 2, 3])
            }
            Sweep::DiagonalLeft | Sweep::DiagonalRight => {
                let right = sweep == Sweep::DiagonalRight;
                let pre = if right { mirror(pre, 2)? } else { pre.clone() };
                // skewed, columns first, channels last: [R + C - 1, B, R, 4H]
                let skewed = skew(&pre.permute(&[0, 3, 1, 2])?)?
                    .permute(&[3, 0, 2, 1])?
                    .contiguous()?;
                let l = skewed.shape()[0];
                // the previous column at rows i - 1 and i
                let hs = scan(split_first(&skewed)?, w, h, &[1, 0])?
                    .reshape(&[l, b, rows, h])?
                    .permute(&[1, 3, 2, 0])?;
                let hs = unskew(&hs, cols)?.permute(&[0, 2, 3, 1])?;
                if right {
                    mirror(&hs, 2)
                } else {
                    Ok(hs)
                }
            }
        }
    }
}

// ----- the reference: recorded Tensor ops, as the paper describes the layers ---------------------

/// `x` moved by `by` (±1) along `axis`, zeros shifted in.
fn shift(x: &Tensor, axis: usize, by: isize) -> Result<Tensor> {
    let n = x.shape()[axis];
    let m = by.unsigned_abs().min(n);
    let mut zs = x.shape().to_vec();
    zs[axis] = m;
    let zeros = Tensor::full_on(&zs, 0.0, x.dtype(), x.device())?;
    if m == n {
        return Ok(zeros);
    }
    let a = axis as isize;
    if by >= 0 {
        Tensor::concat(&[zeros, x.narrow(a, 0, n - m)?], a)
    } else {
        Tensor::concat(&[x.narrow(a, m, n - m)?, zeros], a)
    }
}

/// The slices t[0], t[1], ... along the first axis, each [1, ...], cut by halving (so that the
/// backward pass costs about log2(n) times t's size, not n times).
fn split_first(t: &Tensor) -> Result<Vec<Tensor>> {
    let n = t.shape()[0];
    if n <= 1 {
        return Ok(vec![t.clone()]);
    }
    let half = n / 2;
    let mut v = split_first(&t.narrow(0, 0, half)?)?;
    v.extend(split_first(&t.narrow(0, half, n - half)?)?);
    Ok(v)
}

/// Row i of every map moved i to the right: [B, C, H, W] -> [B, C, H, W + H - 1], zeros
/// around. Done with one reshape: each row padded by H zeros and read back with rows one
/// shorter.
fn skew(x: &Tensor) -> Result<Tensor> {
    let s = x.shape().to_vec();
    let (b, ch, h, w) = (s[0], s[1], s[2], s[3]);
    let l = w + h - 1;
    x.pad2d((0, h, 0, 0))?
        .reshape(&[b, ch, h * (w + h)])?
        .narrow(2, 0, h * l)?
        .reshape(&[b, ch, h, l])
}

/// The inverse of [`skew`]: [B, C, H, W + H - 1] -> [B, C, H, W].
fn unskew(y: &Tensor, w: usize) -> Result<Tensor> {
    let s = y.shape().to_vec();
    let (b, ch, h, l) = (s[0], s[1], s[2], s[3]);
    let flat = y.reshape(&[b, ch, h * l])?;
    let zeros = Tensor::full_on(&[b, ch, h], 0.0, y.dtype(), y.device())?;
    Tensor::concat(&[flat, zeros], 2)?
        .reshape(&[b, ch, h, w + h])?
        .narrow(3, 0, w)
}

/// The mirror image along `axis`.
fn mirror(x: &Tensor, axis: usize) -> Result<Tensor> {
    let n = x.shape()[axis];
    x.index_select(axis as isize, &(0..n).rev().collect::<Vec<_>>())
}

/// The LSTM over `steps` ([1, B, N, 4H] each: the input-to-state gates of one row or column),
/// the state-to-state input of a step being the previous step's states [B, N, H] shifted along
/// N by each of `shifts` and laid side by side. Returns every step's h, [steps, B * N, H].
fn scan(steps: Vec<Tensor>, w: &Tensor, hidden: usize, shifts: &[isize]) -> Result<Tensor> {
    let s = steps[0].shape().to_vec();
    let (b, n) = (s[1], s[2]);
    let mut c = Tensor::full_on(&[b * n, hidden], 0.0, steps[0].dtype(), steps[0].device())?;
    let mut h: Option<Tensor> = None;
    let mut hs = Vec::with_capacity(steps.len());
    for step in steps {
        let mut gates = step.reshape(&[b * n, 4 * hidden])?;
        if let Some(h) = &h {
            let taps = shifts
                .iter()
                .map(|&by| shift(h, 1, by))
                .collect::<Result<Vec<_>>>()?;
            let taps = Tensor::concat(&taps, 2)?.reshape(&[b * n, shifts.len() * hidden])?;
            gates = gates.add(&taps.matmul(w)?)?;
        }
        let hc = Tensor::lstm_cell_fused(&gates, &c)?;
        c = hc.narrow(1, hidden, hidden)?;
        let h_j = hc.narrow(1, 0, hidden)?;
        h = Some(h_j.reshape(&[b, n, hidden])?);
        hs.push(h_j);
    }
    Tensor::stack(&hs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::DType;

    #[test]
    fn skew_unskew_mirror_shift() {
        // [1, 1, 2, 3]: rows [0 1 2], [3 4 5]
        let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[1, 1, 2, 3]).unwrap();
        let s = skew(&x).unwrap();
        assert_eq!(s.shape(), &[1, 1, 2, 4]);
        assert_eq!(s.to_vec_f32(), [0., 1., 2., 0., 0., 3., 4., 5.]);
        assert_eq!(unskew(&s, 3).unwrap().to_vec_f32(), x.to_vec_f32());
        let m = mirror(&x, 3).unwrap().to_vec_f32();
        assert_eq!(m, [2., 1., 0., 5., 4., 3.]);
        let down = shift(&x, 2, 1).unwrap().to_vec_f32();
        assert_eq!(down, [0., 0., 0., 0., 1., 2.]);
        let parts = split_first(&Tensor::arange(7, DType::F32)).unwrap();
        let v: Vec<f32> = parts.iter().flat_map(|p| p.to_vec_f32()).collect();
        assert_eq!(v, [0., 1., 2., 3., 4., 5., 6.]);
    }

    fn close(a: &Tensor, b: &Tensor, tol: f64) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.to_vec_f64().iter().zip(b.to_vec_f64()) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn op_equals_the_reference_in_value_and_gradients() {
        let mut rng = Rng::new(7);
        for sweep in [Sweep::Rows, Sweep::DiagonalLeft, Sweep::DiagonalRight] {
            for (b, rows, cols, h) in [(2, 4, 5, 3), (1, 3, 3, 2), (2, 1, 4, 2), (1, 5, 1, 1)] {
                let k = sweep.taps().len();
                let pre = Tensor::randn(&[b, rows, cols, 4 * h], DType::F64, &mut rng)
                    .mul_scalar(2.0)
                    .unwrap()
                    .requires_grad_(true)
                    .unwrap();
                let w = Tensor::randn(&[k * h, 4 * h], DType::F64, &mut rng)
                    .requires_grad_(true)
                    .unwrap();
                let y = Tensor::grid_lstm(&pre, &w, sweep).unwrap();
                let r = Tensor::grid_lstm_reference(&pre, &w, sweep).unwrap();
                close(&y, &r, 1e-12);
                let v = Tensor::randn(y.shape(), DType::F64, &mut rng);
                let inputs = [pre.clone(), w.clone()];
                let g = crate::grad(&[y], std::slice::from_ref(&v), &inputs, false).unwrap();
                let gr = crate::grad(&[r], std::slice::from_ref(&v), &inputs, false).unwrap();
                for ((a, b), t) in g.iter().zip(&gr).zip(&inputs) {
                    // (an input that nothing reads, w of a one-row grid, gets None)
                    let zeros = t.zeros_like();
                    close(
                        a.as_ref().unwrap_or(&zeros),
                        b.as_ref().unwrap_or(&zeros),
                        1e-12,
                    );
                }
                // gradients of gradients (through the reference): of |d<v, y>/dw|^2 w.r.t. pre
                let second = |f: &dyn Fn() -> Tensor| {
                    let g = crate::grad(&[f()], std::slice::from_ref(&v), &inputs, true).unwrap();
                    let gw = match &g[1] {
                        Some(gw) => gw.square().unwrap().sum_all().unwrap(),
                        None => return pre.zeros_like(),
                    };
                    let gg = crate::grad(&[gw], &[], std::slice::from_ref(&pre), false);
                    gg.unwrap()[0].clone().unwrap_or_else(|| pre.zeros_like())
                };
                close(
                    &second(&|| Tensor::grid_lstm(&pre, &w, sweep).unwrap()),
                    &second(&|| Tensor::grid_lstm_reference(&pre, &w, sweep).unwrap()),
                    1e-10,
                );
            }
        }
    }

    #[test]
    fn shape_errors_name_the_op_and_shapes() {
        let pre = Tensor::zeros(&[1, 2, 2, 8], DType::F32);
        let e = Tensor::grid_lstm(&pre, &Tensor::zeros(&[4, 8], DType::F32), Sweep::Rows)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("grid_lstm") && e.contains("[1, 2, 2, 8]") && e.contains("[4, 8]"),
            "{e}"
        );
        assert!(Tensor::grid_lstm(
            &Tensor::zeros(&[1, 2, 2, 7], DType::F32),
            &Tensor::zeros(&[4, 7], DType::F32),
            Sweep::DiagonalLeft
        )
        .is_err());
        assert!(Tensor::grid_lstm(
            &pre,
            &Tensor::zeros(&[4, 8], DType::F64),
            Sweep::DiagonalLeft
        )
        .is_err());
        let y = Tensor::grid_lstm(
            &Tensor::zeros(&[0, 2, 2, 8], DType::F32),
            &Tensor::zeros(&[4, 8], DType::F32),
            Sweep::DiagonalLeft,
        )
        .unwrap();
        assert_eq!(y.shape(), &[0, 2, 2, 2]);
    }
}
