//! The seam between the engine and its devices.
//!
//! A tensor's elements live in a [`Storage`]: one arm per device, each a type implementing
//! [`BackendStorage`], the list of op families every device provides. `Storage` is the one
//! place that picks the kernel by device: each of its methods matches on the operands' arms and
//! calls that backend (operands on different devices are an error naming the op). The ops in
//! `ops/` check their arguments, describe the work with the vocabulary of `kernels::desc`
//! (elementwise kinds, convolution geometry, pooling windows, axis splits, optimizer steps),
//! call `Storage`, and record the `Op`; the backward rules are Tensor ops, so they run on
//! whatever device their inputs live on.
//!
//! This is candle's cut (an enum of backend storages over one backend trait) rather than burn's
//! (autodiff as a decorator over a generic backend): our `Tensor` is one concrete type whose
//! dtype and device are run-time values, the graph and its rules are written once against it,
//! and a second device is one more arm, not a second instantiation of the whole engine.
//!
//! Arms: [`cpu::CpuStorage`] computes everything (`kernels::cpu`). [`cuda::CudaStorage`] holds
//! device buffers on a GPU or on the emulated device and computes everything too, through the
//! CUDA kernels (`kernels::cuda`); a new op family is its kernel plus the method's body in
//! `cuda.rs`.

pub(crate) mod cpu;
pub(crate) mod cuda;

use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::memory::{self, Charge};
use crate::profiler;
use kernels::desc::{AdamStep, GridPlan, LstmSequenceShape, RmspropStep, SgdStep};
use kernels::desc::{AxisSplit, BinaryKind, ConvGeometry, UnaryKind, WindowAxis};
use std::sync::Arc;

pub(crate) use cpu::CpuStorage;
pub(crate) use cuda::CudaStorage;
pub(crate) use kernels::cpu::lstm_sequence::SequenceWants;

/// The op families every device provides. Inputs come with the [`Layout`] they are read
/// through; results are new contiguous buffers on the same device (or, for the optimizer
/// steps, the parameter and its state updated in place).
pub(crate) trait BackendStorage: Sized {
    fn dtype(&self) -> DType;
    /// Elements in the buffer (not in any one view of it).
    fn len(&self) -> usize;
    fn device(&self) -> Device;

    /// The elements `layout` selects, in row-major order, copied to the host as `T` (which is
    /// this storage's dtype: callers check).
    fn to_host<T: Element>(&self, layout: &Layout) -> Vec<T>;
    /// The elements `layout` selects as a new contiguous buffer.
    fn copy(&self, layout: &Layout) -> Result<Self>;
    /// The same values in another dtype, contiguous.
    fn cast(&self, layout: &Layout, dtype: DType) -> Result<Self>;
    /// Contiguous parts joined along `axis` of the output `shape`.
    fn concat(parts: &[(&Self, &Layout)], axis: usize, shape: &[usize]) -> Result<Self>;

    fn unary(&self, layout: &Layout, kind: UnaryKind) -> Result<Self>;
    /// Both layouts already broadcast to the output shape (stride 0 on broadcast axes).
    fn binary(&self, la: &Layout, rhs: &Self, lb: &Layout, kind: BinaryKind) -> Result<Self>;
    /// `a` where `self` (the mask) is nonzero, else `b`; all three broadcast to one shape.
    fn select(&self, lm: &Layout, a: &Self, la: &Layout, b: &Self, lb: &Layout) -> Result<Self>;

    /// Sum (or max) over `axes` (sorted, distinct) of the tensor `layout` describes.
    fn reduce(&self, layout: &Layout, axes: &[usize], max: bool) -> Result<Self>;
    /// Softmax (or log-softmax) along the middle axis of `split`.
    fn softmax(&self, layout: &Layout, split: AxisSplit, log: bool) -> Result<Self>;

    /// [batch.., m, k] x [batch.., k, n] with both layouts expanded to the batch shape.
    fn matmul(
        &self,
        la: &Layout,
        rhs: &Self,
        lb: &Layout,
        batch: &[usize],
        mkn: [usize; 3],
    ) -> Result<Self>;

    /// y = conv(x, w) over `g` (w holds every tap; only `g.taps` are read).
    fn conv_forward(&self, lx: &Layout, w: &Self, lw: &Layout, g: &ConvGeometry) -> Result<Self>;
    /// dx from dy (`self`) and w: also conv_transpose2d's forward.
    fn conv_input_grad(
        &self,
        ldy: &Layout,
        w: &Self,
        lw: &Layout,
        g: &ConvGeometry,
    ) -> Result<Self>;
    /// dw from x (`self`) and dy, zero at the taps `g` leaves out.
    fn conv_weight_grad(
        &self,
        lx: &Layout,
        dy: &Self,
        ldy: &Layout,
        g: &ConvGeometry,
    ) -> Result<Self>;

    /// Max pooling's argmax per window (flat index within the plane), on the host.
    fn max_pool2d_argmax(
        &self,
        layout: &Layout,
        planes: usize,
        rows: &WindowAxis,
        cols: &WindowAxis,
    ) -> Result<Vec<usize>>;

