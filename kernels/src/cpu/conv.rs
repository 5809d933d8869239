//! 2-D convolution by per-sample im2col and our matmul, and the two adjoints that its backward
//! (and conv_transpose2d) need. One geometry describes all three:
//!
//! ```text
//!   forward       y[n] = W  · cols(x[n])          W: [Cout, Cin/G · T] per group, T = active taps
//!   input grad   dx[n] = col2im(Wᵀ · g[n])        (this is also conv_transpose2d's forward)
//!   weight grad     dW = Σₙ g[n] · cols(x[n])ᵀ
//! ```
//!
//! `taps` lists the kernel positions that take part. A plain convolution uses all kh·kw of them;
//! a masked (PixelCNN) convolution lists only the unmasked ones, so the masked taps are never
//! read, multiplied or written: the work shrinks with the mask. Samples run in parallel; each
//! sample's column buffer (Cin·T x Ho·Wo) stays small enough to live in cache.
//!
//! Stride-1 convolutions with at most four output channels (image heads) skip im2col:
//! `few_outputs` computes them from zero-padded planes read at each tap's offset.

mod few_outputs;

use crate::cpu::matmul::{
    is_blocked_shape, matmul_into, matmul_packed, matmul_packed_uninit, BSource, MatRef, PackedA,
};
use crate::cpu::scratch::Scratch;
use crate::desc::conv::ConvGeometry;
use crate::float::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// The range of output positions o for which o*stride - pad + offset lies in [0, size).
fn valid_range(
    out: usize,
    size: usize,
    stride: usize,
    pad: usize,
    offset: usize,
) -> (usize, usize) {
    // smallest o with o*stride + offset >= pad
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // largest o with o*stride + offset - pad < size  <=>  o*stride < size + pad - offset
    let limit = size + pad;
    let hi = if limit <= offset {
        0
    } else {
        ((limit - offset - 1) / stride + 1).min(out)
    };
    (lo.min(hi), hi)
}

/// cols[(c·T + t), at + p - p0] = x[c, oh·sh - pt + i·dh, ow·sw - pl + j·dw] for tap
/// t = (i, j) and output position p = oh·wo + ow in `positions` (p0 its start), zero outside
/// the image, for channels `c0..c0 + channels` of one sample. `ld` is the length of a row of
/// `cols` (several samples may sit side by side, each at its own `at`).
#[allow(clippy::too_many_arguments)]
fn im2col<T: Float>(
    x: &[T],
    g: &ConvGeometry,
    gather: Option<&GatherTable>,
    c0: usize,
    channels: usize,
    positions: Range<usize>,
    cols: &mut [T],
    ld: usize,
    at: usize,
) {
    let ntaps = g.taps.len();
    let ranges: Vec<TapRange> = g.taps.iter().map(|&tap| TapRange::of(g, tap)).collect();
    for c in 0..channels {
        let plane = &x[(c0 + c) * g.h * g.w..(c0 + c + 1) * g.h * g.w];
        for (t, &tap) in g.taps.iter().enumerate() {
            let start = (c * ntaps + t) * ld + at;
            let row = &mut cols[start..start + positions.len()];
            column_row(plane, g, gather, t, tap, ranges[t], positions.clone(), row);
        }
    }
}

/// Row `positions` of tap `t` (= `tap`, with its `range`) of one channel's column matrix:
/// through the gather table of a strided or dilated convolution, else by row copies.
#[allow(clippy::too_many_arguments)]
fn column_row<T: Float>(
    plane: &[T],
    g: &ConvGeometry,
    gather: Option<&GatherTable>,
    t: usize,
    tap: (usize, usize),
    range: TapRange,
    positions: Range<usize>,
    row: &mut [T],
) {
    match gather {
        Some(table) => table.gather(t, positions, plane, row),
        None => im2col_row(plane, g, tap, range, positions, row),
    }
}

/// The output rows and columns for which a tap reads inside the image.
#[derive(Clone, Copy)]
struct TapRange {
    oh: (usize, usize),
    ow: (usize, usize),
}

impl TapRange {
    fn of(g: &ConvGeometry, (i, j): (usize, usize)) -> TapRange {
        TapRange {
            oh: valid_range(g.ho, g.h, g.stride.0, g.pad.0, i * g.dilation.0),
            ow: valid_range(g.wo, g.w, g.stride.1, g.pad.2, j * g.dilation.1),
        }
    }
}

/// One row of the column matrix: `row[p - p0]` = the pixel of `plane` that tap (i, j) reads
/// for output position p in `positions`, zero where it falls in the padding. `range` is the
/// tap's [`TapRange`].
fn im2col_row<T: Float>(
    plane: &[T],
    g: &ConvGeometry,
    (i, j): (usize, usize),
    range: TapRange,
    positions: Range<usize>,
    row: &mut [T],
) {
    let p0 = positions.start;
    let ((oh_lo, oh_hi), (ow_lo, ow_hi)) = (range.oh, range.ow);
    for_each_output_row(g.wo, positions, |oh, ows| {
        let dst = &mut row[oh * g.wo + ows.start - p0..oh * g.wo + ows.end - p0];
        // the part of this output row whose input pixels lie inside the image
        let (lo, hi) = (ow_lo.max(ows.start), ow_hi.min(ows.end));
        if oh < oh_lo || oh >= oh_hi || lo >= hi {
            dst.fill(T::ZERO);
            return;
        }
        dst[..lo - ows.start].fill(T::ZERO);
        dst[hi - ows.start..].fill(T::ZERO);
        let ih = oh * g.stride.0 + i * g.dilation.0 - g.pad.0;
        let src = &plane[ih * g.w..(ih + 1) * g.w];
        let iw0 = lo * g.stride.1 + j * g.dilation.1 - g.pad.2;
        let dst = &mut dst[lo - ows.start..hi - ows.start];
        if g.stride.1 == 1 {
            dst.copy_from_slice(&src[iw0..iw0 + dst.len()]);
        } else {
            for (k, d) in dst.iter_mut().enumerate() {
                *d = src[iw0 + k * g.stride.1];
            }
        }
    });
}

