// Batch normalisation in training mode, the CUDA twins of cpu::norm over x [n, c, s]. The
// per-channel sums run one block per channel: threads stride over the channel's n·s values,
// summing in double as the CPU does, then fold.cuh's block fold.
// The elementwise passes run one thread per element.

// The block's sum of v, valid in thread 0 (every thread must call it).
__device__ double block_sum(double v) { return block_fold<double, false>(v, 0.0); }

// The flat index of value k (of n·s) of channel ch.
__device__ long long channel_value(long long k, long long ch, long long c, long long s) {
    return ((k / s) * c + ch) * s + k % s;
}

// mean and biased variance (about the mean as rounded to T, as the CPU subtracts it) per channel.
template <typename T>
__device__ void bn_stats(const T* x, T* mean, T* var, long long n, long long c, long long s) {
    __shared__ double shared_mean;
    const long long m = n * s;
    for (long long ch = blockIdx.x; ch < c; ch += gridDim.x) {
        double acc = 0.0;
        for (long long k = threadIdx.x; k < m; k += blockDim.x)
            acc += (double)x[channel_value(k, ch, c, s)];
        acc = block_sum(acc);
        if (threadIdx.x == 0) {
            const T mu = (T)(acc / (double)m);
            mean[ch] = mu;
            shared_mean = (double)mu;
        }
        __syncthreads();
        const double mu = shared_mean;
        double sq = 0.0;
        for (long long k = threadIdx.x; k < m; k += blockDim.x) {
            const double d = (double)x[channel_value(k, ch, c, s)] - mu;
            sq += d * d;
        }
        sq = block_sum(sq);
        if (threadIdx.x == 0) var[ch] = (T)(sq / (double)m);
    }
}

// y = (x - mean) · w / sqrt(var + eps) + b.
template <typename T>
__device__ void bn_apply(const T* x, const T* mean, const T* var, const T* w, const T* b, T* y,
                         long long n, long long c, long long s, double eps) {
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n * c * s;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long ch = (idx / s) % c;
        const T scale = (T)((double)w[ch] / sqrt((double)var[ch] + eps));
        y[idx] = (x[idx] - mean[ch]) * scale + b[ch];
    }
}

// Per channel from Σdy and Σdy(x - mean): dw, db, and the coefficients of dx in coef [c, 3]:
// a = w / sqrt(var + eps), k1 = Σdy / m, k2 = Σdy(x - mean) / (m (var + eps)).
template <typename T>
__device__ void bn_backward_sums(const T* x, const T* dy, const T* mean, const T* var,
                                 const T* w, T* coef, T* dw, T* db, long long n, long long c,
                                 long long s, double eps) {
    const long long m = n * s;
    for (long long ch = blockIdx.x; ch < c; ch += gridDim.x) {
        const double mu = (double)mean[ch];
        double sum_dy = 0.0, sum_dy_xc = 0.0;
        for (long long k = threadIdx.x; k < m; k += blockDim.x) {
            const long long at = channel_value(k, ch, c, s);
            const double g = (double)dy[at];
            sum_dy += g;
            sum_dy_xc += g * ((double)x[at] - mu);
        }
        sum_dy = block_sum(sum_dy);
        sum_dy_xc = block_sum(sum_dy_xc);
        if (threadIdx.x == 0) {
            const double invstd = 1.0 / sqrt((double)var[ch] + eps);
            coef[3 * ch] = (T)((double)w[ch] * invstd);
            coef[3 * ch + 1] = (T)(sum_dy / (double)m);
            coef[3 * ch + 2] = (T)(sum_dy_xc / (double)m * invstd * invstd);
            dw[ch] = (T)(sum_dy_xc * invstd);
            db[ch] = (T)sum_dy;
        }
    }
}

// dx = a (dy - k1 - (x - mean) k2).
template <typename T>
__device__ void bn_backward_apply(const T* x, const T* dy, const T* mean, const T* coef, T* dx,
                                  long long n, long long c, long long s) {
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < n * c * s;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long ch = (idx / s) % c;
        const T a = coef[3 * ch], k1 = coef[3 * ch + 1], k2 = coef[3 * ch + 2];
        dx[idx] = a * (dy[idx] - k1 - (x[idx] - mean[ch]) * k2);
    }
}

#define BATCH_NORM(T, SUFFIX)                                                                  \
    extern "C" __global__ void bn_stats_##SUFFIX(const T* x, T* mean, T* var, long long n,     \
                                                 long long c, long long s) {                   \
        bn_stats<T>(x, mean, var, n, c, s);                                                    \
    }                                                                                          \
    extern "C" __global__ void bn_apply_##SUFFIX(const T* x, const T* mean, const T* var,      \
                                                 const T* w, const T* b, T* y, long long n,    \
                                                 long long c, long long s, double eps) {       \
        bn_apply<T>(x, mean, var, w, b, y, n, c, s, eps);                                      \
    }                                                                                          \
    extern "C" __global__ void bn_backward_sums_##SUFFIX(                                      \
        const T* x, const T* dy, const T* mean, const T* var, const T* w, T* coef, T* dw,      \
        T* db, long long n, long long c, long long s, double eps) {                            \
        bn_backward_sums<T>(x, dy, mean, var, w, coef, dw, db, n, c, s, eps);                  \
    }                                                                                          \
    extern "C" __global__ void bn_backward_apply_##SUFFIX(const T* x, const T* dy,             \
                                                          const T* mean, const T* coef, T* dx, \
                                                          long long n, long long c,            \
                                                          long long s) {                       \
        bn_backward_apply<T>(x, dy, mean, coef, dx, n, c, s);                                  \
    }

BATCH_NORM(float, f32)
BATCH_NORM(double, f64)
