//! The engine's basic promises, checked on hand-computed cases.

use autograd::{grad, no_grad, DType, Tensor};

fn t(data: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape).unwrap()
}

fn var(data: &[f64], shape: &[usize]) -> Tensor {
    t(data, shape).requires_grad_(true).unwrap()
}

#[test]
fn gradients_accumulate_over_every_use() {
    // y = x * x + x  ->  dy/dx = 2x + 1
    let x = var(&[3.0], &[1]);
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64(), vec![7.0]);
    // a second backward adds to the stored gradient, as in PyTorch
    let y = x.mul_scalar(2.0).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64(), vec![9.0]);
}

#[test]
fn broadcasting_gradients_sum_back_to_the_input_shape() {
    let a = var(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = var(&[10.0, 20.0, 30.0], &[3]);
    let y = a.mul(&b).unwrap().sum_all().unwrap();
    y.backward().unwrap();
    assert_eq!(b.grad().unwrap().to_vec_f64(), vec![5.0, 7.0, 9.0]);
    assert_eq!(
        a.grad().unwrap().to_vec_f64(),
        vec![10.0, 20.0, 30.0, 10.0, 20.0, 30.0]
    );
}

#[test]
fn backward_from_a_tensor_with_an_upstream_gradient() {
    let x = var(&[1.0, 2.0], &[2]);
    let y = x.mul_scalar(3.0).unwrap();
    assert!(
        y.backward().is_err(),
        "non-scalar backward needs a gradient"
    );
    y.backward_with(&t(&[1.0, 10.0], &[2])).unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64(), vec![3.0, 30.0]);
}

#[test]
fn no_grad_and_detach_cut_the_graph() {
    let x = var(&[2.0], &[1]);
    let y = no_grad(|| x.mul(&x).unwrap());
    assert!(!y.requires_grad());
    let z = x.detach().mul(&x).unwrap().sum_all().unwrap();
    z.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64(), vec![2.0]);
}

#[test]
fn gradient_of_a_gradient() {
    // y = x^3: dy/dx = 3x^2, d2y/dx2 = 6x
    let x = var(&[2.0], &[1]);
    let y = x.powf(3.0).unwrap().sum_all().unwrap();
    let g = grad(&[y], &[], std::slice::from_ref(&x), true).unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(g.to_vec_f64(), vec![12.0]);
    let gg = grad(
        &[g.sum_all().unwrap()],
        &[],
        std::slice::from_ref(&x),
        false,
    )
    .unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(gg.to_vec_f64(), vec![12.0]);
}

#[test]
fn views_share_storage_and_route_gradients() {
    let x = var(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let v = x.t().unwrap().narrow(0, 1, 2).unwrap(); // [[2,5],[3,6]]
    assert_eq!(v.to_vec_f64(), vec![2.0, 5.0, 3.0, 6.0]);
    v.mul(&t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec_f64(),
        vec![0.0, 1.0, 3.0, 0.0, 2.0, 4.0]
    );
}

#[test]
fn errors_name_the_op_and_shapes() {
    let a = Tensor::zeros(&[2, 3], DType::F32);
    let b = Tensor::zeros(&[4, 5], DType::F32);
    let e = a.matmul(&b).unwrap_err().to_string();
    assert!(
        e.contains("matmul") && e.contains("[2, 3]") && e.contains("[4, 5]"),
        "{e}"
    );
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("add") && e.contains("[2, 3]"), "{e}");
    assert!(a.reshape(&[7]).is_err());
    assert!(a.narrow(1, 2, 5).is_err());
    assert!(a.index_select(0, &[5]).is_err());
    assert!(a.add(&Tensor::zeros(&[2, 3], DType::F64)).is_err());
}

#[test]
fn dot_export_names_ops_and_shapes() {
    let w = var(&[1.0, 2.0], &[2, 1]);
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let y = x.matmul(&w).unwrap().sigmoid().unwrap().sum_all().unwrap();
    let dot = autograd::dot::to_dot(&y, &[("fc.weight".to_string(), w.clone())]);
    for needle in ["digraph", "matmul", "sigmoid", "sum", "fc.weight", "[2, 1]"] {
        assert!(dot.contains(needle), "missing {needle} in\n{dot}");
    }
}

#[test]
fn deep_chains_do_not_overflow_the_stack() {
    let x = var(&[1.0], &[1]);
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.mul_scalar(1.0).unwrap();
    }
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec_f64(), vec![1.0]);
    drop(y);
}

/// Counts how often its backward runs; the value passes through unchanged.
struct CountedIdentity(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl autograd::CustomBackward for CountedIdentity {
    fn name(&self) -> &'static str {
        "counted_identity"
    }
    fn backward(
        &self,
        _inputs: &[Tensor],
        _output: &Tensor,
        grad: &Tensor,
    ) -> autograd::Result<Vec<Tensor>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(vec![grad.clone()])
    }
}

#[test]
fn backward_into_fills_only_the_named_leaves_and_skips_the_rest_of_the_graph() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // loss = sum(a * counted(b)): a's gradient needs b's value, not b's branch's backward
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let build = |a: &Tensor, b: &Tensor| {
        let value = no_grad(|| b.mul_scalar(1.0)).unwrap();
        let counted = Tensor::from_custom_op(
            &value,
            vec![b.clone()],
            std::sync::Arc::new(CountedIdentity(calls.clone())),
        );
        a.mul(&counted).unwrap().sum_all().unwrap()
    };
    let (a, b) = (var(&[1.0, 2.0], &[2]), var(&[3.0, 5.0], &[2]));
    build(&a, &b)
        .backward_into(std::slice::from_ref(&a))
        .unwrap();
    assert_eq!(a.grad().unwrap().to_vec_f64(), vec![3.0, 5.0]);
    assert!(b.grad().is_none(), "b was not asked for");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "b's branch was differentiated"
    );
    // the full backward still walks it, and backward_into(a) gives a the same gradient
    let (a2, b2) = (var(&[1.0, 2.0], &[2]), var(&[3.0, 5.0], &[2]));
    build(&a2, &b2).backward().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        a2.grad().unwrap().to_vec_f64(),
        a.grad().unwrap().to_vec_f64()
    );
    assert_eq!(b2.grad().unwrap().to_vec_f64(), vec![1.0, 2.0]);
    // grad() prunes the same way
    let (a3, b3) = (var(&[1.0, 2.0], &[2]), var(&[3.0, 5.0], &[2]));
    let got = grad(&[build(&a3, &b3)], &[], std::slice::from_ref(&a3), false).unwrap();
    assert_eq!(got[0].as_ref().unwrap().to_vec_f64(), vec![3.0, 5.0]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "grad() differentiated b's branch"
    );
}
