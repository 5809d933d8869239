//! Every CUDA kernel against its CPU twin on random inputs, sizes that are not multiples of any
//! tile, outputs poisoned (NaN) before each run so that an element left unwritten shows.
//!
//! Each test runs on the emulated device (the same .cu sources compiled for the host, launched
//! through the same wrappers with the same grids: every machine, CI included) and on the GPU
//! when there is one. Without a GPU the GPU half prints once that it skipped; with
//! REQUIRE_GPU=1 a missing GPU fails them (the GPU machine's check script sets it).

use half::bf16;
use kernels::cpu::elementwise::{binary, unary};
use kernels::cpu::matmul::{matmul, MatRef};
use kernels::cuda::elementwise::{binary_into, unary_into, GpuFloat, GpuView};
use kernels::cuda::matmul::{matmul_into, GpuMat};
use kernels::cuda::{Gpu, GpuBuffer};
use kernels::desc::{BinaryKind, UnaryKind};
use kernels::float::Float;
use kernels::strided::{contiguous_strides, View};
use std::sync::{Arc, Once};

/// The devices to check: the emulated one, and GPU 0 when present.
fn devices() -> Vec<Arc<Gpu>> {
    static SKIPPED: Once = Once::new();
    let mut devices = vec![Gpu::emulated()];
    match Gpu::open(0) {
        Ok(gpu) => devices.push(gpu),
        Err(e) => {
            assert!(
                std::env::var("REQUIRE_GPU").as_deref() != Ok("1"),
                "REQUIRE_GPU=1 but the GPU cannot be used: {e}"
            );
            SKIPPED.call_once(|| eprintln!("cuda_parity: no GPU ({e}): the emulated device only"));
        }
    }
    devices
}

/// Reproducible values in [lo, hi).
fn values<T: Float>(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<T> {
    let mut s = seed.wrapping_mul(6364136223846793005) ^ 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            T::from_f64(lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64))
        })
        .collect()
}

/// ‖got − want‖ / ‖want‖ (the absolute norm when want is all zeros); any NaN fails.
fn relative_error<T: Float>(got: &[T], want: &[T]) -> f64 {
    assert_eq!(got.len(), want.len());
    if got.iter().any(|v| v.is_nan()) {
        return f64::INFINITY;
    }
    let diff: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g.to_f64() - w.to_f64()).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|w| w.to_f64().powi(2)).sum();
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

fn poisoned<T: GpuFloat>(gpu: &Gpu, n: usize) -> GpuBuffer<T> {
    gpu.upload(&vec![T::from_f64(f64::NAN); n.max(1)]).unwrap()
}

const UNARY: [(UnaryKind, f64, f64); 18] = [
    (UnaryKind::Neg, -3.0, 3.0),
    (UnaryKind::Exp, -5.0, 5.0),
    (UnaryKind::Log, 0.01, 10.0),
    (UnaryKind::Sqrt, 0.0, 10.0),
    (UnaryKind::Abs, -3.0, 3.0),
    (UnaryKind::Sigmoid, -30.0, 30.0),
    (UnaryKind::Tanh, -5.0, 5.0),
    (UnaryKind::Relu, -3.0, 3.0),
    (UnaryKind::LeakyRelu(0.2), -3.0, 3.0),
    (UnaryKind::Softplus, -30.0, 30.0),
    (UnaryKind::Elu(1.5), -3.0, 3.0),
    (UnaryKind::Powf(2.5), 0.0, 4.0),
    (UnaryKind::Clamp(-0.5, 0.7), -3.0, 3.0),
    (UnaryKind::AddScalar(0.25), -3.0, 3.0),
    (UnaryKind::MulScalar(-1.5), -3.0, 3.0),
    (UnaryKind::Sign, -3.0, 3.0),
    (UnaryKind::GtScalar(0.1), -3.0, 3.0),
    (UnaryKind::InRange(-1.0, 1.0), -3.0, 3.0),
];

fn unary_parity<T: GpuFloat>(gpu: &Gpu, tol: f64) {
    for (i, &(kind, lo, hi)) in UNARY.iter().enumerate() {
        for n in [1, 255, 257, 100_003] {
            let x: Vec<T> = values(n, i as u64 * 31 + n as u64, lo, hi);
            let want = unary(&x, kind);
            let dx = gpu.upload(&x).unwrap();
            let mut out = poisoned::<T>(gpu, n);
            unary_into(gpu, &dx, &mut out, n, kind).unwrap();
            let got = gpu.download(&out).unwrap();
            let err = relative_error(&got[..n], &want);
            assert!(
                err <= tol,
                "{} {} n = {n}: relative error {err}",
                kind.name(),
                T::SUFFIX
            );
        }
    }
}

#[test]
fn unary_kernels_match_the_cpu() {
    for gpu in devices() {
        unary_parity::<f32>(&gpu, 1e-5);
        unary_parity::<f64>(&gpu, 1e-12);
    }
}

/// Strides of a contiguous tensor of shape `s` seen with the output's shape: 0 along its
/// size-1 (broadcast) axes.
fn broadcast_strides(s: &[usize]) -> Vec<usize> {
    contiguous_strides(s)
        .iter()
        .zip(s)
        .map(|(&st, &d)| if d == 1 { 0 } else { st })
        .collect()
}

