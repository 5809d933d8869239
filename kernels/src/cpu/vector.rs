//! Compiling plain loops for the widest vector unit the CPU has.
//!
//! The crate is built for baseline x86-64 (SSE2) so that one binary runs on every machine; a
//! loop over slices is then auto-vectorised only 4 floats wide. A kernel gets 16-wide AVX-512
//! code by writing its loop as an `#[inline(always)]` function and running it through
//! [`widest`] in an `#[inline(always)]` closure (without that attribute LLVM may leave the
//! closure a separate, baseline-compiled function). No fast-math is involved: Rust never
//! reassociates or fuses `a * b + c`, so the results are bit-identical to the scalar loop.

/// AVX-512F with AVX2 and FMA (every AVX-512 CPU has them), detected once and cached by std:
/// the engine's one test for it (the matmul's micro-kernels and every loop through [`widest`]).
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f") && has_avx2_fma()
}

/// AVX2 with FMA (the matmul's 6x16 micro-kernel on CPUs without AVX-512).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Runs `body` compiled for AVX-512 where the CPU has it, as it is otherwise. `body` must be
/// an `#[inline(always)]` closure around the loop (so that LLVM inlines it into the AVX-512
/// function and vectorises it 16 wide there); the loop it calls must be `#[inline(always)]`
/// too.
#[inline(always)]
pub fn widest<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports every feature `avx512` is compiled with (checked above).
        return unsafe { avx512(body) };
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}
