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
// layout and alignment allow. A thread's 8 rows are two runs of 4, 64 apart (its 8 columns
// likewise), so each k step reads 4 LDS.128 for 64 FMAs and a warp's reads of a B row fall on
// distinct banks.
#define FM 128
#define FN 128
#define FK 8
#define FPAD 4 // keeps the transposed stores of A off a single bank; rows stay 16-byte aligned

struct FTiles {
    float a[2][FK][FM + FPAD];
    float b[2][FK][FN + FPAD];
};

// acc[i][j] += A-slice rows of (ty) x B-slice columns of (tx), over the FK steps of a slice.
__device__ __forceinline__ void ftile_accumulate(float (&acc)[8][8],
                                                 const float (&a)[FK][FM + FPAD],
                                                 const float (&b)[FK][FN + FPAD], int ty, int tx) {
#pragma unroll
    for (int p = 0; p < FK; ++p) {
        float av[8], bv[8];
        *(float4*)&av[0] = *(const float4*)&a[p][ty * 4];
        *(float4*)&av[4] = *(const float4*)&a[p][64 + ty * 4];
        *(float4*)&bv[0] = *(const float4*)&b[p][tx * 4];
        *(float4*)&bv[4] = *(const float4*)&b[p][64 + tx * 4];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] += av[i] * bv[j];
    }
}

// The tile-local row (or column) of a thread's i-th value: two runs of 4, 64 apart.
__device__ __forceinline__ int ftile_index(int t, int i) { return (i < 4 ? 0 : 64) + t * 4 + (i & 3); }

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
        ftile_accumulate(acc, s.a, s.b, threadIdx.x / 16, threadIdx.x % 16);
    }
    static __device__ __forceinline__ int row(int i) { return ftile_index(threadIdx.x / 16, i); }
    static __device__ __forceinline__ int col(int j) { return ftile_index(threadIdx.x % 16, j); }
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