/// For strided or dilated convolutions, whose column rows are gathers rather than copies of
/// image rows: per tap, the pixel offset (within a channel's plane) read at each output
/// position, `u32::MAX` in the padding. One flat loop over it replaces a short strided loop
/// per output row (a 4x4 stride-2 convolution to 7x7 reads rows of 7).
struct GatherTable {
    offsets: Vec<Vec<u32>>,
    /// h·w, the plane the offsets index.
    plane: usize,
}

impl GatherTable {
    fn of(g: &ConvGeometry) -> Option<GatherTable> {
        let worthwhile = g.stride != (1, 1) || g.dilation != (1, 1);
        if !worthwhile || g.h * g.w == 0 || g.h * g.w >= PADDING as usize {
            return None;
        }
        let offsets = g
            .taps
            .iter()
            .map(|&(i, j)| {
                (0..g.out_positions())
                    .map(|p| {
                        let (oh, ow) = (p / g.wo, p % g.wo);
                        let ih = (oh * g.stride.0 + i * g.dilation.0).checked_sub(g.pad.0);
                        let iw = (ow * g.stride.1 + j * g.dilation.1).checked_sub(g.pad.2);
                        match (ih, iw) {
                            (Some(ih), Some(iw)) if ih < g.h && iw < g.w => (ih * g.w + iw) as u32,
                            _ => PADDING,
                        }
                    })
                    .collect()
            })
            .collect();
        Some(GatherTable {
            offsets,
            plane: g.h * g.w,
        })
    }

    /// `out[q - p0] = plane[offset of tap t at output position q]`, 0 in the padding, for q in
    /// `positions`. The loop is compiled for AVX-512 where the CPU has it (16-lane gathers).
    fn gather<T: Float>(&self, t: usize, positions: Range<usize>, plane: &[T], out: &mut [T]) {
        let offsets = &self.offsets[t][positions];
        assert!(
            plane.len() == self.plane && self.plane > 0 && out.len() == offsets.len(),
            "GatherTable::gather: a plane of {} for a table of {}",
            plane.len(),
            self.plane
        );
        crate::cpu::vector::widest(
            #[inline(always)]
            || {
                // SAFETY: the offsets of a table built for a plane of this size are below
                // plane.len() or PADDING, and the plane is not empty (checked above).
                unsafe { gather_loop(offsets, plane, out) }
            },
        )
    }
}

/// # Safety
/// Every offset is either below `plane.len()` (true of a `GatherTable` built for a plane of
/// this size: its offsets come from ih < h and iw < w) or `PADDING`, and `plane` is not empty.
#[inline(always)]
unsafe fn gather_loop<T: Float>(offsets: &[u32], plane: &[T], out: &mut [T]) {
    for (d, &o) in out.iter_mut().zip(offsets) {
        let index = if o == PADDING { 0 } else { o as usize };
        // SAFETY: index < plane.len() by the contract above (0 for padding, plane non-empty);
        // unchecked so that the loop becomes vector gathers.
        let v = unsafe { *plane.get_unchecked(index) };
        *d = if o == PADDING { T::ZERO } else { v };
    }
}

/// A `GatherTable` offset that reads the zero padding.
const PADDING: u32 = u32::MAX;

/// Packs rows `p0..p0 + kc` and columns `cols` of the column matrix of a chunk of samples
/// (group `grp`; column q is position q mod l of sample q / l) straight into the matmul's B
/// slivers (`nr` columns each, see `matmul::PackB`), one im2col row at a time through a small
/// buffer that stays in L1: the column matrix itself is never built.
#[allow(clippy::too_many_arguments)]
fn pack_cols<T: Float>(
    x: &[T],
    g: &ConvGeometry,
    gather: Option<&GatherTable>,
    samples: &Range<usize>,
    grp: usize,
    dst: &mut [T],
    p0: usize,
    kc: usize,
    cols: Range<usize>,
    nr: usize,
) {
    let (l, ntaps) = (g.out_positions(), g.taps.len());
    let mut row = vec![T::ZERO; cols.len()];
    let ranges: Vec<TapRange> = g.taps.iter().map(|&tap| TapRange::of(g, tap)).collect();
    for p in p0..p0 + kc {
        let (c, tap, range) = (p / ntaps, g.taps[p % ntaps], ranges[p % ntaps]);
        let channel = grp * g.cin_per_group() + c;
        // the row, sample by sample
        let mut q = cols.start;
        while q < cols.end {
            let (s, pos) = (samples.start + q / l, q % l);
            let len = (l - pos).min(cols.end - q);
            let plane = &x[s * g.in_size() + channel * g.h * g.w..][..g.h * g.w];
            let at = q - cols.start;
            let out = &mut row[at..at + len];
            column_row(plane, g, gather, p % ntaps, tap, range, pos..pos + len, out);
            q += len;
        }
        for (sliver, values) in row.chunks(nr).enumerate() {
            let lanes = &mut dst[(sliver * kc + p - p0) * nr..][..nr];
            // a whole sliver line of the usual width as one fixed-size copy (inlined vector
            // moves, not a call to memmove for 128 bytes)
            if let (Ok(to), Ok(from)) = (
                <&mut [T; 32]>::try_from(&mut *lanes),
                <&[T; 32]>::try_from(values),
            ) {
                *to = *from;
                continue;
            }
            lanes[..values.len()].copy_from_slice(values);
            lanes[values.len()..].fill(T::ZERO);
        }
    }
}

