// Convolution forward as an implicit GEMM: y[n, co, p] = sum_k W[co, k] * cols[k, (n, p)], where
// k = (ci, tap) runs over a group's input channels and the active taps (all of them, or a
// PixelCNN mask's, so masked taps are never read) and cols is never built: the B tile is loaded
// straight from the image, zero in the padding. The tiling is tile.cuh's TilingFor: f32 and
// bf16 on matmul's 128 x 128 tiles of C per block (8 x 8 a thread, k steps of 8 through shared
// memory), f64 on 64 x 64 (4 x 4 a thread, k steps of 16). Grid: (column tiles over n·ho·wo,
// row tiles over cout/groups, groups). bf16 elements are widened to f32 as they are loaded,
// the products summed in f32 and rounded once as they are stored (bf16.cuh).

struct ConvShape {
    long long n, c_in, h, w, c_out, ho, wo;
    long long stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    long long groups, ntaps;
};

// Index arithmetic without a division per loaded element: each kernel splits its column index
// (fixed for the block) once per block and its k index once per k slice, by BN or BK threads,
// into offsets and positions kept in shared memory (-1 offsets mark the padding past the last
// column or k); the loaders then only add and compare. Dividing in 64 bits is a software
// routine on the GPU, which the loaders called per element before.

template <typename S>
__device__ void conv_forward_tile(const S* x, const S* w, const int* taps, S* y, ConvShape s) {
    using L = typename TilingFor<S>::type;
    using T = typename L::T;
    __shared__ typename L::Shared tiles;
    // per column (n, oh, ow): its group's channels in x, its place in y, its window's corner
    __shared__ long long col_x[L::N], col_y[L::N];
    __shared__ int col_ih[L::N], col_iw[L::N];
    // per k (ci, tap) of the slice: the channel's offset and the tap's
    __shared__ long long k_x[L::K];
    __shared__ int k_dh[L::K], k_dw[L::K];
    const long long cig = s.c_in / s.groups, cog = s.c_out / s.groups;
    const long long k = cig * s.ntaps, l = s.ho * s.wo, cols = s.n * l, plane = s.h * s.w;
    const long long grp = blockIdx.z;
    const int tid = threadIdx.x;
    const long long row0 = (long long)blockIdx.y * L::M, col0 = (long long)blockIdx.x * L::N;
    if (tid < L::N) {
        long long col = col0 + tid;
        if (col < cols) {
            long long img = col / l, pos = col % l;
            col_x[tid] = (img * s.c_in + grp * cig) * plane;
            col_y[tid] = (img * s.c_out + grp * cog) * l + pos;
            col_ih[tid] = (int)((pos / s.wo) * s.stride_h - s.pad_top);
            col_iw[tid] = (int)((pos % s.wo) * s.stride_w - s.pad_left);
        } else {
            col_x[tid] = -1;
        }
    }
    __syncthreads();
    T acc[L::RM][L::RN];
    for (int i = 0; i < L::RM; ++i)
        for (int j = 0; j < L::RN; ++j) acc[i][j] = T(0);
    for (long long p0 = 0; p0 < k; p0 += L::K) {
        if (tid < L::K) {
            long long pp = p0 + tid;
            if (pp < k) {
                long long ci = pp / s.ntaps, t = pp % s.ntaps;
                k_x[tid] = ci * plane;
                k_dh[tid] = (int)(taps[2 * t] * s.dil_h);
                k_dw[tid] = (int)(taps[2 * t + 1] * s.dil_w);
            } else {
                k_x[tid] = -1;
            }
        }
        __syncthreads();
        for (int e = tid; e < L::M * L::K; e += blockDim.x) {
            int i = e / L::K, p = e % L::K;
            long long r = row0 + i, pp = p0 + p;
            tiles.a[p][i] = (r < cog && pp < k) ? T(w[(grp * cog + r) * k + pp]) : T(0);
        }
        for (int e = tid; e < L::K * L::N; e += blockDim.x) {
            int p = e / L::N, j = e % L::N;
            T v = T(0);
            if (col_x[j] >= 0 && k_x[p] >= 0) {
                int ih = col_ih[j] + k_dh[p], iw = col_iw[j] + k_dw[p];
                if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w)
                    v = T(x[col_x[j] + k_x[p] + (long long)ih * s.w + iw]);
            }
            tiles.b[p][j] = v;
        }
        __syncthreads();
        L::accumulate(acc, tiles);
        __syncthreads();
    }
    for (int i = 0; i < L::RM; ++i) {
        long long r = row0 + L::row(i);
        for (int j = 0; j < L::RN; ++j) {
            int c = L::col(j);
            if (r < cog && col_x[c] >= 0) y[col_y[c] + r * l] = S(acc[i][j]);
        }
    }
}

