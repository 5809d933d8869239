//! Writing a new op with a custom backward, and checking it against finite differences.
//!
//! ```text
//! cargo run --release --example gradcheck
//! ```
//!
//! The op is softplus, y = log(1 + e^x), dy/dx = sigmoid(x). Its forward is computed outside
//! the graph and wrapped with `Tensor::from_custom_op`; its backward is a `CustomBackward`
//! written in Tensor ops, so that the engine can differentiate the backward itself (second
//! derivatives, via `create_graph`). The harness (`tests::gradcheck`, `tests::gradgradcheck`,
//! f64) accepts the right rule, and rejects two broken ones: a wrong first derivative, and a
//! right first derivative that detaches its input, so its second derivative is lost. The
//! program exits non-zero if the harness accepts a broken rule or rejects the right one.

use autograd::{no_grad, CustomBackward, Result, Tensor};
use std::sync::Arc;
use tests::{gradcheck, gradgradcheck, Input, Tolerance};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Right,
    /// sigmoid of the output instead of the input: an easy slip, off everywhere
    WrongFirst,
    /// sigmoid(x.detach()): right values, but the backward is a constant to the engine
    Detached,
}

struct Softplus(Rule);

impl CustomBackward for Softplus {
    fn name(&self) -> &'static str {
        "my_softplus"
    }
    // dL/dx = dL/dy * sigmoid(x); `inputs` are the op's inputs, `output` its value y
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let x = &inputs[0];
        let slope = match self.0 {
            Rule::Right => x.sigmoid()?,
            Rule::WrongFirst => output.sigmoid()?,
            Rule::Detached => x.detach().sigmoid()?,
        };
        Ok(vec![grad.mul(&slope)?])
    }
}

fn softplus(x: &Tensor, rule: Rule) -> Result<Tensor> {
    // the value, computed without recording; the op's only graph edge is the custom one
    let value = no_grad(|| x.exp()?.add_scalar(1.0)?.log())?;
    Ok(Tensor::from_custom_op(
        &value,
        vec![x.clone()],
        Arc::new(Softplus(rule)),
    ))
}

fn main() -> std::result::Result<(), String> {
    let input = Input::new(vec![0.5, -1.25, 2.0, 0.75, -0.3, 1.1], &[2, 3]);
    let tol = Tolerance::default();
    let mut failures = Vec::new();
    for rule in [Rule::Right, Rule::WrongFirst, Rule::Detached] {
        let f = |xs: &[Tensor]| softplus(&xs[0], rule);
        let first = gradcheck(f, std::slice::from_ref(&input), tol);
        let second = gradgradcheck(f, std::slice::from_ref(&input), tol);
        let show = |r: &std::result::Result<(), String>| match r {
            Ok(()) => "accepted".to_string(),
            Err(msg) => format!("REJECTED: {msg}"),
        };
        println!("{rule:?}\n  gradcheck:     {}", show(&first));
        println!("  gradgradcheck: {}", show(&second));
        // what the harness must say about each rule
        let expected = match rule {
            Rule::Right => (true, true),
            Rule::WrongFirst => (false, false),
            Rule::Detached => (true, false),
        };
        if (first.is_ok(), second.is_ok()) != expected {
            failures.push(format!(
                "{rule:?}: gradcheck ok = {}, gradgradcheck ok = {}, expected {expected:?}",
                first.is_ok(),
                second.is_ok()
            ));
        }
    }
    if failures.is_empty() {
        println!("the harness accepts the right rule and rejects both broken ones");
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
