// Elementwise kernels: unary maps over contiguous buffers and broadcasting binary maps over
// strided views. The kind codes are those of kernels::cuda::elementwise (UnaryKind and
// BinaryKind of the CPU path); every formula is the CPU twin's, so results agree to rounding.

#define MAX_RANK 6

template <typename T>
__device__ T unary_op(int kind, T x, T p0, T p1) {
    switch (kind) {
    case 0: return -x;
    case 1: return exp(x);
    case 2: return log(x);
    case 3: return sqrt(x);
    case 4: return fabs(x);
    case 5: {  // sigmoid, split by sign so that exp never overflows
        T e = exp(-fabs(x));
        T s = T(1) / (T(1) + e);
        return x >= T(0) ? s : e * s;
    }
    case 6: return tanh(x);
    case 7: return x > T(0) ? x : T(0);
    case 8: return x > T(0) ? x : x * p0;
    case 9: return fmax(x, T(0)) + log1p(exp(-fabs(x)));
    case 10: return x > T(0) ? x : p0 * (exp(x) - T(1));
    case 11: return p0 == T(2) ? x * x : pow(x, p0);
    case 12: return fmin(fmax(x, p0), p1);
    case 13: return x + p0;
    case 14: return x * p0;
    case 15: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case 16: return x > p0 ? T(1) : T(0);
    case 17: return (x >= p0 && x <= p1) ? T(1) : T(0);
    }
    return x;
}

template <typename T>
__device__ T binary_op(int kind, T x, T y, T p0) {
    switch (kind) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x * y;
    case 3: return x / y;
    case 4: return fmax(x, y);
    case 5: return fmin(x, y);
    case 6: return x == y ? T(1) : T(0);
    case 7: return x > y ? T(1) : T(0);
    case 8: return x >= y ? T(1) : T(0);
    case 9: return x < y ? T(1) : T(0);
    case 10: return y > T(0) ? x : x * p0;  // the gradient x through leaky_relu(y)
    }
    return x;
}

// The output's shape and each operand's strides (elements; 0 along broadcast axes).
struct Broadcast {
    long long shape[MAX_RANK];
    long long a[MAX_RANK];
    long long b[MAX_RANK];
    long long offset_a;
    long long offset_b;
    int rank;
};

// The offsets in a and in b (through s's strides and offsets) of position i of s.shape,
// taken in row-major order.
__device__ __forceinline__ void broadcast_offsets(long long i, const Broadcast& s, long long& ia,
                                                  long long& ib) {
    ia = s.offset_a;
    ib = s.offset_b;
    for (int d = s.rank - 1; d >= 0; --d) {
        long long idx = i % s.shape[d];
        i /= s.shape[d];
        ia += idx * s.a[d];
        ib += idx * s.b[d];
    }
}

template <typename T>
__device__ void unary_kernel(const T* x, T* y, unsigned long long n, int kind, T p0, T p1) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        y[i] = unary_op<T>(kind, x[i], p0, p1);
    }
}

template <typename T>
__device__ void binary_kernel(const T* a, const T* b, T* out, unsigned long long n, int kind, T p0,
                              Broadcast s) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        long long ia, ib;
        broadcast_offsets((long long)i, s, ia, ib);
        out[i] = binary_op<T>(kind, a[ia], b[ib], p0);
    }
}

extern "C" __global__ void unary_f32(const float* x, float* y, unsigned long long n, int kind,
                                     float p0, float p1) {
    unary_kernel<float>(x, y, n, kind, p0, p1);
}
extern "C" __global__ void unary_f64(const double* x, double* y, unsigned long long n, int kind,
                                     double p0, double p1) {
    unary_kernel<double>(x, y, n, kind, p0, p1);
}
extern "C" __global__ void binary_f32(const float* a, const float* b, float* out,
                                      unsigned long long n, int kind, float p0, Broadcast s) {
    binary_kernel<float>(a, b, out, n, kind, p0, s);
}
extern "C" __global__ void binary_f64(const double* a, const double* b, double* out,
                                      unsigned long long n, int kind, double p0, Broadcast s) {
    binary_kernel<double>(a, b, out, n, kind, p0, s);
}

