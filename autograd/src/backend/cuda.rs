//! The CUDA arm: elements in a device's memory (`kernels::cuda::GpuBuffer`), every op one or a
//! few launches of our kernels (`kernels::cuda`), on a real GPU (`Device::Cuda(n)`) or on the
//! emulated device (`Device::EmulatedCuda`: the same kernels run on the host), through the
//! same code.
//!
//! Every op family runs here. The two LSTM recurrences (over a sequence, and the PixelRNN grid)
//! are composed from the kernels at hand step by step / wave by wave, as the CPU's do it; a
//! convolution whose active taps are not a prefix of the kernel's (no model has one) answers
//! with an error naming the op and the device (`not_yet`). The index ops take their
//! indices from the host, as the trait gives them, and upload a plan built from them. Two work
//! on the host by the trait's contract (their results are host values): max pooling's argmax
//! and `to_host`. The fused BCE's sum stays on the device (composed from the elementwise and
//! reduction kernels), so a training step does not wait on a copy for it.

use super::cpu::{adjacent_runs, batch_offsets};
use super::{
    BackendStorage, CpuStorage, GridTape, Operand, SequenceGrads, SequenceInputs, SequenceTape,
    SequenceWants,
};
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::Layout;
use half::bf16;
use kernels::cuda::conv::{conv_forward_into, conv_input_grad_into, conv_weight_grad_into};
use kernels::cuda::elementwise::{
    binary_into, copy_into, copy_to_view, fill_into, select_into, unary_into, GpuElement, GpuFloat,
    GpuView,
};
use kernels::cuda::matmul::{matmul_into_at, GpuMat};
use kernels::cuda::reduce::{reduce_into, Fold};
use kernels::cuda::{index, lstm, optim, Gpu, GpuBuffer, GpuError};
use kernels::cuda::{loss, norm};
use kernels::desc::{AdamStep, GridPlan, LstmSequenceShape, RmspropStep, SgdStep};
use kernels::desc::{AxisSplit, BinaryKind, ConvGeometry, UnaryKind, WindowAxis};
use kernels::strided::{contiguous_strides, View};
use std::sync::Arc;

/// A typed device buffer.
#[derive(Debug)]
enum CudaData {
    F32(GpuBuffer<f32>),
    F64(GpuBuffer<f64>),
    BF16(GpuBuffer<bf16>),
}

/// Elements in a CUDA device's memory.
#[derive(Debug)]
pub struct CudaStorage {
    gpu: Arc<Gpu>,
    device: Device,
    data: CudaData,
}

impl Clone for CudaStorage {
    /// A device-to-device copy. Storage is cloned only to update a shared buffer in place
    /// (`Arc::make_mut`) or to copy optimizer state, and the trait's `Clone` cannot fail: a
    /// device out of memory here ends the process with the reason.
    fn clone(&self) -> CudaStorage {
        let data = match &self.data {
            CudaData::F32(b) => self.gpu.copy(b).map(CudaData::F32),
            CudaData::F64(b) => self.gpu.copy(b).map(CudaData::F64),
            CudaData::BF16(b) => self.gpu.copy(b).map(CudaData::BF16),
        }
        .unwrap_or_else(|e| panic!("copying a tensor on {}: {e}", self.device));
        CudaStorage {
            gpu: self.gpu.clone(),
            device: self.device,
            data,
        }
    }
}

/// The element types a device buffer holds, and how each finds its buffer: f32 and f64, with
/// every kernel ([`OnGpu`]), and bf16, with copies, casts, matmul and the convolutions.
trait Stored: GpuElement {
    fn buffer(data: &CudaData) -> Option<&GpuBuffer<Self>>;
    fn buffer_mut(data: &mut CudaData) -> Option<&mut GpuBuffer<Self>>;
    fn wrap(buffer: GpuBuffer<Self>) -> CudaData;
}

/// The element types with every kernel.
trait OnGpu: Stored + Element + GpuFloat {}

impl OnGpu for f32 {}

impl OnGpu for f64 {}

impl Stored for f32 {
    fn buffer(data: &CudaData) -> Option<&GpuBuffer<f32>> {
        match data {
            CudaData::F32(b) => Some(b),
            _ => None,
        }
    }
    fn buffer_mut(data: &mut CudaData) -> Option<&mut GpuBuffer<f32>> {
        match data {
            CudaData::F32(b) => Some(b),
            _ => None,
        }
    }
    fn wrap(buffer: GpuBuffer<f32>) -> CudaData {
        CudaData::F32(buffer)
    }
}

impl Stored for f64 {
    fn buffer(data: &CudaData) -> Option<&GpuBuffer<f64>> {
        match data {
            CudaData::F64(b) => Some(b),
            _ => None,
        }
    }
    fn buffer_mut(data: &mut CudaData) -> Option<&mut GpuBuffer<f64>> {
        match data {
            CudaData::F64(b) => Some(b),
            _ => None,
        }
    }
    fn wrap(buffer: GpuBuffer<f64>) -> CudaData {
        CudaData::F64(buffer)
    }
}

impl Stored for bf16 {
    fn buffer(data: &CudaData) -> Option<&GpuBuffer<bf16>> {
        match data {
            CudaData::BF16(b) => Some(b),
            _ => None,
        }
    }
    fn buffer_mut(data: &mut CudaData) -> Option<&mut GpuBuffer<bf16>> {
        match data {
            CudaData::BF16(b) => Some(b),
            _ => None,
        }
    }
    fn wrap(buffer: GpuBuffer<bf16>) -> CudaData {
        CudaData::BF16(buffer)
    }
}

/// A kernel's error as the op's.
fn on_device(op: &'static str) -> impl Fn(GpuError) -> Error {
    move |e| Error::invalid(op, e.to_string())
}

/// The error of an op family without CUDA kernels yet.
fn not_yet(op: &'static str, device: Device) -> Error {
    Error::invalid(
        op,
        format!("{op} has no CUDA kernel yet, so it cannot run on {device}; use the CPU for it"),
    )
}

/// Runs `f32_op` or `f64_op` by the storage's dtype. bf16 storage never reaches here:
/// `Storage` lets it through to matmul, the convolutions and the copies alone, which take it
/// in [`by_element`].
fn by_dtype<R>(
    s: &CudaStorage,
    f32_op: impl FnOnce() -> Result<R>,
    f64_op: impl FnOnce() -> Result<R>,
) -> Result<R> {
    match s.data {
        CudaData::F32(_) => f32_op(),
        CudaData::F64(_) => f64_op(),
        CudaData::BF16(_) => Err(Error::invalid(
            "kernel",
            "engine bug: a bf16 storage reached an f32/f64-only kernel",
        )),
    }
}

/// Runs `f32_op`, `f64_op` or `bf16_op` by the storage's dtype: the op families with a bf16
/// kernel (copies, matmul, the convolutions).
fn by_element<R>(
    s: &CudaStorage,
    f32_op: impl FnOnce() -> Result<R>,
    f64_op: impl FnOnce() -> Result<R>,
    bf16_op: impl FnOnce() -> Result<R>,
) -> Result<R> {
    match s.data {
        CudaData::F32(_) => f32_op(),
        CudaData::F64(_) => f64_op(),
        CudaData::BF16(_) => bf16_op(),
    }
}

/// A contiguous buffer starting at element 0, borrowed when the storage already is one.
enum Contiguous<'a, T> {
    Borrowed(&'a GpuBuffer<T>),
    Owned(GpuBuffer<T>),
}

impl<T> std::ops::Deref for Contiguous<'_, T> {
    type Target = GpuBuffer<T>;
    fn deref(&self) -> &GpuBuffer<T> {
        match self {
            Contiguous::Borrowed(b) => b,
            Contiguous::Owned(b) => b,
        }
    }
}

impl CudaStorage {
    /// The device behind `device` (opened once per process).
    fn gpu_for(device: Device) -> Result<Arc<Gpu>> {
        match device {
            Device::Cuda(n) => Gpu::open(n)
                .map_err(|e| Error::invalid("to_device", format!("cannot use {device}: {e}"))),
            Device::EmulatedCuda => Ok(Gpu::emulated()),
            Device::Cpu => Err(Error::invalid("to_device", "the CPU is not a CUDA device")),
        }
    }

    pub fn filled(dtype: DType, len: usize, value: f64, device: Device) -> Result<CudaStorage> {
        let gpu = CudaStorage::gpu_for(device)?;
        let data = match dtype {
            DType::F32 => CudaData::F32(filled_buffer(&gpu, len, value)?),
            DType::F64 => CudaData::F64(filled_buffer(&gpu, len, value)?),
            DType::BF16 => CudaData::BF16(filled_buffer(&gpu, len, value)?),
        };
        Ok(CudaStorage { gpu, device, data })
    }

