//! The CPU arm of every op family: the buffers are `Vec`s, the work is `kernels::cpu`.

use super::{
    BackendStorage, GridTape, Operand, SequenceGrads, SequenceInputs, SequenceTape, SequenceWants,
};
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::layout::Layout;
use half::bf16;
use kernels::cpu::grid_lstm;
use kernels::cpu::lstm::{lstm_cell_backward, lstm_cell_forward, Rows};
use kernels::cpu::lstm_sequence::{self, SequenceOperands};
use kernels::cpu::matmul::{batched_matmul, matmul, MatRef};
use kernels::cpu::{conv, elementwise, index, loss, norm, optim, pool, reduce};
use kernels::desc::{AdamStep, GridPlan, LstmSequenceShape, RmspropStep, SgdStep};
use kernels::desc::{AxisSplit, BinaryKind, ConvGeometry, UnaryKind, WindowAxis};
use kernels::strided::View;
use std::borrow::Cow;

#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
}

/// f64 to bf16 as the CUDA kernels round it (`bf16.cuh`): through f32, then to nearest.
fn bf16_of(v: f64) -> bf16 {
    bf16::from_f32(v as f32)
}

impl CpuStorage {
    pub fn filled(dtype: DType, len: usize, value: f64) -> CpuStorage {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![value as f32; len]),
            DType::F64 => CpuStorage::F64(vec![value; len]),
            DType::BF16 => CpuStorage::BF16(vec![bf16_of(value); len]),
        }
    }

    /// `data` in `dtype` (rounded as the dtype's kernels round).
    pub fn from_f64s(data: Vec<f64>, dtype: DType) -> CpuStorage {
        match dtype {
            DType::F32 => CpuStorage::F32(data.into_iter().map(|v| v as f32).collect()),
            DType::F64 => CpuStorage::F64(data),
            DType::BF16 => CpuStorage::BF16(data.into_iter().map(bf16_of).collect()),
        }
    }

    /// The elements `layout` selects, contiguous, in f32 (exactly, for bf16 and f32) or f64:
    /// what a bf16 op computes on.
    fn widened(&self, layout: &Layout) -> CpuStorage {
        match self {
            CpuStorage::BF16(v) => {
                let all = CpuStorage::F32(v.iter().map(|x| x.to_f32()).collect());
                CpuStorage::F32(all.contiguous::<f32>(layout).into_owned())
            }
            CpuStorage::F32(_) => CpuStorage::F32(self.contiguous::<f32>(layout).into_owned()),
            CpuStorage::F64(_) => CpuStorage::F64(self.contiguous::<f64>(layout).into_owned()),
        }
    }

    /// A bf16 storage's elements `layout` selects, contiguous.
    pub fn contiguous_bf16(&self, layout: &Layout) -> Vec<bf16> {
        match self.widened(layout).narrowed() {
            CpuStorage::BF16(v) => v,
            _ => f32_or_f64_only(),
        }
    }

    /// This (f32 or f64) storage's values rounded to bf16.
    pub(super) fn narrowed(&self) -> CpuStorage {
        CpuStorage::BF16(match self {
            CpuStorage::F32(v) => v.iter().map(|&x| bf16::from_f32(x)).collect(),
            CpuStorage::F64(v) => v.iter().map(|&x| bf16_of(x)).collect(),
            CpuStorage::BF16(v) => v.clone(),
        })
    }

    /// The typed buffer. Callers have checked the dtype, so a mismatch is a bug in the engine.
    pub fn as_slice<T: Element>(&self) -> &[T] {
        T::slice(self).unwrap_or_else(|| {
            panic!(
                "engine bug: storage holds {}, asked for {}",
                self.dtype(),
                T::DTYPE
            )
        })
    }

    pub fn as_mut_slice<T: Element>(&mut self) -> &mut [T] {
        let dtype = self.dtype();
        T::slice_mut(self)
            .unwrap_or_else(|| panic!("engine bug: storage holds {dtype}, asked for {}", T::DTYPE))
    }

    /// A strided view of the buffer through `layout`.
    pub fn view<'a, T: Element>(&'a self, layout: &'a Layout) -> View<'a, T> {
        View {
            data: self.as_slice::<T>(),
            shape: &layout.shape,
            strides: &layout.strides,
            offset: layout.offset,
        }
    }

    /// The elements `layout` selects in row-major order: a slice of the buffer when the layout
    /// is contiguous, else a copy.
    pub fn contiguous<'a, T: Element>(&'a self, layout: &'a Layout) -> Cow<'a, [T]> {
        if layout.is_contiguous() {
            let start = layout.offset;
            return Cow::Borrowed(&self.as_slice::<T>()[start..start + layout.numel()]);
        }
        Cow::Owned(self.view::<T>(layout).to_vec())
    }

    /// The rows of the 2-D tensor `layout` describes, read in place when each row is
    /// contiguous (any row stride, as for a column slice), else from a contiguous copy.
    pub fn with_rows<T: Element, R>(&self, layout: &Layout, f: impl FnOnce(Rows<T>) -> R) -> R {
        let v = self.view::<T>(layout);
        let (rows, width) = (v.shape[0], v.shape[1]);
        let row_contiguous = width <= 1 || v.strides[1] == 1;
        if row_contiguous && (rows <= 1 || v.strides[0] >= width) {
            let stride = if rows <= 1 { width } else { v.strides[0] };
            f(Rows {
                data: &v.data[v.offset.min(v.data.len())..],
                stride,
            })
        } else {
            let copy = v.to_vec();
            f(Rows::contiguous(&copy, width))
        }
    }
}