    /// Slices `indices` of the middle axis of `split`.
    fn index_select(&self, layout: &Layout, split: AxisSplit, indices: &[usize]) -> Result<Self>;
    /// Zeros of `size` along the middle axis, slice i of `self` added at `indices[i]`.
    fn index_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        indices: &[usize],
        size: usize,
    ) -> Result<Self>;
    /// PyTorch's gather along the middle axis of `split`; `index` holds `m` entries per
    /// (outer, inner) position.
    fn gather(&self, layout: &Layout, split: AxisSplit, index: &[usize], m: usize) -> Result<Self>;
    /// The adjoint of gather: zeros of `size` along the axis, `self` added at `index`.
    fn scatter_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        index: &[usize],
        size: usize,
    ) -> Result<Self>;

    /// The fused LSTM cell: `self` the gates [b, 4h], c_prev [b, h]; returns `[h' | c']`.
    fn lstm_cell_forward(
        &self,
        lg: &Layout,
        c_prev: &Self,
        lc: &Layout,
        bh: [usize; 2],
    ) -> Result<Self>;
    /// Its backward: (d gates, d c_prev) from gates (`self`), c_prev, the output and its
    /// gradient.
    #[allow(clippy::too_many_arguments)]
    fn lstm_cell_backward(
        &self,
        lg: &Layout,
        c_prev: (&Self, &Layout),
        out: (&Self, &Layout),
        grad: (&Self, &Layout),
        bh: [usize; 2],
    ) -> Result<(Self, Self)>;

    /// One LSTM layer over a sequence: Y [T + 1, B, H] (h_1..h_T, then c_T) and the tape the
    /// backward needs (the gates [T·B, 4H] and the cell outputs [T·B, 2H]).
    fn lstm_sequence_forward(
        inputs: &SequenceInputs<Self>,
        shape: LstmSequenceShape,
    ) -> Result<(Self, SequenceTape<Self>)>;
    /// Backpropagation through time given dL/dY.
    fn lstm_sequence_backward(
        inputs: &SequenceInputs<Self>,
        shape: LstmSequenceShape,
        tape: SequenceTape<&Self>,
        dy: (&Self, &Layout),
        wants: SequenceWants,
    ) -> Result<SequenceGrads<Self>>;

    /// The LSTM swept over a grid (`plan`): h [B, R, C, H] from the input-to-state gates
    /// `self` [B, R, C, 4H] and the state-to-state weights w [K H, 4H], with the tape.
    fn grid_lstm_forward(
        &self,
        lp: &Layout,
        w: Operand<Self>,
        plan: &GridPlan,
    ) -> Result<(Self, GridTape<Self>)>;
    /// Its backward: (d pre, d w) given dL/dh.
    fn grid_lstm_backward(
        plan: &GridPlan,
        tape: GridTape<&Self>,
        w: Operand<Self>,
        dy: Operand<Self>,
    ) -> Result<(Self, Self)>;

    /// scale · Σ softplus(x) - x t over equally shaped logits (`self`) and targets: one
    /// element on this device.
    fn bce_with_logits_sum(&self, lx: &Layout, t: &Self, lt: &Layout, scale: f64) -> Result<Self>;

    /// Softmax cross-entropy along the middle axis of `split` against one class per position:
    /// the losses and the logsumexps, each [outer, inner] (`kernels::cpu::loss`).
    fn softmax_cross_entropy(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
    ) -> Result<(Self, Self)>;

    /// Its gradient with respect to the logits (`self`), given the logsumexps and each
    /// position's loss gradient (both contiguous [outer, inner]).
    fn softmax_cross_entropy_backward(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
        lse: &Self,
        grad: &Self,
    ) -> Result<Self>;

    /// Batch normalisation in training mode of x (`self`) viewed as [outer, axis, inner] =
    /// [samples, channels, positions], with per-channel weight and bias: y (contiguous, x's
    /// shape), the batch mean and the biased batch variance (each [channels])
    /// (`kernels::cpu::norm`).
    fn batch_norm(
        &self,
        layout: &Layout,
        split: AxisSplit,
        weight: Operand<Self>,
        bias: Operand<Self>,
        eps: f64,
    ) -> Result<(Self, Self, Self)>;

    /// Its gradients (dx, dweight, dbias) given dy and the forward's mean and variance
    /// (contiguous [channels]).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        layout: &Layout,
        split: AxisSplit,
        dy: Operand<Self>,
        weight: Operand<Self>,
        mean: &Self,
        var: &Self,
        eps: f64,
    ) -> Result<(Self, Self, Self)>;

    /// One SGD step on a whole, contiguous parameter (`self`) given its gradient (read through
    /// its layout) and its state buffers (as long as the parameter).
    fn sgd_step(
        &mut self,
        grad: (&Self, &Layout),
        momentum: Option<&mut Self>,
        step: &SgdStep,
    ) -> Result<()>;
    fn adam_step(
        &mut self,
        grad: (&Self, &Layout),
        m: &mut Self,
        v: &mut Self,
        step: &AdamStep,
    ) -> Result<()>;
    fn rmsprop_step(
        &mut self,
        grad: (&Self, &Layout),
        square_avg: &mut Self,
        momentum: Option<&mut Self>,
        step: &RmspropStep,
    ) -> Result<()>;
}

/// A storage and the layout it is read through.
pub(crate) type Operand<'a, S> = (&'a S, &'a Layout);

/// The operands of an LSTM layer over a sequence: x as the matrix [T·B, I], `w_ih` [4H, I],
/// `w_hh` [4H, H], the biases (b_ih, b_hh) [4H] and the initial state (h_0, c_0) [B, H].
pub(crate) struct SequenceInputs<'a, S> {
    pub x: Operand<'a, S>,
    pub w_ih: Operand<'a, S>,
    pub w_hh: Operand<'a, S>,
    pub bias: Option<(Operand<'a, S>, Operand<'a, S>)>,
    pub state: Option<(Operand<'a, S>, Operand<'a, S>)>,
}

impl<'a, S> SequenceInputs<'a, S> {
    /// The same operands seen as another storage type, or `None` when `f` refuses one (an
    /// operand on another device).
    fn try_map<U>(&self, f: impl Fn(&'a S) -> Option<&'a U>) -> Option<SequenceInputs<'a, U>> {
        let op = |(s, l): Operand<'a, S>| f(s).map(|u| (u, l));
        let pair = |p: Option<(Operand<'a, S>, Operand<'a, S>)>| match p {
            None => Some(None),
            Some((a, b)) => Some(Some((op(a)?, op(b)?))),
        };
        Some(SequenceInputs {
            x: op(self.x)?,
            w_ih: op(self.w_ih)?,
            w_hh: op(self.w_hh)?,
            bias: pair(self.bias)?,
            state: pair(self.state)?,
        })
    }
}

/// What an LSTM sequence's forward keeps: the gates [T·B, 4H] and cell outputs [T·B, 2H].
#[derive(Clone, Debug)]
pub(crate) struct SequenceTape<S> {
    pub gates: S,
    pub hc: S,
}

/// What a grid sweep's forward keeps, in the plan's slot order: the gates [P, 4H], the taps'
/// states [P, K H], the previous cells [P, H] and the cell outputs [P, 2H].
#[derive(Clone, Debug)]
pub(crate) struct GridTape<S> {
    pub gates: S,
    pub taps: S,
    pub c_prev: S,
    pub out: S,
}

/// An LSTM sequence's gradients: those asked for, and c_0's always.
pub(crate) struct SequenceGrads<S> {
    pub x: Option<S>,
    pub w_ih: Option<S>,
    pub w_hh: Option<S>,
    pub bias: Option<S>,
    pub h0: Option<S>,
    pub c0: S,
}

impl<S> SequenceGrads<S> {
    fn map<U>(self, f: impl Fn(S) -> U) -> SequenceGrads<U> {
        SequenceGrads {
            x: self.x.map(&f),
            w_ih: self.w_ih.map(&f),
            w_hh: self.w_hh.map(&f),
            bias: self.bias.map(&f),
            h0: self.h0.map(&f),
            c0: f(self.c0),
        }
    }
}

