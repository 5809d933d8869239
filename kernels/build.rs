//! Compiles the emulated CUDA device (`src/cuda/emulation/device.cpp`: our `.cu` kernels over a
//! host emulation of blocks, barriers and warp shuffles) into a static library, so that
//! `kernels::cuda::Gpu::emulated()` runs the same kernel sources on any machine.

fn main() {
    let dir = "src/cuda";
    for source in [
        "emulation/device.cpp",
        "emulation/prelude.h",
        "bf16.cuh",
        "tile.cuh",
        "fold.cuh",
        "matmul.cu",
        "conv.cu",
        "reduce.cu",
        "elementwise.cu",
        "lstm.cu",
        "optim.cu",
        "index.cu",
        "norm.cu",
        "loss.cu",
    ] {
        println!("cargo:rerun-if-changed={dir}/{source}");
    }
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .file(format!("{dir}/emulation/device.cpp"))
        .opt_level(2)
        .flag_if_supported("-fno-strict-aliasing")
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-maybe-uninitialized")
        .compile("genzoo_cuda_emulation");
}
