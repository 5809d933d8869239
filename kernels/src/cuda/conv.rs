//! Convolution on the GPU (`conv.cu`): forward, input gradient (= conv_transpose2d's forward)
//! and weight gradient as implicit GEMMs over a `ConvGeometry`, the twins of `cpu::conv`'s
//! (weights as the active taps only, so a masked convolution never reads its masked taps).

use super::elementwise::GpuFloat;
use super::{driver_error, Gpu, GpuError};
use crate::desc::ConvGeometry;
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};

pub(crate) const MODULE: &str = "conv";
pub(crate) const SOURCE: &str = concat!(include_str!("tile.cuh"), include_str!("conv.cu"));
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
fn launch<T: GpuFloat>(
    gpu: &Gpu,
    product: Product,
    g: &ConvGeometry,
    (a, b): (&CudaSlice<T>, &CudaSlice<T>),
    out: &mut CudaSlice<T>,
) -> Result<(), GpuError> {
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
    if cols.div_ceil(TILE) > i32::MAX as usize || rows.div_ceil(TILE) > 65_535 || g.groups > 65_535
    {
        return Err(GpuError::Driver(format!(
            "conv2d {name}: geometry {g:?} is too large for one launch"
        )));
    }
    let taps: Vec<i32> = g
        .taps
        .iter()
        .flat_map(|&(i, j)| [i as i32, j as i32])
        .collect();
    let taps = gpu.upload(&taps)?;
    let shape = ConvShape::of(g);
    let f = gpu.function(MODULE, SOURCE, &format!("conv_{name}_{}", T::SUFFIX))?;
    let cfg = LaunchConfig {
        grid_dim: (
            cols.div_ceil(TILE) as u32,
            rows.div_ceil(TILE) as u32,
            g.groups as u32,
        ),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut args = gpu.stream().launch_builder(&f);
    args.arg(a).arg(b).arg(&taps).arg(out).arg(&shape);
    // SAFETY: every index the kernel forms lies inside the extents checked above.
    unsafe { args.launch(cfg) }.map_err(driver_error)?;
    Ok(())
}

/// y = conv(x, w): x [n, c_in, h, w], w_active [c_out, c_in/G · T] (the active taps, in the
/// geometry's order) -> y [n, c_out, ho, wo], every element written.
pub fn conv_forward_into<T: GpuFloat>(
    gpu: &Gpu,
    x: &CudaSlice<T>,
    w_active: &CudaSlice<T>,
    g: &ConvGeometry,
    y: &mut CudaSlice<T>,
) -> Result<(), GpuError> {
    launch(gpu, Product::Forward, g, (x, w_active), y)
}

/// dx = convᵀ(dy, w): dy [n, c_out, ho, wo] -> dx [n, c_in, h, w] (also conv_transpose2d's
/// forward), every element written.
pub fn conv_input_grad_into<T: GpuFloat>(
    gpu: &Gpu,
    dy: &CudaSlice<T>,
    w_active: &CudaSlice<T>,
    g: &ConvGeometry,
    dx: &mut CudaSlice<T>,
) -> Result<(), GpuError> {
    launch(gpu, Product::InputGrad, g, (dy, w_active), dx)
}

/// dW = Σₙ dy[n] · cols(x[n])ᵀ -> [c_out, c_in/G · T] (active taps), every element written.
pub fn conv_weight_grad_into<T: GpuFloat>(
    gpu: &Gpu,
    x: &CudaSlice<T>,
    dy: &CudaSlice<T>,
    g: &ConvGeometry,
    dw: &mut CudaSlice<T>,
) -> Result<(), GpuError> {
    launch(gpu, Product::WeightGrad, g, (x, dy), dw)
}
