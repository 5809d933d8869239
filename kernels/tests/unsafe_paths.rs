//! The CPU kernels' unsafe code on small shapes, every result checked against plain loops.
//!
//! Each shape is chosen to reach a branch that holds unsafe code: the matmul's packing, its
//! full and ragged (scratch-tile) micro-tiles, C bands and accumulation, pre-packed A and
//! B packers, its C rectangles shared between threads (`SharedRows`); the convolution's gather
//! tables (stride, dilation), masks, groups and uninitialised outputs (`set_len`,
//! `MaybeUninit`); the LSTM sequence's blocks of batch rows on their own threads; the
//! elementwise maps' and `split_outer`'s uninitialised outputs over strided views.
//!
//! It runs natively like any test (in well under a second in release), and under Miri with
//! `scripts/miri.sh`, which is why the shapes are tiny (just above the thresholds of the
//! paths they aim at): Miri interprets every operation, a few thousand multiply-adds a second,
//! and looks for undefined behaviour and data races. In a plain build Miri sees no SIMD
//! feature at run time, so it runs the portable paths (the script also runs the matmul tests
//! built with AVX2 and with AVX-512 enabled, whose intrinsics Miri then interprets); under
//! Miri `worth_splitting` splits every loop of 2 or more items so that the threads really
//! share the buffers. Work runs in thread pools of 1 or 2
//! threads made for it (Miri reports one CPU, so rayon's global pool would have one thread),
//! scoped so that their threads have ended when the test does (Miri fails a program whose
//! main thread ends while others still run).

use kernels::cpu::conv::{conv_forward, conv_input_grad, conv_weight_grad, gather_taps};
use kernels::cpu::elementwise::{binary, select, unary};
use kernels::cpu::lstm_sequence::{
    lstm_sequence_backward, lstm_sequence_forward, SequenceGrads, SequenceOperands, SequenceTape,
    SequenceWants,
};
use kernels::cpu::matmul::{
    batched_matmul, is_blocked_shape, matmul, matmul_into, matmul_packed, matmul_packed_uninit,
    matmul_with, BSource, MatRef, PackedA,
};
use kernels::cpu::parallel::{cost, worth_splitting};
use kernels::desc::{
    conv_out_size, mask_taps, BinaryKind, ConvGeometry, LstmSequenceShape, Mask, UnaryKind,
};
use kernels::float::Float;
use kernels::strided::View;
use std::mem::MaybeUninit;
use std::ops::Range;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs `f` in a new rayon pool of `threads` threads, whose threads are joined before it
/// returns. Every kernel call of this file runs inside one.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_scoped(|thread| thread.run(), |pool| pool.install(f))
        .expect("a thread pool")
}

/// Reproducible values in [-1, 1).
fn values<T: Float>(n: usize, seed: u64) -> Vec<T> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            T::from_f64(2.0 * ((s >> 11) as f64 / (1u64 << 53) as f64) - 1.0)
        })
        .collect()
}

fn to_f64<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// The tolerance relative to the data's scale: f32 results carry rounding (and the f32
/// sigmoid / tanh approximations, within 2 ulp), f64 ones far less.
fn tol<T: Float>() -> f64 {
    if std::mem::size_of::<T>() == 4 {
        1e-5
    } else {
        1e-12
    }
}

/// Asserts ‖got − want‖∞ ≤ tol · max(1, ‖want‖∞); NaN fails.
fn assert_close<T: Float>(got: &[T], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g.to_f64() - w).abs();
        assert!(
            err <= tol * scale,
            "{what}: element {i} is {} instead of {w} (error {err}, scale {scale})",
            g.to_f64()
        );
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------------------------------------
// Miri's view of the machine
// ---------------------------------------------------------------------------------------------

/// Under Miri, std_detect reports only the features the crate is compiled with: none beyond
/// baseline x86-64 in a plain build, so the matmul takes its portable 4 x 8 / 4 x 4 kernel and
/// `vector::widest` runs its body as it is. Built with `-C target-feature=+avx2,+fma` (or
/// `+avx512f,+avx2,+fma`), Miri reports those and interprets the AVX2 (AVX-512) kernels'
/// intrinsics (`scripts/miri.sh` runs the matmul tests so too). Natively the same calls pick
/// whatever the CPU has.
#[test]
fn miri_sees_only_the_compiled_features_and_splits_every_loop() {
    #[cfg(target_arch = "x86_64")]
    if cfg!(miri) {
        use kernels::cpu::vector::{has_avx2_fma, has_avx512};
        let avx2 = cfg!(all(target_feature = "avx2", target_feature = "fma"));
        assert_eq!(has_avx2_fma(), avx2, "Miri's AVX2 + FMA");
        assert_eq!(
            has_avx512(),
            avx2 && cfg!(target_feature = "avx512f"),
            "Miri's AVX-512"
        );
    }
    // under Miri every loop of two or more items goes parallel; natively the tuned thresholds
    assert_eq!(worth_splitting(2, cost::ELEMENT_NS), cfg!(miri));
    assert!(!worth_splitting(1, cost::MULTIPLY_ADD_NS));
}

// ---------------------------------------------------------------------------------------------
// Matrix products
// ---------------------------------------------------------------------------------------------