fn cpu_arm(s: &Storage) -> Option<&CpuStorage> {
    match s {
        Storage::Cpu(c) => Some(c),
        Storage::Cuda(_) => None,
    }
}

fn cuda_arm(s: &Storage) -> Option<&CudaStorage> {
    match s {
        Storage::Cuda(c) => Some(c),
        Storage::Cpu(_) => None,
    }
}

/// An optimizer state buffer of a parameter on a CUDA device, which must be there too.
fn cuda_state<'a>(op: &'static str, s: &'a mut Storage) -> Result<&'a mut CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::invalid(
            op,
            "the optimizer state is on another device than its parameter",
        )),
    }
}

/// An optimizer state buffer of a parameter on the CPU, which must be on the CPU too.
fn cpu_state<'a>(op: &'static str, s: &'a mut Storage) -> Result<&'a mut CpuStorage> {
    match s {
        Storage::Cpu(c) => Ok(c),
        Storage::Cuda(_) => Err(Error::invalid(
            op,
            "the optimizer state is on another device than its parameter",
        )),
    }
}

/// A tensor's elements, on one device. Views (reshape, permute, narrow, expand) share one
/// storage and differ only in their layout.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

/// A storage as tensors hold it: shared by every view of it, its host bytes counted in the
/// host-memory budget ([`crate::memory`]) while any of them lives.
#[derive(Debug)]
pub(crate) struct Held {
    storage: Storage,
    charge: Charge,
}

impl Held {
    pub fn new(storage: Storage) -> Arc<Held> {
        let charge = Charge::new(storage.host_bytes());
        Arc::new(Held { storage, charge })
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Runs `f` on the storage in place, its charge following what it holds afterwards.
    pub fn update(&mut self, f: impl FnOnce(&mut Storage) -> Result<()>) -> Result<()> {
        let result = f(&mut self.storage);
        self.charge = Charge::new(self.storage.host_bytes());
        result
    }
}

impl std::ops::Deref for Held {
    type Target = Storage;
    fn deref(&self) -> &Storage {
        &self.storage
    }
}

/// A copy is charged as the storage it copies (`Arc::make_mut` when a view still shares it).
impl Clone for Held {
    fn clone(&self) -> Held {
        Held {
            storage: self.storage.clone(),
            charge: Charge::new(self.storage.host_bytes()),
        }
    }
}

/// The shapes of a kernel's operands, for the profiler's span.
fn shapes(layouts: &[&Layout]) -> Vec<Vec<usize>> {
    layouts.iter().map(|l| l.shape.clone()).collect()
}

/// The bytes of a kernel's output, for the profiler's span (0 when it failed).
fn storage_bytes(made: &Result<Storage>) -> usize {
    made.as_ref().map_or(0, Storage::bytes)
}

/// [`storage_bytes`] of a kernel that makes two storages.
fn pair_bytes(made: &Result<(Storage, Storage)>) -> usize {
    made.as_ref().map_or(0, |(a, b)| a.bytes() + b.bytes())
}

/// [`storage_bytes`] of a kernel that makes three storages.
fn triple_bytes(made: &Result<(Storage, Storage, Storage)>) -> usize {
    made.as_ref()
        .map_or(0, |(a, b, c)| a.bytes() + b.bytes() + c.bytes())
}

impl SequenceGrads<Storage> {
    /// The bytes of every gradient made.
    fn bytes(&self) -> usize {
        [&self.x, &self.w_ih, &self.w_hh, &self.bias, &self.h0]
            .into_iter()
            .flatten()
            .map(Storage::bytes)
            .sum::<usize>()
            + self.c0.bytes()
    }
}

/// The product of `dims`, saturating: a size too large to count is refused like any other.
fn elements(dims: &[usize]) -> usize {
    dims.iter().fold(1, |n: usize, &d| n.saturating_mul(d))
}

/// bf16 is storage for matmul and the convolutions (and the copies between dtypes and
/// devices): every other op refuses it here, naming itself, before any device's arm sees it.
fn full_precision(op: &'static str, s: &Storage) -> Result<()> {
    if s.dtype() == DType::BF16 {
        return Err(Error::dtype(
            op,
            "bf16 tensors are for matmul and the convolutions; cast to f32 (to_dtype) first",
        ));
    }
    Ok(())
}

/// The error for operands on different devices.
fn devices_differ(op: &'static str, a: Device, b: Device) -> Error {
    Error::invalid(
        op,
        format!("operands are on different devices ({a} and {b}); move one with to_device"),
    )
}

impl Storage {
    /// The bytes this storage holds in host memory (none for a CUDA device's).
    fn host_bytes(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len() * s.dtype().size_in_bytes(),
            Storage::Cuda(_) => 0,
        }
    }

    /// The size of its elements in bytes, wherever they live.
    fn bytes(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Cuda(s) => s.len(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(s) => s.device(),
            Storage::Cuda(s) => s.device(),
        }
    }

    /// The one host-side path with no device dispatch: a whole buffer updated in place by a
    /// closure over its elements (`Tensor::update_data`: initialisers, weight loading). On a
    /// CUDA device, through a host copy.
    pub fn update_on_host<T: Element>(&mut self, f: impl FnOnce(&mut [T])) -> Result<()> {
        match self {
            Storage::Cpu(s) => {
                f(s.as_mut_slice::<T>());
                Ok(())
            }
            Storage::Cuda(s) => {
                let whole = Layout::contiguous(&[s.len()]);
                let mut host = s.download(&whole)?;
                f(host.as_mut_slice::<T>());
                *s = CudaStorage::upload(&host, &whole, s.device())?;
                Ok(())
            }
        }
    }

    /// Checks with the host-memory budget ([`crate::memory`]) that `op` may make an output of
    /// `elements` elements of this storage's dtype, when it makes it on the host (where this
    /// operand is). Called before the kernel allocates; outputs no larger than an operand
    /// (reductions, the argmax, the LSTM cell's) are not checked.
    fn admit_output(&self, op: &'static str, elements: usize) -> Result<()> {
        match self {
            Storage::Cpu(s) => memory::admit(op, elements, s.dtype()),
            Storage::Cuda(_) => Ok(()),
        }
    }