/// Calls `f(oh, ow_lo..ow_hi)` for each output row that the flat output positions `positions`
/// (p = oh·wo + ow) touch, with the part of the row inside them.
fn for_each_output_row(wo: usize, positions: Range<usize>, mut f: impl FnMut(usize, Range<usize>)) {
    if positions.is_empty() || wo == 0 {
        return;
    }
    for oh in positions.start / wo..=(positions.end - 1) / wo {
        let row_start = oh * wo;
        let lo = positions.start.max(row_start) - row_start;
        let hi = positions.end.min(row_start + wo) - row_start;
        f(oh, lo..hi);
    }
}

/// The adjoint of [`im2col`]: adds every column entry back onto the pixel it was read from.
#[allow(clippy::too_many_arguments)]
fn col2im<T: Float>(
    cols: &[T],
    g: &ConvGeometry,
    gather: Option<&GatherTable>,
    c0: usize,
    channels: usize,
    positions: Range<usize>,
    dx: &mut [T],
    ld: usize,
    at: usize,
) {
    let ntaps = g.taps.len();
    let p0 = positions.start;
    let ranges: Vec<TapRange> = g.taps.iter().map(|&tap| TapRange::of(g, tap)).collect();
    for c in 0..channels {
        let plane = &mut dx[(c0 + c) * g.h * g.w..(c0 + c + 1) * g.h * g.w];
        for (t, &(i, j)) in g.taps.iter().enumerate() {
            let start = (c * ntaps + t) * ld + at;
            let row = &cols[start..start + positions.len()];
            if let Some(table) = gather {
                for (&o, &v) in table.offsets[t][positions.clone()].iter().zip(row) {
                    // PADDING is past the plane: nothing to add there
                    if let Some(d) = plane.get_mut(o as usize) {
                        *d += v;
                    }
                }
                continue;
            }
            let ((oh_lo, oh_hi), (ow_lo, ow_hi)) = (ranges[t].oh, ranges[t].ow);
            for_each_output_row(g.wo, positions.clone(), |oh, ows| {
                let (lo, hi) = (ow_lo.max(ows.start), ow_hi.min(ows.end));
                if oh < oh_lo || oh >= oh_hi || lo >= hi {
                    return;
                }
                let ih = oh * g.stride.0 + i * g.dilation.0 - g.pad.0;
                let dst = &mut plane[ih * g.w..(ih + 1) * g.w];
                let src = &row[oh * g.wo + lo - p0..oh * g.wo + hi - p0];
                let iw0 = lo * g.stride.1 + j * g.dilation.1 - g.pad.2;
                if g.stride.1 == 1 {
                    for (d, &v) in dst[iw0..iw0 + src.len()].iter_mut().zip(src) {
                        *d += v;
                    }
                } else {
                    for (pixels, &v) in dst[iw0..].chunks_mut(g.stride.1).zip(src) {
                        pixels[0] += v;
                    }
                }
            });
        }
    }
}

/// Full weights [c_out, c_in/G, kh, kw] -> the active taps only, [c_out, c_in/G · T].
pub fn gather_taps<T: Float>(w: &[T], g: &ConvGeometry) -> Vec<T> {
    let mut out = Vec::with_capacity(g.c_out * g.k_per_group());
    for o in 0..g.c_out {
        for c in 0..g.cin_per_group() {
            let base = (o * g.cin_per_group() + c) * g.kh * g.kw;
            out.extend(g.taps.iter().map(|&(i, j)| w[base + i * g.kw + j]));
        }
    }
    out
}

/// The adjoint of [`gather_taps`]: active-tap weights back to full shape, zeros at masked taps.
pub fn scatter_taps<T: Float>(w_active: &[T], g: &ConvGeometry) -> Vec<T> {
    let mut out = vec![T::ZERO; g.c_out * g.cin_per_group() * g.kh * g.kw];
    let ntaps = g.taps.len();
    for o in 0..g.c_out {
        for c in 0..g.cin_per_group() {
            let base = (o * g.cin_per_group() + c) * g.kh * g.kw;
            for (t, &(i, j)) in g.taps.iter().enumerate() {
                out[base + i * g.kw + j] = w_active[(o * g.cin_per_group() + c) * ntaps + t];
            }
        }
    }
    out
}

fn rows<T>(data: &[T], offset: usize, row_stride: usize) -> MatRef<'_, T> {
    MatRef {
        data,
        offset,
        row_stride,
        col_stride: 1,
    }
}

fn cols_t<T>(data: &[T], offset: usize, row_stride: usize) -> MatRef<'_, T> {
    // the transpose of a row-major matrix with `row_stride`
    MatRef {
        data,
        offset,
        row_stride: 1,
        col_stride: row_stride,
    }
}