/// A strided operand that owns its buffer.
struct Operand<T> {
    data: Vec<T>,
    offset: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<T: Float> Operand<T> {
    fn mat(&self) -> MatRef<'_, T> {
        MatRef {
            data: &self.data,
            offset: self.offset,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }
}

/// The ways an operand can be laid out in its buffer.
#[derive(Clone, Copy, Debug)]
enum Layout {
    RowMajor,
    /// The transpose of a row-major matrix (col_stride > 1, row_stride 1).
    ColMajor,
    /// Row-major with padding between rows and an offset.
    Padded,
    /// Every row the same (row stride 0), as a broadcast operand.
    BroadcastRows,
    /// Every column the same (column stride 0).
    BroadcastCols,
}

const LAYOUTS: [Layout; 5] = [
    Layout::RowMajor,
    Layout::ColMajor,
    Layout::Padded,
    Layout::BroadcastRows,
    Layout::BroadcastCols,
];

fn operand<T: Float>(rows: usize, cols: usize, layout: Layout, seed: u64) -> Operand<T> {
    let (data, offset, row_stride, col_stride) = match layout {
        Layout::RowMajor => (values(rows * cols, seed), 0, cols, 1),
        Layout::ColMajor => (values(rows * cols, seed), 0, 1, rows),
        Layout::Padded => (values(3 + rows * (cols + 2), seed), 3, cols + 2, 1),
        Layout::BroadcastRows => (values(cols + 1, seed), 1, 0, 1),
        Layout::BroadcastCols => (values(rows + 2, seed), 2, 1, 0),
    };
    Operand {
        data,
        offset,
        row_stride,
        col_stride,
    }
}

fn at<T: Float>(m: &MatRef<T>, i: usize, j: usize) -> f64 {
    m.data[m.offset + i * m.row_stride + j * m.col_stride].to_f64()
}

/// The triple loop, in f64.
fn reference<T: Float>(m: usize, k: usize, n: usize, a: MatRef<T>, b: MatRef<T>) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| at(&a, i, p) * at(&b, p, j)).sum();
        }
    }
    c
}

/// The smallest product on the blocked (packed) path: 7 x 13 x 19 is one multiply-add above
/// 12^3, and its odd m and n give every kernel's tiles (portable 4 x 8 and 4 x 4, AVX2 6 x 16,
/// AVX-512 8 x 32, 12 x 32, 12 x 16) ragged edges.
const EDGE: (usize, usize, usize) = (7, 13, 19);

/// k above the depth of a k block (256): two blocks, the second accumulating into C.
const DEEP: (usize, usize, usize) = (3, 257, 5);

/// Products with full tiles and ragged ones for each SIMD kernel: AVX-512's 8 x 32 (13 rows
/// take the 8-row kernel), 12 x 32 (23 rows take the 12-row one) and f64 12 x 16; AVX2's
/// 6 x 16 and the portable kernels have full tiles in all three.
const FULL_TILES: [(usize, usize, usize); 3] = [(13, 5, 33), (23, 3, 33), (13, 9, 17)];

/// On two threads: `matmul` over every layout of A and B (C cut into one rectangle per
/// thread), the same product on 1, 3 and 4 threads (other grids of rectangles, some empty),
/// products with full tiles for every kernel (A row-major, B column-major: both packed by
/// transposing; then B row-major: copied by blocks), a product two k blocks deep, and the
/// plain loop for small products.
fn check_products<T: Float>() {
    on_threads(2, || {
        let (m, k, n) = EDGE;
        assert!(is_blocked_shape(m, k, n) && !is_blocked_shape(m, k - 1, n));
        for (la, lb) in LAYOUTS.iter().zip(LAYOUTS.iter().cycle().skip(1)) {
            let (a, b) = (operand::<T>(m, k, *la, 1), operand::<T>(k, n, *lb, 2));
            let want = reference(m, k, n, a.mat(), b.mat());
            // C starts as garbage: the product must overwrite it
            let mut c = vec![T::from_f64(9.0); m * n];
            matmul(m, k, n, a.mat(), b.mat(), &mut c);
            assert_close(
                &c,
                &want,
                tol::<T>(),
                &format!("{m}x{k}x{n} {la:?} x {lb:?}"),
            );
        }
        let (a, b) = (
            operand::<T>(m, k, Layout::RowMajor, 3),
            operand::<T>(k, n, Layout::ColMajor, 4),
        );
        let want = reference(m, k, n, a.mat(), b.mat());
        for threads in [1, 3, 4] {
            let mut c = vec![T::from_f64(-4.0); m * n];
            matmul_with(m, k, n, a.mat(), b.mat(), &mut c, threads);
            assert_close(&c, &want, tol::<T>(), &format!("on {threads} threads"));
        }
        for (m, k, n) in FULL_TILES {
            for (la, lb) in [
                (Layout::RowMajor, Layout::ColMajor),
                (Layout::Padded, Layout::RowMajor),
            ] {
                let (a, b) = (operand::<T>(m, k, la, 11), operand::<T>(k, n, lb, 12));
                let mut c = vec![T::from_f64(9.0); m * n];
                matmul(m, k, n, a.mat(), b.mat(), &mut c);
                let want = reference(m, k, n, a.mat(), b.mat());
                assert_close(
                    &c,
                    &want,
                    tol::<T>(),
                    &format!("{m}x{k}x{n} {la:?} x {lb:?}"),
                );
            }
        }
        let (m, k, n) = DEEP;
        assert!(is_blocked_shape(m, k, n));
        let (a, b) = (
            operand::<T>(m, k, Layout::Padded, 5),
            operand::<T>(k, n, Layout::ColMajor, 6),
        );
        let mut c = vec![T::from_f64(9.0); m * n];
        matmul(m, k, n, a.mat(), b.mat(), &mut c);
        let want = reference(m, k, n, a.mat(), b.mat());
        assert_close(&c, &want, tol::<T>(), &format!("{m}x{k}x{n}"));
        // the plain loop for small products: one or two rows, up to four columns, below 12^3
        for &(m, k, n, la, lb) in &[
            (2, 5, 9, Layout::RowMajor, Layout::RowMajor),
            (5, 3, 4, Layout::Padded, Layout::ColMajor),
            (3, 4, 10, Layout::ColMajor, Layout::RowMajor),
            (6, 6, 6, Layout::BroadcastCols, Layout::BroadcastRows),
        ] {
            assert!(!is_blocked_shape(m, k, n));
            let (a, b) = (operand::<T>(m, k, la, 7), operand::<T>(k, n, lb, 8));
            let mut c = vec![T::from_f64(9.0); m * n];
            matmul(m, k, n, a.mat(), b.mat(), &mut c);
            let want = reference(m, k, n, a.mat(), b.mat());
            assert_close(&c, &want, tol::<T>(), &format!("small {m}x{k}x{n}"));
        }
    });
}

