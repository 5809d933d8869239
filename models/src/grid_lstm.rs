//! The recurrence of a PixelRNN layer as one op: an LSTM swept over a grid of positions, with
//! forward and backward on raw buffers (the engine's fused LSTM cell kernels and matmul), for
//! [`crate::pixel_rnn`].
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
//! [`Sweep`]'s. The positions are computed in waves (a row, or an anti-diagonal r + c = const),
//! each wave one matmul and one fused cell call over all its positions and images; every tap of
//! a position lies in an earlier wave.
//!
//! - [`Sweep::Rows`] is the Row LSTM's recurrence: taps (r-1, c-1), (r-1, c), (r-1, c+1) (the
//!   1x3 state-to-state convolution along the row above), cell from (r-1, c).
//! - [`Sweep::DiagonalLeft`] is the Diagonal BiLSTM's: taps (r-1, c) and (r, c-1), which are
//!   rows i-1 and i of the previous column of the skewed map (its 2x1 convolution), cell from
//!   (r, c-1). The waves are the skewed map's columns, so no skewing is needed.
//! - [`Sweep::DiagonalRight`] is the same on the mirrored image: taps (r-1, c) and (r, c+1),
//!   cell from (r, c+1).
//!
//! [`grid_lstm_reference`] computes the same with recorded Tensor ops the way the paper
//! describes it (rows one at a time; the map skewed, swept column by column, unskewed, and
//! mirrored for the right-to-left direction). The tests compare the two, and the op's backward
//! uses it when gradients of gradients are asked for (`create_graph`).

use autograd::{is_grad_enabled, CustomBackward, DType, Element, Error, Result, Tensor};
use kernels::cpu::lstm::{lstm_cell_backward, lstm_cell_forward, on_pool, LstmFloat, Rows};
use kernels::cpu::matmul::{matmul, MatRef};
use std::sync::Arc;

/// How the LSTM sweeps the grid; see the module's documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    Rows,
    DiagonalLeft,
    DiagonalRight,
}

impl Sweep {
    /// The (row, column) offsets of the states that the state-to-state weights read, in the
    /// order of `w`'s blocks of rows.
    pub fn taps(self) -> &'static [(isize, isize)] {
        match self {
            Sweep::Rows => &[(-1, -1), (-1, 0), (-1, 1)],
            Sweep::DiagonalLeft => &[(-1, 0), (0, -1)],
            Sweep::DiagonalRight => &[(-1, 0), (0, 1)],
        }
    }

    /// The offset of the position whose cell state a position continues.
    pub fn cell_from(self) -> (isize, isize) {
        match self {
            Sweep::Rows => (-1, 0),
            Sweep::DiagonalLeft => (0, -1),
            Sweep::DiagonalRight => (0, 1),
        }
    }

    fn waves(self, rows: usize, cols: usize) -> usize {
        match self {
            Sweep::Rows => rows,
            _ => rows + cols - 1,
        }
    }

    fn wave(self, r: usize, c: usize, cols: usize) -> usize {
        match self {
            Sweep::Rows => r,
            Sweep::DiagonalLeft => r + c,
            Sweep::DiagonalRight => r + (cols - 1 - c),
        }
    }
}

const NONE: usize = usize::MAX;

/// The positions of all images in wave order ("slots"), and where each slot's taps and cell
/// come from (slots of earlier waves, or [`NONE`] outside the grid).
struct Plan {
    hidden: usize,
    taps: usize,
    /// slot -> flat position (b, r, c) in the grid
    order: Vec<usize>,
    /// wave w is slots starts[w]..starts[w + 1]
    starts: Vec<usize>,
    /// slot * taps + k -> the slot tap k reads
    tap_src: Vec<usize>,
    /// slot -> the slot whose cell it continues
    cell_src: Vec<usize>,
}

