// Sum and max over the middle axis of a contiguous [outer, r, inner] buffer, the CUDA twins of
// cpu::reduce. Rows (inner == 1): one block per row, each thread folding a strided share, then
// warp shuffles and one shared-memory step across warps. inner > 1: one thread per output,
// reading down its column (neighbouring threads read neighbouring addresses).
// max propagates NaN, as the CPU's does.

template <typename T, bool MAX>
__device__ T combine(T a, T b) {
    if (MAX) return (b != b || b > a) ? b : a;
    return a + b;
}

template <typename T, bool MAX>
__device__ T warp_fold(T v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = combine<T, MAX>(v, __shfl_down_sync(0xffffffffu, v, offset));
    return v;
}

template <typename T, bool MAX>
__device__ void reduce_rows(const T* x, T* out, long long rows, long long r, T init) {
    __shared__ T partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        T acc = init;
        for (long long j = threadIdx.x; j < r; j += blockDim.x)
            acc = combine<T, MAX>(acc, x[row * r + j]);
        acc = warp_fold<T, MAX>(acc);
        if (lane == 0) partial[warp] = acc;
        __syncthreads();
        if (warp == 0) {
            acc = lane < warps ? partial[lane] : init;
            acc = warp_fold<T, MAX>(acc);
            if (lane == 0) out[row] = acc;
        }
        __syncthreads();
    }
}

template <typename T, bool MAX>
__device__ void reduce_columns(const T* x, T* out, long long outer, long long r, long long inner,
                               T init) {
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < outer * inner;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long o = idx / inner, i = idx % inner;
        const T* column = x + o * r * inner + i;
        T acc = init;
        for (long long j = 0; j < r; ++j) acc = combine<T, MAX>(acc, column[j * inner]);
        out[idx] = acc;
    }
}

#define REDUCE(NAME, T, MAX)                                                                  \
    extern "C" __global__ void NAME##_rows(const T* x, T* out, long long rows, long long r,   \
                                           T init) {                                          \
        reduce_rows<T, MAX>(x, out, rows, r, init);                                           \
    }                                                                                         \
    extern "C" __global__ void NAME##_columns(const T* x, T* out, long long outer,            \
                                              long long r, long long inner, T init) {         \
        reduce_columns<T, MAX>(x, out, outer, r, inner, init);                                \
    }

REDUCE(sum_f32, float, false)
REDUCE(sum_f64, double, false)
REDUCE(max_f32, float, true)
REDUCE(max_f64, double, true)