    /// The elements of a CPU storage (through `layout`) on `device`, contiguous.
    pub fn upload(host: &CpuStorage, layout: &Layout, device: Device) -> Result<CudaStorage> {
        let gpu = CudaStorage::gpu_for(device)?;
        let data = match host.dtype() {
            DType::F32 => CudaData::F32(
                gpu.upload(&host.contiguous::<f32>(layout))
                    .map_err(on_device("to_device"))?,
            ),
            DType::F64 => CudaData::F64(
                gpu.upload(&host.contiguous::<f64>(layout))
                    .map_err(on_device("to_device"))?,
            ),
            DType::BF16 => CudaData::BF16(
                gpu.upload(&host.contiguous_bf16(layout))
                    .map_err(on_device("to_device"))?,
            ),
        };
        Ok(CudaStorage { gpu, device, data })
    }

    /// The elements (through `layout`) as a CPU storage.
    pub fn download(&self, layout: &Layout) -> Result<CpuStorage> {
        Ok(match self.data {
            CudaData::F32(_) => CpuStorage::F32(self.host::<f32>(layout)?),
            CudaData::F64(_) => CpuStorage::F64(self.host::<f64>(layout)?),
            // widened on the device and narrowed here, both exact
            CudaData::BF16(_) => {
                let wide = self.cast_to::<bf16, f32>(layout)?;
                CpuStorage::F32(wide.host::<f32>(&Layout::contiguous(&layout.shape))?).narrowed()
            }
        })
    }

    /// The typed buffer; callers have checked the dtype, so a mismatch is a bug in the engine.
    fn buf<T: Stored>(&self) -> &GpuBuffer<T> {
        T::buffer(&self.data).unwrap_or_else(|| {
            panic!(
                "engine bug: storage holds {}, asked for {}",
                self.dtype(),
                T::SUFFIX
            )
        })
    }

    fn buf_mut<T: Stored>(&mut self) -> &mut GpuBuffer<T> {
        let dtype = self.dtype();
        T::buffer_mut(&mut self.data)
            .unwrap_or_else(|| panic!("engine bug: storage holds {dtype}, asked for {}", T::SUFFIX))
    }

    /// A new storage on this device holding `buffer`.
    fn holding<T: Stored>(&self, buffer: GpuBuffer<T>) -> CudaStorage {
        CudaStorage {
            gpu: self.gpu.clone(),
            device: self.device,
            data: T::wrap(buffer),
        }
    }

    fn view<'a, T: Stored>(&'a self, layout: &'a Layout) -> GpuView<'a, T> {
        GpuView {
            data: self.buf::<T>(),
            strides: &layout.strides,
            offset: layout.offset,
        }
    }