// The i-th position of the shape s.shape, read from x through s.a (offset s.offset_a) and
// written to out through s.b (offset s.offset_b), converted to the output's type: a strided
// copy made contiguous (s.b the contiguous strides), a copy into a slab of a larger tensor
// (concat), or a cast.
template <typename S, typename D>
__device__ void copy_kernel(const S* x, D* out, unsigned long long n, Broadcast s) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        long long ix, io;
        broadcast_offsets((long long)i, s, ix, io);
        out[io] = (D)x[ix];
    }
}

extern "C" __global__ void copy_f32_f32(const float* x, float* out, unsigned long long n,
                                        Broadcast s) {
    copy_kernel<float, float>(x, out, n, s);
}
extern "C" __global__ void copy_f64_f64(const double* x, double* out, unsigned long long n,
                                        Broadcast s) {
    copy_kernel<double, double>(x, out, n, s);
}
extern "C" __global__ void copy_f32_f64(const float* x, double* out, unsigned long long n,
                                        Broadcast s) {
    copy_kernel<float, double>(x, out, n, s);
}
extern "C" __global__ void copy_f64_f32(const double* x, float* out, unsigned long long n,
                                        Broadcast s) {
    copy_kernel<double, float>(x, out, n, s);
}
// bf16: copies, and casts to and from f32 and f64 (rounded as bf16.cuh says)
extern "C" __global__ void copy_bf16_bf16(const bf16* x, bf16* out, unsigned long long n,
                                          Broadcast s) {
    copy_kernel<bf16, bf16>(x, out, n, s);
}
extern "C" __global__ void copy_f32_bf16(const float* x, bf16* out, unsigned long long n,
                                         Broadcast s) {
    copy_kernel<float, bf16>(x, out, n, s);
}
extern "C" __global__ void copy_bf16_f32(const bf16* x, float* out, unsigned long long n,
                                         Broadcast s) {
    copy_kernel<bf16, float>(x, out, n, s);
}
extern "C" __global__ void copy_f64_bf16(const double* x, bf16* out, unsigned long long n,
                                         Broadcast s) {
    copy_kernel<double, bf16>(x, out, n, s);
}
extern "C" __global__ void copy_bf16_f64(const bf16* x, double* out, unsigned long long n,
                                         Broadcast s) {
    copy_kernel<bf16, double>(x, out, n, s);
}

// out[i] = mask != 0 ? a : b, all three read through their strides (s.a for a, s.b for b,
// mask_strides for the mask) at the i-th position of the output's shape.
template <typename T>
__device__ void select_kernel(const T* mask, const T* a, const T* b, T* out, unsigned long long n,
                              Broadcast s, Broadcast m) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        long long ia, ib, im, unused;
        broadcast_offsets((long long)i, s, ia, ib);
        broadcast_offsets((long long)i, m, im, unused);
        out[i] = mask[im] != T(0) ? a[ia] : b[ib];
    }
}

extern "C" __global__ void select_f32(const float* mask, const float* a, const float* b,
                                      float* out, unsigned long long n, Broadcast s, Broadcast m) {
    select_kernel<float>(mask, a, b, out, n, s, m);
}
extern "C" __global__ void select_f64(const double* mask, const double* a, const double* b,
                                      double* out, unsigned long long n, Broadcast s,
                                      Broadcast m) {
    select_kernel<double>(mask, a, b, out, n, s, m);
}

template <typename T>
__device__ void fill_kernel(T* out, unsigned long long n, T value) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        out[i] = value;
}

extern "C" __global__ void fill_f32(float* out, unsigned long long n, float value) {
    fill_kernel<float>(out, n, value);
}
extern "C" __global__ void fill_f64(double* out, unsigned long long n, double value) {
    fill_kernel<double>(out, n, value);
}
extern "C" __global__ void fill_bf16(bf16* out, unsigned long long n, bf16 value) {
    fill_kernel<bf16>(out, n, value);
}
