// Emulation of the CUDA features our .cu files use, for g++ on a CPU (scripts/cuda-emulation): each block runs as
// blockDim.x std::threads, __syncthreads is a block barrier, __shared__ is a function static
// (blocks run one after another), __shfl_down_sync goes through a per-warp slot array.
#include <cmath>
#include <barrier>
#include <thread>
#include <vector>
#include <functional>
#include <cstdio>
#include <cstring>
using namespace std;
struct Dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local Dim3 threadIdx, blockIdx;
inline Dim3 blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;
inline std::barrier<>* warp_barriers[64];
inline double shfl_slots[1024];
#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
template <typename T> T __shfl_down_sync(unsigned, T v, int offset) {
    int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    shfl_slots[t] = (double)v;
    warp_barriers[warp]->arrive_and_wait();
    T r = (lane + offset < 32) ? (T)shfl_slots[t + offset] : v;
    warp_barriers[warp]->arrive_and_wait();
    return r;
}
inline void launch(Dim3 grid, Dim3 block, std::function<void()> kernel) {
    gridDim = grid; blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz) for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::barrier<> bar(block.x); block_barrier = &bar;
        std::vector<std::barrier<>*> wb;
        for (unsigned w = 0; w < (block.x + 31) / 32; ++w) { wb.push_back(new std::barrier<>(32)); warp_barriers[w] = wb.back(); }
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block.x; ++t) ts.emplace_back([&, t] { threadIdx = {t, 0, 0}; blockIdx = {bx, by, bz}; kernel(); });
        for (auto& th : ts) th.join();
        for (auto* b : wb) delete b;
    }
}
