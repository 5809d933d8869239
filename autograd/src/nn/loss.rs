//! Losses, each built from Tensor ops so that it is differentiable (twice, for penalties that
//! differentiate a gradient). Every loss takes a [`Reduction`]; PyTorch's default is `Mean`.
//!
//! Elementwise losses require `input` and `target` of the same shape: a silent broadcast of
//! `[N]` against `[N, 1]` is a classic bug, so it is an error here.

use crate::error::{Error, Result};
use crate::grad_mode::is_grad_enabled;
use crate::layout::{resolve_axis, Layout};
use crate::op::CustomBackward;
use crate::op::Indices;
use crate::tensor::Tensor;
use kernels::desc::AxisSplit;
use std::sync::Arc;

/// How per-element (or per-sample) losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The average over all elements (samples for cross-entropy and the Gaussian KL).
    #[default]
    Mean,
    /// The total.
    Sum,
    /// No reduction: the per-element (per-sample) losses.
    None,
}

fn reduce(loss: Tensor, reduction: Reduction) -> Result<Tensor> {
    match reduction {
        Reduction::Mean => loss.mean_all(),
        Reduction::Sum => loss.sum_all(),
        Reduction::None => Ok(loss),
    }
}

fn same_shape(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    input.same_dtype(op, target)?;
    if input.shape() != target.shape() {
        return Err(Error::shape(
            op,
            format!(
                "input {:?} and target {:?} must have the same shape",
                input.shape(),
                target.shape()
            ),
        ));
    }
    Ok(())
}

/// max(ln x, -100), with ln 0 = -100 and a zero gradient there instead of 0 * inf = NaN.
fn clamped_log(x: &Tensor) -> Result<Tensor> {
    let positive = x.gt_scalar(0.0)?;
    let safe = Tensor::where_cond(&positive, x, &x.ones_like())?;
    let log = safe.log()?.clamp(-100.0, f64::INFINITY)?;
    Tensor::where_cond(&positive, &log, &x.full_like(-100.0))
}

/// Binary cross-entropy of probabilities p against targets t (PyTorch's `BCELoss`):
///
/// l_i = -(t_i max(ln p_i, -100) + (1 - t_i) max(ln(1 - p_i), -100)).
///
/// The log is clamped at -100 as PyTorch does, so p = 0 or 1 gives a finite loss; where the
/// clamp is active the gradient is 0 (PyTorch's hand-written backward instead divides by
/// max(p (1 - p), 1e-12) there). Errors on a probability outside [0, 1]. Prefer
/// [`bce_with_logits`], which is stable for saturated logits.
pub fn bce(probs: &Tensor, targets: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("bce", probs, targets)?;
    if let Some(bad) = probs
        .to_vec_f64()
        .into_iter()
        .find(|p| !(0.0..=1.0).contains(p))
    {
        return Err(Error::invalid(
            "bce",
            format!(
                "probabilities must be in [0, 1], got {bad} in input {:?}",
                probs.shape()
            ),
        ));
    }
    let pos = targets.mul(&clamped_log(probs)?)?;
    let neg = targets
        .one_minus()?
        .mul(&clamped_log(&probs.one_minus()?)?)?;
    reduce(pos.add(&neg)?.neg()?, reduction)
}

/// Binary cross-entropy on logits x (PyTorch's `BCEWithLogitsLoss`):
///
/// l_i = -(t_i ln sigmoid(x_i) + (1 - t_i) ln(1 - sigmoid(x_i)))
///     = max(x_i, 0) - x_i t_i + ln(1 + e^{-|x_i|})
///     = softplus(x_i) - x_i t_i,
///
/// computed in the last form: softplus is evaluated stably and its derivative, sigmoid(x), is
/// right everywhere (including x = 0, where the max/abs form's pieces have kinks), so
/// dl/dx = sigmoid(x) - t.
///
/// Mean and Sum run as one fused op: one pass computes the reduced loss (the composite would
/// write three full-size temporaries), and its backward, written with Tensor ops so that it
/// can be differentiated again, is dl/dx = (sigmoid(x) - t) g s and dl/dt = -x g s, with s = 1
/// or 1/n.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("bce_with_logits", logits, targets)?;
    let scale = match reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean => 1.0 / logits.numel() as f64,
        Reduction::None => return logits.softplus()?.sub(&logits.mul(targets)?),
    };
    let total = logits.storage().bce_with_logits_sum(
        logits.layout(),
        &targets.storage(),
        targets.layout(),
        scale,
    )?;
    let value = Tensor::from_storage(total, Layout::contiguous(&[]));
    Ok(Tensor::from_custom_op(
        &value,
        vec![logits.clone(), targets.clone()],
        Arc::new(BceWithLogitsBackward { scale }),
    ))
}

