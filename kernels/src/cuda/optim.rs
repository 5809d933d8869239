//! The fused optimizer updates on the GPU (`optim.cu`): Adam / AdamW, SGD and RMSprop, the
//! twins of `cpu::optim`'s.

use super::elementwise::GpuFloat;
use super::{grid_for, Gpu, GpuBuffer, GpuError};
use crate::desc::{AdamStep, RmspropStep, SgdStep};

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

fn shorter_than(op: &str, n: usize, lens: &[usize]) -> Result<(), GpuError> {
    if lens.iter().any(|&len| len < n) {
        return Err(GpuError::Driver(format!(
            "{op}: buffers shorter than the {n} parameters"
        )));
    }
    Ok(())
}

/// One SGD step over the first `n` elements of p, in place, with gradient g and, with
/// momentum, its buffer.
pub fn sgd<T: GpuFloat>(
    gpu: &Gpu,
    p: &mut GpuBuffer<T>,
    g: &GpuBuffer<T>,
    momentum: Option<&mut GpuBuffer<T>>,
    n: usize,
    h: SgdStep,
) -> Result<(), GpuError> {
    let mut none = gpu.zeros::<T>(1)?;
    let has_buf = momentum.is_some() as i32;
    let buf = momentum.unwrap_or(&mut none);
    shorter_than("sgd", n, &[p.len(), g.len()])?;
    if has_buf == 1 {
        shorter_than("sgd", n, &[buf.len()])?;
    }
    if n == 0 {
        return Ok(());
    }
    let c = |v: f64| T::from_f64(v);
    let (lr, mom, one_minus_damp, wd) = (
        c(h.lr),
        c(h.momentum),
        c(1.0 - h.dampening),
        c(h.weight_decay),
    );
    let (first, nesterov, n64) = (h.first_step as i32, h.nesterov as i32, n as u64);
    let f = gpu.kernel(MODULE, SOURCE, &format!("sgd_{}", T::SUFFIX))?;
    let mut launch = gpu.launch(&f);
    launch
        .buf_mut(p)
        .buf(g)
        .buf_mut(buf)
        .arg(&n64)
        .arg(&lr)
        .arg(&mom)
        .arg(&one_minus_damp)
        .arg(&wd)
        .arg(&has_buf)
        .arg(&first)
        .arg(&nesterov);
    // SAFETY: the kernel touches the first n elements of p, g and (with momentum) buf.
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}

/// One RMSprop step over the first `n` elements of p, in place, with gradient g, the running
/// mean of squares v and, with momentum, its buffer.
pub fn rmsprop<T: GpuFloat>(
    gpu: &Gpu,
    p: &mut GpuBuffer<T>,
    g: &GpuBuffer<T>,
    v: &mut GpuBuffer<T>,
    momentum: Option<&mut GpuBuffer<T>>,
    n: usize,
    h: RmspropStep,
) -> Result<(), GpuError> {
    let mut none = gpu.zeros::<T>(1)?;
    let has_buf = momentum.is_some() as i32;
    let buf = momentum.unwrap_or(&mut none);
    shorter_than("rmsprop", n, &[p.len(), g.len(), v.len()])?;
    if has_buf == 1 {
        shorter_than("rmsprop", n, &[buf.len()])?;
    }
    if n == 0 {
        return Ok(());
    }
    let c = |x: f64| T::from_f64(x);
    let (lr, a, one_minus_a) = (c(h.lr), c(h.alpha), c(1.0 - h.alpha));
    let (eps, mom, wd, n64) = (c(h.eps), c(h.momentum), c(h.weight_decay), n as u64);
    let f = gpu.kernel(MODULE, SOURCE, &format!("rmsprop_{}", T::SUFFIX))?;
    let mut launch = gpu.launch(&f);
    launch
        .buf_mut(p)
        .buf(g)
        .buf_mut(v)
        .buf_mut(buf)
        .arg(&n64)
        .arg(&lr)
        .arg(&a)
        .arg(&one_minus_a)
        .arg(&eps)
        .arg(&mom)
        .arg(&wd)
        .arg(&has_buf);
    // SAFETY: the kernel touches the first n elements of p, g, v and (with momentum) buf.
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}
