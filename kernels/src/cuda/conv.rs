//! Convolution on the GPU (`conv.cu`): forward, input gradient (= conv_transpose2d's forward)
//! and weight gradient as implicit GEMMs over a `ConvGeometry`, the twins of `cpu::conv`'s
//! (weights as the active taps only, so a masked convolution never reads its masked taps).

use super::elementwise::GpuElement;
use super::{Gpu, GpuBuffer, GpuError};
use crate::desc::ConvGeometry;
use cudarc::driver::{DeviceRepr, LaunchConfig};

pub(crate) const MODULE: &str = "conv";
pub(crate) const SOURCE: &str = concat!(
    include_str!("bf16.cuh"),
    include_str!("tile.cuh"),
    include_str!("conv.cu")
);

/// The launch argument describing the geometry (`ConvShape` in the .cu file).
#[repr(C)]
#[derive(Clone, Copy)]
struct ConvShape {
    n: i64,
    c_in: i64,
    h: i64,
    w: i64,
    c_out: i64,
    ho: i64,
    wo: i64,
    stride_h: i64,
    stride_w: i64,
    pad_top: i64,
    pad_left: i64,
    dil_h: i64,
    dil_w: i64,
    groups: i64,
    ntaps: i64,
}

// SAFETY: a plain #[repr(C)] struct of i64, laid out as the kernel's `ConvShape`.
unsafe impl DeviceRepr for ConvShape {}

impl ConvShape {
    fn of(g: &ConvGeometry) -> ConvShape {
        ConvShape {
            n: g.n as i64,
            c_in: g.c_in as i64,
            h: g.h as i64,
            w: g.w as i64,
            c_out: g.c_out as i64,
            ho: g.ho as i64,
            wo: g.wo as i64,
            stride_h: g.stride.0 as i64,
            stride_w: g.stride.1 as i64,
            pad_top: g.pad.0 as i64,
            pad_left: g.pad.2 as i64,
            dil_h: g.dilation.0 as i64,
            dil_w: g.dilation.1 as i64,
            groups: g.groups as i64,
            ntaps: g.taps.len() as i64,
        }
    }
}

/// Which of the three products of a convolution.
#[derive(Clone, Copy)]
enum Product {
    /// y [n, c_out, ho, wo] from x and the weights
    Forward,
    /// dx [n, c_in, h, w] from dy and the weights
    InputGrad,
    /// dW [c_out, c_in/G · T] from x and dy
    WeightGrad,
}

