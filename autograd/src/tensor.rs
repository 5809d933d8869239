//! `Tensor`: a cheap-to-clone handle to (storage, layout, dtype, device) plus, when it was made by
//! a recorded op, that op and its inputs. Define-by-run: the graph is the web of these handles.

use crate::backend::{Held, Storage};
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::grad_mode::is_grad_enabled;
use crate::layout::Layout;
use crate::op::Op;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Identifies one tensor node of the graph (views get their own id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(usize);

impl TensorId {
    fn fresh() -> TensorId {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
    /// The id as a number (graph exports name nodes by it).
    pub fn as_usize(self) -> usize {
        self.0
    }
}

pub(crate) struct Inner {
    id: TensorId,
    /// Shared with every view of the same data. The optimizer swaps in updated data under the lock.
    storage: RwLock<Arc<Held>>,
    layout: Layout,
    dtype: DType,
    device: Device,
    requires_grad: AtomicBool,
    /// The op that made this tensor, when it was recorded; `None` for leaves.
    op: Option<Op>,
    /// The accumulated gradient of a leaf after `backward()`.
    grad: Mutex<Option<Tensor>>,
}

/// An n-dimensional array of f32 or f64 on a [`Device`], and a node of the graph.
///
/// A cheap-to-clone handle: clones are the same node (same [`TensorId`], same gradient). It
/// holds its storage (shared with its views), its [`Layout`], and, when a recorded op made it,
/// that [`Op`] with the op's inputs, so the graph is the web of these handles and lives as long
/// as the tensors that reach it.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor[{:?}, {}", self.shape(), self.dtype())?;
        if self.numel() <= 16 {
            write!(f, ", {:?}", self.to_vec_f64())?;
        }
        if let Some(op) = self.op() {
            write!(f, ", op={}", op.name())?;
        }
        write!(f, "]")
    }
}

impl Tensor {
    // ----- construction -------------------------------------------------------------------