#[test]
fn matmul_edges_layouts_and_thread_grids_f32() {
    check_products::<f32>();
}

#[test]
fn matmul_edges_layouts_and_thread_grids_f64() {
    check_products::<f64>();
}

/// C as a band of columns of a wider matrix (ldc > n, starting mid-row), overwritten and then
/// accumulated into, on the blocked path (two threads: the full tiles accumulate in the
/// micro-kernel, the ragged ones through the scratch tile; with full tiles for the AVX-512
/// kernels too), the small one and k = 0: the elements outside the band keep their values.
fn check_band<T: Float>() {
    let ((m, k, n), (m8, k8, n8), (m6, k6, n6)) = (EDGE, FULL_TILES[0], FULL_TILES[2]);
    for &(m, k, n, threads) in &[
        (m, k, n, 2),
        (m8, k8, n8, 2),
        (m6, k6, n6, 2),
        (2, 3, 5, 1),
        (5, 0, 6, 1),
    ] {
        let (ldc, start) = (n + 5, 3);
        let a = operand::<T>(m, k, Layout::Padded, 5);
        let b = operand::<T>(k, n, Layout::ColMajor, 6);
        let want = reference(m, k, n, a.mat(), b.mat());
        let sentinel = T::from_f64(-7.5);
        let mut c = vec![sentinel; start + m * ldc];
        on_threads(2, || {
            let band = &mut c[start..];
            matmul_into(m, k, n, a.mat(), b.mat(), band, ldc, false, threads);
            matmul_into(m, k, n, a.mat(), b.mat(), band, ldc, true, threads);
        });
        for (idx, &v) in c.iter().enumerate() {
            // (i, j) of C when the element lies in the band
            let in_c = idx
                .checked_sub(start)
                .map(|r| (r / ldc, r % ldc))
                .filter(|&(i, j)| i < m && j < n);
            let what = format!("band {m}x{k}x{n}, element {idx}");
            match in_c {
                Some((i, j)) => {
                    let w = 2.0 * want[i * n + j];
                    let err = (v.to_f64() - w).abs();
                    assert!(
                        err <= 8.0 * tol::<T>() * (1.0 + w.abs()),
                        "{what}: {v:?}, not {w}"
                    );
                }
                None => assert!(v == sentinel, "{what}: outside C, written"),
            }
        }
    }
}

#[test]
fn matmul_into_a_band_and_accumulate_f32() {
    check_band::<f32>();
}

#[test]
fn matmul_into_a_band_and_accumulate_f64() {
    check_band::<f64>();
}

/// Batches: as many products as a multiple of the threads (4 on 2), each run whole on one
/// thread, and fewer (3 on 2), each product using the pool.
fn check_batched<T: Float>() {
    let (m, k, n) = EDGE;
    for &(batch, m, k, n) in &[(4, m, k, n), (3, m, k, n)] {
        let a_off: Vec<usize> = (0..batch).map(|i| i * (m * k + 3) + 1).collect();
        let b_off: Vec<usize> = (0..batch).map(|i| (batch - 1 - i) * (k * n + 2)).collect();
        let a_data = values::<T>(batch * (m * k + 3) + 1, 7);
        let b_data = values::<T>(batch * (k * n + 2), 8);
        let a = MatRef::dense(&a_data, 0, k);
        // B read transposed
        let b = MatRef {
            data: &b_data[..],
            offset: 0,
            row_stride: 1,
            col_stride: k,
        };
        let mut c = vec![T::from_f64(3.0); batch * m * n];
        on_threads(2, || batched_matmul(m, k, n, a, &a_off, b, &b_off, &mut c));
        for i in 0..batch {
            let ai = MatRef {
                offset: a_off[i],
                ..a
            };
            let bi = MatRef {
                offset: b_off[i],
                ..b
            };
            let want = reference(m, k, n, ai, bi);
            let got = &c[i * m * n..(i + 1) * m * n];
            assert_close(got, &want, tol::<T>(), &format!("batch {i} of {batch}"));
        }
    }
}

#[test]
fn batched_matmul_f32() {
    check_batched::<f32>();
}

#[test]
fn batched_matmul_f64() {
    check_batched::<f64>();
}