    /// The elements `layout` selects, contiguous from element 0: the buffer itself when it
    /// already is exactly that, else a copy.
    fn contiguous<'a, T: Stored>(
        &'a self,
        op: &'static str,
        layout: &'a Layout,
    ) -> Result<Contiguous<'a, T>> {
        if layout.is_contiguous() && layout.offset == 0 {
            return Ok(Contiguous::Borrowed(self.buf::<T>()));
        }
        let mut out = self.gpu.alloc::<T>(layout.numel()).map_err(on_device(op))?;
        copy_into(&self.gpu, self.view::<T>(layout), &layout.shape, &mut out)
            .map_err(on_device(op))?;
        Ok(Contiguous::Owned(out))
    }

    /// The elements `layout` selects, on the host.
    fn host<T: OnGpu>(&self, layout: &Layout) -> Result<Vec<T>> {
        let all = self
            .gpu
            .download(self.buf::<T>())
            .map_err(on_device("to_host"))?;
        Ok(View {
            data: &all[..],
            shape: &layout.shape,
            strides: &layout.strides,
            offset: layout.offset,
        }
        .to_vec())
    }

    fn alloc<T: Stored>(&self, op: &'static str, len: usize) -> Result<GpuBuffer<T>> {
        self.gpu.alloc::<T>(len).map_err(on_device(op))
    }

    fn cast_to<S: Stored, D: Stored>(&self, layout: &Layout) -> Result<CudaStorage> {
        let mut out = self.alloc::<D>("to_dtype", layout.numel())?;
        copy_into(&self.gpu, self.view::<S>(layout), &layout.shape, &mut out)
            .map_err(on_device("to_dtype"))?;
        Ok(self.holding(out))
    }

    fn unary_t<T: OnGpu>(&self, layout: &Layout, kind: UnaryKind) -> Result<CudaStorage> {
        let x = self.contiguous::<T>("unary", layout)?;
        let n = layout.numel();
        let mut out = self.alloc::<T>("unary", n)?;
        unary_into(&self.gpu, &x, &mut out, n, kind).map_err(on_device("unary"))?;
        Ok(self.holding(out))
    }

    fn binary_t<T: OnGpu>(
        &self,
        la: &Layout,
        rhs: &CudaStorage,
        lb: &Layout,
        kind: BinaryKind,
    ) -> Result<CudaStorage> {
        let mut out = self.alloc::<T>("binary", la.numel())?;
        binary_into(
            &self.gpu,
            self.view::<T>(la),
            rhs.view::<T>(lb),
            &la.shape,
            &mut out,
            kind,
        )
        .map_err(on_device("binary"))?;
        Ok(self.holding(out))
    }

    /// Sum or max over one run of adjacent axes of a contiguous buffer of `shape`.
    fn reduce_stage<T: OnGpu>(
        &self,
        x: &GpuBuffer<T>,
        shape: &[usize],
        (first, last): (usize, usize),
        fold: Fold,
    ) -> Result<GpuBuffer<T>> {
        let AxisSplit { outer, axis, inner } = AxisSplit::around(shape, first, last);
        let mut out = self.alloc::<T>("reduce", outer * inner)?;
        reduce_into(&self.gpu, x, (outer, axis, inner), fold, &mut out)
            .map_err(on_device("reduce"))?;
        Ok(out)
    }

    /// As the CPU's: one run of adjacent axes at a time, the last run first.
    fn reduce_t<T: OnGpu>(
        &self,
        layout: &Layout,
        axes: &[usize],
        max: bool,
    ) -> Result<CudaStorage> {
        let fold = if max { Fold::Max } else { Fold::Sum };
        let runs = adjacent_runs(axes);
        let Some((&last_run, earlier)) = runs.split_last() else {
            return self.cast_to::<T, T>(layout);
        };
        let x = self.contiguous::<T>("reduce", layout)?;
        let mut shape = layout.shape.clone();
        let mut data = self.reduce_stage(&x, &shape, last_run, fold)?;
        shape[last_run.0..=last_run.1].fill(1);
        for &r in earlier.iter().rev() {
            data = self.reduce_stage(&data, &shape, r, fold)?;
            shape[r.0..=r.1].fill(1);
        }
        Ok(self.holding(data))
    }

    /// Softmax over the middle axis of [outer, axis, inner] from the kernels at hand: the max,
    /// x - max, exp, its sum, then a division (or, for log-softmax, x - max - log sum).
    fn softmax_t<T: OnGpu>(
        &self,
        layout: &Layout,
        split: AxisSplit,
        log: bool,
    ) -> Result<CudaStorage> {
        let AxisSplit { outer, axis, inner } = split;
        let gpu = &self.gpu;
        let op = on_device("softmax");
        let x = self.contiguous::<T>("softmax", layout)?;
        let n = outer * axis * inner;
        let full = [outer, axis, inner];
        let full_strides = contiguous_strides(&full);
        // a [outer, inner] statistic seen as [outer, axis, inner]
        let per_row = [inner, 0, 1];
        let max = self.reduce_stage(&x, &full, (1, 1), Fold::Max)?;
        let mut shifted = self.alloc::<T>("softmax", n)?;
        let at = |data, strides| GpuView {
            data,
            strides,
            offset: 0,
        };
        binary_into(
            gpu,
            at(&x, &full_strides),
            at(&max, &per_row),
            &full,
            &mut shifted,
            BinaryKind::Sub,
        )
        .map_err(&op)?;
        let mut e = self.alloc::<T>("softmax", n)?;
        unary_into(gpu, &shifted, &mut e, n, UnaryKind::Exp).map_err(&op)?;
        let sum = self.reduce_stage(&e, &full, (1, 1), Fold::Sum)?;
        let mut out = self.alloc::<T>("softmax", n)?;
        if log {
            let mut log_sum = self.alloc::<T>("softmax", outer * inner)?;
            unary_into(gpu, &sum, &mut log_sum, outer * inner, UnaryKind::Log).map_err(&op)?;
            binary_into(
                gpu,
                at(&shifted, &full_strides),
                at(&log_sum, &per_row),
                &full,
                &mut out,
                BinaryKind::Sub,
            )
            .map_err(&op)?;
        } else {
            binary_into(
                gpu,
                at(&e, &full_strides),
                at(&sum, &per_row),
                &full,
                &mut out,
                BinaryKind::Div,
            )
            .map_err(&op)?;
        }
        Ok(self.holding(out))
    }

    /// scale · Σ softplus(x) - x t, on the device from the kernels at hand: softplus, the
    /// product and the difference elementwise, their sum, the scale.
    fn bce_sum_t<T: OnGpu>(
        &self,
        lx: &Layout,
        t: &CudaStorage,
        lt: &Layout,
        scale: f64,
    ) -> Result<CudaStorage> {
        let (op, gpu, n) = ("bce_with_logits", &self.gpu, lx.numel());
        let x = self.contiguous::<T>(op, lx)?;
        let contiguous = contiguous_strides(&lx.shape);
        let flat = |data| GpuView {
            data,
            strides: &contiguous,
            offset: 0,
        };
        let mut softplus = self.alloc::<T>(op, n)?;
        unary_into(gpu, &x, &mut softplus, n, UnaryKind::Softplus).map_err(on_device(op))?;
        let mut product = self.alloc::<T>(op, n)?;
        binary_into(
            gpu,
            flat(&x),
            t.view::<T>(lt),
            &lx.shape,
            &mut product,
            BinaryKind::Mul,
        )
        .map_err(on_device(op))?;
        let mut terms = self.alloc::<T>(op, n)?;
        binary_into(
            gpu,
            flat(&softplus),
            flat(&product),
            &lx.shape,
            &mut terms,
            BinaryKind::Sub,
        )
        .map_err(on_device(op))?;
        let mut sum = self.alloc::<T>(op, 1)?;
        reduce_into(gpu, &terms, (1, n, 1), Fold::Sum, &mut sum).map_err(on_device(op))?;
        if scale == 1.0 {
            return Ok(self.holding(sum));
        }
        let mut scaled = self.alloc::<T>(op, 1)?;
        unary_into(gpu, &sum, &mut scaled, 1, UnaryKind::MulScalar(scale))
            .map_err(on_device(op))?;
        Ok(self.holding(scaled))
    }

    fn matmul_t<T: Stored>(
        &self,
        la: &Layout,
        rhs: &CudaStorage,
        lb: &Layout,
        batch: &[usize],
        [m, k, n]: [usize; 3],
    ) -> Result<CudaStorage> {
        let nb = batch.len();
        let count: usize = batch.iter().product();
        let mut out = self.alloc::<T>("matmul", count * m * n)?;
        fn operand<'a, T: Stored>(
            s: &'a CudaStorage,
            l: &Layout,
            nb: usize,
            offset: usize,
        ) -> GpuMat<'a, T> {
            GpuMat {
                data: s.buf::<T>(),
                offset,
                row_stride: l.strides[nb],
                col_stride: l.strides[nb + 1],
            }
        }
        let (oa, ob) = if nb == 0 {
            (vec![la.offset], vec![lb.offset])
        } else {
            (batch_offsets(la, batch), batch_offsets(lb, batch))
        };
        for (i, (&a, &b)) in oa.iter().zip(&ob).enumerate().take(count) {
            matmul_into_at(
                &self.gpu,
                [m, k, n],
                operand::<T>(self, la, nb, a),
                operand::<T>(rhs, lb, nb, b),
                &mut out,
                i * m * n,
            )
            .map_err(on_device("matmul"))?;
        }
        Ok(self.holding(out))
    }

    /// The weights of the active taps, [c_out, c_in/G · T], from w [c_out, c_in/G, kh·kw]: w
    /// itself when every tap is active, a strided copy when the active taps are the first T
    /// of the row-major order (PixelCNN's masks A and B are); other tap sets have no kernel yet.
    fn active_weights<'a, T: Stored>(
        &'a self,
        op: &'static str,
        lw: &'a Layout,
        g: &ConvGeometry,
    ) -> Result<Contiguous<'a, T>> {
        let kk = g.kh * g.kw;
        let rows = g.c_out * g.cin_per_group();
        let ntaps =
            active_prefix(g).ok_or_else(|| not_yet("conv2d with these taps", self.device))?;
        let w = self.contiguous::<T>(op, lw)?;
        if ntaps == kk {
            return Ok(w);
        }
        let mut out = self.alloc::<T>(op, rows * ntaps)?;
        let view = GpuView {
            data: &*w,
            strides: &[kk, 1],
            offset: 0,
        };
        copy_into(&self.gpu, view, &[rows, ntaps], &mut out).map_err(on_device(op))?;
        Ok(Contiguous::Owned(out))
    }

    fn conv_forward_t<T: Stored>(
        &self,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
        g: &ConvGeometry,
    ) -> Result<CudaStorage> {
        let x = self.contiguous::<T>("conv2d", lx)?;
        let w = w.active_weights::<T>("conv2d", lw, g)?;
        let mut y = self.alloc::<T>("conv2d", g.n * g.c_out * g.ho * g.wo)?;
        conv_forward_into(&self.gpu, &x, &w, g, &mut y).map_err(on_device("conv2d"))?;
        Ok(self.holding(y))
    }

    fn conv_input_grad_t<T: Stored>(
        &self,
        ldy: &Layout,
        w: &CudaStorage,
        lw: &Layout,
        g: &ConvGeometry,
    ) -> Result<CudaStorage> {
        let dy = self.contiguous::<T>("conv2d input gradient", ldy)?;
        let w = w.active_weights::<T>("conv2d input gradient", lw, g)?;
        let mut dx = self.alloc::<T>("conv2d input gradient", g.n * g.c_in * g.h * g.w)?;
        conv_input_grad_into(&self.gpu, &dy, &w, g, &mut dx)
            .map_err(on_device("conv2d input gradient"))?;
        Ok(self.holding(dx))
    }

    fn conv_weight_grad_t<T: Stored>(
        &self,
        lx: &Layout,
        dy: &CudaStorage,
        ldy: &Layout,
        g: &ConvGeometry,
    ) -> Result<CudaStorage> {
        let op = "conv2d weight gradient";
        let (kk, rows) = (g.kh * g.kw, g.c_out * g.cin_per_group());
        let ntaps =
            active_prefix(g).ok_or_else(|| not_yet("conv2d with these taps", self.device))?;
        let x = self.contiguous::<T>(op, lx)?;
        let dy = dy.contiguous::<T>(op, ldy)?;
        let mut active = self.alloc::<T>(op, rows * ntaps)?;
        conv_weight_grad_into(&self.gpu, &x, &dy, g, &mut active).map_err(on_device(op))?;
        if ntaps == kk {
            return Ok(self.holding(active));
        }
        // zeros at the inactive taps
        let mut full = filled_buffer::<T>(&self.gpu, rows * kk, 0.0)?;
        let view = GpuView {
            data: &active,
            strides: &[ntaps, 1],
            offset: 0,
        };
        copy_to_view(&self.gpu, view, &[rows, ntaps], &mut full, &[kk, 1], 0)
            .map_err(on_device(op))?;
        Ok(self.holding(full))
    }

    fn lstm_cell_forward_t<T: OnGpu>(
        &self,
        lg: &Layout,
        c_prev: &CudaStorage,
        lc: &Layout,
        [b, h]: [usize; 2],
    ) -> Result<CudaStorage> {
        let gates = self.contiguous::<T>("lstm_cell", lg)?;
        let c = c_prev.contiguous::<T>("lstm_cell", lc)?;
        let mut out = self.alloc::<T>("lstm_cell", b * 2 * h)?;
        lstm::lstm_cell_forward(&self.gpu, (b, h), &gates, &c, &mut out)
            .map_err(on_device("lstm_cell"))?;
        Ok(self.holding(out))
    }

    fn lstm_cell_backward_t<T: OnGpu>(
        &self,
        lg: &Layout,
        (c_prev, lc): (&CudaStorage, &Layout),
        (out, lo): (&CudaStorage, &Layout),
        (grad, lgr): (&CudaStorage, &Layout),
        [b, h]: [usize; 2],
    ) -> Result<(CudaStorage, CudaStorage)> {
        let op = "lstm_cell backward";
        let gates = self.contiguous::<T>(op, lg)?;
        let c = c_prev.contiguous::<T>(op, lc)?;
        let o = out.contiguous::<T>(op, lo)?;
        let g = grad.contiguous::<T>(op, lgr)?;
        let mut d_gates = self.alloc::<T>(op, b * 4 * h)?;
        let mut d_c = self.alloc::<T>(op, b * h)?;
        lstm::lstm_cell_backward(
            &self.gpu,
            (b, h),
            &gates,
            &c,
            &o,
            &g,
            &mut d_gates,
            &mut d_c,
        )
        .map_err(on_device(op))?;
        Ok((self.holding(d_gates), self.holding(d_c)))
    }

    fn softmax_cross_entropy_t<T: OnGpu>(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
    ) -> Result<(CudaStorage, CudaStorage)> {
        let op = "softmax_cross_entropy";
        let dims = split.dims();
        let x = self.contiguous::<T>(op, layout)?;
        let mut l = self.alloc::<T>(op, split.outer * split.inner)?;
        let mut lse = self.alloc::<T>(op, split.outer * split.inner)?;
        loss::softmax_cross_entropy(&self.gpu, &x, dims, targets, &mut l, &mut lse)
            .map_err(on_device(op))?;
        Ok((self.holding(l), self.holding(lse)))
    }

    fn softmax_cross_entropy_backward_t<T: OnGpu>(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
        lse: &CudaStorage,
        grad: &CudaStorage,
    ) -> Result<CudaStorage> {
        let op = "softmax_cross_entropy backward";
        let dims = split.dims();
        let per_position = Layout::contiguous(&[split.outer * split.inner]);
        let x = self.contiguous::<T>(op, layout)?;
        let lse = lse.contiguous::<T>(op, &per_position)?;
        let grad = grad.contiguous::<T>(op, &per_position)?;
        let mut dx = self.alloc::<T>(op, layout.numel())?;
        loss::softmax_cross_entropy_backward(&self.gpu, &x, dims, targets, &lse, &grad, &mut dx)
            .map_err(on_device(op))?;
        Ok(self.holding(dx))
    }

    fn batch_norm_t<T: OnGpu>(
        &self,
        layout: &Layout,
        split: AxisSplit,
        (w, lw): Operand<Self>,
        (b, lb): Operand<Self>,
        eps: f64,
    ) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
        let op = "batch_norm";
        let dims = split.dims();
        let x = self.contiguous::<T>(op, layout)?;
        let (w, b) = (w.contiguous::<T>(op, lw)?, b.contiguous::<T>(op, lb)?);
        let mut y = self.alloc::<T>(op, layout.numel())?;
        let mut mean = self.alloc::<T>(op, split.axis)?;
        let mut var = self.alloc::<T>(op, split.axis)?;
        norm::batch_norm_forward(
            &self.gpu,
            dims,
            eps,
            &x,
            (&w, &b),
            &mut y,
            &mut mean,
            &mut var,
        )
        .map_err(on_device(op))?;
        Ok((self.holding(y), self.holding(mean), self.holding(var)))
    }

    fn batch_norm_backward_t<T: OnGpu>(
        &self,
        layout: &Layout,
        split: AxisSplit,
        (dy, ldy): Operand<Self>,
        (w, lw): Operand<Self>,
        (mean, var): (&CudaStorage, &CudaStorage),
        eps: f64,
    ) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
        let op = "batch_norm backward";
        let dims = split.dims();
        let per_channel = Layout::contiguous(&[split.axis]);
        let x = self.contiguous::<T>(op, layout)?;
        let dy = dy.contiguous::<T>(op, ldy)?;
        let w = w.contiguous::<T>(op, lw)?;
        let mean = mean.contiguous::<T>(op, &per_channel)?;
        let var = var.contiguous::<T>(op, &per_channel)?;
        let mut dx = self.alloc::<T>(op, layout.numel())?;
        let mut dw = self.alloc::<T>(op, split.axis)?;
        let mut db = self.alloc::<T>(op, split.axis)?;
        norm::batch_norm_backward(
            &self.gpu,
            dims,
            eps,
            (&x, &dy),
            (&w, &mean, &var),
            &mut dx,
            &mut dw,
            &mut db,
        )
        .map_err(on_device(op))?;
        Ok((self.holding(dx), self.holding(dw), self.holding(db)))
    }

    fn adam_t<T: OnGpu>(
        &mut self,
        (grad, lg): (&CudaStorage, &Layout),
        m: &mut CudaStorage,
        v: &mut CudaStorage,
        step: &AdamStep,
    ) -> Result<()> {
        let n = lg.numel();
        let g = grad.contiguous::<T>("adam", lg)?;
        let gpu = self.gpu.clone();
        optim::adam(
            &gpu,
            self.buf_mut::<T>(),
            &g,
            m.buf_mut::<T>(),
            v.buf_mut::<T>(),
            n,
            *step,
        )
        .map_err(on_device("adam"))
    }

    /// out[k] = self[sources[k]] over the contiguous elements `layout` selects.
    fn take_t<T: OnGpu>(
        &self,
        op: &'static str,
        layout: &Layout,
        sources: &[i64],
    ) -> Result<CudaStorage> {
        let x = self.contiguous::<T>(op, layout)?;
        let mut out = self.alloc::<T>(op, sources.len())?;
        index::take_into(&self.gpu, &x, sources, &mut out).map_err(on_device(op))?;
        Ok(self.holding(out))
    }

    /// Each output element the sum of its list of `plan` over the elements `layout` selects.
    fn sum_lists_t<T: OnGpu>(
        &self,
        op: &'static str,
        layout: &Layout,
        plan: &index::SumLists,
    ) -> Result<CudaStorage> {
        let src = self.contiguous::<T>(op, layout)?;
        let mut out = self.alloc::<T>(op, plan.offsets.len().saturating_sub(1))?;
        index::sum_lists_into(&self.gpu, &src, plan, &mut out).map_err(on_device(op))?;
        Ok(self.holding(out))
    }

    fn sgd_t<T: OnGpu>(
        &mut self,
        (grad, lg): (&CudaStorage, &Layout),
        momentum: Option<&mut CudaStorage>,
        step: &SgdStep,
    ) -> Result<()> {
        let g = grad.contiguous::<T>("sgd", lg)?;
        let gpu = self.gpu.clone();
        let buf = momentum.map(|m| m.buf_mut::<T>());
        optim::sgd(&gpu, self.buf_mut::<T>(), &g, buf, lg.numel(), *step).map_err(on_device("sgd"))
    }

    fn rmsprop_t<T: OnGpu>(
        &mut self,
        (grad, lg): (&CudaStorage, &Layout),
        square_avg: &mut CudaStorage,
        momentum: Option<&mut CudaStorage>,
        step: &RmspropStep,
    ) -> Result<()> {
        let g = grad.contiguous::<T>("rmsprop", lg)?;
        let gpu = self.gpu.clone();
        let buf = momentum.map(|m| m.buf_mut::<T>());
        optim::rmsprop(
            &gpu,
            self.buf_mut::<T>(),
            &g,
            square_avg.buf_mut::<T>(),
            buf,
            lg.numel(),
            *step,
        )
        .map_err(on_device("rmsprop"))
    }
}