    pub(crate) fn new_internal(storage: Arc<Held>, layout: Layout, op: Option<Op>) -> Tensor {
        let requires_grad = op.is_some();
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            dtype: storage.dtype(),
            device: storage.device(),
            storage: RwLock::new(storage),
            layout,
            requires_grad: AtomicBool::new(requires_grad),
            op,
            grad: Mutex::new(None),
        }))
    }

    /// A constant tensor over `storage` (optimizer state exported as tensors).
    /// A new tensor of host-made `storage` (contiguous over `shape`) on the default device
    /// ([`crate::default_device`]).
    pub(crate) fn try_made(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        let layout = Layout::contiguous(shape);
        let device = crate::device::default_device();
        let storage = if device == Device::Cpu {
            storage
        } else {
            storage.to_device(&layout, device)?
        };
        Ok(Tensor::new_internal(Held::new(storage), layout, None))
    }

    /// [`Tensor::try_made`] for the constructors that cannot fail: a failed copy to a CUDA
    /// device (its memory exhausted) ends the process with the reason.
    pub(crate) fn made(storage: Storage, shape: &[usize]) -> Tensor {
        Tensor::try_made(storage, shape).unwrap_or_else(|e| {
            panic!(
                "making a tensor on {}: {e}",
                crate::device::default_device()
            )
        })
    }

    pub(crate) fn from_storage(storage: Storage, layout: Layout) -> Tensor {
        Tensor::new_internal(Held::new(storage), layout, None)
    }

    /// A new contiguous tensor made by `op` from a storage a backend computed.
    pub(crate) fn from_op_result(storage: Storage, shape: &[usize], op: Op) -> Tensor {
        Tensor::from_op_storage(Held::new(storage), Layout::contiguous(shape), op)
    }

    pub(crate) fn from_op_storage(storage: Arc<Held>, layout: Layout, op: Op) -> Tensor {
        let op = if is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad()) {
            Some(op)
        } else {
            None
        };
        Tensor::new_internal(storage, layout, op)
    }

    /// A view sharing this tensor's storage with another layout.
    pub(crate) fn view_with(&self, layout: Layout, op: Op) -> Tensor {
        Tensor::from_op_storage(self.storage(), layout, op)
    }

    /// A tensor holding `data` in row-major order with the given shape.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} elements do not fill shape {shape:?} ({numel} elements)",
                    data.len()
                ),
            ));
        }
        Tensor::try_made(Storage::from_vec(data), shape)
    }

    /// [`Tensor::from_vec`] from a copy of `data`.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A rank-0 tensor.
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor::full(&[], value, dtype)
    }

    /// `value` everywhere, on the default device. Not checked against the host-memory budget
    /// ([`crate::memory`]), as it cannot fail: code that can fail uses [`Tensor::try_zeros`]
    /// or [`Tensor::full_on`].
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let device = crate::device::default_device();
        Tensor::filled(shape, value, dtype, device)
            .unwrap_or_else(|e| panic!("making a tensor on {device}: {e}"))
    }

    /// Zeros on the default device, checked against the host-memory budget: the constructor
    /// of parameters and other tensors whose size a user chooses.
    pub fn try_zeros(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full_on(shape, 0.0, dtype, crate::device::default_device())
    }

    /// Zeros on the default device; like [`Tensor::full`], not checked against the host-memory budget.
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 0.0, dtype)
    }

    /// `value` everywhere, made on `device` (no host copy on a CUDA device); on the CPU checked
    /// against the host-memory budget ([`crate::memory`]).
    pub fn full_on(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let n = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::OutOfMemory {
                op: "full",
                msg: format!("shape {shape:?} has more elements than can be counted"),
            })?;
        if device == Device::Cpu {
            crate::memory::admit("full", n, dtype)?;
        }
        Tensor::filled(shape, value, dtype, device)
    }

    /// `value` everywhere on `device`, unchecked.
    fn filled(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let n = shape.iter().product();
        Ok(Tensor::new_internal(
            Held::new(Storage::filled(dtype, n, value, device)?),
            Layout::contiguous(shape),
            None,
        ))
    }

    /// Ones on the default device; like [`Tensor::full`], not checked against the host-memory budget.
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 1.0, dtype)
    }

    /// Zeros of this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Tensor {
        self.full_like(0.0)
    }

    /// Ones of this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Tensor {
        self.full_like(1.0)
    }

    /// `value` in this tensor's shape, dtype and device. On a CUDA device whose memory is
    /// exhausted this ends the process with the reason (the many callers cannot fail).
    pub fn full_like(&self, value: f64) -> Tensor {
        Tensor::filled(self.shape(), value, self.dtype(), self.device())
            .unwrap_or_else(|e| panic!("making a constant on {}: {e}", self.device()))
    }

    /// 0, 1, ..., n-1.
    pub fn arange(n: usize, dtype: DType) -> Tensor {
        let storage = Storage::from_f64s((0..n).map(|i| i as f64).collect(), dtype);
        Tensor::made(storage, &[n])
    }

    // ----- inspection ---------------------------------------------------------------------

    /// This node's identity: clones share it; views and [`Tensor::detach`] get their own.
    pub fn id(&self) -> TensorId {
        self.0.id
    }
    /// The size of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }
    /// The step in storage elements between neighbours along each axis (0 on broadcast axes).
    pub fn strides(&self) -> &[usize] {
        &self.0.layout.strides
    }
    /// Shape, strides and offset: how this tensor reads its storage.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.0.layout.shape.len()
    }
    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// Where the storage lives.
    pub fn device(&self) -> Device {
        self.0.device
    }
    /// True when the elements lie in row-major order without gaps (the offset may be nonzero).
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    /// The size of `axis` (negative counts from the end).
    pub fn dim(&self, axis: isize) -> Result<usize> {
        let a = crate::layout::resolve_axis("dim", axis, self.rank())?;
        Ok(self.shape()[a])
    }
    /// The op that made this tensor, when it was recorded: `None` for leaves.
    pub fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }
    /// True when no recorded op made this tensor: a constant, a variable, or an op's result made
    /// with grad mode off or from inputs none of which requires grad.
    pub fn is_leaf(&self) -> bool {
        self.0.op.is_none()
    }
    /// True for a variable ([`Tensor::requires_grad_`]) and for every tensor a recorded op made.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Marks a leaf as a variable whose gradient `backward()` accumulates. Returns the same handle.
    pub fn requires_grad_(self, requires: bool) -> Result<Tensor> {
        if !self.is_leaf() {
            return Err(Error::grad(
                "requires_grad_",
                "only leaf tensors can change requires_grad; use detach() first",
            ));
        }
        self.0.requires_grad.store(requires, Ordering::Relaxed);
        Ok(self)
    }

    /// The gradient accumulated by `backward()` (leaves only).
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().map(|g| g.clone()).unwrap_or(None)
    }

    /// Forgets the gradient accumulated by `backward()`, so that the next backward starts afresh.
    pub fn zero_grad(&self) {
        if let Ok(mut g) = self.0.grad.lock() {
            *g = None;
        }
    }

    pub(crate) fn set_grad(&self, grad: Option<Tensor>) {
        if let Ok(mut g) = self.0.grad.lock() {
            *g = grad;
        }
    }

    /// The same data, cut from the graph: no op, no gradient.
    pub fn detach(&self) -> Tensor {
        Tensor::new_internal(self.storage(), self.0.layout.clone(), None)
    }

    // ----- data access --------------------------------------------------------------------

    pub(crate) fn storage(&self) -> Arc<Held> {
        // A poisoned lock only means another thread panicked mid-update; the Arc itself is intact.
        match self.0.storage.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The elements in row-major order, typed. Errors when `T` is not this tensor's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::dtype(
                "to_vec",
                format!("tensor is {}, asked for {}", self.dtype(), T::DTYPE),
            ));
        }
        Ok(self.storage().to_host::<T>(self.layout()))
    }

    /// The elements in row-major order as f64, whatever the dtype.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        let storage = self.storage();
        match self.dtype() {
            DType::F32 => storage
                .to_host::<f32>(self.layout())
                .into_iter()
                .map(f64::from)
                .collect(),
            DType::F64 => storage.to_host::<f64>(self.layout()),
            DType::BF16 => self.widened().into_iter().map(f64::from).collect(),
        }
    }

    /// A bf16 tensor's elements in f32 (exact), through a cast on its device.
    fn widened(&self) -> Vec<f32> {
        self.storage()
            .cast(self.layout(), DType::F32)
            .unwrap_or_else(|e| panic!("reading a bf16 tensor on {}: {e}", self.device()))
            .to_host::<f32>(&Layout::contiguous(self.shape()))
    }

    /// The elements in row-major order as f32, whatever the dtype (f64 rounded).
    pub fn to_vec_f32(&self) -> Vec<f32> {
        let storage = self.storage();
        match self.dtype() {
            DType::F32 => storage.to_host::<f32>(self.layout()),
            DType::F64 => storage
                .to_host::<f64>(self.layout())
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            DType::BF16 => self.widened(),
        }
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!(
                    "tensor of shape {:?} has {} elements, not 1",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        Ok(self.to_vec_f64()[0])
    }

    /// Replaces this leaf's data in place through `f` on the host (initialisers, weight
    /// loading; the optimizers update in place through the backends).
    /// The storage is copied first only if a live view still shares it.
    pub fn update_data<T: Element>(&self, f: impl FnOnce(&mut [T])) -> Result<()> {
        if T::DTYPE != self.dtype() {
            return Err(Error::dtype(
                "update_data",
                format!("tensor is {}, update is {}", self.dtype(), T::DTYPE),
            ));
        }
        self.update_storage("update_data", |s| s.update_on_host(f))
    }

    /// Runs `f` on this whole, contiguous tensor's storage, to update it in place (copied
    /// first only if a live view still shares it).
    pub(crate) fn update_storage(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Storage) -> Result<()>,
    ) -> Result<()> {
        if !self.is_contiguous()
            || self.0.layout.offset != 0
            || self.storage().len() != self.numel()
        {
            return Err(Error::invalid(
                op,
                "only a whole, contiguous tensor (a parameter) can be updated in place",
            ));
        }
        let mut guard = match self.0.storage.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if Arc::strong_count(&guard) > 1 {
            // a live view shares it: the update copies it first
            crate::memory::admit(op, guard.len(), guard.dtype())?;
        }
        Arc::make_mut(&mut guard).update(f)
    }

    /// Overwrites this leaf's data with `src`'s (same shape and dtype), e.g. when loading weights.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() || src.dtype() != self.dtype() {
            return Err(Error::shape(
                "copy_from",
                format!(
                    "source {:?} {} vs destination {:?} {}",
                    src.shape(),
                    src.dtype(),
                    self.shape(),
                    self.dtype()
                ),
            ));
        }
        let data = src.storage().to_device(src.layout(), self.device())?;
        self.update_storage("copy_from", |s| {
            *s = data;
            Ok(())
        })
    }

    /// This tensor on `device` (a no-op copy-free handle when it is already there), so model code
    /// names its device once and every op follows its inputs.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let storage = self.storage().to_device(self.layout(), device)?;
        Ok(Tensor::from_op_storage(
            Held::new(storage),
            Layout::contiguous(self.shape()),
            Op::ToDevice(self.clone()),
        ))
    }

    /// Same values in another dtype; differentiable (the gradient is cast back).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let storage = self.storage().cast(self.layout(), dtype)?;
        Ok(Tensor::from_op_storage(
            Held::new(storage),
            Layout::contiguous(self.shape()),
            Op::Cast(self.clone()),
        ))
    }

    pub(crate) fn same_dtype(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.dtype() != other.dtype() {
            return Err(Error::dtype(
                op,
                format!(
                    "operands are {} {:?} and {} {:?}",
                    self.dtype(),
                    self.shape(),
                    other.dtype(),
                    other.shape()
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for Inner {
    /// Long chains (a 1000-step RNN) would otherwise drop recursively, one stack frame per node.
    /// Unlink the inputs of nodes we hold the last reference to, iteratively.
    fn drop(&mut self) {
        let mut stack: Vec<Tensor> = match self.op.take() {
            Some(op) => op.into_inputs(),
            None => return,
        };
        while let Some(t) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t.0) {
                if let Some(op) = inner.op.take() {
                    stack.extend(op.into_inputs());
                }
            }
        }
    }
}

impl Tensor {
    /// Wraps a value computed outside the engine as the output of a user-defined op whose
    /// gradient rule is `backward`. The value's data is shared, its graph (if any) dropped.
    pub fn from_custom_op(
        value: &Tensor,
        inputs: Vec<Tensor>,
        backward: Arc<dyn crate::op::CustomBackward>,
    ) -> Tensor {
        Tensor::from_op_storage(
            value.storage(),
            value.layout().clone(),
            Op::Custom(inputs, backward),
        )
    }
}
