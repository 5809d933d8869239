// C = A * B with A [m, k] and B [k, n] read through arbitrary (row, column) strides, C row-major
// from element c_off with row stride ldc (one matrix of a batch). Edges are zero-padded on load and masked on store, so any m, n, k works.
// f32: tile.cuh's 128 x 128 tiling (8 x 8 per thread, double-buffered, 128-bit loads where the
// layout allows); bf16 the same, its elements widened to f32 as they are loaded (64-bit loads)
// and C rounded once as it is stored. f64, which the gradient checks use: the simpler 64 x 64 tiling (4 x 4 per
// thread), 8 x 8 doubles per thread being more registers than a thread has.

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

// A strided matrix inside a buffer: element (i, j) at off + i * rs + j * cs, zero outside.
template <typename S>
struct Operand {
    const S* data;
    long long off, rs, cs, rows, cols;
};

// Element (i, j) widened to f32 (exact for bf16).
template <typename S>
__device__ __forceinline__ float operand_at(const Operand<S>& o, long long i, long long j) {
    return (i < o.rows && j < o.cols) ? float(o.data[o.off + i * o.rs + j * o.cs]) : 0.f;
}

// Four values from (i, j) on, down the rows or along the columns, each checked against the
// bounds (the edge tiles' and odd layouts' way; the others take one vector load).
template <typename S>
__device__ __forceinline__ float4 operand_load4(const Operand<S>& o, long long i, long long j,
                                                bool down_rows) {
    const long long di = down_rows ? 1 : 0, dj = down_rows ? 0 : 1;
    float4 v;
    v.x = operand_at(o, i, j);
    v.y = operand_at(o, i + di, j + dj);
    v.z = operand_at(o, i + 2 * di, j + 2 * dj);
    v.w = operand_at(o, i + 3 * di, j + 3 * dj);
    return v;
}

// True when vector loads of four consecutive elements along the contiguous direction are
// aligned everywhere in the matrix (its other stride and its offset multiples of 4).
template <typename S>
__device__ __forceinline__ bool operand_vectorisable(const Operand<S>& o, bool down_rows) {
    return o.off % 4 == 0 && (down_rows ? o.rs == 1 && o.cs % 4 == 0 : o.cs == 1 && o.rs % 4 == 0);
}

// Four elements as one load: 128 bits of f32, 64 bits of bf16.
template <typename S>
struct Quad;
template <>
struct Quad<float> {
    using type = float4;
};
template <>
struct Quad<bf16> {
    using type = bf16x4;
};
__device__ __forceinline__ float4 widen4(float4 v) { return v; }
__device__ __forceinline__ float4 widen4(bf16x4 q) {
    return make_float4(q.v[0], q.v[1], q.v[2], q.v[3]);
}
__device__ __forceinline__ void store4(float* out, float4 v) { *(float4*)out = v; }
__device__ __forceinline__ void store4(bf16* out, float4 v) {
    bf16x4 q;
    q.v[0] = bf16(v.x);
    q.v[1] = bf16(v.y);
    q.v[2] = bf16(v.z);
    q.v[3] = bf16(v.w);
    *(bf16x4*)out = q;
}

// Each thread loads 4 values of A's slice and 4 of B's: along the operand's contiguous
// direction (A down its rows when it is column-major, B along its columns when row-major),
// the other operand's way otherwise.
// sm_100's ptxas wants about 190 registers for this loop and spills under the 128 that two
// blocks per SM leave; there it gets them and one block per SM.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1000
#define MATMUL_F32_BLOCKS_PER_SM 1
#else
#define MATMUL_F32_BLOCKS_PER_SM 2
#endif