    /// Zeros (or `value`) of `dtype`, `len` long, on `device`.
    pub fn filled(dtype: DType, len: usize, value: f64, device: Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::filled(dtype, len, value))),
            Device::Cuda(_) | Device::EmulatedCuda => {
                CudaStorage::filled(dtype, len, value, device).map(Storage::Cuda)
            }
        }
    }

    /// f64 values as a CPU storage of `dtype`.
    pub fn from_f64s(data: Vec<f64>, dtype: DType) -> Storage {
        Storage::Cpu(CpuStorage::from_f64s(data, dtype))
    }

    /// Host data as a CPU storage.
    pub fn from_vec<T: Element>(data: Vec<T>) -> Storage {
        Storage::Cpu(T::into_storage(data))
    }

    /// This storage's elements (through `layout`) on `device`, contiguous.
    pub fn to_device(&self, layout: &Layout, device: Device) -> Result<Storage> {
        profiler::kernel(
            "to_device",
            || shapes(&[layout]),
            storage_bytes,
            || {
                if device == Device::Cpu {
                    memory::admit("to_device", layout.numel(), self.dtype())?;
                }
                match (self, device) {
                    (Storage::Cpu(s), Device::Cpu) => s.copy(layout).map(Storage::Cpu),
                    (Storage::Cpu(s), Device::Cuda(_) | Device::EmulatedCuda) => {
                        CudaStorage::upload(s, layout, device).map(Storage::Cuda)
                    }
                    (Storage::Cuda(s), Device::Cpu) => s.download(layout).map(Storage::Cpu),
                    (Storage::Cuda(s), _) if s.device() == device => {
                        s.copy(layout).map(Storage::Cuda)
                    }
                    // between two CUDA devices, through the host
                    (Storage::Cuda(s), _) => {
                        let host = s.download(layout)?;
                        let contiguous = Layout::contiguous(&layout.shape);
                        CudaStorage::upload(&host, &contiguous, device).map(Storage::Cuda)
                    }
                }
            },
        )
    }

    pub fn to_host<T: Element>(&self, layout: &Layout) -> Vec<T> {
        match self {
            Storage::Cpu(s) => s.to_host(layout),
            Storage::Cuda(s) => s.to_host(layout),
        }
    }

    pub fn copy(&self, layout: &Layout) -> Result<Storage> {
        profiler::kernel(
            "copy",
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output("copy", layout.numel())?;
                match self {
                    Storage::Cpu(s) => s.copy(layout).map(Storage::Cpu),
                    Storage::Cuda(s) => s.copy(layout).map(Storage::Cuda),
                }
            },
        )
    }

    pub fn cast(&self, layout: &Layout, dtype: DType) -> Result<Storage> {
        profiler::kernel(
            "cast",
            || shapes(&[layout]),
            storage_bytes,
            || {
                if let Storage::Cpu(_) = self {
                    memory::admit("to_dtype", layout.numel(), dtype)?;
                }
                match self {
                    Storage::Cpu(s) => s.cast(layout, dtype).map(Storage::Cpu),
                    Storage::Cuda(s) => s.cast(layout, dtype).map(Storage::Cuda),
                }
            },
        )
    }

    /// `parts` (all on one device) joined along `axis`.
    pub fn concat(parts: &[(&Storage, &Layout)], axis: usize, shape: &[usize]) -> Result<Storage> {
        profiler::kernel(
            "concat",
            || parts.iter().map(|(_, l)| l.shape.clone()).collect(),
            storage_bytes,
            || {
                let Some(((first, _), rest)) = parts.split_first() else {
                    return Err(Error::invalid("concat", "nothing to join"));
                };
                full_precision("concat", first)?;
                if let Some((other, _)) = rest.iter().find(|(s, _)| s.device() != first.device()) {
                    return Err(devices_differ("concat", first.device(), other.device()));
                }
                first.admit_output("concat", elements(shape))?;
                match first {
                    Storage::Cpu(_) => {
                        let cpu: Option<Vec<_>> = parts
                            .iter()
                            .map(|(s, l)| cpu_arm(s).map(|c| (c, *l)))
                            .collect();
                        let cpu =
                            cpu.ok_or_else(|| Error::invalid("concat", "operands on two devices"))?;
                        CpuStorage::concat(&cpu, axis, shape).map(Storage::Cpu)
                    }
                    Storage::Cuda(_) => {
                        let cuda: Option<Vec<_>> = parts
                            .iter()
                            .map(|(s, l)| cuda_arm(s).map(|c| (c, *l)))
                            .collect();
                        let cuda = cuda
                            .ok_or_else(|| Error::invalid("concat", "operands on two devices"))?;
                        CudaStorage::concat(&cuda, axis, shape).map(Storage::Cuda)
                    }
                }
            },
        )
    }

    pub fn unary(&self, layout: &Layout, kind: UnaryKind) -> Result<Storage> {
        full_precision(kind.name(), self)?;
        profiler::kernel(
            kind.name(),
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output(kind.name(), layout.numel())?;
                match self {
                    Storage::Cpu(s) => s.unary(layout, kind).map(Storage::Cpu),
                    Storage::Cuda(s) => s.unary(layout, kind).map(Storage::Cuda),
                }
            },
        )
    }

    pub fn binary(
        &self,
        la: &Layout,
        rhs: &Storage,
        lb: &Layout,
        kind: BinaryKind,
    ) -> Result<Storage> {
        full_precision(kind.name(), self)?;
        profiler::kernel(
            kind.name(),
            || shapes(&[la, lb]),
            storage_bytes,
            || {
                // both layouts are expanded to the output's shape
                self.admit_output(kind.name(), la.numel())?;
                match (self, rhs) {
                    (Storage::Cpu(a), Storage::Cpu(b)) => {
                        a.binary(la, b, lb, kind).map(Storage::Cpu)
                    }
                    (Storage::Cuda(a), Storage::Cuda(b)) => {
                        a.binary(la, b, lb, kind).map(Storage::Cuda)
                    }
                    _ => Err(devices_differ(kind.name(), self.device(), rhs.device())),
                }
            },
        )
    }

    pub fn select(
        &self,
        lm: &Layout,
        a: &Storage,
        la: &Layout,
        b: &Storage,
        lb: &Layout,
    ) -> Result<Storage> {
        full_precision("where", self)?;
        profiler::kernel(
            "where",
            || shapes(&[lm, la, lb]),
            storage_bytes,
            || {
                self.admit_output("where", lm.numel())?;
                match (self, a, b) {
                    (Storage::Cpu(m), Storage::Cpu(a), Storage::Cpu(b)) => {
                        m.select(lm, a, la, b, lb).map(Storage::Cpu)
                    }
                    (Storage::Cuda(m), Storage::Cuda(a), Storage::Cuda(b)) => {
                        m.select(lm, a, la, b, lb).map(Storage::Cuda)
                    }
                    _ => Err(devices_differ("where", a.device(), b.device())),
                }
            },
        )
    }

    pub fn reduce(&self, layout: &Layout, axes: &[usize], max: bool) -> Result<Storage> {
        full_precision(if max { "max" } else { "sum" }, self)?;
        profiler::kernel(
            if max { "max" } else { "sum" },
            || shapes(&[layout]),
            storage_bytes,
            || match self {
                Storage::Cpu(s) => s.reduce(layout, axes, max).map(Storage::Cpu),
                Storage::Cuda(s) => s.reduce(layout, axes, max).map(Storage::Cuda),
            },
        )
    }

    pub fn softmax(&self, layout: &Layout, split: AxisSplit, log: bool) -> Result<Storage> {
        full_precision(if log { "log_softmax" } else { "softmax" }, self)?;
        profiler::kernel(
            if log { "log_softmax" } else { "softmax" },
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output("softmax", layout.numel())?;
                match self {
                    Storage::Cpu(s) => s.softmax(layout, split, log).map(Storage::Cpu),
                    Storage::Cuda(s) => s.softmax(layout, split, log).map(Storage::Cuda),
                }
            },
        )
    }

    pub fn matmul(
        &self,
        la: &Layout,
        rhs: &Storage,
        lb: &Layout,
        batch: &[usize],
        mkn: [usize; 3],
    ) -> Result<Storage> {
        profiler::kernel(
            "matmul",
            || shapes(&[la, lb]),
            storage_bytes,
            || {
                let [m, _, n] = mkn;
                let products = elements(batch);
                self.admit_output("matmul", elements(&[products, m, n]))?;
                match (self, rhs) {
                    (Storage::Cpu(a), Storage::Cpu(b)) => {
                        a.matmul(la, b, lb, batch, mkn).map(Storage::Cpu)
                    }
                    (Storage::Cuda(a), Storage::Cuda(b)) => {
                        a.matmul(la, b, lb, batch, mkn).map(Storage::Cuda)
                    }
                    _ => Err(devices_differ("matmul", self.device(), rhs.device())),
                }
            },
        )
    }

    pub fn conv_forward(
        &self,
        lx: &Layout,
        w: &Storage,
        lw: &Layout,
        g: &ConvGeometry,
    ) -> Result<Storage> {
        profiler::kernel(
            "conv2d",
            || shapes(&[lx, lw]),
            storage_bytes,
            || {
                self.admit_output("conv2d", elements(&[g.n, g.c_out, g.ho, g.wo]))?;
                match (self, w) {
                    (Storage::Cpu(x), Storage::Cpu(w)) => {
                        x.conv_forward(lx, w, lw, g).map(Storage::Cpu)
                    }
                    (Storage::Cuda(x), Storage::Cuda(w)) => {
                        x.conv_forward(lx, w, lw, g).map(Storage::Cuda)
                    }
                    _ => Err(devices_differ("conv2d", self.device(), w.device())),
                }
            },
        )
    }

    pub fn conv_input_grad(
        &self,
        ldy: &Layout,
        w: &Storage,
        lw: &Layout,
        g: &ConvGeometry,
    ) -> Result<Storage> {
        profiler::kernel(
            "conv2d_input_grad",
            || shapes(&[ldy, lw]),
            storage_bytes,
            || {
                self.admit_output("conv_transpose2d", elements(&[g.n, g.c_in, g.h, g.w]))?;
                match (self, w) {
                    (Storage::Cpu(dy), Storage::Cpu(w)) => {
                        dy.conv_input_grad(ldy, w, lw, g).map(Storage::Cpu)
                    }
                    (Storage::Cuda(dy), Storage::Cuda(w)) => {
                        dy.conv_input_grad(ldy, w, lw, g).map(Storage::Cuda)
                    }
                    _ => Err(devices_differ(
                        "conv_transpose2d",
                        self.device(),
                        w.device(),
                    )),
                }
            },
        )
    }

    pub fn conv_weight_grad(
        &self,
        lx: &Layout,
        dy: &Storage,
        ldy: &Layout,
        g: &ConvGeometry,
    ) -> Result<Storage> {
        profiler::kernel(
            "conv2d_weight_grad",
            || shapes(&[lx, ldy]),
            storage_bytes,
            || {
                let weights = elements(&[g.c_out, g.cin_per_group(), g.kh, g.kw]);
                self.admit_output("conv2d_weight_grad", weights)?;
                match (self, dy) {
                    (Storage::Cpu(x), Storage::Cpu(dy)) => {
                        x.conv_weight_grad(lx, dy, ldy, g).map(Storage::Cpu)
                    }
                    (Storage::Cuda(x), Storage::Cuda(dy)) => {
                        x.conv_weight_grad(lx, dy, ldy, g).map(Storage::Cuda)
                    }
                    _ => Err(devices_differ(
                        "conv2d_weight_grad",
                        self.device(),
                        dy.device(),
                    )),
                }
            },
        )
    }

    pub fn max_pool2d_argmax(
        &self,
        layout: &Layout,
        planes: usize,
        rows: &WindowAxis,
        cols: &WindowAxis,
    ) -> Result<Vec<usize>> {
        full_precision("max_pool2d", self)?;
        profiler::kernel(
            "max_pool2d",
            || shapes(&[layout]),
            |r: &Result<Vec<usize>>| {
                r.as_ref()
                    .map_or(0, |v| std::mem::size_of_val(v.as_slice()))
            },
            || match self {
                Storage::Cpu(s) => s.max_pool2d_argmax(layout, planes, rows, cols),
                Storage::Cuda(s) => s.max_pool2d_argmax(layout, planes, rows, cols),
            },
        )
    }

    pub fn index_select(
        &self,
        layout: &Layout,
        split: AxisSplit,
        indices: &[usize],
    ) -> Result<Storage> {
        full_precision("index_select", self)?;
        profiler::kernel(
            "index_select",
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output(
                    "index_select",
                    elements(&[split.outer, indices.len(), split.inner]),
                )?;
                match self {
                    Storage::Cpu(s) => s.index_select(layout, split, indices).map(Storage::Cpu),
                    Storage::Cuda(s) => s.index_select(layout, split, indices).map(Storage::Cuda),
                }
            },
        )
    }

    pub fn index_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        indices: &[usize],
        size: usize,
    ) -> Result<Storage> {
        full_precision("index_add", self)?;
        profiler::kernel(
            "index_add",
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output("index_add", elements(&[split.outer, size, split.inner]))?;
                match self {
                    Storage::Cpu(s) => s.index_add(layout, split, indices, size).map(Storage::Cpu),
                    Storage::Cuda(s) => {
                        s.index_add(layout, split, indices, size).map(Storage::Cuda)
                    }
                }
            },
        )
    }

    pub fn gather(
        &self,
        layout: &Layout,
        split: AxisSplit,
        index: &[usize],
        m: usize,
    ) -> Result<Storage> {
        full_precision("gather", self)?;
        profiler::kernel(
            "gather",
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output("gather", elements(&[split.outer, m, split.inner]))?;
                match self {
                    Storage::Cpu(s) => s.gather(layout, split, index, m).map(Storage::Cpu),
                    Storage::Cuda(s) => s.gather(layout, split, index, m).map(Storage::Cuda),
                }
            },
        )
    }

    pub fn scatter_add(
        &self,
        layout: &Layout,
        split: AxisSplit,
        index: &[usize],
        size: usize,
    ) -> Result<Storage> {
        full_precision("scatter_add", self)?;
        profiler::kernel(
            "scatter_add",
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output("scatter_add", elements(&[split.outer, size, split.inner]))?;
                match self {
                    Storage::Cpu(s) => s.scatter_add(layout, split, index, size).map(Storage::Cpu),
                    Storage::Cuda(s) => {
                        s.scatter_add(layout, split, index, size).map(Storage::Cuda)
                    }
                }
            },
        )
    }

    pub fn lstm_cell_forward(
        &self,
        lg: &Layout,
        c_prev: &Storage,
        lc: &Layout,
        bh: [usize; 2],
    ) -> Result<Storage> {
        full_precision("lstm_cell", self)?;
        profiler::kernel(
            "lstm_cell",
            || shapes(&[lg, lc]),
            storage_bytes,
            || match (self, c_prev) {
                (Storage::Cpu(g), Storage::Cpu(c)) => {
                    g.lstm_cell_forward(lg, c, lc, bh).map(Storage::Cpu)
                }
                (Storage::Cuda(g), Storage::Cuda(c)) => {
                    g.lstm_cell_forward(lg, c, lc, bh).map(Storage::Cuda)
                }
                _ => Err(devices_differ("lstm_cell", self.device(), c_prev.device())),
            },
        )
    }

    pub fn lstm_cell_backward(
        &self,
        lg: &Layout,
        c_prev: (&Storage, &Layout),
        out: (&Storage, &Layout),
        grad: (&Storage, &Layout),
        bh: [usize; 2],
    ) -> Result<(Storage, Storage)> {
        full_precision("lstm_cell backward", self)?;
        profiler::kernel(
            "lstm_cell_backward",
            || shapes(&[lg, c_prev.1, out.1, grad.1]),
            pair_bytes,
            || match (self, c_prev.0, out.0, grad.0) {
                (Storage::Cpu(g), Storage::Cpu(c), Storage::Cpu(o), Storage::Cpu(d)) => g
                    .lstm_cell_backward(lg, (c, c_prev.1), (o, out.1), (d, grad.1), bh)
                    .map(|(a, b)| (Storage::Cpu(a), Storage::Cpu(b))),
                (Storage::Cuda(g), Storage::Cuda(c), Storage::Cuda(o), Storage::Cuda(d)) => g
                    .lstm_cell_backward(lg, (c, c_prev.1), (o, out.1), (d, grad.1), bh)
                    .map(|(a, b)| (Storage::Cuda(a), Storage::Cuda(b))),
                _ => Err(devices_differ(
                    "lstm_cell_backward",
                    self.device(),
                    grad.0.device(),
                )),
            },
        )
    }

    pub fn lstm_sequence_forward(
        inputs: &SequenceInputs<Storage>,
        shape: LstmSequenceShape,
    ) -> Result<(Storage, SequenceTape<Storage>)> {
        full_precision("lstm", inputs.x.0)?;
        profiler::kernel(
            "lstm",
            || shapes(&[inputs.x.1, inputs.w_ih.1, inputs.w_hh.1]),
            |r: &Result<(Storage, SequenceTape<Storage>)>| {
                r.as_ref()
                    .map_or(0, |(y, t)| y.bytes() + t.gates.bytes() + t.hc.bytes())
            },
            || {
                let LstmSequenceShape {
                    steps,
                    batch,
                    hidden,
                    ..
                } = shape;
                // Y [T + 1, B, H] and the tape's gates [T·B, 4H] and [h | c] [T·B, 2H]
                let made = elements(&[steps + 1, batch, hidden])
                    .saturating_add(elements(&[steps, batch, 6, hidden]));
                inputs.x.0.admit_output("lstm", made)?;
                match inputs.try_map(cpu_arm) {
                    Some(cpu) => {
                        let (y, tape) = CpuStorage::lstm_sequence_forward(&cpu, shape)?;
                        let tape = SequenceTape {
                            gates: Storage::Cpu(tape.gates),
                            hc: Storage::Cpu(tape.hc),
                        };
                        Ok((Storage::Cpu(y), tape))
                    }
                    None => match inputs.try_map(cuda_arm) {
                        Some(cuda) => {
                            let (y, tape) = CudaStorage::lstm_sequence_forward(&cuda, shape)?;
                            let tape = SequenceTape {
                                gates: Storage::Cuda(tape.gates),
                                hc: Storage::Cuda(tape.hc),
                            };
                            Ok((Storage::Cuda(y), tape))
                        }
                        None => Err(Error::invalid(
                            "lstm",
                            "the LSTM's operands are on two devices",
                        )),
                    },
                }
            },
        )
    }

    pub fn lstm_sequence_backward(
        inputs: &SequenceInputs<Storage>,
        shape: LstmSequenceShape,
        tape: SequenceTape<&Storage>,
        (dy, ldy): (&Storage, &Layout),
        wants: SequenceWants,
    ) -> Result<SequenceGrads<Storage>> {
        full_precision("lstm backward", inputs.x.0)?;
        profiler::kernel(
            "lstm_backward",
            || shapes(&[inputs.x.1, inputs.w_ih.1, inputs.w_hh.1, ldy]),
            |r: &Result<SequenceGrads<Storage>>| r.as_ref().map_or(0, SequenceGrads::bytes),
            || match (inputs.try_map(cpu_arm), tape.gates, tape.hc, dy) {
                (Some(cpu), Storage::Cpu(gates), Storage::Cpu(hc), Storage::Cpu(dy)) => {
                    let tape = SequenceTape { gates, hc };
                    CpuStorage::lstm_sequence_backward(&cpu, shape, tape, (dy, ldy), wants)
                        .map(|g| g.map(Storage::Cpu))
                }
                (_, gates, hc, dy) => match (
                    inputs.try_map(cuda_arm),
                    cuda_arm(gates),
                    cuda_arm(hc),
                    cuda_arm(dy),
                ) {
                    (Some(cuda), Some(gates), Some(hc), Some(dy)) => {
                        let tape = SequenceTape { gates, hc };
                        CudaStorage::lstm_sequence_backward(&cuda, shape, tape, (dy, ldy), wants)
                            .map(|g| g.map(Storage::Cuda))
                    }
                    _ => Err(Error::invalid(
                        "lstm_backward",
                        "the LSTM's operands are on two devices",
                    )),
                },
            },
        )
    }

    pub fn grid_lstm_forward(
        &self,
        lp: &Layout,
        (w, lw): Operand<Storage>,
        plan: &GridPlan,
    ) -> Result<(Storage, GridTape<Storage>)> {
        full_precision("grid_lstm", self)?;
        profiler::kernel(
            "grid_lstm",
            || shapes(&[lp, lw]),
            |r: &Result<(Storage, GridTape<Storage>)>| {
                r.as_ref().map_or(0, |(y, t)| {
                    y.bytes() + t.gates.bytes() + t.taps.bytes() + t.c_prev.bytes() + t.out.bytes()
                })
            },
            || match (self, w) {
                (Storage::Cpu(pre), Storage::Cpu(w)) => {
                    let (y, t) = pre.grid_lstm_forward(lp, (w, lw), plan)?;
                    let tape = GridTape {
                        gates: Storage::Cpu(t.gates),
                        taps: Storage::Cpu(t.taps),
                        c_prev: Storage::Cpu(t.c_prev),
                        out: Storage::Cpu(t.out),
                    };
                    Ok((Storage::Cpu(y), tape))
                }
                (Storage::Cuda(pre), Storage::Cuda(w)) => {
                    let (y, t) = pre.grid_lstm_forward(lp, (w, lw), plan)?;
                    let tape = GridTape {
                        gates: Storage::Cuda(t.gates),
                        taps: Storage::Cuda(t.taps),
                        c_prev: Storage::Cuda(t.c_prev),
                        out: Storage::Cuda(t.out),
                    };
                    Ok((Storage::Cuda(y), tape))
                }
                _ => Err(devices_differ("grid_lstm", self.device(), w.device())),
            },
        )
    }

    pub fn grid_lstm_backward(
        plan: &GridPlan,
        tape: GridTape<&Storage>,
        (w, lw): Operand<Storage>,
        (dy, ldy): Operand<Storage>,
    ) -> Result<(Storage, Storage)> {
        full_precision("grid_lstm backward", w)?;
        profiler::kernel(
            "grid_lstm_backward",
            || shapes(&[lw, ldy]),
            pair_bytes,
            || {
                let cpu = (
                    cpu_arm(tape.gates),
                    cpu_arm(tape.taps),
                    cpu_arm(tape.c_prev),
                    cpu_arm(tape.out),
                    cpu_arm(w),
                    cpu_arm(dy),
                );
                let cuda = (
                    cuda_arm(tape.gates),
                    cuda_arm(tape.taps),
                    cuda_arm(tape.c_prev),
                    cuda_arm(tape.out),
                    cuda_arm(w),
                    cuda_arm(dy),
                );
                match (cpu, cuda) {
                    ((Some(gates), Some(taps), Some(c_prev), Some(out), Some(w), Some(dy)), _) => {
                        let tape = GridTape {
                            gates,
                            taps,
                            c_prev,
                            out,
                        };
                        CpuStorage::grid_lstm_backward(plan, tape, (w, lw), (dy, ldy))
                            .map(|(a, b)| (Storage::Cpu(a), Storage::Cpu(b)))
                    }
                    (_, (Some(gates), Some(taps), Some(c_prev), Some(out), Some(w), Some(dy))) => {
                        let tape = GridTape {
                            gates,
                            taps,
                            c_prev,
                            out,
                        };
                        CudaStorage::grid_lstm_backward(plan, tape, (w, lw), (dy, ldy))
                            .map(|(a, b)| (Storage::Cuda(a), Storage::Cuda(b)))
                    }
                    _ => Err(devices_differ(
                        "grid_lstm_backward",
                        w.device(),
                        dy.device(),
                    )),
                }
            },
        )
    }

    pub fn bce_with_logits_sum(
        &self,
        lx: &Layout,
        t: &Storage,
        lt: &Layout,
        scale: f64,
    ) -> Result<Storage> {
        full_precision("bce_with_logits", self)?;
        profiler::kernel(
            "bce_with_logits",
            || shapes(&[lx, lt]),
            storage_bytes,
            || match (self, t) {
                (Storage::Cpu(x), Storage::Cpu(t)) => {
                    x.bce_with_logits_sum(lx, t, lt, scale).map(Storage::Cpu)
                }
                (Storage::Cuda(x), Storage::Cuda(t)) => {
                    x.bce_with_logits_sum(lx, t, lt, scale).map(Storage::Cuda)
                }
                _ => Err(devices_differ("bce_with_logits", self.device(), t.device())),
            },
        )
    }

    pub fn softmax_cross_entropy(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
    ) -> Result<(Storage, Storage)> {
        full_precision("softmax_cross_entropy", self)?;
        profiler::kernel(
            "softmax_cross_entropy",
            || shapes(&[layout]),
            pair_bytes,
            || {
                self.admit_output("softmax_cross_entropy", 2 * split.outer * split.inner)?;
                match self {
                    Storage::Cpu(s) => s
                        .softmax_cross_entropy(layout, split, targets)
                        .map(|(a, b)| (Storage::Cpu(a), Storage::Cpu(b))),
                    Storage::Cuda(s) => s
                        .softmax_cross_entropy(layout, split, targets)
                        .map(|(a, b)| (Storage::Cuda(a), Storage::Cuda(b))),
                }
            },
        )
    }

    pub fn softmax_cross_entropy_backward(
        &self,
        layout: &Layout,
        split: AxisSplit,
        targets: &[usize],
        lse: &Storage,
        grad: &Storage,
    ) -> Result<Storage> {
        full_precision("softmax_cross_entropy backward", self)?;
        profiler::kernel(
            "softmax_cross_entropy_backward",
            || shapes(&[layout]),
            storage_bytes,
            || {
                self.admit_output("softmax_cross_entropy_backward", layout.numel())?;
                match (self, lse, grad) {
                    (Storage::Cpu(x), Storage::Cpu(l), Storage::Cpu(g)) => x
                        .softmax_cross_entropy_backward(layout, split, targets, l, g)
                        .map(Storage::Cpu),
                    (Storage::Cuda(x), Storage::Cuda(l), Storage::Cuda(g)) => x
                        .softmax_cross_entropy_backward(layout, split, targets, l, g)
                        .map(Storage::Cuda),
                    _ => Err(devices_differ(
                        "softmax_cross_entropy_backward",
                        self.device(),
                        grad.device(),
                    )),
                }
            },
        )
    }

    pub fn batch_norm(
        &self,
        layout: &Layout,
        split: AxisSplit,
        (weight, lw): (&Storage, &Layout),
        (bias, lb): (&Storage, &Layout),
        eps: f64,
    ) -> Result<(Storage, Storage, Storage)> {
        full_precision("batch_norm", self)?;
        profiler::kernel(
            "batch_norm",
            || shapes(&[layout, lw, lb]),
            triple_bytes,
            || {
                self.admit_output("batch_norm", layout.numel() + 2 * split.axis)?;
                match (self, weight, bias) {
                    (Storage::Cpu(x), Storage::Cpu(w), Storage::Cpu(b)) => x
                        .batch_norm(layout, split, (w, lw), (b, lb), eps)
                        .map(|(y, m, v)| (Storage::Cpu(y), Storage::Cpu(m), Storage::Cpu(v))),
                    (Storage::Cuda(x), Storage::Cuda(w), Storage::Cuda(b)) => x
                        .batch_norm(layout, split, (w, lw), (b, lb), eps)
                        .map(|(y, m, v)| (Storage::Cuda(y), Storage::Cuda(m), Storage::Cuda(v))),
                    _ => Err(devices_differ("batch_norm", self.device(), weight.device())),
                }
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_backward(
        &self,
        layout: &Layout,
        split: AxisSplit,
        (dy, ldy): (&Storage, &Layout),
        (weight, lw): (&Storage, &Layout),
        mean: &Storage,
        var: &Storage,
        eps: f64,
    ) -> Result<(Storage, Storage, Storage)> {
        full_precision("batch_norm backward", self)?;
        profiler::kernel(
            "batch_norm_backward",
            || shapes(&[layout, ldy, lw]),
            triple_bytes,
            || {
                self.admit_output("batch_norm_backward", layout.numel() + 2 * split.axis)?;
                match (self, dy, weight, mean, var) {
                    (
                        Storage::Cpu(x),
                        Storage::Cpu(g),
                        Storage::Cpu(w),
                        Storage::Cpu(m),
                        Storage::Cpu(v),
                    ) => x
                        .batch_norm_backward(layout, split, (g, ldy), (w, lw), m, v, eps)
                        .map(|(a, b, c)| (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(c))),
                    (
                        Storage::Cuda(x),
                        Storage::Cuda(g),
                        Storage::Cuda(w),
                        Storage::Cuda(m),
                        Storage::Cuda(v),
                    ) => x
                        .batch_norm_backward(layout, split, (g, ldy), (w, lw), m, v, eps)
                        .map(|(a, b, c)| (Storage::Cuda(a), Storage::Cuda(b), Storage::Cuda(c))),
                    _ => Err(devices_differ(
                        "batch_norm_backward",
                        self.device(),
                        dy.device(),
                    )),
                }
            },
        )
    }

    pub fn sgd_step(
        &mut self,
        (grad, lg): (&Storage, &Layout),
        momentum: Option<&mut Storage>,
        step: &SgdStep,
    ) -> Result<()> {
        full_precision("sgd", self)?;
        profiler::kernel(
            "sgd_step",
            || shapes(&[lg]),
            |_: &Result<()>| 0,
            || {
                let devices = (self.device(), grad.device());
                match (self, grad) {
                    (Storage::Cpu(p), Storage::Cpu(g)) => {
                        let momentum = momentum.map(|m| cpu_state("sgd", m)).transpose()?;
                        p.sgd_step((g, lg), momentum, step)
                    }
                    (Storage::Cuda(p), Storage::Cuda(g)) => {
                        let momentum = momentum.map(|m| cuda_state("sgd", m)).transpose()?;
                        p.sgd_step((g, lg), momentum, step)
                    }
                    _ => Err(devices_differ("sgd", devices.0, devices.1)),
                }
            },
        )
    }

    pub fn adam_step(
        &mut self,
        (grad, lg): (&Storage, &Layout),
        m: &mut Storage,
        v: &mut Storage,
        step: &AdamStep,
    ) -> Result<()> {
        full_precision("adam", self)?;
        profiler::kernel(
            "adam_step",
            || shapes(&[lg]),
            |_: &Result<()>| 0,
            || {
                let devices = (self.device(), grad.device());
                match (self, grad) {
                    (Storage::Cpu(p), Storage::Cpu(g)) => {
                        let (m, v) = (cpu_state("adam", m)?, cpu_state("adam", v)?);
                        p.adam_step((g, lg), m, v, step)
                    }
                    (Storage::Cuda(p), Storage::Cuda(g)) => {
                        let (m, v) = (cuda_state("adam", m)?, cuda_state("adam", v)?);
                        p.adam_step((g, lg), m, v, step)
                    }
                    _ => Err(devices_differ("adam", devices.0, devices.1)),
                }
            },
        )
    }

    pub fn rmsprop_step(
        &mut self,
        (grad, lg): (&Storage, &Layout),
        square_avg: &mut Storage,
        momentum: Option<&mut Storage>,
        step: &RmspropStep,
    ) -> Result<()> {
        full_precision("rmsprop", self)?;
        profiler::kernel(
            "rmsprop_step",
            || shapes(&[lg]),
            |_: &Result<()>| 0,
            || {
                let devices = (self.device(), grad.device());
                match (self, grad) {
                    (Storage::Cpu(p), Storage::Cpu(g)) => {
                        let square_avg = cpu_state("rmsprop", square_avg)?;
                        let momentum = momentum.map(|m| cpu_state("rmsprop", m)).transpose()?;
                        p.rmsprop_step((g, lg), square_avg, momentum, step)
                    }
                    (Storage::Cuda(p), Storage::Cuda(g)) => {
                        let square_avg = cuda_state("rmsprop", square_avg)?;
                        let momentum = momentum.map(|m| cuda_state("rmsprop", m)).transpose()?;
                        p.rmsprop_step((g, lg), square_avg, momentum, step)
                    }
                    _ => Err(devices_differ("rmsprop", devices.0, devices.1)),
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Tensor};

    #[test]
    fn moving_to_a_missing_gpu_is_a_clear_error_and_the_cpu_is_a_no_op() {
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]).unwrap();
        // no GPU on this machine, or not this many on a GPU machine
        let err = x.to_device(Device::Cuda(1 << 20)).unwrap_err().to_string();
        assert!(err.contains("cuda:1048576"), "{err}");
        let same = x.to_device(Device::Cpu).unwrap();
        assert_eq!(same.id(), x.id());
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
        assert_eq!(x.device(), Device::Cpu);
        let z = Tensor::zeros(&[2], DType::F64);
        assert_eq!(z.device(), Device::Cpu);
    }
}