/// Samples are processed in chunks whose column matrices sit side by side, so each matmul has
/// a long inner dimension (Ho·Wo alone is often 49 or 196: too short for the micro-kernel) while
/// the chunk's column buffer stays near 1 MiB (within L2). The chunking depends only on the shapes, so
/// results do not depend on the number of threads.
///
/// The number of chunks is rounded up to a multiple of 8 (where there are enough samples), so
/// that 2, 4 or 8 threads get equal shares. Then, because a chunk's ns·Ho·Wo columns are the
/// width of its products and the micro-kernel computes 32 columns at a time whether or not they
/// are there, twice the samples a chunk are taken where they leave less of the last 32 empty
/// (and their column matrix stays within twice the target):
/// DCGAN's 7x7 outputs in chunks of 4 samples are 196 columns computed as 224 (12.5% of the
/// work thrown away), in chunks of 8, 392 as 416 (6%).
fn samples_per_chunk(g: &ConvGeometry) -> usize {
    const TARGET_ELEMENTS: usize = 1 << 18;
    const BALANCE: usize = 8;
    let (n, l) = (g.n.max(1), g.out_positions().max(1));
    let per = (TARGET_ELEMENTS / (g.k_per_group() * l).max(1)).clamp(1, n);
    let count = n.div_ceil(per).next_multiple_of(BALANCE).min(n);
    let even = n.div_ceil(count);
    let within_cache = |ns: usize| ns == even || ns * g.k_per_group() * l <= 2 * TARGET_ELEMENTS;
    [even, 2 * even]
        .into_iter()
        .filter(|&ns| ns <= n && within_cache(ns))
        .min_by_key(|&ns| empty_lanes_per_mille(ns * l))
        .unwrap_or(even)
}

/// The widest micro-kernel's columns (a B sliver of `matmul`).
const SLIVER_COLUMNS: usize = 32;

/// The share (in thousandths) of `columns` rounded up to whole slivers that is padding.
fn empty_lanes_per_mille(columns: usize) -> usize {
    (columns.next_multiple_of(SLIVER_COLUMNS) - columns) * 1000 / columns.max(1)
}

/// The chunks of samples, as ranges.
fn chunks(g: &ConvGeometry) -> Vec<std::ops::Range<usize>> {
    let per = samples_per_chunk(g);
    (0..g.n.div_ceil(per))
        .map(|c| c * per..((c + 1) * per).min(g.n))
        .collect()
}

/// How many threads each chunk's matmul may use: one when there are enough chunks to keep every
/// thread busy (nesting parallel products inside the parallel loop over chunks only adds
/// hand-offs), all of them otherwise.
fn matmul_threads(g: &ConvGeometry) -> usize {
    let threads = rayon::current_num_threads();
    if chunks(g).len() >= 2 * threads {
        1
    } else {
        threads
    }
}

/// True when the column matrix of a sample is the sample itself: a 1x1 kernel at stride 1
/// without padding reads every pixel once, in order.
fn cols_are_input(g: &ConvGeometry) -> bool {
    g.taps == [(0, 0)] && g.stride == (1, 1) && g.pad == (0, 0, 0, 0) && (g.ho, g.wo) == (g.h, g.w)
}

/// The bands of output positions a chunk of `ns` samples is processed in. Several samples are
/// one band of ns·l columns. A single sample whose column matrix would outgrow the chunk
/// budget (a 3x3 convolution over 64 channels of 32x32 is 2.4 MB) is cut into bands of whole
/// micro-kernel widths, so that each band's columns are built and consumed while in L2.
fn bands(g: &ConvGeometry, ns: usize) -> Vec<Range<usize>> {
    const BAND_ELEMENTS: usize = 1 << 18;
    let (l, k) = (g.out_positions(), g.k_per_group());
    if ns > 1 || cols_are_input(g) || k * l <= BAND_ELEMENTS {
        return std::iter::once(0..ns * l).collect();
    }
    let count = (k * l).div_ceil(BAND_ELEMENTS);
    let width = l.div_ceil(count).next_multiple_of(SLIVER_COLUMNS);
    (0..l)
        .step_by(width)
        .map(|j| j..(j + width).min(l))
        .collect()
}

/// The column matrix [k, band] of group `grp` for a chunk of samples and a band of its
/// columns: borrowed from `x` when a single sample's channels already are its columns, else
/// built by im2col into `scratch`.
#[allow(clippy::too_many_arguments)]
fn chunk_cols<'a, T: Float>(
    x: &'a [T],
    g: &ConvGeometry,
    gather: Option<&GatherTable>,
    samples: &Range<usize>,
    band: &Range<usize>,
    grp: usize,
    scratch: &'a mut Scratch<T>,
) -> &'a [T] {
    let (l, k) = (g.out_positions(), g.k_per_group());
    if samples.len() == 1 && cols_are_input(g) {
        let start = samples.start * g.in_size() + grp * g.cin_per_group() * l;
        return &x[start..start + k * l];
    }
    let ld = band.len();
    let cols = scratch.as_mut_slice();
    for (i, s) in samples.clone().enumerate() {
        // a band of one sample, or all the positions of each of several samples
        let positions = if samples.len() == 1 {
            band.clone()
        } else {
            0..l
        };
        im2col(
            &x[s * g.in_size()..(s + 1) * g.in_size()],
            g,
            gather,
            grp * g.cin_per_group(),
            g.cin_per_group(),
            positions,
            cols,
            ld,
            i * l,
        );
    }
    &scratch.as_slice()[..k * ld]
}