fn binary_parity<T: GpuFloat>(gpu: &Gpu, tol: f64) {
    let kinds = [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
        BinaryKind::Maximum,
        BinaryKind::Minimum,
        BinaryKind::Gt,
        BinaryKind::Ge,
        BinaryKind::Lt,
        BinaryKind::LeakyReluGrad(0.2),
    ];
    // (output shape, a's shape, b's shape); size-1 axes broadcast
    let cases: [(&[usize], &[usize], &[usize]); 4] = [
        (&[1000], &[1000], &[1000]),
        (&[3, 4, 5], &[3, 1, 5], &[1, 4, 5]),
        (&[7, 33, 65], &[7, 33, 65], &[1, 1, 65]),
        (
            &[2, 3, 1, 5, 2, 3],
            &[2, 1, 1, 5, 1, 3],
            &[1, 3, 1, 1, 2, 3],
        ),
    ];
    for kind in kinds {
        for (c, &(shape, sa, sb)) in cases.iter().enumerate() {
            let n: usize = shape.iter().product();
            let a: Vec<T> = values(sa.iter().product(), c as u64, -2.0, 2.0);
            let b: Vec<T> = values(sb.iter().product(), c as u64 + 99, 0.5, 2.5);
            let (ta, tb) = (broadcast_strides(sa), broadcast_strides(sb));
            let cpu = |data, strides| View {
                data,
                shape,
                strides,
                offset: 0,
            };
            let want = binary(cpu(&a, &ta), cpu(&b, &tb), kind);
            let (da, db) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
            let mut out = poisoned::<T>(gpu, n);
            let dev = |data, strides| GpuView {
                data,
                strides,
                offset: 0,
            };
            binary_into(gpu, dev(&da, &ta), dev(&db, &tb), shape, &mut out, kind).unwrap();
            let got = gpu.download(&out).unwrap();
            let err = relative_error(&got[..n], &want);
            assert!(
                err <= tol,
                "{} {} {shape:?}: relative error {err}",
                kind.name(),
                T::SUFFIX
            );
        }
    }
}

#[test]
fn binary_kernels_match_the_cpu() {
    for gpu in devices() {
        binary_parity::<f32>(&gpu, 1e-5);
        binary_parity::<f64>(&gpu, 1e-12);
    }
}

/// The matmul parity cases, (m, k, n, offset of both operands in their buffers): sizes off
/// every tile, and the f32 and bf16 kernel's vector path (interior 128 x 128 tiles, k a multiple
/// of 8, aligned strides and offsets) against its bounds-checked one (offset 1 or 2 defeats the
/// alignment).
const MATMUL_CASES: [(usize, usize, usize, usize); 9] = [
    (1, 1, 1, 0),
    (65, 17, 33, 0),
    (130, 257, 70, 0),
    (64, 64, 64, 0),
    (3, 500, 129, 0),
    (256, 40, 384, 0),
    (257, 64, 260, 4),
    (384, 96, 256, 1),
    (300, 200, 260, 2),
];

fn matmul_parity<T: GpuFloat>(gpu: &Gpu, tol: f64) {
    for (m, k, n, offset) in MATMUL_CASES {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a: Vec<T> = values(offset + m * k, (m * 7 + k) as u64, -1.0, 1.0);
            let b: Vec<T> = values(offset + k * n, (k * 5 + n) as u64, -1.0, 1.0);
            // stored transposed when asked: element (i, j) of A at offset + j * m + i
            let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
            let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
            let mut want = vec![T::ZERO; m * n];
            let cpu = |data, row_stride, col_stride| MatRef {
                data,
                offset,
                row_stride,
                col_stride,
            };
            matmul(m, k, n, cpu(&a, a_rs, a_cs), cpu(&b, b_rs, b_cs), &mut want);
            let (da, db) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
            let mut out = poisoned::<T>(gpu, m * n);
            let dev = |data, row_stride, col_stride| GpuMat {
                data,
                offset,
                row_stride,
                col_stride,
            };
            let (ga, gb) = (dev(&da, a_rs, a_cs), dev(&db, b_rs, b_cs));
            matmul_into(gpu, m, k, n, ga, gb, &mut out).unwrap();
            let got = gpu.download(&out).unwrap();
            let err = relative_error(&got[..m * n], &want);
            assert!(
                err <= tol,
                "matmul {} {m}x{k}x{n} offset {offset} (transposed {ta}, {tb}): relative error {err}",
                T::SUFFIX
            );
        }
    }
}

#[test]
fn matmul_matches_the_cpu() {
    for gpu in devices() {
        matmul_parity::<f32>(&gpu, 1e-4);
        matmul_parity::<f64>(&gpu, 1e-12);
    }
}

#[test]
fn opening_a_missing_device_is_an_error_not_a_panic() {
    // Without a driver (this machine) `open` answers with an error; on a GPU machine, an
    // ordinal past the last device does.
    match Gpu::open(0) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(_) => assert!(Gpu::open(1 << 20).is_err()),
    }
}

fn reduce_parity<T: GpuFloat>(gpu: &Gpu, tol: f64) {
    use kernels::cuda::reduce::{reduce_into, Fold};
    for &(outer, r, inner) in &[
        (7, 1000, 1),
        (3, 33, 65),
        (1, 100_003, 1),
        (64, 784, 1),
        (2, 5, 1000),
    ] {
        let x: Vec<T> = values(outer * r * inner, (outer + r + inner) as u64, -1.0, 1.0);
        for fold in [Fold::Sum, Fold::Max] {
            let want = match fold {
                Fold::Sum => kernels::cpu::reduce::sum(&x, outer, r, inner),
                Fold::Max => kernels::cpu::reduce::max(&x, outer, r, inner),
            };
            let dx = gpu.upload(&x).unwrap();
            let mut out = poisoned::<T>(gpu, outer * inner);
            reduce_into(gpu, &dx, (outer, r, inner), fold, &mut out).unwrap();
            let got = gpu.download(&out).unwrap();
            let err = relative_error(&got[..outer * inner], &want);
            assert!(
                err <= tol,
                "{fold:?} {} over [{outer}, {r}, {inner}]: relative error {err}",
                T::SUFFIX
            );
        }
    }
}