/// `len` elements of `value`.
fn filled_buffer<T: GpuElement>(gpu: &Gpu, len: usize, value: f64) -> Result<GpuBuffer<T>> {
    let mut out = gpu.alloc::<T>(len).map_err(on_device("zeros"))?;
    fill_into(gpu, &mut out, len, value).map_err(on_device("zeros"))?;
    Ok(out)
}

/// How many taps are active when they are the first ones of the kernel's row-major order
/// (all of them, or a PixelCNN mask's); `None` for any other tap set.
fn active_prefix(g: &ConvGeometry) -> Option<usize> {
    g.taps
        .iter()
        .enumerate()
        .all(|(t, &(i, j))| i * g.kw + j == t)
        .then_some(g.taps.len())
}

impl BackendStorage for CudaStorage {
    fn dtype(&self) -> DType {
        match self.data {
            CudaData::F32(_) => DType::F32,
            CudaData::F64(_) => DType::F64,
            CudaData::BF16(_) => DType::BF16,
        }
    }
    fn len(&self) -> usize {
        match &self.data {
            CudaData::F32(b) => b.len(),
            CudaData::F64(b) => b.len(),
            CudaData::BF16(b) => b.len(),
        }
    }
    fn device(&self) -> Device {
        self.device
    }
    /// A failed copy from the device (a lost device) ends the process with the reason: the
    /// trait's callers (`to_vec_f64` and the like) cannot fail.
    fn to_host<T: Element>(&self, layout: &Layout) -> Vec<T> {
        let host = self
            .download(layout)
            .unwrap_or_else(|e| panic!("copying a tensor from {}: {e}", self.device));
        host.to_host::<T>(&Layout::contiguous(&layout.shape))
    }
    fn copy(&self, layout: &Layout) -> Result<Self> {
        by_element(
            self,
            || self.cast_to::<f32, f32>(layout),
            || self.cast_to::<f64, f64>(layout),
            || self.cast_to::<bf16, bf16>(layout),
        )
    }
    fn cast(&self, layout: &Layout, dtype: DType) -> Result<Self> {
        match (self.dtype(), dtype) {
            (DType::F32, DType::F64) => self.cast_to::<f32, f64>(layout),
            (DType::F64, DType::F32) => self.cast_to::<f64, f32>(layout),
            (DType::F32, DType::BF16) => self.cast_to::<f32, bf16>(layout),
            (DType::BF16, DType::F32) => self.cast_to::<bf16, f32>(layout),
            (DType::F64, DType::BF16) => self.cast_to::<f64, bf16>(layout),
            (DType::BF16, DType::F64) => self.cast_to::<bf16, f64>(layout),
            _ => self.copy(layout),
        }
    }
    fn concat(parts: &[(&Self, &Layout)], axis: usize, shape: &[usize]) -> Result<Self> {
        let Some((first, _)) = parts.first() else {
            return Err(Error::invalid("concat", "nothing to join"));
        };
        fn join<T: OnGpu>(
            first: &CudaStorage,
            parts: &[(&CudaStorage, &Layout)],
            axis: usize,
            shape: &[usize],
        ) -> Result<CudaStorage> {
            let strides = contiguous_strides(shape);
            let mut out = first.alloc::<T>("concat", shape.iter().product())?;
            let mut start = 0;
            for (s, l) in parts {
                copy_to_view(
                    &first.gpu,
                    s.view::<T>(l),
                    &l.shape,
                    &mut out,
                    &strides,
                    start * strides[axis],
                )
                .map_err(on_device("concat"))?;
                start += l.shape[axis];
            }
            Ok(first.holding(out))
        }
        by_dtype(
            first,
            || join::<f32>(first, parts, axis, shape),
            || join::<f64>(first, parts, axis, shape),
        )
    }
    fn unary(&self, layout: &Layout, kind: UnaryKind) -> Result<Self> {
        by_dtype(
            self,
            || self.unary_t::<f32>(layout, kind),
            || self.unary_t::<f64>(layout, kind),
        )
    }
    fn binary(&self, la: &Layout, rhs: &Self, lb: &Layout, kind: BinaryKind) -> Result<Self> {
        by_dtype(
            self,
            || self.binary_t::<f32>(la, rhs, lb, kind),
            || self.binary_t::<f64>(la, rhs, lb, kind),
        )
    }
    fn select(&self, lm: &Layout, a: &Self, la: &Layout, b: &Self, lb: &Layout) -> Result<Self> {
        fn pick<T: OnGpu>(
            m: &CudaStorage,
            lm: &Layout,
            (a, la): (&CudaStorage, &Layout),
            (b, lb): (&CudaStorage, &Layout),
        ) -> Result<CudaStorage> {
            let mut out = m.alloc::<T>("where", lm.numel())?;
            select_into(
                &m.gpu,
                m.view::<T>(lm),
                a.view::<T>(la),
                b.view::<T>(lb),
                &lm.shape,
                &mut out,
            )
            .map_err(on_device("where"))?;
            Ok(m.holding(out))
        }
        by_dtype(
            self,
            || pick::<f32>(self, lm, (a, la), (b, lb)),
            || pick::<f64>(self, lm, (a, la), (b, lb)),
        )
    }
    fn reduce(&self, layout: &Layout, axes: &[usize], max: bool) -> Result<Self> {
        by_dtype(
            self,
            || self.reduce_t::<f32>(layout, axes, max),
            || self.reduce_t::<f64>(layout, axes, max),
        )
    }
    fn softmax(&self, layout: &Layout, split: AxisSplit, log: bool) -> Result<Self> {
        by_dtype(
            self,
            || self.softmax_t::<f32>(layout, split, log),
            || self.softmax_t::<f64>(layout, split, log),
        )
    }
    fn matmul(
        &self,
        la: &Layout,
        rhs: &Self,
        lb: &Layout,
        batch: &[usize],
        mkn: [usize; 3],
    ) -> Result<Self> {
        by_element(
            self,
            || self.matmul_t::<f32>(la, rhs, lb, batch, mkn),
            || self.matmul_t::<f64>(la, rhs, lb, batch, mkn),
            || self.matmul_t::<bf16>(la, rhs, lb, batch, mkn),
        )
    }
    fn conv_forward(&self, lx: &Layout, w: &Self, lw: &Layout, g: &ConvGeometry) -> Result<Self> {
        by_element(
            self,
            || self.conv_forward_t::<f32>(lx, w, lw, g),
            || self.conv_forward_t::<f64>(lx, w, lw, g),
            || self.conv_forward_t::<bf16>(lx, w, lw, g),
        )
    }
    fn conv_input_grad(
        &self,
        ldy: &Layout,
        w: &Self,
        lw: &Layout,
        g: &ConvGeometry,
    ) -> Result<Self> {
        by_element(
            self,
            || self.conv_input_grad_t::<f32>(ldy, w, lw, g),
            || self.conv_input_grad_t::<f64>(ldy, w, lw, g),
            || self.conv_input_grad_t::<bf16>(ldy, w, lw, g),
        )
    }
    fn conv_weight_grad(
        &self,
        lx: &Layout,
        dy: &Self,
        ldy: &Layout,
        g: &ConvGeometry,
    ) -> Result<Self> {
        by_element(
            self,
            || self.conv_weight_grad_t::<f32>(lx, dy, ldy, g),
            || self.conv_weight_grad_t::<f64>(lx, dy, ldy, g),
            || self.conv_weight_grad_t::<bf16>(lx, dy, ldy, g),
        )
    }
    fn max_pool2d_argmax(
        &self,
        layout: &Layout,
        planes: usize,
        rows: &WindowAxis,
        cols: &WindowAxis,
    ) -> Result<Vec<usize>> {
        // the argmax is a host value by the trait's contract
        self.download(layout)?.max_pool2d_argmax(
            &Layout::contiguous(&layout.shape),
            planes,
            rows,
            cols,
        )
    }
    fn index_select(&self, layout: &Layout, split: AxisSplit, indices: &[usize]) -> Result<Self> {
        let AxisSplit { outer, axis, inner } = split;
        let sources = index::select_sources((outer, axis, inner), indices)
            .map_err(on_device("index_select"))?;
        by_dtype(
            self,
            || self.take_t::<f32>("index_select", layout, &sources),
            || self.take_t::<f64>("index_select", layout, &sources),
        )
    }
    fn index_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        indices: &[usize],
        size: usize,
    ) -> Result<Self> {
        let AxisSplit { outer, inner, .. } = split;
        let plan = index::index_add_lists((outer, size, inner), indices)
            .map_err(on_device("index_add"))?;
        by_dtype(
            self,
            || self.sum_lists_t::<f32>("index_add", layout, &plan),
            || self.sum_lists_t::<f64>("index_add", layout, &plan),
        )
    }
    fn gather(&self, layout: &Layout, split: AxisSplit, index: &[usize], m: usize) -> Result<Self> {
        let AxisSplit { outer, axis, inner } = split;
        let sources =
            index::gather_sources((outer, axis, inner), index, m).map_err(on_device("gather"))?;
        by_dtype(
            self,
            || self.take_t::<f32>("gather", layout, &sources),
            || self.take_t::<f64>("gather", layout, &sources),
        )
    }
    fn scatter_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        index: &[usize],
        size: usize,
    ) -> Result<Self> {
        let AxisSplit { outer, axis, inner } = split;
        let plan = index::scatter_add_lists((outer, size, inner), index, axis)
            .map_err(on_device("scatter_add"))?;
        by_dtype(
            self,
            || self.sum_lists_t::<f32>("scatter_add", layout, &plan),
            || self.sum_lists_t::<f64>("scatter_add", layout, &plan),
        )
    }
    fn lstm_cell_forward(
        &self,
        lg: &Layout,
        c_prev: &Self,
        lc: &Layout,
        bh: [usize; 2],
    ) -> Result<Self> {
        by_dtype(
            self,
            || self.lstm_cell_forward_t::<f32>(lg, c_prev, lc, bh),
            || self.lstm_cell_forward_t::<f64>(lg, c_prev, lc, bh),
        )
    }
    fn lstm_cell_backward(
        &self,
        lg: &Layout,
        c_prev: (&Self, &Layout),
        out: (&Self, &Layout),
        grad: (&Self, &Layout),
        bh: [usize; 2],
    ) -> Result<(Self, Self)> {
        by_dtype(
            self,
            || self.lstm_cell_backward_t::<f32>(lg, c_prev, out, grad, bh),
            || self.lstm_cell_backward_t::<f64>(lg, c_prev, out, grad, bh),
        )
    }
    fn lstm_sequence_forward(
        inputs: &SequenceInputs<Self>,
        shape: LstmSequenceShape,
    ) -> Result<(Self, SequenceTape<Self>)> {
        by_dtype(
            inputs.x.0,
            || recurrence::sequence_forward::<f32>(inputs, shape),
            || recurrence::sequence_forward::<f64>(inputs, shape),
        )
    }
    fn lstm_sequence_backward(
        inputs: &SequenceInputs<Self>,
        shape: LstmSequenceShape,
        tape: SequenceTape<&Self>,
        dy: (&Self, &Layout),
        wants: SequenceWants,
    ) -> Result<SequenceGrads<Self>> {
        by_dtype(
            inputs.x.0,
            || recurrence::sequence_backward::<f32>(inputs, shape, &tape, dy, wants),
            || recurrence::sequence_backward::<f64>(inputs, shape, &tape, dy, wants),
        )
    }
    fn grid_lstm_forward(
        &self,
        lp: &Layout,
        w: Operand<Self>,
        plan: &GridPlan,
    ) -> Result<(Self, GridTape<Self>)> {
        by_dtype(
            self,
            || recurrence::grid_forward::<f32>((self, lp), w, plan),
            || recurrence::grid_forward::<f64>((self, lp), w, plan),
        )
    }
    fn grid_lstm_backward(
        plan: &GridPlan,
        tape: GridTape<&Self>,
        w: Operand<Self>,
        dy: Operand<Self>,
    ) -> Result<(Self, Self)> {
        by_dtype(
            w.0,
            || recurrence::grid_backward::<f32>(plan, &tape, w, dy),
            || recurrence::grid_backward::<f64>(plan, &tape, w, dy),
        )
    }
    fn softmax_cross_entropy(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
    ) -> Result<(Self, Self)> {
        by_dtype(
            self,
            || self.softmax_cross_entropy_t::<f32>(layout, split, targets),
            || self.softmax_cross_entropy_t::<f64>(layout, split, targets),
        )
    }
    fn softmax_cross_entropy_backward(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
        lse: &Self,
        grad: &Self,
    ) -> Result<Self> {
        by_dtype(
            self,
            || self.softmax_cross_entropy_backward_t::<f32>(layout, split, targets, lse, grad),
            || self.softmax_cross_entropy_backward_t::<f64>(layout, split, targets, lse, grad),
        )
    }
    fn batch_norm(
        &self,
        layout: &Layout,
        split: AxisSplit,
        weight: Operand<Self>,
        bias: Operand<Self>,
        eps: f64,
    ) -> Result<(Self, Self, Self)> {
        by_dtype(
            self,
            || self.batch_norm_t::<f32>(layout, split, weight, bias, eps),
            || self.batch_norm_t::<f64>(layout, split, weight, bias, eps),
        )
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
        by_dtype(
            self,
            || self.batch_norm_backward_t::<f32>(layout, split, dy, weight, stats, eps),
            || self.batch_norm_backward_t::<f64>(layout, split, dy, weight, stats, eps),
        )
    }
    fn bce_with_logits_sum(&self, lx: &Layout, t: &Self, lt: &Layout, scale: f64) -> Result<Self> {
        by_dtype(
            self,
            || self.bce_sum_t::<f32>(lx, t, lt, scale),
            || self.bce_sum_t::<f64>(lx, t, lt, scale),
        )
    }
    fn sgd_step(
        &mut self,
        grad: (&Self, &Layout),
        momentum: Option<&mut Self>,
        step: &SgdStep,
    ) -> Result<()> {
        match self.data {
            CudaData::F32(_) => self.sgd_t::<f32>(grad, momentum, step),
            CudaData::F64(_) => self.sgd_t::<f64>(grad, momentum, step),
            CudaData::BF16(_) => Err(Error::invalid(
                "optimizer step",
                "engine bug: a bf16 parameter reached the optimizer",
            )),
        }
    }
    fn adam_step(
        &mut self,
        grad: (&Self, &Layout),
        m: &mut Self,
        v: &mut Self,
        step: &AdamStep,
    ) -> Result<()> {
        match self.data {
            CudaData::F32(_) => self.adam_t::<f32>(grad, m, v, step),
            CudaData::F64(_) => self.adam_t::<f64>(grad, m, v, step),
            CudaData::BF16(_) => Err(Error::invalid(
                "optimizer step",
                "engine bug: a bf16 parameter reached the optimizer",
            )),
        }
    }
    fn rmsprop_step(
        &mut self,
        grad: (&Self, &Layout),
        square_avg: &mut Self,
        momentum: Option<&mut Self>,
        step: &RmspropStep,
    ) -> Result<()> {
        match self.data {
            CudaData::F32(_) => self.rmsprop_t::<f32>(grad, square_avg, momentum, step),
            CudaData::F64(_) => self.rmsprop_t::<f64>(grad, square_avg, momentum, step),
            CudaData::BF16(_) => Err(Error::invalid(
                "optimizer step",
                "engine bug: a bf16 parameter reached the optimizer",
            )),
        }
    }
}

