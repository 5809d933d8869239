//! Matrix multiplication on the GPU (`matmul.cu`): the twin of `cpu::matmul::matmul`, with the
//! operands read through (row, column) strides so transposed views need no copy.

use super::elementwise::GpuElement;
use super::{Gpu, GpuBuffer, GpuError};
use cudarc::driver::LaunchConfig;

pub(crate) const MODULE: &str = "matmul";
pub(crate) const SOURCE: &str = concat!(
    include_str!("bf16.cuh"),
    include_str!("tile.cuh"),
    include_str!("matmul.cu")
);

/// A matrix inside a device buffer: element (i, j) at `offset + i * row_stride + j * col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct GpuMat<'a, T> {
    /// The buffer the matrix lies in.
    pub data: &'a GpuBuffer<T>,
    /// Where element (0, 0) lies.
    pub offset: usize,
    /// The step between rows.
    pub row_stride: usize,
    /// The step between columns.
    pub col_stride: usize,
}

impl<T> GpuMat<'_, T> {
    /// True when every element of a rows x cols matrix lies inside the buffer.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || self.offset + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// C = A * B with A [m, k], B [k, n]; C row-major [m, n] (every element written).
pub fn matmul_into<T: GpuElement>(
    gpu: &Gpu,
    m: usize,
    k: usize,
    n: usize,
    a: GpuMat<T>,
    b: GpuMat<T>,
    c: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    matmul_into_at(gpu, [m, k, n], a, b, c, 0)
}

/// [`matmul_into`] writing C from element `c_offset` of `c` on: one matrix of a batch.
pub fn matmul_into_at<T: GpuElement>(
    gpu: &Gpu,
    [m, k, n]: [usize; 3],
    a: GpuMat<T>,
    b: GpuMat<T>,
    c: &mut GpuBuffer<T>,
    c_offset: usize,
) -> Result<(), GpuError> {
    let limit = i32::MAX as usize;
    if !a.fits(m, k)
        || !b.fits(k, n)
        || c.len() < c_offset + m * n
        || m > limit
        || n > limit
        || k > limit
    {
        return Err(GpuError::Driver(format!(
            "matmul: [{m}, {k}] x [{k}, {n}] does not fit its buffers ({}, {}, {} elements \
             from {c_offset})",
            a.data.len(),
            b.data.len(),
            c.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let f = gpu.kernel(MODULE, SOURCE, &format!("matmul_{}", T::SUFFIX))?;
    let tile = super::block_tile::<T>();
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (mi, ni, ki) = (m as i32, n as i32, k as i32);
    let (ao, ars, acs) = (a.offset as i64, a.row_stride as i64, a.col_stride as i64);
    let (bo, brs, bcs) = (b.offset as i64, b.row_stride as i64, b.col_stride as i64);
    let (c_off, ldc) = (c_offset as i64, n as i64);
    let mut launch = gpu.launch(&f);
    launch
        .arg(&mi)
        .arg(&ni)
        .arg(&ki)
        .buf(a.data)
        .arg(&ao)
        .arg(&ars)
        .arg(&acs)
        .buf(b.data)
        .arg(&bo)
        .arg(&brs)
        .arg(&bcs)
        .buf_mut(c)
        .arg(&c_off)
        .arg(&ldc);
    // SAFETY: the kernel reads A and B inside the extents checked above and writes C[m, n].
    unsafe { launch.run(cfg) }?;
    Ok(())
}
