//! The gradient checker must be able to fail: a test-only op computes x^2 forward, and its
//! backward is deliberately wrong (x instead of 2x). The harness rejects it, and accepts the
//! same op with the right rule, so the checks elsewhere mean something.

use autograd::{no_grad, CustomBackward, Result, Tensor};
use std::sync::Arc;
use tests::{gradcheck, gradgradcheck, Input, Tolerance};

struct Square {
    wrong: bool,
}

impl CustomBackward for Square {
    fn name(&self) -> &'static str {
        if self.wrong {
            "square_with_wrong_backward"
        } else {
            "square"
        }
    }
    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let factor = if self.wrong { 1.0 } else { 2.0 };
        Ok(vec![grad.mul(&inputs[0].mul_scalar(factor)?)?])
    }
}

fn square(x: &Tensor, wrong: bool) -> Result<Tensor> {
    let value = no_grad(|| x.mul(x))?;
    Ok(Tensor::from_custom_op(
        &value,
        vec![x.clone()],
        Arc::new(Square { wrong }),
    ))
}

fn input() -> Input {
    Input::new(vec![0.5, -1.25, 2.0, 0.75, -0.3, 1.1], &[2, 3])
}

#[test]
fn harness_rejects_a_wrong_backward() {
    let r = gradcheck(|xs| square(&xs[0], true), &[input()], Tolerance::default());
    let msg = r.expect_err("a backward off by a factor of 2 must fail the check");
    assert!(msg.contains("analytic") && msg.contains("numeric"), "{msg}");
}

#[test]
fn harness_accepts_the_right_backward() {
    assert_eq!(
        gradcheck(|xs| square(&xs[0], false), &[input()], Tolerance::default()),
        Ok(())
    );
}

#[test]
fn harness_rejects_a_wrong_second_derivative() {
    // first derivative right, but the rule is not differentiable in the right way:
    // it detaches x, so d/dx (g * 2x) loses its 2g term
    struct DetachedSquare;
    impl CustomBackward for DetachedSquare {
        fn name(&self) -> &'static str {
            "square_with_detached_backward"
        }
        fn backward(
            &self,
            inputs: &[Tensor],
            _output: &Tensor,
            grad: &Tensor,
        ) -> Result<Vec<Tensor>> {
            Ok(vec![grad.mul(&inputs[0].detach().mul_scalar(2.0)?)?])
        }
    }
    let f = |xs: &[Tensor]| -> Result<Tensor> {
        let value = no_grad(|| xs[0].mul(&xs[0]))?;
        Ok(Tensor::from_custom_op(
            &value,
            vec![xs[0].clone()],
            Arc::new(DetachedSquare),
        ))
    };
    assert_eq!(gradcheck(f, &[input()], Tolerance::default()), Ok(()));
    assert!(gradgradcheck(f, &[input()], Tolerance::default()).is_err());
    assert_eq!(
        gradgradcheck(|xs| square(&xs[0], false), &[input()], Tolerance::default()),
        Ok(())
    );
}
