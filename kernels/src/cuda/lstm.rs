//! The fused LSTM cell on the GPU (`lstm.cu`), the twin of `cpu::lstm::{lstm_cell_forward,
//! lstm_cell_backward}` for contiguous rows: gates [batch, 4H] (i, f, g, o), c_prev
//! [batch, H], out [batch, 2H] = [h' | c'].

use super::elementwise::GpuFloat;
use super::{check_len, grid_for, Gpu, GpuBuffer, GpuError};

pub(crate) const MODULE: &str = "lstm";
pub(crate) const SOURCE: &str = include_str!("lstm.cu");

fn check(what: &str, len: usize, need: usize) -> Result<(), GpuError> {
    check_len("lstm cell", what, len, need)
}

/// out = [h' | c'] from the gates' pre-activations and the previous cell state.
pub fn lstm_cell_forward<T: GpuFloat>(
    gpu: &Gpu,
    (batch, hidden): (usize, usize),
    gates: &GpuBuffer<T>,
    c_prev: &GpuBuffer<T>,
    out: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let n = batch * hidden;
    check("gates", gates.len(), 4 * n)?;
    check("c_prev", c_prev.len(), n)?;
    check("out", out.len(), 2 * n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.kernel(MODULE, SOURCE, &format!("lstm_forward_{}", T::SUFFIX))?;
    let (b, h) = (batch as i64, hidden as i64);
    let mut launch = gpu.launch(&f);
    launch.buf(gates).buf(c_prev).buf_mut(out).arg(&b).arg(&h);
    // SAFETY: the kernel touches the extents checked above.
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}

/// The gradients of the gates and of c_prev from the gradient of out = [h' | c'].
#[allow(clippy::too_many_arguments)]
pub fn lstm_cell_backward<T: GpuFloat>(
    gpu: &Gpu,
    (batch, hidden): (usize, usize),
    gates: &GpuBuffer<T>,
    c_prev: &GpuBuffer<T>,
    out: &GpuBuffer<T>,
    grad_out: &GpuBuffer<T>,
    grad_gates: &mut GpuBuffer<T>,
    grad_c_prev: &mut GpuBuffer<T>,
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
    let f = gpu.kernel(MODULE, SOURCE, &format!("lstm_backward_{}", T::SUFFIX))?;
    let (b, h) = (batch as i64, hidden as i64);
    let mut launch = gpu.launch(&f);
    launch
        .buf(gates)
        .buf(c_prev)
        .buf(out)
        .buf(grad_out)
        .buf_mut(grad_gates)
        .buf_mut(grad_c_prev)
        .arg(&b)
        .arg(&h);
    // SAFETY: the kernel touches the extents checked above.
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}
