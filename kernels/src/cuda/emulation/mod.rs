//! The emulated device's Rust side: launches into `device.cpp` (built by `build.rs`), which holds
//! every kernel of our `.cu` files compiled for the host. A launch passes what the driver's
//! does: the grid, the block and a pointer to each parameter's value, device pointers being
//! host addresses here.

use super::{GpuError, Kernel, KernelOn};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::sync::Mutex;

extern "C" {
    fn genzoo_emulated_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        params: *mut *mut c_void,
    ) -> c_int;
    fn genzoo_emulated_has(name: *const c_char) -> c_int;
}

/// The emulated kernels share the statics of one C++ translation unit (the blocks' shared
/// memory, the fibers): one launch at a time in the process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// True when the emulated device has a kernel of this name.
pub fn has_kernel(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string, only read.
    unsafe { genzoo_emulated_has(c.as_ptr()) != 0 }
}

pub(super) fn kernel(name: &str) -> Result<Kernel, GpuError> {
    let cname =
        CString::new(name).map_err(|e| GpuError::Driver(format!("kernel {name:?}: {e}")))?;
    // SAFETY: a NUL-terminated string, only read.
    if unsafe { genzoo_emulated_has(cname.as_ptr()) } == 0 {
        return Err(GpuError::Driver(format!(
            "the emulated device has no kernel {name}"
        )));
    }
    Ok(Kernel(KernelOn::Emulated(cname)))
}

/// One launch being assembled: each parameter's value, in order.
pub(super) struct Launch<'a> {
    name: &'a CStr,
    params: Vec<Param>,
    /// the device pointers' values, pointed at once the list is complete
    pointers: Vec<usize>,
    _borrows: PhantomData<&'a ()>,
}

enum Param {
    /// where a plain value lives (borrowed for 'a)
    Value(*mut c_void),
    /// the index of a device pointer in `pointers`
    Pointer(usize),
}

impl<'a> Launch<'a> {
    pub(super) fn new(name: &'a CStr) -> Launch<'a> {
        Launch {
            name,
            params: Vec::new(),
            pointers: Vec::new(),
            _borrows: PhantomData,
        }
    }

    pub(super) fn value<T: DeviceRepr>(&mut self, value: &'a T) {
        self.params
            .push(Param::Value(value as *const T as *mut c_void));
    }

    pub(super) fn pointer(&mut self, address: usize) {
        self.params.push(Param::Pointer(self.pointers.len()));
        self.pointers.push(address);
    }

    /// # Safety
    /// As [`super::Launch::run`].
    pub(super) unsafe fn run(mut self, cfg: LaunchConfig) -> Result<(), GpuError> {
        let grid = [cfg.grid_dim.0, cfg.grid_dim.1, cfg.grid_dim.2];
        let block = [cfg.block_dim.0, cfg.block_dim.1, cfg.block_dim.2];
        let mut params: Vec<*mut c_void> = self
            .params
            .iter()
            .map(|p| match *p {
                Param::Value(v) => v,
                Param::Pointer(i) => &mut self.pointers[i] as *mut usize as *mut c_void,
            })
            .collect();
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the parameters point at live values of the kernel's types (the caller's
        // promise), the buffers at host memory borrowed for 'a.
        let code = unsafe {
            genzoo_emulated_launch(
                self.name.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                params.as_mut_ptr(),
            )
        };
        let name = || self.name.to_string_lossy();
        match code {
            0 => Ok(()),
            1 => Err(GpuError::Driver(format!(
                "the emulated device has no kernel {}",
                name()
            ))),
            2 => Err(GpuError::Driver(format!(
                "{}: a block's threads can never all reach one barrier (divergent __syncthreads), \
                 or a kernel registered as barrier-free in emulation/device.cpp met one",
                name()
            ))),
            _ => Err(GpuError::Driver(format!(
                "{}: block {block:?} is not a 1-D block of 1 to 1024 threads",
                name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cuda::Gpu;
    use cudarc::driver::LaunchConfig;

    #[test]
    fn a_barrier_in_a_kernel_launched_as_barrier_free_fails_the_launch() {
        let gpu = Gpu::emulated();
        let k = gpu
            .kernel("probe", "", "emulation_probe_barrier")
            .expect("the probe kernel is registered");
        let mut out = gpu.upload(&[0i32; 32]).unwrap();
        let mut launch = gpu.launch(&k);
        launch.buf_mut(&mut out);
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the probe writes out[threadIdx.x] for 32 threads into 32 elements.
        let e = unsafe { launch.run(cfg) }.unwrap_err().to_string();
        assert!(e.contains("barrier"), "{e}");
        // and a kernel that is not there is an error too
        assert!(gpu.kernel("probe", "", "no_such_kernel").is_err());
    }
}