impl Plan {
    fn new(sweep: Sweep, b: usize, rows: usize, cols: usize, hidden: usize) -> Plan {
        let waves = sweep.waves(rows, cols);
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); waves];
        for img in 0..b {
            for r in 0..rows {
                for c in 0..cols {
                    buckets[sweep.wave(r, c, cols)].push((img * rows + r) * cols + c);
                }
            }
        }
        let mut starts = Vec::with_capacity(waves + 1);
        let mut order = Vec::with_capacity(b * rows * cols);
        for bucket in buckets {
            starts.push(order.len());
            order.extend(bucket);
        }
        starts.push(order.len());
        let mut slot_of = vec![0; order.len()];
        for (slot, &p) in order.iter().enumerate() {
            slot_of[p] = slot;
        }
        let source = |p: usize, (dr, dc): (isize, isize)| {
            let (img, r, c) = (p / (rows * cols), (p / cols) % rows, p % cols);
            let (rr, cc) = (r as isize + dr, c as isize + dc);
            if rr < 0 || cc < 0 || rr >= rows as isize || cc >= cols as isize {
                NONE
            } else {
                slot_of[(img * rows + rr as usize) * cols + cc as usize]
            }
        };
        let taps = sweep.taps();
        let tap_src = order
            .iter()
            .flat_map(|&p| taps.iter().map(move |&t| (p, t)))
            .map(|(p, t)| source(p, t))
            .collect();
        let cell_src = order
            .iter()
            .map(|&p| source(p, sweep.cell_from()))
            .collect();
        Plan {
            hidden,
            taps: taps.len(),
            order,
            starts,
            tap_src,
            cell_src,
        }
    }

    fn waves(&self) -> impl DoubleEndedIterator<Item = std::ops::Range<usize>> + '_ {
        self.starts.windows(2).map(|w| w[0]..w[1])
    }

    /// The most slots in one wave.
    fn widest(&self) -> usize {
        self.waves().map(|w| w.len()).max().unwrap_or(0)
    }
}

/// The buffers of the two dtypes.
trait Scalar: Element + LstmFloat {
    fn read(t: &Tensor) -> Vec<Self>;
}

impl Scalar for f32 {
    fn read(t: &Tensor) -> Vec<f32> {
        t.to_vec_f32()
    }
}

impl Scalar for f64 {
    fn read(t: &Tensor) -> Vec<f64> {
        t.to_vec_f64()
    }
}

fn dense<T>(data: &[T], offset: usize, cols: usize) -> MatRef<'_, T> {
    MatRef {
        data,
        offset,
        row_stride: cols,
        col_stride: 1,
    }
}

/// What the forward keeps, all in slot order: the gates [P, 4H], the taps' states [P, K H],
/// the previous cells [P, H] and the cell's outputs [h | c] [P, 2H].
struct Tape<T> {
    plan: Plan,
    sweep: Sweep,
    gates: Vec<T>,
    taps: Vec<T>,
    c_prev: Vec<T>,
    out: Vec<T>,
}

fn forward<T: Scalar>(
    pre: &Tensor,
    w: &Tensor,
    plan: Plan,
    sweep: Sweep,
) -> Result<(Tensor, Tape<T>)> {
    let s = pre.shape().to_vec();
    let (h, k) = (plan.hidden, plan.taps);
    let (g4, h2, kh, p) = (4 * h, 2 * h, k * h, plan.order.len());
    let pre_v = T::read(pre);
    let w_v = T::read(w);
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
            dense(&taps, wave.start * kh, kh),
            dense(&w_v, 0, g4),
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
    let value = Tensor::from_vec(y, &[s[0], s[1], s[2], h])?;
    Ok((
        value,
        Tape {
            plan,
            sweep,
            gates,
            taps,
            c_prev,
            out,
        },
    ))
}

