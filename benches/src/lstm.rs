//! The `lstm` cases of the contract: one `LstmCell` step ("cell") and a whole single-layer
//! `Lstm` over a sequence ("sequence"). PyTorch's side (benches/torch_compare.py) times
//! `torch.nn.LSTMCell` and `torch.nn.LSTM` on the same shapes and the same work:
//!
//! - fwd: the forward without a graph;
//! - fwdbwd: the forward with the graph, then the backward from random upstream gradients on
//!   the outputs (cell: h' and c'; sequence: the [T, B, H] outputs), giving the gradients of
//!   every parameter and of the inputs (cell: x, h, c; sequence: x, from a zero state).
//!
//! flops counts the forward's matmuls: 2 B (I + H) 4H per step.

use crate::Case;
use autograd::nn::{Lstm, LstmCell, Module};
use autograd::rng::Rng;
use autograd::{grad, no_grad, DType, Result, Tensor};

fn dims(v: &serde_json::Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("shapes.json: {key} missing in {v}")) as usize
}

fn random(shape: &[usize], rng: &mut Rng, requires_grad: bool) -> Result<Tensor> {
    Tensor::randn(shape, DType::F32, rng).requires_grad_(requires_grad)
}

/// Gradients of `outputs` (weighted by `upstream`) with respect to `wrt`, thrown away.
fn backward(outputs: &[Tensor], upstream: &[Tensor], wrt: &[Tensor]) -> Result<()> {
    grad(outputs, upstream, wrt, false).map(drop)
}

pub fn lstm_cases(rng: &mut Rng) -> Result<Vec<Case>> {
    let spec = crate::shapes();
    let mut cases = Vec::new();
    for c in spec["lstm"].as_array().into_iter().flatten() {
        let name: String = c["name"].as_str().unwrap_or("?").into();
        let gpu_only = c["gpu_only"].as_bool().unwrap_or(false);
        let (b, i, h) = (dims(c, "batch"), dims(c, "input"), dims(c, "hidden"));
        let kind = c["kind"].as_str().unwrap_or("?");
        let case = match kind {
            "cell" => {
                let cell = LstmCell::new(i, h, true, DType::F32, rng)?;
                let (x, h0, c0) = (
                    random(&[b, i], rng, true)?,
                    random(&[b, h], rng, true)?,
                    random(&[b, h], rng, true)?,
                );
                let upstream = [random(&[b, h], rng, false)?, random(&[b, h], rng, false)?];
                let mut wrt = vec![x.clone(), h0.clone(), c0.clone()];
                wrt.extend(cell.parameters());
                let fwd_cell = cell.clone();
                let (fx, fh, fc) = (x.clone(), h0.clone(), c0.clone());
                Case {
                    group: "lstm".into(),
                    name,
                    gpu_only,
                    flops: Some(2 * (b * (i + h) * 4 * h) as u64),
                    fwd: Some(Box::new(move || {
                        no_grad(|| fwd_cell.forward(&fx, (&fh, &fc))).map(drop)
                    })),
                    fwdbwd: Box::new(move || {
                        let (h1, c1) = cell.forward(&x, (&h0, &c0))?;
                        backward(&[h1, c1], &upstream, &wrt)
                    }),
                }
            }
            "sequence" => {
                let t = dims(c, "seq");
                let lstm = Lstm::new(i, h, true, DType::F32, rng)?;
                let x = random(&[t, b, i], rng, true)?;
                let upstream = [random(&[t, b, h], rng, false)?];
                let mut wrt = vec![x.clone()];
                wrt.extend(lstm.parameters());
                let (fwd_lstm, fx) = (lstm.clone(), x.clone());
                Case {
                    group: "lstm".into(),
                    name,
                    gpu_only,
                    flops: Some(2 * (t * b * (i + h) * 4 * h) as u64),
                    fwd: Some(Box::new(move || {
                        no_grad(|| fwd_lstm.forward(&fx, None)).map(drop)
                    })),
                    fwdbwd: Box::new(move || {
                        let (out, _) = lstm.forward(&x, None)?;
                        backward(&[out], &upstream, &wrt)
                    }),
                }
            }
            other => {
                return Err(autograd::Error::invalid(
                    "lstm_cases",
                    format!("shapes.json: unknown lstm kind {other:?} in case {name}"),
                ))
            }
        };
        cases.push(case);
    }
    Ok(cases)
}
