//! The CUDA path: our kernels, written in CUDA C++ in the `.cu` files beside this one, embedded
//! with `include_str!`, compiled with NVRTC at first use for the device's own compute
//! capability, and cached per device. No cuBLAS or cuDNN: those are what we measure against.
//!
//! cudarc loads the driver and NVRTC libraries at run time (`dynamic-loading`), so everything
//! builds on a machine without CUDA; creating a context there would panic inside cudarc, so
//! [`Gpu::open`] asks whether the libraries are present first and turns their absence into
//! [`GpuError::NoDriver`].
//!
//! Status: run on one GPU (an NVIDIA H200, 2026-12-04), where the parity tests in
//! `kernels/tests/cuda_parity.rs` passed and compute-sanitizer's memcheck found nothing; the
//! timings are in BENCHMARKS.md. The engine above does not call these kernels yet.

pub mod conv;
pub mod cubin;
pub mod elementwise;
pub mod lstm;
pub mod matmul;
pub mod optim;
pub mod reduce;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// Why the GPU path cannot run.
#[derive(Clone, Debug, PartialEq)]
pub enum GpuError {
    /// The CUDA driver library or NVRTC is not installed (no GPU on this machine).
    NoDriver,
    /// The driver refused: no device with this ordinal, out of memory, a failed launch, ...
    Driver(String),
    /// NVRTC could not compile one of our `.cu` files (its log).
    Compile { module: &'static str, log: String },
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoDriver => write!(f, "no CUDA driver or NVRTC library on this machine"),
            GpuError::Driver(e) => write!(f, "CUDA driver error: {e}"),
            GpuError::Compile { module, log } => {
                write!(f, "NVRTC could not compile {module}.cu: {log}")
            }
        }
    }
}

impl std::error::Error for GpuError {}

fn driver_error(e: impl fmt::Debug) -> GpuError {
    GpuError::Driver(format!("{e:?}"))
}

/// True when the CUDA driver and NVRTC libraries can be loaded (checked before any cudarc call
/// that would otherwise panic).
pub fn libraries_present() -> bool {
    // SAFETY: these only try to open the shared libraries.
    unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nvrtc::sys::is_culib_present() }
}

/// One CUDA device: its context, the stream every kernel of ours runs on, and the modules
/// compiled for it so far.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// "sm_90" and the like: what NVRTC compiles for.
    arch: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gpu({}, {})", self.name(), self.arch)
    }
}

impl Gpu {
    /// Device `ordinal`, opened once per process and shared.
    pub fn open(ordinal: usize) -> Result<Arc<Gpu>, GpuError> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
        if !libraries_present() {
            return Err(GpuError::NoDriver);
        }
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(gpu) = open.get(&ordinal) {
            return Ok(gpu.clone());
        }
        let count = CudaContext::device_count().map_err(driver_error)?;
        if ordinal >= count.max(0) as usize {
            return Err(GpuError::Driver(format!(
                "device {ordinal} asked for, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_error)?;
        let (major, minor) = ctx.compute_capability().map_err(driver_error)?;
        let gpu = Arc::new(Gpu {
            stream: ctx.default_stream(),
            ctx,
            arch: format!("sm_{major}{minor}"),
            modules: Mutex::new(HashMap::new()),
        });
        open.insert(ordinal, gpu.clone());
        Ok(gpu)
    }

    /// The device's name as the driver reports it.
    pub fn name(&self) -> String {
        self.ctx
            .name()
            .unwrap_or_else(|_| "unknown CUDA device".into())
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Kernel `function` of our module `module` (the source `source`), compiling the module
    /// with NVRTC on first use.
    pub(crate) fn function(
        &self,
        module: &'static str,
        source: &'static str,
        function: &str,
    ) -> Result<CudaFunction, GpuError> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = match modules.get(module) {
            Some(m) => m.clone(),
            None => {
                let options = cudarc::nvrtc::CompileOptions {
                    options: cubin::compile_options(&self.arch),
                    ..Default::default()
                };
                let ptx = cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|e| {
                    GpuError::Compile {
                        module,
                        log: format!("{e:?}"),
                    }
                })?;
                let m = self.ctx.load_module(ptx).map_err(driver_error)?;
                modules.insert(module, m.clone());
                m
            }
        };
        loaded.load_function(function).map_err(driver_error)
    }

    /// A copy of `host` in device memory.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, GpuError> {
        self.stream.memcpy_stod(host).map_err(driver_error)
    }

    /// A copy of `device` in host memory (waits for the stream's work before it).
    pub fn download<T: DeviceRepr + Default + Clone>(
        &self,
        device: &CudaSlice<T>,
    ) -> Result<Vec<T>, GpuError> {
        self.stream.memcpy_dtov(device).map_err(driver_error)
    }

    /// Waits for every kernel queued so far.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(driver_error)
    }
}

/// One thread per element in blocks of 256: the launch shape of the elementwise kernels.
pub(crate) fn grid_for(n: usize) -> cudarc::driver::LaunchConfig {
    const THREADS: u32 = 256;
    let blocks = n.div_ceil(THREADS as usize).clamp(1, (1 << 31) - 1) as u32;
    cudarc::driver::LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}