/// The backward of the fused [`bce_with_logits`] (Mean or Sum).
struct BceWithLogitsBackward {
    /// 1 for Sum, 1/n for Mean.
    scale: f64,
}

impl CustomBackward for BceWithLogitsBackward {
    fn name(&self) -> &'static str {
        "bce_with_logits"
    }

    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (x, t) = (&inputs[0], &inputs[1]);
        let g = grad.mul_scalar(self.scale)?;
        let dx = x.sigmoid()?.sub(t)?.mul(&g)?;
        // targets are data almost always: their zero gradient costs nothing then
        let dt = if t.requires_grad() {
            x.neg()?.mul(&g)?
        } else {
            Tensor::full_on(&[], 0.0, t.dtype(), t.device())?.expand(t.shape())?
        };
        Ok(vec![dx, dt])
    }
}

/// Mean squared error: l_i = (x_i - y_i)^2.
pub fn mse(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("mse", input, target)?;
    reduce(input.sub(target)?.square()?, reduction)
}

/// Mean absolute error: l_i = |x_i - y_i| (gradient sign(x_i - y_i), 0 at equality).
pub fn l1(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("l1", input, target)?;
    reduce(input.sub(target)?.abs()?, reduction)
}

/// Cross-entropy of logits [N, C] against class indices (PyTorch's `CrossEntropyLoss`):
///
/// `l_n = -log_softmax(x_n)[t_n] = logsumexp(x_n) - x_{n, t_n}`,
///
/// from the fused log-softmax and a gather. Mean averages over the N samples; None gives `[N]`.
pub fn cross_entropy(logits: &Tensor, targets: &[usize], reduction: Reduction) -> Result<Tensor> {
    if logits.rank() != 2 {
        return Err(Error::shape(
            "cross_entropy",
            format!("logits must be [N, C], got {:?}", logits.shape()),
        ));
    }
    let (n, c) = (logits.shape()[0], logits.shape()[1]);
    if targets.len() != n {
        return Err(Error::shape(
            "cross_entropy",
            format!(
                "{} targets for logits {:?} ({n} samples)",
                targets.len(),
                logits.shape()
            ),
        ));
    }
    if let Some((i, t)) = targets.iter().enumerate().find(|(_, &t)| t >= c) {
        return Err(Error::index(
            "cross_entropy",
            format!(
                "target {t} of sample {i} is out of range for {c} classes (logits {:?})",
                logits.shape()
            ),
        ));
    }
    let index = Indices::new(targets.to_vec(), &[n, 1])?;
    let picked = logits.log_softmax(1)?.gather(1, &index)?.reshape(&[n])?;
    reduce(picked.neg()?, reduction)
}

/// Softmax cross-entropy along `axis` of `logits` against one class per position (the K-way
/// softmax pixels of the autoregressive models; PyTorch's `cross_entropy` with
/// `reduction="none"` on logits [N, K, ...]):
///
/// `l = logsumexp_k x_k - x_t`, the shape of `logits` without `axis`,
///
/// with `targets` in row-major order over that shape. One fused op: the forward makes one pass
/// for the maxima and one for the sums and keeps the logsumexps; the backward is one pass,
/// dl/dx = g (softmax(x) - onehot(t)), where log-softmax then a gather would write and read back
/// several full-size temporaries. When a graph of the gradient is being recorded (gradients of
/// gradients), the backward is written with Tensor ops instead, so that it can be
/// differentiated again.
pub fn softmax_cross_entropy(logits: &Tensor, axis: isize, targets: &[usize]) -> Result<Tensor> {
    let op = "softmax_cross_entropy";
    let axis = resolve_axis(op, axis, logits.rank())?;
    let shape = logits.shape().to_vec();
    let classes = shape[axis];
    let mut out_shape = shape.clone();
    out_shape.remove(axis);
    let positions: usize = out_shape.iter().product();
    if targets.len() != positions {
        return Err(Error::shape(
            op,
            format!(
                "{} targets for logits {shape:?} along axis {axis} ({positions} positions)",
                targets.len()
            ),
        ));
    }
    if let Some((i, t)) = targets.iter().enumerate().find(|(_, &t)| t >= classes) {
        return Err(Error::index(
            op,
            format!("target {t} at position {i} is out of range for {classes} classes (logits {shape:?}, axis {axis})"),
        ));
    }
    let split = AxisSplit::around(&shape, axis, axis);
    let (loss, lse) = logits
        .storage()
        .softmax_cross_entropy(logits.layout(), split, targets)?;
    let value = Tensor::from_storage(loss, Layout::contiguous(&out_shape));
    let lse = Tensor::from_storage(lse, Layout::contiguous(&out_shape));
    Ok(Tensor::from_custom_op(
        &value,
        vec![logits.clone()],
        Arc::new(SoftmaxCrossEntropyBackward {
            axis,
            targets: targets.into(),
            lse,
        }),
    ))
}

