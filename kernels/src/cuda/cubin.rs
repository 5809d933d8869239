//! Our modules compiled ahead of time for a named GPU architecture, with no GPU or driver:
//! NVRTC alone (the `nvidia-cuda-nvrtc` wheel is enough) turns each `.cu` module into CUBIN
//! for `sm_80`, `sm_90` or `sm_100`, and ptxas's verbose report says what each kernel costs
//! (registers, spills, shared memory). CI runs it (`kernels/tests/cuda_cubin.rs`) so a kernel
//! that does not compile, spills, or asks for more static shared memory than a block may have
//! fails the build on a machine without a GPU; `cargo run -p kernels --example cuda_resources`
//! prints the report as the table of BENCHMARKS.md.

use super::{conv, elementwise, index, loss, lstm, matmul, norm, optim, reduce, GpuError};
use std::ffi::{c_char, CString};

/// Every module of ours: (name, source as NVRTC compiles it).
pub const MODULES: [(&str, &str); 9] = [
    (conv::MODULE, conv::SOURCE),
    (elementwise::MODULE, elementwise::SOURCE),
    (index::MODULE, index::SOURCE),
    (loss::MODULE, loss::SOURCE),
    (lstm::MODULE, lstm::SOURCE),
    (matmul::MODULE, matmul::SOURCE),
    (norm::MODULE, norm::SOURCE),
    (optim::MODULE, optim::SOURCE),
    (reduce::MODULE, reduce::SOURCE),
];

/// The architectures CI compiles for: A100, H100 / H200, B200.
pub const ARCHITECTURES: [&str; 3] = ["sm_80", "sm_90", "sm_100"];

/// Static shared memory a block may have without opting in to more (48 KiB).
pub const STATIC_SHARED_LIMIT: u64 = 48 * 1024;

/// True when the NVRTC library can be loaded (no driver needed).
pub fn nvrtc_present() -> bool {
    // SAFETY: this only tries to open the shared library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The options every compile of ours uses, for `arch` ("sm_90", ...).
pub(crate) fn compile_options(arch: &str) -> Vec<String> {
    vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()]
}

/// One module compiled to CUBIN, with ptxas's report of it.
pub struct Cubin {
    /// The module's name (its `.cu` file).
    pub module: &'static str,
    /// The architecture compiled for ("sm_90", ...).
    pub arch: String,
    /// The CUBIN image.
    pub cubin: Vec<u8>,
    /// NVRTC's log, ptxas's `-v` report included.
    pub log: String,
}

/// What ptxas reports for one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelResources {
    /// The kernel's name.
    pub kernel: String,
    /// Registers per thread.
    pub registers: u64,
    /// Static shared memory per block, in bytes.
    pub shared_bytes: u64,
    /// Stack frame per thread, in bytes.
    pub stack_bytes: u64,
    /// Bytes of registers spilled to local memory (stores).
    pub spill_store_bytes: u64,
    /// Bytes read back from spills (loads).
    pub spill_load_bytes: u64,
}

impl KernelResources {
    /// f64 kernels (which the gradient checks use) may trade speed for simplicity; f32 and
    /// bf16 ones are held to no spills.
    pub fn is_f64(&self) -> bool {
        self.kernel.contains("f64")
    }
}

/// Compiles `source` (module `module`) to CUBIN for `arch`, with ptxas's verbose report.
pub fn compile_cubin(module: &'static str, source: &str, arch: &str) -> Result<Cubin, GpuError> {
    if !nvrtc_present() {
        return Err(GpuError::NoDriver);
    }
    let fail = |log: String| GpuError::Compile { module, log };
    let src = CString::new(source).map_err(|e| fail(format!("the source holds a NUL: {e}")))?;
    let name = CString::new(module).map_err(|e| fail(format!("the name holds a NUL: {e}")))?;
    let mut options = compile_options(arch);
    options.push("--ptxas-options=-v".into());
    use cudarc::nvrtc::{result, sys};
    let program = result::create_program(&src, Some(&name)).map_err(|e| fail(format!("{e:?}")))?;
    // SAFETY: `program` is a live program from create_program, destroyed once below; the
    // CUBIN buffer is sized by NVRTC's own report before it is written.
    unsafe {
        let compiled = result::compile_program(program, &options);
        let log = result::get_program_log(program)
            .map(|l| chars_to_string(&l))
            .unwrap_or_default();
        let cubin = compiled
            .map_err(|e| fail(format!("{e:?}\n{log}")))
            .and_then(|()| {
                let mut size = 0usize;
                sys::nvrtcGetCUBINSize(program, &mut size)
                    .result()
                    .map_err(|e| fail(format!("no CUBIN size: {e:?}")))?;
                let mut cubin = vec![0u8; size];
                sys::nvrtcGetCUBIN(program, cubin.as_mut_ptr() as *mut c_char)
                    .result()
                    .map_err(|e| fail(format!("no CUBIN: {e:?}")))?;
                Ok(cubin)
            });
        let destroyed = result::destroy_program(program);
        let cubin = cubin?;
        destroyed.map_err(|e| fail(format!("{e:?}")))?;
        Ok(Cubin {
            module,
            arch: arch.to_string(),
            cubin,
            log,
        })
    }
}

