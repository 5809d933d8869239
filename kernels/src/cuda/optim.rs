//! The fused Adam / AdamW update on the GPU (`optim.cu`), the twin of `cpu::optim::adam`.

use super::elementwise::GpuFloat;
use super::{grid_for, Gpu, GpuBuffer, GpuError};
use crate::desc::AdamStep;

pub(crate) const MODULE: &str = "optim";
pub(crate) const SOURCE: &str = include_str!("optim.cu");

/// One Adam step over the first `n` elements of p, in place, with gradient g and state m, v.
pub fn adam<T: GpuFloat>(
    gpu: &Gpu,
    p: &mut GpuBuffer<T>,
    g: &GpuBuffer<T>,
    m: &mut GpuBuffer<T>,
    v: &mut GpuBuffer<T>,
    n: usize,
    h: AdamStep,
) -> Result<(), GpuError> {
    if [p.len(), g.len(), m.len(), v.len()]
        .iter()
        .any(|&len| len < n)
    {
        return Err(GpuError::Driver(format!(
            "adam: buffers shorter than the {n} parameters"
        )));
    }
    if n == 0 {
        return Ok(());
    }
    // the constants exactly as the CPU kernel derives them
    let t = h.step.max(1) as f64;
    let (bc1, bc2) = (1.0 - h.beta1.powf(t), 1.0 - h.beta2.powf(t));
    let c = |v: f64| T::from_f64(v);
    let (step_size, inv_bc2_sqrt) = (c(h.lr / bc1), c(1.0 / bc2.sqrt()));
    let (w1, b2, one_minus_b2) = (c(1.0 - h.beta1), c(h.beta2), c(1.0 - h.beta2));
    let (eps, wd, decay) = (c(h.eps), c(h.weight_decay), c(1.0 - h.lr * h.weight_decay));
    let (decoupled, small_w1) = (h.decoupled as i32, ((1.0 - h.beta1).abs() < 0.5) as i32);
    let n64 = n as u64;
    let f = gpu.kernel(MODULE, SOURCE, &format!("adam_{}", T::SUFFIX))?;
    let mut launch = gpu.launch(&f);
    launch
        .buf_mut(p)
        .buf(g)
        .buf_mut(m)
        .buf_mut(v)
        .arg(&n64)
        .arg(&step_size)
        .arg(&inv_bc2_sqrt)
        .arg(&w1)
        .arg(&b2)
        .arg(&one_minus_b2)
        .arg(&eps)
        .arg(&wd)
        .arg(&decay)
        .arg(&decoupled)
        .arg(&small_w1);
    // SAFETY: the kernel touches the first n elements of each buffer (checked above).
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}
