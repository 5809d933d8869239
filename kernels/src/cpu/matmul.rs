//! Matrix multiplication, built the way fast BLAS libraries build it (Goto / BLIS).
//!
//! A naive triple loop runs at a few GFLOP/s because it is limited by memory traffic: every
//! multiply-add loads its operands from memory. A modern core can do two 16-wide fused
//! multiply-adds (FMAs) per cycle, but only if the operands already sit in registers. The design
//! below exists to keep the core fed:
//!
//! 1. **Register tiling (the micro-kernel).** The innermost routine computes a small `MR x NR`
//!    tile of C entirely in registers. Each step `p` of the k loop reads one short column of A
//!    (`MR` values, broadcast one at a time) and one short row of B (`NR` values, as vectors) and
//!    performs `MR * NR` multiply-adds with them. With `MR = 12`, `NR = 32` that is 24 vector FMAs
//!    per 2 vector loads and 12 broadcasts, so arithmetic, not memory, is the limit.
//! 2. **Packing.** The micro-kernel wants to read A and B as perfectly sequential streams. So
//!    before computing, a block of B is copied into *slivers* `NR` columns wide (for each `p`, the
//!    `NR` values of row `p` are adjacent) and a block of A into slivers `MR` rows tall (for each
//!    `p`, the `MR` values of column `p` are adjacent). Packing is also where arbitrary strides
//!    (transposed views, broadcast operands with stride 0) are dealt with, and where ragged edges
//!    are zero-padded so the micro-kernel never needs a bounds check.
//! 3. **Cache blocking.** The k dimension is cut into blocks of `KC` so that one A sliver
//!    (`MR x KC`) stays in the L1 cache while the micro-kernel sweeps across the B slivers, and
//!    the packed B block (`KC x NC`) stays in the L2 cache while every A sliver reuses it. Each
//!    `KC` block's result is added into C.
//! 4. **Threads.** C is cut into one rectangle per thread (whole slivers of rows or of columns,
//!    whichever shares the work more evenly), and each thread runs the single-threaded
//!    algorithm above on its rectangle. The threads never wait for each other.
//!
//! The f32 micro-kernels use AVX-512 or AVX2+FMA through `std::arch`, chosen at run time with
//! `is_x86_feature_detected!`, so the binary still runs on machines without them. A portable
//! kernel (plain Rust on fixed-size arrays, which the compiler vectorises) covers everything else.

use crate::cpu::parallel::{cost, worth_splitting};
use crate::cpu::scratch::Scratch;
use crate::cpu::shared_rows::SharedRows;
use crate::cpu::vector;
use crate::float::Float;
use rayon::prelude::*;
use std::any::Any;
use std::mem::MaybeUninit;
use std::ops::Range;

/// A strided matrix operand: element (i, j) is `data[offset + i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// The buffer the matrix lies in.
    pub data: &'a [T],
    /// Where element (0, 0) lies.
    pub offset: usize,
    /// The step between rows.
    pub row_stride: usize,
    /// The step between columns.
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A contiguous row-major [rows, cols] matrix starting at `data[offset]`.
    pub fn dense(data: &'a [T], offset: usize, cols: usize) -> Self {
        MatRef {
            data,
            offset,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The same matrix transposed (no copy: the strides swap).
    pub fn t(self) -> Self {
        MatRef {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

impl<T: Float> MatRef<'_, T> {
    /// Element (i, j). Indexing is checked, so a view that does not fit its buffer panics.
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        self.data[self.offset + i * self.row_stride + j * self.col_stride]
    }
}

/// Below this many multiply-adds (`m * n * k`) packing costs more than it saves, and a plain
/// loop is used instead. Measured: 8^3 runs faster unpacked, 12^3 packed. The plain loop also
/// wins for one or two rows of C, or up to four columns, where most of a 12 x 32 register tile
/// would be padding.
const SMALL_PRODUCT: usize = 12 * 12 * 12;

/// C = A * B with A [m, k], B [k, n]; C is contiguous row-major [m, n] and is overwritten.
pub fn matmul<T: Float>(m: usize, k: usize, n: usize, a: MatRef<T>, b: MatRef<T>, c: &mut [T]) {
    let threads = if worth_splitting(m * n * k, cost::MULTIPLY_ADD_NS) {
        rayon::current_num_threads()
    } else {
        1
    };
    matmul_with(m, k, n, a, b, c, threads);
}

/// `batch` independent products; batch `i` reads A at `a_offsets[i]` and B at `b_offsets[i]`
/// (strides shared) and writes `C[i]` of the contiguous `[batch, m, n]` output.
#[allow(clippy::too_many_arguments)]
pub fn batched_matmul<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<T>,
    a_offsets: &[usize],
    b: MatRef<T>,
    b_offsets: &[usize],
    c: &mut [T],
) {
    let batch = a_offsets.len();
    assert_eq!(
        batch,
        b_offsets.len(),
        "batched_matmul: offset counts differ"
    );
    let mn = m * n;
    assert!(c.len() >= batch * mn, "batched_matmul: C is too small");
    if mn == 0 {
        return;
    }
    let product = |(i, c_i): (usize, &mut [T]), threads: usize| {
        let a_i = MatRef {
            offset: a_offsets[i],
            ..a
        };
        let b_i = MatRef {
            offset: b_offsets[i],
            ..b
        };
        matmul_with(m, k, n, a_i, b_i, c_i, threads);
    };
    let pool = rayon::current_num_threads();
    let per_product = mn * k;
    let c = &mut c[..batch * mn];
    let small = !worth_splitting(per_product / 4, cost::MULTIPLY_ADD_NS);
    if pool > 1 && batch >= pool && (small || batch.is_multiple_of(pool)) {
        // Enough products to go round: one product per task, each on one thread. Every core is
        // busy without the products having to be split.
        if worth_splitting(per_product * batch, cost::MULTIPLY_ADD_NS) {
            c.par_chunks_mut(mn)
                .enumerate()
                .for_each(|item| product(item, 1));
        } else {
            c.chunks_mut(mn)
                .enumerate()
                .for_each(|item| product(item, 1));
        }
    } else {
        // Few products, or large ones that would share the threads unevenly: one after the
        // other, each using the whole pool.
        let threads = if worth_splitting(per_product, cost::MULTIPLY_ADD_NS) {
            pool
        } else {
            1
        };
        c.chunks_mut(mn)
            .enumerate()
            .for_each(|item| product(item, threads));
    }
}

/// [`matmul`] on at most `threads` threads (1: on the calling thread only, for callers that
/// already run one product per thread).
pub fn matmul_with<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    threads: usize,
) {
    matmul_into(m, k, n, a, b, c, n, false, threads);
}

/// The general entry: C = A * B (or C += A * B when `accumulate`), where row i of C starts at
/// `c[i * ldc]` (so C may be a band of columns of a wider matrix), on at most `threads`
/// threads.
#[allow(clippy::too_many_arguments)]
pub fn matmul_into<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "matmul: C has {} elements, need {} rows of {n} every {ldc}",
        c.len(),
        m
    );
    let c = &mut c[..(m - 1) * ldc + n];
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc) {
                row[..n].fill(T::ZERO);
            }
        }
        return;
    }
    if m * n * k < SMALL_PRODUCT || m <= 2 || n <= 4 {
        matmul_small(m, k, n, a, b, c, ldc, accumulate);
        return;
    }
    let kernel = select_kernel_for::<T>(m);
    matmul_blocked(&kernel, m, k, n, a, b, c, ldc, accumulate, threads);
}