// dx = conv^T(dy, w), conv's input gradient and conv_transpose2d's forward, as an implicit GEMM:
// dx[n, ci, q] = sum over (co, tap) of W[co, ci, tap] * dy[n, co, p(q, tap)], where p(q, tap) is
// the output position that read input position q through that tap (none when q - tap offset is
// not on the stride grid or falls outside the output). Rows: a group's input channels; columns:
// (n, ih, iw); k: (co in the group, tap).
//
// With a stride, the taps that reach an input position depend only on its phase (its padded
// row and column modulo the stride): a stride-2 4 x 4 kernel reaches each position through 4
// of its 16 taps. So blockIdx.z = group * phases + phase, a block's columns are the positions
// of one phase and its k runs over that phase's taps alone; no zero is multiplied. `taps`
// holds, after the 2 * ntaps offsets, phase_start[phases + 1] and the taps' indices grouped by
// phase (kernels::cuda::conv::phase_table).
template <typename S>
__device__ void conv_input_grad_tile(const S* dy, const S* w, const int* taps, S* dx, ConvShape s) {
    using L = typename TilingFor<S>::type;
    using T = typename L::T;
    __shared__ typename L::Shared tiles;
    // per column (n, ih, iw): its group's channels in dy, its place in dx, its padded position
    __shared__ long long col_dy[L::N], col_dx[L::N];
    __shared__ int col_h[L::N], col_w[L::N];
    // per k (co, tap) of the slice: the channel's offset in dy, its weights' start, the tap
    __shared__ long long k_dy[L::K], k_w[L::K];
    __shared__ int k_dh[L::K], k_dw[L::K];
    const int stride_h = (int)s.stride_h, stride_w = (int)s.stride_w;
    const int phases = stride_h * stride_w;
    const long long grp = blockIdx.z / phases;
    const int phase = blockIdx.z % phases, ph = phase / stride_w, pw = phase % stride_w;
    const int* phase_start = taps + 2 * s.ntaps;
    const int* phase_tap = phase_start + phases + 1 + phase_start[phase];
    const long long phase_taps = phase_start[phase + 1] - phase_start[phase];
    // this phase's input rows: ih0, ih0 + stride, ... below h (columns likewise)
    const int ih0 = (int)(((ph - s.pad_top) % stride_h + stride_h) % stride_h);
    const int iw0 = (int)(((pw - s.pad_left) % stride_w + stride_w) % stride_w);
    const long long rows_p = ih0 < s.h ? (s.h - ih0 + stride_h - 1) / stride_h : 0;
    const long long cols_p = iw0 < s.w ? (s.w - iw0 + stride_w - 1) / stride_w : 0;
    const long long cig = s.c_in / s.groups, cog = s.c_out / s.groups;
    const long long k = cog * phase_taps, plane = s.h * s.w, l = s.ho * s.wo;
    const long long grid_p = rows_p * cols_p, cols = s.n * grid_p;
    const int tid = threadIdx.x;
    const long long row0 = (long long)blockIdx.y * L::M, col0 = (long long)blockIdx.x * L::N;
    if (col0 >= cols) return; // the grid is sized for the largest phase
    if (tid < L::N) {
        long long col = col0 + tid;
        if (col < cols) {
            long long img = col / grid_p, q = col % grid_p;
            long long ih = ih0 + (q / cols_p) * stride_h, iw = iw0 + (q % cols_p) * stride_w;
            col_dy[tid] = (img * s.c_out + grp * cog) * l;
            col_dx[tid] = (img * s.c_in + grp * cig) * plane + ih * s.w + iw;
            col_h[tid] = (int)(ih + s.pad_top);
            col_w[tid] = (int)(iw + s.pad_left);
        } else {
            col_dy[tid] = -1;
        }
    }
    __syncthreads();
    T acc[L::RM][L::RN];
    for (int i = 0; i < L::RM; ++i)
        for (int j = 0; j < L::RN; ++j) acc[i][j] = T(0);
    for (long long p0 = 0; p0 < k; p0 += L::K) {
        if (tid < L::K) {
            long long pp = p0 + tid;
            if (pp < k) {
                long long co = pp / phase_taps;
                int t = phase_tap[pp % phase_taps];
                k_dy[tid] = co * l;
                k_w[tid] = (grp * cog + co) * cig * s.ntaps + t;
                k_dh[tid] = (int)(taps[2 * t] * s.dil_h);
                k_dw[tid] = (int)(taps[2 * t + 1] * s.dil_w);
            } else {
                k_dy[tid] = -1;
            }
        }
        __syncthreads();
        for (int e = tid; e < L::M * L::K; e += blockDim.x) {
            int i = e / L::K, p = e % L::K;
            long long ci = row0 + i;
            tiles.a[p][i] = (ci < cig && k_dy[p] >= 0) ? T(w[k_w[p] + ci * s.ntaps]) : T(0);
        }
        for (int e = tid; e < L::K * L::N; e += blockDim.x) {
            int p = e / L::N, j = e % L::N;
            T v = T(0);
            if (col_dy[j] >= 0 && k_dy[p] >= 0) {
                // on the stride grid by the phase: the divisions are exact
                int sh = col_h[j] - k_dh[p], sw = col_w[j] - k_dw[p];
                if (sh >= 0 && sw >= 0) {
                    int oh = sh / stride_h, ow = sw / stride_w;
                    if (oh < s.ho && ow < s.wo)
                        v = T(dy[col_dy[j] + k_dy[p] + (long long)oh * s.wo + ow]);
                }
            }
            tiles.b[p][j] = v;
        }
        __syncthreads();
        L::accumulate(acc, tiles);
        __syncthreads();
    }
    for (int i = 0; i < L::RM; ++i) {
        long long ci = row0 + L::row(i);
        for (int j = 0; j < L::RN; ++j) {
            int c = L::col(j);
            if (ci < cig && col_dy[c] >= 0) dx[col_dx[c] + ci * plane] = S(acc[i][j]);
        }
    }
}

