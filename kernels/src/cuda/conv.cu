// Convolution forward as an implicit GEMM: y[n, co, p] = sum_k W[co, k] * cols[k, (n, p)], where
// k = (ci, tap) runs over a group's input channels and the active taps (all of them, or a
// PixelCNN mask's, so masked taps are never read) and cols is never built: the B tile is loaded
// straight from the image, zero in the padding. The tiling is tile.cuh's (as matmul.cu's): 64 x 64 tiles of C
// per block, 4 x 4 per thread, k steps of 16 through shared memory. Grid: (column tiles over
// n·ho·wo, row tiles over cout/groups, groups).

struct ConvShape {
    long long n, c_in, h, w, c_out, ho, wo;
    long long stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    long long groups, ntaps;
};

template <typename T>
__device__ void conv_forward_tile(const T* x, const T* w, const int* taps, T* y, ConvShape s) {
    __shared__ T as[BK][BM];
    __shared__ T bs[BK][BN];
    const long long cig = s.c_in / s.groups, cog = s.c_out / s.groups;
    const long long k = cig * s.ntaps, l = s.ho * s.wo, cols = s.n * l;
    const long long grp = blockIdx.z;
    const int tid = threadIdx.x;
    TILE_THREAD(tr, tc);
    const long long row0 = (long long)blockIdx.y * BM, col0 = (long long)blockIdx.x * BN;
    T acc[TM][TN];
    tile_zero(acc);
    for (long long p0 = 0; p0 < k; p0 += BK) {
        for (int e = tid; e < BM * BK; e += blockDim.x) {
            int i = e / BK, p = e % BK;
            long long r = row0 + i, pp = p0 + p;
            as[p][i] = (r < cog && pp < k) ? w[(grp * cog + r) * k + pp] : T(0);
        }
        for (int e = tid; e < BK * BN; e += blockDim.x) {
            int p = e / BN, j = e % BN;
            long long col = col0 + j, pp = p0 + p;
            T v = T(0);
            if (col < cols && pp < k) {
                long long img = col / l, pos = col % l, oh = pos / s.wo, ow = pos % s.wo;
                long long ci = pp / s.ntaps, t = pp % s.ntaps;
                long long ih = oh * s.stride_h - s.pad_top + taps[2 * t] * s.dil_h;
                long long iw = ow * s.stride_w - s.pad_left + taps[2 * t + 1] * s.dil_w;
                if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w)
                    v = x[((img * s.c_in + grp * cig + ci) * s.h + ih) * s.w + iw];
            }
            bs[p][j] = v;
        }
        __syncthreads();
        tile_accumulate(acc, as, bs, tr, tc);
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        long long r = row0 + tr * TM + i;
        for (int j = 0; j < TN; ++j) {
            long long col = col0 + tc * TN + j;
            if (r < cog && col < cols) {
                long long img = col / l, pos = col % l;
                y[(img * s.c_out + grp * cog + r) * l + pos] = acc[i][j];
            }
        }
    }
}

// dx = conv^T(dy, w), conv's input gradient and conv_transpose2d's forward, as an implicit GEMM:
// dx[n, ci, q] = sum over (co, tap) of W[co, ci, tap] * dy[n, co, p(q, tap)], where p(q, tap) is
// the output position that read input position q through that tap (none when q - tap offset is
// not on the stride grid or falls outside the output). Rows: a group's input channels; columns:
// (n, ih, iw); k: (co in the group, tap).
template <typename T>
__device__ void conv_input_grad_tile(const T* dy, const T* w, const int* taps, T* dx, ConvShape s) {
    __shared__ T as[BK][BM];
    __shared__ T bs[BK][BN];
    const long long cig = s.c_in / s.groups, cog = s.c_out / s.groups;
    const long long k = cog * s.ntaps, plane = s.h * s.w, cols = s.n * plane, l = s.ho * s.wo;
    const long long grp = blockIdx.z;
    const int tid = threadIdx.x;
    TILE_THREAD(tr, tc);
    const long long row0 = (long long)blockIdx.y * BM, col0 = (long long)blockIdx.x * BN;
    T acc[TM][TN];
    tile_zero(acc);
    for (long long p0 = 0; p0 < k; p0 += BK) {
        for (int e = tid; e < BM * BK; e += blockDim.x) {
            int i = e / BK, p = e % BK;
            long long ci = row0 + i, pp = p0 + p;
            T v = T(0);
            if (ci < cig && pp < k) {
                long long co = pp / s.ntaps, t = pp % s.ntaps;
                v = w[((grp * cog + co) * cig + ci) * s.ntaps + t];
            }
            as[p][i] = v;
        }
        for (int e = tid; e < BK * BN; e += blockDim.x) {
            int p = e / BN, j = e % BN;
            long long col = col0 + j, pp = p0 + p;
            T v = T(0);
            if (col < cols && pp < k) {
                long long img = col / plane, q = col % plane, ih = q / s.w, iw = q % s.w;
                long long co = pp / s.ntaps, t = pp % s.ntaps;
                long long sh = ih + s.pad_top - taps[2 * t] * s.dil_h;
                long long sw = iw + s.pad_left - taps[2 * t + 1] * s.dil_w;
                if (sh >= 0 && sw >= 0 && sh % s.stride_h == 0 && sw % s.stride_w == 0) {
                    long long oh = sh / s.stride_h, ow = sw / s.stride_w;
                    if (oh < s.ho && ow < s.wo)
                        v = dy[(img * s.c_out + grp * cog + co) * l + oh * s.wo + ow];
                }
            }
            bs[p][j] = v;
        }
        __syncthreads();
        tile_accumulate(acc, as, bs, tr, tc);
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        long long ci = row0 + tr * TM + i;
        for (int j = 0; j < TN; ++j) {
            long long col = col0 + tc * TN + j;
            if (ci < cig && col < cols) {
                long long img = col / plane, q = col % plane;
                dx[(img * s.c_in + grp * cig + ci) * plane + q] = acc[i][j];
            }
        }
    }
}

