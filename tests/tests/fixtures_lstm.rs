//! Our LSTM cell and LSTM against PyTorch's, in f32.
//!
//! `tests/fixtures/make_lstm_fixtures.py` ran small `torch.nn.LSTMCell` and `torch.nn.LSTM`
//! cases and stored parameters (under PyTorch's names), inputs, outputs and the gradients of
//! a fixed weighted sum of the outputs in `tests/fixtures/lstm_fixtures.json` (committed, so
//! this test needs no torch). We load the same parameters into our modules by name, run the
//! same inputs, and require every output and gradient to match to 1e-5 relative error
//! (|ours - torch| / |torch|, Euclidean norms over the whole tensor). Sequences run both as
//! the fused op (`Lstm::forward`) and as the step-by-step graph (`Lstm::forward_stepwise`).

use autograd::nn::{Lstm, LstmCell, Module};
use autograd::{grad, Tensor};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/lstm_fixtures.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A stored tensor ({"shape": [...], "data": [...]}) as an f32 tensor.
fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("no shape in {v}"))
        .iter()
        .map(|d| d.as_u64().expect("shape entries are integers") as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {v}"))
        .iter()
        .map(|x| x.as_f64().expect("data entries are numbers") as f32)
        .collect();
    Tensor::from_vec(data, &shape).expect("data fills the shape")
}

fn leaf(v: &Value) -> Tensor {
    tensor(v).requires_grad_(true).unwrap()
}

/// |ours - reference| / |reference| over all elements (f64 arithmetic).
fn relative_error(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.shape(), reference.shape());
    let (a, b) = (ours.to_vec_f64(), reference.to_vec_f64());
    let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

fn check(case: &str, what: &str, ours: &Tensor, reference: &Tensor) {
    let err = relative_error(ours, reference);
    assert!(
        err <= TOL,
        "{case}: {what} differs from PyTorch by {err:.3e} relative (> {TOL:e})"
    );
}

/// Loads the fixture's parameters into `module` by name (every stored name must be ours too).
fn load(case: &str, module: &dyn Module, stored: &Value) {
    let ours = module.named_parameters();
    let names: Vec<&String> = ours.iter().map(|(n, _)| n).collect();
    let theirs = stored.as_object().expect("parameters is an object");
    assert_eq!(
        names.len(),
        theirs.len(),
        "{case}: our names {names:?} vs PyTorch's {:?}",
        theirs.keys().collect::<Vec<_>>()
    );
    for (name, p) in &ours {
        let v = theirs
            .get(name)
            .unwrap_or_else(|| panic!("{case}: PyTorch has no parameter {name}"));
        p.copy_from(&tensor(v))
            .unwrap_or_else(|e| panic!("{case}: {name}: {e}"));
    }
}

/// sum(w * t) for the fixture's loss weights.
fn weighted(t: &Tensor, w: &Value) -> Tensor {
    t.mul(&tensor(w)).unwrap().sum_all().unwrap()
}

