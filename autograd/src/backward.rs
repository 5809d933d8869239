//! Every backward rule in one place. Given an op, the tensor it produced and the gradient of the
//! loss with respect to that tensor, return the gradient with respect to each input.
//!
//! Each rule is written with ordinary Tensor ops. When the engine runs with `create_graph`, those
//! ops are themselves recorded, so the gradients are differentiable again (gradients of
//! gradients, as WGAN-GP's penalty needs). Masks (relu's x > 0, max's argmax) are constants.

use crate::error::Result;
use crate::op::Op;
use crate::tensor::Tensor;
use kernels::desc::{BinaryKind, UnaryKind};

/// Gradients for `op.inputs()`, in order; `None` for inputs the walk does not want (those that
/// do not require grad, or through which no requested gradient flows: `wants_input`). A rule
/// may return a gradient for an unwanted input; the engine drops it.
pub(crate) fn backward(
    op: &Op,
    out: &Tensor,
    g: &Tensor,
    wants_input: &dyn Fn(&Tensor) -> bool,
) -> Result<Vec<Option<Tensor>>> {
    let inputs = op.inputs();
    let wants = |i: usize| wants_input(inputs[i]);
    let only_if =
        |i: usize, f: &dyn Fn() -> Result<Tensor>| if wants(i) { f().map(Some) } else { Ok(None) };
    match op {
        Op::Unary(x, kind) => Ok(vec![Some(unary_backward(*kind, x, out, g)?)]),
        Op::Binary(a, b, kind) => {
            let (ga, gb) = binary_backward(*kind, a, b, g, wants(0), wants(1))?;
            Ok(vec![
                ga.map(|t| t.sum_to_shape(a.shape())).transpose()?,
                gb.map(|t| t.sum_to_shape(b.shape())).transpose()?,
            ])
        }
        Op::Where(mask, a, b) => {
            let zeros = g.zeros_like();
            Ok(vec![
                None,
                only_if(1, &|| {
                    Tensor::where_cond(mask, g, &zeros)?.sum_to_shape(a.shape())
                })?,
                only_if(2, &|| {
                    Tensor::where_cond(mask, &zeros, g)?.sum_to_shape(b.shape())
                })?,
            ])
        }
        Op::Sum {
            input,
            axes,
            keepdim,
        } => Ok(vec![Some(
            keep_reduced_axes(g, input, axes, *keepdim)?.expand(input.shape())?,
        )]),
        Op::Max {
            input,
            axes,
            keepdim,
        } => {
            // the gradient flows to the maxima, shared equally among ties
            let out_keep = keep_reduced_axes(out, input, axes, *keepdim)?;
            let mask = input.eq(&out_keep)?;
            let axes_i: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
            let share = mask.div(&mask.sum(&axes_i, true)?)?;
            Ok(vec![Some(
                keep_reduced_axes(g, input, axes, *keepdim)?.mul(&share)?,
            )])
        }
        Op::Softmax { axis, .. } => {
            // dx = y * (g - sum(g * y))
            let dot = g.mul(out)?.sum(&[*axis as isize], true)?;
            Ok(vec![Some(out.mul(&g.sub(&dot)?)?)])
        }
        Op::LogSoftmax { axis, .. } => {
            // dx = g - softmax(x) * sum(g)
            let total = g.sum(&[*axis as isize], true)?;
            Ok(vec![Some(g.sub(&out.exp()?.mul(&total)?)?)])
        }
        // dA = G B^T, dB = A^T G. An input that is a transposed matrix (a Linear layer's
        // weight.t()) gets its gradient computed transposed, (B G^T)^T or (G^T A)^T, so that the
        // gradient lands in its weight contiguous, as the weight is laid out.
        Op::Matmul(a, b) => Ok(vec![
            only_if(0, &|| {
                if is_transposed_matrix(a) && b.rank() == 2 {
                    b.matmul(&g.t()?)?.t()
                } else {
                    g.matmul(&b.t()?)?.sum_to_shape(a.shape())
                }
            })?,
            only_if(1, &|| {
                if is_transposed_matrix(b) && a.rank() == 2 {
                    g.t()?.matmul(a)?.t()
                } else {
                    a.t()?.matmul(g)?.sum_to_shape(b.shape())
                }
            })?,
        ]),
        // y = a wᵀ: da = g w; dw = Σ gᵀ a over every row of every batch, [n, k] like w
        Op::MatmulT(a, w) => Ok(vec![
            only_if(0, &|| g.matmul(w))?,
            only_if(1, &|| {
                let (k, n) = (w.shape()[1], w.shape()[0]);
                let rows = a.shape()[..a.rank() - 1].iter().product::<usize>();
                g.reshape(&[rows, n])?.t()?.matmul(&a.reshape(&[rows, k])?)
            })?,
        ]),
        Op::Reshape(x) | Op::Copy(x) => Ok(vec![Some(g.reshape(x.shape())?)]),
        Op::Permute(_, perm) => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            Ok(vec![Some(g.permute(&inverse)?)])
        }
        Op::Narrow { input, axis, start } => Ok(vec![Some(pad_axis(
            g,
            *axis,
            *start,
            input.shape()[*axis],
        )?)]),
        Op::Expand(x) => Ok(vec![Some(g.sum_to_shape(x.shape())?)]),
        Op::Concat(xs, axis) => {
            let mut start = 0;
            let mut grads = Vec::with_capacity(xs.len());
            for x in xs {
                let len = x.shape()[*axis];
                grads.push(if wants_input(x) {
                    Some(g.narrow(*axis as isize, start, len)?)
                } else {
                    None
                });
                start += len;
            }
            Ok(grads)
        }
        Op::Cast(x) => Ok(vec![Some(g.to_dtype(x.dtype())?)]),
        Op::ToDevice(x) => Ok(vec![Some(g.to_device(x.device())?)]),
        Op::IndexSelect {
            input,
            axis,
            indices,
        } => Ok(vec![Some(g.index_add(
            *axis as isize,
            indices,
            input.shape()[*axis],
        )?)]),
        Op::IndexAdd { axis, indices, .. } => {
            Ok(vec![Some(g.index_select(*axis as isize, indices)?)])
        }
        Op::Gather { input, axis, index } => Ok(vec![Some(g.scatter_add(
            *axis as isize,
            index,
            input.shape()[*axis],
        )?)]),
        Op::ScatterAdd { axis, index, .. } => Ok(vec![Some(g.gather(*axis as isize, index)?)]),
        Op::Custom(xs, custom) => Ok(custom.backward(xs, out, g)?.into_iter().map(Some).collect()),
        // The three convolution ops are closed under differentiation: each one's gradients are
        // the other two (or itself) with the roles of the operands swapped.
        Op::Conv { x, w, geo } => Ok(vec![
            only_if(0, &|| Tensor::conv_input_grad_op(g, w, geo))?,
            only_if(1, &|| Tensor::conv_weight_grad_op(x, g, geo))?,
        ]),
        Op::ConvInputGrad { dy, w, geo } => Ok(vec![
            only_if(0, &|| Tensor::conv_op(g, w, geo))?,
            only_if(1, &|| Tensor::conv_weight_grad_op(g, dy, geo))?,
        ]),
        Op::ConvWeightGrad { x, dy, geo } => Ok(vec![
            only_if(0, &|| Tensor::conv_input_grad_op(dy, g, geo))?,
            only_if(1, &|| Tensor::conv_op(x, g, geo))?,
        ]),
        // fused kernel for a plain backward, Tensor ops under create_graph (see ops/lstm.rs)
        Op::LstmCell { gates, c_prev } => {
            crate::ops::lstm::lstm_cell_backward(gates, c_prev, out, g)
        }
    }
}

