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
//! timings are in BENCHMARKS.md. The engine reaches them through autograd's CUDA storage,
//! which has run on the emulated device only so far.

pub mod conv;
pub mod cubin;
pub mod elementwise;
pub mod index;
pub mod loss;
pub mod lstm;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod reduce;

pub mod emulation;
pub mod memory;

pub use memory::{GpuBuffer, MemoryStats};
use memory::{Memory, Pool, SharedPool};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, LaunchArgs, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
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
    Compile {
        /// The module that failed.
        module: &'static str,
        /// NVRTC's log.
        log: String,
    },
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

/// The square tile of C one block of matmul.cu or conv.cu computes (tile.cuh): 128 for f32 and
/// bf16, 64 for f64.
fn block_tile<T: elementwise::GpuElement>() -> usize {
    if T::SUFFIX == "f64" {
        64
    } else {
        128
    }
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
    /// Freed blocks kept for reuse, and the memory statistics.
    pool: SharedPool,
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
            pool: SharedPool::default(),
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
                    pool: SharedPool::default(),
                    arch: "emulated".into(),
                    backend: Backend::Emulated,
                })
            })
            .clone()
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

    /// A pooled block for `len` elements of T: a cached one of its size class, else a new one
    /// (its contents unspecified).
    fn block<T: DeviceRepr + Clone + Default + Send + 'static>(
        &self,
        len: usize,
    ) -> Result<Memory<T>, GpuError> {
        let class = memory::size_class(len);
        if let Some(m) = Pool::reuse::<T>(&self.pool, class) {
            return Ok(m);
        }
        let m = match &self.backend {
            // SAFETY: callers write every element they read back (upload, kernels, zeros).
            Backend::Driver { stream, .. } => {
                Memory::Driver(unsafe { stream.alloc::<T>(class) }.map_err(driver_error)?)
            }
            Backend::Emulated => Memory::Emulated(vec![T::default(); class]),
        };
        Pool::allocated::<T>(&self.pool, class);
        Ok(m)
    }

    /// A copy of `host` in device memory.
    pub fn upload<T: DeviceRepr + Clone + Default + Send + 'static>(
        &self,
        host: &[T],
    ) -> Result<GpuBuffer<T>, GpuError> {
        let mut m = self.block::<T>(host.len())?;
        match (&self.backend, &mut m) {
            (Backend::Driver { stream, .. }, Memory::Driver(s)) => {
                stream.memcpy_htod(host, s).map_err(driver_error)?
            }
            (_, Memory::Emulated(v)) => v[..host.len()].clone_from_slice(host),
            _ => return Err(other_device("upload")),
        }
        Ok(GpuBuffer::new(m, host.len(), self.pool.clone()))
    }

    /// A copy of `buffer` in host memory (waits for the stream's work before it).
    pub fn download<T: DeviceRepr + Default + Clone + Send + 'static>(
        &self,
        buffer: &GpuBuffer<T>,
    ) -> Result<Vec<T>, GpuError> {
        let len = buffer.len();
        match (&self.backend, buffer.memory()) {
            (Backend::Driver { stream, .. }, Memory::Driver(s)) => {
                let mut host = vec![T::default(); len];
                stream
                    .memcpy_dtoh(&s.slice(..len), &mut host[..])
                    .map_err(driver_error)?;
                stream.synchronize().map_err(driver_error)?;
                Ok(host)
            }
            (Backend::Emulated, Memory::Emulated(v)) => Ok(v[..len].to_vec()),
            _ => Err(other_device("download")),
        }
    }

    /// A copy of `buffer` in this device's memory.
    pub fn copy<T: DeviceRepr + Default + Clone + Send + 'static>(
        &self,
        buffer: &GpuBuffer<T>,
    ) -> Result<GpuBuffer<T>, GpuError> {
        let len = buffer.len();
        let mut m = self.block::<T>(len)?;
        match (&self.backend, buffer.memory(), &mut m) {
            (Backend::Driver { stream, .. }, Memory::Driver(src), Memory::Driver(dst)) => stream
                .memcpy_dtod(&src.slice(..len), &mut dst.slice_mut(..len))
                .map_err(driver_error)?,
            (Backend::Emulated, Memory::Emulated(src), Memory::Emulated(dst)) => {
                dst[..len].clone_from_slice(&src[..len])
            }
            _ => return Err(other_device("copy")),
        }
        Ok(GpuBuffer::new(m, len, self.pool.clone()))
    }

    /// `len` elements whose values are unspecified until a kernel writes them (on the emulated
    /// device: NaN, so an element a kernel forgot shows).
    pub fn alloc<T: elementwise::GpuElement>(&self, len: usize) -> Result<GpuBuffer<T>, GpuError> {
        let mut m = self.block::<T>(len)?;
        if let Memory::Emulated(v) = &mut m {
            v.fill(T::element_from_f64(f64::NAN));
        }
        Ok(GpuBuffer::new(m, len, self.pool.clone()))
    }

    /// `len` zeros.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits + Clone + Default + Send + 'static>(
        &self,
        len: usize,
    ) -> Result<GpuBuffer<T>, GpuError> {
        let mut m = self.block::<T>(len)?;
        match (&self.backend, &mut m) {
            (Backend::Driver { stream, .. }, Memory::Driver(s)) => {
                stream.memset_zeros(s).map_err(driver_error)?
            }
            (_, Memory::Emulated(v)) => v.fill(T::default()),
            _ => return Err(other_device("zeros")),
        }
        Ok(GpuBuffer::new(m, len, self.pool.clone()))
    }

    /// What this device's allocator holds.
    pub fn memory_stats(&self) -> MemoryStats {
        Pool::stats(&self.pool)
    }

    /// Frees every cached block (live buffers are untouched).
    pub fn empty_cache(&self) {
        Pool::empty(&self.pool);
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
        match (&mut self.0, buffer.memory()) {
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
        match (&mut self.0, buffer.memory_mut()) {
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

/// An error unless buffer `what` of `op` holds at least `need` elements (it has `len`).
pub(crate) fn check_len(op: &str, what: &str, len: usize, need: usize) -> Result<(), GpuError> {
    if len < need {
        return Err(GpuError::Driver(format!(
            "{op}: {what} has {len} elements, needs {need}"
        )));
    }
    Ok(())
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
