//! One LSTM step written out with Tensor ops, beside the engine's fused cell
//! (`autograd::nn::LstmCell`, whose pointwise part is one kernel forward and one backward).
//!
//! ```text
//! cargo run --release --example lstm_by_hand
//! ```
//!
//! Same weights, same inputs: the new state (h', c') and the gradients of a loss with respect
//! to the inputs x, h, c and the four parameters must agree to f64 rounding (1e-12), or the
//! program exits non-zero. It also prints how many ops each graph of h' records.

use autograd::nn::LstmCell;
use autograd::{grad, DType, Rng, Tensor};
use std::error::Error;

/// The textbook step, PyTorch's gate order i, f, g, o along the 4H axis:
///   a = x W_ih^T + b_ih + h W_hh^T + b_hh,  split as [a_i | a_f | a_g | a_o]
///   c' = sigmoid(a_f) c + sigmoid(a_i) tanh(a_g),   h' = sigmoid(a_o) tanh(c')
fn step_by_hand(
    cell: &LstmCell,
    x: &Tensor,
    h: &Tensor,
    c: &Tensor,
) -> autograd::Result<(Tensor, Tensor)> {
    let hs = cell.hidden_size();
    let (b_ih, b_hh) = (cell.bias_ih.as_ref(), cell.bias_hh.as_ref());
    let a = x
        .matmul(&cell.weight_ih.t()?)?
        .add(b_ih.expect("cell has biases"))?
        .add(&h.matmul(&cell.weight_hh.t()?)?)?
        .add(b_hh.expect("cell has biases"))?;
    let gate = |k: usize| a.narrow(1, k * hs, hs); // the k-th block of H columns
    let (i, f) = (gate(0)?.sigmoid()?, gate(1)?.sigmoid()?);
    let (g, o) = (gate(2)?.tanh()?, gate(3)?.sigmoid()?);
    let c_new = f.mul(c)?.add(&i.mul(&g)?)?;
    let h_new = o.mul(&c_new.tanh()?)?;
    Ok((h_new, c_new))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn main() -> Result<(), Box<dyn Error>> {
    let (batch, input, hidden) = (3, 5, 4);
    let mut rng = Rng::new(0);
    let cell = LstmCell::new(input, hidden, true, DType::F64, &mut rng)?;
    let leaf =
        |shape: &[usize], rng: &mut Rng| Tensor::randn(shape, DType::F64, rng).requires_grad_(true);
    let x = leaf(&[batch, input], &mut rng)?;
    let h = leaf(&[batch, hidden], &mut rng)?;
    let c = leaf(&[batch, hidden], &mut rng)?;
    // fixed random upstream gradients for h' and c': loss = sum(h' w_h) + sum(c' w_c)
    let w_h = Tensor::randn(&[batch, hidden], DType::F64, &mut rng);
    let w_c = Tensor::randn(&[batch, hidden], DType::F64, &mut rng);

    let (h_hand, c_hand) = step_by_hand(&cell, &x, &h, &c)?;
    let (h_fused, c_fused) = cell.forward(&x, (&h, &c))?;

    // every tensor the step depends on; grad() returns the loss's gradient for each
    let mut wrt = vec![("x", x.clone()), ("h", h.clone()), ("c", c.clone())];
    wrt.extend([
        ("weight_ih", cell.weight_ih.clone()),
        ("weight_hh", cell.weight_hh.clone()),
        ("bias_ih", cell.bias_ih.clone().ok_or("no bias")?),
        ("bias_hh", cell.bias_hh.clone().ok_or("no bias")?),
    ]);
    let tensors: Vec<Tensor> = wrt.iter().map(|(_, t)| t.clone()).collect();
    let grads = |h1: &Tensor, c1: &Tensor| -> autograd::Result<Vec<Option<Tensor>>> {
        let loss = h1.mul(&w_h)?.sum_all()?.add(&c1.mul(&w_c)?.sum_all()?)?;
        grad(&[loss], &[], &tensors, false)
    };
    let (g_hand, g_fused) = (grads(&h_hand, &c_hand)?, grads(&h_fused, &c_fused)?);

    let mut compared = vec![
        ("h'", max_diff(&h_hand, &h_fused)),
        ("c'", max_diff(&c_hand, &c_fused)),
    ];
    for ((name, _), (a, b)) in wrt.iter().zip(g_hand.iter().zip(&g_fused)) {
        let (a, b) = (
            a.as_ref().ok_or("no gradient")?,
            b.as_ref().ok_or("no gradient")?,
        );
        compared.push((name, max_diff(a, b)));
    }
    let mut failed = false;
    for (name, d) in &compared {
        let ok = *d <= 1e-12;
        failed |= !ok;
        println!(
            "{:<12} max |by hand - fused| = {d:.2e} {}",
            name,
            if ok { "ok" } else { "MISMATCH" }
        );
    }
    println!("h' by hand: {:.6?}", &h_hand.to_vec_f64()[..hidden]);
    println!("h' fused:   {:.6?}", &h_fused.to_vec_f64()[..hidden]);
    // op nodes in the DOT export are the ellipses
    let ops = |t: &Tensor| t.to_dot().matches("shape=ellipse").count();
    println!(
        "ops recorded for h': by hand {}, fused {}",
        ops(&h_hand),
        ops(&h_fused)
    );
    if failed {
        return Err("the hand-written step and the fused cell disagree".into());
    }
    Ok(())
}