/// A packed once and reused; B from a matrix and from a `BSource::Packer` that writes the
/// slivers element by element; C a band (ldc > n), overwritten, accumulated, and written into
/// uninitialised memory (`matmul_packed_uninit`, every element of the band written: reading
/// one that was not is undefined behaviour, which Miri reports), two k blocks deep in the
/// second shape, with full AVX-512 tiles in the third. On the calling thread (no rayon), as
/// the convolutions call it.
fn check_packed<T: Float>() {
    for (m, k, n) in [EDGE, DEEP, FULL_TILES[0]] {
        let ldc = n + 3;
        let a = operand::<T>(m, k, Layout::ColMajor, 9);
        let b = operand::<T>(k, n, Layout::RowMajor, 10);
        let want = reference(m, k, n, a.mat(), b.mat());
        let packed = PackedA::new(m, k, a.mat());
        let b_data = &b.data;
        let packer = |dst: &mut [T], p0: usize, kc: usize, cols: Range<usize>, nr: usize| {
            for (s, col0) in cols.clone().step_by(nr).enumerate() {
                for p in 0..kc {
                    for j in 0..nr {
                        let col = col0 + j;
                        dst[(s * kc + p) * nr + j] = if col < cols.end {
                            b_data[(p0 + p) * n + col]
                        } else {
                            T::ZERO
                        };
                    }
                }
            }
        };
        let band = |c: &[T]| -> Vec<T> {
            (0..m)
                .flat_map(|i| c[i * ldc..i * ldc + n].to_vec())
                .collect()
        };
        let sources = || [BSource::Matrix(b.mat()), BSource::Packer(&packer)];
        for source in sources() {
            let mut c = vec![T::from_f64(5.0); m * ldc];
            matmul_packed(&packed, n, source, &mut c, ldc, false);
            assert_close(&band(&c), &want, tol::<T>(), &format!("packed {m}x{k}x{n}"));
            matmul_packed(&packed, n, source, &mut c, ldc, true);
            let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
            assert_close(
                &band(&c),
                &twice,
                tol::<T>(),
                &format!("packed += {m}x{k}x{n}"),
            );
            for (i, row) in c.chunks(ldc).enumerate() {
                assert!(row[n..].iter().all(|&v| v == T::from_f64(5.0)), "row {i}");
            }
            let mut u: Vec<MaybeUninit<T>> = (0..(m - 1) * ldc + n)
                .map(|_| MaybeUninit::uninit())
                .collect();
            matmul_packed_uninit(&packed, n, source, &mut u, ldc);
            let got: Vec<T> = (0..m)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                // SAFETY: matmul_packed_uninit writes every element of the m x n band
                .map(|(i, j)| unsafe { u[i * ldc + j].assume_init() })
                .collect();
            assert_close(&got, &want, tol::<T>(), &format!("uninit {m}x{k}x{n}"));
        }
    }
}

#[test]
fn packed_a_packer_b_and_uninit_c_f32() {
    check_packed::<f32>();
}

#[test]
fn packed_a_packer_b_and_uninit_c_f64() {
    check_packed::<f64>();
}

// ---------------------------------------------------------------------------------------------
// Convolutions
// ---------------------------------------------------------------------------------------------

/// A convolution case: x [n, c_in, h, w], a k.0 x k.1 kernel, all its taps or those `mask` keeps.
struct ConvCase {
    n: usize,
    c_in: usize,
    hw: (usize, usize),
    c_out: usize,
    k: (usize, usize),
    stride: (usize, usize),
    /// (top, bottom, left, right)
    pad: (usize, usize, usize, usize),
    dilation: (usize, usize),
    groups: usize,
    mask: Option<Mask>,
}

impl ConvCase {
    fn geometry(&self) -> ConvGeometry {
        let ho = conv_out_size(
            self.hw.0,
            self.pad.0,
            self.pad.1,
            self.k.0,
            self.stride.0,
            self.dilation.0,
        )
        .unwrap();
        let wo = conv_out_size(
            self.hw.1,
            self.pad.2,
            self.pad.3,
            self.k.1,
            self.stride.1,
            self.dilation.1,
        )
        .unwrap();
        ConvGeometry {
            n: self.n,
            c_in: self.c_in,
            h: self.hw.0,
            w: self.hw.1,
            c_out: self.c_out,
            kh: self.k.0,
            kw: self.k.1,
            stride: self.stride,
            pad: self.pad,
            dilation: self.dilation,
            groups: self.groups,
            ho,
            wo,
            taps: mask_taps(self.k.0, self.k.1, self.mask),
        }
    }
}

/// The definition, in f64, over the full weights [c_out, c_in/G, kh, kw] (masked taps skipped).
fn conv_reference(x: &[f64], w: &[f64], g: &ConvGeometry) -> Vec<f64> {
    let mut y = vec![0.0; g.n * g.out_size()];
    let (cig, cog) = (g.cin_per_group(), g.cout_per_group());
    for n in 0..g.n {
        for o in 0..g.c_out {
            for oh in 0..g.ho {
                for ow in 0..g.wo {
                    let mut acc = 0.0;
                    for c in 0..cig {
                        let xc = (o / cog) * cig + c;
                        for &(i, j) in &g.taps {
                            let ih =
                                (oh * g.stride.0 + i * g.dilation.0) as isize - g.pad.0 as isize;
                            let iw =
                                (ow * g.stride.1 + j * g.dilation.1) as isize - g.pad.2 as isize;
                            if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
                                continue;
                            }
                            let (ih, iw) = (ih as usize, iw as usize);
                            acc += x[((n * g.c_in + xc) * g.h + ih) * g.w + iw]
                                * w[((o * cig + c) * g.kh + i) * g.kw + j];
                        }
                    }
                    y[((n * g.c_out + o) * g.ho + oh) * g.wo + ow] = acc;
                }
            }
        }
    }
    y
}

/// The cases, each aimed at paths of `conv.rs`, with whether one sample's product
/// (cout/G x k x ho·wo) is a blocked one. Each runs on one thread (the weights packed once, a
/// blocked sample's columns packed straight from the image into its uninitialised output
/// rows) and on two (fewer than four chunks of samples: threaded products over im2col
/// buffers), except the one with nine samples, whose five chunks take the packed path on two
/// threads as well.
fn conv_cases() -> Vec<(ConvCase, bool, &'static [usize])> {
    let case = |n, c_in, hw, c_out, k, stride, pad, dilation, groups, mask| ConvCase {
        n,
        c_in,
        hw,
        c_out,
        k,
        stride,
        pad,
        dilation,
        groups,
        mask,
    };
    vec![
        // stride 2, padding, 2 groups: gather tables
        (
            case(
                1,
                2,
                (15, 15),
                6,
                (3, 3),
                (2, 2),
                (1, 1, 1, 1),
                (1, 1),
                2,
                None,
            ),
            true,
            &[1, 2],
        ),
        // dilation 2: gather tables; 9 samples make chunks of 2 (side-by-side columns, the B
        // packer crossing samples, gathered dy) and a last chunk of 1 (too small to be blocked)
        (
            case(
                9,
                1,
                (4, 8),
                3,
                (3, 3),
                (1, 1),
                (2, 2, 2, 2),
                (2, 2),
                1,
                None,
            ),
            false,
            &[2],
        ),
        // PixelCNN mask A (4 of 9 taps), stride 1: im2col by row copies; two chunks
        (
            case(
                2,
                2,
                (6, 9),
                4,
                (3, 3),
                (1, 1),
                (1, 1, 1, 1),
                (1, 1),
                1,
                Some(Mask::A),
            ),
            true,
            &[1, 2],
        ),
        // mask B over 3 x 5 (8 taps), uneven stride and padding, 2 groups of 2 output
        // channels: gather tables with masks, and the plain loop instead of the blocked product
        (
            case(
                2,
                2,
                (6, 8),
                4,
                (3, 5),
                (2, 1),
                (0, 1, 2, 1),
                (1, 1),
                2,
                Some(Mask::B),
            ),
            false,
            &[1, 2],
        ),
        // 1 x 1: the columns are the input itself
        (
            case(
                1,
                12,
                (6, 8),
                3,
                (1, 1),
                (1, 1),
                (0, 0, 0, 0),
                (1, 1),
                1,
                None,
            ),
            true,
            &[1, 2],
        ),
    ]
}