// dW = sum over samples of dy . cols(x)^T, as an implicit GEMM: dW[co, (ci, tap)] = sum over
// (n, p) of dy[n, co, p] * x[n, ci, at(p, tap)]. Rows: a group's output channels; columns: the
// group's (ci, tap); k: (n, output position), summed in a fixed order (deterministic).
// The product is small and its k long (n·ho·wo), so k is split in `splits` ranges of `chunk`
// (a multiple of BK) over blockIdx.z = group * splits + split, each writing its partial sum to
// its own slice of dw (dw[split][c_out][cols]); sum_splits adds the slices in order. dw holds
// O: the elements' own type, or for bf16 the f32 partial sums (rounded once, by sum_splits).
template <typename S, typename O>
__device__ void conv_weight_grad_tile(const S* x, const S* dy, const int* taps, O* dw, ConvShape s,
                                      int splits, long long chunk) {
    using L = typename TilingFor<S>::type;
    using T = typename L::T;
    __shared__ typename L::Shared tiles;
    // per column (ci, tap): the channel's offset in x and the tap's
    __shared__ long long col_x[L::N];
    __shared__ int col_dh[L::N], col_dw[L::N];
    // per k (n, output position) of the slice: the sample's group in x, its place in dy, and
    // the window's corner
    __shared__ long long k_x[L::K], k_dy[L::K];
    __shared__ int k_ih[L::K], k_iw[L::K];
    const long long cig = s.c_in / s.groups, cog = s.c_out / s.groups;
    const long long l = s.ho * s.wo, cols = cig * s.ntaps, plane = s.h * s.w;
    const long long grp = blockIdx.z / splits, split = blockIdx.z % splits;
    const long long k_begin = split * chunk, k = min(s.n * l, k_begin + chunk);
    dw += split * s.c_out * cols;
    const int tid = threadIdx.x;
    const long long row0 = (long long)blockIdx.y * L::M, col0 = (long long)blockIdx.x * L::N;
    if (tid < L::N) {
        long long col = col0 + tid;
        if (col < cols) {
            long long ci = col / s.ntaps, t = col % s.ntaps;
            col_x[tid] = ci * plane;
            col_dh[tid] = (int)(taps[2 * t] * s.dil_h);
            col_dw[tid] = (int)(taps[2 * t + 1] * s.dil_w);
        } else {
            col_x[tid] = -1;
        }
    }
    __syncthreads();
    T acc[L::RM][L::RN];
    for (int i = 0; i < L::RM; ++i)
        for (int j = 0; j < L::RN; ++j) acc[i][j] = T(0);
    for (long long p0 = k_begin; p0 < k; p0 += L::K) {
        if (tid < L::K) {
            long long pp = p0 + tid;
            if (pp < k) {
                long long img = pp / l, pos = pp % l;
                k_x[tid] = (img * s.c_in + grp * cig) * plane;
                k_dy[tid] = (img * s.c_out + grp * cog) * l + pos;
                k_ih[tid] = (int)((pos / s.wo) * s.stride_h - s.pad_top);
                k_iw[tid] = (int)((pos % s.wo) * s.stride_w - s.pad_left);
            } else {
                k_x[tid] = -1;
            }
        }
        __syncthreads();
        for (int e = tid; e < L::M * L::K; e += blockDim.x) {
            int i = e / L::K, p = e % L::K;
            long long co = row0 + i;
            tiles.a[p][i] = (co < cog && k_x[p] >= 0) ? T(dy[k_dy[p] + co * l]) : T(0);
        }
        for (int e = tid; e < L::K * L::N; e += blockDim.x) {
            int p = e / L::N, j = e % L::N;
            T v = T(0);
            if (col_x[j] >= 0 && k_x[p] >= 0) {
                int ih = k_ih[p] + col_dh[j], iw = k_iw[p] + col_dw[j];
                if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w)
                    v = T(x[k_x[p] + col_x[j] + (long long)ih * s.w + iw]);
            }
            tiles.b[p][j] = v;
        }
        __syncthreads();
        L::accumulate(acc, tiles);
        __syncthreads();
    }
    for (int i = 0; i < L::RM; ++i) {
        long long co = row0 + L::row(i);
        for (int j = 0; j < L::RN; ++j) {
            long long col = col0 + L::col(j);
            if (co < cog && col < cols) dw[(grp * cog + co) * cols + col] = O(acc[i][j]);
        }
    }
}