/// The two LSTM recurrences on a CUDA device, composed from the kernels at hand (take for
/// gathers, matmul, the fused cell, sum-of-lists for the adjoint scatters) with the CPU's
/// algorithms and tape layouts, so each backward reads its tape exactly as the CPU's does:
/// the PixelRNN grid sweep (`kernels::cpu::grid_lstm`, wave by wave over the same `GridPlan`)
/// and the LSTM over a sequence (`kernels::cpu::lstm_sequence`, step by step).
mod recurrence {
    use super::*;
    use kernels::desc::lstm::NONE;

    /// Flat sources for rows of `width` starting at `base(slot)`, for `slots`; -1 (zero) where
    /// `base` gives NONE.
    fn rows_of(
        slots: impl Iterator<Item = usize>,
        width: usize,
        base: impl Fn(usize) -> usize,
    ) -> Vec<i64> {
        let mut sources = Vec::new();
        for slot in slots {
            let b = base(slot);
            if b == NONE {
                sources.extend(std::iter::repeat_n(-1, width));
            } else {
                sources.extend((0..width).map(|j| (b + j) as i64));
            }
        }
        sources
    }

    fn take<T: OnGpu>(s: &CudaStorage, x: &GpuBuffer<T>, sources: &[i64]) -> Result<GpuBuffer<T>> {
        let mut out = s.alloc::<T>("grid_lstm", sources.len())?;
        index::take_into(&s.gpu, x, sources, &mut out).map_err(on_device("grid_lstm"))?;
        Ok(out)
    }

