//! Our optimizers against PyTorch's, step by step, in f64.
//!
//! `tests/fixtures/make_optim_reference.py` ran each configuration for 5 steps on
//! L(p) = sum(c (p - target)^2) + 0.1 sum(p^4) and stored the parameter after every step in
//! `tests/fixtures/optim_reference.json` (committed, so this test needs no torch). We run the
//! same steps here and require agreement to 1e-10 relative. The file also records PyTorch's
//! full hyperparameters, which must equal our defaults plus the configuration's overrides.

use autograd::optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig};
use autograd::{Tensor, TensorId};
use serde_json::Value;

const TOL: f64 = 1e-10;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/optim_reference.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| {
            x.as_f64()
                .unwrap_or_else(|| panic!("expected a number, got {x}"))
        })
        .collect()
}

fn num(map: &Value, key: &str) -> Option<f64> {
    map.get(key).map(|v| {
        v.as_f64()
            .unwrap_or_else(|| panic!("{key} must be a number, got {v}"))
    })
}

fn betas(map: &Value) -> Option<(f64, f64)> {
    map.get("betas").map(|v| {
        let b = floats(v);
        (b[0], b[1])
    })
}

/// Our default config for PyTorch's class, with the fixture's keyword arguments applied.
fn build(
    class: &str,
    kwargs: &Value,
    hyper: &Value,
    params: Vec<(String, Tensor)>,
) -> Box<dyn Optimizer> {
    match class {
        "SGD" => {
            let d = SgdConfig::default();
            let cfg = SgdConfig {
                lr: num(kwargs, "lr").unwrap_or(d.lr),
                momentum: num(kwargs, "momentum").unwrap_or(d.momentum),
                dampening: num(kwargs, "dampening").unwrap_or(d.dampening),
                weight_decay: num(kwargs, "weight_decay").unwrap_or(d.weight_decay),
                nesterov: kwargs
                    .get("nesterov")
                    .and_then(Value::as_bool)
                    .unwrap_or(d.nesterov),
            };
            assert_eq!(cfg.lr, num(hyper, "lr").unwrap());
            assert_eq!(cfg.momentum, num(hyper, "momentum").unwrap());
            assert_eq!(cfg.dampening, num(hyper, "dampening").unwrap());
            assert_eq!(cfg.weight_decay, num(hyper, "weight_decay").unwrap());
            assert_eq!(Some(cfg.nesterov), hyper["nesterov"].as_bool());
            Box::new(Sgd::new(params, cfg).unwrap())
        }
        "Adam" | "AdamW" => {
            let d = if class == "Adam" {
                AdamConfig::default()
            } else {
                AdamConfig::adamw()
            };
            let cfg = AdamConfig {
                lr: num(kwargs, "lr").unwrap_or(d.lr),
                betas: betas(kwargs).unwrap_or(d.betas),
                eps: num(kwargs, "eps").unwrap_or(d.eps),
                weight_decay: num(kwargs, "weight_decay").unwrap_or(d.weight_decay),
                decoupled_weight_decay: d.decoupled_weight_decay,
            };
            assert_eq!(cfg.lr, num(hyper, "lr").unwrap());
            assert_eq!(Some(cfg.betas), betas(hyper));
            assert_eq!(cfg.eps, num(hyper, "eps").unwrap());
            assert_eq!(cfg.weight_decay, num(hyper, "weight_decay").unwrap());
            Box::new(Adam::new(params, cfg).unwrap())
        }
        "RMSprop" => {
            let d = RmsPropConfig::default();
            let cfg = RmsPropConfig {
                lr: num(kwargs, "lr").unwrap_or(d.lr),
                alpha: num(kwargs, "alpha").unwrap_or(d.alpha),
                eps: num(kwargs, "eps").unwrap_or(d.eps),
                weight_decay: num(kwargs, "weight_decay").unwrap_or(d.weight_decay),
                momentum: num(kwargs, "momentum").unwrap_or(d.momentum),
            };
            assert_eq!(cfg.lr, num(hyper, "lr").unwrap());
            assert_eq!(cfg.alpha, num(hyper, "alpha").unwrap());
            assert_eq!(cfg.eps, num(hyper, "eps").unwrap());
            assert_eq!(cfg.weight_decay, num(hyper, "weight_decay").unwrap());
            assert_eq!(cfg.momentum, num(hyper, "momentum").unwrap());
            Box::new(RmsProp::new(params, cfg).unwrap())
        }
        other => panic!("unknown optimizer {other} in the fixture"),
    }
}

fn leaf(values: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(values, shape)
        .unwrap()
        .requires_grad_(true)
        .unwrap()
}

