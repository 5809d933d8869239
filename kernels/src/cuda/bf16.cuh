// bf16 storage: the upper 16 bits of an f32 (1 sign, 8 exponent, 7 mantissa bits). Our own type,
// not cuda_bf16.h's, so that NVRTC and the emulated device's host compiler read the same source.
// Kernels widen bf16 to f32 as they load it (exact: a shift), compute in f32, and round once as
// they store: to nearest, ties to even, NaN kept quiet — the `half` crate's
// `bf16::from_f32`, which the CPU path uses, bit for bit. Doubles round through f32.
struct bf16 {
    unsigned short bits;
    bf16() = default;
    __device__ __forceinline__ bf16(float f) {
        const unsigned u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            bits = (unsigned short)((u >> 16) | 0x0040u);  // NaN, quiet
        } else {
            // + 0x7fff rounds half down, + 1 more when the kept part is odd: ties to even
            bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
    }
    __device__ __forceinline__ bf16(double d) : bf16((float)d) {}
    __device__ __forceinline__ operator float() const {
        return __uint_as_float((unsigned)bits << 16);
    }
};

// Four bf16 loaded or stored at once (64 bits).
struct __align__(8) bf16x4 {
    bf16 v[4];
};