extern "C" __global__ void conv_input_grad_f32(const float* dy, const float* w, const int* taps,
                                               float* dx, ConvShape s) {
    conv_input_grad_tile<float>(dy, w, taps, dx, s);
}
extern "C" __global__ void conv_input_grad_f64(const double* dy, const double* w, const int* taps,
                                               double* dx, ConvShape s) {
    conv_input_grad_tile<double>(dy, w, taps, dx, s);
}
extern "C" __global__ void conv_weight_grad_f32(const float* x, const float* dy, const int* taps,
                                                float* dw, ConvShape s, int splits,
                                                long long chunk) {
    conv_weight_grad_tile<float, float>(x, dy, taps, dw, s, splits, chunk);
}
extern "C" __global__ void conv_weight_grad_f64(const double* x, const double* dy,
                                                const int* taps, double* dw, ConvShape s,
                                                int splits, long long chunk) {
    conv_weight_grad_tile<double, double>(x, dy, taps, dw, s, splits, chunk);
}
// bf16: always f32 partial sums (one split or more), which sum_splits_bf16 rounds
extern "C" __global__ void conv_weight_grad_bf16(const bf16* x, const bf16* dy, const int* taps,
                                                 float* dw_parts, ConvShape s, int splits,
                                                 long long chunk) {
    conv_weight_grad_tile<bf16, float>(x, dy, taps, dw_parts, s, splits, chunk);
}
extern "C" __global__ void conv_input_grad_bf16(const bf16* dy, const bf16* w, const int* taps,
                                                bf16* dx, ConvShape s) {
    conv_input_grad_tile<bf16>(dy, w, taps, dx, s);
}

// out[i] = sum over s of part[s * len + i], the splits added in order (so deterministic), in
// the parts' type P and stored as O.
template <typename P, typename O>
__device__ void sum_splits(const P* part, O* out, long long len, int splits) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        P acc = part[i];
        for (int s = 1; s < splits; ++s) acc += part[s * len + i];
        out[i] = O(acc);
    }
}
extern "C" __global__ void sum_splits_f32(const float* part, float* out, long long len,
                                          int splits) {
    sum_splits<float, float>(part, out, len, splits);
}
extern "C" __global__ void sum_splits_f64(const double* part, double* out, long long len,
                                          int splits) {
    sum_splits<double, double>(part, out, len, splits);
}
extern "C" __global__ void sum_splits_bf16(const float* part, bf16* out, long long len,
                                           int splits) {
    sum_splits<float, bf16>(part, out, len, splits);
}

extern "C" __global__ void conv_forward_f32(const float* x, const float* w, const int* taps,
                                            float* y, ConvShape s) {
    conv_forward_tile<float>(x, w, taps, y, s);
}
extern "C" __global__ void conv_forward_f64(const double* x, const double* w, const int* taps,
                                            double* y, ConvShape s) {
    conv_forward_tile<double>(x, w, taps, y, s);
}
extern "C" __global__ void conv_forward_bf16(const bf16* x, const bf16* w, const int* taps,
                                             bf16* y, ConvShape s) {
    conv_forward_tile<bf16>(x, w, taps, y, s);
}