#[test]
fn optimizers_match_pytorch_step_by_step() {
    let fx = fixture();
    let shape: Vec<usize> = floats(&fx["shape"]).iter().map(|&d| d as usize).collect();
    let target = Tensor::from_vec(floats(&fx["target"]), &shape).unwrap();
    let c = Tensor::from_vec(floats(&fx["c"]), &shape).unwrap();
    let idle_values = floats(&fx["idle"]);
    let configs = fx["configs"].as_array().expect("configs");
    assert!(configs.len() >= 8, "fixture has {} configs", configs.len());
    let mut worst = 0.0f64;
    for cfg in configs {
        let name = cfg["name"].as_str().unwrap();
        let class = cfg["optimizer"].as_str().unwrap();
        let p = leaf(&floats(&fx["initial"]), &shape);
        let idle = leaf(&idle_values, &[idle_values.len()]);
        let mut opt = build(
            class,
            &cfg["kwargs"],
            &cfg["hyper"],
            vec![
                ("p".to_string(), p.clone()),
                ("idle".to_string(), idle.clone()),
            ],
        );
        for (step, want) in cfg["steps"].as_array().unwrap().iter().enumerate() {
            opt.zero_grad();
            let loss = c
                .mul(&p.sub(&target).unwrap().square().unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .add(
                    &p.powf(4.0)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .mul_scalar(0.1)
                        .unwrap(),
                )
                .unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            let got = p.to_vec::<f64>().unwrap();
            for (i, (g, w)) in got.iter().zip(floats(want)).enumerate() {
                let rel = (g - w).abs() / w.abs().max(1e-300);
                worst = worst.max(rel);
                assert!(
                    (g - w).abs() <= TOL * w.abs().max(1e-3),
                    "{name}, step {}, element {i}: ours {g:e}, PyTorch {w:e} (rel {rel:e})",
                    step + 1
                );
            }
        }
        assert_eq!(
            idle.to_vec::<f64>().unwrap(),
            idle_values,
            "{name}: a parameter without gradient moved"
        );
        let state = opt.state_tensors();
        assert!(
            state.iter().all(|(n, _)| n.starts_with("p.")),
            "{name}: state for a skipped parameter: {:?}",
            state.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        let step = state.iter().find(|(n, _)| n == "p.step").unwrap();
        assert_eq!(step.1.item().unwrap(), 5.0, "{name}");
    }
    eprintln!("largest relative difference from PyTorch: {worst:e}");
}

#[test]
fn resuming_from_exported_state_matches_pytorch_too() {
    // 2 steps, export, new optimizer + load, 3 more steps: the same trajectory as 5 steps
    let fx = fixture();
    let shape = [2usize, 3];
    let target = Tensor::from_vec(floats(&fx["target"]), &shape).unwrap();
    let c = Tensor::from_vec(floats(&fx["c"]), &shape).unwrap();
    let step_once = |p: &Tensor, opt: &mut Box<dyn Optimizer>| {
        opt.zero_grad();
        c.mul(&p.sub(&target).unwrap().square().unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .add(
                &p.powf(4.0)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .mul_scalar(0.1)
                    .unwrap(),
            )
            .unwrap()
            .backward()
            .unwrap();
        opt.step().unwrap();
    };
    for cfg in fx["configs"].as_array().unwrap() {
        let name = cfg["name"].as_str().unwrap();
        let class = cfg["optimizer"].as_str().unwrap();
        let p = leaf(&floats(&fx["initial"]), &shape);
        let mut first = build(
            class,
            &cfg["kwargs"],
            &cfg["hyper"],
            vec![("p".to_string(), p.clone())],
        );
        step_once(&p, &mut first);
        step_once(&p, &mut first);
        let saved = first.state_tensors();
        let q = leaf(&p.to_vec::<f64>().unwrap(), &shape);
        let mut second = build(
            class,
            &cfg["kwargs"],
            &cfg["hyper"],
            vec![("p".to_string(), q.clone())],
        );
        second.load_state(&saved).unwrap();
        let ids: Vec<TensorId> = second.params().iter().map(|(_, t)| t.id()).collect();
        assert_eq!(ids, vec![q.id()]);
        for _ in 0..3 {
            step_once(&q, &mut second);
        }
        let want = floats(&cfg["steps"][4]);
        for (g, w) in q.to_vec::<f64>().unwrap().iter().zip(want) {
            assert!(
                (g - w).abs() <= TOL * w.abs().max(1e-3),
                "{name} after resume: {g:e} vs {w:e}"
            );
        }
    }
}
