//! Reductions (sum, mean, max, logsumexp) over any axes, and softmax / log-softmax along one.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::{resolve_axes, resolve_axis};
use crate::op::Op;
use crate::tensor::Tensor;
use kernels::desc::AxisSplit;

fn reduced_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if axes.contains(&i) {
            if keepdim {
                out.push(1);
            }
        } else {
            out.push(d);
        }
    }
    out
}

impl Tensor {
    fn reduce_op(
        &self,
        name: &'static str,
        axes: &[isize],
        keepdim: bool,
        max: bool,
    ) -> Result<Tensor> {
        let axes = resolve_axes(name, axes, self.rank())?;
        if max && axes.iter().any(|&a| self.shape()[a] == 0) {
            return Err(Error::shape(
                name,
                format!(
                    "cannot take the max over an empty axis of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let shape = reduced_shape(self.shape(), &axes, keepdim);
        let op = if max {
            Op::Max {
                input: self.clone(),
                axes: axes.clone(),
                keepdim,
            }
        } else {
            Op::Sum {
                input: self.clone(),
                axes: axes.clone(),
                keepdim,
            }
        };
        let storage = self.storage().reduce(self.layout(), &axes, max)?;
        Ok(Tensor::from_op_result(storage, &shape, op))
    }

    /// Sum over `axes` (empty: all axes); `keepdim` keeps them as size 1.
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op("sum", axes, keepdim, false)
    }

    /// Sum of every element, as a scalar.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&[], false)
    }

    /// Mean over `axes` (empty: all axes).
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let resolved = resolve_axes("mean", axes, self.rank())?;
        let n: usize = resolved.iter().map(|&a| self.shape()[a]).product();
        if n == 0 {
            return Err(Error::shape(
                "mean",
                format!("mean over an empty axis of shape {:?}", self.shape()),
            ));
        }
        self.sum(axes, keepdim)?.mul_scalar(1.0 / n as f64)
    }

    /// Mean of every element, as a scalar.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&[], false)
    }

    /// Maximum over `axes` (empty: all axes). The gradient is shared among tied maxima.
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op("max", axes, keepdim, true)
    }

    /// Minimum over `axes`, as -max(-x).
    pub fn min(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.neg()?.max(axes, keepdim)?.neg()
    }

    /// log(sum(exp(x))) over `axes`, computed stably as m + log(sum(exp(x - m))) with m the
    /// (detached) maximum; the result does not depend on m, so its gradient is exact.
    pub fn logsumexp(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let m = self.max(axes, true)?.detach();
        // a row of -inf would give -inf - -inf = NaN; shift by 0 there instead
        let m = Tensor::where_cond(
            &m.abs()?.lt(&m.full_like(f64::INFINITY))?,
            &m,
            &m.zeros_like(),
        )?;
        let out = self.sub(&m)?.exp()?.sum(axes, true)?.log()?.add(&m)?;
        if keepdim {
            Ok(out)
        } else {
            let shape = reduced_shape(
                self.shape(),
                &resolve_axes("logsumexp", axes, self.rank())?,
                false,
            );
            out.reshape(&shape)
        }
    }

    fn softmax_op(&self, axis: isize, log: bool) -> Result<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        let axis = resolve_axis(name, axis, self.rank())?;
        let shape = self.shape();
        let split = AxisSplit::around(shape, axis, axis);
        let op = if log {
            Op::LogSoftmax {
                input: self.clone(),
                axis,
            }
        } else {
            Op::Softmax {
                input: self.clone(),
                axis,
            }
        };
        let storage = self.storage().softmax(self.layout(), split, log)?;
        Ok(Tensor::from_op_result(storage, shape, op))
    }

    /// exp(x) / sum(exp(x)) along `axis`, one fused kernel.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_op(axis, false)
    }

    /// x - logsumexp(x) along `axis`, one fused kernel.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_op(axis, true)
    }

    /// Sums a broadcast result back down to `shape` (the adjoint of broadcasting; bf16 summed
    /// in f32 and rounded once).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let err = || {
            Error::shape(
                "sum_to_shape",
                format!("{:?} does not broadcast from {:?}", self.shape(), shape),
            )
        };
        if shape.len() > self.rank() {
            return Err(err());
        }
        let lead = self.rank() - shape.len();
        let mut axes: Vec<isize> = (0..lead as isize).collect();
        for (i, &d) in shape.iter().enumerate() {
            let own = self.shape()[lead + i];
            if d == 1 && own != 1 {
                axes.push((lead + i) as isize);
            } else if d != own {
                return Err(err());
            }
        }
        let summed = if axes.is_empty() {
            self.clone()
        } else if self.dtype() == DType::BF16 {
            // bf16 broadcasts (expand is a view) but has no sum: summed in f32, rounded once
            self.to_dtype(DType::F32)?
                .sum(&axes, true)?
                .to_dtype(DType::BF16)?
        } else {
            self.sum(&axes, true)?
        };
        summed.reshape(shape)
    }
}