#[test]
fn reductions_match_the_cpu() {
    for gpu in devices() {
        reduce_parity::<f32>(&gpu, 1e-5);
        reduce_parity::<f64>(&gpu, 1e-12);
    }
}

fn adam_parity<T: GpuFloat>(gpu: &Gpu, tol: f64) {
    use kernels::cuda::optim::adam;
    use kernels::desc::AdamStep;
    let n = 100_003;
    for decoupled in [false, true] {
        let mut p: Vec<T> = values(n, 1, -1.0, 1.0);
        let (mut m, mut v) = (vec![T::ZERO; n], vec![T::ZERO; n]);
        let (mut dp, mut dm, mut dv) = (
            gpu.upload(&p).unwrap(),
            gpu.upload(&m).unwrap(),
            gpu.upload(&v).unwrap(),
        );
        for step in 1..=5u64 {
            let g: Vec<T> = values(n, 10 + step, -0.5, 0.5);
            let h = AdamStep {
                step,
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-2,
                decoupled,
            };
            kernels::cpu::optim::adam(&mut p, &g, &mut m, &mut v, &h);
            let dg = gpu.upload(&g).unwrap();
            adam(gpu, &mut dp, &dg, &mut dm, &mut dv, n, h).unwrap();
        }
        for (name, got, want) in [("p", &dp, &p), ("m", &dm, &m), ("v", &dv, &v)] {
            let got = gpu.download(got).unwrap();
            let err = relative_error(&got, want);
            assert!(
                err <= tol,
                "adam {} {name} (decoupled {decoupled}): relative error {err}",
                T::SUFFIX
            );
        }
    }
}

#[test]
fn adam_matches_the_cpu() {
    for gpu in devices() {
        adam_parity::<f32>(&gpu, 1e-5);
        adam_parity::<f64>(&gpu, 1e-12);
    }
}

fn lstm_parity<T: GpuFloat + kernels::float::Float>(gpu: &Gpu, tol: f64) {
    use kernels::cpu::lstm::{lstm_cell_backward, lstm_cell_forward, Rows};
    use kernels::cuda::lstm as gpu_lstm;
    for &(batch, h) in &[(1, 1), (3, 17), (64, 256), (7, 300)] {
        let gates: Vec<T> = values(batch * 4 * h, (batch * h) as u64, -3.0, 3.0);
        let c_prev: Vec<T> = values(batch * h, 7 + h as u64, -2.0, 2.0);
        let grad_out: Vec<T> = values(batch * 2 * h, 11 + batch as u64, -1.0, 1.0);
        let mut out = vec![T::ZERO; batch * 2 * h];
        lstm_cell_forward(
            batch,
            h,
            Rows::contiguous(&gates, 4 * h),
            Rows::contiguous(&c_prev, h),
            &mut out,
        );
        let (mut dg, mut dc) = (vec![T::ZERO; batch * 4 * h], vec![T::ZERO; batch * h]);
        lstm_cell_backward(
            batch,
            h,
            Rows::contiguous(&gates, 4 * h),
            Rows::contiguous(&c_prev, h),
            Rows::contiguous(&out, 2 * h),
            Rows::contiguous(&grad_out, 2 * h),
            &mut dg,
            &mut dc,
        );
        let (g_d, c_d, go_d) = (
            gpu.upload(&gates).unwrap(),
            gpu.upload(&c_prev).unwrap(),
            gpu.upload(&grad_out).unwrap(),
        );
        let mut out_d = poisoned::<T>(gpu, batch * 2 * h);
        gpu_lstm::lstm_cell_forward(gpu, (batch, h), &g_d, &c_d, &mut out_d).unwrap();
        let (mut dg_d, mut dc_d) = (
            poisoned::<T>(gpu, batch * 4 * h),
            poisoned::<T>(gpu, batch * h),
        );
        gpu_lstm::lstm_cell_backward(
            gpu,
            (batch, h),
            &g_d,
            &c_d,
            &out_d,
            &go_d,
            &mut dg_d,
            &mut dc_d,
        )
        .unwrap();
        for (name, got, want) in [
            ("out", &out_d, &out),
            ("grad_gates", &dg_d, &dg),
            ("grad_c_prev", &dc_d, &dc),
        ] {
            let got = gpu.download(got).unwrap();
            let err = relative_error(&got[..want.len()], want);
            assert!(
                err <= tol,
                "lstm {name} {} batch {batch} hidden {h}: relative error {err}",
                T::SUFFIX
            );
        }
    }
}

#[test]
fn lstm_cell_matches_the_cpu() {
    for gpu in devices() {
        lstm_parity::<f32>(&gpu, 1e-5);
        lstm_parity::<f64>(&gpu, 1e-12);
    }
}