// dW = sum over samples of dy . cols(x)^T, as an implicit GEMM: dW[co, (ci, tap)] = sum over
// (n, p) of dy[n, co, p] * x[n, ci, at(p, tap)]. Rows: a group's output channels; columns: the
// group's (ci, tap); k: (n, output position), summed in a fixed order (deterministic).
template <typename T>
__device__ void conv_weight_grad_tile(const T* x, const T* dy, const int* taps, T* dw, ConvShape s) {
    __shared__ T as[BK][BM];
    __shared__ T bs[BK][BN];
    const long long cig = s.c_in / s.groups, cog = s.c_out / s.groups;
    const long long l = s.ho * s.wo, k = s.n * l, cols = cig * s.ntaps;
    const long long grp = blockIdx.z;
    const int tid = threadIdx.x;
    TILE_THREAD(tr, tc);
    const long long row0 = (long long)blockIdx.y * BM, col0 = (long long)blockIdx.x * BN;
    T acc[TM][TN];
    tile_zero(acc);
    for (long long p0 = 0; p0 < k; p0 += BK) {
        for (int e = tid; e < BM * BK; e += blockDim.x) {
            int i = e / BK, p = e % BK;
            long long co = row0 + i, pp = p0 + p;
            T v = T(0);
            if (co < cog && pp < k) {
                long long img = pp / l, pos = pp % l;
                v = dy[(img * s.c_out + grp * cog + co) * l + pos];
            }
            as[p][i] = v;
        }
        for (int e = tid; e < BK * BN; e += blockDim.x) {
            int p = e / BN, j = e % BN;
            long long col = col0 + j, pp = p0 + p;
            T v = T(0);
            if (col < cols && pp < k) {
                long long img = pp / l, pos = pp % l, oh = pos / s.wo, ow = pos % s.wo;
                long long ci = col / s.ntaps, t = col % s.ntaps;
                long long ih = oh * s.stride_h - s.pad_top + taps[2 * t] * s.dil_h;
                long long iw = ow * s.stride_w - s.pad_left + taps[2 * t + 1] * s.dil_w;
                if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w)
                    v = x[((img * s.c_in + grp * cig + ci) * s.h + ih) * s.w + iw];
            }
            bs[p][j] = v;
        }
        __syncthreads();
        tile_accumulate(acc, as, bs, tr, tc);
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        long long co = row0 + tr * TM + i;
        for (int j = 0; j < TN; ++j) {
            long long col = col0 + tc * TN + j;
            if (co < cog && col < cols) dw[(grp * cog + co) * cols + col] = acc[i][j];
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
                                                float* dw, ConvShape s) {
    conv_weight_grad_tile<float>(x, dy, taps, dw, s);
}
extern "C" __global__ void conv_weight_grad_f64(const double* x, const double* dy,
                                                const int* taps, double* dw, ConvShape s) {
    conv_weight_grad_tile<double>(x, dy, taps, dw, s);
}

extern "C" __global__ void conv_forward_f32(const float* x, const float* w, const int* taps,
                                            float* y, ConvShape s) {
    conv_forward_tile<float>(x, w, taps, y, s);
}
extern "C" __global__ void conv_forward_f64(const double* x, const double* w, const int* taps,
                                            double* y, ConvShape s) {
    conv_forward_tile<double>(x, w, taps, y, s);
}
