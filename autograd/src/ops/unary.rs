//! Elementwise functions of one tensor.

use crate::backend::Held;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::op::Op;
use crate::tensor::Tensor;
use kernels::desc::UnaryKind;

impl Tensor {
    /// Applies a differentiable unary kernel and records it.
    pub(crate) fn unary_op(&self, kind: UnaryKind) -> Result<Tensor> {
        let storage = self.storage().unary(self.layout(), kind)?;
        Ok(Tensor::from_op_result(
            storage,
            self.shape(),
            Op::Unary(self.clone(), kind),
        ))
    }

    /// Applies a kernel whose result is piecewise constant (masks): never recorded.
    pub(crate) fn unary_constant(&self, kind: UnaryKind) -> Result<Tensor> {
        let storage = self.storage().unary(self.layout(), kind)?;
        Ok(Tensor::new_internal(
            Held::new(storage),
            Layout::contiguous(self.shape()),
            None,
        ))
    }

    /// -x.
    pub fn neg(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Neg)
    }
    /// e^x.
    pub fn exp(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Log)
    }
    /// √x.
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Sqrt)
    }
    /// |x|; its gradient is sign(x) (0 at 0).
    pub fn abs(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Abs)
    }
    /// 1 / (1 + e^-x).
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Sigmoid)
    }
    /// tanh x.
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Tanh)
    }
    /// max(x, 0); its gradient is 0 at 0.
    pub fn relu(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Relu)
    }
    /// max(x, 0) + slope * min(x, 0).
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        self.unary_op(UnaryKind::LeakyRelu(slope))
    }
    /// log(1 + e^x), stable for large |x|.
    pub fn softplus(&self) -> Result<Tensor> {
        self.unary_op(UnaryKind::Softplus)
    }
    /// x for x > 0, alpha (e^x - 1) otherwise.
    pub fn elu(&self, alpha: f64) -> Result<Tensor> {
        self.unary_op(UnaryKind::Elu(alpha))
    }
    /// x^p for a scalar exponent p.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        if !p.is_finite() {
            return Err(Error::invalid(
                "pow",
                format!("exponent must be finite, got {p}"),
            ));
        }
        self.unary_op(UnaryKind::Powf(p))
    }
    /// x², as `powf(2.0)`.
    pub fn square(&self) -> Result<Tensor> {
        self.powf(2.0)
    }
    /// x clamped to [min, max] (an error unless min <= max).
    pub fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(Error::invalid(
                "clamp",
                format!("need min <= max, got min {min}, max {max}"),
            ));
        }
        self.unary_op(UnaryKind::Clamp(min, max))
    }
    /// x + c.
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryKind::AddScalar(c))
    }
    /// x - c.
    pub fn sub_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryKind::AddScalar(-c))
    }
    /// x · c.
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryKind::MulScalar(c))
    }
    /// x / c, as x · (1 / c).
    pub fn div_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_op(UnaryKind::MulScalar(1.0 / c))
    }
    /// 1 - x, e.g. for Bernoulli complements.
    pub fn one_minus(&self) -> Result<Tensor> {
        self.neg()?.add_scalar(1.0)
    }

    /// -1, 0 or 1 by sign; a constant (no gradient).
    pub fn sign(&self) -> Result<Tensor> {
        self.unary_constant(UnaryKind::Sign)
    }
    /// 1 where x > c, else 0; a constant.
    pub fn gt_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary_constant(UnaryKind::GtScalar(c))
    }
    /// 1 where lo <= x <= hi, else 0; a constant.
    pub fn in_range(&self, lo: f64, hi: f64) -> Result<Tensor> {
        self.unary_constant(UnaryKind::InRange(lo, hi))
    }
}