/// Forward against the definition; input and weight gradients through the adjoint identities
/// <conv(x, w), dy> = <x, input_grad(dy, w)> = <w, weight_grad(x, dy)>.
fn check_conv<T: Float>() {
    for (ci, (case, blocked, pools)) in conv_cases().iter().enumerate() {
        let g = case.geometry();
        let (cog, k, l) = (g.cout_per_group(), g.k_per_group(), g.out_positions());
        assert_eq!(is_blocked_shape(cog, k, l), *blocked, "case {ci}");
        let full = values::<T>(g.c_out * g.cin_per_group() * g.kh * g.kw, 20 + ci as u64);
        let w = gather_taps(&full, &g);
        let x = values::<T>(g.n * g.in_size(), 30 + ci as u64);
        let dy = values::<T>(g.n * g.out_size(), 40 + ci as u64);
        let y_ref = conv_reference(&to_f64(&x), &to_f64(&full), &g);
        let lhs = dot(&y_ref, &to_f64(&dy));
        for &threads in pools.iter() {
            let what = format!("case {ci} on {threads} threads ({g:?})");
            let (y, dx, dw) = on_threads(threads, || {
                (
                    conv_forward(&x, &w, &g),
                    conv_input_grad(&dy, &w, &g),
                    conv_weight_grad(&x, &dy, &g),
                )
            });
            assert_close(&y, &y_ref, tol::<T>(), &format!("forward, {what}"));
            assert_eq!((dx.len(), dw.len()), (x.len(), w.len()), "{what}");
            let mid = dot(&to_f64(&x), &to_f64(&dx));
            let rhs = dot(&to_f64(&w), &to_f64(&dw));
            let scale = 1.0 + y_ref.len() as f64;
            assert!(
                (lhs - mid).abs() <= tol::<T>() * scale,
                "input gradient, {what}: {lhs} vs {mid}"
            );
            assert!(
                (lhs - rhs).abs() <= tol::<T>() * scale,
                "weight gradient, {what}: {lhs} vs {rhs}"
            );
        }
    }
}

#[test]
fn conv_strided_dilated_grouped_masked_f32() {
    check_conv::<f32>();
}

#[test]
fn conv_strided_dilated_grouped_masked_f64() {
    check_conv::<f64>();
}

// ---------------------------------------------------------------------------------------------
// LSTM over a sequence
// ---------------------------------------------------------------------------------------------

/// One LSTM layer's inputs, in f64, with h_0 stored transposed ([H, B]).
#[derive(Clone)]
struct Lstm {
    d: LstmSequenceShape,
    /// x [T·B, I] in rows of I + 2 from offset 1
    x: Vec<f64>,
    w_ih: Vec<f64>,
    w_hh: Vec<f64>,
    b_ih: Vec<f64>,
    b_hh: Vec<f64>,
    /// h_0 as [H, B]: element (b, j) at j * B + b
    h0: Vec<f64>,
    c0: Vec<f64>,
    /// with biases and initial states, or none of them
    full: bool,
}

const X_PAD: usize = 2;

impl Lstm {
    fn new(d: LstmSequenceShape, full: bool, seed: u64) -> Lstm {
        let (tb, i, h) = (d.steps * d.batch, d.input, d.hidden);
        Lstm {
            d,
            x: values(1 + tb * (i + X_PAD), seed),
            w_ih: values(4 * h * i, seed + 1),
            w_hh: values(4 * h * h, seed + 2),
            b_ih: values(4 * h, seed + 3),
            b_hh: values(4 * h, seed + 4),
            h0: values(h * d.batch, seed + 5),
            c0: values(d.batch * h, seed + 6),
            full,
        }
    }

    fn field(&mut self, name: &str) -> &mut Vec<f64> {
        match name {
            "x" => &mut self.x,
            "w_ih" => &mut self.w_ih,
            "w_hh" => &mut self.w_hh,
            "b_ih" => &mut self.b_ih,
            "h0" => &mut self.h0,
            "c0" => &mut self.c0,
            _ => unreachable!("{name}"),
        }
    }

    fn x_at(&self, row: usize, col: usize) -> f64 {
        self.x[1 + row * (self.d.input + X_PAD) + col]
    }

