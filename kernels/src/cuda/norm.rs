//! Batch normalisation in training mode on the GPU (`norm.cu`), the twin of
//! `cpu::norm::{batch_norm_forward, batch_norm_backward}` over x [n, c, s]: per-channel sums one
//! block per channel (in f64), the elementwise passes one thread per element.

use super::elementwise::GpuFloat;
use super::{check_len, grid_for, Gpu, GpuBuffer, GpuError};
use cudarc::driver::LaunchConfig;

pub(crate) const MODULE: &str = "norm";
pub(crate) const SOURCE: &str = concat!(include_str!("fold.cuh"), include_str!("norm.cu"));

fn check(what: &str, len: usize, need: usize) -> Result<(), GpuError> {
    check_len("batch norm", what, len, need)
}

/// One block of 256 threads per channel (at most 65,535 blocks, each looping over channels).
fn per_channel(c: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (c.clamp(1, 65_535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// y (x's length), the batch mean and the biased batch variance (each c) of x [n, c, s].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward<T: GpuFloat>(
    gpu: &Gpu,
    (n, c, s): (usize, usize, usize),
    eps: f64,
    x: &GpuBuffer<T>,
    (weight, bias): (&GpuBuffer<T>, &GpuBuffer<T>),
    y: &mut GpuBuffer<T>,
    mean: &mut GpuBuffer<T>,
    var: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let len = n * c * s;
    check("x", x.len(), len)?;
    check("y", y.len(), len)?;
    for (what, b) in [("weight", weight.len()), ("bias", bias.len())] {
        check(what, b, c)?;
    }
    check("mean", mean.len(), c)?;
    check("var", var.len(), c)?;
    if len == 0 {
        return Ok(());
    }
    let (n64, c64, s64) = (n as i64, c as i64, s as i64);
    let stats = gpu.kernel(MODULE, SOURCE, &format!("bn_stats_{}", T::SUFFIX))?;
    let mut launch = gpu.launch(&stats);
    launch
        .buf(x)
        .buf_mut(mean)
        .buf_mut(var)
        .arg(&n64)
        .arg(&c64)
        .arg(&s64);
    // SAFETY: reads n·c·s of x, writes c of mean and var (checked above).
    unsafe { launch.run(per_channel(c)) }?;
    let apply = gpu.kernel(MODULE, SOURCE, &format!("bn_apply_{}", T::SUFFIX))?;
    let mut launch = gpu.launch(&apply);
    launch
        .buf(x)
        .buf(mean)
        .buf(var)
        .buf(weight)
        .buf(bias)
        .buf_mut(y)
        .arg(&n64)
        .arg(&c64)
        .arg(&s64)
        .arg(&eps);
    // SAFETY: reads n·c·s of x and c of the per-channel operands, writes n·c·s of y.
    unsafe { launch.run(grid_for(len)) }?;
    Ok(())
}

/// dx (x's length), dw and db (each c) from dy and the forward's mean and variance.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<T: GpuFloat>(
    gpu: &Gpu,
    (n, c, s): (usize, usize, usize),
    eps: f64,
    (x, dy): (&GpuBuffer<T>, &GpuBuffer<T>),
    (weight, mean, var): (&GpuBuffer<T>, &GpuBuffer<T>, &GpuBuffer<T>),
    dx: &mut GpuBuffer<T>,
    dw: &mut GpuBuffer<T>,
    db: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let len = n * c * s;
    for (what, b) in [("x", x.len()), ("dy", dy.len()), ("dx", dx.len())] {
        check(what, b, len)?;
    }
    for (what, b) in [
        ("weight", weight.len()),
        ("mean", mean.len()),
        ("var", var.len()),
        ("dw", dw.len()),
        ("db", db.len()),
    ] {
        check(what, b, c)?;
    }
    if len == 0 {
        return Ok(());
    }
    let mut coef = gpu.alloc::<T>(3 * c)?;
    let (n64, c64, s64) = (n as i64, c as i64, s as i64);
    let sums = gpu.kernel(MODULE, SOURCE, &format!("bn_backward_sums_{}", T::SUFFIX))?;
    let mut launch = gpu.launch(&sums);
    launch
        .buf(x)
        .buf(dy)
        .buf(mean)
        .buf(var)
        .buf(weight)
        .buf_mut(&mut coef)
        .buf_mut(dw)
        .buf_mut(db)
        .arg(&n64)
        .arg(&c64)
        .arg(&s64)
        .arg(&eps);
    // SAFETY: reads n·c·s of x and dy and c of the per-channel operands, writes 3c of coef and
    // c of dw and db.
    unsafe { launch.run(per_channel(c)) }?;
    let apply = gpu.kernel(MODULE, SOURCE, &format!("bn_backward_apply_{}", T::SUFFIX))?;
    let mut launch = gpu.launch(&apply);
    launch
        .buf(x)
        .buf(dy)
        .buf(mean)
        .buf(&coef)
        .buf_mut(dx)
        .arg(&n64)
        .arg(&c64)
        .arg(&s64);
    // SAFETY: reads n·c·s of x and dy, c of mean, 3c of coef; writes n·c·s of dx.
    unsafe { launch.run(grid_for(len)) }?;
    Ok(())
}
