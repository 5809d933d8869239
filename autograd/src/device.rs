//! Where a tensor's storage lives. Model code names a device once; every op follows its inputs.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// The CUDA device with this ordinal, through our kernels (`kernels::cuda`).
    Cuda(usize),
    /// The emulated CUDA device: the same kernels and the same dispatch, compiled for and run
    /// on the host (`kernels::cuda::Gpu::emulated`), so the CUDA path runs on any machine.
    EmulatedCuda,
}

impl Device {
    /// True for the devices whose tensors live in a `CudaStorage`.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_) | Device::EmulatedCuda)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::EmulatedCuda => f.write_str("cuda-emulated"),
        }
    }
}
