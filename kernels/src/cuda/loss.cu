// Softmax cross-entropy along the middle axis of a contiguous [outer, r, inner] buffer against
// one class per position, the CUDA twin of cpu::loss::softmax_cross_entropy: one thread per
// position (o, i) reading down its column (neighbouring threads read neighbouring addresses),
// the maximum then the sum of exponentials in the CPU's order; the backward one thread per
// element. The maximum propagates NaN, as the CPU's does.

template <typename T>
__device__ void sce_forward(const T* x, const long long* targets, T* loss, T* lse,
                            long long outer, long long r, long long inner) {
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < outer * inner;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long o = idx / inner, i = idx % inner;
        const T* column = x + o * r * inner + i;
        // r >= 1 wherever there is a position: every target is a class below r
        T m = column[0];
        for (long long j = 1; j < r; ++j) {
            const T v = column[j * inner];
            m = (v > m || v != v) ? v : m;
        }
        T sum = 0;
        for (long long j = 0; j < r; ++j) sum += exp(column[j * inner] - m);
        const T l = m + log(sum);
        lse[idx] = l;
        loss[idx] = l - column[targets[idx] * inner];
    }
}

// dx[o, j, i] = g[o, i] (exp(x[o, j, i] - lse[o, i]) - [j = t[o, i]]).
template <typename T>
__device__ void sce_backward(const T* x, const long long* targets, const T* lse, const T* grad,
                             T* dx, long long outer, long long r, long long inner) {
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
         idx < outer * r * inner; idx += (long long)gridDim.x * blockDim.x) {
        const long long i = idx % inner, j = (idx / inner) % r, o = idx / (r * inner);
        const long long at = o * inner + i;
        const T g = grad[at];
        T d = g * exp(x[idx] - lse[at]);
        if (targets[at] == j) d -= g;
        dx[idx] = d;
    }
}

#define SOFTMAX_CROSS_ENTROPY(T, SUFFIX)                                                       \
    extern "C" __global__ void softmax_cross_entropy_##SUFFIX(                                 \
        const T* x, const long long* targets, T* loss, T* lse, long long outer, long long r,   \
        long long inner) {                                                                     \
        sce_forward<T>(x, targets, loss, lse, outer, r, inner);                                \
    }                                                                                          \
    extern "C" __global__ void softmax_cross_entropy_backward_##SUFFIX(                        \
        const T* x, const long long* targets, const T* lse, const T* grad, T* dx,              \
        long long outer, long long r, long long inner) {                                       \
        sce_backward<T>(x, targets, lse, grad, dx, outer, r, inner);                           \
    }

SOFTMAX_CROSS_ENTROPY(float, f32)
SOFTMAX_CROSS_ENTROPY(double, f64)
