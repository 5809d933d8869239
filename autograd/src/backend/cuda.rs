//! The CUDA arm. Present on every machine so that the storage and device types, and every
//! dispatch in `Storage`, already have it; it cannot be constructed yet: the CUDA backend
//! (device buffers through `kernels::cuda`, our NVRTC-compiled kernels) is a later step, and
//! until then moving a tensor to CUDA is an error. Each method below becomes its kernel's call.

use super::{
    BackendStorage, CpuStorage, GridTape, Operand, SequenceGrads, SequenceInputs, SequenceTape,
    SequenceWants,
};
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::Layout;
use kernels::desc::{AdamStep, GridPlan, LstmSequenceShape, RmspropStep, SgdStep};
use kernels::desc::{AxisSplit, BinaryKind, ConvGeometry, UnaryKind, WindowAxis};
use std::convert::Infallible;

/// Elements in CUDA device memory. Uninhabited for now (it holds an `Infallible`), so every
/// method is statically unreachable and the compiler proves no tensor is on CUDA.
#[derive(Clone, Debug)]
pub struct CudaStorage(Infallible);

fn not_built(what: &str, device: Device) -> Error {
    Error::invalid(
        "to_device",
        format!(
            "{what} {device}: the CUDA backend is not built yet (the kernels exist in \
             kernels::cuda, the engine does not reach them); use the CPU"
        ),
    )
}

impl CudaStorage {
    /// A value of type `!` in all but name: there is no `CudaStorage` to call this on.
    pub fn unreachable(&self) -> ! {
        match self.0 {}
    }

    pub fn filled(_dtype: DType, _len: usize, _value: f64, device: Device) -> Result<CudaStorage> {
        Err(not_built("cannot allocate on", device))
    }

    pub fn upload(_host: &CpuStorage, _layout: &Layout, device: Device) -> Result<CudaStorage> {
        Err(not_built("cannot move a tensor to", device))
    }
}

impl BackendStorage for CudaStorage {
    fn dtype(&self) -> DType {
        self.unreachable()
    }
    fn len(&self) -> usize {
        self.unreachable()
    }
    fn device(&self) -> Device {
        self.unreachable()
    }
    fn to_host<T: Element>(&self, _: &Layout) -> Vec<T> {
        self.unreachable()
    }
    fn copy(&self, _: &Layout) -> Result<Self> {
        self.unreachable()
    }
    fn cast(&self, _: &Layout, _: DType) -> Result<Self> {
        self.unreachable()
    }
    fn concat(parts: &[(&Self, &Layout)], _: usize, _: &[usize]) -> Result<Self> {
        match parts.first() {
            Some((s, _)) => s.unreachable(),
            None => Err(Error::invalid("concat", "nothing to join")),
        }
    }
    fn unary(&self, _: &Layout, _: UnaryKind) -> Result<Self> {
        self.unreachable()
    }
    fn binary(&self, _: &Layout, _: &Self, _: &Layout, _: BinaryKind) -> Result<Self> {
        self.unreachable()
    }
    fn select(&self, _: &Layout, _: &Self, _: &Layout, _: &Self, _: &Layout) -> Result<Self> {
        self.unreachable()
    }
    fn reduce(&self, _: &Layout, _: &[usize], _: bool) -> Result<Self> {
        self.unreachable()
    }
    fn softmax(&self, _: &Layout, _: AxisSplit, _: bool) -> Result<Self> {
        self.unreachable()
    }
    fn matmul(&self, _: &Layout, _: &Self, _: &Layout, _: &[usize], _: [usize; 3]) -> Result<Self> {
        self.unreachable()
    }
    fn conv_forward(&self, _: &Layout, _: &Self, _: &Layout, _: &ConvGeometry) -> Result<Self> {
        self.unreachable()
    }
    fn conv_input_grad(&self, _: &Layout, _: &Self, _: &Layout, _: &ConvGeometry) -> Result<Self> {
        self.unreachable()
    }
    fn conv_weight_grad(&self, _: &Layout, _: &Self, _: &Layout, _: &ConvGeometry) -> Result<Self> {
        self.unreachable()
    }
    fn max_pool2d_argmax(
        &self,
        _: &Layout,
        _: usize,
        _: &WindowAxis,
        _: &WindowAxis,
    ) -> Result<Vec<usize>> {
        self.unreachable()
    }
    fn index_select(&self, _: &Layout, _: AxisSplit, _: &[usize]) -> Result<Self> {
        self.unreachable()
    }
    fn index_add(&self, _: &Layout, _: AxisSplit, _: &[usize], _: usize) -> Result<Self> {
        self.unreachable()
    }
    fn gather(&self, _: &Layout, _: AxisSplit, _: &[usize], _: usize) -> Result<Self> {
        self.unreachable()
    }
    fn scatter_add(&self, _: &Layout, _: AxisSplit, _: &[usize], _: usize) -> Result<Self> {
        self.unreachable()
    }
    fn lstm_cell_forward(&self, _: &Layout, _: &Self, _: &Layout, _: [usize; 2]) -> Result<Self> {
        self.unreachable()
    }
    fn lstm_cell_backward(
        &self,
        _: &Layout,
        _: (&Self, &Layout),
        _: (&Self, &Layout),
        _: (&Self, &Layout),
        _: [usize; 2],
    ) -> Result<(Self, Self)> {
        self.unreachable()
    }
    fn lstm_sequence_forward(
        inputs: &SequenceInputs<Self>,
        _: LstmSequenceShape,
    ) -> Result<(Self, SequenceTape<Self>)> {
        inputs.x.0.unreachable()
    }
    fn lstm_sequence_backward(
        inputs: &SequenceInputs<Self>,
        _: LstmSequenceShape,
        _: SequenceTape<&Self>,
        _: (&Self, &Layout),
        _: SequenceWants,
    ) -> Result<SequenceGrads<Self>> {
        inputs.x.0.unreachable()
    }
    fn grid_lstm_forward(
        &self,
        _: &Layout,
        _: Operand<Self>,
        _: &GridPlan,
    ) -> Result<(Self, GridTape<Self>)> {
        self.unreachable()
    }
    fn grid_lstm_backward(
        _: &GridPlan,
        tape: GridTape<&Self>,
        _: Operand<Self>,
        _: Operand<Self>,
    ) -> Result<(Self, Self)> {
        tape.gates.unreachable()
    }
    fn bce_with_logits_sum(&self, _: &Layout, _: &Self, _: &Layout) -> Result<f64> {
        self.unreachable()
    }
    fn sgd_step(&mut self, _: (&Self, &Layout), _: Option<&mut Self>, _: &SgdStep) -> Result<()> {
        self.unreachable()
    }
    fn adam_step(
        &mut self,
        _: (&Self, &Layout),
        _: &mut Self,
        _: &mut Self,
        _: &AdamStep,
    ) -> Result<()> {
        self.unreachable()
    }
    fn rmsprop_step(
        &mut self,
        _: (&Self, &Layout),
        _: &mut Self,
        _: Option<&mut Self>,
        _: &RmspropStep,
    ) -> Result<()> {
        self.unreachable()
    }
}
