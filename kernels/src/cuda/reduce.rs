//! Reductions on the GPU (`reduce.cu`): sum and max over the middle axis of a contiguous
//! [outer, r, inner] buffer, the twins of `cpu::reduce::{sum, max}`.

use super::elementwise::GpuFloat;
use super::{grid_for, Gpu, GpuBuffer, GpuError};
use cudarc::driver::LaunchConfig;

pub(crate) const MODULE: &str = "reduce";
pub(crate) const SOURCE: &str = concat!(include_str!("fold.cuh"), include_str!("reduce.cu"));

/// Which fold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fold {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
}

/// `out[o, i]` = the fold of `x[o, :, i]` for x [outer, r, inner]; `out` holds outer·inner.
pub fn reduce_into<T: GpuFloat>(
    gpu: &Gpu,
    x: &GpuBuffer<T>,
    (outer, r, inner): (usize, usize, usize),
    fold: Fold,
    out: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let n_out = outer * inner;
    if x.len() < outer * r * inner || out.len() < n_out {
        return Err(GpuError::Driver(format!(
            "reduce: [{outer}, {r}, {inner}] does not fit buffers of {} and {} elements",
            x.len(),
            out.len()
        )));
    }
    if n_out == 0 {
        return Ok(());
    }
    let (name, init) = match fold {
        Fold::Sum => ("sum", T::ZERO),
        Fold::Max => ("max", T::NEG_INFINITY),
    };
    let (outer64, r64, inner64) = (outer as i64, r as i64, inner as i64);
    if inner == 1 {
        let f = gpu.kernel(MODULE, SOURCE, &format!("{name}_{}_rows", T::SUFFIX))?;
        let cfg = LaunchConfig {
            grid_dim: (outer.min(65_535) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = gpu.launch(&f);
        launch
            .buf(x)
            .buf_mut(out)
            .arg(&outer64)
            .arg(&r64)
            .arg(&init);
        // SAFETY: reads outer·r elements of x, writes outer of out (checked above).
        unsafe { launch.run(cfg) }?;
    } else {
        let f = gpu.kernel(MODULE, SOURCE, &format!("{name}_{}_columns", T::SUFFIX))?;
        let mut launch = gpu.launch(&f);
        launch
            .buf(x)
            .buf_mut(out)
            .arg(&outer64)
            .arg(&r64)
            .arg(&inner64)
            .arg(&init);
        // SAFETY: reads outer·r·inner elements of x, writes outer·inner of out (checked above).
        unsafe { launch.run(grid_for(n_out)) }?;
    }
    Ok(())
}