    /// The naive recurrence, step by step: Y [T + 1, B, H] = h_1 .. h_T, c_T.
    fn naive(&self) -> Vec<f64> {
        let LstmSequenceShape {
            steps,
            batch,
            input,
            hidden: h,
        } = self.d;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut hs: Vec<f64> = (0..batch * h)
            .map(|k| {
                let (b, j) = (k / h, k % h);
                if self.full {
                    self.h0[j * batch + b]
                } else {
                    0.0
                }
            })
            .collect();
        let mut cs: Vec<f64> = if self.full {
            self.c0.clone()
        } else {
            vec![0.0; batch * h]
        };
        let mut y = Vec::with_capacity((steps + 1) * batch * h);
        for t in 0..steps {
            let mut next_h = vec![0.0; batch * h];
            for b in 0..batch {
                let gate = |q: usize| {
                    let mut a = if self.full {
                        self.b_ih[q] + self.b_hh[q]
                    } else {
                        0.0
                    };
                    for p in 0..input {
                        a += self.w_ih[q * input + p] * self.x_at(t * batch + b, p);
                    }
                    for p in 0..h {
                        a += self.w_hh[q * h + p] * hs[b * h + p];
                    }
                    a
                };
                for j in 0..h {
                    let (i, f) = (sig(gate(j)), sig(gate(h + j)));
                    let (g, o) = (gate(2 * h + j).tanh(), sig(gate(3 * h + j)));
                    let c = f * cs[b * h + j] + i * g;
                    cs[b * h + j] = c;
                    next_h[b * h + j] = o * c.tanh();
                }
            }
            hs = next_h;
            y.extend_from_slice(&hs);
        }
        y.extend_from_slice(&cs);
        y
    }

    /// The same inputs in T, for the kernels.
    fn cast<T: Float>(&self) -> LstmIn<T> {
        let c = |v: &[f64]| v.iter().map(|&x| T::from_f64(x)).collect();
        LstmIn {
            x: c(&self.x),
            w_ih: c(&self.w_ih),
            w_hh: c(&self.w_hh),
            b_ih: c(&self.b_ih),
            b_hh: c(&self.b_hh),
            h0: c(&self.h0),
            c0: c(&self.c0),
        }
    }
}

struct LstmIn<T> {
    x: Vec<T>,
    w_ih: Vec<T>,
    w_hh: Vec<T>,
    b_ih: Vec<T>,
    b_hh: Vec<T>,
    h0: Vec<T>,
    c0: Vec<T>,
}

impl<T: Float> LstmIn<T> {
    fn operands(&self, d: LstmSequenceShape, full: bool) -> SequenceOperands<'_, T> {
        SequenceOperands {
            x: MatRef {
                data: &self.x,
                offset: 1,
                row_stride: d.input + X_PAD,
                col_stride: 1,
            },
            w_ih: MatRef::dense(&self.w_ih, 0, d.input),
            w_hh: MatRef::dense(&self.w_hh, 0, d.hidden),
            bias: full.then_some((&self.b_ih[..], &self.b_hh[..])),
            h0: full.then_some(MatRef {
                data: &self.h0,
                offset: 0,
                row_stride: 1,
                col_stride: d.batch,
            }),
            c0: full.then_some(&self.c0[..]),
        }
    }
}

/// The kernels' forward and backward, on two threads.
fn run_lstm<T: Float>(l: &Lstm, dy: &[f64]) -> (Vec<T>, SequenceGrads<T>) {
    let inputs = l.cast::<T>();
    let op = inputs.operands(l.d, l.full);
    let dy: Vec<T> = dy.iter().map(|&v| T::from_f64(v)).collect();
    on_threads(2, || {
        let (y, tape) = lstm_sequence_forward(l.d, op);
        let tape = SequenceTape {
            gates: &tape.gates[..],
            hc: &tape.hc[..],
        };
        let wants = SequenceWants {
            x: true,
            w_ih: true,
            w_hh: true,
            bias: true,
            h0: true,
        };
        let grads = lstm_sequence_backward(l.d, op, tape, &dy, wants);
        (y, grads)
    })
}

/// 33 batch rows are two blocks (32 + 1) that run the recurrence on their own threads, each
/// writing its rows of the shared gate and state buffers; the input projection (99 x 3 x 8) and
/// the backward's input and input-weight gradients are blocked products.
const LSTM_SHAPE: LstmSequenceShape = LstmSequenceShape {
    steps: 3,
    batch: 33,
    input: 3,
    hidden: 2,
};

