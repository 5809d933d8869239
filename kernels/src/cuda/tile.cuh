// The register-tiled inner loop shared by matmul.cu and conv.cu: a block of 256 threads
// computes a BM x BN tile of C, each thread TM x TN values in registers, from BK-deep slices
// of A and B staged in shared memory (as[k][row], bs[k][col]). Prepended to those files'
// sources at compile time (kernels::cuda::tiled_source).

#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4

// This thread's place in the tile: its row and column of TM x TN sub-tiles.
#define TILE_THREAD(tr, tc) const int tr = threadIdx.x / (BN / TN), tc = threadIdx.x % (BN / TN)

template <typename T>
__device__ void tile_zero(T (&acc)[TM][TN]) {
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
}

// acc += as[:, rows of this thread]^T * bs[:, columns of this thread] over the BK slice.
template <typename T>
__device__ void tile_accumulate(T (&acc)[TM][TN], const T (&as)[BK][BM], const T (&bs)[BK][BN],
                                int tr, int tc) {
    for (int p = 0; p < BK; ++p) {
        T av[TM], bv[TN];
        for (int i = 0; i < TM; ++i) av[i] = as[p][tr * TM + i];
        for (int j = 0; j < TN; ++j) bv[j] = bs[p][tc * TN + j];
        for (int i = 0; i < TM; ++i)
            for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
    }
}