fn chars_to_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The per-kernel figures of a ptxas `-v` report: each kernel's "Compiling entry function",
/// its "N bytes stack frame, N bytes spill stores, N bytes spill loads" and its "Used N
/// registers, ..., N bytes smem" lines.
pub fn parse_ptxas_report(log: &str) -> Vec<KernelResources> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or("").to_string();
            kernels.push(KernelResources {
                kernel,
                registers: 0,
                shared_bytes: 0,
                stack_bytes: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
            });
            continue;
        }
        let Some(k) = kernels.last_mut() else {
            continue;
        };
        if line.contains("stack frame") {
            k.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            k.spill_store_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
            k.spill_load_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("Used") && line.contains("registers") {
            k.registers = number_before(line, "registers").unwrap_or(0);
            k.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    kernels
}

/// The number written just before `unit` in `line` ("Used 40 registers" -> 40).
fn number_before(line: &str, unit: &str) -> Option<u64> {
    let head = &line[..line.find(unit)?];
    head.split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// What disqualifies a kernel's report: spills in an f32 or bf16 kernel, or static shared
/// memory over [`STATIC_SHARED_LIMIT`].
pub fn problems(resources: &KernelResources) -> Vec<String> {
    let mut out = Vec::new();
    let spills = resources.spill_store_bytes + resources.spill_load_bytes;
    if spills > 0 && !resources.is_f64() {
        out.push(format!(
            "{} spills ({} bytes stored, {} loaded)",
            resources.kernel, resources.spill_store_bytes, resources.spill_load_bytes
        ));
    }
    if resources.shared_bytes > STATIC_SHARED_LIMIT {
        out.push(format!(
            "{} asks for {} bytes of static shared memory (at most {STATIC_SHARED_LIMIT})",
            resources.kernel, resources.shared_bytes
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'matmul_f64' for 'sm_90'
ptxas info    : Function properties for matmul_f64
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 16384 bytes smem
ptxas info    : Compile time = 63.661 ms
ptxas info    : Compiling entry function 'conv_forward_f32' for 'sm_90'
ptxas info    : Function properties for conv_forward_f32
ptxas         .     24 bytes stack frame, 20 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 255 registers, used 0 barriers, 380 bytes cmem[0]
";

    #[test]
    fn the_report_is_read_per_kernel() {
        let k = parse_ptxas_report(REPORT);
        assert_eq!(k.len(), 2);
        assert_eq!(
            k[0],
            KernelResources {
                kernel: "matmul_f64".into(),
                registers: 64,
                shared_bytes: 16384,
                stack_bytes: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
            }
        );
        assert_eq!((k[1].registers, k[1].shared_bytes), (255, 0));
        assert_eq!(
            (
                k[1].stack_bytes,
                k[1].spill_store_bytes,
                k[1].spill_load_bytes
            ),
            (24, 20, 16)
        );
    }

    #[test]
    fn spills_count_against_f32_kernels_and_shared_memory_against_all() {
        let k = parse_ptxas_report(REPORT);
        assert!(problems(&k[0]).is_empty());
        assert_eq!(problems(&k[1]).len(), 1);
        let mut f64_spilling = k[1].clone();
        f64_spilling.kernel = "conv_forward_f64".into();
        assert!(problems(&f64_spilling).is_empty());
        f64_spilling.shared_bytes = STATIC_SHARED_LIMIT + 1;
        assert_eq!(problems(&f64_spilling).len(), 1);
    }
}
