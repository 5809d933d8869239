// The index ops (index_select / gather and their adjoints index_add / scatter_add) as two
// kernels over index plans the host builds from its indices (kernels::cuda::index):
//   take:      out[k] = x[source[k]], or 0 where source[k] < 0 (a state outside the grid)
//   sum_lists: out[k] = the sum of src[positions[t]] for t in offsets[k] .. offsets[k + 1],
//              in the order listed (ascending source positions: the CPU's order, so the sums
//              are the same bits and no two threads write one element).

template <typename T>
__device__ void take_kernel(const T* x, const long long* source, T* out, unsigned long long n) {
    for (unsigned long long k = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; k < n;
         k += (unsigned long long)gridDim.x * blockDim.x)
        out[k] = source[k] < 0 ? T(0) : x[source[k]];
}

template <typename T>
__device__ void sum_lists_kernel(const T* src, const long long* offsets,
                                 const long long* positions, T* out, unsigned long long n) {
    for (unsigned long long k = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; k < n;
         k += (unsigned long long)gridDim.x * blockDim.x) {
        T acc = T(0);
        for (long long t = offsets[k]; t < offsets[k + 1]; ++t) acc += src[positions[t]];
        out[k] = acc;
    }
}

extern "C" __global__ void take_f32(const float* x, const long long* source, float* out,
                                    unsigned long long n) {
    take_kernel<float>(x, source, out, n);
}
extern "C" __global__ void take_f64(const double* x, const long long* source, double* out,
                                    unsigned long long n) {
    take_kernel<double>(x, source, out, n);
}
extern "C" __global__ void sum_lists_f32(const float* src, const long long* offsets,
                                         const long long* positions, float* out,
                                         unsigned long long n) {
    sum_lists_kernel<float>(src, offsets, positions, out, n);
}
extern "C" __global__ void sum_lists_f64(const double* src, const long long* offsets,
                                         const long long* positions, double* out,
                                         unsigned long long n) {
    sum_lists_kernel<double>(src, offsets, positions, out, n);
}