/// The backward of [`softmax_cross_entropy`].
struct SoftmaxCrossEntropyBackward {
    axis: usize,
    targets: Arc<[usize]>,
    /// logsumexp of each position, from the forward
    lse: Tensor,
}

impl CustomBackward for SoftmaxCrossEntropyBackward {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy"
    }

    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let x = &inputs[0];
        if is_grad_enabled() {
            // recorded: softmax(x) g minus g at the targets, in differentiable ops
            let g = grad.unsqueeze(self.axis)?;
            let mut index_shape = x.shape().to_vec();
            index_shape[self.axis] = 1;
            let index = Indices::new(self.targets.to_vec(), &index_shape)?;
            let picked = g.scatter_add(self.axis as isize, &index, x.shape()[self.axis])?;
            return Ok(vec![x
                .softmax(self.axis as isize)?
                .mul(&g)?
                .sub(&picked)?]);
        }
        let grad = grad.contiguous()?;
        let dx = x.storage().softmax_cross_entropy_backward(
            x.layout(),
            AxisSplit::around(x.shape(), self.axis, self.axis),
            &self.targets,
            &self.lse.storage(),
            &grad.storage(),
        )?;
        Ok(vec![Tensor::from_storage(
            dx,
            Layout::contiguous(x.shape()),
        )])
    }
}