/// The unblocked product for small problems, where packing would cost more than it saves.
/// The loop order is picked so that the innermost loop runs over two slices and vectorises:
/// - B's rows contiguous and not too short: each row of C accumulates `a[i, p] * B[p, :]` over
///   p.
/// - otherwise each C[i, j] is a dot product of row i of A and column j of B. Rows of A and
///   columns of B that are not contiguous in memory are first copied into contiguous buffers
///   (few elements, as this path only sees small products or one or two rows or columns).
#[allow(clippy::too_many_arguments)]
fn matmul_small<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    let c_rows = c
        .chunks_mut(ldc)
        .take(m)
        .map(|row| &mut row[..n])
        .enumerate();
    if b.col_stride == 1 && n >= 8 {
        for (i, c_row) in c_rows {
            if !accumulate {
                c_row.fill(T::ZERO);
            }
            for p in 0..k {
                let a_ip = a.at(i, p);
                let start = b.offset + p * b.row_stride;
                for (c_ij, &b_pj) in c_row.iter_mut().zip(&b.data[start..start + n]) {
                    *c_ij += a_ip * b_pj;
                }
            }
        }
        return;
    }
    // B's columns as rows of B^T, each k long: borrowed when contiguous, copied otherwise.
    let b_t: Vec<T>;
    let (b_data, b_start, b_step) = if b.row_stride == 1 {
        (b.data, b.offset, b.col_stride)
    } else {
        b_t = (0..n)
            .flat_map(|j| (0..k).map(move |p| b.at(p, j)))
            .collect();
        (&b_t[..], 0, k)
    };
    let mut a_row_copy = vec![T::ZERO; if a.col_stride == 1 { 0 } else { k }];
    for (i, c_row) in c_rows {
        let a_row = if a.col_stride == 1 {
            let start = a.offset + i * a.row_stride;
            &a.data[start..start + k]
        } else {
            for (p, v) in a_row_copy.iter_mut().enumerate() {
                *v = a.at(i, p);
            }
            &a_row_copy[..]
        };
        for (j, c_ij) in c_row.iter_mut().enumerate() {
            let start = b_start + j * b_step;
            let d = dot(a_row, &b_data[start..start + k]);
            *c_ij = if accumulate { *c_ij + d } else { d };
        }
    }
}

/// The dot product of two equally long slices, summed in 8 independent lanes: the compiler may
/// not reorder a single running float sum, which would then wait on every addition in turn.
fn dot<T: Float>(x: &[T], y: &[T]) -> T {
    const LANES: usize = 8;
    let (x_chunks, y_chunks) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let tail = x_chunks.remainder().iter().zip(y_chunks.remainder());
    let mut sum = tail.fold(T::ZERO, |s, (&x_p, &y_p)| s + x_p * y_p);
    let mut lanes = [T::ZERO; LANES];
    for (x_chunk, y_chunk) in x_chunks.zip(y_chunks) {
        for ((lane, &x_p), &y_p) in lanes.iter_mut().zip(x_chunk).zip(y_chunk) {
            *lane += x_p * y_p;
        }
    }
    for lane in lanes {
        sum += lane;
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// Kernels: the register-tiled inner routine and the packing routines that feed it
// ---------------------------------------------------------------------------------------------

/// The micro-kernel's calling convention. It computes the `MR x NR` tile
/// `sum_p a[p * MR + i] * b[p * NR + j]` over `p < kc`, where `a` and `b` are packed slivers,
/// and writes it to `c[i * ldc + j]`, adding to what is there when `accumulate` is true.
///
/// # Safety
/// The CPU must support the instructions the kernel uses, and `c` must be valid for reads and
/// writes of the whole tile (`MR` rows of `NR` elements, `ldc` apart) with no other thread
/// touching it. The kernel checks the lengths of `a` and `b` itself.
type MicroKernel<T> =
    unsafe fn(kc: usize, a: &[T], b: &[T], c: *mut T, ldc: usize, accumulate: bool);

/// Packs one sliver of `W` lines into `dst` (see [`Sliver`]).
///
/// # Safety
/// The CPU must support the instructions the routine uses. All memory access is checked.
type PackFn<T> = unsafe fn(dst: &mut [T], src: &Sliver<T>, kc: usize);

/// A micro-kernel together with its tile shape, its packing routines, and the cache block
/// sizes tuned for it.
struct Kernel<T> {
    /// Rows of the register tile (the height of a packed A sliver).
    mr: usize,
    /// Columns of the register tile (the width of a packed B sliver).
    nr: usize,
    /// Depth of a k block: an `mr x kc` A sliver should fit comfortably in L1.
    kc: usize,
    /// Columns of a packed B block: a `kc x nc` block should fit in L2.
    nc: usize,
    /// Rows of a packed A block (bounds the memory packed at once).
    mc: usize,
    /// The micro-kernel. Invariant: a `Kernel` is only used after [`select_kernel`] (or a test)
    /// has checked that the CPU supports `run`, `pack_a` and `pack_b`.
    run: MicroKernel<T>,
    /// Packs an A sliver; its width is `mr`.
    pack_a: PackFn<T>,
    /// Packs a B sliver; its width is `nr`.
    pack_b: PackFn<T>,
}

// Written by hand because `#[derive(Clone, Copy)]` would demand `T: Copy`, which a struct of
// sizes and function pointers does not need.
impl<T> Clone for Kernel<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Kernel<T> {}

/// Turns a `Kernel<S>` into a `Kernel<T>` when `S` and `T` are the same type, and returns `None`
/// otherwise. This is how the generic driver picks a kernel written for one concrete type
/// without any unsafe casting: `Any::downcast_ref` compares the types at run time.
fn same_type_kernel<S: 'static, T: 'static>(kernel: Kernel<S>) -> Option<Kernel<T>> {
    (&kernel as &dyn Any).downcast_ref::<Kernel<T>>().copied()
}

/// The fastest kernel this CPU supports for element type `T`. Feature detection is cached by
/// the standard library, so calling this per product is cheap.
fn select_kernel<T: Float>() -> Kernel<T> {
    #[cfg(target_arch = "x86_64")]
    {
        if vector::has_avx512() {
            if let Some(kernel) = same_type_kernel(x86::F32_AVX512) {
                return kernel;
            }
            if let Some(kernel) = same_type_kernel(x86::F64_AVX512) {
                return kernel;
            }
        }
        if vector::has_avx2_fma() {
            if let Some(kernel) = same_type_kernel(x86::F32_AVX2) {
                return kernel;
            }
        }
    }
    portable_kernel::<T>()
}

/// [`select_kernel`], except that f32 products of few rows on AVX-512 take the 8-row kernel
/// where the 12-row one would pad them by more than 5%: 64 rows (a 64-channel convolution) are
/// 8 slivers of 8 rather than 6 of 12, a twelfth of whose work would be padding.
fn select_kernel_for<T: Float>(m: usize) -> Kernel<T> {
    let kernel = select_kernel::<T>();
    #[cfg(target_arch = "x86_64")]
    if kernel.mr == 12 && std::mem::size_of::<T>() == 4 {
        let padded = |mr: usize| m.div_ceil(mr) * mr;
        if padded(8) * 20 < padded(12) * 19 {
            if let Some(eight) = same_type_kernel(x86::F32_AVX512_8ROWS) {
                return eight;
            }
        }
    }
    kernel
}

/// The portable kernel: 4 x 8 for f32 (eight 4-wide SSE accumulators), 4 x 4 for f64.
fn portable_kernel<T: Float>() -> Kernel<T> {
    if std::mem::size_of::<T>() == 4 {
        Kernel {
            mr: 4,
            nr: 8,
            kc: 256,
            nc: 1024,
            mc: 1024,
            run: generic_kernel::<T, 4, 8>,
            pack_a: pack_sliver::<T, 4>,
            pack_b: pack_sliver::<T, 8>,
        }
    } else {
        Kernel {
            mr: 4,
            nr: 4,
            kc: 256,
            nc: 512,
            mc: 1024,
            run: generic_kernel::<T, 4, 4>,
            pack_a: pack_sliver::<T, 4>,
            pack_b: pack_sliver::<T, 4>,
        }
    }
}

/// The portable micro-kernel. The accumulator is a fixed-size `MR x NR` array, so the compiler
/// keeps it in registers and vectorises the `j` loop.
///
/// # Safety
/// `c` must be valid for the whole tile, as for every [`MicroKernel`].
unsafe fn generic_kernel<T: Float, const MR: usize, const NR: usize>(
    kc: usize,
    a: &[T],
    b: &[T],
    c: *mut T,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[T::ZERO; NR]; MR];
    for (a_p, b_p) in a[..kc * MR]
        .chunks_exact(MR)
        .zip(b[..kc * NR].chunks_exact(NR))
    {
        for (acc_row, &a_ip) in acc.iter_mut().zip(a_p) {
            for (acc_ij, &b_pj) in acc_row.iter_mut().zip(b_p) {
                *acc_ij += a_ip * b_pj;
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees row i of the tile is valid and ours alone.
        let c_row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), NR) };
        for (c_ij, &v) in c_row.iter_mut().zip(acc_row) {
            *c_ij = if accumulate { *c_ij + v } else { v };
        }
    }
}