/// y = conv(x, w): x [n, c_in, h, w], w_active [c_out, c_in/G · T] -> y [n, c_out, ho, wo].
pub fn conv_forward<T: Float>(x: &[T], w_active: &[T], g: &ConvGeometry) -> Vec<T> {
    let (l, k, cog) = (g.out_positions(), g.k_per_group(), g.cout_per_group());
    if g.is_empty() {
        return vec![T::ZERO; g.n * g.out_size()];
    }
    if few_outputs::applies(g) {
        return few_outputs::forward(x, w_active, g);
    }
    let (per, threads) = (samples_per_chunk(g), matmul_threads(g));
    // one product per thread: the weights are packed once for all chunks, and each chunk's
    // column matrix is packed straight from the image
    let packed_w = packed_weights(g, threads, |grp| (cog, k, rows(w_active, grp * cog * k, k)));
    let gather = GatherTable::of(g);
    output_by_chunks(g.n * g.out_size(), per * g.out_size(), |y_part, c| {
        let samples = c * per..((c + 1) * per).min(g.n);
        let ns = samples.len();
        let bands = bands(g, ns);
        // with packed weights: one product per sample, written into y in place, when a
        // sample has columns enough for the micro-kernel; else one product for the chunk
        let per_sample =
            packed_w.is_some() && (ns == 1 || l >= DIRECT_COLUMNS) && is_blocked_shape(cog, k, l);
        if let (true, Some(packed)) = (per_sample, &packed_w) {
            // every element of the chunk is written by one product: no zeroing first
            for grp in 0..g.groups {
                for (i, s) in samples.clone().enumerate() {
                    let one = s..s + 1;
                    let packer = |dst: &mut [T], p0, kc, cols, nr| {
                        pack_cols(x, g, gather.as_ref(), &one, grp, dst, p0, kc, cols, nr)
                    };
                    let source = if cols_are_input(g) {
                        let start = s * g.in_size() + grp * g.cin_per_group() * l;
                        BSource::Matrix(rows(x, start, l))
                    } else {
                        BSource::Packer(&packer)
                    };
                    let out = &mut y_part[i * g.out_size() + grp * cog * l..];
                    matmul_packed_uninit(&packed[grp], l, source, out, l);
                }
            }
            return;
        }
        let y_chunk = zero_fill(y_part);
        let chunked = packed_w.is_some() && is_blocked_shape(cog, k, ns * l);
        let mut cols_buf = Scratch::take(if chunked { 0 } else { k * bands[0].len() });
        let writes_y = ns == 1;
        let mut out_buf = Scratch::take(if writes_y { 0 } else { cog * ns * l });
        for grp in 0..g.groups {
            if let (true, Some(packed)) = (chunked, &packed_w) {
                let packer = |dst: &mut [T], p0, kc, cols, nr| {
                    pack_cols(x, g, gather.as_ref(), &samples, grp, dst, p0, kc, cols, nr)
                };
                let (out, ldc) = (out_buf.as_mut_slice(), ns * l);
                matmul_packed(
                    &packed[grp],
                    ns * l,
                    BSource::Packer(&packer),
                    out,
                    ldc,
                    false,
                );
            }
            for band in bands.iter().filter(|_| !chunked) {
                let cols = chunk_cols(x, g, gather.as_ref(), &samples, band, grp, &mut cols_buf);
                let (out, ldc) = if ns == 1 {
                    (&mut y_chunk[grp * cog * l + band.start..], l)
                } else {
                    (out_buf.as_mut_slice(), ns * l)
                };
                // out [cog, band] = W_g [cog, k] · cols [k, band]
                matmul_into(
                    cog,
                    k,
                    band.len(),
                    rows(w_active, grp * cog * k, k),
                    rows(cols, 0, band.len()),
                    out,
                    ldc,
                    false,
                    threads,
                );
            }
            if writes_y {
                continue;
            }
            let (out, ld) = (out_buf.as_slice(), ns * l);
            for i in 0..ns {
                for o in 0..cog {
                    let dst = i * g.out_size() + (grp * cog + o) * l;
                    y_chunk[dst..dst + l]
                        .copy_from_slice(&out[o * ld + i * l..o * ld + (i + 1) * l]);
                }
            }
        }
    })
}

/// A new buffer of `len` elements cut into chunks of `chunk`, each handed uninitialised to
/// `fill(chunk, index)` on its own task, which must initialise every element of it (by
/// writing it, or by [`zero_fill`] first). Work on a chunk, its zeroing included, then happens
/// on one thread while the chunk is in that thread's cache (a serial `vec![0; len]` of a
/// 16 MB output costs as much as a small convolution).
fn output_by_chunks<T: Float>(
    len: usize,
    chunk: usize,
    fill: impl Fn(&mut [MaybeUninit<T>], usize) + Sync + Send,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, part)| fill(part, i));
    // SAFETY: the chunks cover all `len` elements and `fill` initialised each of them (a panic
    // in a task propagates before this line, leaving the vector empty).
    unsafe { out.set_len(len) };
    out
}

/// [`output_by_chunks`] with every chunk zeroed before `fill` adds to it.
fn zeroed_by_chunks<T: Float>(
    len: usize,
    chunk: usize,
    fill: impl Fn(&mut [T], usize) + Sync + Send,
) -> Vec<T> {
    output_by_chunks(len, chunk, |part, i| fill(zero_fill(part), i))
}