    /// `rows` rows of `width` from `src` written into `dst` from row `at` on.
    fn put_rows<T: OnGpu>(
        s: &CudaStorage,
        src: &GpuBuffer<T>,
        (rows, width): (usize, usize),
        dst: &mut GpuBuffer<T>,
        at: usize,
    ) -> Result<()> {
        put_strided(s, src, (rows, width, width), dst, at * width)
    }

    /// Rows `range` of a [P, width] buffer as a contiguous copy.
    fn rows_copy<T: OnGpu>(
        s: &CudaStorage,
        src: &GpuBuffer<T>,
        width: usize,
        range: std::ops::Range<usize>,
    ) -> Result<GpuBuffer<T>> {
        strided_rows(s, src, (range.len(), width, width), range.start * width)
    }

    fn dense<T: OnGpu>(
        data: &GpuBuffer<T>,
        offset: usize,
        row: usize,
        col: usize,
    ) -> GpuMat<'_, T> {
        GpuMat {
            data,
            offset,
            row_stride: row,
            col_stride: col,
        }
    }

    fn add<T: OnGpu>(
        s: &CudaStorage,
        a: &GpuBuffer<T>,
        b: &GpuBuffer<T>,
        n: usize,
    ) -> Result<GpuBuffer<T>> {
        let mut out = s.alloc::<T>("grid_lstm", n)?;
        let v = |data| GpuView {
            data,
            strides: &[1],
            offset: 0,
        };
        binary_into(&s.gpu, v(a), v(b), &[n], &mut out, BinaryKind::Add)
            .map_err(on_device("grid_lstm"))?;
        Ok(out)
    }

    pub(super) fn grid_forward<T: OnGpu>(
        (pre, lp): (&CudaStorage, &Layout),
        (w, lw): Operand<CudaStorage>,
        plan: &GridPlan,
    ) -> Result<(CudaStorage, GridTape<CudaStorage>)> {
        let (h, k) = (plan.hidden, plan.taps);
        let (g4, h2, kh, p) = (4 * h, 2 * h, k * h, plan.order.len());
        let pre_c = pre.contiguous::<T>("grid_lstm", lp)?;
        let w_c = w.contiguous::<T>("grid_lstm", lw)?;
        let s = pre;
        let mut gates = s.alloc::<T>("grid_lstm", p * g4)?;
        let mut taps = s.alloc::<T>("grid_lstm", p * kh)?;
        let mut c_prev = s.alloc::<T>("grid_lstm", p * h)?;
        let mut out = s.alloc::<T>("grid_lstm", p * h2)?;
        for wave in plan.waves() {
            let n = wave.len();
            // the taps' states and the previous cells, gathered from earlier waves' outputs
            let tap_sources = rows_of(
                wave.clone()
                    .flat_map(|slot| (0..k).map(move |t| (slot, t)))
                    .map(|st| st.0 * k + st.1),
                h,
                |i| match plan.tap_src[i] {
                    NONE => NONE,
                    src => src * h2,
                },
            );
            let taps_w = take(s, &out, &tap_sources)?;
            let c_w = take(
                s,
                &out,
                &rows_of(wave.clone(), h, |slot| match plan.cell_src[slot] {
                    NONE => NONE,
                    src => src * h2 + h,
                }),
            )?;
            // gates = pre (by slot) + taps w
            let pre_w = take(
                s,
                &pre_c,
                &rows_of(wave.clone(), g4, |slot| plan.order[slot] * g4),
            )?;
            let rec = product(
                s,
                [n, kh, g4],
                dense(&taps_w, 0, kh, 1),
                dense(&w_c, 0, g4, 1),
            )?;
            let gates_w = add(s, &pre_w, &rec, n * g4)?;
            let mut out_w = s.alloc::<T>("grid_lstm", n * h2)?;
            lstm::lstm_cell_forward(&s.gpu, (n, h), &gates_w, &c_w, &mut out_w)
                .map_err(on_device("grid_lstm"))?;
            put_rows(s, &gates_w, (n, g4), &mut gates, wave.start)?;
            put_rows(s, &taps_w, (n, kh), &mut taps, wave.start)?;
            put_rows(s, &c_w, (n, h), &mut c_prev, wave.start)?;
            put_rows(s, &out_w, (n, h2), &mut out, wave.start)?;
        }
        // h back in the grid's order
        let slots = slot_of(plan);
        let y = take(s, &out, &rows_of(0..p, h, |q| slots[q] * h2))?;
        let tape = GridTape {
            gates: s.holding(gates),
            taps: s.holding(taps),
            c_prev: s.holding(c_prev),
            out: s.holding(out),
        };
        Ok((s.holding(y), tape))
    }

    pub(super) fn grid_backward<T: OnGpu>(
        plan: &GridPlan,
        tape: &GridTape<&CudaStorage>,
        (w, lw): Operand<CudaStorage>,
        (dy, ldy): Operand<CudaStorage>,
    ) -> Result<(CudaStorage, CudaStorage)> {
        let (h, k) = (plan.hidden, plan.taps);
        let (g4, h2, kh, p) = (4 * h, 2 * h, k * h, plan.order.len());
        let s = w;
        let w_c = w.contiguous::<T>("grid_lstm backward", lw)?;
        let dy_c = dy.contiguous::<T>("grid_lstm backward", ldy)?;
        let (gates, taps) = (tape.gates.buf::<T>(), tape.taps.buf::<T>());
        let (c_prev, out) = (tape.c_prev.buf::<T>(), tape.out.buf::<T>());
        // dL/dh and dL/dc by slot, gathering what later waves send back
        let mut dh = take(s, &dy_c, &rows_of(0..p, h, |slot| plan.order[slot] * h))?;
        let mut dc = filled_buffer::<T>(&s.gpu, p * h, 0.0)?;
        let mut dgates = s.alloc::<T>("grid_lstm backward", p * g4)?;
        for wave in plan.waves().rev() {
            let n = wave.len();
            let mut dhc = s.alloc::<T>("grid_lstm backward", n * h2)?;
            let dh_w = rows_copy(s, &dh, h, wave.clone())?;
            let dc_w = rows_copy(s, &dc, h, wave.clone())?;
            put_strided(s, &dh_w, (n, h, h2), &mut dhc, 0)?;
            put_strided(s, &dc_w, (n, h, h2), &mut dhc, h)?;
            let g_w = rows_copy(s, gates, g4, wave.clone())?;
            let c_w = rows_copy(s, c_prev, h, wave.clone())?;
            let o_w = rows_copy(s, out, h2, wave.clone())?;
            let mut dg_w = s.alloc::<T>("grid_lstm backward", n * g4)?;
            let mut dcp_w = s.alloc::<T>("grid_lstm backward", n * h)?;
            lstm::lstm_cell_backward(
                &s.gpu,
                (n, h),
                &g_w,
                &c_w,
                &o_w,
                &dhc,
                &mut dg_w,
                &mut dcp_w,
            )
            .map_err(on_device("grid_lstm backward"))?;
            put_rows(s, &dg_w, (n, g4), &mut dgates, wave.start)?;
            // d taps = d gates wᵀ
            let dtaps_w = product(
                s,
                [n, g4, kh],
                dense(&dg_w, 0, g4, 1),
                dense(&w_c, 0, 1, g4),
            )?;
            // what this wave sends back: dc += its previous cells' gradients, dh += its taps'
            let mut cell_targets = Vec::new();
            let mut tap_targets = Vec::new();
            for slot in wave.clone() {
                let src = plan.cell_src[slot];
                cell_targets.extend((0..h).map(|j| if src == NONE { NONE } else { src * h + j }));
                for t in 0..k {
                    let src = plan.tap_src[slot * k + t];
                    tap_targets
                        .extend((0..h).map(|j| if src == NONE { NONE } else { src * h + j }));
                }
            }
            dc = scatter_added(s, &dc, &dcp_w, &cell_targets, p * h)?;
            dh = scatter_added(s, &dh, &dtaps_w, &tap_targets, p * h)?;
        }
        let slots = slot_of(plan);
        let dpre = take(s, &dgates, &rows_of(0..p, g4, |q| slots[q] * g4))?;
        // d w = tapsᵀ d gates
        let dw = product(
            s,
            [kh, p, g4],
            dense(taps, 0, 1, kh),
            dense(&dgates, 0, g4, 1),
        )?;
        Ok((s.holding(dpre), s.holding(dw)))
    }

    /// The slot of each grid position (the inverse of `plan.order`).
    fn slot_of(plan: &GridPlan) -> Vec<usize> {
        let mut slots = vec![0; plan.order.len()];
        for (slot, &q) in plan.order.iter().enumerate() {
            slots[q] = slot;
        }
        slots
    }

    /// `base` plus `src` added at `targets` (NONE: dropped), summed in source order.
    fn scatter_added<T: OnGpu>(
        s: &CudaStorage,
        base: &GpuBuffer<T>,
        src: &GpuBuffer<T>,
        targets: &[usize],
        len: usize,
    ) -> Result<GpuBuffer<T>> {
        // NONE is usize::MAX: a target outside the grid, dropped
        let plan = index::sum_lists(targets, len);
        let mut sent = s.alloc::<T>("grid_lstm backward", len)?;
        index::sum_lists_into(&s.gpu, src, &plan, &mut sent)
            .map_err(on_device("grid_lstm backward"))?;
        add(s, base, &sent, len)
    }

    /// Rows of `width` at `stride` from element `offset` of `src` (`rows` of them) as a
    /// contiguous buffer.
    fn strided_rows<T: OnGpu>(
        s: &CudaStorage,
        src: &GpuBuffer<T>,
        (rows, width, stride): (usize, usize, usize),
        offset: usize,
    ) -> Result<GpuBuffer<T>> {
        let mut out = s.alloc::<T>("lstm", rows * width)?;
        let view = GpuView {
            data: src,
            strides: &[stride, 1],
            offset,
        };
        copy_into(&s.gpu, view, &[rows, width], &mut out).map_err(on_device("lstm"))?;
        Ok(out)
    }

    /// `src` [rows, width] written into `dst` through row stride `stride` from `offset`.
    fn put_strided<T: OnGpu>(
        s: &CudaStorage,
        src: &GpuBuffer<T>,
        (rows, width, stride): (usize, usize, usize),
        dst: &mut GpuBuffer<T>,
        offset: usize,
    ) -> Result<()> {
        let view = GpuView {
            data: src,
            strides: &[width, 1],
            offset: 0,
        };
        copy_to_view(&s.gpu, view, &[rows, width], dst, &[stride, 1], offset)
            .map_err(on_device("lstm"))
    }

    /// `a` [rows, n] plus `b` broadcast along rows ([n]).
    fn add_rows<T: OnGpu>(
        s: &CudaStorage,
        a: &GpuBuffer<T>,
        b: &GpuBuffer<T>,
        (rows, n): (usize, usize),
    ) -> Result<GpuBuffer<T>> {
        let mut out = s.alloc::<T>("lstm", rows * n)?;
        let va = GpuView {
            data: a,
            strides: &[n, 1],
            offset: 0,
        };
        let vb = GpuView {
            data: b,
            strides: &[0, 1],
            offset: 0,
        };
        binary_into(&s.gpu, va, vb, &[rows, n], &mut out, BinaryKind::Add)
            .map_err(on_device("lstm"))?;
        Ok(out)
    }

    fn product<T: OnGpu>(
        s: &CudaStorage,
        [m, k, n]: [usize; 3],
        a: GpuMat<T>,
        b: GpuMat<T>,
    ) -> Result<GpuBuffer<T>> {
        let mut out = s.alloc::<T>("lstm", m * n)?;
        matmul_into_at(&s.gpu, [m, k, n], a, b, &mut out, 0).map_err(on_device("lstm"))?;
        Ok(out)
    }

    /// The contiguous operands of a sequence.
    struct Operands<'a, T> {
        x: Contiguous<'a, T>,
        w_ih: Contiguous<'a, T>,
        w_hh: Contiguous<'a, T>,
        bias: Option<GpuBuffer<T>>,
        h0: Option<Contiguous<'a, T>>,
        c0: Option<Contiguous<'a, T>>,
    }

    fn operands<'a, T: OnGpu>(
        inputs: &'a SequenceInputs<'a, CudaStorage>,
    ) -> Result<Operands<'a, T>> {
        let c = |(st, l): Operand<'a, CudaStorage>| st.contiguous::<T>("lstm", l);
        let s = inputs.x.0;
        let bias = match inputs.bias {
            Some((bi, bh)) => {
                let (bi, bh) = (c(bi)?, c(bh)?);
                Some(add(s, &bi, &bh, inputs.bias.map_or(0, |b| b.0 .1.numel()))?)
            }
            None => None,
        };
        Ok(Operands {
            x: c(inputs.x)?,
            w_ih: c(inputs.w_ih)?,
            w_hh: c(inputs.w_hh)?,
            bias,
            h0: inputs.state.map(|(h, _)| c(h)).transpose()?,
            c0: inputs.state.map(|(_, cc)| c(cc)).transpose()?,
        })
    }

    pub(super) fn sequence_forward<T: OnGpu>(
        inputs: &SequenceInputs<CudaStorage>,
        d: LstmSequenceShape,
    ) -> Result<(CudaStorage, SequenceTape<CudaStorage>)> {
        let s = inputs.x.0;
        let LstmSequenceShape {
            steps,
            batch,
            input,
            hidden,
        } = d;
        let (tb, g4, h2, bh) = (steps * batch, 4 * hidden, 2 * hidden, batch * hidden);
        let op = operands::<T>(inputs)?;
        let mut y = filled_buffer::<T>(&s.gpu, (steps + 1) * bh, 0.0)?;
        if batch == 0 || steps == 0 {
            // no step: Y is [c_0]
            if let (Some(c0), 0) = (&op.c0, steps) {
                put_rows(s, c0, (batch, hidden), &mut y, 0)?;
            }
            let empty = || s.alloc::<T>("lstm", 0).map(|b| s.holding(b));
            return Ok((
                s.holding(y),
                SequenceTape {
                    gates: empty()?,
                    hc: empty()?,
                },
            ));
        }
        // the input projections of all steps
        let mut gates = product(
            s,
            [tb, input, g4],
            dense(&op.x, 0, input, 1),
            dense(&op.w_ih, 0, 1, input),
        )?;
        let c0 = match &op.c0 {
            Some(c0) => s.gpu.copy(c0).map_err(on_device("lstm"))?,
            None => filled_buffer::<T>(&s.gpu, bh, 0.0)?,
        };
        let mut hc = s.alloc::<T>("lstm", tb * h2)?;
        for t in 0..steps {
            let mut a = rows_copy(s, &gates, g4, t * batch..(t + 1) * batch)?;
            // a_t = x_t W_ihᵀ + h_{t-1} W_hhᵀ + (b_ih + b_hh)
            let h_prev = if t > 0 {
                Some(dense(&hc, (t - 1) * batch * h2, h2, 1))
            } else {
                op.h0.as_deref().map(|h0| dense(h0, 0, hidden, 1))
            };
            if let Some(h_prev) = h_prev {
                let rec = product(
                    s,
                    [batch, hidden, g4],
                    h_prev,
                    dense(&op.w_hh, 0, 1, hidden),
                )?;
                a = add(s, &a, &rec, batch * g4)?;
            }
            if let Some(b) = &op.bias {
                a = add_rows(s, &a, b, (batch, g4))?;
            }
            put_rows(s, &a, (batch, g4), &mut gates, t * batch)?;
            let c_prev = if t == 0 {
                s.gpu.copy(&c0).map_err(on_device("lstm"))?
            } else {
                strided_rows(s, &hc, (batch, hidden, h2), (t - 1) * batch * h2 + hidden)?
            };
            let mut hc_t = s.alloc::<T>("lstm", batch * h2)?;
            lstm::lstm_cell_forward(&s.gpu, (batch, hidden), &a, &c_prev, &mut hc_t)
                .map_err(on_device("lstm"))?;
            put_rows(s, &hc_t, (batch, h2), &mut hc, t * batch)?;
        }
        // Y = [h_1, ..., h_T, c_T]
        let hs = strided_rows(s, &hc, (tb, hidden, h2), 0)?;
        put_rows(s, &hs, (tb, hidden), &mut y, 0)?;
        let c_last = strided_rows(s, &hc, (batch, hidden, h2), (tb - batch) * h2 + hidden)?;
        put_rows(s, &c_last, (batch, hidden), &mut y, tb)?;
        Ok((
            s.holding(y),
            SequenceTape {
                gates: s.holding(gates),
                hc: s.holding(hc),
            },
        ))
    }

    pub(super) fn sequence_backward<T: OnGpu>(
        inputs: &SequenceInputs<CudaStorage>,
        d: LstmSequenceShape,
        tape: &SequenceTape<&CudaStorage>,
        (dy, ldy): (&CudaStorage, &Layout),
        wants: SequenceWants,
    ) -> Result<SequenceGrads<CudaStorage>> {
        let s = inputs.x.0;
        let LstmSequenceShape {
            steps,
            batch,
            input,
            hidden,
        } = d;
        let (tb, g4, h2, bh) = (steps * batch, 4 * hidden, 2 * hidden, batch * hidden);
        let dy = dy.contiguous::<T>("lstm backward", ldy)?;
        let mut dc = rows_copy(s, &dy, hidden, tb..tb + batch)?;
        let none = SequenceGrads {
            x: None,
            w_ih: None,
            w_hh: None,
            bias: None,
            h0: None,
            c0: s.holding(s.gpu.copy(&dc).map_err(on_device("lstm"))?),
        };
        if batch == 0 || steps == 0 {
            return Ok(none);
        }
        drop(none);
        let op = operands::<T>(inputs)?;
        let (gates, hc) = (tape.gates.buf::<T>(), tape.hc.buf::<T>());
        let c0 = match &op.c0 {
            Some(c0) => s.gpu.copy(c0).map_err(on_device("lstm"))?,
            None => filled_buffer::<T>(&s.gpu, bh, 0.0)?,
        };
        let want_h0 = wants.h0 && op.h0.is_some();
        let mut dgates = s.alloc::<T>("lstm backward", tb * g4)?;
        let mut dh_next: Option<GpuBuffer<T>> = None;
        for t in (0..steps).rev() {
            // [dh | dc] of step t's output: its own gradient plus what step t + 1 sent back
            let mut dh = rows_copy(s, &dy, hidden, t * batch..(t + 1) * batch)?;
            if let (Some(next), true) = (&dh_next, t + 1 < steps) {
                dh = add(s, &dh, next, bh)?;
            }
            let mut dhc = s.alloc::<T>("lstm backward", batch * h2)?;
            put_strided(s, &dh, (batch, hidden, h2), &mut dhc, 0)?;
            put_strided(s, &dc, (batch, hidden, h2), &mut dhc, hidden)?;
            let c_prev = if t == 0 {
                s.gpu.copy(&c0).map_err(on_device("lstm"))?
            } else {
                strided_rows(s, hc, (batch, hidden, h2), (t - 1) * batch * h2 + hidden)?
            };
            let g_t = rows_copy(s, gates, g4, t * batch..(t + 1) * batch)?;
            let hc_t = rows_copy(s, hc, h2, t * batch..(t + 1) * batch)?;
            let mut dg_t = s.alloc::<T>("lstm backward", batch * g4)?;
            let mut dc_prev = s.alloc::<T>("lstm backward", bh)?;
            lstm::lstm_cell_backward(
                &s.gpu,
                (batch, hidden),
                &g_t,
                &c_prev,
                &hc_t,
                &dhc,
                &mut dg_t,
                &mut dc_prev,
            )
            .map_err(on_device("lstm backward"))?;
            put_rows(s, &dg_t, (batch, g4), &mut dgates, t * batch)?;
            dc = dc_prev;
            if t > 0 || want_h0 {
                dh_next = Some(product(
                    s,
                    [batch, g4, hidden],
                    dense(&dg_t, 0, g4, 1),
                    dense(&op.w_hh, 0, hidden, 1),
                )?);
            }
        }
        // dgates as [4H, T·B]
        let dgates_t = |offset| dense(&dgates, offset, 1, g4);
        let mut grads = SequenceGrads {
            x: None,
            w_ih: None,
            w_hh: None,
            bias: None,
            h0: None,
            c0: s.holding(dc),
        };
        if wants.x {
            let dx = product(
                s,
                [tb, g4, input],
                dense(&dgates, 0, g4, 1),
                dense(&op.w_ih, 0, input, 1),
            )?;
            grads.x = Some(s.holding(dx));
        }
        if wants.w_ih {
            let dw = product(s, [g4, tb, input], dgates_t(0), dense(&op.x, 0, input, 1))?;
            grads.w_ih = Some(s.holding(dw));
        }
        if wants.w_hh {
            // dW_hh = Σ_t dgates_tᵀ h_{t-1}: steps 1.. read h from the tape, step 0 reads h_0
            let mut dw = filled_buffer::<T>(&s.gpu, g4 * hidden, 0.0)?;
            if steps > 1 {
                dw = product(
                    s,
                    [g4, tb - batch, hidden],
                    dgates_t(batch * g4),
                    dense(hc, 0, h2, 1),
                )?;
            }
            if let Some(h0) = &op.h0 {
                let first = product(s, [g4, batch, hidden], dgates_t(0), dense(h0, 0, hidden, 1))?;
                dw = add(s, &dw, &first, g4 * hidden)?;
            }
            grads.w_hh = Some(s.holding(dw));
        }
        if wants.bias && op.bias.is_some() {
            let mut db = s.alloc::<T>("lstm backward", g4)?;
            reduce_into(&s.gpu, &dgates, (1, tb, g4), Fold::Sum, &mut db)
                .map_err(on_device("lstm backward"))?;
            grads.bias = Some(s.holding(db));
        }
        if want_h0 {
            grads.h0 = dh_next.map(|b| s.holding(b));
        }
        Ok(grads)
    }
}
