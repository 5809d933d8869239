//! Softmax cross-entropy on the GPU (`loss.cu`), the twin of
//! `cpu::loss::{softmax_cross_entropy, softmax_cross_entropy_backward}` over a contiguous
//! [outer, r, inner] buffer with one target class per position.

use super::elementwise::GpuFloat;
use super::{check_len, grid_for, Gpu, GpuBuffer, GpuError};

pub(crate) const MODULE: &str = "loss";
pub(crate) const SOURCE: &str = include_str!("loss.cu");

/// The targets as the kernels read them, after checking there is one per position, each a
/// class below r.
fn upload_targets(
    gpu: &Gpu,
    targets: &[usize],
    (outer, r, inner): (usize, usize, usize),
) -> Result<GpuBuffer<i64>, GpuError> {
    if targets.len() != outer * inner || targets.iter().any(|&t| t >= r) {
        return Err(GpuError::Driver(format!(
            "softmax cross-entropy: {} targets for [{outer}, {r}, {inner}], each below {r}",
            targets.len()
        )));
    }
    let targets: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    gpu.upload(&targets)
}

fn check(what: &str, len: usize, need: usize) -> Result<(), GpuError> {
    check_len("softmax cross-entropy", what, len, need)
}

/// Each position's loss logsumexp_k x_k - x_t and its logsumexp (each outer·inner).
pub fn softmax_cross_entropy<T: GpuFloat>(
    gpu: &Gpu,
    x: &GpuBuffer<T>,
    dims: (usize, usize, usize),
    targets: &[usize],
    loss: &mut GpuBuffer<T>,
    lse: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let (outer, r, inner) = dims;
    let positions = outer * inner;
    check("x", x.len(), outer * r * inner)?;
    check("loss", loss.len(), positions)?;
    check("lse", lse.len(), positions)?;
    let targets = upload_targets(gpu, targets, dims)?;
    if positions == 0 {
        return Ok(());
    }
    let f = gpu.kernel(
        MODULE,
        SOURCE,
        &format!("softmax_cross_entropy_{}", T::SUFFIX),
    )?;
    let (o, k, i) = (outer as i64, r as i64, inner as i64);
    let mut launch = gpu.launch(&f);
    launch
        .buf(x)
        .buf(&targets)
        .buf_mut(loss)
        .buf_mut(lse)
        .arg(&o)
        .arg(&k)
        .arg(&i);
    // SAFETY: reads outer·r·inner of x and positions of targets (each below r), writes
    // positions of loss and lse (checked above).
    unsafe { launch.run(grid_for(positions)) }?;
    Ok(())
}

/// dx (x's length) given each position's logsumexp and loss gradient.
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy_backward<T: GpuFloat>(
    gpu: &Gpu,
    x: &GpuBuffer<T>,
    dims: (usize, usize, usize),
    targets: &[usize],
    lse: &GpuBuffer<T>,
    grad: &GpuBuffer<T>,
    dx: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let (outer, r, inner) = dims;
    let (len, positions) = (outer * r * inner, outer * inner);
    check("x", x.len(), len)?;
    check("dx", dx.len(), len)?;
    check("lse", lse.len(), positions)?;
    check("grad", grad.len(), positions)?;
    let targets = upload_targets(gpu, targets, dims)?;
    if len == 0 {
        return Ok(());
    }
    let name = format!("softmax_cross_entropy_backward_{}", T::SUFFIX);
    let f = gpu.kernel(MODULE, SOURCE, &name)?;
    let (o, k, i) = (outer as i64, r as i64, inner as i64);
    let mut launch = gpu.launch(&f);
    launch
        .buf(x)
        .buf(&targets)
        .buf(lse)
        .buf(grad)
        .buf_mut(dx)
        .arg(&o)
        .arg(&k)
        .arg(&i);
    // SAFETY: reads len of x, positions of targets, lse and grad; writes len of dx.
    unsafe { launch.run(grid_for(len)) }?;
    Ok(())
}