// The f32-accumulating kernel over elements S (f32, or bf16 widened as it is loaded into the
// shared tiles and rounded once as C is stored).
template <typename S>
__device__ __forceinline__ void matmul_wide(int m, int n, int k, const S* a, long long a_off,
                                            long long a_rs, long long a_cs, const S* b,
                                            long long b_off, long long b_rs, long long b_cs, S* c,
                                            long long c_off, long long ldc) {
    using Q = typename Quad<S>::type;
    __shared__ FTiles t;
    c += c_off;
    const int tid = threadIdx.x;
    const FPlace at = fplace(tid);
    const long long row0 = (long long)blockIdx.y * FM, col0 = (long long)blockIdx.x * FN;
    const Operand<S> A{a, a_off, a_rs, a_cs, m, k}, B{b, b_off, b_rs, b_cs, k, n};
    // A [FM x FK]: down its rows (4 rows of one k) or along k (4 k of one row)
    const bool a_down = a_rs == 1 && a_cs != 1;
    const int ai = a_down ? (tid & 31) * 4 : tid >> 1, ap = a_down ? tid >> 5 : (tid & 1) * 4;
    const bool a_vec = operand_vectorisable(A, a_down) && row0 + FM <= m;
    // B [FK x FN]: along its columns (4 columns of one k) or down k (4 k of one column)
    const bool b_down = b_rs == 1 && b_cs != 1;
    const int bj = b_down ? tid >> 1 : (tid & 31) * 4, bp = b_down ? (tid & 1) * 4 : tid >> 5;
    const bool b_vec = operand_vectorisable(B, b_down) && col0 + FN <= n;
    auto stash = [&](int buf, float4 ra, float4 rb) {
        if (a_down) {
            *(float4*)&t.a[buf][ap][ai] = ra;
        } else {
            t.a[buf][ap][ai] = ra.x;
            t.a[buf][ap + 1][ai] = ra.y;
            t.a[buf][ap + 2][ai] = ra.z;
            t.a[buf][ap + 3][ai] = ra.w;
        }
        if (b_down) {
            t.b[buf][bp][bj] = rb.x;
            t.b[buf][bp + 1][bj] = rb.y;
            t.b[buf][bp + 2][bj] = rb.z;
            t.b[buf][bp + 3][bj] = rb.w;
        } else {
            *(float4*)&t.b[buf][bp][bj] = rb;
        }
    };
    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
    const int slices = (k + FK - 1) / FK;
    if (a_vec && b_vec && k % FK == 0) {
        // the fast path: vector loads, the next slice in flight while this one is multiplied
        const Q* a_at = (const Q*)(a + a_off + (row0 + ai) * a_rs + ap * a_cs);
        const Q* b_at = (const Q*)(b + b_off + bp * b_rs + (col0 + bj) * b_cs);
        const long long a_step = FK * a_cs / 4, b_step = FK * b_rs / 4;
        stash(0, widen4(a_at[0]), widen4(b_at[0]));
        __syncthreads();
        for (int s = 0; s < slices; ++s) {
            const bool more = s + 1 < slices;
            float4 ra, rb;
            if (more) {
                a_at += a_step;
                b_at += b_step;
                ra = widen4(*a_at);
                rb = widen4(*b_at);
            }
            ftile_accumulate(acc, t.a[s & 1], t.b[s & 1], at);
            if (more) stash((s + 1) & 1, ra, rb);
            __syncthreads();
        }
    } else {
        // edge tiles and layouts without aligned vector loads: every value bounds-checked
        for (int s = 0; s < slices; ++s) {
            const int p0 = s * FK;
            stash(0, operand_load4(A, row0 + ai, p0 + ap, a_down),
                  operand_load4(B, p0 + bp, col0 + bj, b_down));
            __syncthreads();
            ftile_accumulate(acc, t.a[0], t.b[0], at);
            __syncthreads();
        }
    }
    // whole tiles whose rows start on a vector boundary (c_off too: a batch's matrices may not)
    // store 4 values at once; the edge tiles value by value. Two separate loops, so that the
    // compiler keeps the vector stores rather than merging both into predicated scalar ones.
    const bool vec_store = row0 + FM <= m && col0 + FN <= n && ldc % 4 == 0 && c_off % 4 == 0;
    if (vec_store) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const long long r = row0 + ftile_row(at, i);
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const long long c0 = col0 + ftile_col(at, half * 4);
                store4(&c[r * ldc + c0], make_float4(acc[i][half * 4], acc[i][half * 4 + 1],
                                                     acc[i][half * 4 + 2], acc[i][half * 4 + 3]));
            }
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const long long r = row0 + ftile_row(at, i);
        if (r >= m) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const long long col = col0 + ftile_col(at, j);
            if (col < n) c[r * ldc + col] = S(acc[i][j]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, MATMUL_F32_BLOCKS_PER_SM)
    matmul_f32(int m, int n, int k, const float* a, long long a_off, long long a_rs,
               long long a_cs, const float* b, long long b_off, long long b_rs, long long b_cs,
               float* c, long long c_off, long long ldc) {
    matmul_wide<float>(m, n, k, a, a_off, a_rs, a_cs, b, b_off, b_rs, b_cs, c, c_off, ldc);
}
// bf16 operands and result, f32 accumulation: the f32 kernel's tiling with 64-bit loads
extern "C" __global__ void __launch_bounds__(256, MATMUL_F32_BLOCKS_PER_SM)
    matmul_bf16(int m, int n, int k, const bf16* a, long long a_off, long long a_rs,
                long long a_cs, const bf16* b, long long b_off, long long b_rs, long long b_cs,
                bf16* c, long long c_off, long long ldc) {
    matmul_wide<bf16>(m, n, k, a, a_off, a_rs, a_cs, b, b_off, b_rs, b_cs, c, c_off, ldc);
}
extern "C" __global__ void matmul_f64(int m, int n, int k, const double* a, long long a_off,
                                      long long a_rs, long long a_cs, const double* b,
                                      long long b_off, long long b_rs, long long b_cs, double* c,
                                      long long c_off, long long ldc) {
    matmul_tile<double>(m, n, k, a, a_off, a_rs, a_cs, b, b_off, b_rs, b_cs, c + c_off, ldc);
}