fn unary_backward(kind: UnaryKind, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    match kind {
        UnaryKind::Neg => g.neg(),
        UnaryKind::Exp => g.mul(y),
        UnaryKind::Log => g.div(x),
        UnaryKind::Sqrt => g.div(&y.mul_scalar(2.0)?),
        UnaryKind::Abs => g.mul(&x.sign()?),
        UnaryKind::Sigmoid => g.mul(&y.mul(&y.one_minus()?)?),
        UnaryKind::Tanh => g.mul(&y.square()?.one_minus()?),
        UnaryKind::Relu => g.leaky_relu_grad(x, 0.0),
        UnaryKind::LeakyRelu(slope) => g.leaky_relu_grad(x, slope),
        UnaryKind::Softplus => g.mul(&x.sigmoid()?),
        UnaryKind::Elu(alpha) => {
            // for x <= 0, d/dx alpha (e^x - 1) = alpha e^x = y + alpha
            Tensor::where_cond(&x.gt_scalar(0.0)?, g, &g.mul(&y.add_scalar(alpha)?)?)
        }
        UnaryKind::Powf(p) => {
            if p == 0.0 {
                Ok(g.zeros_like())
            } else if p == 1.0 {
                Ok(g.clone())
            } else {
                g.mul(&x.powf(p - 1.0)?.mul_scalar(p)?)
            }
        }
        UnaryKind::Clamp(lo, hi) => g.mul(&x.in_range(lo, hi)?),
        UnaryKind::AddScalar(_) => Ok(g.clone()),
        UnaryKind::MulScalar(c) => g.mul_scalar(c),
        UnaryKind::Sign | UnaryKind::GtScalar(_) | UnaryKind::InRange(..) => Ok(g.zeros_like()),
    }
}