/// With biases and initial states and without: the forward against the naive recurrence, in
/// f32 and f64; the f64 backward against central differences of the naive recurrence along a
/// random direction per gradient (x, W_ih, W_hh, the bias, h_0, c_0; without them one
/// direction through x and both weights), for L = <Y, dy>; the f32 backward against the f64
/// one.
#[test]
fn lstm_sequence_against_the_naive_recurrence_and_finite_differences() {
    let (b, h, i) = (LSTM_SHAPE.batch, LSTM_SHAPE.hidden, LSTM_SHAPE.input);
    assert!(is_blocked_shape(LSTM_SHAPE.steps * b, i, 4 * h) && b > 32);
    for full in [true, false] {
        let l = Lstm::new(LSTM_SHAPE, full, 70);
        let want = l.naive();
        let dy = values::<f64>(want.len(), 80);
        let (y, g) = run_lstm::<f64>(&l, &dy);
        assert_close(&y, &want, 1e-12, &format!("f64 forward, full {full}"));
        // dx [T·B, I] against the padded buffer x was read from
        let mut dx_full = vec![0.0; l.x.len()];
        for (r, row) in g.x.clone().unwrap().chunks(i).enumerate() {
            let at = 1 + r * (i + X_PAD);
            dx_full[at..at + i].copy_from_slice(row);
        }
        // (the inputs perturbed together, their gradients)
        let mut checks: Vec<(Vec<&str>, Vec<Vec<f64>>)> = Vec::new();
        let (dw_ih, dw_hh) = (g.w_ih.clone().unwrap(), g.w_hh.clone().unwrap());
        if full {
            // dh_0 [B, H] against h_0 stored as [H, B]
            let dh0 = g.h0.clone().unwrap();
            let dh0_t = (0..h * b).map(|k| dh0[(k % b) * h + k / b]).collect();
            checks.push((vec!["x"], vec![dx_full]));
            checks.push((vec!["w_ih"], vec![dw_ih]));
            checks.push((vec!["w_hh"], vec![dw_hh]));
            // the summed bias gradient is the gradient of b_ih (and of b_hh)
            checks.push((vec!["b_ih"], vec![g.bias.clone().unwrap()]));
            checks.push((vec!["h0"], vec![dh0_t]));
            checks.push((vec!["c0"], vec![g.c0.clone()]));
        } else {
            assert!(g.bias.is_none() && g.h0.is_none());
            checks.push((vec!["x", "w_ih", "w_hh"], vec![dx_full, dw_ih, dw_hh]));
        }
        let loss = |l: &Lstm| dot(&l.naive(), &dy);
        let eps = 1e-5;
        for (k, (names, grads)) in checks.iter().enumerate() {
            let (mut plus, mut minus) = (l.clone(), l.clone());
            let mut analytic = 0.0;
            for (j, (name, grad)) in names.iter().zip(grads).enumerate() {
                let dir = values::<f64>(grad.len(), 90 + 10 * k as u64 + j as u64);
                let (p, m) = (plus.field(name), minus.field(name));
                assert_eq!(p.len(), dir.len(), "{name}");
                for ((p, m), v) in p.iter_mut().zip(m.iter_mut()).zip(&dir) {
                    *p += eps * v;
                    *m -= eps * v;
                }
                analytic += dot(grad, &dir);
            }
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps);
            assert!(
                (numeric - analytic).abs() <= 1e-6 * (1.0 + analytic.abs()),
                "d{names:?} (full {full}): finite differences {numeric}, backward {analytic}"
            );
        }
        // f32: the forward against the naive recurrence, every gradient against f64's
        let (y32, g32) = run_lstm::<f32>(&l, &dy);
        assert_close(&y32, &want, 1e-5, &format!("f32 forward, full {full}"));
        let pairs = [
            (&g32.x, &g.x, "x"),
            (&g32.w_ih, &g.w_ih, "w_ih"),
            (&g32.w_hh, &g.w_hh, "w_hh"),
            (&g32.bias, &g.bias, "bias"),
            (&g32.h0, &g.h0, "h0"),
        ];
        for (lo, hi, name) in pairs {
            assert_eq!(lo.is_some(), hi.is_some(), "{name}");
            if let (Some(lo), Some(hi)) = (lo, hi) {
                assert_close(lo, hi, 1e-4, &format!("f32 d{name}"));
            }
        }
        assert_close(&g32.c0, &g.c0, 1e-4, "f32 dc0");
    }
}

// ---------------------------------------------------------------------------------------------
// Elementwise maps and strided views
// ---------------------------------------------------------------------------------------------

/// An owned strided view: element idx at offset + Σ idx[d] · strides[d].
struct Strided<T> {
    data: Vec<T>,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl<T: Float> Strided<T> {
    fn new(shape: &[usize], strides: &[usize], offset: usize, seed: u64) -> Strided<T> {
        let reach = offset
            + shape
                .iter()
                .zip(strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1;
        Strided {
            data: values(reach + 2, seed),
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
        }
    }

    fn view(&self) -> View<'_, T> {
        View {
            data: &self.data,
            shape: &self.shape,
            strides: &self.strides,
            offset: self.offset,
        }
    }

    /// The elements in row-major order, by index arithmetic.
    fn naive(&self) -> Vec<T> {
        let n: usize = self.shape.iter().product();
        (0..n)
            .map(|mut flat| {
                let mut at = self.offset;
                for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
                    at += (flat % d) * s;
                    flat /= d;
                }
                self.data[at]
            })
            .collect()
    }
}

/// Pairs of same-shape views that take each branch of the strided binary map: (a, b) inner
/// strides (1, 1) over a 3-D shape that does not coalesce, (1, 0), (0, 1), a general pair (a
/// transposed operand against a broadcast row), and a 1-D pair (a stride-2 view and a
/// broadcast scalar), which `split_outer` runs as one slab on the calling thread.
fn view_pairs<T: Float>() -> Vec<(Strided<T>, Strided<T>)> {
    vec![
        (
            Strided::new(&[3, 4, 5], &[30, 6, 1], 1, 1),
            Strided::new(&[3, 4, 5], &[20, 5, 1], 0, 2),
        ),
        (
            Strided::new(&[4, 6], &[6, 1], 2, 3),
            Strided::new(&[4, 6], &[1, 0], 0, 4),
        ),
        (
            Strided::new(&[5, 3], &[1, 0], 1, 5),
            Strided::new(&[5, 3], &[3, 1], 0, 6),
        ),
        (
            Strided::new(&[5, 7], &[1, 5], 0, 7),
            Strided::new(&[5, 7], &[0, 1], 3, 8),
        ),
        (
            Strided::new(&[6], &[2], 1, 9),
            Strided::new(&[6], &[0], 2, 10),
        ),
    ]
}

fn binary_reference(kind: BinaryKind, x: f64, y: f64) -> f64 {
    let ind = |b: bool| if b { 1.0 } else { 0.0 };
    match kind {
        BinaryKind::Add => x + y,
        BinaryKind::Sub => x - y,
        BinaryKind::Mul => x * y,
        BinaryKind::Div => x / y,
        BinaryKind::Maximum => x.max(y),
        BinaryKind::Minimum => x.min(y),
        BinaryKind::Eq => ind(x == y),
        BinaryKind::Gt => ind(x > y),
        BinaryKind::Ge => ind(x >= y),
        BinaryKind::Lt => ind(x < y),
        BinaryKind::LeakyReluGrad(s) => {
            if y > 0.0 {
                x
            } else {
                s * x
            }
        }
    }
}