/// Runs the typed kernel `f32_fn` or `f64_fn` by the storage's dtype and wraps its result.
/// bf16 storage never reaches here: `Storage` lets it through to matmul, the convolutions and
/// the copies alone, which take it in [`in_f32`].
fn by_dtype(
    s: &CpuStorage,
    f32_fn: impl FnOnce(&CpuStorage) -> Vec<f32>,
    f64_fn: impl FnOnce(&CpuStorage) -> Vec<f64>,
) -> CpuStorage {
    match s {
        CpuStorage::F32(_) => CpuStorage::F32(f32_fn(s)),
        CpuStorage::F64(_) => CpuStorage::F64(f64_fn(s)),
        CpuStorage::BF16(_) => f32_or_f64_only(),
    }
}

/// The arm of a kernel without a bf16 version, which `Storage` never lets bf16 reach.
fn f32_or_f64_only() -> ! {
    panic!("engine bug: a bf16 storage reached an f32/f64-only kernel")
}

/// An op on two bf16 operands computed as the CUDA kernels compute it: each operand widened to
/// f32 (exact), the f32 kernel on those (contiguous), its result rounded to bf16 once.
fn in_f32(
    (a, la): Operand<CpuStorage>,
    (b, lb): Operand<CpuStorage>,
    f32_op: impl FnOnce(Operand<CpuStorage>, Operand<CpuStorage>) -> Result<CpuStorage>,
) -> Result<CpuStorage> {
    let (wa, wb) = (a.widened(la), b.widened(lb));
    let (ca, cb) = (Layout::contiguous(&la.shape), Layout::contiguous(&lb.shape));
    Ok(f32_op((&wa, &ca), (&wb, &cb))?.narrowed())
}

fn batch_norm_typed<T: Element>(
    x: &CpuStorage,
    layout: &Layout,
    split: AxisSplit,
    (w, lw): Operand<CpuStorage>,
    (b, lb): Operand<CpuStorage>,
    eps: f64,
) -> (CpuStorage, CpuStorage, CpuStorage) {
    let (y, mean, var) = norm::batch_norm_forward(
        &x.contiguous::<T>(layout),
        &w.contiguous::<T>(lw),
        &b.contiguous::<T>(lb),
        split.dims(),
        eps,
    );
    (
        T::into_storage(y),
        T::into_storage(mean),
        T::into_storage(var),
    )
}

fn batch_norm_backward_typed<T: Element>(
    x: &CpuStorage,
    layout: &Layout,
    split: AxisSplit,
    (dy, ldy): Operand<CpuStorage>,
    (w, lw): Operand<CpuStorage>,
    (mean, var): (&CpuStorage, &CpuStorage),
    eps: f64,
) -> (CpuStorage, CpuStorage, CpuStorage) {
    let (dx, dw, db) = norm::batch_norm_backward(
        &x.contiguous::<T>(layout),
        &dy.contiguous::<T>(ldy),
        &w.contiguous::<T>(lw),
        mean.as_slice::<T>(),
        var.as_slice::<T>(),
        split.dims(),
        eps,
    );
    (
        T::into_storage(dx),
        T::into_storage(dw),
        T::into_storage(db),
    )
}

