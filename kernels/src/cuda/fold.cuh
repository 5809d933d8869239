// Folds across a warp and across a block, shared by the reductions (reduce.cu) and the batch
// norm's per-channel sums (norm.cu): a sum, or a maximum that propagates NaN as the CPU's does.

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

// The fold of v over the block, valid in thread 0 (every thread must call it): each warp's
// fold, then warp 0 folds those through shared memory.
template <typename T, bool MAX>
__device__ T block_fold(T v, T init) {
    __shared__ T partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_fold<T, MAX>(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) v = warp_fold<T, MAX>(lane < warps ? partial[lane] : init);
    __syncthreads();  // partial is reused by the next call
    return v;
}
