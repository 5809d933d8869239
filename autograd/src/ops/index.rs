//! Indexing: index_select (embedding lookup), gather (pick one entry per row), their adjoints
//! index_add and scatter_add, and one_hot.

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::resolve_axis;
use crate::op::{Indices, Op};
use crate::tensor::Tensor;
use kernels::cpu::index;
use std::sync::Arc;

impl Indices {
    /// Indices laid out row-major over `shape`.
    pub fn new(data: Vec<usize>, shape: &[usize]) -> Result<Indices> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::shape(
                "indices",
                format!("{} indices do not fill shape {shape:?}", data.len()),
            ));
        }
        Ok(Indices {
            data: data.into(),
            shape: shape.to_vec(),
        })
    }
}

/// [outer, n, inner] around `axis` of `shape`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

fn check_bounds(op: &'static str, idx: &[usize], n: usize) -> Result<()> {
    match idx.iter().find(|&&i| i >= n) {
        Some(i) => Err(Error::index(
            op,
            format!("index {i} out of range for an axis of size {n}"),
        )),
        None => Ok(()),
    }
}

fn dispatch<F32, F64>(dtype: DType, f32_fn: F32, f64_fn: F64) -> crate::storage::Storage
where
    F32: FnOnce() -> Vec<f32>,
    F64: FnOnce() -> Vec<f64>,
{
    match dtype {
        DType::F32 => f32::into_storage(f32_fn()),
        DType::F64 => f64::into_storage(f64_fn()),
    }
}

impl Tensor {
    /// The slices `indices` of `axis`, in that order (repeats allowed): an embedding lookup.
    pub fn index_select(&self, axis: isize, indices: &[usize]) -> Result<Tensor> {
        let axis = resolve_axis("index_select", axis, self.rank())?;
        let (outer, n, inner) = split(self.shape(), axis);
        check_bounds("index_select", indices, n)?;
        let mut shape = self.shape().to_vec();
        shape[axis] = indices.len();
        let storage = dispatch(
            self.dtype(),
            || index::index_select(&self.contiguous_data::<f32>(), outer, n, inner, indices),
            || index::index_select(&self.contiguous_data::<f64>(), outer, n, inner, indices),
        );
        let op = Op::IndexSelect {
            input: self.clone(),
            axis,
            indices: indices.into(),
        };
        Ok(Tensor::from_op_storage(
            Arc::new(storage),
            crate::layout::Layout::contiguous(&shape),
            op,
        ))
    }

    /// Zeros with `size` entries along `axis`, and slice i of `self` added at entry indices[i].
    pub fn index_add(&self, axis: isize, indices: &[usize], size: usize) -> Result<Tensor> {
        let axis = resolve_axis("index_add", axis, self.rank())?;
        let (outer, m, inner) = split(self.shape(), axis);
        if m != indices.len() {
            return Err(Error::shape(
                "index_add",
                format!(
                    "{} indices for {m} slices of {:?} along axis {axis}",
                    indices.len(),
                    self.shape()
                ),
            ));
        }
        check_bounds("index_add", indices, size)?;
        let mut shape = self.shape().to_vec();
        shape[axis] = size;
        let storage = dispatch(
            self.dtype(),
            || index::index_add(&self.contiguous_data::<f32>(), outer, size, inner, indices),
            || index::index_add(&self.contiguous_data::<f64>(), outer, size, inner, indices),
        );
        let op = Op::IndexAdd {
            source: self.clone(),
            axis,
            indices: indices.into(),
            size,
        };
        Ok(Tensor::from_op_storage(
            Arc::new(storage),
            crate::layout::Layout::contiguous(&shape),
            op,
        ))
    }

    /// out[..., j, ...] = self[..., index[..., j, ...], ...] along `axis`; `index` has the rank of
    /// `self` and the same sizes on every other axis (PyTorch's gather).
    pub fn gather(&self, axis: isize, index: &Indices) -> Result<Tensor> {
        let axis = resolve_axis("gather", axis, self.rank())?;
        self.check_gather_shape("gather", axis, &index.shape)?;
        let (outer, n, inner) = split(self.shape(), axis);
        check_bounds("gather", &index.data, n)?;
        let m = index.shape[axis];
        let storage = dispatch(
            self.dtype(),
            || {
                index::gather(
                    &self.contiguous_data::<f32>(),
                    outer,
                    n,
                    inner,
                    &index.data,
                    m,
                )
            },
            || {
                index::gather(
                    &self.contiguous_data::<f64>(),
                    outer,
                    n,
                    inner,
                    &index.data,
                    m,
                )
            },
        );
        let op = Op::Gather {
            input: self.clone(),
            axis,
            index: index.clone(),
        };
        Ok(Tensor::from_op_storage(
            Arc::new(storage),
            crate::layout::Layout::contiguous(&index.shape),
            op,
        ))
    }

    /// The adjoint of gather: zeros with `size` entries along `axis`, self's entries added at `index`.
    pub fn scatter_add(&self, axis: isize, index: &Indices, size: usize) -> Result<Tensor> {
        let axis = resolve_axis("scatter_add", axis, self.rank())?;
        if index.shape != self.shape() {
            return Err(Error::shape(
                "scatter_add",
                format!(
                    "index shape {:?} differs from source shape {:?}",
                    index.shape,
                    self.shape()
                ),
            ));
        }
        check_bounds("scatter_add", &index.data, size)?;
        let (outer, m, inner) = split(self.shape(), axis);
        let mut shape = self.shape().to_vec();
        shape[axis] = size;
        let storage = dispatch(
            self.dtype(),
            || {
                index::scatter_add(
                    &self.contiguous_data::<f32>(),
                    outer,
                    size,
                    inner,
                    &index.data,
                    m,
                )
            },
            || {
                index::scatter_add(
                    &self.contiguous_data::<f64>(),
                    outer,
                    size,
                    inner,
                    &index.data,
                    m,
                )
            },
        );
        let op = Op::ScatterAdd {
            source: self.clone(),
            axis,
            index: index.clone(),
            size,
        };
        Ok(Tensor::from_op_storage(
            Arc::new(storage),
            crate::layout::Layout::contiguous(&shape),
            op,
        ))
    }

    fn check_gather_shape(
        &self,
        op: &'static str,
        axis: usize,
        index_shape: &[usize],
    ) -> Result<()> {
        let ok = index_shape.len() == self.rank()
            && index_shape
                .iter()
                .zip(self.shape())
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if ok {
            Ok(())
        } else {
            Err(Error::shape(
                op,
                format!(
                    "index shape {index_shape:?} must match input shape {:?} except on axis {axis}",
                    self.shape()
                ),
            ))
        }
    }

    /// Rows of the identity: `[len(indices), classes]`, a constant.
    pub fn one_hot(indices: &[usize], classes: usize, dtype: DType) -> Result<Tensor> {
        check_bounds("one_hot", indices, classes)?;
        let mut data = vec![0.0f64; indices.len() * classes];
        for (row, &c) in indices.iter().enumerate() {
            data[row * classes + c] = 1.0;
        }
        Tensor::from_vec(data, &[indices.len(), classes])?.to_dtype(dtype)
    }
}