/// Writes zeros over `part` and returns it as initialised.
fn zero_fill<T: Float>(part: &mut [MaybeUninit<T>]) -> &mut [T] {
    for v in part.iter_mut() {
        v.write(T::ZERO);
    }
    // SAFETY: every element was initialised just above.
    unsafe { &mut *(part as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Output positions per sample from which the forward runs one product per sample straight
/// into y (a 12x32 tile row then wastes at most a fifth of a sliver); below, the samples of a
/// chunk share one wider product and are copied out.
const DIRECT_COLUMNS: usize = 128;

/// Each group's weights packed once for all chunks when every chunk runs its products on one
/// thread (`threads == 1`); `a(grp)` gives the group's [m, k] operand.
fn packed_weights<'a, T: Float>(
    g: &ConvGeometry,
    threads: usize,
    a: impl Fn(usize) -> (usize, usize, MatRef<'a, T>),
) -> Option<Vec<PackedA<T>>> {
    (threads == 1).then(|| {
        (0..g.groups)
            .map(|grp| {
                let (m, k, a) = a(grp);
                PackedA::new(m, k, a)
            })
            .collect()
    })
}

/// dy of the chunk's samples for group `grp` as a [cog, ns·l] matrix (`rows(.., ld)` with the
/// returned ld): read in place for a single sample, else gathered into `scratch`.
fn chunk_dy<'a, T: Float>(
    dy: &'a [T],
    g: &ConvGeometry,
    samples: &Range<usize>,
    grp: usize,
    scratch: &'a mut Scratch<T>,
) -> MatRef<'a, T> {
    let (l, cog) = (g.out_positions(), g.cout_per_group());
    let ld = samples.len() * l;
    if samples.len() == 1 {
        return rows(dy, samples.start * g.out_size() + grp * cog * l, l);
    }
    let out = scratch.as_mut_slice();
    for (i, s) in samples.clone().enumerate() {
        for o in 0..cog {
            let src = s * g.out_size() + (grp * cog + o) * l;
            out[o * ld + i * l..o * ld + (i + 1) * l].copy_from_slice(&dy[src..src + l]);
        }
    }
    rows(&scratch.as_slice()[..cog * ld], 0, ld)
}

/// The columns `band` of a matrix.
fn columns<'a, T>(m: MatRef<'a, T>, band: &Range<usize>) -> MatRef<'a, T> {
    MatRef {
        offset: m.offset + band.start * m.col_stride,
        ..m
    }
}

/// dx = convᵀ(dy, w): dy [n, c_out, ho, wo] -> dx [n, c_in, h, w]. Also conv_transpose2d.
pub fn conv_input_grad<T: Float>(dy: &[T], w_active: &[T], g: &ConvGeometry) -> Vec<T> {
    let (l, k, cog) = (g.out_positions(), g.k_per_group(), g.cout_per_group());
    if g.is_empty() {
        return vec![T::ZERO; g.n * g.in_size()];
    }
    if few_outputs::input_grad_applies(g) {
        let (flipped, w_flipped) = few_outputs::flipped(w_active, g);
        return conv_forward(dy, &w_flipped, &flipped);
    }
    let (per, threads) = (samples_per_chunk(g), matmul_threads(g));
    let gather = GatherTable::of(g);
    let packed_wt = packed_weights(g, threads, |grp| {
        (k, cog, cols_t(w_active, grp * cog * k, k))
    });
    zeroed_by_chunks(g.n * g.in_size(), per * g.in_size(), |dx_chunk, c| {
        let samples = c * per..((c + 1) * per).min(g.n);
        let ns = samples.len();
        let bands = bands(g, ns);
        // a single sample of a 1x1 convolution: the product is dx's slab itself
        let direct = ns == 1 && cols_are_input(g);
        let mut cols_buf = Scratch::take(if direct { 0 } else { k * bands[0].len() });
        let mut dy_buf = Scratch::take(if ns == 1 { 0 } else { cog * ns * l });
        for grp in 0..g.groups {
            let dy_g = chunk_dy(dy, g, &samples, grp, &mut dy_buf);
            for band in &bands {
                let cols = if direct {
                    &mut dx_chunk[grp * k * l..(grp + 1) * k * l]
                } else {
                    cols_buf.as_mut_slice()
                };
                // cols [k, band] = W_gᵀ [k, cog] · dy_g [cog, band]
                match &packed_wt {
                    Some(packed) if is_blocked_shape(k, cog, band.len()) => matmul_packed(
                        &packed[grp],
                        band.len(),
                        BSource::Matrix(columns(dy_g, band)),
                        cols,
                        band.len(),
                        false,
                    ),
                    _ => matmul_into(
                        k,
                        cog,
                        band.len(),
                        cols_t(w_active, grp * cog * k, k),
                        columns(dy_g, band),
                        cols,
                        band.len(),
                        false,
                        threads,
                    ),
                }
                if direct {
                    continue;
                }
                for i in 0..ns {
                    let positions = if ns == 1 { band.clone() } else { 0..l };
                    col2im(
                        cols_buf.as_slice(),
                        g,
                        gather.as_ref(),
                        grp * g.cin_per_group(),
                        g.cin_per_group(),
                        positions,
                        &mut dx_chunk[i * g.in_size()..(i + 1) * g.in_size()],
                        band.len(),
                        i * l,
                    );
                }
            }
        }
    })
}

