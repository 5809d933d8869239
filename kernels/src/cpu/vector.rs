//! Compiling plain loops for the widest vector unit the CPU has.
//!
//! The crate is built for baseline x86-64 (SSE2) so that one binary runs on every machine; a
//! loop over slices is then auto-vectorised only 4 floats wide. A kernel gets 16-wide AVX-512
//! code (8-wide AVX2 on CPUs without AVX-512) by writing its loop as an `#[inline(always)]`
//! function and running it through [`widest`] in an `#[inline(always)]` closure (without that
//! attribute LLVM may leave the closure a separate, baseline-compiled function). No fast-math
//! is involved: Rust never reassociates or fuses `a * b + c`, so the results are bit-identical
//! to the scalar loop on every CPU.

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

/// Runs `body` compiled for AVX-512 where the CPU has it, for AVX2 where it has that, as it is
/// otherwise. `body` must be an `#[inline(always)]` closure around the loop (so that LLVM
/// inlines it into the AVX-512 or AVX2 function and vectorises it there); the loop it calls
/// must be `#[inline(always)]` too.
#[inline(always)]
pub fn widest<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU supports every feature `avx512` is compiled with (checked above).
            return unsafe { avx512(body) };
        }
        if has_avx2_fma() {
            // SAFETY: as above, for `avx2`.
            return unsafe { avx2(body) };
        }
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::Float;

    #[inline(always)]
    fn activations(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.chunks_exact_mut(4).zip(x) {
            o[0] = v.exp_vectorised();
            o[1] = v.sigmoid_vectorised();
            o[2] = v.tanh_vectorised();
            o[3] = v.ln_1p_vectorised();
        }
    }

    /// Every tier the CPU has computes the same bits as the baseline build (no fused
    /// multiply-adds, no reassociation), so a result does not depend on the machine's vector unit.
    #[test]
    fn every_tier_gives_the_baseline_bits() {
        let x: Vec<f32> = (-40_000..40_000)
            .map(|k| k as f32 * 3e-3)
            .chain([
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                -0.0,
                1e-30,
                -120.0,
            ])
            .collect();
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        let mut baseline = vec![0.0f32; 4 * x.len()];
        activations(&x, &mut baseline);
        let mut tiers = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512() {
                let mut out = vec![0.0f32; 4 * x.len()];
                // SAFETY: the CPU has AVX-512 (checked just above)
                unsafe {
                    avx512(
                        #[inline(always)]
                        || activations(&x, &mut out),
                    )
                };
                tiers.push(("avx512", out));
            }
            if has_avx2_fma() {
                let mut out = vec![0.0f32; 4 * x.len()];
                // SAFETY: the CPU has AVX2 and FMA (checked just above)
                unsafe {
                    avx2(
                        #[inline(always)]
                        || activations(&x, &mut out),
                    )
                };
                tiers.push(("avx2", out));
            }
        }
        for (name, out) in tiers {
            assert!(bits(&out) == bits(&baseline), "the {name} build differs");
        }
    }
}