fn batch_norm_parity<T: GpuFloat + kernels::float::Float>(gpu: &Gpu, tol: f64) {
    use kernels::cpu::norm::{batch_norm_backward, batch_norm_forward};
    use kernels::cuda::norm as gpu_norm;
    // s = 1 (BatchNorm1d), ragged s, and DCGAN's D layer
    for &(n, c, s) in &[(5, 3, 1), (4, 2, 13), (3, 300, 7), (64, 128, 49)] {
        let len = n * c * s;
        let x: Vec<T> = values(len, (n + c + s) as u64, -2.0, 3.0);
        let dy: Vec<T> = values(len, 5 + c as u64, -1.0, 1.0);
        let (w, b): (Vec<T>, Vec<T>) = (values(c, 7, 0.5, 1.5), values(c, 9, -1.0, 1.0));
        let eps = 1e-5;
        let (y, mean, var) = batch_norm_forward(&x, &w, &b, (n, c, s), eps);
        let (dx, dw, db) = batch_norm_backward(&x, &dy, &w, &mean, &var, (n, c, s), eps);
        let (x_d, dy_d, w_d, b_d) = (
            gpu.upload(&x).unwrap(),
            gpu.upload(&dy).unwrap(),
            gpu.upload(&w).unwrap(),
            gpu.upload(&b).unwrap(),
        );
        let (mut y_d, mut mean_d, mut var_d) = (
            poisoned::<T>(gpu, len),
            poisoned::<T>(gpu, c),
            poisoned::<T>(gpu, c),
        );
        gpu_norm::batch_norm_forward(
            gpu,
            (n, c, s),
            eps,
            &x_d,
            (&w_d, &b_d),
            &mut y_d,
            &mut mean_d,
            &mut var_d,
        )
        .unwrap();
        let (mut dx_d, mut dw_d, mut db_d) = (
            poisoned::<T>(gpu, len),
            poisoned::<T>(gpu, c),
            poisoned::<T>(gpu, c),
        );
        gpu_norm::batch_norm_backward(
            gpu,
            (n, c, s),
            eps,
            (&x_d, &dy_d),
            (&w_d, &mean_d, &var_d),
            &mut dx_d,
            &mut dw_d,
            &mut db_d,
        )
        .unwrap();
        for (name, got, want) in [
            ("y", &y_d, &y),
            ("mean", &mean_d, &mean),
            ("var", &var_d, &var),
            ("dx", &dx_d, &dx),
            ("dw", &dw_d, &dw),
            ("db", &db_d, &db),
        ] {
            let got = gpu.download(got).unwrap();
            let err = relative_error(&got[..want.len()], want);
            assert!(
                err <= tol,
                "batch norm {name} {} [{n}, {c}, {s}]: relative error {err}",
                T::SUFFIX
            );
        }
    }
}

#[test]
fn batch_norm_matches_the_cpu() {
    for gpu in devices() {
        batch_norm_parity::<f32>(&gpu, 1e-5);
        batch_norm_parity::<f64>(&gpu, 1e-12);
    }
}

fn softmax_cross_entropy_parity<T: GpuFloat + kernels::float::Float>(gpu: &Gpu, tol: f64) {
    use kernels::cpu::loss::{softmax_cross_entropy, softmax_cross_entropy_backward};
    use kernels::cuda::loss as gpu_loss;
    // classes along the last axis, along a middle one, and the grey PixelCNN's 256 levels
    for &(outer, r, inner) in &[(7, 5, 1), (3, 4, 6), (2, 256, 49)] {
        let (len, positions) = (outer * r * inner, outer * inner);
        let x: Vec<T> = values(len, (r + inner) as u64, -4.0, 4.0);
        let grad: Vec<T> = values(positions, 3 + r as u64, -1.0, 1.0);
        let targets: Vec<usize> = (0..positions).map(|p| (p * 7 + 3) % r).collect();
        let (loss, lse) = softmax_cross_entropy(&x, (outer, r, inner), &targets);
        let dx = softmax_cross_entropy_backward(&x, (outer, r, inner), &targets, &lse, &grad);
        let (x_d, grad_d) = (gpu.upload(&x).unwrap(), gpu.upload(&grad).unwrap());
        let (mut loss_d, mut lse_d) =
            (poisoned::<T>(gpu, positions), poisoned::<T>(gpu, positions));
        let dims = (outer, r, inner);
        gpu_loss::softmax_cross_entropy(gpu, &x_d, dims, &targets, &mut loss_d, &mut lse_d)
            .unwrap();
        let mut dx_d = poisoned::<T>(gpu, len);
        gpu_loss::softmax_cross_entropy_backward(
            gpu, &x_d, dims, &targets, &lse_d, &grad_d, &mut dx_d,
        )
        .unwrap();
        for (name, got, want) in [
            ("loss", &loss_d, &loss),
            ("lse", &lse_d, &lse),
            ("dx", &dx_d, &dx),
        ] {
            let got = gpu.download(got).unwrap();
            let err = relative_error(&got[..want.len()], want);
            assert!(
                err <= tol,
                "softmax cross-entropy {name} {} [{outer}, {r}, {inner}]: relative error {err}",
                T::SUFFIX
            );
        }
        // a target out of range is an error, not a read past the column
        let mut bad = targets.clone();
        bad[0] = r;
        assert!(
            gpu_loss::softmax_cross_entropy(gpu, &x_d, dims, &bad, &mut loss_d, &mut lse_d)
                .is_err()
        );
    }
}

#[test]
fn softmax_cross_entropy_matches_the_cpu() {
    for gpu in devices() {
        softmax_cross_entropy_parity::<f32>(&gpu, 1e-5);
        softmax_cross_entropy_parity::<f64>(&gpu, 1e-12);
    }
}

/// A geometry as conv2d builds it: kernel k x k (or the given taps), symmetric padding.
fn geometry(
    [n, c_in, h, w, c_out, k, s, p, d, groups]: [usize; 10],
    taps: Option<Vec<(usize, usize)>>,
) -> kernels::desc::ConvGeometry {
    use kernels::desc::{conv_out_size, ConvGeometry};
    ConvGeometry {
        n,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        stride: (s, s),
        pad: (p, p, p, p),
        dilation: (d, d),
        groups,
        ho: conv_out_size(h, p, p, k, s, d).unwrap(),
        wo: conv_out_size(w, p, p, k, s, d).unwrap(),
        taps: taps.unwrap_or_else(|| (0..k).flat_map(|i| (0..k).map(move |j| (i, j))).collect()),
    }
}

/// A convolution parity case: [n, c_in, h, w, c_out, k, stride, pad, dilation, groups] and the
/// active taps (all when None).
type ConvCase = ([usize; 10], Option<Vec<(usize, usize)>>);