fn unary_typed<T: Element>(s: &CpuStorage, l: &Layout, kind: UnaryKind) -> Vec<T> {
    let v = s.view::<T>(l);
    match v.as_contiguous() {
        Some(x) => elementwise::unary(x, kind),
        None => elementwise::unary(&v.to_vec(), kind),
    }
}

/// Reduces `axes` one run of adjacent axes at a time, the last run first. Each stage is a
/// contiguous [outer, r, inner] reduction, so no permuted copy of the input is ever made
/// (BatchNorm2d's axes 0, 2, 3 become a reduction over 2..=3 then over 0).
fn reduce_typed<T: Element>(s: &CpuStorage, l: &Layout, axes: &[usize], max: bool) -> Vec<T> {
    let stage = |data: &[T], shape: &[usize], (first, last): (usize, usize)| {
        let AxisSplit { outer, axis, inner } = AxisSplit::around(shape, first, last);
        if max {
            reduce::max(data, outer, axis, inner)
        } else {
            reduce::sum(data, outer, axis, inner)
        }
    };
    let mut shape = l.shape.clone();
    let runs = adjacent_runs(axes);
    let Some((&last_run, earlier)) = runs.split_last() else {
        return s.contiguous::<T>(l).into_owned();
    };
    let v = s.view::<T>(l);
    let mut data = match v.as_contiguous() {
        Some(x) => stage(x, &shape, last_run),
        None => stage(&v.to_vec(), &shape, last_run),
    };
    shape[last_run.0..=last_run.1].fill(1);
    for &r in earlier.iter().rev() {
        data = stage(&data, &shape, r);
        shape[r.0..=r.1].fill(1);
    }
    data
}

/// The maximal runs of adjacent axes in a sorted axis list: [0, 2, 3] -> [[0], [2, 3]].
pub(super) fn adjacent_runs(axes: &[usize]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &a in axes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == a => *last = a,
            _ => runs.push((a, a)),
        }
    }
    runs
}

/// Buffer offsets of each matrix of a batched operand, in row-major batch order.
pub(super) fn batch_offsets(layout: &Layout, batch_shape: &[usize]) -> Vec<usize> {
    let nb = batch_shape.len();
    let mut offsets = Vec::with_capacity(batch_shape.iter().product());
    kernels::strided::for_each_row(
        &[batch_shape, &[1]].concat(),
        &[&[&layout.strides[..nb], &[0][..]].concat()],
        &[layout.offset],
        |offs, _, _| offsets.push(offs[0]),
    );
    offsets
}

/// The matrix at the start of `layout`'s last two axes (after `nb` batch axes).
fn mat_ref<'a, T: Element>(s: &'a CpuStorage, l: &Layout, nb: usize) -> MatRef<'a, T> {
    MatRef {
        data: s.as_slice::<T>(),
        offset: l.offset,
        row_stride: l.strides[nb],
        col_stride: l.strides[nb + 1],
    }
}

fn matmul_typed<T: Element>(
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
    batch: &[usize],
    [m, k, n]: [usize; 3],
) -> Vec<T> {
    let nb = batch.len();
    let count: usize = batch.iter().product();
    let mut out = vec![T::ZERO; count * m * n];
    if count == 0 {
        return out;
    }
    let (ar, br) = (mat_ref::<T>(a, la, nb), mat_ref::<T>(b, lb, nb));
    if nb == 0 {
        matmul(m, k, n, ar, br, &mut out);
    } else {
        batched_matmul(
            m,
            k,
            n,
            ar,
            &batch_offsets(la, batch),
            br,
            &batch_offsets(lb, batch),
            &mut out,
        );
    }
    out
}

fn concat_typed<T: Element>(
    parts: &[(&CpuStorage, &Layout)],
    axis: usize,
    shape: &[usize],
) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let data: Vec<_> = parts.iter().map(|(s, l)| s.contiguous::<T>(l)).collect();
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for ((_, l), p) in parts.iter().zip(&data) {
            let block = l.shape[axis] * inner;
            out.extend_from_slice(&p[o * block..(o + 1) * block]);
        }
    }
    out
}

