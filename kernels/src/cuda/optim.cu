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

// SGD with optional momentum (buf, when has_buf), dampening, Nesterov and L2 weight decay, in
// place: cpu::optim::sgd's formula in the same order (PyTorch's).
template <typename T>
__device__ void sgd_update(T* p, const T* g, T* buf, unsigned long long n, T lr, T mom,
                           T one_minus_damp, T wd, int has_buf, int first_step, int nesterov) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        T d = g[i] + wd * p[i];
        if (!has_buf) {
            p[i] -= lr * d;
            continue;
        }
        buf[i] = first_step ? d : mom * buf[i] + one_minus_damp * d;
        T step = nesterov ? d + mom * buf[i] : buf[i];
        p[i] -= lr * step;
    }
}

// RMSprop (PyTorch's, not centred): v = alpha v + (1 - alpha) g^2, then p -= lr g / (sqrt v +
// eps), through a momentum buffer when has_buf; cpu::optim::rmsprop's order.
template <typename T>
__device__ void rmsprop_update(T* p, const T* g, T* v, T* buf, unsigned long long n, T lr, T a,
                               T one_minus_a, T eps, T mom, T wd, int has_buf) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        T gi = g[i] + wd * p[i];
        v[i] = a * v[i] + one_minus_a * gi * gi;
        if (has_buf) {
            buf[i] = mom * buf[i] + gi / (sqrt(v[i]) + eps);
            p[i] -= lr * buf[i];
        } else {
            p[i] -= lr * gi / (sqrt(v[i]) + eps);
        }
    }
}

extern "C" __global__ void sgd_f32(float* p, const float* g, float* buf, unsigned long long n,
                                   float lr, float mom, float one_minus_damp, float wd,
                                   int has_buf, int first_step, int nesterov) {
    sgd_update<float>(p, g, buf, n, lr, mom, one_minus_damp, wd, has_buf, first_step, nesterov);
}
extern "C" __global__ void sgd_f64(double* p, const double* g, double* buf, unsigned long long n,
                                   double lr, double mom, double one_minus_damp, double wd,
                                   int has_buf, int first_step, int nesterov) {
    sgd_update<double>(p, g, buf, n, lr, mom, one_minus_damp, wd, has_buf, first_step, nesterov);
}
extern "C" __global__ void rmsprop_f32(float* p, const float* g, float* v, float* buf,
                                       unsigned long long n, float lr, float a,
                                       float one_minus_a, float eps, float mom, float wd,
                                       int has_buf) {
    rmsprop_update<float>(p, g, v, buf, n, lr, a, one_minus_a, eps, mom, wd, has_buf);
}
extern "C" __global__ void rmsprop_f64(double* p, const double* g, double* v, double* buf,
                                       unsigned long long n, double lr, double a,
                                       double one_minus_a, double eps, double mom, double wd,
                                       int has_buf) {
    rmsprop_update<double>(p, g, v, buf, n, lr, a, one_minus_a, eps, mom, wd, has_buf);
}