/// KL(N(mu, diag(e^logvar)) || N(0, I)) per sample, the VAE's regulariser:
///
/// KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - e^{logvar_j}),
///
/// summed over the last axis. Mean averages that over the remaining (batch) axes, Sum adds
/// them up, None returns them with the last axis removed.
pub fn gaussian_kl(mu: &Tensor, logvar: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("gaussian_kl", mu, logvar)?;
    if mu.rank() == 0 {
        return Err(Error::shape(
            "gaussian_kl",
            "mu and logvar need at least one axis (the latent dimensions), got shape []",
        ));
    }
    let inner = logvar
        .add_scalar(1.0)?
        .sub(&mu.square()?)?
        .sub(&logvar.exp()?)?;
    let per_sample = inner.sum(&[-1], false)?.mul_scalar(-0.5)?;
    reduce(per_sample, reduction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_cross_entropy_by_hand_and_both_backwards_agree() {
        // logits [2, 3, 2] along the middle axis: 4 positions
        let x = Tensor::from_vec(
            vec![
                0.5f64, -1.0, 2.0, 0.0, -0.5, 1.5, 1.0, 2.0, -2.0, 0.25, 3.0, -1.0,
            ],
            &[2, 3, 2],
        )
        .unwrap()
        .requires_grad_(true)
        .unwrap();
        let targets = [2, 0, 1, 2];
        let l = softmax_cross_entropy(&x, 1, &targets).unwrap();
        assert_eq!(l.shape(), &[2, 2]);
        let v = x.to_vec_f64();
        let at = |o: usize, k: usize, i: usize| v[(o * 3 + k) * 2 + i];
        let mut want = Vec::new();
        for o in 0..2 {
            for i in 0..2 {
                let lse = (0..3).map(|k| at(o, k, i).exp()).sum::<f64>().ln();
                want.push(lse - at(o, targets[o * 2 + i], i));
            }
        }
        for (g, w) in l.to_vec_f64().iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        // weights on the positions, so that the gradient's scale matters
        let w = Tensor::from_vec(vec![1.0f64, -2.0, 0.5, 3.0], &[2, 2]).unwrap();
        let total = l.mul(&w).unwrap().sum_all().unwrap();
        let fused = crate::grad(
            std::slice::from_ref(&total),
            &[],
            std::slice::from_ref(&x),
            false,
        )
        .unwrap();
        let recorded = crate::grad(&[total], &[], std::slice::from_ref(&x), true).unwrap();
        let (f, r) = (fused[0].as_ref().unwrap(), recorded[0].as_ref().unwrap());
        for (a, b) in f.to_vec_f64().iter().zip(r.to_vec_f64()) {
            assert!((a - b).abs() < 1e-12, "fused {a} vs recorded {b}");
        }
        assert!(softmax_cross_entropy(&x, 1, &[3, 0, 0, 0]).is_err());
        assert!(softmax_cross_entropy(&x, 1, &[0, 0]).is_err());
        assert!(softmax_cross_entropy(&x, 3, &targets).is_err());
    }
    use crate::autodiff::grad;

    fn t(data: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(data, shape).unwrap()
    }

    fn close(got: f64, want: f64) {
        assert!(
            (got - want).abs() < 1e-12 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }

    #[test]
    fn bce_matches_hand_values_and_clamps() {
        let p = t(&[0.9, 0.2, 0.0, 1.0], &[4]).requires_grad_(true).unwrap();
        let y = t(&[1.0, 0.0, 1.0, 1.0], &[4]);
        let l = bce(&p, &y, Reduction::Mean).unwrap();
        close(l.item().unwrap(), 25.082126016743008);
        close(
            bce(&p, &y, Reduction::Sum).unwrap().item().unwrap(),
            100.0 + 0.10536051565782628 + 0.2231435513142097,
        );
        let per = bce(&p, &y, Reduction::None).unwrap().to_vec_f64();
        close(per[2], 100.0);
        close(per[3], 0.0);
        l.backward().unwrap();
        let g = p.grad().unwrap().to_vec_f64();
        // d/dp: -t/p + (1 - t)/(1 - p), over 4
        close(g[0], -1.0 / 0.9 / 4.0);
        close(g[1], 1.0 / 0.8 / 4.0);
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
        let e = bce(&t(&[1.5], &[1]), &t(&[1.0], &[1]), Reduction::Mean)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bce") && e.contains("1.5"), "{e}");
        assert!(bce(
            &t(&[0.5, 0.5], &[2]),
            &t(&[1.0, 1.0], &[2, 1]),
            Reduction::Mean
        )
        .is_err());
    }

    #[test]
    fn bce_with_logits_matches_hand_values() {
        let x = t(&[0.0, 2.0, -3.0], &[3]).requires_grad_(true).unwrap();
        let y = t(&[1.0, 0.0, 0.5], &[3]);
        let l = bce_with_logits(&x, &y, Reduction::Mean).unwrap();
        close(l.item().unwrap(), 1.4562208477255532);
        let per = bce_with_logits(&x, &y, Reduction::None)
            .unwrap()
            .to_vec_f64();
        close(per[0], std::f64::consts::LN_2);
        close(per[1], 2.1269280110429727);
        close(per[2], 1.548587351573742);
        // dl/dx = (sigmoid(x) - t) / n, right at x = 0 as well
        let g = grad(&[l], &[], std::slice::from_ref(&x), true).unwrap()[0]
            .clone()
            .unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let gv = g.to_vec_f64();
        close(gv[0], (0.5 - 1.0) / 3.0);
        close(gv[1], sig(2.0) / 3.0);
        close(gv[2], (sig(-3.0) - 0.5) / 3.0);
        // second derivative: sigmoid'(x) / n
        let gg = grad(
            &[g.sum_all().unwrap()],
            &[],
            std::slice::from_ref(&x),
            false,
        )
        .unwrap()[0]
            .clone()
            .unwrap()
            .to_vec_f64();
        for (v, xv) in gg.iter().zip([0.0, 2.0, -3.0]) {
            close(*v, sig(xv) * (1.0 - sig(xv)) / 3.0);
        }
        // saturated logits stay finite
        let big = t(&[800.0, -800.0], &[2]);
        let l = bce_with_logits(&big, &t(&[0.0, 1.0], &[2]), Reduction::Sum).unwrap();
        close(l.item().unwrap(), 1600.0);
    }

    #[test]
    fn regression_losses() {
        let a = t(&[1.0, 2.0, 3.0], &[3]).requires_grad_(true).unwrap();
        let b = t(&[1.0, 0.0, 5.0], &[3]);
        close(
            mse(&a, &b, Reduction::Mean).unwrap().item().unwrap(),
            8.0 / 3.0,
        );
        close(mse(&a, &b, Reduction::Sum).unwrap().item().unwrap(), 8.0);
        close(
            l1(&a, &b, Reduction::Mean).unwrap().item().unwrap(),
            4.0 / 3.0,
        );
        assert_eq!(
            l1(&a, &b, Reduction::None).unwrap().to_vec_f64(),
            vec![0.0, 2.0, 2.0]
        );
        mse(&a, &b, Reduction::Mean).unwrap().backward().unwrap();
        assert_eq!(
            a.grad().unwrap().to_vec_f64(),
            vec![0.0, 4.0 / 3.0, -4.0 / 3.0]
        );
        let e = mse(&a, &t(&[1.0, 2.0, 3.0], &[3, 1]), Reduction::Mean)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mse") && e.contains("[3]") && e.contains("[3, 1]"),
            "{e}"
        );
    }

    #[test]
    fn cross_entropy_matches_hand_values() {
        let x = t(&[1.0, 2.0, 3.0, 1.0, 1.0, 1.0], &[2, 3])
            .requires_grad_(true)
            .unwrap();
        let l = cross_entropy(&x, &[2, 0], Reduction::Mean).unwrap();
        close(l.item().unwrap(), 0.7531091265562451);
        let per = cross_entropy(&x, &[2, 0], Reduction::None).unwrap();
        assert_eq!(per.shape(), &[2]);
        close(per.to_vec_f64()[1], 3f64.ln());
        l.backward().unwrap();
        // dl/dx = (softmax(x) - onehot(t)) / N
        let g = x.grad().unwrap().to_vec_f64();
        close(g[3], (1.0 / 3.0 - 1.0) / 2.0);
        close(g[4], (1.0 / 3.0) / 2.0);
        assert!(cross_entropy(&x, &[3, 0], Reduction::Mean).is_err());
        assert!(cross_entropy(&x, &[0], Reduction::Mean).is_err());
        assert!(cross_entropy(&t(&[1.0], &[1]), &[0], Reduction::Mean).is_err());
    }

    #[test]
    fn gaussian_kl_matches_hand_values() {
        let mu = t(&[0.0, 1.0, 2.0, 0.0], &[2, 2])
            .requires_grad_(true)
            .unwrap();
        let logvar = t(&[0.0, 2f64.ln(), 0.0, 0.0], &[2, 2])
            .requires_grad_(true)
            .unwrap();
        let row0 = 1.0 - 2f64.ln() / 2.0;
        let per = gaussian_kl(&mu, &logvar, Reduction::None).unwrap();
        assert_eq!(per.shape(), &[2]);
        close(per.to_vec_f64()[0], row0);
        close(per.to_vec_f64()[1], 2.0);
        close(
            gaussian_kl(&mu, &logvar, Reduction::Sum)
                .unwrap()
                .item()
                .unwrap(),
            row0 + 2.0,
        );
        let l = gaussian_kl(&mu, &logvar, Reduction::Mean).unwrap();
        close(l.item().unwrap(), (row0 + 2.0) / 2.0);
        l.backward().unwrap();
        // dKL/dmu = mu / N, dKL/dlogvar = (e^logvar - 1) / 2 / N
        assert_eq!(mu.grad().unwrap().to_vec_f64(), vec![0.0, 0.5, 1.0, 0.0]);
        let gl = logvar.grad().unwrap().to_vec_f64();
        close(gl[1], (2.0 - 1.0) / 2.0 / 2.0);
        close(gl[0], 0.0);
        assert!(gaussian_kl(&t(&[1.0], &[]), &t(&[1.0], &[]), Reduction::Mean).is_err());
        // a single latent vector: the KL is a scalar whatever the reduction
        let one = gaussian_kl(
            &t(&[2.0, 0.0], &[2]),
            &t(&[0.0, 0.0], &[2]),
            Reduction::Mean,
        )
        .unwrap();
        assert_eq!(one.shape(), &[] as &[usize]);
        close(one.item().unwrap(), 2.0);
    }
}