fn lstm_backward_typed<T: Element>(
    gates: (&CpuStorage, &Layout),
    c_prev: (&CpuStorage, &Layout),
    out: (&CpuStorage, &Layout),
    grad: (&CpuStorage, &Layout),
    [b, h]: [usize; 2],
) -> (Vec<T>, Vec<T>) {
    let mut da = vec![T::ZERO; b * 4 * h];
    let mut dc = vec![T::ZERO; b * h];
    gates.0.with_rows::<T, _>(gates.1, |a| {
        c_prev.0.with_rows::<T, _>(c_prev.1, |c| {
            out.0.with_rows::<T, _>(out.1, |y| {
                grad.0.with_rows::<T, _>(grad.1, |dy| {
                    lstm_cell_backward(b, h, a, c, y, dy, &mut da, &mut dc)
                })
            })
        })
    });
    (da, dc)
}

/// The sequence's operands as the kernel takes them (biases and c_0 made contiguous).
fn with_sequence_operands<T: Element, R>(
    inputs: &SequenceInputs<CpuStorage>,
    f: impl FnOnce(SequenceOperands<T>) -> R,
) -> R {
    let bias = inputs
        .bias
        .map(|((bi, li), (bh, lh))| (bi.contiguous::<T>(li), bh.contiguous::<T>(lh)));
    let c0 = inputs.state.map(|(_, (c0, l))| c0.contiguous::<T>(l));
    f(SequenceOperands {
        x: mat_ref(inputs.x.0, inputs.x.1, 0),
        w_ih: mat_ref(inputs.w_ih.0, inputs.w_ih.1, 0),
        w_hh: mat_ref(inputs.w_hh.0, inputs.w_hh.1, 0),
        bias: bias.as_ref().map(|(i, h)| (&i[..], &h[..])),
        h0: inputs.state.map(|((h0, l), _)| mat_ref(h0, l, 0)),
        c0: c0.as_deref(),
    })
}

fn sequence_forward_typed<T: Element>(
    inputs: &SequenceInputs<CpuStorage>,
    shape: LstmSequenceShape,
) -> (CpuStorage, SequenceTape<CpuStorage>) {
    let (y, tape) = with_sequence_operands::<T, _>(inputs, |op| {
        lstm_sequence::lstm_sequence_forward(shape, op)
    });
    let tape = SequenceTape {
        gates: T::into_storage(tape.gates),
        hc: T::into_storage(tape.hc),
    };
    (T::into_storage(y), tape)
}

fn sequence_backward_typed<T: Element>(
    inputs: &SequenceInputs<CpuStorage>,
    shape: LstmSequenceShape,
    tape: SequenceTape<&CpuStorage>,
    (dy, ldy): (&CpuStorage, &Layout),
    wants: SequenceWants,
) -> SequenceGrads<CpuStorage> {
    let tape = lstm_sequence::SequenceTape {
        gates: tape.gates.as_slice::<T>(),
        hc: tape.hc.as_slice::<T>(),
    };
    let g = with_sequence_operands::<T, _>(inputs, |op| {
        lstm_sequence::lstm_sequence_backward(shape, op, tape, &dy.contiguous::<T>(ldy), wants)
    });
    SequenceGrads {
        x: g.x,
        w_ih: g.w_ih,
        w_hh: g.w_hh,
        bias: g.bias,
        h0: g.h0,
        c0: g.c0,
    }
    .map(T::into_storage)
}

fn grid_forward_typed<T: Element>(
    pre: Operand<CpuStorage>,
    w: Operand<CpuStorage>,
    plan: &GridPlan,
) -> (CpuStorage, GridTape<CpuStorage>) {
    let (y, t) = grid_lstm::grid_lstm_forward(
        plan,
        &pre.0.contiguous::<T>(pre.1),
        &w.0.contiguous::<T>(w.1),
    );
    let tape = GridTape {
        gates: T::into_storage(t.gates),
        taps: T::into_storage(t.taps),
        c_prev: T::into_storage(t.c_prev),
        out: T::into_storage(t.out),
    };
    (T::into_storage(y), tape)
}

fn grid_backward_typed<T: Element>(
    plan: &GridPlan,
    tape: GridTape<&CpuStorage>,
    w: Operand<CpuStorage>,
    dy: Operand<CpuStorage>,
) -> (CpuStorage, CpuStorage) {
    let tape = grid_lstm::GridTape {
        gates: tape.gates.as_slice::<T>(),
        taps: tape.taps.as_slice::<T>(),
        c_prev: tape.c_prev.as_slice::<T>(),
        out: tape.out.as_slice::<T>(),
    };
    let (dpre, dw) = tape.backward(plan, &w.0.contiguous::<T>(w.1), &dy.0.contiguous::<T>(dy.1));
    (T::into_storage(dpre), T::into_storage(dw))
}