fn conv_cases() -> Vec<ConvCase> {
    let mask_b_3x3 = vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)];
    vec![
        ([2, 3, 9, 7, 5, 3, 1, 1, 1, 1], None),
        ([4, 1, 28, 28, 64, 4, 2, 1, 1, 1], None),
        ([3, 6, 11, 13, 4, 3, 2, 2, 2, 2], None),
        ([2, 64, 14, 14, 70, 4, 2, 1, 1, 1], None),
        ([5, 17, 10, 10, 33, 1, 1, 0, 1, 1], None),
        ([4, 16, 12, 12, 16, 3, 1, 1, 1, 1], Some(mask_b_3x3)),
        // more output (then input) channels than one tile has rows, f32's 128 and f64's 64
        ([2, 8, 10, 10, 130, 3, 1, 1, 1, 1], None),
        ([2, 130, 6, 6, 9, 3, 2, 1, 1, 1], None),
        // long reductions (n·ho·wo of 8,192 and 2,304), so the weight gradient splits them
        ([8, 8, 32, 32, 16, 3, 1, 1, 1, 1], None),
        ([4, 8, 24, 24, 8, 3, 1, 1, 1, 2], None),
    ]
}

fn conv_parity<T: GpuFloat>(gpu: &Gpu, tol: f64) {
    use kernels::cpu::conv::{conv_forward, conv_input_grad, conv_weight_grad, gather_taps};
    use kernels::cuda::conv::{conv_forward_into, conv_input_grad_into, conv_weight_grad_into};
    for (spec, taps) in conv_cases() {
        let g = geometry(spec, taps);
        let [n, c_in, h, w, c_out, k, _, _, _, groups] = spec;
        let x: Vec<T> = values(n * c_in * h * w, (n + c_in) as u64, -1.0, 1.0);
        let w_full: Vec<T> = values(c_out * c_in / groups * k * k, c_out as u64, -1.0, 1.0);
        let w_active = gather_taps(&w_full, &g);
        let want = conv_forward(&x, &w_active, &g);
        let (x_d, w_d) = (gpu.upload(&x).unwrap(), gpu.upload(&w_active).unwrap());
        let mut y = poisoned::<T>(gpu, want.len());
        conv_forward_into(gpu, &x_d, &w_d, &g, &mut y).unwrap();
        let got = gpu.download(&y).unwrap();
        let err = relative_error(&got[..want.len()], &want);
        assert!(
            err <= tol,
            "conv2d {} {spec:?}: relative error {err}",
            T::SUFFIX
        );
        // the two adjoints, against the CPU's on the same upstream gradient
        let dy: Vec<T> = values(want.len(), 5 + n as u64, -1.0, 1.0);
        let dy_d = gpu.upload(&dy).unwrap();
        let dx_want = conv_input_grad(&dy, &w_active, &g);
        let mut dx = poisoned::<T>(gpu, dx_want.len());
        conv_input_grad_into(gpu, &dy_d, &w_d, &g, &mut dx).unwrap();
        let err = relative_error(&gpu.download(&dx).unwrap()[..dx_want.len()], &dx_want);
        assert!(
            err <= tol,
            "conv input grad {} {spec:?}: relative error {err}",
            T::SUFFIX
        );
        let dw_want = conv_weight_grad(&x, &dy, &g);
        let mut dw = poisoned::<T>(gpu, dw_want.len());
        conv_weight_grad_into(gpu, &x_d, &dy_d, &g, &mut dw).unwrap();
        let err = relative_error(&gpu.download(&dw).unwrap()[..dw_want.len()], &dw_want);
        assert!(
            err <= tol,
            "conv weight grad {} {spec:?}: relative error {err}",
            T::SUFFIX
        );
    }
}

#[test]
fn conv_family_matches_the_cpu() {
    for gpu in devices() {
        conv_parity::<f32>(&gpu, 1e-4);
        conv_parity::<f64>(&gpu, 1e-12);
    }
}

/// A strided copy (a permuted, sliced, broadcast view made contiguous), the casts both ways,
/// select and fill, against the CPU's reading of the same views.
fn copy_parity<T: GpuFloat>(gpu: &Gpu) {
    use kernels::cuda::elementwise::{copy_into, fill_into, select_into};
    // a [4, 5, 6] buffer seen as its transpose [6, 5, 4] from offset 0, and as [3, 5, 2] slices
    // of it with a broadcast axis
    let data: Vec<T> = values(4 * 5 * 6 + 7, 11, -2.0, 2.0);
    let views: [(&[usize], &[usize], usize); 3] = [
        (&[6, 5, 4], &[1, 6, 30], 0),
        (&[3, 5, 2], &[30, 6, 2], 7),
        (&[3, 7, 5], &[30, 0, 6], 1),
    ];
    let d = gpu.upload(&data).unwrap();
    for (shape, strides, offset) in views {
        let cpu = View {
            data: &data[..],
            shape,
            strides,
            offset,
        }
        .to_vec();
        let n = cpu.len();
        let view = || GpuView {
            data: &d,
            strides,
            offset,
        };
        let mut same = poisoned::<T>(gpu, n);
        copy_into(gpu, view(), shape, &mut same).unwrap();
        assert_eq!(gpu.download(&same).unwrap()[..n], cpu[..], "copy {shape:?}");
        let mut as_f64 = poisoned::<f64>(gpu, n);
        copy_into(gpu, view(), shape, &mut as_f64).unwrap();
        let want: Vec<f64> = cpu.iter().map(|v| v.to_f64()).collect();
        assert_eq!(
            gpu.download(&as_f64).unwrap()[..n],
            want[..],
            "cast {shape:?}"
        );
        let mut as_f32 = poisoned::<f32>(gpu, n);
        copy_into(gpu, view(), shape, &mut as_f32).unwrap();
        let want: Vec<f32> = cpu.iter().map(|v| v.to_f64() as f32).collect();
        assert_eq!(
            gpu.download(&as_f32).unwrap()[..n],
            want[..],
            "cast {shape:?}"
        );
        // select by the sign of the view itself between it and its contiguous copy negated
        let negated: Vec<T> = cpu.iter().map(|&v| T::from_f64(-v.to_f64())).collect();
        let dn = gpu.upload(&negated).unwrap();
        let contiguous = contiguous_strides(shape);
        let mask: Vec<T> = cpu
            .iter()
            .map(|v| T::from_f64((v.to_f64() > 0.0) as u8 as f64))
            .collect();
        let dm = gpu.upload(&mask).unwrap();
        let mut out = poisoned::<T>(gpu, n);
        let on = |data| GpuView {
            data,
            strides: &contiguous,
            offset: 0,
        };
        select_into(gpu, on(&dm), view(), on(&dn), shape, &mut out).unwrap();
        let want: Vec<T> = cpu
            .iter()
            .zip(&negated)
            .map(|(&v, &m)| if v.to_f64() > 0.0 { v } else { m })
            .collect();
        assert_eq!(
            gpu.download(&out).unwrap()[..n],
            want[..],
            "select {shape:?}"
        );
        // every element non-negative: |v| by select
        assert!(gpu
            .download(&out)
            .unwrap()
            .iter()
            .all(|v| v.to_f64() >= 0.0));
    }
    let mut filled = poisoned::<T>(gpu, 1000);
    fill_into(gpu, &mut filled, 999, 0.5).unwrap();
    let got = gpu.download(&filled).unwrap();
    assert!(got[..999].iter().all(|v| v.to_f64() == 0.5) && got[999].is_nan());
    // a view past its buffer is an error, not a wild read
    let mut out = poisoned::<T>(gpu, 1000);
    let past = GpuView {
        data: &d,
        strides: &[1],
        offset: 10,
    };
    assert!(copy_into(gpu, past, &[data.len()], &mut out).is_err());
}

