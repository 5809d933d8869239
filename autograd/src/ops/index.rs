//! Indexing: index_select (embedding lookup), gather (pick one entry per row), their adjoints
//! index_add and scatter_add, and one_hot.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::resolve_axis;
use crate::op::{Indices, Op};
use crate::tensor::Tensor;
use kernels::desc::AxisSplit;

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

/// `shape` split around `axis`.
fn split(shape: &[usize], axis: usize) -> AxisSplit {
    AxisSplit::around(shape, axis, axis)
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

impl Tensor {
    /// The slices `indices` of `axis`, in that order (repeats allowed): an embedding lookup.
    pub fn index_select(&self, axis: isize, indices: &[usize]) -> Result<Tensor> {
        let axis = resolve_axis("index_select", axis, self.rank())?;
        let sp = split(self.shape(), axis);
        check_bounds("index_select", indices, sp.axis)?;
        let mut shape = self.shape().to_vec();
        shape[axis] = indices.len();
        let storage = self.storage().index_select(self.layout(), sp, indices)?;
        let op = Op::IndexSelect {
            input: self.clone(),
            axis,
            indices: indices.into(),
        };
        Ok(Tensor::from_op_result(storage, &shape, op))
    }

    /// Zeros with `size` entries along `axis`, and slice i of `self` added at entry `indices[i]`.
    pub fn index_add(&self, axis: isize, indices: &[usize], size: usize) -> Result<Tensor> {
        let axis = resolve_axis("index_add", axis, self.rank())?;
        let sp = split(self.shape(), axis);
        let m = sp.axis;
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
        let storage = self.storage().index_add(self.layout(), sp, indices, size)?;
        let op = Op::IndexAdd {
            source: self.clone(),
            axis,
            indices: indices.into(),
            size,
        };
        Ok(Tensor::from_op_result(storage, &shape, op))
    }

    /// out[..., j, ...] = self[..., index[..., j, ...], ...] along `axis`; `index` has the rank of
    /// `self` and the same sizes on every other axis (PyTorch's gather).
    pub fn gather(&self, axis: isize, index: &Indices) -> Result<Tensor> {
        let axis = resolve_axis("gather", axis, self.rank())?;
        self.check_gather_shape("gather", axis, &index.shape)?;
        let sp = split(self.shape(), axis);
        check_bounds("gather", &index.data, sp.axis)?;
        let m = index.shape[axis];
        let storage = self.storage().gather(self.layout(), sp, &index.data, m)?;
        let op = Op::Gather {
            input: self.clone(),
            axis,
            index: index.clone(),
        };
        Ok(Tensor::from_op_result(storage, &index.shape, op))
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
        let sp = split(self.shape(), axis);
        let mut shape = self.shape().to_vec();
        shape[axis] = size;
        let storage = self
            .storage()
            .scatter_add(self.layout(), sp, &index.data, size)?;
        let op = Op::ScatterAdd {
            source: self.clone(),
            axis,
            index: index.clone(),
            size,
        };
        Ok(Tensor::from_op_result(storage, &shape, op))
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