/// Where the lines of one sliver live in the source buffer. A sliver is `lines` (at most its
/// width `W`) lines of `kc` elements; element `p` of line `l` is
/// `data[base + l * line_stride + p * step_stride]`.
///
/// For an A sliver the lines are rows of A (`line_stride = row_stride`, `step_stride =
/// col_stride`); for a B sliver they are columns of B (`line_stride = col_stride`,
/// `step_stride = row_stride`).
struct Sliver<'a, T> {
    data: &'a [T],
    base: usize,
    lines: usize,
    line_stride: usize,
    step_stride: usize,
}

/// Packs a sliver of width `W` into `dst[p * W + l]`: the `W` values the micro-kernel needs at
/// step `p` become adjacent. Lines `lines..W` are zero, so a ragged edge of the matrix becomes a
/// full tile whose extra rows or columns contribute nothing.
///
/// `W` is a compile-time constant so the copies have a fixed size the compiler can unroll. The
/// loop order follows whichever stride is 1, so reads are sequential for row-major and for
/// transposed operands alike. (`unsafe` only to match [`PackFn`]; the body is safe code.)
#[inline(always)]
unsafe fn pack_sliver<T: Float, const W: usize>(dst: &mut [T], src: &Sliver<T>, kc: usize) {
    let dst = &mut dst[..kc * W];
    let lines = src.lines;
    assert!(lines <= W);
    if src.line_stride == 1 {
        // The values for one step are adjacent in the source: copy them as a block.
        for (p, d) in dst.chunks_exact_mut(W).enumerate() {
            let start = src.base + p * src.step_stride;
            if lines == W {
                d.copy_from_slice(&src.data[start..start + W]);
            } else {
                d[..lines].copy_from_slice(&src.data[start..start + lines]);
                d[lines..].fill(T::ZERO);
            }
        }
    } else {
        if lines < W {
            dst.fill(T::ZERO);
        }
        for l in 0..lines {
            let start = src.base + l * src.line_stride;
            if src.step_stride == 1 {
                // Each line is contiguous in the source: stream it into column l of the sliver.
                let line = &src.data[start..start + kc];
                for (d, &v) in dst.chunks_exact_mut(W).zip(line) {
                    d[l] = v;
                }
            } else {
                for (p, d) in dst.chunks_exact_mut(W).enumerate() {
                    d[l] = src.data[start + p * src.step_stride];
                }
            }
        }
    }
}

