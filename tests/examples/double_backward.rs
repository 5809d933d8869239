//! Differentiating a gradient: with `create_graph = true`, `autograd::grad` records the backward
//! pass as ops, so its result can be differentiated again.
//!
//! ```text
//! cargo run --release --example double_backward
//! ```
//!
//! 1. A Hessian-vector product H v = grad_x <grad_x f(x), v> for f(x) = sum(x^3) + (sum x)^2,
//!    whose Hessian is diag(6x) + 2 * ones: checked against the closed form to 1e-12.
//! 2. The WGAN-GP gradient penalty (||grad_x C(x_hat)|| - 1)^2, whose gradient with respect to
//!    the critic's weights goes through the critic's backward pass: checked against central
//!    finite differences in f64.
//!
//! Exits non-zero when either check fails.

use autograd::{grad, Conv2dOptions, DType, Rng, Tensor};
use std::error::Error;

type Res<T> = Result<T, Box<dyn Error>>;

fn hessian_vector_product() -> Res<()> {
    let (xv, vv) = ([0.5, -1.0, 2.0, 0.3], [1.0, 0.5, -2.0, 0.25]);
    let x = Tensor::from_slice(&xv, &[4])?.requires_grad_(true)?;
    let v = Tensor::from_slice(&vv, &[4])?;
    let f = x.powf(3.0)?.sum_all()?.add(&x.sum_all()?.square()?)?;
    // first backward, recorded: g is a function of x the engine can differentiate
    let g = grad(&[f], &[], std::slice::from_ref(&x), true)?[0]
        .clone()
        .ok_or("f does not depend on x")?;
    // second backward of the scalar <g, v>: its gradient is H v
    let hv = grad(&[g.mul(&v)?.sum_all()?], &[], &[x], false)?[0]
        .clone()
        .ok_or("g does not depend on x")?
        .to_vec_f64();
    // closed form: H = diag(6 x) + 2 * 1 1^T, so H v = 6 x * v + 2 sum(v)
    let sum_v: f64 = vv.iter().sum();
    let expected: Vec<f64> = xv
        .iter()
        .zip(&vv)
        .map(|(x, v)| 6.0 * x * v + 2.0 * sum_v)
        .collect();
    println!("H v: engine {hv:?}\n     closed form {expected:?}");
    for (a, b) in hv.iter().zip(&expected) {
        if (a - b).abs() > 1e-12 {
            return Err(format!("H v differs from the closed form: {a} vs {b}").into());
        }
    }
    Ok(())
}

/// The critic C(x) = Linear(leaky_relu(conv3x3(x), 0.2)) on [N, 1, 4, 4] images, and the
/// penalty mean_n (||grad_x C(x_hat)_n|| - 1)^2 with x_hat = e real + (1 - e) fake.
/// `p` = [conv weight [2, 1, 3, 3], conv bias [2], linear weight [1, 8], linear bias [1]].
fn penalty(p: &[Tensor], real: &Tensor, fake: &Tensor, e: &Tensor) -> autograd::Result<Tensor> {
    let x_hat = e
        .mul(real)?
        .add(&e.one_minus()?.mul(fake)?)?
        .requires_grad_(true)?;
    let h = x_hat
        .conv2d(&p[0], Some(&p[1]), &Conv2dOptions::default())?
        .leaky_relu(0.2)?;
    let score = h
        .flatten_from(1)?
        .matmul(&p[2].t()?)?
        .add(&p[3])?
        .sum_all()?;
    // create_graph: the gradient stays a function of the weights, so the penalty's backward
    // reaches them through the critic's backward pass
    let g = grad(&[score], &[], std::slice::from_ref(&x_hat), true)?[0].clone();
    let g = g.ok_or_else(|| autograd::Error::grad("penalty", "score ignores its input"))?;
    let n = g.shape()[0];
    let norm = g
        .reshape(&[n, g.numel() / n])?
        .square()?
        .sum(&[1], false)?
        .add_scalar(1e-12)?
        .sqrt()?;
    norm.add_scalar(-1.0)?.square()?.mean_all()
}

fn wgan_gp_penalty_gradient() -> Res<()> {
    let mut rng = Rng::new(7);
    let shapes: [&[usize]; 4] = [&[2, 1, 3, 3], &[2], &[1, 8], &[1]];
    let values: Vec<Vec<f64>> = shapes
        .iter()
        .map(|s| {
            Tensor::randn(s, DType::F64, &mut rng)
                .mul_scalar(0.5)
                .map(|t| t.to_vec_f64())
        })
        .collect::<autograd::Result<_>>()?;
    let real = Tensor::randn(&[3, 1, 4, 4], DType::F64, &mut rng);
    let fake = Tensor::randn(&[3, 1, 4, 4], DType::F64, &mut rng);
    let e = Tensor::rand(&[3, 1, 1, 1], DType::F64, &mut rng);
    let leaves = |vals: &[Vec<f64>]| -> autograd::Result<Vec<Tensor>> {
        vals.iter()
            .zip(shapes)
            .map(|(v, s)| Tensor::from_slice(v, s)?.requires_grad_(true))
            .collect()
    };

    let p = leaves(&values)?;
    let gp = penalty(&p, &real, &fake, &e)?;
    let analytic = grad(std::slice::from_ref(&gp), &[], &p, false)?;
    println!("WGAN-GP penalty {:.6}", gp.item()?);

    // central differences, weight by weight: (P(w + h) - P(w - h)) / 2h
    let h = 1e-6;
    let mut worst = 0.0f64;
    for (k, a) in analytic.iter().enumerate() {
        // None: the penalty does not depend on that weight (the linear bias shifts the score,
        // not its gradient); its derivative is 0, which the finite differences confirm
        let a = a
            .as_ref()
            .map_or(vec![0.0; values[k].len()], |g| g.to_vec_f64());
        for j in 0..values[k].len() {
            let at = |delta: f64| -> Res<f64> {
                let mut vals = values.clone();
                vals[k][j] += delta;
                Ok(penalty(&leaves(&vals)?, &real, &fake, &e)?.item()?)
            };
            let numeric = (at(h)? - at(-h)?) / (2.0 * h);
            let err = (a[j] - numeric).abs() / a[j].abs().max(numeric.abs()).max(1.0);
            worst = worst.max(err);
            if err > 1e-6 {
                return Err(
                    format!("weight {k}[{j}]: autograd {} vs numeric {numeric}", a[j]).into(),
                );
            }
        }
    }
    let count: usize = values.iter().map(Vec::len).sum();
    println!("dP/dweights: {count} weights, worst relative difference from finite differences {worst:.2e}");
    Ok(())
}

fn main() -> Res<()> {
    hessian_vector_product()?;
    wgan_gp_penalty_gradient()
}
