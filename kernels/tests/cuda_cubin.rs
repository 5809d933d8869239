//! Every module of ours compiled by NVRTC to CUBIN for sm_80, sm_90 and sm_100, with no GPU:
//! a compile error, a spill in an f32 or bf16 kernel, or static shared memory over 48 KiB per
//! block fails the test (`kernels::cuda::cubin`).
//!
//! Without the NVRTC library the test prints once that it skipped and passes; with
//! REQUIRE_NVRTC=1 (CI, after `pip install nvidia-cuda-nvrtc`) or REQUIRE_GPU=1 its absence
//! fails it.

use kernels::cuda::cubin::{self, compile_cubin, parse_ptxas_report, ARCHITECTURES, MODULES};

fn required() -> bool {
    ["REQUIRE_NVRTC", "REQUIRE_GPU"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"))
}

#[test]
fn every_module_compiles_to_cubin_for_every_architecture_without_spills() {
    if !cubin::nvrtc_present() {
        assert!(
            !required(),
            "REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (is its folder on LD_LIBRARY_PATH?)"
        );
        eprintln!("cuda_cubin: skipped, no NVRTC library on this machine");
        return;
    }
    let mut problems = Vec::new();
    for arch in ARCHITECTURES {
        for (module, source) in MODULES {
            let compiled = match compile_cubin(module, source, arch) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("{arch}: {e}"));
                    continue;
                }
            };
            // an ELF image: CUBIN, not PTX
            assert_eq!(&compiled.cubin[..4], b"\x7fELF", "{module} for {arch}");
            let kernels = parse_ptxas_report(&compiled.log);
            // each `__global__` written (some inside macros instantiated per type) is at least
            // one kernel in the report
            let declared = source.matches("__global__").count();
            assert!(
                declared > 0 && kernels.len() >= declared,
                "{module} for {arch}: no kernels in ptxas's report:\n{}",
                compiled.log
            );
            for k in &kernels {
                assert!(k.registers > 0, "{module} {arch}: {k:?} read no registers");
                // the emulated device must have every kernel NVRTC finds
                assert!(
                    kernels::cuda::emulation::has_kernel(&k.kernel),
                    "{module}: the emulated device (emulation/device.cpp) lacks {}",
                    k.kernel
                );
                problems.extend(
                    cubin::problems(k)
                        .into_iter()
                        .map(|p| format!("{arch}: {p}")),
                );
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
