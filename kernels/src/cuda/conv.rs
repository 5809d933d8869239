//! Convolution on the GPU (`conv.cu`): the forward as an implicit GEMM over a `ConvGeometry`,
//! the twin of `cpu::conv::conv_forward` (weights given as the active taps only, so a masked
//! convolution never reads its masked taps).

use super::elementwise::GpuFloat;
use super::{driver_error, Gpu, GpuError};
use crate::cpu::conv::ConvGeometry;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

const MODULE: &str = "conv";
const SOURCE: &str = include_str!("conv.cu");
const TILE: usize = 64;

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

/// y = conv(x, w): x [n, c_in, h, w], w_active [c_out, c_in/G · T] (the active taps, in the
/// geometry's order) -> y [n, c_out, ho, wo], every element written.
pub fn conv_forward_into<T: GpuFloat>(
    gpu: &Gpu,
    x: &CudaSlice<T>,
    w_active: &CudaSlice<T>,
    g: &ConvGeometry,
    y: &mut CudaSlice<T>,
) -> Result<(), GpuError> {
    let groups_ok =
        g.groups > 0 && g.c_in.is_multiple_of(g.groups) && g.c_out.is_multiple_of(g.groups);
    let (x_len, w_len, y_len) = (
        g.n * g.c_in * g.h * g.w,
        g.c_out * g.k_per_group(),
        g.n * g.c_out * g.ho * g.wo,
    );
    if !groups_ok || x.len() < x_len || w_active.len() < w_len || y.len() < y_len {
        return Err(GpuError::Driver(format!(
            "conv2d: geometry {g:?} does not fit buffers of {}, {} and {} elements",
            x.len(),
            w_active.len(),
            y.len()
        )));
    }
    if y_len == 0 {
        return Ok(());
    }
    let cols = g.n * g.ho * g.wo;
    let cog = g.c_out / g.groups;
    if cols.div_ceil(TILE) > i32::MAX as usize || cog.div_ceil(TILE) > 65_535 || g.groups > 65_535 {
        return Err(GpuError::Driver(format!(
            "conv2d: geometry {g:?} is too large for one launch"
        )));
    }
    let taps: Vec<i32> = g
        .taps
        .iter()
        .flat_map(|&(i, j)| [i as i32, j as i32])
        .collect();
    let taps = gpu.upload(&taps)?;
    let shape = ConvShape {
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
    };
    let f = gpu.function(MODULE, SOURCE, &format!("conv_forward_{}", T::SUFFIX))?;
    let cfg = LaunchConfig {
        grid_dim: (
            cols.div_ceil(TILE) as u32,
            cog.div_ceil(TILE) as u32,
            g.groups as u32,
        ),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(x).arg(w_active).arg(&taps).arg(y).arg(&shape);
    // SAFETY: every index the kernel forms lies inside the extents checked above.
    unsafe { launch.launch(cfg) }.map_err(driver_error)?;
    Ok(())
}