/// `dW = Σₙ dy[n] · cols(x[n])ᵀ` -> [c_out, c_in/G · T] (active taps).
pub fn conv_weight_grad<T: Float>(x: &[T], dy: &[T], g: &ConvGeometry) -> Vec<T> {
    let (l, k, cog) = (g.out_positions(), g.k_per_group(), g.cout_per_group());
    let size = g.c_out * k;
    if g.is_empty() {
        return vec![T::ZERO; size];
    }
    if few_outputs::applies(g) {
        return few_outputs::weight_grad(x, dy, g);
    }
    let threads = matmul_threads(g);
    let gather = GatherTable::of(g);
    // one partial sum per chunk, added in chunk order: the same bits whatever the thread count
    let partials: Vec<Vec<T>> = chunks(g)
        .into_par_iter()
        .map(|samples| {
            let ns = samples.len();
            let bands = bands(g, ns);
            let mut cols_buf = Scratch::take(k * bands[0].len());
            let mut dy_buf = Scratch::take(if ns == 1 { 0 } else { cog * ns * l });
            let mut acc = vec![T::ZERO; size];
            for grp in 0..g.groups {
                let dy_g = chunk_dy(dy, g, &samples, grp, &mut dy_buf);
                for (b, band) in bands.iter().enumerate() {
                    let cols =
                        chunk_cols(x, g, gather.as_ref(), &samples, band, grp, &mut cols_buf);
                    let cols = if ns == 1 && cols_are_input(g) {
                        &cols[band.start..] // the input itself: the band's columns in place
                    } else {
                        cols
                    };
                    let ld = if ns == 1 && cols_are_input(g) {
                        l
                    } else {
                        band.len()
                    };
                    // acc_g [cog, k] (+)= dy_g [cog, band] · colsᵀ [band, k]
                    matmul_into(
                        cog,
                        band.len(),
                        k,
                        columns(dy_g, band),
                        cols_t(cols, 0, ld),
                        &mut acc[grp * cog * k..(grp + 1) * cog * k],
                        k,
                        b > 0,
                        threads,
                    );
                }
            }
            acc
        })
        .collect();
    sum_in_order(&partials, size)
}