const BINARY_KINDS: [BinaryKind; 11] = [
    BinaryKind::Add,
    BinaryKind::Sub,
    BinaryKind::Mul,
    BinaryKind::Div,
    BinaryKind::Maximum,
    BinaryKind::Minimum,
    BinaryKind::Eq,
    BinaryKind::Gt,
    BinaryKind::Ge,
    BinaryKind::Lt,
    BinaryKind::LeakyReluGrad(0.25),
];

/// On two threads: each pair of strided views through three binary kinds (all kinds over the
/// five pairs), the copy of each view, a select with a mask broadcast or transposed like `b`;
/// then a contiguous map of two chunks (8192 + 37 elements: two tasks writing the output's
/// uninitialised halves), binary for `long_binary` else unary. Every unary kind on a short
/// buffer, on one thread.
fn check_elementwise<T: Float>(long_binary: bool) {
    let t = tol::<T>();
    on_threads(2, || {
        for (pi, (a, b)) in view_pairs::<T>().iter().enumerate() {
            let (na, nb) = (to_f64(&a.naive()), to_f64(&b.naive()));
            for kind in (0..3).map(|k| BINARY_KINDS[(3 * pi + k) % BINARY_KINDS.len()]) {
                let got = binary(a.view(), b.view(), kind);
                let want: Vec<f64> = na
                    .iter()
                    .zip(&nb)
                    .map(|(&x, &y)| binary_reference(kind, x, y))
                    .collect();
                assert_close(&got, &want, t, &format!("binary {kind:?}, pair {pi}"));
            }
            assert_eq!(a.view().to_vec(), a.naive(), "copy of a, pair {pi}");
            assert_eq!(b.view().to_vec(), b.naive(), "copy of b, pair {pi}");
            // a mask laid out as b, zero in about half its places
            let mut mask = Strided::<T>::new(&b.shape, &b.strides, b.offset, 100 + pi as u64);
            for v in mask.data.iter_mut() {
                *v = if *v > T::ZERO { *v } else { T::ZERO };
            }
            let got = select(mask.view(), a.view(), b.view());
            let want: Vec<f64> = mask
                .naive()
                .iter()
                .zip(na.iter().zip(&nb))
                .map(|(&m, (&x, &y))| if m != T::ZERO { x } else { y })
                .collect();
            assert_close(&got, &want, 0.0, &format!("select, pair {pi}"));
        }
        let long = 8192 + 37;
        let x = values::<T>(long, 11);
        if long_binary {
            let y = values::<T>(long, 12);
            let shape = [long];
            let got = binary(view1(&x, &shape), view1(&y, &shape), BinaryKind::Sub);
            for (i, ((&g, &a), &b)) in got.iter().zip(&x).zip(&y).enumerate() {
                assert!(g == a - b, "long sub, element {i}");
            }
            assert_eq!(got.len(), long);
        } else {
            let got = unary(&x, UnaryKind::Neg);
            assert_eq!(got.len(), long);
            assert!(got.iter().zip(&x).all(|(&g, &v)| g == -v), "long neg");
        }
    });
    let short: Vec<T> = values::<T>(37, 13)
        .iter()
        .map(|&v| v * T::from_f64(3.0))
        .collect();
    let positive: Vec<T> = short.iter().map(|&v| v.abs() + T::from_f64(0.5)).collect();
    on_threads(1, || {
        for (kind, positive_only, f) in unary_cases() {
            let input = if positive_only { &positive } else { &short };
            let got = unary(input, kind);
            let want: Vec<f64> = to_f64(input).into_iter().map(f).collect();
            assert_close(&got, &want, 4.0 * t, &format!("unary {kind:?}"));
        }
    });
}

/// A contiguous 1-D view of `data` (`shape` holds its length).
fn view1<'a, T>(data: &'a [T], shape: &'a [usize; 1]) -> View<'a, T> {
    View {
        data,
        shape,
        strides: &[1],
        offset: 0,
    }
}

type UnaryCase = (UnaryKind, bool, fn(f64) -> f64);

fn unary_cases() -> Vec<UnaryCase> {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    vec![
        (UnaryKind::Neg, false, |v| -v),
        (UnaryKind::Exp, false, f64::exp),
        (UnaryKind::Log, true, f64::ln),
        (UnaryKind::Sqrt, true, f64::sqrt),
        (UnaryKind::Abs, false, f64::abs),
        (UnaryKind::Sigmoid, false, sig),
        (UnaryKind::Tanh, false, f64::tanh),
        (UnaryKind::Relu, false, |v| v.max(0.0)),
        (UnaryKind::LeakyRelu(0.5), false, |v| {
            if v > 0.0 {
                v
            } else {
                0.5 * v
            }
        }),
        (UnaryKind::Softplus, false, |v| v.exp().ln_1p()),
        (UnaryKind::Elu(2.0), false, |v| {
            if v > 0.0 {
                v
            } else {
                2.0 * (v.exp() - 1.0)
            }
        }),
        (UnaryKind::Powf(2.0), false, |v| v * v),
        (UnaryKind::Powf(1.5), true, |v| v.powf(1.5)),
        (UnaryKind::Clamp(-0.5, 0.75), false, |v| v.clamp(-0.5, 0.75)),
        (UnaryKind::AddScalar(0.25), false, |v| v + 0.25),
        (UnaryKind::MulScalar(-2.0), false, |v| -2.0 * v),
        (UnaryKind::Sign, false, f64::signum),
        (UnaryKind::GtScalar(0.1), false, |v| {
            if v > 0.1 {
                1.0
            } else {
                0.0
            }
        }),
        (UnaryKind::InRange(-0.5, 0.5), false, |v| {
            if (-0.5..=0.5).contains(&v) {
                1.0
            } else {
                0.0
            }
        }),
    ]
}

#[test]
fn elementwise_over_strided_views_f32() {
    check_elementwise::<f32>(true);
}

#[test]
fn elementwise_over_strided_views_f64() {
    check_elementwise::<f64>(false);
}