impl BackendStorage for CpuStorage {
    fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
        }
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn to_host<T: Element>(&self, layout: &Layout) -> Vec<T> {
        self.view::<T>(layout).to_vec()
    }

    fn copy(&self, layout: &Layout) -> Result<Self> {
        if let CpuStorage::BF16(_) = self {
            // exact both ways
            return Ok(self.widened(layout).narrowed());
        }
        Ok(by_dtype(
            self,
            |s| s.contiguous::<f32>(layout).into_owned(),
            |s| s.contiguous::<f64>(layout).into_owned(),
        ))
    }

    fn cast(&self, layout: &Layout, dtype: DType) -> Result<Self> {
        Ok(match (self, dtype) {
            (CpuStorage::F32(_), DType::F64) => CpuStorage::F64(
                self.to_host::<f32>(layout)
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            ),
            (CpuStorage::F64(_), DType::F32) => CpuStorage::F32(
                self.to_host::<f64>(layout)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
            ),
            (CpuStorage::BF16(_), DType::F32) => self.widened(layout),
            (CpuStorage::BF16(_), DType::F64) => match self.widened(layout) {
                CpuStorage::F32(v) => CpuStorage::F64(v.into_iter().map(f64::from).collect()),
                other => other,
            },
            (CpuStorage::F32(_) | CpuStorage::F64(_), DType::BF16) => {
                self.widened(layout).narrowed()
            }
            _ => self.copy(layout)?,
        })
    }

    fn concat(parts: &[(&Self, &Layout)], axis: usize, shape: &[usize]) -> Result<Self> {
        Ok(match parts.first().map(|(s, _)| s.dtype()) {
            Some(DType::F64) => CpuStorage::F64(concat_typed::<f64>(parts, axis, shape)),
            _ => CpuStorage::F32(concat_typed::<f32>(parts, axis, shape)),
        })
    }

    fn unary(&self, layout: &Layout, kind: UnaryKind) -> Result<Self> {
        Ok(by_dtype(
            self,
            |s| unary_typed::<f32>(s, layout, kind),
            |s| unary_typed::<f64>(s, layout, kind),
        ))
    }

    fn binary(&self, la: &Layout, rhs: &Self, lb: &Layout, kind: BinaryKind) -> Result<Self> {
        Ok(by_dtype(
            self,
            |s| elementwise::binary(s.view::<f32>(la), rhs.view::<f32>(lb), kind),
            |s| elementwise::binary(s.view::<f64>(la), rhs.view::<f64>(lb), kind),
        ))
    }

    fn select(&self, lm: &Layout, a: &Self, la: &Layout, b: &Self, lb: &Layout) -> Result<Self> {
        Ok(by_dtype(
            self,
            |m| elementwise::select(m.view::<f32>(lm), a.view(la), b.view(lb)),
            |m| elementwise::select(m.view::<f64>(lm), a.view(la), b.view(lb)),
        ))
    }

    fn reduce(&self, layout: &Layout, axes: &[usize], max: bool) -> Result<Self> {
        Ok(by_dtype(
            self,
            |s| reduce_typed::<f32>(s, layout, axes, max),
            |s| reduce_typed::<f64>(s, layout, axes, max),
        ))
    }

    fn softmax(&self, layout: &Layout, split: AxisSplit, log: bool) -> Result<Self> {
        let AxisSplit { outer, axis, inner } = split;
        Ok(by_dtype(
            self,
            |s| reduce::softmax(&s.contiguous::<f32>(layout), outer, axis, inner, log),
            |s| reduce::softmax(&s.contiguous::<f64>(layout), outer, axis, inner, log),
        ))
    }

    fn matmul(
        &self,
        la: &Layout,
        rhs: &Self,
        lb: &Layout,
        batch: &[usize],
        mkn: [usize; 3],
    ) -> Result<Self> {
        if let CpuStorage::BF16(_) = self {
            return in_f32((self, la), (rhs, lb), |(a, la), (b, lb)| {
                a.matmul(la, b, lb, batch, mkn)
            });
        }
        Ok(by_dtype(
            self,
            |a| matmul_typed::<f32>(a, la, rhs, lb, batch, mkn),
            |a| matmul_typed::<f64>(a, la, rhs, lb, batch, mkn),
        ))
    }

    fn conv_forward(&self, lx: &Layout, w: &Self, lw: &Layout, g: &ConvGeometry) -> Result<Self> {
        if let CpuStorage::BF16(_) = self {
            return in_f32((self, lx), (w, lw), |(x, lx), (w, lw)| {
                x.conv_forward(lx, w, lw, g)
            });
        }
        Ok(by_dtype(
            self,
            |x| {
                let w = conv::gather_taps(&w.contiguous::<f32>(lw), g);
                conv::conv_forward(&x.contiguous::<f32>(lx), &w, g)
            },
            |x| {
                let w = conv::gather_taps(&w.contiguous::<f64>(lw), g);
                conv::conv_forward(&x.contiguous::<f64>(lx), &w, g)
            },
        ))
    }

    fn conv_input_grad(
        &self,
        ldy: &Layout,
        w: &Self,
        lw: &Layout,
        g: &ConvGeometry,
    ) -> Result<Self> {
        if let CpuStorage::BF16(_) = self {
            return in_f32((self, ldy), (w, lw), |(dy, ldy), (w, lw)| {
                dy.conv_input_grad(ldy, w, lw, g)
            });
        }
        Ok(by_dtype(
            self,
            |dy| {
                let w = conv::gather_taps(&w.contiguous::<f32>(lw), g);
                conv::conv_input_grad(&dy.contiguous::<f32>(ldy), &w, g)
            },
            |dy| {
                let w = conv::gather_taps(&w.contiguous::<f64>(lw), g);
                conv::conv_input_grad(&dy.contiguous::<f64>(ldy), &w, g)
            },
        ))
    }

    fn conv_weight_grad(
        &self,
        lx: &Layout,
        dy: &Self,
        ldy: &Layout,
        g: &ConvGeometry,
    ) -> Result<Self> {
        if let CpuStorage::BF16(_) = self {
            return in_f32((self, lx), (dy, ldy), |(x, lx), (dy, ldy)| {
                x.conv_weight_grad(lx, dy, ldy, g)
            });
        }
        Ok(by_dtype(
            self,
            |x| {
                let active =
                    conv::conv_weight_grad(&x.contiguous::<f32>(lx), &dy.contiguous(ldy), g);
                conv::scatter_taps(&active, g)
            },
            |x| {
                let active =
                    conv::conv_weight_grad(&x.contiguous::<f64>(lx), &dy.contiguous(ldy), g);
                conv::scatter_taps(&active, g)
            },
        ))
    }

    fn max_pool2d_argmax(
        &self,
        layout: &Layout,
        planes: usize,
        rows: &WindowAxis,
        cols: &WindowAxis,
    ) -> Result<Vec<usize>> {
        Ok(match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => {
                pool::max_pool2d_argmax(&self.contiguous::<f32>(layout), planes, rows, cols)
            }
            CpuStorage::F64(_) => {
                pool::max_pool2d_argmax(&self.contiguous::<f64>(layout), planes, rows, cols)
            }
        })
    }

    fn index_select(&self, layout: &Layout, split: AxisSplit, indices: &[usize]) -> Result<Self> {
        let AxisSplit { outer, axis, inner } = split;
        Ok(by_dtype(
            self,
            |s| index::index_select(&s.contiguous::<f32>(layout), outer, axis, inner, indices),
            |s| index::index_select(&s.contiguous::<f64>(layout), outer, axis, inner, indices),
        ))
    }

    fn index_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        indices: &[usize],
        size: usize,
    ) -> Result<Self> {
        let AxisSplit { outer, inner, .. } = split;
        Ok(by_dtype(
            self,
            |s| index::index_add(&s.contiguous::<f32>(layout), outer, size, inner, indices),
            |s| index::index_add(&s.contiguous::<f64>(layout), outer, size, inner, indices),
        ))
    }

    fn gather(&self, layout: &Layout, split: AxisSplit, idx: &[usize], m: usize) -> Result<Self> {
        let AxisSplit { outer, axis, inner } = split;
        Ok(by_dtype(
            self,
            |s| index::gather(&s.contiguous::<f32>(layout), outer, axis, inner, idx, m),
            |s| index::gather(&s.contiguous::<f64>(layout), outer, axis, inner, idx, m),
        ))
    }

    fn scatter_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        idx: &[usize],
        size: usize,
    ) -> Result<Self> {
        let AxisSplit { outer, axis, inner } = split;
        Ok(by_dtype(
            self,
            |s| index::scatter_add(&s.contiguous::<f32>(layout), outer, size, inner, idx, axis),
            |s| index::scatter_add(&s.contiguous::<f64>(layout), outer, size, inner, idx, axis),
        ))
    }

    fn lstm_cell_forward(
        &self,
        lg: &Layout,
        c_prev: &Self,
        lc: &Layout,
        [b, h]: [usize; 2],
    ) -> Result<Self> {
        Ok(by_dtype(
            self,
            |g| {
                let mut out = vec![0.0f32; b * 2 * h];
                g.with_rows::<f32, _>(lg, |a| {
                    c_prev.with_rows::<f32, _>(lc, |c| lstm_cell_forward(b, h, a, c, &mut out))
                });
                out
            },
            |g| {
                let mut out = vec![0.0f64; b * 2 * h];
                g.with_rows::<f64, _>(lg, |a| {
                    c_prev.with_rows::<f64, _>(lc, |c| lstm_cell_forward(b, h, a, c, &mut out))
                });
                out
            },
        ))
    }

    fn lstm_cell_backward(
        &self,
        lg: &Layout,
        c_prev: (&Self, &Layout),
        out: (&Self, &Layout),
        grad: (&Self, &Layout),
        bh: [usize; 2],
    ) -> Result<(Self, Self)> {
        Ok(match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => {
                let (da, dc) = lstm_backward_typed::<f32>((self, lg), c_prev, out, grad, bh);
                (CpuStorage::F32(da), CpuStorage::F32(dc))
            }
            CpuStorage::F64(_) => {
                let (da, dc) = lstm_backward_typed::<f64>((self, lg), c_prev, out, grad, bh);
                (CpuStorage::F64(da), CpuStorage::F64(dc))
            }
        })
    }

    fn lstm_sequence_forward(
        inputs: &SequenceInputs<Self>,
        shape: LstmSequenceShape,
    ) -> Result<(Self, SequenceTape<Self>)> {
        Ok(match inputs.x.0 {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => sequence_forward_typed::<f32>(inputs, shape),
            CpuStorage::F64(_) => sequence_forward_typed::<f64>(inputs, shape),
        })
    }

    fn lstm_sequence_backward(
        inputs: &SequenceInputs<Self>,
        shape: LstmSequenceShape,
        tape: SequenceTape<&Self>,
        dy: (&Self, &Layout),
        wants: SequenceWants,
    ) -> Result<SequenceGrads<Self>> {
        Ok(match inputs.x.0 {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => sequence_backward_typed::<f32>(inputs, shape, tape, dy, wants),
            CpuStorage::F64(_) => sequence_backward_typed::<f64>(inputs, shape, tape, dy, wants),
        })
    }

    fn grid_lstm_forward(
        &self,
        lp: &Layout,
        w: Operand<Self>,
        plan: &GridPlan,
    ) -> Result<(Self, GridTape<Self>)> {
        Ok(match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => grid_forward_typed::<f32>((self, lp), w, plan),
            CpuStorage::F64(_) => grid_forward_typed::<f64>((self, lp), w, plan),
        })
    }

    fn grid_lstm_backward(
        plan: &GridPlan,
        tape: GridTape<&Self>,
        w: Operand<Self>,
        dy: Operand<Self>,
    ) -> Result<(Self, Self)> {
        Ok(match w.0 {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => grid_backward_typed::<f32>(plan, tape, w, dy),
            CpuStorage::F64(_) => grid_backward_typed::<f64>(plan, tape, w, dy),
        })
    }

    fn softmax_cross_entropy(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
    ) -> Result<(Self, Self)> {
        let dims = split.dims();
        Ok(match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => {
                let (l, m) =
                    loss::softmax_cross_entropy(&self.contiguous::<f32>(layout), dims, targets);
                (CpuStorage::F32(l), CpuStorage::F32(m))
            }
            CpuStorage::F64(_) => {
                let (l, m) =
                    loss::softmax_cross_entropy(&self.contiguous::<f64>(layout), dims, targets);
                (CpuStorage::F64(l), CpuStorage::F64(m))
            }
        })
    }

    fn softmax_cross_entropy_backward(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
        lse: &Self,
        grad: &Self,
    ) -> Result<Self> {
        let dims = split.dims();
        let per_position = Layout::contiguous(&[split.outer * split.inner]);
        Ok(by_dtype(
            self,
            |s| {
                loss::softmax_cross_entropy_backward(
                    &s.contiguous::<f32>(layout),
                    dims,
                    targets,
                    &lse.contiguous::<f32>(&per_position),
                    &grad.contiguous::<f32>(&per_position),
                )
            },
            |s| {
                loss::softmax_cross_entropy_backward(
                    &s.contiguous::<f64>(layout),
                    dims,
                    targets,
                    &lse.contiguous::<f64>(&per_position),
                    &grad.contiguous::<f64>(&per_position),
                )
            },
        ))
    }

    fn batch_norm(
        &self,
        layout: &Layout,
        split: AxisSplit,
        weight: Operand<Self>,
        bias: Operand<Self>,
        eps: f64,
    ) -> Result<(Self, Self, Self)> {
        Ok(match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => batch_norm_typed::<f32>(self, layout, split, weight, bias, eps),
            CpuStorage::F64(_) => batch_norm_typed::<f64>(self, layout, split, weight, bias, eps),
        })
    }

    fn batch_norm_backward(
        &self,
        layout: &Layout,
        split: AxisSplit,
        dy: Operand<Self>,
        weight: Operand<Self>,
        mean: &Self,
        var: &Self,
        eps: f64,
    ) -> Result<(Self, Self, Self)> {
        let stats = (mean, var);
        Ok(match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => {
                batch_norm_backward_typed::<f32>(self, layout, split, dy, weight, stats, eps)
            }
            CpuStorage::F64(_) => {
                batch_norm_backward_typed::<f64>(self, layout, split, dy, weight, stats, eps)
            }
        })
    }

    fn bce_with_logits_sum(&self, lx: &Layout, t: &Self, lt: &Layout, scale: f64) -> Result<Self> {
        // the sum in the elements' type, scaled in f64 and rounded once
        let total = match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(_) => f64::from(loss::bce_with_logits_sum(
                &self.contiguous::<f32>(lx),
                &t.contiguous::<f32>(lt),
            )),
            CpuStorage::F64(_) => {
                loss::bce_with_logits_sum(&self.contiguous::<f64>(lx), &t.contiguous::<f64>(lt))
            }
        };
        Ok(CpuStorage::from_f64s(vec![total * scale], self.dtype()))
    }

    fn sgd_step(
        &mut self,
        (grad, lg): (&Self, &Layout),
        momentum: Option<&mut Self>,
        step: &SgdStep,
    ) -> Result<()> {
        match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(p) => optim::sgd(
                p,
                &grad.contiguous(lg),
                momentum.map(|b| b.as_mut_slice::<f32>()),
                step,
            ),
            CpuStorage::F64(p) => optim::sgd(
                p,
                &grad.contiguous(lg),
                momentum.map(|b| b.as_mut_slice::<f64>()),
                step,
            ),
        }
        Ok(())
    }

    fn adam_step(
        &mut self,
        (grad, lg): (&Self, &Layout),
        m: &mut Self,
        v: &mut Self,
        step: &AdamStep,
    ) -> Result<()> {
        match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(p) => optim::adam(
                p,
                &grad.contiguous(lg),
                m.as_mut_slice(),
                v.as_mut_slice(),
                step,
            ),
            CpuStorage::F64(p) => optim::adam(
                p,
                &grad.contiguous(lg),
                m.as_mut_slice(),
                v.as_mut_slice(),
                step,
            ),
        }
        Ok(())
    }

    fn rmsprop_step(
        &mut self,
        (grad, lg): (&Self, &Layout),
        square_avg: &mut Self,
        momentum: Option<&mut Self>,
        step: &RmspropStep,
    ) -> Result<()> {
        match self {
            CpuStorage::BF16(_) => f32_or_f64_only(),
            CpuStorage::F32(p) => optim::rmsprop(
                p,
                &grad.contiguous(lg),
                square_avg.as_mut_slice(),
                momentum.map(|b| b.as_mut_slice::<f32>()),
                step,
            ),
            CpuStorage::F64(p) => optim::rmsprop(
                p,
                &grad.contiguous(lg),
                square_avg.as_mut_slice(),
                momentum.map(|b| b.as_mut_slice::<f64>()),
                step,
            ),
        }
        Ok(())
    }
}
