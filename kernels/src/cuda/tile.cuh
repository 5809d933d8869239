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

// The f32 tiling (matmul_f32, after the published SGEMM worklogs): a block of 256 threads
// computes a 128 x 128 tile of C, each thread 8 x 8 values in registers; A and B pass through
// shared memory 8 steps of k at a time, double-buffered (the next slice is loaded from global
// memory into registers while this one is multiplied), with 128-bit loads wherever the operand's
// layout and alignment allow. Warp tiles: each of the 8 warps computes a 32 x 64 part of the
// block's tile (FPlace), each lane 8 x 8 values of it, its rows two runs of 4 (16 apart) and its
// columns two runs of 4 (32 apart). So each k step reads 4 LDS.128 for 64 FMAs, and a warp's
// reads of a slice are 4 distinct 16-byte runs of A and 8 of B, contiguous: no bank conflicts,
// the rest broadcasts.
#define FM 128
#define FN 128
#define FK 8
#define FPAD 4 // keeps the transposed stores of A off a single bank; rows stay 16-byte aligned

struct FTiles {
    float a[2][FK][FM + FPAD];
    float b[2][FK][FN + FPAD];
};

// A thread's place in the 128 x 128 tile: the first of its rows and of its columns.
struct FPlace {
    int row, col;
};

// Warp w covers rows (w / 2) * 32 .. + 32 and columns (w % 2) * 64 .. + 64; its lanes are 4 x 8
// of runs of 4.
__device__ __forceinline__ FPlace fplace(int tid) {
    const int warp = tid / 32, lane = tid % 32;
    return {(warp / 2) * 32 + (lane / 8) * 4, (warp % 2) * 64 + (lane % 8) * 4};
}

// The tile-local row of a thread's i-th row value (two runs of 4, 16 apart), and column of its
// j-th column value (two runs of 4, 32 apart).
__device__ __forceinline__ int ftile_row(FPlace at, int i) {
    return at.row + (i < 4 ? 0 : 16) + (i & 3);
}
__device__ __forceinline__ int ftile_col(FPlace at, int j) {
    return at.col + (j < 4 ? 0 : 32) + (j & 3);
}

// acc[i][j] += this thread's rows of the A slice x its columns of the B slice, over FK steps.
__device__ __forceinline__ void ftile_accumulate(float (&acc)[8][8],
                                                 const float (&a)[FK][FM + FPAD],
                                                 const float (&b)[FK][FN + FPAD], FPlace at) {
#pragma unroll
    for (int p = 0; p < FK; ++p) {
        float av[8], bv[8];
        *(float4*)&av[0] = *(const float4*)&a[p][at.row];
        *(float4*)&av[4] = *(const float4*)&a[p][at.row + 16];
        *(float4*)&bv[0] = *(const float4*)&b[p][at.col];
        *(float4*)&bv[4] = *(const float4*)&b[p][at.col + 32];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] += av[i] * bv[j];
    }
}

// The tilings conv.cu's implicit GEMMs run on, by element type (TilingFor): f32 and bf16 on
// matmul's 128 x 128 tiles (8 x 8 values a thread, the LDS.128 inner loop above, bf16 summed
// in f32), f64 on the 64 x 64 ones (4 x 4 a thread). Each gives the shared slices of A and B
// (a[k][row], b[k][column]), the thread's accumulation over a slice, and the tile-local row
// and column of its i-th value.
struct WideTiling {
    using T = float;
    static constexpr int M = FM, N = FN, K = FK, RM = 8, RN = 8;
    struct Shared {
        float a[FK][FM + FPAD];
        float b[FK][FN + FPAD];
    };
    static __device__ __forceinline__ void accumulate(float (&acc)[8][8], const Shared& s) {
        ftile_accumulate(acc, s.a, s.b, fplace(threadIdx.x));
    }
    static __device__ __forceinline__ int row(int i) { return ftile_row(fplace(threadIdx.x), i); }
    static __device__ __forceinline__ int col(int j) { return ftile_col(fplace(threadIdx.x), j); }
};

template <typename E>
struct NarrowTiling {
    using T = E;
    static constexpr int M = BM, N = BN, K = BK, RM = TM, RN = TN;
    struct Shared {
        E a[BK][BM];
        E b[BK][BN];
    };
    static __device__ __forceinline__ void accumulate(E (&acc)[TM][TN], const Shared& s) {
        TILE_THREAD(tr, tc);
        tile_accumulate(acc, s.a, s.b, tr, tc);
    }
    static __device__ __forceinline__ int row(int i) { return threadIdx.x / (BN / TN) * TM + i; }
    static __device__ __forceinline__ int col(int j) { return threadIdx.x % (BN / TN) * TN + j; }
};

template <typename S>
struct TilingFor {
    using type = WideTiling;
};
template <>
struct TilingFor<double> {
    using type = NarrowTiling<double>;
};
