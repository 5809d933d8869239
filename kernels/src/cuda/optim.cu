// The fused Adam / AdamW update, in place, one thread per parameter: the same formula, in the
// same order, as cpu::optim::adam (PyTorch's).

template <typename T>
__device__ void adam_update(T* p, const T* g, T* m, T* v, unsigned long long n, T step_size,
                            T inv_bc2_sqrt, T w1, T b2, T one_minus_b2, T eps, T wd, T decay,
                            int decoupled, int small_w1) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        T gi;
        if (decoupled) {
            p[i] *= decay;
            gi = g[i];
        } else {
            gi = g[i] + wd * p[i];
        }
        m[i] = small_w1 ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * (T(1) - w1);
        v[i] = b2 * v[i] + one_minus_b2 * gi * gi;
        T denom = sqrt(v[i]) * inv_bc2_sqrt + eps;
        p[i] -= step_size * m[i] / denom;
    }
}

#define ADAM(NAME, T)                                                                          \
    extern "C" __global__ void NAME(T* p, const T* g, T* m, T* v, unsigned long long n,        \
                                    T step_size, T inv_bc2_sqrt, T w1, T b2, T one_minus_b2,   \
                                    T eps, T wd, T decay, int decoupled, int small_w1) {       \
        adam_update<T>(p, g, m, v, n, step_size, inv_bc2_sqrt, w1, b2, one_minus_b2, eps, wd, \
                       decay, decoupled, small_w1);                                            \
    }

ADAM(adam_f32, float)
ADAM(adam_f64, double)