type GradPair = (Option<Tensor>, Option<Tensor>);

fn binary_backward(
    kind: BinaryKind,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    want_a: bool,
    want_b: bool,
) -> Result<GradPair> {
    let pick =
        |want: bool, f: &dyn Fn() -> Result<Tensor>| if want { f().map(Some) } else { Ok(None) };
    match kind {
        BinaryKind::Add => Ok((
            pick(want_a, &|| Ok(g.clone()))?,
            pick(want_b, &|| Ok(g.clone()))?,
        )),
        BinaryKind::Sub => Ok((pick(want_a, &|| Ok(g.clone()))?, pick(want_b, &|| g.neg())?)),
        BinaryKind::Mul => Ok((pick(want_a, &|| g.mul(b))?, pick(want_b, &|| g.mul(a))?)),
        BinaryKind::Div => Ok((
            pick(want_a, &|| g.div(b))?,
            pick(want_b, &|| g.mul(a)?.div(&b.square()?)?.neg())?,
        )),
        BinaryKind::Maximum | BinaryKind::Minimum => {
            let to_a = if kind == BinaryKind::Maximum {
                a.ge(b)?
            } else {
                b.ge(a)?
            };
            Ok((
                pick(want_a, &|| g.mul(&to_a))?,
                pick(want_b, &|| g.mul(&to_a.one_minus()?))?,
            ))
        }
        BinaryKind::Eq | BinaryKind::Gt | BinaryKind::Ge | BinaryKind::Lt => Ok((None, None)),
        // linear in the gradient a; piecewise constant in b, whose derivative is 0
        BinaryKind::LeakyReluGrad(slope) => {
            Ok((pick(want_a, &|| g.leaky_relu_grad(b, slope))?, None))
        }
    }
}

/// `t` (a reduction's output or its gradient) with the reduced axes present as size 1.
fn keep_reduced_axes(t: &Tensor, input: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    if keepdim {
        return Ok(t.clone());
    }
    let shape: Vec<usize> = input
        .shape()
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    t.reshape(&shape)
}

/// Zero-pads `g` along `axis` so that it sits at `start` inside a length of `full` (narrow's adjoint).
fn pad_axis(g: &Tensor, axis: usize, start: usize, full: usize) -> Result<Tensor> {
    let len = g.shape()[axis];
    let mut parts = Vec::with_capacity(3);
    let zeros_of = |n: usize| {
        let mut s = g.shape().to_vec();
        s[axis] = n;
        Tensor::full_on(&s, 0.0, g.dtype(), g.device())
    };
    if start > 0 {
        parts.push(zeros_of(start)?);
    }
    parts.push(g.clone());
    if start + len < full {
        parts.push(zeros_of(full - start - len)?);
    }
    Tensor::concat(&parts, axis as isize)
}

/// A 2-D view whose transpose is contiguous (strides [1, rows]).
fn is_transposed_matrix(x: &Tensor) -> bool {
    let (shape, strides) = (x.shape(), x.strides());
    shape.len() == 2 && shape[0] > 1 && shape[1] > 1 && strides == [1, shape[0]]
}
