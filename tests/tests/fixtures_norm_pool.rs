//! Normalisation, pooling, upsampling and padding against PyTorch, in float32.
//!
//! `tests/fixtures/make_norm_pool_fixtures.py` ran each case in PyTorch (CPU, float32) and stored
//! in `tests/fixtures/norm_pool_fixtures.json` the inputs, the output, the gradients of
//! L = sum(y * upstream) with respect to the input (and weight, bias), and, for the layers with
//! running statistics, those statistics after the step. We run the same case in f32 and require
//! every tensor to agree to 1e-5 relative: |ours - torch| / |torch| in the Euclidean norm.

use autograd::nn::{BatchNorm2d, InstanceNorm2d, Module};
use autograd::{grad, DType, Tensor};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/norm_pool_fixtures.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap_or_else(|| panic!("not a size: {x}")) as usize)
        .collect()
}

fn pair(v: &Value) -> (usize, usize) {
    let p = usizes(v);
    (p[0], p[1])
}

/// A {"shape", "data"} object as an f32 tensor.
fn tensor(v: &Value) -> Tensor {
    let shape = usizes(&v["shape"]);
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("expected data, got {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")) as f32)
        .collect();
    Tensor::from_vec(data, &shape).unwrap()
}

/// Norm of the difference over norm of the reference, after checking the shapes agree.
fn rel_error(name: &str, what: &str, ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(
        ours.shape(),
        reference.shape(),
        "{name}: {what} has the wrong shape"
    );
    let (a, b) = (ours.to_vec_f64(), reference.to_vec_f64());
    let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    diff.sqrt() / norm.sqrt().max(1e-30)
}

fn flag(params: &Value, key: &str) -> bool {
    params[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} must be a bool"))
}

fn number(params: &Value, key: &str) -> f64 {
    params[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} must be a number"))
}

/// What one case produced on our side: the output, the gradients by input name, and the
/// running statistics after the step where the layer has them.
struct Run {
    output: Tensor,
    grads: Vec<(String, Tensor)>,
    after: Vec<(String, Tensor)>,
}

