//! Shape ops. reshape (of contiguous data), permute, transpose, narrow and expand are views that
//! share storage; concat, stack and non-view reshapes copy.

use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::layout::{resolve_axis, Layout};
use crate::op::Op;
use crate::profiler;
use crate::tensor::Tensor;

impl Tensor {
    /// Same elements, new shape (same count). A view when the data is contiguous, else a copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({numel} elements)",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        if shape == self.shape() {
            return Ok(self.clone());
        }
        match self.layout().reshape_view(shape) {
            Some(layout) => Ok(self.view_with(layout, Op::Reshape(self.clone()))),
            None => self.contiguous()?.reshape(shape),
        }
    }

    /// Keeps axes before `start` and flattens the rest into one.
    pub fn flatten_from(&self, start: usize) -> Result<Tensor> {
        if start > self.rank() {
            return Err(Error::index(
                "flatten",
                format!("start axis {start} beyond rank {}", self.rank()),
            ));
        }
        let mut shape = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..].iter().product());
        self.reshape(&shape)
    }

    /// A contiguous copy, or the tensor itself when already contiguous.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        profiler::label("contiguous", || vec![self.shape().to_vec()]);
        let storage = self.storage().copy(self.layout())?;
        Ok(Tensor::from_op_result(
            storage,
            self.shape(),
            Op::Copy(self.clone()),
        ))
    }

    /// Reorders axes: output axis i is input axis `perm[i]`. A view.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let layout = self.layout().permute("permute", perm)?;
        Ok(self.view_with(layout, Op::Permute(self.clone(), perm.to_vec())))
    }

    /// Swaps two axes (negative counts from the end). A view.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let a = resolve_axis("transpose", a, self.rank())?;
        let b = resolve_axis("transpose", b, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Swaps the last two axes.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::shape(
                "t",
                format!("needs at least 2 axes, got {:?}", self.shape()),
            ));
        }
        self.transpose(-2, -1)
    }

    /// `len` entries of `axis` starting at `start`. A view.
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let axis = resolve_axis("narrow", axis, self.rank())?;
        let layout = self.layout().narrow(axis, start, len)?;
        Ok(self.view_with(
            layout,
            Op::Narrow {
                input: self.clone(),
                axis,
                start,
            },
        ))
    }

    /// Broadcasts to `shape` without copying (size-1 axes get stride 0).
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let layout = self.layout().expand(shape)?;
        Ok(self.view_with(layout, Op::Expand(self.clone())))
    }

    /// Inserts a size-1 axis at `axis` (0..=rank).
    pub fn unsqueeze(&self, axis: usize) -> Result<Tensor> {
        if axis > self.rank() {
            return Err(Error::index(
                "unsqueeze",
                format!("axis {axis} beyond rank {}", self.rank()),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape.insert(axis, 1);
        let mut strides = self.strides().to_vec();
        strides.insert(axis, 0);
        let layout = Layout {
            shape,
            strides,
            offset: self.layout().offset,
        };
        Ok(self.view_with(layout, Op::Reshape(self.clone())))
    }

    /// Removes a size-1 axis.
    pub fn squeeze(&self, axis: isize) -> Result<Tensor> {
        let a = resolve_axis("squeeze", axis, self.rank())?;
        if self.shape()[a] != 1 {
            return Err(Error::shape(
                "squeeze",
                format!(
                    "axis {a} of {:?} has size {}, not 1",
                    self.shape(),
                    self.shape()[a]
                ),
            ));
        }
        let mut layout = self.layout().clone();
        layout.shape.remove(a);
        layout.strides.remove(a);
        Ok(self.view_with(layout, Op::Reshape(self.clone())))
    }

    /// Joins tensors along an existing axis; all other axes must agree.
    pub fn concat(xs: &[Tensor], axis: isize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("concat", "needs at least one tensor"))?;
        let axis = resolve_axis("concat", axis, first.rank())?;
        let mut shape = first.shape().to_vec();
        shape[axis] = 0;
        for x in xs {
            first.same_dtype("concat", x)?;
            let compatible = x.rank() == first.rank()
                && x.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !compatible {
                let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
                return Err(Error::shape(
                    "concat",
                    format!("shapes {shapes:?} differ outside axis {axis}"),
                ));
            }
            shape[axis] += x.shape()[axis];
        }
        let storages: Vec<_> = xs.iter().map(|x| x.storage()).collect();
        let parts: Vec<_> = storages
            .iter()
            .zip(xs)
            .map(|(s, x)| (s.storage(), x.layout()))
            .collect();
        let storage = Storage::concat(&parts, axis, &shape)?;
        Ok(Tensor::from_op_result(
            storage,
            &shape,
            Op::Concat(xs.to_vec(), axis),
        ))
    }

    /// Joins same-shaped tensors along a new axis.
    pub fn stack(xs: &[Tensor], axis: usize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("stack", "needs at least one tensor"))?;
        if xs.iter().any(|x| x.shape() != first.shape()) {
            let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
            return Err(Error::shape(
                "stack",
                format!("all tensors need the same shape, got {shapes:?}"),
            ));
        }
        let expanded = xs
            .iter()
            .map(|x| x.unsqueeze(axis))
            .collect::<Result<Vec<_>>>()?;
        Tensor::concat(&expanded, axis as isize)
    }
}