fn run_case(c: &Value, stepwise: bool) {
    let name = &format!(
        "{}{}",
        c["name"].as_str().unwrap(),
        if stepwise { " (stepwise)" } else { "" }
    );
    let (i, h) = (
        c["input_size"].as_u64().unwrap() as usize,
        c["hidden_size"].as_u64().unwrap() as usize,
    );
    let bias = c["bias"].as_bool().unwrap();
    let with_state = c["with_state"].as_bool().unwrap();
    let mut rng = autograd::Rng::new(0);
    let dtype = autograd::DType::F32;
    let x = leaf(&c["x"]);
    let (h0, c0) = if with_state {
        (Some(leaf(&c["h0"])), Some(leaf(&c["c0"])))
    } else {
        (None, None)
    };
    let w = &c["loss_weights"];
    let (module, outputs, loss): (Box<dyn Module>, Vec<(&str, Tensor)>, Tensor) =
        match c["kind"].as_str().unwrap() {
            "cell" => {
                let cell = LstmCell::new(i, h, bias, dtype, &mut rng).unwrap();
                load(name, &cell, &c["parameters"]);
                let (h1, c1) = cell
                    .forward(&x, (h0.as_ref().unwrap(), c0.as_ref().unwrap()))
                    .unwrap();
                let loss = weighted(&h1, &w["h"]).add(&weighted(&c1, &w["c"])).unwrap();
                (Box::new(cell), vec![("h", h1), ("c", c1)], loss)
            }
            "sequence" => {
                let lstm = Lstm::new(i, h, bias, dtype, &mut rng).unwrap();
                load(name, &lstm, &c["parameters"]);
                let state = h0.as_ref().zip(c0.as_ref());
                let (out, (h_n, c_n)) = if stepwise {
                    lstm.forward_stepwise(&x, state).unwrap()
                } else {
                    lstm.forward(&x, state).unwrap()
                };
                let loss = weighted(&out, &w["output"])
                    .add(&weighted(&h_n, &w["h_n"]))
                    .unwrap()
                    .add(&weighted(&c_n, &w["c_n"]))
                    .unwrap();
                (
                    Box::new(lstm),
                    vec![("output", out), ("h_n", h_n), ("c_n", c_n)],
                    loss,
                )
            }
            other => panic!("{name}: unknown kind {other}"),
        };
    for (key, ours) in &outputs {
        check(name, key, ours, &tensor(&c["outputs"][*key]));
    }
    let mut wrt: Vec<(String, Tensor)> = vec![("x".into(), x)];
    wrt.extend(module.named_parameters());
    if let (Some(h0), Some(c0)) = (h0, c0) {
        wrt.push(("h0".into(), h0));
        wrt.push(("c0".into(), c0));
    }
    let tensors: Vec<Tensor> = wrt.iter().map(|(_, t)| t.clone()).collect();
    let grads = grad(&[loss], &[], &tensors, false).unwrap();
    let expected = c["grads"].as_object().unwrap();
    assert_eq!(expected.len(), wrt.len(), "{name}: gradient count");
    for ((key, _), g) in wrt.iter().zip(grads) {
        let g = g.unwrap_or_else(|| panic!("{name}: no gradient for {key}"));
        let reference = expected
            .get(key)
            .unwrap_or_else(|| panic!("{name}: PyTorch has no gradient for {key}"));
        check(name, &format!("d loss / d {key}"), &g, &tensor(reference));
    }
}

#[test]
fn lstm_cell_and_lstm_match_pytorch() {
    let doc = fixture();
    let cases = doc["cases"].as_array().expect("cases");
    let kinds: Vec<&str> = cases.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"cell") && kinds.contains(&"sequence"));
    for c in cases {
        run_case(c, false);
        if c["kind"] == "sequence" {
            run_case(c, true);
        }
    }
}

/// Inference (no graph recorded) must give the same values.
#[test]
fn lstm_inference_matches_pytorch() {
    let doc = fixture();
    for c in doc["cases"].as_array().unwrap() {
        if c["kind"] != "sequence" {
            continue;
        }
        let name = c["name"].as_str().unwrap();
        let lstm = Lstm::new(
            c["input_size"].as_u64().unwrap() as usize,
            c["hidden_size"].as_u64().unwrap() as usize,
            c["bias"].as_bool().unwrap(),
            autograd::DType::F32,
            &mut autograd::Rng::new(0),
        )
        .unwrap();
        load(name, &lstm, &c["parameters"]);
        let x = tensor(&c["x"]);
        let (h0, c0) = if c["with_state"].as_bool().unwrap() {
            (Some(tensor(&c["h0"])), Some(tensor(&c["c0"])))
        } else {
            (None, None)
        };
        let (out, (h_n, c_n)) =
            autograd::no_grad(|| lstm.forward(&x, h0.as_ref().zip(c0.as_ref()))).unwrap();
        check(
            name,
            "output (no grad)",
            &out,
            &tensor(&c["outputs"]["output"]),
        );
        check(name, "h_n (no grad)", &h_n, &tensor(&c["outputs"]["h_n"]));
        check(name, "c_n (no grad)", &c_n, &tensor(&c["outputs"]["c_n"]));
    }
}