fn run_case(case: &Value) -> Run {
    let name = case["name"].as_str().unwrap();
    let op = case["op"].as_str().unwrap();
    let p = &case["params"];
    let input = |k: &str| tensor(&case["inputs"][k]);
    let leaf = |k: &str| input(k).requires_grad_(true).unwrap();
    let x = leaf("x");
    let mut params: Vec<(String, Tensor)> = Vec::new();
    let mut buffers: Vec<(String, Tensor)> = Vec::new();
    let output = match op {
        "batch_norm2d" => {
            let c = x.shape()[1];
            let mut bn =
                BatchNorm2d::with_options(c, number(p, "eps"), number(p, "momentum"), DType::F32)
                    .unwrap();
            bn.weight.copy_from(&input("weight")).unwrap();
            bn.bias.copy_from(&input("bias")).unwrap();
            bn.running_mean.copy_from(&input("running_mean")).unwrap();
            bn.running_var.copy_from(&input("running_var")).unwrap();
            bn.set_training(flag(p, "training"));
            let y = bn.forward(&x).unwrap();
            params = bn.named_parameters();
            if flag(p, "training") {
                buffers = bn.named_buffers();
            }
            y
        }
        "instance_norm2d" => {
            let c = x.shape()[1];
            let mut norm = InstanceNorm2d::with_options(
                c,
                number(p, "eps"),
                number(p, "momentum"),
                flag(p, "affine"),
                flag(p, "track_running_stats"),
                DType::F32,
            )
            .unwrap();
            if flag(p, "affine") {
                norm.weight
                    .as_ref()
                    .unwrap()
                    .copy_from(&input("weight"))
                    .unwrap();
                norm.bias
                    .as_ref()
                    .unwrap()
                    .copy_from(&input("bias"))
                    .unwrap();
            }
            if flag(p, "track_running_stats") {
                norm.running_mean
                    .as_ref()
                    .unwrap()
                    .copy_from(&input("running_mean"))
                    .unwrap();
                norm.running_var
                    .as_ref()
                    .unwrap()
                    .copy_from(&input("running_var"))
                    .unwrap();
            }
            norm.set_training(flag(p, "training"));
            let y = norm.forward(&x).unwrap();
            params = norm.named_parameters();
            buffers = norm.named_buffers();
            y
        }
        "upsample_nearest2d" => x
            .upsample_nearest2d(p["factor"].as_u64().unwrap() as usize)
            .unwrap(),
        "upsample_bilinear2d" => x
            .upsample_bilinear2d(
                p["factor"].as_u64().unwrap() as usize,
                flag(p, "align_corners"),
            )
            .unwrap(),
        "avg_pool2d" => x
            .avg_pool2d(
                pair(&p["kernel"]),
                pair(&p["stride"]),
                pair(&p["padding"]),
                flag(p, "count_include_pad"),
            )
            .unwrap(),
        "max_pool2d" => x
            .max_pool2d(
                pair(&p["kernel"]),
                pair(&p["stride"]),
                pair(&p["padding"]),
                pair(&p["dilation"]),
            )
            .unwrap(),
        "pad2d" | "pad2d_reflect" => {
            let q = usizes(&p["pads"]);
            let pads = (q[0], q[1], q[2], q[3]);
            if op == "pad2d" {
                x.pad2d(pads).unwrap()
            } else {
                x.pad2d_reflect(pads).unwrap()
            }
        }
        other => panic!("{name}: unknown op {other} in the fixture"),
    };
    let loss = output
        .mul(&tensor(&case["upstream"]))
        .unwrap()
        .sum_all()
        .unwrap();
    let mut wrt = vec![("x".to_string(), x)];
    wrt.extend(params);
    let tensors: Vec<Tensor> = wrt.iter().map(|(_, t)| t.clone()).collect();
    let grads = grad(&[loss], &[], &tensors, false).unwrap();
    Run {
        output,
        grads: wrt
            .into_iter()
            .zip(grads)
            .map(|((n, _), g)| (n, g.unwrap_or_else(|| panic!("{name}: no gradient"))))
            .collect(),
        after: buffers,
    }
}

#[test]
fn norm_pool_upsample_and_pad_match_pytorch() {
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20, "fixture has {} cases", cases.len());
    let mut worst = (0.0f64, String::new());
    let mut seen_ops = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        seen_ops.insert(case["op"].as_str().unwrap().to_string());
        let run = run_case(case);
        let mut check = |what: &str, ours: &Tensor, reference: &Value| {
            let err = rel_error(name, what, ours, &tensor(reference));
            assert!(
                err <= TOL,
                "{name}: {what} differs from PyTorch by {err:e} (relative norm)"
            );
            if err > worst.0 {
                worst = (err, format!("{name} {what}"));
            }
        };
        check("output", &run.output, &case["output"]);
        let want_grads = case["grads"].as_object().unwrap();
        assert_eq!(
            run.grads.len(),
            want_grads.len(),
            "{name}: gradients for {:?}, fixture has {:?}",
            run.grads.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            want_grads.keys().collect::<Vec<_>>()
        );
        for (n, g) in &run.grads {
            check(&format!("grad {n}"), g, &want_grads[n.as_str()]);
        }
        if let Some(after) = case.get("after").and_then(Value::as_object) {
            assert_eq!(run.after.len(), after.len(), "{name}: running statistics");
            for (n, t) in &run.after {
                check(n, t, &after[n.as_str()]);
            }
        }
    }
    for op in [
        "batch_norm2d",
        "instance_norm2d",
        "upsample_nearest2d",
        "upsample_bilinear2d",
        "avg_pool2d",
        "max_pool2d",
        "pad2d",
        "pad2d_reflect",
    ] {
        assert!(seen_ops.contains(op), "the fixture has no {op} case");
    }
    eprintln!(
        "largest relative difference from PyTorch: {:e} ({})",
        worst.0, worst.1
    );
}
