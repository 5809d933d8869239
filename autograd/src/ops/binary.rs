//! Elementwise functions of two tensors, with NumPy broadcasting, and `where`.

use crate::backend::Held;
use crate::error::Result;
use crate::layout::{broadcast_shapes, Layout};
use crate::op::Op;
use crate::profiler;
use crate::tensor::Tensor;
use kernels::desc::BinaryKind;

impl Tensor {
    fn binary_op(&self, other: &Tensor, kind: BinaryKind, record: bool) -> Result<Tensor> {
        let name = kind.name();
        self.same_dtype(name, other)?;
        let shape = broadcast_shapes(name, self.shape(), other.shape())?;
        let la = self.layout().expand(&shape)?;
        let lb = other.layout().expand(&shape)?;
        profiler::label(name, || vec![self.shape().to_vec(), other.shape().to_vec()]);
        let storage = self.storage().binary(&la, &other.storage(), &lb, kind)?;
        let storage = Held::new(storage);
        if record {
            Ok(Tensor::from_op_storage(
                storage,
                Layout::contiguous(&shape),
                Op::Binary(self.clone(), other.clone(), kind),
            ))
        } else {
            Ok(Tensor::new_internal(
                storage,
                Layout::contiguous(&shape),
                None,
            ))
        }
    }

    /// a + b, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Add, true)
    }
    /// a - b, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Sub, true)
    }
    /// a · b, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Mul, true)
    }
    /// a / b, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Div, true)
    }
    /// Elementwise maximum; the gradient goes to the larger operand (to `self` on ties).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Maximum, true)
    }
    /// Elementwise minimum; the gradient goes to the smaller operand (to `self` on ties).
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Minimum, true)
    }
    /// `self` where `x` > 0, `slope * self` elsewhere: a gradient passed back through
    /// `x.leaky_relu(slope)` (`x.relu()` for slope 0), fused into one pass. Differentiable in
    /// `self`; its derivative in `x` is zero almost everywhere.
    pub fn leaky_relu_grad(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        self.binary_op(x, BinaryKind::LeakyReluGrad(slope), true)
    }

    /// 1 where equal, else 0 (a constant).
    pub fn eq(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Eq, false)
    }
    /// 1 where self > other, else 0 (a constant).
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Gt, false)
    }
    /// 1 where self >= other, else 0 (a constant).
    pub fn ge(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Ge, false)
    }
    /// 1 where self < other, else 0 (a constant).
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_op(other, BinaryKind::Lt, false)
    }

    /// Picks `a` where `mask` is nonzero and `b` elsewhere; all three broadcast together.
    /// The mask is treated as a constant.
    pub fn where_cond(mask: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a.same_dtype("where", b)?;
        a.same_dtype("where", mask)?;
        let shape = broadcast_shapes(
            "where",
            &broadcast_shapes("where", mask.shape(), a.shape())?,
            b.shape(),
        )?;
        let (lm, la, lb) = (
            mask.layout().expand(&shape)?,
            a.layout().expand(&shape)?,
            b.layout().expand(&shape)?,
        );
        profiler::label("where", || {
            vec![
                mask.shape().to_vec(),
                a.shape().to_vec(),
                b.shape().to_vec(),
            ]
        });
        let storage = mask
            .storage()
            .select(&lm, &a.storage(), &la, &b.storage(), &lb)?;
        Ok(Tensor::from_op_result(
            storage,
            &shape,
            Op::Where(mask.detach(), a.clone(), b.clone()),
        ))
    }
}
