// The CUDA our .cu files use, emulated on the CPU, so that the same sources compile with a host
// C++ compiler (kernels/build.rs, scripts/cuda-emulation) and run as the emulated device.
//
// A launch runs its blocks one after another on the calling thread. A block's threads are
// fibers (ucontext), switched only at __syncthreads and warp shuffles: each waits at the
// barrier until every thread of its block (or warp) that has not returned arrives, the CUDA
// rule. So a kernel runs exactly as many threads as the grid says, with the barriers it
// really has, in one OS thread; __shared__ is a function static, which is right because
// blocks do not overlap. A barrier that can never be passed (some threads return or wait at
// another barrier while others wait) is reported as an error of the launch, not a hang.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <ucontext.h>
#include <vector>
using namespace std;

struct Dim3 { unsigned x = 1, y = 1, z = 1; };
inline Dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

namespace emulation {

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber {
    ucontext_t context;
    vector<char> stack;
    State state = State::Ready;
    unsigned x = 0;
};

struct Block {
    ucontext_t scheduler;
    vector<Fiber> fibers;
    unsigned current = 0;
    const std::function<void()>* kernel = nullptr;
    bool deadlock = false;
};

inline Block block;
inline double shuffle_slots[1024];
// A launch of a kernel without barriers runs its threads one after another as plain calls (no
// fibers); a barrier met there is recorded as a misuse and fails the launch.
inline bool direct = false;
inline bool misused = false;

// Releases a barrier when every live thread of its scope waits at it.
inline void release_if_complete(State at, unsigned warp) {
    bool all = true;
    for (auto& f : block.fibers) {
        bool in_scope = at == State::AtBlockBarrier || f.x / 32 == warp;
        if (in_scope && f.state != State::Done && f.state != at) all = false;
    }
    if (!all) return;
    for (auto& f : block.fibers) {
        bool in_scope = at == State::AtBlockBarrier || f.x / 32 == warp;
        if (in_scope && f.state == at) f.state = State::Ready;
    }
}

inline void wait_at(State at) {
    if (direct) {
        misused = true;
        return;
    }
    Fiber& me = block.fibers[block.current];
    me.state = at;
    release_if_complete(at, me.x / 32);
    swapcontext(&me.context, &block.scheduler);
    threadIdx = {me.x, 0, 0};
}

inline void fiber_main() {
    (*block.kernel)();
    Fiber& me = block.fibers[block.current];
    me.state = State::Done;
    // threads that return no longer count at any barrier
    release_if_complete(State::AtBlockBarrier, 0);
    release_if_complete(State::AtWarpBarrier, me.x / 32);
    // returning resumes uc_link, the scheduler
}

// Runs one block's threads to completion; false if a barrier can never be passed.
inline bool run_block(unsigned threads) {
    if (direct) {
        for (unsigned t = 0; t < threads; ++t) {
            threadIdx = {t, 0, 0};
            (*block.kernel)();
        }
        return !misused;
    }
    constexpr size_t STACK = 256 * 1024;
    if (block.fibers.size() < threads) block.fibers.resize(threads);
    for (unsigned t = 0; t < threads; ++t) {
        Fiber& f = block.fibers[t];
        if (f.stack.empty()) f.stack.resize(STACK);
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.data();
        f.context.uc_stack.ss_size = f.stack.size();
        f.context.uc_link = &block.scheduler;
        makecontext(&f.context, fiber_main, 0);
        f.state = State::Ready;
        f.x = t;
    }
    for (unsigned t = threads; t < block.fibers.size(); ++t) block.fibers[t].state = State::Done;
    while (true) {
        bool ran = false, live = false;
        for (unsigned t = 0; t < threads; ++t) {
            Fiber& f = block.fibers[t];
            if (f.state != State::Done) live = true;
            if (f.state != State::Ready) continue;
            ran = true;
            block.current = t;
            threadIdx = {t, 0, 0};
            swapcontext(&block.scheduler, &f.context);
        }
        if (!live) return true;
        if (!ran) return false;
    }
}

}  // namespace emulation

inline void __syncthreads() { emulation::wait_at(emulation::State::AtBlockBarrier); }

template <typename T> T __shfl_down_sync(unsigned, T v, int offset) {
    const unsigned t = threadIdx.x, lane = t & 31;
    emulation::shuffle_slots[t] = (double)v;
    emulation::wait_at(emulation::State::AtWarpBarrier);
    T r = (lane + offset < 32 && t + offset < blockDim.x) ? (T)emulation::shuffle_slots[t + offset] : v;
    emulation::wait_at(emulation::State::AtWarpBarrier);
    return r;
}

// Runs `kernel` over `grid` blocks of `block` threads (1-D blocks: all ours are). Returns false
// (with the block named on stderr) when a barrier could never be passed, or, for a kernel
// launched as barrier-free (`barriers` false), when it meets one.
inline bool launch(Dim3 grid, Dim3 block, std::function<void()> kernel, bool barriers = true) {
    gridDim = grid;
    blockDim = block;
    emulation::direct = !barriers;
    emulation::misused = false;
    emulation::block.kernel = &kernel;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = {bx, by, bz};
                if (!emulation::run_block(block.x)) {
                    fprintf(stderr, "emulated launch: block (%u, %u, %u) %s\n", bx, by, bz,
                            emulation::misused ? "met a barrier in a kernel launched as barrier-free"
                                               : "can never pass a barrier");
                    return false;
                }
            }
    return true;
}
