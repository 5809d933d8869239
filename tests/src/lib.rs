//! The gradient-check harness: analytic gradients from the engine against central finite
//! differences, everything in f64.
//!
//! For an op `f` and inputs `x`, we pick a fixed random upstream gradient `w` and check the
//! scalar `L(x) = sum(f(x) * w)`:
//!
//! ```text
//!   dL/dx_j (engine)  ~=  (L(x + h e_j) - L(x - h e_j)) / 2h      for every element j
//! ```
//!
//! accepted when `|analytic - numeric| <= abs + rel * max(|analytic|, |numeric|)`. Second-order
//! checks reuse the same harness on the function `x -> sum(grad_x L(x) * v)`, whose own
//! gradient the engine can only get right if the backward rules are themselves differentiable.

use autograd::{grad, no_grad, Device, Result as EngineResult, Tensor};

/// One input: row-major values and a shape.
#[derive(Clone, Debug)]
pub struct Input {
    pub data: Vec<f64>,
    pub shape: Vec<usize>,
}

impl Input {
    pub fn new(data: Vec<f64>, shape: &[usize]) -> Input {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "test bug: data does not fill {shape:?}"
        );
        Input {
            data,
            shape: shape.to_vec(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub rel: f64,
    pub abs: f64,
    /// Finite-difference step.
    pub step: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            rel: 1e-5,
            abs: 1e-7,
            step: 1e-6,
        }
    }
}

/// Deterministic pseudo-random values in [-1, 1) (an LCG), for upstream gradients.
pub fn fixed_weights(n: usize, salt: u64) -> Vec<f64> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// The device the checks run on: the CPU, or the one `GRADCHECK_DEVICE` names (`cpu`,
/// `cuda-emulated`, `cuda`). CI runs the convolution and LSTM checks a second time on the
/// emulated CUDA device this way. Each check makes it the default device, which is
/// process-wide: run such a pass with `--test-threads=1`, so that a test outside the harness
/// makes all its tensors on one device.
pub fn check_device() -> Device {
    match std::env::var("GRADCHECK_DEVICE").as_deref() {
        Err(_) | Ok("cpu") => Device::Cpu,
        Ok("cuda-emulated") => Device::EmulatedCuda,
        Ok("cuda") => Device::Cuda(0),
        Ok(other) => panic!("GRADCHECK_DEVICE={other}: expected cpu, cuda-emulated or cuda"),
    }
}

fn leaves(inputs: &[Input]) -> Vec<Tensor> {
    autograd::set_default_device(check_device());
    inputs
        .iter()
        .map(|i| {
            Tensor::from_slice(&i.data, &i.shape)
                .and_then(|t| t.requires_grad_(true))
                .expect("valid input")
        })
        .collect()
}

/// L(x) = sum(f(x) * w) for the weights `w` matched to f's output.
fn weighted_sum(out: &Tensor, salt: u64) -> EngineResult<Tensor> {
    let w = Tensor::from_vec(fixed_weights(out.numel(), salt), out.shape())?;
    out.mul(&w)?.sum_all()
}

/// Checks every input's gradient of `f` against central finite differences.
/// Returns a description of the first mismatch (or engine error) as `Err`.
pub fn gradcheck<F>(f: F, inputs: &[Input], tol: Tolerance) -> std::result::Result<(), String>
where
    F: Fn(&[Tensor]) -> EngineResult<Tensor>,
{
    let xs = leaves(inputs);
    let out = f(&xs).map_err(|e| format!("forward failed: {e}"))?;
    if out.dtype() != autograd::DType::F64 {
        return Err("gradcheck runs in f64; the op returned another dtype".into());
    }
    if out.device() != check_device() {
        return Err(format!(
            "the checks run on {}, the op's output is on {}",
            check_device(),
            out.device()
        ));
    }
    let salt = out.numel() as u64;
    let loss = weighted_sum(&out, salt).map_err(|e| e.to_string())?;
    let analytic = if loss.requires_grad() {
        grad(&[loss], &[], &xs, false).map_err(|e| format!("backward failed: {e}"))?
    } else {
        vec![None; xs.len()]
    };
    let eval = |perturbed: &[Input]| -> std::result::Result<f64, String> {
        no_grad(|| {
            let out = f(&leaves(perturbed))?;
            weighted_sum(&out, salt)?.item()
        })
        .map_err(|e| e.to_string())
    };
    for (i, input) in inputs.iter().enumerate() {
        let a = match &analytic[i] {
            Some(g) => {
                if g.shape() != input.shape.as_slice() {
                    return Err(format!(
                        "input {i}: gradient shape {:?} differs from input shape {:?}",
                        g.shape(),
                        input.shape
                    ));
                }
                g.to_vec_f64()
            }
            None => vec![0.0; input.data.len()],
        };
        for (j, (&x_j, &a_j)) in input.data.iter().zip(&a).enumerate() {
            let mut plus = inputs.to_vec();
            let mut minus = inputs.to_vec();
            let h = tol.step * x_j.abs().max(1.0);
            plus[i].data[j] += h;
            minus[i].data[j] -= h;
            let numeric = (eval(&plus)? - eval(&minus)?) / (2.0 * h);
            let bound = tol.abs + tol.rel * a_j.abs().max(numeric.abs());
            if (a_j - numeric).abs() > bound || !a_j.is_finite() {
                return Err(format!(
                    "input {i} {:?}, element {j}: analytic {:.10e} vs numeric {:.10e} (|diff| {:.3e} > {:.3e})",
                    input.shape,
                    a_j,
                    numeric,
                    (a_j - numeric).abs(),
                    bound
                ));
            }
        }
    }
    Ok(())
}

/// Checks the gradient of the gradient: the function x -> sum_i <grad_{x_i} L(x), v_i> (with
/// fixed random v) goes through the harness, so its analytic gradient (a second derivative of
/// f, computed by differentiating the recorded backward pass) meets finite differences.
pub fn gradgradcheck<F>(f: F, inputs: &[Input], tol: Tolerance) -> std::result::Result<(), String>
where
    F: Fn(&[Tensor]) -> EngineResult<Tensor>,
{
    let grad_dot_v = |xs: &[Tensor]| -> EngineResult<Tensor> {
        // the finite-difference evaluations run under no-grad; this function needs the graph
        let _recording = autograd::GradModeGuard::set(true);
        let out = f(xs)?;
        let loss = weighted_sum(&out, out.numel() as u64)?;
        let grads = grad(&[loss], &[], xs, true)?;
        let mut total = Tensor::scalar(0.0, autograd::DType::F64);
        for (k, g) in grads.into_iter().enumerate() {
            if let Some(g) = g {
                let v = Tensor::from_vec(fixed_weights(g.numel(), 1000 + k as u64), g.shape())?;
                total = total.add(&g.mul(&v)?.sum_all()?)?;
            }
        }
        Ok(total)
    };
    gradcheck(grad_dot_v, inputs, tol)
}

/// The number of proptest cases per op: 32 unless PROPTEST_CASES says otherwise.
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

pub mod strategies;
