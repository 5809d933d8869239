// The LSTM cell's pointwise part, fused, forward and backward: the CUDA twins of cpu::lstm.
// Gates [batch, 4H] in the order i, f, g, o (pre-activations); c_prev [batch, H];
// out [batch, 2H] = [h' | c']. One thread per (row, hidden unit).

template <typename T>
__device__ T sigmoid(T x) {
    T e = exp(-fabs(x));
    T s = T(1) / (T(1) + e);
    return x >= T(0) ? s : e * s;
}

template <typename T>
__device__ void cell_forward(const T* gates, const T* c_prev, T* out, long long batch, long long h) {
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < batch * h;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long r = idx / h, j = idx % h;
        const T* a = gates + r * 4 * h;
        T i = sigmoid(a[j]), f = sigmoid(a[h + j]), g = tanh(a[2 * h + j]), o = sigmoid(a[3 * h + j]);
        T c = f * c_prev[r * h + j] + i * g;
        out[r * 2 * h + h + j] = c;
        out[r * 2 * h + j] = o * tanh(c);
    }
}

template <typename T>
__device__ void cell_backward(const T* gates, const T* c_prev, const T* out, const T* grad_out,
                              T* grad_gates, T* grad_c_prev, long long batch, long long h) {
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < batch * h;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long r = idx / h, j = idx % h;
        const T* a = gates + r * 4 * h;
        T i = sigmoid(a[j]), f = sigmoid(a[h + j]), g = tanh(a[2 * h + j]), o = sigmoid(a[3 * h + j]);
        T tc = tanh(out[r * 2 * h + h + j]);
        T dh = grad_out[r * 2 * h + j];
        T dc = grad_out[r * 2 * h + h + j] + dh * o * (T(1) - tc * tc);
        T* da = grad_gates + r * 4 * h;
        da[3 * h + j] = dh * tc * o * (T(1) - o);
        da[j] = dc * g * i * (T(1) - i);
        da[h + j] = dc * c_prev[r * h + j] * f * (T(1) - f);
        da[2 * h + j] = dc * i * (T(1) - g * g);
        grad_c_prev[r * h + j] = dc * f;
    }
}

#define LSTM(SUFFIX, T)                                                                         \
    extern "C" __global__ void lstm_forward_##SUFFIX(const T* gates, const T* c_prev, T* out,   \
                                                     long long batch, long long h) {            \
        cell_forward<T>(gates, c_prev, out, batch, h);                                          \
    }                                                                                           \
    extern "C" __global__ void lstm_backward_##SUFFIX(                                          \
        const T* gates, const T* c_prev, const T* out, const T* grad_out, T* grad_gates,        \
        T* grad_c_prev, long long batch, long long h) {                                         \
        cell_backward<T>(gates, c_prev, out, grad_out, grad_gates, grad_c_prev, batch, h);      \
    }

LSTM(f32, float)
LSTM(f64, double)
