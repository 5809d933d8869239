//! The benchmark contract (`benches/shapes.json`) and the cases that time it. The criterion
//! benchmarks and the JSON-lines `compare` command share these case runners, so both time the
//! same work under the same names.

pub mod conv;
pub mod gpu;
pub mod lstm;
pub mod model_steps;

use autograd::rng::Rng;
use autograd::{no_grad, DType, Result, Tensor};
use serde_json::Value;
use std::time::Instant;

/// The contract, compiled in so the benchmarks run from any directory.
pub const SHAPES_JSON: &str = include_str!("../shapes.json");

pub fn shapes() -> Value {
    serde_json::from_str(SHAPES_JSON).expect("benches/shapes.json is valid JSON")
}

/// One timed case: `fwd` runs the forward without a graph, `fwdbwd` the forward with the graph
/// plus backward (or, for a model step, one whole training iteration).
pub struct Case {
    pub group: String,
    pub name: String,
    pub gpu_only: bool,
    pub flops: Option<u64>,
    pub fwd: Option<Box<dyn FnMut() -> Result<()>>>,
    pub fwdbwd: Box<dyn FnMut() -> Result<()>>,
}

/// Milliseconds per run: `warmup` untimed runs, then the median of `reps` timed runs.
pub fn median_ms(f: &mut dyn FnMut() -> Result<()>, warmup: usize, reps: usize) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

pub(crate) fn dims(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("shapes.json: {key} missing in {v}")) as usize
}

pub(crate) fn random(shape: &[usize], rng: &mut Rng, requires_grad: bool) -> Result<Tensor> {
    let t = Tensor::randn(shape, DType::F32, rng);
    t.requires_grad_(requires_grad)
}

/// matmul cases: C[m, n] = A[m, k] B[k, n]; forward+backward computes dA and dB.
pub fn matmul_cases(rng: &mut Rng) -> Result<Vec<Case>> {
    let spec = shapes();
    let mut cases = Vec::new();
    for c in spec["matmul"].as_array().into_iter().flatten() {
        let (m, k, n) = (dims(c, "m"), dims(c, "k"), dims(c, "n"));
        let gpu_only = c["gpu_only"].as_bool().unwrap_or(false);
        let (a, b) = (random(&[m, k], rng, true)?, random(&[k, n], rng, true)?);
        let g = random(&[m, n], rng, false)?;
        let (fa, fb) = (a.clone(), b.clone());
        cases.push(Case {
            group: "matmul".into(),
            name: c["name"].as_str().unwrap_or("?").into(),
            gpu_only,
            flops: Some(2 * (m * n * k) as u64),
            fwd: Some(Box::new(move || no_grad(|| fa.matmul(&fb)).map(drop))),
            fwdbwd: Box::new(move || {
                a.zero_grad();
                b.zero_grad();
                a.matmul(&b)?.backward_with(&g)
            }),
        });
    }
    Ok(cases)
}

/// The engine's own cost per op: 1000 alternating scalar ops on a tiny tensor, then sum.
pub fn overhead_cases() -> Result<Vec<Case>> {
    let spec = shapes();
    let mut cases = Vec::new();
    for c in spec["overhead"].as_array().into_iter().flatten() {
        let (numel, ops) = (dims(c, "numel"), dims(c, "ops"));
        let x = Tensor::full(&[numel], 1.0, DType::F32).requires_grad_(true)?;
        let chain = move |x: &Tensor| -> Result<Tensor> {
            let mut y = x.clone();
            for i in 0..ops {
                y = if i % 2 == 0 {
                    y.mul_scalar(1.0001)?
                } else {
                    y.add_scalar(0.0001)?
                };
            }
            y.sum_all()
        };
        let fx = x.clone();
        cases.push(Case {
            group: "overhead".into(),
            name: c["name"].as_str().unwrap_or("?").into(),
            gpu_only: false,
            flops: None,
            fwd: Some(Box::new(move || no_grad(|| chain(&fx)).map(drop))),
            fwdbwd: Box::new(move || {
                x.zero_grad();
                chain(&x)?.backward()
            }),
        });
    }
    Ok(cases)
}

/// Every case the engine can run today, in contract order.
pub fn all_cases(seed: u64) -> Result<Vec<Case>> {
    let mut rng = Rng::new(seed);
    let mut cases = matmul_cases(&mut rng)?;
    cases.extend(conv::conv_cases(&mut rng)?);
    cases.extend(lstm::lstm_cases(&mut rng)?);
    cases.extend(overhead_cases()?);
    cases.extend(model_steps::model_step_cases(&mut rng)?);
    Ok(cases)
}

/// A short description of this machine's CPU, for the JSON lines.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}
