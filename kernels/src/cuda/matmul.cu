// C = A * B with A [m, k] and B [k, n] read through arbitrary (row, column) strides, C row-major
// with row stride ldc. Each block computes a 64 x 64 tile of C with 256 threads, 4 x 4 values
// per thread held in registers; A and B pass through shared memory 16 steps of k at a time.
// Edges are zero-padded on load and masked on store, so any m, n, k works. The tile loop is
// tile.cuh's.
// First version: no vectorised loads or double buffering yet (see the CUDA issue).

template <typename T>
__device__ void matmul_tile(int m, int n, int k, const T* a, long long a_off, long long a_rs,
                            long long a_cs, const T* b, long long b_off, long long b_rs,
                            long long b_cs, T* c, long long ldc) {
    __shared__ T as[BK][BM];
    __shared__ T bs[BK][BN];
    const int tid = threadIdx.x;
    TILE_THREAD(tr, tc);
    const long long row0 = (long long)blockIdx.y * BM;
    const long long col0 = (long long)blockIdx.x * BN;
    T acc[TM][TN];
    tile_zero(acc);
    for (int p0 = 0; p0 < k; p0 += BK) {
        for (int e = tid; e < BM * BK; e += blockDim.x) {
            int i = e / BK, p = e % BK;
            long long r = row0 + i;
            int pp = p0 + p;
            as[p][i] = (r < m && pp < k) ? a[a_off + r * a_rs + pp * a_cs] : T(0);
        }
        for (int e = tid; e < BK * BN; e += blockDim.x) {
            int p = e / BN, j = e % BN;
            long long col = col0 + j;
            int pp = p0 + p;
            bs[p][j] = (col < n && pp < k) ? b[b_off + pp * b_rs + col * b_cs] : T(0);
        }
        __syncthreads();
        tile_accumulate(acc, as, bs, tr, tc);
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        long long r = row0 + tr * TM + i;
        for (int j = 0; j < TN; ++j) {
            long long col = col0 + tc * TN + j;
            if (r < m && col < n) c[r * ldc + col] = acc[i][j];
        }
    }
}

extern "C" __global__ void matmul_f32(int m, int n, int k, const float* a, long long a_off,
                                      long long a_rs, long long a_cs, const float* b,
                                      long long b_off, long long b_rs, long long b_cs, float* c,
                                      long long ldc) {
    matmul_tile<float>(m, n, k, a, a_off, a_rs, a_cs, b, b_off, b_rs, b_cs, c, ldc);
}
extern "C" __global__ void matmul_f64(int m, int n, int k, const double* a, long long a_off,
                                      long long a_rs, long long a_cs, const double* b,
                                      long long b_off, long long b_rs, long long b_cs, double* c,
                                      long long ldc) {
    matmul_tile<double>(m, n, k, a, a_off, a_rs, a_cs, b, b_off, b_rs, b_cs, c, ldc);
}
