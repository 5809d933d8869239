//! The CUDA path: our kernels, written in CUDA C++ in the `.cu` files beside this one, embedded
//! with `include_str!`, compiled with NVRTC at first use for the device's own compute
//! capability, and cached per device. No cuBLAS or cuDNN: those are what we measure against.
//!
//! Two devices run them. [`Gpu::open`] is a real GPU through the driver: cudarc loads the driver
//! and NVRTC libraries at run time (`dynamic-loading`), so everything builds on a machine
//! without CUDA; creating a context there would panic inside cudarc, so `open` asks whether the
//! libraries are present first and turns their absence into [`GpuError::NoDriver`].
//! [`Gpu::emulated`] is the emulated device: the same `.cu` sources compiled for the host by
//! `build.rs` over `emulation/prelude.h` (blocks of fibers, barriers, warp shuffles), launched
//! through the same wrappers with the same grids and blocks, host memory standing in for device
//! memory. It checks the kernels' logic and the Rust plumbing on any machine (CI has no GPU);
//! it says nothing of speed, launch limits, NVRTC or the driver.
//!
//! Status: run on one GPU (an NVIDIA H200, 2026-12-04), where the parity tests in
//! `kernels/tests/cuda_parity.rs` passed and compute-sanitizer's memcheck found nothing; the
//! timings are in BENCHMARKS.md. The engine above does not call these kernels yet.

pub mod conv;
pub mod cubin;
pub mod elementwise;
pub mod index;
pub mod lstm;
pub mod matmul;
pub mod optim;
pub mod reduce;

pub mod emulation;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, LaunchArgs,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
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

/// One CUDA device: a real GPU through the driver, or the emulated one.
pub struct Gpu {
    backend: Backend,
    /// "sm_90" and the like: what NVRTC compiles for ("emulated" for the emulated device).
    arch: String,
}

enum Backend {
    /// Its context, the stream every kernel of ours runs on, and the modules compiled so far.
    Driver {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    },
    Emulated,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gpu({}, {})", self.name(), self.arch)
    }
}

/// Elements in a device's memory: a driver allocation, or host memory on the emulated device.
pub struct GpuBuffer<T> {
    memory: Memory<T>,
}

enum Memory<T> {
    Driver(CudaSlice<T>),
    Emulated(Vec<T>),
}

impl<T> GpuBuffer<T> {
    pub fn len(&self) -> usize {
        match &self.memory {
            Memory::Driver(s) => s.len(),
            Memory::Emulated(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy in the same device's memory.
    pub fn try_clone(&self) -> Result<GpuBuffer<T>, GpuError>
    where
        T: DeviceRepr + Clone,
    {
        let memory = match &self.memory {
            Memory::Driver(s) => Memory::Driver(s.try_clone().map_err(driver_error)?),
            Memory::Emulated(v) => Memory::Emulated(v.clone()),
        };
        Ok(GpuBuffer { memory })
    }
}

impl<T> fmt::Debug for GpuBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.memory {
            Memory::Driver(_) => "device",
            Memory::Emulated(_) => "emulated",
        };
        write!(f, "GpuBuffer({} elements, {place})", self.len())
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
            arch: format!("sm_{major}{minor}"),
            backend: Backend::Driver {
                stream: ctx.default_stream(),
                ctx,
                modules: Mutex::new(HashMap::new()),
            },
        });
        open.insert(ordinal, gpu.clone());
        Ok(gpu)
    }

    /// The emulated device (one per process): present on every machine.
    pub fn emulated() -> Arc<Gpu> {
        static EMULATED: OnceLock<Arc<Gpu>> = OnceLock::new();
        EMULATED
            .get_or_init(|| {
                Arc::new(Gpu {
                    arch: "emulated".into(),
                    backend: Backend::Emulated,
                })
            })
            .clone()
    }

    pub fn is_emulated(&self) -> bool {
        matches!(self.backend, Backend::Emulated)
    }

    /// The device's name as the driver reports it.
    pub fn name(&self) -> String {
        match &self.backend {
            Backend::Driver { ctx, .. } => {
                ctx.name().unwrap_or_else(|_| "unknown CUDA device".into())
            }
            Backend::Emulated => "emulated CUDA device (host)".into(),
        }
    }

    /// Kernel `function` of our module `module` (the source `source`), compiling the module
    /// with NVRTC on first use (the emulated device has every kernel built in).
    pub(crate) fn kernel(
        &self,
        module: &'static str,
        source: &'static str,
        function: &str,
    ) -> Result<Kernel, GpuError> {
        let Backend::Driver { ctx, modules, .. } = &self.backend else {
            return emulation::kernel(function);
        };
        let mut modules = modules.lock().unwrap_or_else(|p| p.into_inner());
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
                let m = ctx.load_module(ptx).map_err(driver_error)?;
                modules.insert(module, m.clone());
                m
            }
        };
        let f = loaded.load_function(function).map_err(driver_error)?;
        Ok(Kernel(KernelOn::Driver(f)))
    }

    /// A launch of `kernel` on this device, its arguments pushed in the kernel's order.
    pub(crate) fn launch<'a>(&'a self, kernel: &'a Kernel) -> Launch<'a> {
        match (&self.backend, &kernel.0) {
            (Backend::Driver { stream, .. }, KernelOn::Driver(f)) => {
                Launch(LaunchOn::Driver(stream.launch_builder(f)))
            }
            (_, KernelOn::Emulated(name)) => {
                Launch(LaunchOn::Emulated(emulation::Launch::new(name)))
            }
            (Backend::Emulated, KernelOn::Driver(_)) => Launch(LaunchOn::Mismatch),
        }
    }

    /// A copy of `host` in device memory.
    pub fn upload<T: DeviceRepr + Clone>(&self, host: &[T]) -> Result<GpuBuffer<T>, GpuError> {
        let memory = match &self.backend {
            Backend::Driver { stream, .. } => {
                Memory::Driver(stream.memcpy_stod(host).map_err(driver_error)?)
            }
            Backend::Emulated => Memory::Emulated(host.to_vec()),
        };
        Ok(GpuBuffer { memory })
    }

    /// A copy of `buffer` in host memory (waits for the stream's work before it).
    pub fn download<T: DeviceRepr + Default + Clone>(
        &self,
        buffer: &GpuBuffer<T>,
    ) -> Result<Vec<T>, GpuError> {
        match (&self.backend, &buffer.memory) {
            (Backend::Driver { stream, .. }, Memory::Driver(s)) => {
                stream.memcpy_dtov(s).map_err(driver_error)
            }
            (Backend::Emulated, Memory::Emulated(v)) => Ok(v.clone()),
            _ => Err(other_device("download")),
        }
    }

    /// `len` elements whose values are unspecified until a kernel writes them (on the emulated
    /// device: all bits set, NaN for floats, so an element a kernel forgot shows).
    pub fn alloc<T: elementwise::GpuFloat>(&self, len: usize) -> Result<GpuBuffer<T>, GpuError> {
        let memory = match &self.backend {
            // SAFETY: the caller's kernels write every element before any is read back.
            Backend::Driver { stream, .. } => {
                Memory::Driver(unsafe { stream.alloc::<T>(len) }.map_err(driver_error)?)
            }
            Backend::Emulated => Memory::Emulated(emulation::poisoned(len)),
        };
        Ok(GpuBuffer { memory })
    }

    /// `len` zeros.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<GpuBuffer<T>, GpuError> {
        let memory = match &self.backend {
            Backend::Driver { stream, .. } => {
                Memory::Driver(stream.alloc_zeros::<T>(len).map_err(driver_error)?)
            }
            Backend::Emulated => Memory::Emulated(emulation::zeroed(len)),
        };
        Ok(GpuBuffer { memory })
    }

    /// Waits for every kernel queued so far (the emulated device runs each at its launch).
    pub fn synchronize(&self) -> Result<(), GpuError> {
        match &self.backend {
            Backend::Driver { stream, .. } => stream.synchronize().map_err(driver_error),
            Backend::Emulated => Ok(()),
        }
    }
}