/// Hand-written kernels for x86-64. Each is an `unsafe fn` with `#[target_feature]`: the compiler
/// may use the named instruction sets inside it, and the caller promises the CPU has them.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{pack_sliver, Kernel, Sliver};
    use crate::float::Float;
    use std::arch::x86_64::*;

    /// Checks that the packed slivers hold `kc` steps of an `mr x nr` tile, so the kernels'
    /// raw-pointer loads stay in bounds.
    #[inline(always)]
    fn check_slivers<T>(kc: usize, mr: usize, nr: usize, a: &[T], b: &[T]) {
        assert!(a.len() >= kc * mr && b.len() >= kc * nr);
    }

    /// Prefetches `rows` rows of `row_bytes` bytes each, `ldc` elements apart, into L1.
    ///
    /// # Safety
    /// The rows must lie inside one allocation (a prefetch never faults, but the pointer
    /// arithmetic must stay in bounds).
    #[inline(always)]
    unsafe fn prefetch_tile<T>(c: *mut T, ldc: usize, rows: usize, row_bytes: usize) {
        for i in 0..rows {
            // SAFETY: row i of the tile is inside C, by the caller's promise.
            let row = unsafe { c.add(i * ldc) } as *const i8;
            for offset in (0..row_bytes).step_by(64) {
                // SAFETY: as above; `offset` stays within the row.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(row.add(offset)) };
            }
        }
    }

    /// f32 on AVX-512: a 12 x 32 tile in 24 zmm registers (two 16-wide vectors per row).
    ///
    /// Block sizes, for a core with 48 KB of L1 and 2 MB of L2 (Sapphire Rapids): a 12 x 256
    /// A sliver is 12 KB, leaving L1 room for the B sliver streaming past it; a 256 x 1024 B
    /// block is 1 MB of L2. Measured speed hardly changes for KC between 192 and 448.
    pub(super) const F32_AVX512: Kernel<f32> = Kernel {
        mr: 12,
        nr: 32,
        kc: 256,
        nc: 1024,
        mc: 1536,
        run: f32_avx512_12x32,
        pack_a: pack_f32_avx512::<12>,
        pack_b: pack_f32_avx512::<32>,
    };

    /// The same micro-kernel with 8 rows, for products of few rows that 12 would pad (see
    /// `select_kernel_for`). Its A slivers are packed by the plain packer.
    pub(super) const F32_AVX512_8ROWS: Kernel<f32> = Kernel {
        mr: 8,
        nr: 32,
        kc: 256,
        nc: 1024,
        mc: 1536,
        run: f32_avx512_8x32,
        pack_a: pack_sliver::<f32, 8>,
        pack_b: pack_f32_avx512::<32>,
    };

    #[target_feature(enable = "avx512f")]
    unsafe fn f32_avx512_12x32(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { f32_avx512_rows_x32::<12>(kc, a, b, c, ldc, accumulate) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn f32_avx512_8x32(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { f32_avx512_rows_x32::<8>(kc, a, b, c, ldc, accumulate) }
    }

    /// One step of the k loop loads 2 vectors of B and, for each of the MR rows, broadcasts
    /// one value of A and does 2 FMAs. With 12 rows: 24 independent FMAs per step, enough to
    /// hide the FMA latency (4 cycles) on both FMA ports; 24 accumulators + 2 B vectors + 1
    /// broadcast = 27 of the 32 zmm registers. With 8 rows, 16 FMAs per step.
    #[inline(always)]
    unsafe fn f32_avx512_rows_x32<const MR: usize>(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        const NR: usize = 32;
        check_slivers(kc, MR, NR, a, b);
        // Ask for the C tile now: its cache lines arrive while the k loop runs, instead of
        // stalling the loads and stores at the end.
        // SAFETY: the caller guarantees the tile is inside C.
        unsafe { prefetch_tile(c, ldc, MR, NR * 4) };
        let mut acc0 = [_mm512_setzero_ps(); MR];
        let mut acc1 = [_mm512_setzero_ps(); MR];
        let mut a_ptr = a.as_ptr();
        let mut b_ptr = b.as_ptr();
        for _ in 0..kc {
            // SAFETY: the check above covers kc steps of MR values of A and NR values of B.
            unsafe {
                let b0 = _mm512_loadu_ps(b_ptr);
                let b1 = _mm512_loadu_ps(b_ptr.add(16));
                for i in 0..MR {
                    let a_i = _mm512_set1_ps(*a_ptr.add(i));
                    acc0[i] = _mm512_fmadd_ps(a_i, b0, acc0[i]);
                    acc1[i] = _mm512_fmadd_ps(a_i, b1, acc1[i]);
                }
                a_ptr = a_ptr.add(MR);
                b_ptr = b_ptr.add(NR);
            }
        }
        for i in 0..MR {
            // SAFETY: the caller guarantees the tile (MR rows of NR values) is valid and ours.
            unsafe {
                let c_ptr = c.add(i * ldc);
                let (mut c0, mut c1) = (acc0[i], acc1[i]);
                if accumulate {
                    c0 = _mm512_add_ps(c0, _mm512_loadu_ps(c_ptr));
                    c1 = _mm512_add_ps(c1, _mm512_loadu_ps(c_ptr.add(16)));
                }
                _mm512_storeu_ps(c_ptr, c0);
                _mm512_storeu_ps(c_ptr.add(16), c1);
            }
        }
    }

    /// Packs an f32 sliver on AVX-512. The interesting case is a sliver whose lines are
    /// contiguous in memory (row-major A, or B read through a transposed view): packing must
    /// then transpose. Element by element that is slow (one scalar store per value), so it is
    /// done 16 x 16 at a time: 16 vector loads (one per line), a transpose in registers, and
    /// 16 vector stores (one per step). Every other layout uses the plain [`pack_sliver`].
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_f32_avx512<const W: usize>(dst: &mut [f32], src: &Sliver<f32>, kc: usize) {
        if src.step_stride != 1 || src.line_stride == 1 {
            // SAFETY: pack_sliver is safe code.
            unsafe { pack_sliver::<f32, W>(dst, src, kc) };
            return;
        }
        let dst = &mut dst[..kc * W];
        assert!(src.lines <= W);
        for l0 in (0..W).step_by(16) {
            // The lines of this group that exist; missing ones are packed as zeros. Slicing
            // checks that each line's kc values lie inside the source buffer.
            let lines: [Option<&[f32]>; 16] = std::array::from_fn(|g| {
                let l = l0 + g;
                (l < src.lines).then(|| {
                    let start = src.base + l * src.line_stride;
                    &src.data[start..start + kc]
                })
            });
            // The last group of a sliver whose width is not a multiple of 16 (the 12-wide A
            // sliver) stores only its first `lanes` values per step.
            let lanes = (W - l0).min(16);
            let store_mask = ((1u32 << lanes) - 1) as __mmask16;
            for p0 in (0..kc).step_by(16) {
                let steps = (kc - p0).min(16);
                let load_mask = ((1u32 << steps) - 1) as __mmask16;
                let mut rows = [_mm512_setzero_ps(); 16];
                for (row, line) in rows.iter_mut().zip(&lines) {
                    if let Some(line) = line {
                        // SAFETY: the masked load touches only line[p0 .. p0 + steps].
                        *row = unsafe { _mm512_maskz_loadu_ps(load_mask, line.as_ptr().add(p0)) };
                    }
                }
                let columns = transpose_16x16(rows);
                for (s, column) in columns.iter().enumerate().take(steps) {
                    // SAFETY: (p0 + s) * W + l0 + lanes <= kc * W = dst.len().
                    unsafe {
                        let d = dst.as_mut_ptr().add((p0 + s) * W + l0);
                        _mm512_mask_storeu_ps(d, store_mask, *column);
                    }
                }
            }
        }
    }

    /// Transposes a 16 x 16 block held as 16 vectors: output vector `s` holds element `s` of
    /// every input vector. Three rounds of shuffles, each of which moves data between pairs of
    /// vectors at a coarser granularity (single floats, pairs of floats, 128-bit lanes).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
        // Round 1: interleave lines 2i and 2i+1. Within each 128-bit lane k (elements
        // 4k..4k+3), t[2i] holds both lines' elements 4k and 4k+1, t[2i+1] elements 4k+2, 4k+3.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Round 2: interleave pairs of floats. Lane k of u[4i + s] now holds element 4k + s of
        // lines 4i..4i+3.
        let mut u = [_mm512_setzero_ps(); 16];
        for i in 0..4 {
            let lo01 = _mm512_castps_pd(t[4 * i]);
            let hi01 = _mm512_castps_pd(t[4 * i + 1]);
            let lo23 = _mm512_castps_pd(t[4 * i + 2]);
            let hi23 = _mm512_castps_pd(t[4 * i + 3]);
            u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo01, lo23));
            u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo01, lo23));
            u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi01, hi23));
            u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi01, hi23));
        }
        // Round 3: gather 128-bit lanes. Output 4k + s takes lane k of u[s], u[4 + s],
        // u[8 + s], u[12 + s] (lines 0-3, 4-7, 8-11, 12-15).
        let mut out = [_mm512_setzero_ps(); 16];
        for s in 0..4 {
            // Lanes 0 and 1 of two vectors, then lanes 2 and 3.
            let lines0to7_k01 = _mm512_shuffle_f32x4::<0x44>(u[s], u[4 + s]);
            let lines0to7_k23 = _mm512_shuffle_f32x4::<0xEE>(u[s], u[4 + s]);
            let lines8to15_k01 = _mm512_shuffle_f32x4::<0x44>(u[8 + s], u[12 + s]);
            let lines8to15_k23 = _mm512_shuffle_f32x4::<0xEE>(u[8 + s], u[12 + s]);
            // Even lanes (k = 0 or 2) of both, then odd lanes (k = 1 or 3).
            out[s] = _mm512_shuffle_f32x4::<0x88>(lines0to7_k01, lines8to15_k01);
            out[4 + s] = _mm512_shuffle_f32x4::<0xDD>(lines0to7_k01, lines8to15_k01);
            out[8 + s] = _mm512_shuffle_f32x4::<0x88>(lines0to7_k23, lines8to15_k23);
            out[12 + s] = _mm512_shuffle_f32x4::<0xDD>(lines0to7_k23, lines8to15_k23);
        }
        out
    }

    /// The portable packing routine, compiled with AVX-512 enabled so its copies use wide
    /// vectors.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_avx512<T: Float, const W: usize>(dst: &mut [T], src: &Sliver<T>, kc: usize) {
        // SAFETY: pack_sliver is safe code.
        unsafe { pack_sliver::<T, W>(dst, src, kc) }
    }

    /// f64 on AVX-512: a 12 x 16 tile, the same register layout as the f32 kernel (two 8-wide
    /// vectors per row).
    pub(super) const F64_AVX512: Kernel<f64> = Kernel {
        mr: 12,
        nr: 16,
        kc: 256,
        nc: 512,
        mc: 1024,
        run: f64_avx512_12x16,
        pack_a: pack_avx512::<f64, 12>,
        pack_b: pack_avx512::<f64, 16>,
    };

    #[target_feature(enable = "avx512f")]
    unsafe fn f64_avx512_12x16(
        kc: usize,
        a: &[f64],
        b: &[f64],
        c: *mut f64,
        ldc: usize,
        accumulate: bool,
    ) {
        const MR: usize = 12;
        const NR: usize = 16;
        check_slivers(kc, MR, NR, a, b);
        // SAFETY: the caller guarantees the tile is inside C.
        unsafe { prefetch_tile(c, ldc, MR, NR * 8) };
        let mut acc0 = [_mm512_setzero_pd(); MR];
        let mut acc1 = [_mm512_setzero_pd(); MR];
        let mut a_ptr = a.as_ptr();
        let mut b_ptr = b.as_ptr();
        for _ in 0..kc {
            // SAFETY: the check above covers kc steps of MR values of A and NR values of B.
            unsafe {
                let b0 = _mm512_loadu_pd(b_ptr);
                let b1 = _mm512_loadu_pd(b_ptr.add(8));
                for i in 0..MR {
                    let a_i = _mm512_set1_pd(*a_ptr.add(i));
                    acc0[i] = _mm512_fmadd_pd(a_i, b0, acc0[i]);
                    acc1[i] = _mm512_fmadd_pd(a_i, b1, acc1[i]);
                }
                a_ptr = a_ptr.add(MR);
                b_ptr = b_ptr.add(NR);
            }
        }
        for i in 0..MR {
            // SAFETY: the caller guarantees the tile (MR rows of NR values) is valid and ours.
            unsafe {
                let c_ptr = c.add(i * ldc);
                let (mut c0, mut c1) = (acc0[i], acc1[i]);
                if accumulate {
                    c0 = _mm512_add_pd(c0, _mm512_loadu_pd(c_ptr));
                    c1 = _mm512_add_pd(c1, _mm512_loadu_pd(c_ptr.add(8)));
                }
                _mm512_storeu_pd(c_ptr, c0);
                _mm512_storeu_pd(c_ptr.add(8), c1);
            }
        }
    }

    /// The portable packing routine, compiled with AVX2 enabled.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_avx2<T: Float, const W: usize>(dst: &mut [T], src: &Sliver<T>, kc: usize) {
        // SAFETY: pack_sliver is safe code.
        unsafe { pack_sliver::<T, W>(dst, src, kc) }
    }

    /// f32 on AVX2 + FMA: a 6 x 16 tile in 12 ymm registers (two 8-wide vectors per row),
    /// leaving 4 of the 16 ymm registers for B and the broadcast.
    pub(super) const F32_AVX2: Kernel<f32> = Kernel {
        mr: 6,
        nr: 16,
        kc: 256,
        nc: 1024,
        mc: 1024,
        run: f32_avx2_6x16,
        pack_a: pack_avx2::<f32, 6>,
        pack_b: pack_avx2::<f32, 16>,
    };

    #[target_feature(enable = "avx2,fma")]
    unsafe fn f32_avx2_6x16(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        const MR: usize = 6;
        const NR: usize = 16;
        check_slivers(kc, MR, NR, a, b);
        let mut acc0 = [_mm256_setzero_ps(); MR];
        let mut acc1 = [_mm256_setzero_ps(); MR];
        let mut a_ptr = a.as_ptr();
        let mut b_ptr = b.as_ptr();
        for _ in 0..kc {
            // SAFETY: the check above covers kc steps of MR values of A and NR values of B.
            unsafe {
                let b0 = _mm256_loadu_ps(b_ptr);
                let b1 = _mm256_loadu_ps(b_ptr.add(8));
                for i in 0..MR {
                    let a_i = _mm256_broadcast_ss(&*a_ptr.add(i));
                    acc0[i] = _mm256_fmadd_ps(a_i, b0, acc0[i]);
                    acc1[i] = _mm256_fmadd_ps(a_i, b1, acc1[i]);
                }
                a_ptr = a_ptr.add(MR);
                b_ptr = b_ptr.add(NR);
            }
        }
        for i in 0..MR {
            // SAFETY: the caller guarantees the tile (MR rows of NR values) is valid and ours.
            unsafe {
                let c_ptr = c.add(i * ldc);
                let (mut c0, mut c1) = (acc0[i], acc1[i]);
                if accumulate {
                    c0 = _mm256_add_ps(c0, _mm256_loadu_ps(c_ptr));
                    c1 = _mm256_add_ps(c1, _mm256_loadu_ps(c_ptr.add(8)));
                }
                _mm256_storeu_ps(c_ptr, c0);
                _mm256_storeu_ps(c_ptr.add(8), c1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The blocked driver
// ---------------------------------------------------------------------------------------------

/// Packs the `rows x kc` block of A at (`row0`, `p0`) into `mr`-tall slivers.
fn pack_a<T: Float>(
    kernel: &Kernel<T>,
    dst: &mut [T],
    a: &MatRef<T>,
    rows: Range<usize>,
    p0: usize,
    kc: usize,
) {
    let mr = kernel.mr;
    let slivers = dst[..rows.len().div_ceil(mr) * mr * kc].chunks_exact_mut(mr * kc);
    for (sliver, row) in slivers.zip(rows.clone().step_by(mr)) {
        let src = Sliver {
            data: a.data,
            base: a.offset + row * a.row_stride + p0 * a.col_stride,
            lines: mr.min(rows.end - row),
            line_stride: a.row_stride,
            step_stride: a.col_stride,
        };
        // SAFETY: `kernel` suits this CPU (see `Kernel::run`).
        unsafe { (kernel.pack_a)(sliver, &src, kc) };
    }
}

/// Packs the `kc x cols` block of B at (`p0`, `col0`) into `nr`-wide slivers.
fn pack_b<T: Float>(
    kernel: &Kernel<T>,
    dst: &mut [T],
    b: &MatRef<T>,
    p0: usize,
    kc: usize,
    cols: Range<usize>,
) {
    let nr = kernel.nr;
    let slivers = dst[..cols.len().div_ceil(nr) * nr * kc].chunks_exact_mut(nr * kc);
    for (sliver, col) in slivers.zip(cols.clone().step_by(nr)) {
        let src = Sliver {
            data: b.data,
            base: b.offset + p0 * b.row_stride + col * b.col_stride,
            lines: nr.min(cols.end - col),
            line_stride: b.col_stride,
            step_stride: b.row_stride,
        };
        // SAFETY: `kernel` suits this CPU (see `Kernel::run`).
        unsafe { (kernel.pack_b)(sliver, &src, kc) };
    }
}

/// Splits `total` into the fewest blocks of at most `max_block`, of nearly equal size rounded up
/// to a multiple of `unit`. Equal blocks avoid a thin last block (e.g. k = 784 with KC = 256
/// becomes 4 blocks of 196, not 3 x 256 + 16).
fn balanced_block(total: usize, max_block: usize, unit: usize) -> usize {
    let blocks = total.div_ceil(max_block.max(1));
    total.div_ceil(blocks).div_ceil(unit) * unit
}

/// The blocked product on `threads` threads.
///
/// Threads never wait for each other: C is cut into one rectangle per thread, and each thread
/// runs the whole single-threaded algorithm ([`Problem::rect`]) on its rectangle, packing the
/// parts of A and B it needs itself. Packing the shared operand once per thread costs a little
/// extra work, but far less than making the threads meet after every packing step, which on a
/// busy or virtualised machine can cost tens of microseconds each time.
#[allow(clippy::too_many_arguments)]
fn matmul_blocked<T: Float>(
    kernel: &Kernel<T>,
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
    threads: usize,
) {
    let out = SharedRows::new(c, ldc);
    let problem = Problem {
        kernel,
        k,
        a: ASource::Matrix(a),
        b: BSource::Matrix(b),
        out: &out,
        accumulate,
    };
    if threads <= 1 {
        problem.rect(0..m, 0..n);
        return;
    }
    let grid = ThreadGrid::choose(kernel, m, k, n, threads);
    (0..threads).into_par_iter().for_each(|t| {
        let (rows, cols) = grid.rect(t);
        if !rows.is_empty() && !cols.is_empty() {
            problem.rect(rows, cols);
        }
    });
}

/// How C is cut between threads: a `row_parts x col_parts` grid of rectangles whose edges fall
/// on whole slivers.
struct ThreadGrid {
    row_parts: usize,
    col_parts: usize,
    m: usize,
    n: usize,
    mr: usize,
    nr: usize,
}

impl ThreadGrid {
    /// Picks the grid with the least work for the busiest thread. Work counts multiply-adds
    /// (ragged slivers count in full) plus packing, which costs about as much per element as
    /// `PACK_COST` multiply-adds. For example m = 128, n = 512 on 2 threads is cut into two
    /// column halves (128 rows are 11 slivers of 12, which would split unevenly 6 + 5).
    fn choose<T>(kernel: &Kernel<T>, m: usize, k: usize, n: usize, threads: usize) -> Self {
        const PACK_COST: usize = 10;
        let (mr, nr) = (kernel.mr, kernel.nr);
        let work = |row_parts: usize| {
            let col_parts = threads / row_parts;
            let rows = m.div_ceil(mr).div_ceil(row_parts) * mr;
            let cols = n.div_ceil(nr).div_ceil(col_parts) * nr;
            // A's rows are packed once per NC-wide block of columns, B's columns once.
            let packed = rows * k * cols.div_ceil(kernel.nc) + k * cols;
            rows * cols * k + PACK_COST * packed
        };
        let row_parts = (1..=threads)
            .filter(|&r| threads.is_multiple_of(r))
            .min_by_key(|&r| (work(r), threads - r))
            .unwrap_or(1);
        ThreadGrid {
            row_parts,
            col_parts: threads / row_parts,
            m,
            n,
            mr,
            nr,
        }
    }

    /// The rows and columns of C that thread `t` computes (possibly empty).
    fn rect(&self, t: usize) -> (Range<usize>, Range<usize>) {
        // Part `i` of `parts` over `len` elements, in whole units of `unit`.
        let part = |i: usize, parts: usize, len: usize, unit: usize| {
            let units = len.div_ceil(unit);
            let edge = |i: usize| (i * units / parts * unit).min(len);
            edge(i)..edge(i + 1)
        };
        let rows = part(t / self.col_parts, self.row_parts, self.m, self.mr);
        let cols = part(t % self.col_parts, self.col_parts, self.n, self.nr);
        (rows, cols)
    }
}

/// Everything about one product except which rectangle of C to compute.
struct Problem<'p, 'c, T> {
    kernel: &'p Kernel<T>,
    k: usize,
    a: ASource<'p, T>,
    b: BSource<'p, T>,
    out: &'p SharedRows<'c, T>,
    /// Add the product to C rather than overwrite it.
    accumulate: bool,
}

/// Where the blocked product gets its A blocks: packed from a matrix as it goes, or already
/// packed once for many products ([`PackedA`]).
#[derive(Clone, Copy)]
enum ASource<'p, T> {
    Matrix(MatRef<'p, T>),
    Packed(&'p PackedA<T>),
}

/// Fills one packed B block the way `pack_b` does, from something that is not a matrix in
/// memory: `pack(dst, p0, kc, cols, nr)` writes rows `p0..p0 + kc` of columns `cols` as
/// `cols.len().div_ceil(nr)` slivers of `kc x nr` (sliver s, step p, lane j at
/// `dst[(s * kc + p) * nr + j]`; lanes past the last column may hold anything finite).
pub type PackB<'p, T> = &'p (dyn Fn(&mut [T], usize, usize, Range<usize>, usize) + Sync);

/// Where the blocked product gets its B blocks: packed from a matrix, or by a [`PackB`]
/// (a convolution packs its column matrix straight from the image, never building it).
#[derive(Clone, Copy)]
pub enum BSource<'p, T> {
    /// B is a matrix in memory, packed block by block.
    Matrix(MatRef<'p, T>),
    /// B's blocks are written straight into the packed layout by a closure.
    Packer(PackB<'p, T>),
}

/// A left operand packed once for many products with different right operands (a
/// convolution's weights, shared by every chunk of samples). Products with it run on the
/// calling thread ([`matmul_packed`]).
pub struct PackedA<T> {
    kernel: Kernel<T>,
    m: usize,
    k: usize,
    kc_max: usize,
    mc_max: usize,
    /// Block (row block ib, depth block pb) at `(ib * depth_blocks + pb) * mc_max * kc_max`.
    data: Vec<T>,
}

impl<T: Float> PackedA<T> {
    /// Packs A [m, k] in the blocks that [`matmul_packed`] will ask for.
    pub fn new(m: usize, k: usize, a: MatRef<T>) -> Self {
        let kernel = select_kernel_for::<T>(m);
        // the same blocking as `Problem::rect` over all rows
        let kc_max = balanced_block(k, kernel.kc, 1).max(1);
        let mc_max = balanced_block(m, kernel.mc, kernel.mr).max(kernel.mr);
        let (row_blocks, depth_blocks) = (m.div_ceil(mc_max), k.div_ceil(kc_max));
        let block = mc_max * kc_max;
        let mut data = vec![T::ZERO; row_blocks * depth_blocks * block];
        for (ib, ic) in (0..m).step_by(mc_max).enumerate() {
            for (pb, pc) in (0..k).step_by(kc_max).enumerate() {
                let at = (ib * depth_blocks + pb) * block;
                let rows = ic..(ic + mc_max).min(m);
                pack_a(
                    &kernel,
                    &mut data[at..at + block],
                    &a,
                    rows,
                    pc,
                    kc_max.min(k - pc),
                );
            }
        }
        PackedA {
            kernel,
            m,
            k,
            kc_max,
            mc_max,
            data,
        }
    }

    fn block(&self, row0: usize, p0: usize) -> &[T] {
        let depth_blocks = self.k.div_ceil(self.kc_max);
        let block = self.mc_max * self.kc_max;
        let at = ((row0 / self.mc_max) * depth_blocks + p0 / self.kc_max) * block;
        &self.data[at..at + block]
    }
}

/// True when [`matmul`] would run the blocked algorithm for this shape (the one [`PackedA`]
/// and [`BSource::Packer`] serve), not the plain loop for small products.
pub fn is_blocked_shape(m: usize, k: usize, n: usize) -> bool {
    !(m * n * k < SMALL_PRODUCT || m <= 2 || n <= 4 || k == 0)
}

/// [`matmul_packed`] overwriting a C that may not be initialised yet (a fresh output buffer,
/// which then needs no zeroing): every element of the `m x n` block is written.
pub fn matmul_packed_uninit<T: Float>(
    a: &PackedA<T>,
    n: usize,
    b: BSource<T>,
    c: &mut [MaybeUninit<T>],
    ldc: usize,
) {
    let len = packed_c_len(a, n, c.len(), ldc);
    run_packed(a, n, b, &SharedRows::new_uninit(&mut c[..len], ldc), false);
}

/// C = A * B (or C += A * B when `accumulate`) for a pre-packed A, on the calling thread; rows
/// of C are `ldc` apart. The shape must be a blocked one ([`is_blocked_shape`]).
pub fn matmul_packed<T: Float>(
    a: &PackedA<T>,
    n: usize,
    b: BSource<T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    let len = packed_c_len(a, n, c.len(), ldc);
    run_packed(a, n, b, &SharedRows::new(&mut c[..len], ldc), accumulate);
}

/// The elements of C a packed product writes, checked against the buffer's length.
fn packed_c_len<T>(a: &PackedA<T>, n: usize, c_len: usize, ldc: usize) -> usize {
    let (m, k) = (a.m, a.k);
    assert!(
        is_blocked_shape(m, k, n),
        "matmul_packed: {m}x{k}x{n} is a small product"
    );
    let len = (m - 1) * ldc + n;
    assert!(
        ldc >= n && c_len >= len,
        "matmul_packed: C has {c_len} elements, need {m} rows of {n} every {ldc}"
    );
    len
}

fn run_packed<T: Float>(
    a: &PackedA<T>,
    n: usize,
    b: BSource<T>,
    out: &SharedRows<T>,
    accumulate: bool,
) {
    let problem = Problem {
        kernel: &a.kernel,
        k: a.k,
        a: ASource::Packed(a),
        b,
        out,
        accumulate,
    };
    problem.rect(0..a.m, 0..n);
}

impl<T: Float> Problem<'_, '_, T> {
    /// C[rows, cols] = A[rows, :] * B[:, cols] on the calling thread: the Goto/BLIS loop nest.
    ///
    /// ```text
    /// for each column block jc of C (NC wide):
    ///   for each depth block pc (KC deep):
    ///     pack B[pc.., jc..] into NR-wide slivers        the B block stays in L2
    ///     for each row block ic of C (MC tall):
    ///       pack A[ic.., pc..] into MR-tall slivers
    ///       for each A sliver (MR rows):                 it stays in L1
    ///         for each B sliver (NR columns):            streamed from L2
    ///           micro-kernel: C tile (+)= A sliver * B sliver
    /// ```
    ///
    /// Concurrent calls must be given disjoint rectangles.
    fn rect(&self, rows: Range<usize>, cols: Range<usize>) {
        let kernel = self.kernel;
        let kc_max = balanced_block(self.k, kernel.kc, 1);
        let nc_max = balanced_block(cols.len(), kernel.nc, kernel.nr);
        let mc_max = balanced_block(rows.len(), kernel.mc, kernel.mr);
        let mut b_buffer = Scratch::take(kc_max * nc_max);
        let mut a_buffer = Scratch::take(kc_max * mc_max);
        for jc in cols.clone().step_by(nc_max) {
            let col_block = jc..(jc + nc_max).min(cols.end);
            for pc in (0..self.k).step_by(kc_max) {
                let kc = kc_max.min(self.k - pc);
                let b_block = b_buffer.as_mut_slice();
                match self.b {
                    BSource::Matrix(b) => pack_b(kernel, b_block, &b, pc, kc, col_block.clone()),
                    BSource::Packer(pack) => {
                        let len = col_block.len().div_ceil(kernel.nr) * kernel.nr * kc;
                        pack(&mut b_block[..len], pc, kc, col_block.clone(), kernel.nr)
                    }
                }
                for ic in rows.clone().step_by(mc_max) {
                    let row_block = ic..(ic + mc_max).min(rows.end);
                    let a_block: &[T] = match self.a {
                        ASource::Matrix(a) => {
                            let a_block = a_buffer.as_mut_slice();
                            pack_a(kernel, a_block, &a, row_block.clone(), pc, kc);
                            a_block
                        }
                        // packed with the same blocking (`PackedA::new`, all rows)
                        ASource::Packed(packed) => packed.block(ic, pc),
                    };
                    let tiles = Tiles {
                        kernel,
                        kc,
                        a_block,
                        b_block,
                        accumulate: pc > 0 || self.accumulate,
                    };
                    tiles.run(self.out, row_block, col_block.clone());
                }
            }
        }
    }
}

/// A packed A block times a packed B block: the two innermost loops.
struct Tiles<'k, 'p, T> {
    kernel: &'k Kernel<T>,
    kc: usize,
    a_block: &'p [T],
    b_block: &'p [T],
    /// False for the first k block, which overwrites C instead of adding to it.
    accumulate: bool,
}

impl<T: Float> Tiles<'_, '_, T> {
    /// Adds (or writes) the product into C[rows, cols], one micro-tile at a time.
    fn run(&self, out: &SharedRows<T>, rows: Range<usize>, cols: Range<usize>) {
        let Kernel { mr, nr, run, .. } = *self.kernel;
        let kc = self.kc;
        let a_slivers = self.a_block.chunks_exact(mr * kc);
        for (a_sliver, i) in a_slivers.zip(rows.clone().step_by(mr)) {
            let tile_rows = mr.min(rows.end - i);
            let b_slivers = self.b_block.chunks_exact(nr * kc);
            for (b_sliver, j) in b_slivers.zip(cols.clone().step_by(nr)) {
                let tile_cols = nr.min(cols.end - j);
                let c_tile = out.tile(i, j, tile_rows, tile_cols);
                if tile_rows == mr && tile_cols == nr {
                    // SAFETY: `kernel` suits this CPU; the tile lies inside C (checked by
                    // `tile`) and belongs to this thread alone.
                    unsafe { run(kc, a_sliver, b_sliver, c_tile, out.width(), self.accumulate) };
                } else {
                    self.ragged_tile(
                        a_sliver,
                        b_sliver,
                        c_tile,
                        out.width(),
                        tile_rows,
                        tile_cols,
                    );
                }
            }
        }
    }

    /// A tile on the ragged edge of C: compute the full tile into a scratch buffer, then copy
    /// out the `rows x cols` part that lies inside C.
    fn ragged_tile(
        &self,
        a_sliver: &[T],
        b_sliver: &[T],
        c_tile: *mut T,
        ldc: usize,
        rows: usize,
        cols: usize,
    ) {
        let Kernel { mr, nr, run, .. } = *self.kernel;
        let mut scratch = [T::ZERO; MAX_TILE];
        assert!(mr * nr <= MAX_TILE);
        // SAFETY: `kernel` suits this CPU; scratch holds mr rows of nr values.
        unsafe { run(self.kc, a_sliver, b_sliver, scratch.as_mut_ptr(), nr, false) };
        for (r, src) in scratch.chunks_exact(nr).take(rows).enumerate() {
            for (j, &s) in src[..cols].iter().enumerate() {
                // SAFETY: element (r, j) of the tile is inside C (checked by `SharedRows::tile`)
                // and belongs to this thread alone. Written through the pointer, never read
                // unless accumulating, as C may be uninitialised memory the first time.
                unsafe {
                    let d = c_tile.add(r * ldc + j);
                    if self.accumulate {
                        *d += s;
                    } else {
                        d.write(s);
                    }
                }
            }
        }
    }
}

/// Room for the largest register tile of any kernel (12 x 32).
const MAX_TILE: usize = 12 * 32;

#[cfg(test)]
mod tests {
    use super::*;

    /// A packed once, reused for several products; B from a matrix and from a packer that
    /// builds the same slivers element by element.
    #[test]
    fn packed_a_and_packed_b_match_the_plain_product() {
        for &(m, k, n) in &[(64usize, 576usize, 100usize), (13, 300, 70), (128, 40, 33)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 13) as f32) - 6.0).collect();
            let ar = MatRef {
                data: &a,
                offset: 0,
                row_stride: k,
                col_stride: 1,
            };
            let br = MatRef {
                data: &b,
                offset: 0,
                row_stride: n,
                col_stride: 1,
            };
            let mut want = vec![0.0; m * n];
            matmul(m, k, n, ar, br, &mut want);
            let packed = PackedA::new(m, k, ar);
            let packer = |dst: &mut [f32], p0: usize, kc: usize, cols: Range<usize>, nr: usize| {
                for (s, col0) in cols.clone().step_by(nr).enumerate() {
                    for p in 0..kc {
                        for j in 0..nr {
                            let col = col0 + j;
                            dst[(s * kc + p) * nr + j] = if col < cols.end {
                                b[(p0 + p) * n + col]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            };
            for source in [BSource::Matrix(br), BSource::Packer(&packer)] {
                let mut c = vec![7.0; m * n];
                matmul_packed(&packed, n, source, &mut c, n, false);
                // integer-valued operands: every order of summation gives the same floats
                assert_eq!(c, want, "{m}x{k}x{n}");
            }
        }
    }

    /// C as a band of a wider matrix (`ldc` > n), overwritten and then accumulated into, on
    /// the small path and the blocked one: the columns outside the band are never touched.
    #[test]
    fn matmul_into_writes_a_band_and_accumulates() {
        for &(m, k, n) in &[(2usize, 3usize, 5usize), (40, 70, 50)] {
            let ldc = n + 7;
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 53 % 13) as f64) - 6.0).collect();
            let (ar, br) = (
                MatRef {
                    data: &a,
                    offset: 0,
                    row_stride: k,
                    col_stride: 1,
                },
                MatRef {
                    data: &b,
                    offset: 0,
                    row_stride: n,
                    col_stride: 1,
                },
            );
            let mut want = vec![0.0; m * n];
            matmul(m, k, n, ar, br, &mut want);
            let mut c = vec![-1.0; m * ldc];
            matmul_into(m, k, n, ar, br, &mut c, ldc, false, 2);
            matmul_into(m, k, n, ar, br, &mut c, ldc, true, 2);
            for i in 0..m {
                for j in 0..ldc {
                    let expected = if j < n { 2.0 * want[i * n + j] } else { -1.0 };
                    assert_eq!(c[i * ldc + j], expected, "({i}, {j}) of {m}x{k}x{n}");
                }
            }
        }
    }

    /// A deterministic pseudo-random value in [-1, 1).
    fn value(seed: usize) -> f64 {
        let x = (seed as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) - 1.0
    }

    fn buffer<T: Float>(len: usize, seed: usize) -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64(value(i * 31 + seed)))
            .collect()
    }

    /// The triple loop, in f64.
    fn reference<T: Float>(m: usize, k: usize, n: usize, a: MatRef<T>, b: MatRef<T>) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a.at(i, p).to_f64() * b.at(p, j).to_f64())
                    .sum();
            }
        }
        c
    }

    /// Asserts `got` matches `want` to `tol` relative to the norm of `want`.
    fn assert_close<T: Float>(got: &[T], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len());
        let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
        let err = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g.to_f64() - w).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(err <= tol * norm, "{what}: error {err} vs norm {norm}");
    }

    /// The ways an operand can be laid out in its buffer.
    #[derive(Clone, Copy, Debug)]
    enum Layout {
        RowMajor,
        ColMajor,
        /// Row-major with padding between rows and an offset.
        Padded,
        /// Every row is the same (row stride 0), as a broadcast operand.
        BroadcastRows,
        /// Every column is the same (column stride 0).
        BroadcastCols,
    }

    /// A `rows x cols` operand with the given layout, over a freshly filled buffer.
    fn operand<T: Float>(
        rows: usize,
        cols: usize,
        layout: Layout,
        seed: usize,
    ) -> (Vec<T>, usize, usize, usize) {
        match layout {
            Layout::RowMajor => (buffer(rows * cols, seed), 0, cols, 1),
            Layout::ColMajor => (buffer(rows * cols, seed), 0, 1, rows),
            Layout::Padded => (buffer(7 + rows * (cols + 3), seed), 7, cols + 3, 1),
            Layout::BroadcastRows => (buffer(cols + 2, seed), 2, 0, 1),
            Layout::BroadcastCols => (buffer(rows + 1, seed), 1, 1, 0),
        }
    }

    fn check<T: Float>(m: usize, k: usize, n: usize, la: Layout, lb: Layout, tol: f64) {
        let (a_data, a_off, a_rs, a_cs) = operand::<T>(m, k, la, 1);
        let (b_data, b_off, b_rs, b_cs) = operand::<T>(k, n, lb, 2);
        let a = MatRef {
            data: &a_data,
            offset: a_off,
            row_stride: a_rs,
            col_stride: a_cs,
        };
        let b = MatRef {
            data: &b_data,
            offset: b_off,
            row_stride: b_rs,
            col_stride: b_cs,
        };
        let want = reference(m, k, n, a, b);
        // Start from garbage: matmul must overwrite C, not add to it.
        let mut c = vec![T::from_f64(7.0); m * n];
        matmul(m, k, n, a, b, &mut c);
        let what = format!("{m}x{k}x{n} {la:?} {lb:?}");
        assert_close(&c, &want, tol, &what);
        // One thread, and several, must agree with the reference too.
        let mut c1 = vec![T::from_f64(-3.0); m * n];
        matmul_with(m, k, n, a, b, &mut c1, 1);
        assert_close(&c1, &want, tol, &what);
        // Several thread counts, so that C is cut into rows, columns and a 2 x 2 grid.
        for threads in [2, 3, 4] {
            let mut c2 = vec![T::from_f64(-3.0); m * n];
            matmul_with(m, k, n, a, b, &mut c2, threads);
            assert_close(&c2, &want, tol, &format!("{what} on {threads} threads"));
        }
    }

    const SHAPES: [(usize, usize, usize); 15] = [
        (1, 1, 1),
        (3, 0, 4),
        (1, 300, 1),
        (1, 64, 100),
        (100, 64, 1),
        (2, 3, 4),
        (12, 256, 32),
        (17, 33, 9),
        (13, 257, 33),
        (64, 64, 64),
        (127, 129, 65),
        (300, 5, 700),
        (128, 784, 130),
        (50, 1100, 40),
        (200, 300, 800),
    ];

    const LAYOUTS: [(Layout, Layout); 6] = [
        (Layout::RowMajor, Layout::RowMajor),
        (Layout::ColMajor, Layout::RowMajor),
        (Layout::RowMajor, Layout::ColMajor),
        (Layout::ColMajor, Layout::ColMajor),
        (Layout::Padded, Layout::Padded),
        (Layout::RowMajor, Layout::BroadcastRows),
    ];

    #[test]
    fn f32_matches_reference() {
        for &(m, k, n) in &SHAPES {
            for &(la, lb) in &LAYOUTS {
                check::<f32>(m, k, n, la, lb, 1e-5);
            }
        }
        check::<f32>(
            40,
            70,
            50,
            Layout::BroadcastCols,
            Layout::BroadcastRows,
            1e-5,
        );
    }

    #[test]
    fn f64_matches_reference() {
        for &(m, k, n) in &SHAPES {
            for &(la, lb) in &LAYOUTS {
                check::<f64>(m, k, n, la, lb, 1e-12);
            }
        }
        check::<f64>(
            40,
            70,
            50,
            Layout::BroadcastCols,
            Layout::BroadcastRows,
            1e-12,
        );
    }

    /// Every kernel this CPU supports, not only the one `select_kernel` prefers.
    #[test]
    fn every_kernel_matches_reference() {
        fn run_all<T: Float>(kernels: &[Kernel<T>], tol: f64) {
            for kernel in kernels {
                for &(m, k, n) in &[(1, 1, 1), (17, 33, 9), (127, 129, 65), (40, 600, 90)] {
                    for &(la, lb) in &LAYOUTS {
                        let (a_data, a_off, a_rs, a_cs) = operand::<T>(m, k, la, 5);
                        let (b_data, b_off, b_rs, b_cs) = operand::<T>(k, n, lb, 6);
                        let a = MatRef {
                            data: &a_data,
                            offset: a_off,
                            row_stride: a_rs,
                            col_stride: a_cs,
                        };
                        let b = MatRef {
                            data: &b_data,
                            offset: b_off,
                            row_stride: b_rs,
                            col_stride: b_cs,
                        };
                        let want = reference(m, k, n, a, b);
                        let mut c = vec![T::from_f64(1.0); m * n];
                        // A small KC forces several k blocks, exercising accumulation.
                        let kernel = Kernel {
                            kc: 64,
                            nc: 2 * kernel.nr,
                            mc: 2 * kernel.mr,
                            ..*kernel
                        };
                        matmul_blocked(&kernel, m, k, n, a, b, &mut c, n, false, 2);
                        assert_close(
                            &c,
                            &want,
                            tol,
                            &format!("{}x{} kernel", kernel.mr, kernel.nr),
                        );
                    }
                }
            }
        }
        let mut f32_kernels = vec![portable_kernel::<f32>()];
        let mut f64_kernels = vec![portable_kernel::<f64>()];
        #[cfg(target_arch = "x86_64")]
        {
            if vector::has_avx512() {
                f32_kernels.push(x86::F32_AVX512);
                f32_kernels.push(x86::F32_AVX512_8ROWS);
                f64_kernels.push(x86::F64_AVX512);
            }
            if vector::has_avx2_fma() {
                f32_kernels.push(x86::F32_AVX2);
            }
        }
        run_all(&f32_kernels, 1e-5);
        run_all(&f64_kernels, 1e-12);
    }

    /// The unpacked path for small products, whatever the size thresholds send to it.
    #[test]
    fn small_path_matches_reference() {
        for &(m, k, n) in &[(1, 784, 50), (3, 37, 20), (20, 9, 1), (5, 1, 5)] {
            for &(la, lb) in &LAYOUTS {
                let (a_data, a_off, a_rs, a_cs) = operand::<f64>(m, k, la, 3);
                let (b_data, b_off, b_rs, b_cs) = operand::<f64>(k, n, lb, 4);
                let a = MatRef {
                    data: &a_data,
                    offset: a_off,
                    row_stride: a_rs,
                    col_stride: a_cs,
                };
                let b = MatRef {
                    data: &b_data,
                    offset: b_off,
                    row_stride: b_rs,
                    col_stride: b_cs,
                };
                let mut c = vec![f64::NAN; m * n];
                matmul_small(m, k, n, a, b, &mut c, n, false);
                let what = format!("small {m}x{k}x{n} {la:?} {lb:?}");
                assert_close(&c, &reference(m, k, n, a, b), 1e-12, &what);
            }
        }
    }

    #[test]
    fn batched_matches_reference() {
        for &(batch, m, k, n) in &[
            (5, 3, 4, 5),
            (4, 33, 65, 17),
            (3, 100, 100, 100),
            (1, 7, 7, 7),
            (0, 4, 4, 4),
        ] {
            // All batches live in one buffer; batch i starts at a distinct, irregular offset.
            let a_offsets: Vec<usize> = (0..batch).map(|i| i * (m * k + 5) + 3).collect();
            let b_offsets: Vec<usize> = (0..batch).map(|i| (batch - 1 - i) * (k * n + 2)).collect();
            let a_data = buffer::<f32>(batch * (m * k + 5) + 3, 9);
            let b_data = buffer::<f32>(batch * (k * n + 2), 10);
            // B is read transposed to exercise strides inside the batch too.
            let a = MatRef {
                data: &a_data,
                offset: 0,
                row_stride: k,
                col_stride: 1,
            };
            let b = MatRef {
                data: &b_data,
                offset: 0,
                row_stride: 1,
                col_stride: k,
            };
            let mut c = vec![f32::NAN; batch * m * n];
            batched_matmul(m, k, n, a, &a_offsets, b, &b_offsets, &mut c);
            for i in 0..batch {
                let ai = MatRef {
                    offset: a_offsets[i],
                    ..a
                };
                let bi = MatRef {
                    offset: b_offsets[i],
                    ..b
                };
                let want = reference(m, k, n, ai, bi);
                assert_close(&c[i * m * n..(i + 1) * m * n], &want, 1e-5, "batched");
            }
        }
    }

    #[test]
    fn k_zero_overwrites_with_zero() {
        let a = MatRef {
            data: &[] as &[f64],
            offset: 0,
            row_stride: 0,
            col_stride: 1,
        };
        let mut c = vec![5.0; 6];
        matmul(2, 0, 3, a, a, &mut c);
        assert_eq!(c, vec![0.0; 6]);
    }
}
