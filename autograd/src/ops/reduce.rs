//! Reductions (sum, mean, max, logsumexp) over any axes, and softmax / log-softmax along one.

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::{resolve_axes, resolve_axis};
use crate::op::Op;
use crate::tensor::Tensor;
use kernels::cpu::reduce;

/// The maximal runs of adjacent axes in a sorted axis list: [0, 2, 3] -> [[0], [2, 3]].
fn adjacent_runs(axes: &[usize]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &a in axes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == a => *last = a,
            _ => runs.push((a, a)),
        }
    }
    runs
}

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

/// Reduces `axes` one run of adjacent axes at a time, the last run first. Each stage is a
/// contiguous [outer, r, inner] reduction, so no permuted copy of the input is ever made
/// (BatchNorm2d's axes 0, 2, 3 become a reduction over 2..=3 then over 0).
fn run<T: Element>(x: &Tensor, axes: &[usize], max: bool) -> Result<Vec<T>> {
    let stage = |data: &[T], shape: &[usize], (first, last): (usize, usize)| {
        let outer = shape[..first].iter().product();
        let r = shape[first..=last].iter().product();
        let inner = shape[last + 1..].iter().product();
        if max {
            reduce::max(data, outer, r, inner)
        } else {
            reduce::sum(data, outer, r, inner)
        }
    };
    let mut shape = x.shape().to_vec();
    let runs = adjacent_runs(axes);
    let Some((&last_run, earlier)) = runs.split_last() else {
        return Ok(x.contiguous_data::<T>().into_vec());
    };
    let mut data = x.with_view::<T, _>(|v| match v.as_contiguous() {
        Some(s) => stage(s, &shape, last_run),
        None => stage(&v.to_vec(), &shape, last_run),
    });
    shape[last_run.0..=last_run.1].fill(1);
    for &r in earlier.iter().rev() {
        data = stage(&data, &shape, r);
        shape[r.0..=r.1].fill(1);
    }
    Ok(data)
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
        Ok(match self.dtype() {
            DType::F32 => Tensor::from_op(run::<f32>(self, &axes, max)?, &shape, op),
            DType::F64 => Tensor::from_op(run::<f64>(self, &axes, max)?, &shape, op),
        })
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
            &m.abs()?.lt(&Tensor::scalar(f64::INFINITY, self.dtype()))?,
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
        let (outer, r, inner) = (
            shape[..axis].iter().product(),
            shape[axis],
            shape[axis + 1..].iter().product(),
        );
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
        Ok(match self.dtype() {
            DType::F32 => Tensor::from_op(
                reduce::softmax(&self.contiguous_data::<f32>(), outer, r, inner, log),
                shape,
                op,
            ),
            DType::F64 => Tensor::from_op(
                reduce::softmax(&self.contiguous_data::<f64>(), outer, r, inner, log),
                shape,
                op,
            ),
        })
    }

    /// exp(x) / sum(exp(x)) along `axis`, one fused kernel.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_op(axis, false)
    }

    /// x - logsumexp(x) along `axis`, one fused kernel.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_op(axis, true)
    }

    /// Sums a broadcast result back down to `shape` (the adjoint of broadcasting).
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
        } else {
            self.sum(&axes, true)?
        };
        summed.reshape(shape)
    }
}