/// Checks the buffers against the geometry and launches one of conv.cu's kernels: `a` and `b`
/// are its two inputs in the kernel's order, `out` its output (every element written).
fn launch<T: GpuElement>(
    gpu: &Gpu,
    product: Product,
    g: &ConvGeometry,
    (a, b): (&GpuBuffer<T>, &GpuBuffer<T>),
    out: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let tile = super::block_tile::<T>();
    let groups_ok =
        g.groups > 0 && g.c_in.is_multiple_of(g.groups) && g.c_out.is_multiple_of(g.groups);
    let (x_len, w_len, y_len) = (
        g.n * g.c_in * g.h * g.w,
        g.c_out * g.k_per_group(),
        g.n * g.c_out * g.ho * g.wo,
    );
    let (name, need_a, need_b, need_out, rows, cols) = match product {
        Product::Forward => (
            "forward",
            x_len,
            w_len,
            y_len,
            g.c_out / g.groups.max(1),
            g.n * g.ho * g.wo,
        ),
        Product::InputGrad => (
            "input_grad",
            y_len,
            w_len,
            x_len,
            g.c_in / g.groups.max(1),
            g.n * g.h * g.w,
        ),
        Product::WeightGrad => (
            "weight_grad",
            x_len,
            y_len,
            w_len,
            g.c_out / g.groups.max(1),
            g.k_per_group(),
        ),
    };
    if !groups_ok || a.len() < need_a || b.len() < need_b || out.len() < need_out {
        return Err(GpuError::Driver(format!(
            "conv2d {name}: geometry {g:?} does not fit buffers of {}, {} and {} elements",
            a.len(),
            b.len(),
            out.len()
        )));
    }
    if need_out == 0 {
        return Ok(());
    }
    if cols.div_ceil(tile) > i32::MAX as usize || rows.div_ceil(tile) > 65_535 || g.groups > 65_535
    {
        return Err(GpuError::Driver(format!(
            "conv2d {name}: geometry {g:?} is too large for one launch"
        )));
    }
    let mut taps: Vec<i32> = g
        .taps
        .iter()
        .flat_map(|&(i, j)| [i as i32, j as i32])
        .collect();
    let shape = ConvShape::of(g);
    let f = gpu.kernel(MODULE, SOURCE, &format!("conv_{name}_{}", T::SUFFIX))?;
    let mut tiles = (cols.div_ceil(tile), rows.div_ceil(tile));
    let grid = |tiles: (usize, usize), z: usize| LaunchConfig {
        grid_dim: (tiles.0 as u32, tiles.1 as u32, z as u32),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    if let Product::Forward = product {
        let taps = gpu.upload(&taps)?;
        let mut args = gpu.launch(&f);
        args.buf(a).buf(b).buf(&taps).buf_mut(out).arg(&shape);
        // SAFETY: every index the kernel forms lies inside the extents checked above.
        unsafe { args.run(grid(tiles, g.groups)) }?;
        return Ok(());
    }
    if let Product::InputGrad = product {
        // one launch for every (group, phase); columns: the largest phase's positions
        let phases = g.stride.0 * g.stride.1;
        if phases == 0 || g.groups * phases > 65_535 {
            return Err(GpuError::Driver(format!(
                "conv2d {name}: geometry {g:?} is too large for one launch"
            )));
        }
        taps.extend(phase_table(g));
        let taps = gpu.upload(&taps)?;
        tiles.0 = (g.n * g.h.div_ceil(g.stride.0) * g.w.div_ceil(g.stride.1)).div_ceil(tile);
        let mut args = gpu.launch(&f);
        args.buf(a).buf(b).buf(&taps).buf_mut(out).arg(&shape);
        // SAFETY: as above; each phase's blocks write only that phase's positions of dx.
        unsafe { args.run(grid(tiles, g.groups * phases)) }?;
        return Ok(());
    }
    let taps = gpu.upload(&taps)?;
    let (splits, chunk) = split_k(tiles.0 * tiles.1 * g.groups, g.n * g.ho * g.wo, g.groups);
    let (splits_arg, chunk_arg) = (splits as i32, chunk as i64);
    // one split of f32 or f64 writes dw itself; more, or bf16's f32 sums, write their partial
    // sums side by side, added (and rounded) below
    let sums_wider = std::any::TypeId::of::<T::Sum>() != std::any::TypeId::of::<T>();
    let mut parts = (splits > 1 || sums_wider)
        .then(|| gpu.alloc::<T::Sum>(splits * need_out))
        .transpose()?;
    let mut args = gpu.launch(&f);
    args.buf(a).buf(b).buf(&taps);
    match parts.as_mut() {
        Some(parts) => args.buf_mut(parts),
        None => args.buf_mut(out),
    };
    args.arg(&shape).arg(&splits_arg).arg(&chunk_arg);
    // SAFETY: as above; split s writes [s * need_out ..][..need_out] of its target, inside it.
    unsafe { args.run(grid(tiles, g.groups * splits)) }?;
    let Some(parts) = parts else {
        return Ok(());
    };
    let sum = gpu.kernel(MODULE, SOURCE, &format!("sum_splits_{}", T::SUFFIX))?;
    let len = need_out as i64;
    let mut args = gpu.launch(&sum);
    args.buf(&parts).buf_mut(out).arg(&len).arg(&splits_arg);
    // SAFETY: reads splits * need_out partial sums, writes need_out elements of dw.
    unsafe { args.run(super::grid_for(need_out)) }?;
    Ok(())
}

/// The input gradient's taps by phase: with stride (sh, sw), tap (i, j) reaches the input
/// positions whose padded row is i·dil_h modulo sh and column j·dil_w modulo sw, phase
/// (i·dil_h mod sh)·sw + (j·dil_w mod sw). Returns phase_start[sh·sw + 1] (where each phase's
/// taps begin) followed by the tap indices grouped by phase, in the taps' own order.
fn phase_table(g: &ConvGeometry) -> Vec<i32> {
    let (sh, sw) = g.stride;
    let phase = |&(i, j): &(usize, usize)| (i * g.dilation.0 % sh) * sw + j * g.dilation.1 % sw;
    let mut start = vec![0i32; sh * sw + 1];
    let mut grouped = Vec::with_capacity(g.taps.len());
    for p in 0..sh * sw {
        grouped.extend(
            (0..g.taps.len())
                .filter(|&t| phase(&g.taps[t]) == p)
                .map(|t| t as i32),
        );
        start[p + 1] = grouped.len() as i32;
    }
    start.extend(grouped);
    start
}

/// How to split the weight gradient's reduction over n·ho·wo (`k`) so that a small dW still
/// fills the GPU: about 512 blocks in all (four per SM on the 132-SM H100 / H200), each split
/// at least 512 long, `chunk` a multiple of the kernel's k step (16). Returns (splits, chunk).
fn split_k(blocks: usize, k: usize, groups: usize) -> (usize, usize) {
    const TARGET_BLOCKS: usize = 512;
    const MIN_CHUNK: usize = 512;
    const K_STEP: usize = 16;
    let most = (k / MIN_CHUNK).clamp(1, 65_535 / groups.max(1));
    let splits = TARGET_BLOCKS.div_ceil(blocks.max(1)).clamp(1, most);
    let chunk = k.div_ceil(splits).div_ceil(K_STEP).max(1) * K_STEP;
    (k.div_ceil(chunk).max(1), chunk)
}

/// y = conv(x, w): x [n, c_in, h, w], w_active [c_out, c_in/G · T] (the active taps, in the
/// geometry's order) -> y [n, c_out, ho, wo], every element written.
pub fn conv_forward_into<T: GpuElement>(
    gpu: &Gpu,
    x: &GpuBuffer<T>,
    w_active: &GpuBuffer<T>,
    g: &ConvGeometry,
    y: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    launch(gpu, Product::Forward, g, (x, w_active), y)
}

/// dx = convᵀ(dy, w): dy [n, c_out, ho, wo] -> dx [n, c_in, h, w] (also conv_transpose2d's
/// forward), every element written.
pub fn conv_input_grad_into<T: GpuElement>(
    gpu: &Gpu,
    dy: &GpuBuffer<T>,
    w_active: &GpuBuffer<T>,
    g: &ConvGeometry,
    dx: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    launch(gpu, Product::InputGrad, g, (dy, w_active), dx)
}

/// `dW = Σₙ dy[n] · cols(x[n])ᵀ` -> [c_out, c_in/G · T] (active taps), every element written.
pub fn conv_weight_grad_into<T: GpuElement>(
    gpu: &Gpu,
    x: &GpuBuffer<T>,
    dy: &GpuBuffer<T>,
    g: &ConvGeometry,
    dw: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    launch(gpu, Product::WeightGrad, g, (x, dy), dw)
}

#[cfg(test)]
mod tests {
    use super::split_k;

    #[test]
    fn split_k_covers_the_reduction_in_whole_k_steps_within_the_grid() {
        for (blocks, k, groups) in [
            (9, 524_288, 1),
            (1, 100, 1),
            (600, 1 << 20, 1),
            (4, 5000, 7),
        ] {
            let (splits, chunk) = split_k(blocks, k, groups);
            assert!(splits >= 1 && chunk % 16 == 0, "{blocks} {k} {groups}");
            // every k in exactly one split, none empty
            assert!(
                splits * chunk >= k && (splits - 1) * chunk < k,
                "{blocks} {k} {groups}"
            );
            assert!(splits * groups <= 65_535);
        }
        // a small dW over a long reduction is split; a large one is not
        assert!(split_k(9, 524_288, 1).0 > 1);
        assert_eq!(split_k(600, 1 << 20, 1).0, 1);
    }
}