/// The element-wise sum of `partials` (each `len` long), added in their order: the same bits
/// whatever thread computed each.
fn sum_in_order<T: Float>(partials: &[Vec<T>], len: usize) -> Vec<T> {
    let mut total = vec![T::ZERO; len];
    for p in partials {
        for (t, &v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desc::conv_out_size;

    /// [n, c_in, h, w, c_out, kernel, stride, pad, dilation, groups]
    fn geometry([n, c_in, h, w, c_out, k, s, p, d, groups]: [usize; 10]) -> ConvGeometry {
        let ho = conv_out_size(h, p, p, k, s, d).unwrap();
        let wo = conv_out_size(w, p, p, k, s, d).unwrap();
        let taps = (0..k).flat_map(|i| (0..k).map(move |j| (i, j))).collect();
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
            ho,
            wo,
            taps,
        }
    }

    fn naive(x: &[f64], w: &[f64], g: &ConvGeometry) -> Vec<f64> {
        let mut y = vec![0.0; g.n * g.c_out * g.ho * g.wo];
        let (cig, cog) = (g.cin_per_group(), g.cout_per_group());
        for n in 0..g.n {
            for o in 0..g.c_out {
                let grp = o / cog;
                for oh in 0..g.ho {
                    for ow in 0..g.wo {
                        let mut acc = 0.0;
                        for c in 0..cig {
                            for &(i, j) in &g.taps {
                                let ih = (oh * g.stride.0 + i * g.dilation.0) as isize
                                    - g.pad.0 as isize;
                                let iw = (ow * g.stride.1 + j * g.dilation.1) as isize
                                    - g.pad.2 as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w
                                {
                                    let xc = grp * cig + c;
                                    acc += x[((n * g.c_in + xc) * g.h + ih as usize) * g.w
                                        + iw as usize]
                                        * w[((o * cig + c) * g.kh + i) * g.kw + j];
                                }
                            }
                        }
                        y[((n * g.c_out + o) * g.ho + oh) * g.wo + ow] = acc;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, salt: usize) -> Vec<f64> {
        (0..len)
            .map(|i| (((i * 7919 + salt * 104729) % 1000) as f64) / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn forward_matches_the_definition_and_adjoints_are_adjoint() {
        for spec in [
            [2, 3, 5, 6, 5, 3, 1, 1, 1, 1],
            [1, 4, 7, 5, 6, 2, 2, 1, 1, 2],
            [2, 2, 9, 9, 2, 3, 2, 2, 2, 1],
            [1, 1, 4, 4, 1, 4, 2, 1, 1, 1],
            // taps whose whole row or column falls in the padding (found by proptest)
            [1, 1, 1, 1, 1, 3, 1, 2, 2, 1],
            [2, 2, 2, 3, 3, 3, 2, 3, 2, 1],
            // large enough that every sample is a chunk of its own (samples_per_chunk = 1)
            [3, 64, 32, 32, 5, 3, 1, 1, 1, 1],
            // 1x1 kernels, whose columns are the input itself, batched and one sample a chunk
            [2, 4, 5, 5, 3, 1, 1, 0, 1, 1],
            [3, 4, 5, 5, 4, 1, 1, 0, 1, 2],
            [2, 64, 64, 64, 2, 1, 1, 0, 1, 1],
            // single samples cut into bands of columns that end mid-row (961 positions)
            [1, 64, 31, 31, 5, 3, 1, 1, 1, 1],
            [2, 64, 61, 61, 2, 3, 2, 1, 1, 1],
            // chunks of several samples with l >= DIRECT_COLUMNS: one product per sample
            [16, 2, 12, 12, 5, 3, 1, 1, 1, 1],
            // enough samples that chunks hold several (side-by-side columns, gathered dy)
            [16, 2, 5, 5, 3, 3, 2, 1, 1, 1],
            [16, 4, 3, 3, 2, 1, 1, 0, 1, 2],
        ] {
            assert!(spec[1] < 64 || samples_per_chunk(&geometry(spec)) == 1);
            assert_eq!(cols_are_input(&geometry(spec)), spec[5] == 1);
            assert!(spec[0] < 16 || samples_per_chunk(&geometry(spec)) == 2);
            assert!(spec[2] != 31 && spec[2] != 61 || bands(&geometry(spec), 1).len() == 3);
            // these test the products over columns, not the direct path
            assert!(!few_outputs::applies(&geometry(spec)), "{spec:?}");
            on_one_and_three_threads(|| check_against_definition(spec));
        }
    }

    /// One thread: weights packed once and columns packed from the image; three threads: few
    /// chunks take the threaded products over im2col buffers instead.
    fn on_one_and_three_threads(check: impl Fn() + Send + Sync) {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(&check);
        }
    }

    /// The direct path for few output channels: image heads (7x7, 32 channels to 1 or 3),
    /// valid and wide padding, masked taps, one sample, and uneven padding; strips that end
    /// past the last output row.
    #[test]
    fn few_outputs_match_the_definition() {
        for spec in [
            [3, 32, 28, 28, 3, 7, 1, 3, 1, 1],
            [2, 32, 28, 28, 1, 7, 1, 3, 1, 1],
            [1, 5, 9, 7, 2, 3, 1, 0, 1, 1],
            [2, 2, 5, 6, 4, 3, 1, 3, 1, 1],
            [2, 4, 6, 6, 1, 5, 1, 2, 1, 1],
        ] {
            let g = geometry(spec);
            assert!(few_outputs::applies(&g), "{g:?}");
            assert_eq!(few_outputs::input_grad_applies(&g), spec[7] < spec[5]);
            on_one_and_three_threads(|| check_against_definition(spec));
        }
        // PixelCNN's mask B over 5x5 (the first two rows and the centre row up to the centre)
        let taps: Vec<(usize, usize)> = (0..5)
            .flat_map(|i| (0..5).map(move |j| (i, j)))
            .filter(|&(i, j)| i < 2 || (i == 2 && j <= 2))
            .collect();
        check_taps_against_definition([2, 3, 6, 5, 2, 5, 1, 2, 1, 1], Some(taps));
        // uneven padding: top 2, bottom 0, left 1, right 2
        let mut g = geometry([2, 3, 6, 5, 2, 3, 1, 0, 1, 1]);
        g.pad = (2, 0, 1, 2);
        (g.ho, g.wo) = (6 + 2 - 2, 5 + 3 - 2);
        assert!(few_outputs::input_grad_applies(&g));
        check_geometry_against_definition(g);
    }

    /// Masked taps (PixelCNN's mask A over 3x3 and mask B over 1x3), on both product paths.
    #[test]
    fn masked_taps_match_the_definition() {
        for (spec, taps) in [
            (
                [8, 3, 6, 7, 4, 3, 1, 1, 1, 1],
                vec![(0, 0), (0, 1), (0, 2), (1, 0)],
            ),
            ([8, 4, 5, 5, 6, 3, 1, 1, 1, 2], vec![(1, 0), (1, 1)]),
        ] {
            on_one_and_three_threads(|| check_taps_against_definition(spec, Some(taps.clone())));
        }
    }

    fn check_against_definition(spec: [usize; 10]) {
        check_taps_against_definition(spec, None)
    }

    fn check_taps_against_definition(spec: [usize; 10], taps: Option<Vec<(usize, usize)>>) {
        let mut g = geometry(spec);
        if let Some(taps) = taps {
            g.taps = taps;
        }
        check_geometry_against_definition(g)
    }

    fn check_geometry_against_definition(g: ConvGeometry) {
        let x = values(g.n * g.in_size(), 1);
        let wf = values(g.c_out * g.cin_per_group() * g.kh * g.kw, 2);
        let wa = gather_taps(&wf, &g);
        let y = conv_forward(&x, &wa, &g);
        let y_ref = naive(&x, &wf, &g);
        assert!(
            y.iter().zip(&y_ref).all(|(a, b)| (a - b).abs() < 1e-12),
            "forward differs for {g:?}"
        );
        // <conv(x), dy> = <x, conv_input_grad(dy)> = <w, conv_weight_grad(x, dy)>
        let dy = values(y.len(), 3);
        let lhs: f64 = y.iter().zip(&dy).map(|(a, b)| a * b).sum();
        let dx = conv_input_grad(&dy, &wa, &g);
        let mid: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        let dw = conv_weight_grad(&x, &dy, &g);
        let rhs: f64 = wa.iter().zip(&dw).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - mid).abs() < 1e-9 && (lhs - rhs).abs() < 1e-9,
            "{lhs} {mid} {rhs} for {g:?}"
        );
    }

    #[test]
    fn valid_range_clips_to_the_image() {
        // h = 5, pad 1, stride 2, offset 0: o*2 - 1 in [0, 5) -> o in 1..=2 (o < 3)
        assert_eq!(valid_range(3, 5, 2, 1, 0), (1, 3));
        assert_eq!(valid_range(3, 5, 2, 1, 2), (0, 2));
    }
}
