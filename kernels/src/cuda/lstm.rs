//! The fused LSTM cell on the GPU (`lstm.cu`), the twin of `cpu::lstm::{lstm_cell_forward,
//! lstm_cell_backward}` for contiguous rows: gates [batch, 4H] (i, f, g, o), c_prev
//! [batch, H], out [batch, 2H] = [h' | c'].

use super::elementwise::GpuFloat;
use super::{driver_error, grid_for, Gpu, GpuError};
use cudarc::driver::{CudaSlice, PushKernelArg};

pub(crate) const MODULE: &str = "lstm";
pub(crate) const SOURCE: &str = include_str!("lstm.cu");

fn check(what: &str, len: usize, need: usize) -> Result<(), GpuError> {
    if len < need {
        return Err(GpuError::Driver(format!(
            "lstm cell: {what} has {len} elements, needs {need}"
        )));
    }
    Ok(())
}

/// out = [h' | c'] from the gates' pre-activations and the previous cell state.
pub fn lstm_cell_forward<T: GpuFloat>(
    gpu: &Gpu,
    (batch, hidden): (usize, usize),
    gates: &CudaSlice<T>,
    c_prev: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
) -> Result<(), GpuError> {
    let n = batch * hidden;
    check("gates", gates.len(), 4 * n)?;
    check("c_prev", c_prev.len(), n)?;
    check("out", out.len(), 2 * n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(MODULE, SOURCE, &format!("lstm_forward_{}", T::SUFFIX))?;
    let (b, h) = (batch as i64, hidden as i64);
    let mut launch = gpu.stream().launch_builder(&f);
    launch.arg(gates).arg(c_prev).arg(out).arg(&b).arg(&h);
    // SAFETY: the kernel touches the extents checked above.
    unsafe { launch.launch(grid_for(n)) }.map_err(driver_error)?;
    Ok(())
}

/// The gradients of the gates and of c_prev from the gradient of out = [h' | c'].
#[allow(clippy::too_many_arguments)]
pub fn lstm_cell_backward<T: GpuFloat>(
    gpu: &Gpu,
    (batch, hidden): (usize, usize),
    gates: &CudaSlice<T>,
    c_prev: &CudaSlice<T>,
    out: &CudaSlice<T>,
    grad_out: &CudaSlice<T>,
    grad_gates: &mut CudaSlice<T>,
    grad_c_prev: &mut CudaSlice<T>,
) -> Result<(), GpuError> {
    let n = batch * hidden;
    check("gates", gates.len(), 4 * n)?;
    check("c_prev", c_prev.len(), n)?;
    check("out", out.len(), 2 * n)?;
    check("grad_out", grad_out.len(), 2 * n)?;
    check("grad_gates", grad_gates.len(), 4 * n)?;
    check("grad_c_prev", grad_c_prev.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(MODULE, SOURCE, &format!("lstm_backward_{}", T::SUFFIX))?;
    let (b, h) = (batch as i64, hidden as i64);
    let mut launch = gpu.stream().launch_builder(&f);
    launch
        .arg(gates)
        .arg(c_prev)
        .arg(out)
        .arg(grad_out)
        .arg(grad_gates)
        .arg(grad_c_prev)
        .arg(&b)
        .arg(&h);
    // SAFETY: the kernel touches the extents checked above.
    unsafe { launch.launch(grid_for(n)) }.map_err(driver_error)?;
    Ok(())
}