#[test]
fn copies_casts_selects_and_fills_match_the_cpu() {
    for gpu in devices() {
        copy_parity::<f32>(&gpu);
        copy_parity::<f64>(&gpu);
    }
}

fn sgd_and_rmsprop_parity<T: GpuFloat>(gpu: &Gpu, tol: f64) {
    use kernels::cuda::optim::{rmsprop, sgd};
    use kernels::desc::{RmspropStep, SgdStep};
    let n = 10_007;
    for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
        let mut p: Vec<T> = values(n, 2, -1.0, 1.0);
        let mut buf = vec![T::ZERO; n];
        let (mut dp, mut db) = (gpu.upload(&p).unwrap(), gpu.upload(&buf).unwrap());
        let mut q: Vec<T> = values(n, 3, -1.0, 1.0);
        let (mut sq, mut rbuf) = (vec![T::ZERO; n], vec![T::ZERO; n]);
        let (mut dq, mut dsq, mut drb) = (
            gpu.upload(&q).unwrap(),
            gpu.upload(&sq).unwrap(),
            gpu.upload(&rbuf).unwrap(),
        );
        for step in 0..4u64 {
            let g: Vec<T> = values(n, 20 + step, -0.5, 0.5);
            let dg = gpu.upload(&g).unwrap();
            let h = SgdStep {
                first_step: step == 0,
                lr: 0.1,
                momentum,
                dampening: 0.1,
                weight_decay: 1e-2,
                nesterov,
            };
            let with = momentum > 0.0;
            kernels::cpu::optim::sgd(&mut p, &g, with.then_some(&mut buf[..]), &h);
            sgd(gpu, &mut dp, &dg, with.then_some(&mut db), n, h).unwrap();
            let r = RmspropStep {
                lr: 1e-2,
                alpha: 0.99,
                eps: 1e-8,
                momentum,
                weight_decay: 1e-2,
            };
            kernels::cpu::optim::rmsprop(&mut q, &g, &mut sq, with.then_some(&mut rbuf[..]), &r);
            rmsprop(gpu, &mut dq, &dg, &mut dsq, with.then_some(&mut drb), n, r).unwrap();
        }
        for (name, got, want) in [
            ("sgd p", &dp, &p),
            ("rmsprop p", &dq, &q),
            ("rmsprop v", &dsq, &sq),
        ] {
            let err = relative_error(&gpu.download(got).unwrap(), want);
            assert!(
                err <= tol,
                "{name} {} (momentum {momentum}, nesterov {nesterov}): relative error {err}",
                T::SUFFIX
            );
        }
    }
}

#[test]
fn sgd_and_rmsprop_match_the_cpu() {
    for gpu in devices() {
        sgd_and_rmsprop_parity::<f32>(&gpu, 1e-5);
        sgd_and_rmsprop_parity::<f64>(&gpu, 1e-12);
    }
}

