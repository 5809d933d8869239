//! Compiling plain loops for the widest vector unit the CPU has.
//!
//! The crate is built for baseline x86-64 (SSE2) so that one binary runs on every machine; a
//! loop over slices is then auto-vectorised only 4 floats wide. A kernel gets 16-wide AVX-512
//! code by writing its loop as an `#[inline(always)]` function and calling it from a twin
//! compiled with `#[target_feature(enable = "avx512f,avx2,fma")]` when [`has_avx512`] says
//! so (see `optim::adam_chunk`). A closure handed to such a function is not reliably inlined
//! into it, so the loop must be a plain function. No fast-math is involved: Rust never
//! reassociates or fuses `a * b + c`, so the results are bit-identical to the scalar loop.

/// AVX-512F with AVX2 and FMA (every AVX-512 CPU has them), detected once and cached by std.
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}
