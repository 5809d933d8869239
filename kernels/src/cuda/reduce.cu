// Sum and max over the middle axis of a contiguous [outer, r, inner] buffer, the CUDA twins of
// cpu::reduce. Rows (inner == 1): one block per row, each thread folding a strided share, then
// warp shuffles and one shared-memory step across warps. inner > 1: one thread per output,
// reading down its column (neighbouring threads read neighbouring addresses). The folds are
// fold.cuh's.

template <typename T, bool MAX>
__device__ void reduce_rows(const T* x, T* out, long long rows, long long r, T init) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        T acc = init;
        for (long long j = threadIdx.x; j < r; j += blockDim.x)
            acc = combine<T, MAX>(acc, x[row * r + j]);
        acc = block_fold<T, MAX>(acc, init);
        if (threadIdx.x == 0) out[row] = acc;
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