fn index_parity<T: GpuFloat>(gpu: &Gpu) {
    use kernels::cpu::index;
    use kernels::cuda::index::{
        gather_sources, index_add_lists, scatter_add_lists, select_sources, sum_lists_into,
        take_into,
    };
    let (outer, n, inner) = (3, 7, 5);
    let x: Vec<T> = values(outer * n * inner, 31, -1.0, 1.0);
    let dx = gpu.upload(&x).unwrap();
    // repeats, so that the adjoints add several sources into one place
    let idx = [4, 0, 4, 6, 2, 4];
    let m = idx.len();
    let want = index::index_select(&x, outer, n, inner, &idx);
    let mut out = poisoned::<T>(gpu, want.len());
    let sources = select_sources((outer, n, inner), &idx).unwrap();
    take_into(gpu, &dx, &sources, &mut out).unwrap();
    assert_eq!(
        gpu.download(&out).unwrap(),
        want,
        "index_select {}",
        T::SUFFIX
    );
    // index_add of a [outer, m, inner] source: the same bits as the CPU's (its order)
    let src: Vec<T> = values(outer * m * inner, 32, -1.0, 1.0);
    let dsrc = gpu.upload(&src).unwrap();
    let want = index::index_add(&src, outer, n, inner, &idx);
    let mut out = poisoned::<T>(gpu, want.len());
    let plan = index_add_lists((outer, n, inner), &idx).unwrap();
    sum_lists_into(gpu, &dsrc, &plan, &mut out).unwrap();
    assert_eq!(gpu.download(&out).unwrap(), want, "index_add {}", T::SUFFIX);
    // gather and scatter_add with an index per element
    let index: Vec<usize> = (0..outer * m * inner)
        .map(|p| (p * 5 + p / 3) % n)
        .collect();
    let want = index::gather(&x, outer, n, inner, &index, m);
    let mut out = poisoned::<T>(gpu, want.len());
    take_into(
        gpu,
        &dx,
        &gather_sources((outer, n, inner), &index, m).unwrap(),
        &mut out,
    )
    .unwrap();
    assert_eq!(gpu.download(&out).unwrap(), want, "gather {}", T::SUFFIX);
    let want = index::scatter_add(&src, outer, n, inner, &index, m);
    let mut out = poisoned::<T>(gpu, want.len());
    let plan = scatter_add_lists((outer, n, inner), &index, m).unwrap();
    sum_lists_into(gpu, &dsrc, &plan, &mut out).unwrap();
    assert_eq!(
        gpu.download(&out).unwrap(),
        want,
        "scatter_add {}",
        T::SUFFIX
    );
    // an index past the axis is an error, not a wild read
    assert!(select_sources((outer, n, inner), &[n]).is_err());
    assert!(scatter_add_lists((outer, n, inner), &vec![n; outer * m * inner], m).is_err());
}

#[test]
fn index_ops_match_the_cpu_bit_for_bit() {
    for gpu in devices() {
        index_parity::<f32>(&gpu);
        index_parity::<f64>(&gpu);
    }
}

/// bf16 `values`.
fn bf16_values(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<bf16> {
    values::<f32>(n, seed, lo, hi)
        .into_iter()
        .map(bf16::from_f32)
        .collect()
}

fn bf16_poisoned(gpu: &Gpu, n: usize) -> GpuBuffer<bf16> {
    gpu.upload(&vec![bf16::NAN; n.max(1)]).unwrap()
}

fn widened(v: &[bf16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

fn narrowed(v: &[f32]) -> Vec<bf16> {
    v.iter().map(|&x| bf16::from_f32(x)).collect()
}

/// `got` (a bf16 kernel's result) against `want` (the CPU's f32 kernel on the same values,
/// rounded once): equal but where the two f32 sums, added in different orders, fall on either
/// side of a rounding boundary, which moves the result by one bf16 step (at most 2^-7 of it).
/// `terms` bounds the sum's length, for an absolute slack where the sum nearly cancels.
fn assert_within_a_bf16_step(got: &[bf16], want: &[bf16], terms: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f32(), w.to_f32());
        let slack = w.abs() * 2f32.powi(-7) + 1e-6 * terms as f32;
        assert!(
            (g - w).abs() <= slack,
            "{what}: element {i} is {g}, the CPU's {w}"
        );
    }
}

/// The casts to and from bf16 bit for bit against the `half` crate (which the CPU path uses):
/// ties to even, NaN, infinities, overflow, subnormals; f64 rounds through f32.
fn bf16_cast_parity(gpu: &Gpu) {
    fn view<T>(data: &GpuBuffer<T>) -> GpuView<'_, T> {
        GpuView {
            data,
            strides: &[1],
            offset: 0,
        }
    }
    use kernels::cuda::elementwise::{copy_into, fill_into};
    let mut x: Vec<f32> = [
        0x0000_0000u32,
        0x8000_0000, // -0
        0x3f80_8000, // 1 + 2^-8: a tie, kept part even -> down
        0x3f81_8000, // a tie, kept part odd -> up
        0x3f80_8001, // just above a tie -> up
        0x3f80_7fff, // just below -> down
        0x7f7f_ffff, // f32::MAX -> inf
        0x7f7f_7fff, // rounds to bf16's largest finite
        0x0000_0001, // the smallest subnormal
        0x0080_0000, // the smallest normal
        0x7f80_0000, // inf
        0xff80_0000, // -inf
        0x7fc0_0000, // NaN
        0x7f80_0001, // a signalling NaN: kept NaN
    ]
    .iter()
    .map(|&b| f32::from_bits(b))
    .collect();
    x.extend(values::<f32>(1001, 3, -1e4, 1e4));
    let n = x.len();
    let whole = [n];

    let dx = gpu.upload(&x).unwrap();
    let mut b = bf16_poisoned(gpu, n);
    copy_into(gpu, view(&dx), &whole, &mut b).unwrap();
    let got = gpu.download(&b).unwrap();
    for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
        let want = bf16::from_f32(v);
        assert_eq!(
            g.to_bits(),
            want.to_bits(),
            "f32 -> bf16 of {v:e} (element {i})"
        );
    }
    let mut back = poisoned::<f32>(gpu, n);
    copy_into(gpu, view(&b), &whole, &mut back).unwrap();
    let back = gpu.download(&back).unwrap();
    for (g, w) in back.iter().zip(&got) {
        assert_eq!(g.to_bits(), w.to_f32().to_bits(), "bf16 -> f32 is exact");
    }
    let x64: Vec<f64> = values(n, 4, -1e3, 1e3);
    let d64 = gpu.upload(&x64).unwrap();
    let mut b = bf16_poisoned(gpu, n);
    copy_into(gpu, view(&d64), &whole, &mut b).unwrap();
    let got = gpu.download(&b).unwrap();
    for (&g, &v) in got.iter().zip(&x64) {
        assert_eq!(g, bf16::from_f32(v as f32), "f64 -> bf16 of {v:e}");
    }
    let mut wide = poisoned::<f64>(gpu, n);
    copy_into(gpu, view(&b), &whole, &mut wide).unwrap();
    let wide = gpu.download(&wide).unwrap();
    assert!(wide.iter().zip(&got).all(|(w, g)| *w == g.to_f64()));
    // a strided bf16 copy: the transpose of a [4, 6] matrix
    let m = bf16_values(24, 5, -2.0, 2.0);
    let dm = gpu.upload(&m).unwrap();
    let mut t = bf16_poisoned(gpu, 24);
    let transposed = GpuView {
        data: &dm,
        strides: &[1, 6],
        offset: 0,
    };
    copy_into(gpu, transposed, &[6, 4], &mut t).unwrap();
    let t = gpu.download(&t).unwrap();
    for i in 0..6 {
        for j in 0..4 {
            assert_eq!(t[i * 4 + j], m[j * 6 + i], "bf16 transpose ({i}, {j})");
        }
    }
    let mut filled = bf16_poisoned(gpu, 1000);
    fill_into(gpu, &mut filled, 999, 0.1).unwrap();
    let got = gpu.download(&filled).unwrap();
    assert!(got[..999].iter().all(|&v| v == bf16::from_f32(0.1)) && got[999].is_nan());
}