impl<T: Scalar> Tape<T> {
    /// Backpropagation through the waves, last to first: d pre [B, R, C, 4H] and d w [K H, 4H].
    fn backward(&self, pre: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        let plan = &self.plan;
        let (h, k) = (plan.hidden, plan.taps);
        let (g4, h2, kh, p) = (4 * h, 2 * h, k * h, plan.order.len());
        let dy = T::read(grad);
        let w_v = T::read(w);
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
                dense(&dgates, wave.start * g4, g4),
                MatRef {
                    data: &w_v,
                    offset: 0,
                    row_stride: 1,
                    col_stride: g4,
                },
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
            MatRef {
                data: &self.taps,
                offset: 0,
                row_stride: 1,
                col_stride: kh,
            },
            dense(&dgates, 0, g4),
            &mut dw,
        );
        Ok((
            Tensor::from_vec(dpre, pre.shape())?,
            Tensor::from_vec(dw, w.shape())?,
        ))
    }
}

fn add_into<T: Element>(acc: &mut [T], add: &[T]) {
    for (a, &b) in acc.iter_mut().zip(add) {
        *a += b;
    }
}

impl<T: Scalar> CustomBackward for Tape<T> {
    fn name(&self) -> &'static str {
        "grid_lstm"
    }

    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (pre, w) = (&inputs[0], &inputs[1]);
        if is_grad_enabled() {
            // create_graph: differentiate the recorded reference instead
            let y = grid_lstm_reference(pre, w, self.sweep)?;
            let g = autograd::grad(&[y], std::slice::from_ref(grad), inputs, true)?;
            return g
                .into_iter()
                .zip(inputs)
                .map(|(g, t)| match g {
                    Some(g) => Ok(g),
                    None => Tensor::scalar(0.0, t.dtype()).expand(t.shape()),
                })
                .collect();
        }
        let (dpre, dw) = on_pool(|| self.backward(pre, w, grad))?;
        Ok(vec![dpre, dw])
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

/// The LSTM swept over the grid (see the module's documentation): h [B, R, C, H] for the
/// input-to-state gates `pre` [B, R, C, 4H] (order i, f, g, o) and the state-to-state weights
/// `w` [K H, 4H] (K = `sweep.taps().len()`, block k of rows for tap k). One op; differentiable
/// (twice through [`grid_lstm_reference`]).
pub fn grid_lstm(pre: &Tensor, w: &Tensor, sweep: Sweep) -> Result<Tensor> {
    let [b, rows, cols, h] = check(pre, w, sweep)?;
    if b == 0 {
        return Ok(Tensor::zeros(&[0, rows, cols, h], pre.dtype()));
    }
    let plan = Plan::new(sweep, b, rows, cols, h);
    let (value, tape): (Tensor, Arc<dyn CustomBackward>) = match pre.dtype() {
        DType::F32 => {
            let (v, t) = on_pool(|| forward::<f32>(pre, w, plan, sweep))?;
            (v, Arc::new(t))
        }
        DType::F64 => {
            let (v, t) = on_pool(|| forward::<f64>(pre, w, plan, sweep))?;
            (v, Arc::new(t))
        }
    };
    Ok(Tensor::from_custom_op(
        &value,
        vec![pre.clone(), w.clone()],
        tape,
    ))
}

// ----- the reference: recorded Tensor ops, as the paper describes the layers ---------------------

