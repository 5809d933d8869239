// The emulated CUDA device (kernels::cuda::Gpu::emulated): every kernel of our .cu files,
// compiled for the host over prelude.h, launched by name the way the driver launches a
// kernel: a grid, a block and one pointer per parameter (cuLaunchKernel's kernelParams).
// Device pointers are host addresses. Built by kernels/build.rs.
#include "prelude.h"
#include "../bf16.cuh"
#include "../tile.cuh"
#include "../matmul.cu"
#include "../conv.cu"
#include "../fold.cuh"
#include "../reduce.cu"
#include "../elementwise.cu"
#include "../lstm.cu"
#include "../optim.cu"
#include "../index.cu"
#include "../norm.cu"
#include "../loss.cu"
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

// A kernel with a barrier, registered below as barrier-free on purpose: the emulation's own
// test (emulation/mod.rs) checks that such a launch fails rather than running wrongly.
extern "C" __global__ void emulation_probe_barrier(int* out) {
    out[threadIdx.x] = 1;
    __syncthreads();
}

namespace {

// Calls f with its parameters read from params[i] (each a pointer to the i-th value).
template <typename... A, size_t... I>
void call_unpacked(void (*f)(A...), void** params, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(params[I])...);
}

template <typename... A>
void call(void (*f)(A...), void** params) {
    call_unpacked(f, params, std::index_sequence_for<A...>{});
}

struct Kernel {
    const char* name;
    void (*launch)(void** params);
    // whether it has __syncthreads or warp shuffles (those run as fibers)
    bool barriers;
};

#define KERNEL(f) Kernel{#f, [](void** p) { call(f, p); }, false}
#define SYNCED(f) Kernel{#f, [](void** p) { call(f, p); }, true}

const Kernel KERNELS[] = {
    SYNCED(matmul_f32), SYNCED(matmul_f64), SYNCED(matmul_bf16),
    SYNCED(conv_forward_f32), SYNCED(conv_forward_f64), SYNCED(conv_forward_bf16),
    SYNCED(conv_input_grad_f32), SYNCED(conv_input_grad_f64), SYNCED(conv_input_grad_bf16),
    SYNCED(conv_weight_grad_f32), SYNCED(conv_weight_grad_f64), SYNCED(conv_weight_grad_bf16),
    KERNEL(sum_splits_f32), KERNEL(sum_splits_f64), KERNEL(sum_splits_bf16),
    KERNEL(unary_f32), KERNEL(unary_f64),
    KERNEL(binary_f32), KERNEL(binary_f64),
    KERNEL(copy_f32_f32), KERNEL(copy_f64_f64), KERNEL(copy_f32_f64), KERNEL(copy_f64_f32),
    KERNEL(copy_bf16_bf16), KERNEL(copy_f32_bf16), KERNEL(copy_bf16_f32),
    KERNEL(copy_f64_bf16), KERNEL(copy_bf16_f64),
    KERNEL(select_f32), KERNEL(select_f64), KERNEL(fill_f32), KERNEL(fill_f64), KERNEL(fill_bf16),
    SYNCED(sum_f32_rows), SYNCED(sum_f64_rows), SYNCED(max_f32_rows), SYNCED(max_f64_rows),
    KERNEL(sum_f32_columns), KERNEL(sum_f64_columns),
    KERNEL(max_f32_columns), KERNEL(max_f64_columns),
    KERNEL(lstm_forward_f32), KERNEL(lstm_forward_f64),
    KERNEL(lstm_backward_f32), KERNEL(lstm_backward_f64),
    KERNEL(adam_f32), KERNEL(adam_f64),
    KERNEL(sgd_f32), KERNEL(sgd_f64), KERNEL(rmsprop_f32), KERNEL(rmsprop_f64),
    KERNEL(take_f32), KERNEL(take_f64), KERNEL(sum_lists_f32), KERNEL(sum_lists_f64),
    SYNCED(bn_stats_f32), SYNCED(bn_stats_f64), KERNEL(bn_apply_f32), KERNEL(bn_apply_f64),
    SYNCED(bn_backward_sums_f32), SYNCED(bn_backward_sums_f64),
    KERNEL(bn_backward_apply_f32), KERNEL(bn_backward_apply_f64),
    KERNEL(softmax_cross_entropy_f32), KERNEL(softmax_cross_entropy_f64),
    KERNEL(softmax_cross_entropy_backward_f32), KERNEL(softmax_cross_entropy_backward_f64),
    KERNEL(emulation_probe_barrier),
};

const Kernel* find(const char* name) {
    for (const Kernel& k : KERNELS)
        if (std::string_view(k.name) == name) return &k;
    return nullptr;
}

}  // namespace

// 0: ran; 1: no kernel of that name; 2: a barrier could never be passed; 3: a bad launch shape.
extern "C" int genzoo_emulated_launch(const char* name, const unsigned grid[3],
                                      const unsigned block[3], void** params) {
    const Kernel* k = find(name);
    if (!k) return 1;
    if (block[1] != 1 || block[2] != 1 || block[0] == 0 || block[0] > 1024) return 3;
    std::function<void()> body = [&] { k->launch(params); };
    return launch({grid[0], grid[1], grid[2]}, {block[0], 1, 1}, body, k->barriers) ? 0 : 2;
}

extern "C" int genzoo_emulated_has(const char* name) { return find(name) != nullptr; }