fn other_device(what: &str) -> GpuError {
    GpuError::Driver(format!(
        "{what}: the buffer belongs to another device (the GPU and the emulated device do not mix)"
    ))
}

/// A kernel ready to launch on one device.
pub(crate) struct Kernel(KernelOn);

enum KernelOn {
    Driver(CudaFunction),
    /// The emulated device's name for it (`emulation::kernel` checked it exists).
    Emulated(std::ffi::CString),
}

/// One launch being assembled: the kernel's arguments, in order, then [`Launch::run`].
pub(crate) struct Launch<'a>(LaunchOn<'a>);

enum LaunchOn<'a> {
    Driver(LaunchArgs<'a>),
    Emulated(emulation::Launch<'a>),
    /// A driver kernel on the emulated device: refused at `run`.
    Mismatch,
}

impl<'a> Launch<'a> {
    /// A plain value (an integer, a float, a `#[repr(C)]` struct of them).
    pub fn arg<T: DeviceRepr>(&mut self, value: &'a T) -> &mut Self {
        match &mut self.0 {
            LaunchOn::Driver(args) => {
                args.arg(value);
            }
            LaunchOn::Emulated(e) => e.value(value),
            LaunchOn::Mismatch => {}
        }
        self
    }

    /// A buffer the kernel reads.
    pub fn buf<T>(&mut self, buffer: &'a GpuBuffer<T>) -> &mut Self {
        match (&mut self.0, &buffer.memory) {
            (LaunchOn::Driver(args), Memory::Driver(s)) => {
                args.arg(s);
            }
            (LaunchOn::Emulated(e), Memory::Emulated(v)) => e.pointer(v.as_ptr() as usize),
            (launch, _) => *launch = LaunchOn::Mismatch,
        }
        self
    }

    /// A buffer the kernel writes.
    pub fn buf_mut<T>(&mut self, buffer: &'a mut GpuBuffer<T>) -> &mut Self {
        match (&mut self.0, &mut buffer.memory) {
            (LaunchOn::Driver(args), Memory::Driver(s)) => {
                args.arg(s);
            }
            (LaunchOn::Emulated(e), Memory::Emulated(v)) => e.pointer(v.as_mut_ptr() as usize),
            (launch, _) => *launch = LaunchOn::Mismatch,
        }
        self
    }

    /// Launches it.
    ///
    /// # Safety
    /// The arguments must be the kernel's, in its order, and every index it forms inside the
    /// buffers given (the wrappers check the extents first).
    pub unsafe fn run(self, cfg: LaunchConfig) -> Result<(), GpuError> {
        match self.0 {
            // SAFETY: as the caller promises.
            LaunchOn::Driver(mut args) => unsafe { args.launch(cfg) }
                .map(|_| ())
                .map_err(driver_error),
            // SAFETY: as the caller promises.
            LaunchOn::Emulated(e) => unsafe { e.run(cfg) },
            LaunchOn::Mismatch => Err(other_device("launch")),
        }
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
