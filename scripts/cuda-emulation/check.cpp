// Runs our CUDA kernels' source on the CPU (prelude.h emulates the CUDA features they use)
// and checks them against direct definitions: matmul through strided operands, the three
// convolution products (the forward against the definition, the gradients by the adjoint
// identities) with groups, stride, padding, dilation and masked taps, and the reductions
// (warp shuffles included). A check of the kernels' logic where no GPU is at hand; it says
// nothing of launch limits, NVRTC or the driver, which only the GPU parity tests cover.
// Build and run: scripts/cuda-emulation/run.sh
#include "../../kernels/src/cuda/emulation/prelude.h"
#include "../../kernels/src/cuda/bf16.cuh"
#include "../../kernels/src/cuda/tile.cuh"
#include "../../kernels/src/cuda/matmul.cu"
#include "../../kernels/src/cuda/conv.cu"
#include "../../kernels/src/cuda/fold.cuh"
#include "../../kernels/src/cuda/reduce.cu"
// compiled (so type-checked) too; their formulas are the CPU twins' line for line
#include "../../kernels/src/cuda/elementwise.cu"
#include "../../kernels/src/cuda/lstm.cu"
#include "../../kernels/src/cuda/optim.cu"
#include <random>
static double rnd(std::mt19937& g) { return std::uniform_real_distribution<double>(-1, 1)(g); }
static int failures = 0;
static void check(const char* what, double err, double tol) {
    printf("%-40s rel err %.3g %s\n", what, err, err <= tol ? "ok" : "FAIL");
    if (!(err <= tol)) failures++;
}
static double rel(const vector<double>& a, const vector<double>& b) {
    double d = 0, n = 0;
    for (size_t i = 0; i < a.size(); ++i) { if (a[i] != a[i]) return INFINITY; d += (a[i]-b[i])*(a[i]-b[i]); n += b[i]*b[i]; }
    return n == 0 ? sqrt(d) : sqrt(d / n);
}
int main() {
    std::mt19937 g(1);
    // matmul with strided (transposed) operands, sizes off the tile
    for (auto [m, k, n] : vector<array<int,3>>{{65, 17, 33}, {130, 37, 70}, {1, 1, 1}}) {
        for (int ta = 0; ta < 2; ++ta) for (int tb = 0; tb < 2; ++tb) {
            vector<double> a(m * k), b(k * n), c(m * n, NAN), want(m * n, 0);
            for (auto& v : a) v = rnd(g); for (auto& v : b) v = rnd(g);
            long long ars = ta ? 1 : k, acs = ta ? m : 1, brs = tb ? 1 : n, bcs = tb ? k : 1;
            for (int i = 0; i < m; ++i) for (int j = 0; j < n; ++j) { double s = 0; for (int p = 0; p < k; ++p) s += a[i*ars + p*acs] * b[p*brs + j*bcs]; want[i*n+j] = s; }
            launch({(unsigned)((n + 63) / 64), (unsigned)((m + 63) / 64), 1}, {256}, [&] { matmul_f64(m, n, k, a.data(), 0, ars, acs, b.data(), 0, brs, bcs, c.data(), 0, n); });
            char what[64]; snprintf(what, 64, "matmul %dx%dx%d t%d%d", m, k, n, ta, tb);
            check(what, rel(c, want), 1e-12);
        }
    }
    // the f32 kernel's 128 x 128 tiling: its 128-bit fast path (interior tiles, aligned strides,
    // k a multiple of 8) and its bounds-checked path, in each of the four layouts
    for (auto [m, k, n] : vector<array<int,3>>{{256, 40, 384}, {257, 40, 260}, {131, 13, 129}, {1, 1, 1}}) {
        for (int ta = 0; ta < 2; ++ta) for (int tb = 0; tb < 2; ++tb) {
            vector<float> a(m * k), b(k * n), c(m * n, NAN);
            vector<double> want(m * n, 0), got(m * n);
            for (auto& v : a) v = (float)rnd(g); for (auto& v : b) v = (float)rnd(g);
            long long ars = ta ? 1 : k, acs = ta ? m : 1, brs = tb ? 1 : n, bcs = tb ? k : 1;
            for (int i = 0; i < m; ++i) for (int j = 0; j < n; ++j) { double s = 0; for (int p = 0; p < k; ++p) s += (double)a[i*ars + p*acs] * b[p*brs + j*bcs]; want[i*n+j] = s; }
            launch({(unsigned)((n + 127) / 128), (unsigned)((m + 127) / 128), 1}, {256}, [&] { matmul_f32(m, n, k, a.data(), 0, ars, acs, b.data(), 0, brs, bcs, c.data(), 0, n); });
            for (int i = 0; i < m * n; ++i) got[i] = c[i];
            char what[64]; snprintf(what, 64, "matmul f32 %dx%dx%d t%d%d", m, k, n, ta, tb);
            check(what, rel(got, want), 1e-6);
        }
    }
    // conv: forward against the definition, the two gradients by the adjoint identities
    struct Spec { long long n, ci, h, w, co, k, s, p, d, groups; bool masked; };
    for (Spec sp : vector<Spec>{{2, 3, 9, 7, 5, 3, 1, 1, 1, 1, false}, {2, 4, 11, 13, 6, 3, 2, 2, 2, 2, false}, {3, 2, 8, 8, 4, 4, 2, 1, 1, 1, false}, {2, 3, 6, 6, 70, 3, 1, 1, 1, 1, true}}) {
        vector<int> taps;
        for (int i = 0; i < sp.k; ++i) for (int j = 0; j < sp.k; ++j) {
            bool keep = !sp.masked || i < sp.k / 2 || (i == sp.k / 2 && j <= sp.k / 2);
            if (keep) { taps.push_back(i); taps.push_back(j); }
        }
        long long nt = taps.size() / 2;
        long long ho = (sp.h + 2*sp.p - sp.d*(sp.k-1) - 1) / sp.s + 1, wo = (sp.w + 2*sp.p - sp.d*(sp.k-1) - 1) / sp.s + 1;
        ConvShape s{sp.n, sp.ci, sp.h, sp.w, sp.co, ho, wo, sp.s, sp.s, sp.p, sp.p, sp.d, sp.d, sp.groups, nt};
        long long cig = sp.ci / sp.groups, cog = sp.co / sp.groups, kk = cig * nt;
        vector<double> x(sp.n*sp.ci*sp.h*sp.w), w(sp.co*kk), y(sp.n*sp.co*ho*wo, NAN), want(y.size(), 0), dy(y.size()), dx(x.size(), NAN), dw(w.size(), NAN);
        for (auto& v : x) v = rnd(g); for (auto& v : w) v = rnd(g); for (auto& v : dy) v = rnd(g);
        for (long long n = 0; n < sp.n; ++n) for (long long o = 0; o < sp.co; ++o) for (long long oh = 0; oh < ho; ++oh) for (long long ow = 0; ow < wo; ++ow) {
            long long grp = o / cog; double acc = 0;
            for (long long c = 0; c < cig; ++c) for (long long t = 0; t < nt; ++t) {
                long long ih = oh*sp.s - sp.p + taps[2*t]*sp.d, iw = ow*sp.s - sp.p + taps[2*t+1]*sp.d;
                if (ih >= 0 && ih < sp.h && iw >= 0 && iw < sp.w) acc += x[((n*sp.ci + grp*cig + c)*sp.h + ih)*sp.w + iw] * w[(o*cig + c)*nt + t];
            }
            want[((n*sp.co + o)*ho + oh)*wo + ow] = acc;
        }
        long long cols = sp.n * ho * wo;
        launch({(unsigned)((cols + 63) / 64), (unsigned)((cog + 63) / 64), (unsigned)sp.groups}, {256}, [&] { conv_forward_f64(x.data(), w.data(), taps.data(), y.data(), s); });
        check("conv forward", rel(y, want), 1e-12);
        long long xcols = sp.n * sp.h * sp.w;
        // the input gradient's tap table: phase_start, then the taps grouped by stride phase
        // (as kernels::cuda::conv::phase_table builds it); one launch per (group, phase)
        vector<int> itaps = taps;
        {
            vector<int> start(sp.s * sp.s + 1, 0), grouped;
            for (int ph = 0; ph < sp.s * sp.s; ++ph) {
                for (long long t = 0; t < nt; ++t)
                    if ((taps[2*t] * sp.d % sp.s) * sp.s + taps[2*t+1] * sp.d % sp.s == ph) grouped.push_back((int)t);
                start[ph + 1] = (int)grouped.size();
            }
            itaps.insert(itaps.end(), start.begin(), start.end());
            itaps.insert(itaps.end(), grouped.begin(), grouped.end());
        }
        long long xcols_phase = sp.n * ((sp.h + sp.s - 1) / sp.s) * ((sp.w + sp.s - 1) / sp.s);
        launch({(unsigned)((xcols_phase + 63) / 64), (unsigned)((cig + 63) / 64), (unsigned)(sp.groups * sp.s * sp.s)}, {256}, [&] { conv_input_grad_f64(dy.data(), w.data(), itaps.data(), dx.data(), s); });
        launch({(unsigned)((kk + 63) / 64), (unsigned)((cog + 63) / 64), (unsigned)sp.groups}, {256}, [&] { conv_weight_grad_f64(x.data(), dy.data(), taps.data(), dw.data(), s, 1, cols); });
        // the same reduction split in three ranges of k, summed by sum_splits
        {
            long long chunk = ((cols + 2) / 3 + 15) / 16 * 16;
            int splits = (int)((cols + chunk - 1) / chunk);
            vector<double> parts(splits * dw.size(), NAN), dw2(dw.size(), NAN);
            launch({(unsigned)((kk + 63) / 64), (unsigned)((cog + 63) / 64), (unsigned)(sp.groups * splits)}, {256}, [&] { conv_weight_grad_f64(x.data(), dy.data(), taps.data(), parts.data(), s, splits, chunk); });
            launch({1}, {256}, [&] { sum_splits_f64(parts.data(), dw2.data(), (long long)dw.size(), splits); });
            check("conv weight grad, k split", rel(dw2, dw), 1e-12);
        }
        double lhs = 0, mid = 0, rhs = 0;
        for (size_t i = 0; i < y.size(); ++i) lhs += want[i] * dy[i];
        for (size_t i = 0; i < x.size(); ++i) mid += x[i] * dx[i];
        for (size_t i = 0; i < w.size(); ++i) rhs += w[i] * dw[i];
        check("conv input grad (adjoint)", fabs(lhs - mid) / fabs(lhs), 1e-12);
        check("conv weight grad (adjoint)", fabs(lhs - rhs) / fabs(lhs), 1e-12);
    }
    // reductions: rows (warp shuffles) and columns
    for (auto [outer, r, inner] : vector<array<long long,3>>{{7, 1000, 1}, {3, 33, 65}, {2, 5, 1}}) {
        vector<double> x(outer*r*inner), out(outer*inner, NAN), want(outer*inner, 0), wmax(outer*inner, -INFINITY), omax(outer*inner, NAN);
        for (auto& v : x) v = rnd(g);
        for (long long o = 0; o < outer; ++o) for (long long j = 0; j < r; ++j) for (long long i = 0; i < inner; ++i) { want[o*inner+i] += x[(o*r+j)*inner+i]; wmax[o*inner+i] = fmax(wmax[o*inner+i], x[(o*r+j)*inner+i]); }
        if (inner == 1) {
            launch({(unsigned)outer}, {256}, [&] { sum_f64_rows(x.data(), out.data(), outer, r, 0.0); });
            launch({(unsigned)outer}, {256}, [&] { max_f64_rows(x.data(), omax.data(), outer, r, -INFINITY); });
        } else {
            unsigned blocks = (outer*inner + 255) / 256;
            launch({blocks}, {256}, [&] { sum_f64_columns(x.data(), out.data(), outer, r, inner, 0.0); });
            launch({blocks}, {256}, [&] { max_f64_columns(x.data(), omax.data(), outer, r, inner, -INFINITY); });
        }
        check("reduce sum", rel(out, want), 1e-12);
        check("reduce max", rel(omax, wmax), 0);
    }
    // broadcasting binary kernel: the index decomposition, against a direct broadcast loop
    {
        long long shape[3] = {3, 4, 5};
        vector<double> a(3 * 1 * 5), b(1 * 4 * 5), out(60, NAN), want(60);
        for (auto& v : a) v = rnd(g); for (auto& v : b) v = rnd(g);
        for (int i = 0; i < 3; ++i) for (int j = 0; j < 4; ++j) for (int k = 0; k < 5; ++k)
            want[(i * 4 + j) * 5 + k] = a[i * 5 + k] * b[j * 5 + k];
        Broadcast bc{};
        for (int d = 0; d < 3; ++d) bc.shape[d] = shape[d];
        bc.a[0] = 5; bc.a[1] = 0; bc.a[2] = 1;
        bc.b[0] = 0; bc.b[1] = 5; bc.b[2] = 1;
        bc.rank = 3;
        launch({1}, {256}, [&] { binary_f64(a.data(), b.data(), out.data(), 60, 2, 0.0, bc); });
        check("binary mul with broadcasting", rel(out, want), 0);
    }
    // LSTM cell: the gate layout (i, f, g, o) and [h | c] output, against the formulas
    {
        long long batch = 3, h = 37;
        vector<double> gates(batch * 4 * h), cp(batch * h), out(batch * 2 * h, NAN), want(batch * 2 * h);
        for (auto& v : gates) v = 3 * rnd(g); for (auto& v : cp) v = rnd(g);
        auto sig = [](double x) { return 1 / (1 + exp(-x)); };
        for (long long r = 0; r < batch; ++r) for (long long j = 0; j < h; ++j) {
            const double* a = &gates[r * 4 * h];
            double c = sig(a[h + j]) * cp[r * h + j] + sig(a[j]) * tanh(a[2 * h + j]);
            want[r * 2 * h + h + j] = c;
            want[r * 2 * h + j] = sig(a[3 * h + j]) * tanh(c);
        }
        launch({1}, {256}, [&] { lstm_forward_f64(gates.data(), cp.data(), out.data(), batch, h); });
        check("lstm cell forward", rel(out, want), 1e-14);
    }
    printf("%d failures\n", failures);
    return failures != 0;
}