fn bf16_matmul_parity(gpu: &Gpu) {
    for (m, k, n, offset) in MATMUL_CASES {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = bf16_values(offset + m * k, (m * 7 + k) as u64, -1.0, 1.0);
            let b = bf16_values(offset + k * n, (k * 5 + n) as u64, -1.0, 1.0);
            let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
            let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
            let (wa, wb) = (widened(&a), widened(&b));
            let mut want = vec![0f32; m * n];
            let cpu = |data, row_stride, col_stride| MatRef {
                data,
                offset,
                row_stride,
                col_stride,
            };
            matmul(
                m,
                k,
                n,
                cpu(&wa, a_rs, a_cs),
                cpu(&wb, b_rs, b_cs),
                &mut want,
            );
            let (da, db) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
            let mut out = bf16_poisoned(gpu, m * n);
            let dev = |data, row_stride, col_stride| GpuMat {
                data,
                offset,
                row_stride,
                col_stride,
            };
            matmul_into(
                gpu,
                m,
                k,
                n,
                dev(&da, a_rs, a_cs),
                dev(&db, b_rs, b_cs),
                &mut out,
            )
            .unwrap();
            let got = gpu.download(&out).unwrap();
            let what = format!("matmul bf16 {m}x{k}x{n} offset {offset} (transposed {ta}, {tb})");
            assert_within_a_bf16_step(&got[..m * n], &narrowed(&want), k, &what);
        }
    }
}

fn bf16_conv_parity(gpu: &Gpu) {
    use kernels::cpu::conv::{conv_forward, conv_input_grad, conv_weight_grad, gather_taps};
    use kernels::cuda::conv::{conv_forward_into, conv_input_grad_into, conv_weight_grad_into};
    for (spec, taps) in conv_cases() {
        let g = geometry(spec, taps);
        let [n, c_in, h, w, c_out, k, _, _, _, groups] = spec;
        let x = bf16_values(n * c_in * h * w, (n + c_in) as u64, -1.0, 1.0);
        let w_full = bf16_values(c_out * c_in / groups * k * k, c_out as u64, -1.0, 1.0);
        let w_active: Vec<bf16> = narrowed(&gather_taps(&widened(&w_full), &g));
        let want = narrowed(&conv_forward(&widened(&x), &widened(&w_active), &g));
        let (x_d, w_d) = (gpu.upload(&x).unwrap(), gpu.upload(&w_active).unwrap());
        let mut y = bf16_poisoned(gpu, want.len());
        conv_forward_into(gpu, &x_d, &w_d, &g, &mut y).unwrap();
        let got = gpu.download(&y).unwrap();
        let terms = c_in * k * k;
        assert_within_a_bf16_step(
            &got[..want.len()],
            &want,
            terms,
            &format!("conv2d bf16 {spec:?}"),
        );
        let dy = bf16_values(want.len(), 5 + n as u64, -1.0, 1.0);
        let dy_d = gpu.upload(&dy).unwrap();
        let dx_want = narrowed(&conv_input_grad(&widened(&dy), &widened(&w_active), &g));
        let mut dx = bf16_poisoned(gpu, dx_want.len());
        conv_input_grad_into(gpu, &dy_d, &w_d, &g, &mut dx).unwrap();
        let what = format!("conv input grad bf16 {spec:?}");
        assert_within_a_bf16_step(
            &gpu.download(&dx).unwrap()[..dx_want.len()],
            &dx_want,
            c_out * k * k,
            &what,
        );
        let dw_want = narrowed(&conv_weight_grad(&widened(&x), &widened(&dy), &g));
        let mut dw = bf16_poisoned(gpu, dw_want.len());
        conv_weight_grad_into(gpu, &x_d, &dy_d, &g, &mut dw).unwrap();
        let what = format!("conv weight grad bf16 {spec:?}");
        let terms = n * g.ho * g.wo;
        assert_within_a_bf16_step(
            &gpu.download(&dw).unwrap()[..dw_want.len()],
            &dw_want,
            terms,
            &what,
        );
    }
}

#[test]
fn bf16_casts_matmul_and_convolutions_match_the_cpu() {
    for gpu in devices() {
        bf16_cast_parity(&gpu);
        bf16_matmul_parity(&gpu);
        bf16_conv_parity(&gpu);
    }
}