/// `x` moved by `by` (±1) along `axis`, zeros shifted in.
pub(crate) fn shift(x: &Tensor, axis: usize, by: isize) -> Result<Tensor> {
    let n = x.shape()[axis];
    let m = by.unsigned_abs().min(n);
    let mut zs = x.shape().to_vec();
    zs[axis] = m;
    let zeros = Tensor::zeros(&zs, x.dtype());
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
pub(crate) fn skew(x: &Tensor) -> Result<Tensor> {
    let s = x.shape().to_vec();
    let (b, ch, h, w) = (s[0], s[1], s[2], s[3]);
    let l = w + h - 1;
    x.pad2d((0, h, 0, 0))?
        .reshape(&[b, ch, h * (w + h)])?
        .narrow(2, 0, h * l)?
        .reshape(&[b, ch, h, l])
}

/// The inverse of [`skew`]: [B, C, H, W + H - 1] -> [B, C, H, W].
pub(crate) fn unskew(y: &Tensor, w: usize) -> Result<Tensor> {
    let s = y.shape().to_vec();
    let (b, ch, h, l) = (s[0], s[1], s[2], s[3]);
    let flat = y.reshape(&[b, ch, h * l])?;
    let zeros = Tensor::zeros(&[b, ch, h], y.dtype());
    Tensor::concat(&[flat, zeros], 2)?
        .reshape(&[b, ch, h, w + h])?
        .narrow(3, 0, w)
}

/// The mirror image along `axis`.
pub(crate) fn mirror(x: &Tensor, axis: usize) -> Result<Tensor> {
    let n = x.shape()[axis];
    x.index_select(axis as isize, &(0..n).rev().collect::<Vec<_>>())
}

/// The LSTM over `steps` ([1, B, N, 4H] each: the input-to-state gates of one row or column),
/// the state-to-state input of a step being the previous step's states [B, N, H] shifted along
/// N by each of `shifts` and laid side by side. Returns every step's h, [steps, B * N, H].
fn scan(steps: Vec<Tensor>, w: &Tensor, hidden: usize, shifts: &[isize]) -> Result<Tensor> {
    let s = steps[0].shape().to_vec();
    let (b, n) = (s[1], s[2]);
    let mut c = Tensor::zeros(&[b * n, hidden], steps[0].dtype());
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

/// [`grid_lstm`] in recorded Tensor ops: the Row LSTM row by row; the Diagonal BiLSTM on the
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

#[cfg(test)]
mod tests {
    use super::*;
    use autograd::Rng;

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
                let y = grid_lstm(&pre, &w, sweep).unwrap();
                let r = grid_lstm_reference(&pre, &w, sweep).unwrap();
                close(&y, &r, 1e-12);
                let v = Tensor::randn(y.shape(), DType::F64, &mut rng);
                let inputs = [pre.clone(), w.clone()];
                let g = autograd::grad(&[y], std::slice::from_ref(&v), &inputs, false).unwrap();
                let gr = autograd::grad(&[r], std::slice::from_ref(&v), &inputs, false).unwrap();
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
                    let g =
                        autograd::grad(&[f()], std::slice::from_ref(&v), &inputs, true).unwrap();
                    let gw = match &g[1] {
                        Some(gw) => gw.square().unwrap().sum_all().unwrap(),
                        None => return pre.zeros_like(),
                    };
                    let gg = autograd::grad(&[gw], &[], std::slice::from_ref(&pre), false);
                    gg.unwrap()[0].clone().unwrap_or_else(|| pre.zeros_like())
                };
                close(
                    &second(&|| grid_lstm(&pre, &w, sweep).unwrap()),
                    &second(&|| grid_lstm_reference(&pre, &w, sweep).unwrap()),
                    1e-10,
                );
            }
        }
    }

    #[test]
    fn shape_errors_name_the_op_and_shapes() {
        let pre = Tensor::zeros(&[1, 2, 2, 8], DType::F32);
        let e = grid_lstm(&pre, &Tensor::zeros(&[4, 8], DType::F32), Sweep::Rows)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("grid_lstm") && e.contains("[1, 2, 2, 8]") && e.contains("[4, 8]"),
            "{e}"
        );
        assert!(grid_lstm(
            &Tensor::zeros(&[1, 2, 2, 7], DType::F32),
            &Tensor::zeros(&[4, 7], DType::F32),
            Sweep::DiagonalLeft
        )
        .is_err());
        assert!(grid_lstm(
            &pre,
            &Tensor::zeros(&[4, 8], DType::F64),
            Sweep::DiagonalLeft
        )
        .is_err());
        let y = grid_lstm(
            &Tensor::zeros(&[0, 2, 2, 8], DType::F32),
            &Tensor::zeros(&[4, 8], DType::F32),
            Sweep::DiagonalLeft,
        )
        .unwrap();
        assert_eq!(y.shape(), &[0, 2, 2, 2]);
    }
}
