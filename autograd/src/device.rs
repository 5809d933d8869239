//! Where a tensor's storage lives. Model code names a device once; every op follows its inputs.

use std::fmt;

/// Where a tensor's storage lives and its ops run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The host, through the CPU kernels (`kernels::cpu`).
    #[default]
    Cpu,
    /// The CUDA device with this ordinal, through our kernels (`kernels::cuda`).
    Cuda(usize),
    /// The emulated CUDA device: the same kernels and the same dispatch, compiled for and run
    /// on the host (`kernels::cuda::Gpu::emulated`), so the CUDA path runs on any machine.
    EmulatedCuda,
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

/// The device new tensors are made on (`Tensor::from_vec`, `zeros`, `full`, `scalar`,
/// `arange`, the random constructors), as PyTorch's `torch.set_default_device`: set once by a
/// program (genzoo's `--device`) so that the same model code builds its parameters, noise
/// and constants on that device. Tensors made by ops follow their inputs whatever it is.
/// Process-wide (the engine's work runs on a thread pool).
static DEFAULT_DEVICE: std::sync::RwLock<Device> = std::sync::RwLock::new(Device::Cpu);

/// Makes `device` the default for new tensors; returns the previous default.
pub fn set_default_device(device: Device) -> Device {
    let mut d = DEFAULT_DEVICE.write().unwrap_or_else(|p| p.into_inner());
    std::mem::replace(&mut *d, device)
}

/// The device new tensors are made on (the CPU unless a program said otherwise).
pub fn default_device() -> Device {
    *DEFAULT_DEVICE.read().unwrap_or_else(|p| p.into_inner())
}

/// What a CUDA device's caching allocator holds, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceMemory {
    /// In live tensors' blocks.
    pub current_bytes: usize,
    /// The most `current_bytes` has been.
    pub peak_bytes: usize,
    /// In freed blocks kept for reuse.
    pub cached_bytes: usize,
    /// Blocks obtained from the driver so far (flat once a training loop is warm).
    pub allocations: u64,
}

/// The memory of `device`'s allocator; `None` for the CPU or a GPU that cannot be opened.
pub fn device_memory(device: Device) -> Option<DeviceMemory> {
    let gpu = match device {
        Device::Cpu => return None,
        Device::Cuda(n) => kernels::cuda::Gpu::open(n).ok()?,
        Device::EmulatedCuda => kernels::cuda::Gpu::emulated(),
    };
    let s = gpu.memory_stats();
    Some(DeviceMemory {
        current_bytes: s.current_bytes,
        peak_bytes: s.peak_bytes,
        cached_bytes: s.cached_bytes,
        allocations: s.allocations,
    })
}
