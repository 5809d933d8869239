//! Our conv2d, conv_transpose2d and masked_conv2d against PyTorch's on the cases written by
//! tests/fixtures/make_conv_fixtures.py: outputs and gradients, f32, to 1e-5 relative error
//! (norm of the difference over the norm of PyTorch's result).

use autograd::{Conv2dOptions, ConvTranspose2dOptions, Mask, Tensor};
use serde_json::Value;

fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_vec(data, &shape).unwrap()
}

fn pair(v: &Value) -> (usize, usize) {
    let a = v.as_array().unwrap();
    (
        a[0].as_u64().unwrap() as usize,
        a[1].as_u64().unwrap() as usize,
    )
}

fn relative_error(ours: &Tensor, theirs: &Tensor) -> f64 {
    assert_eq!(ours.shape(), theirs.shape());
    let (a, b) = (ours.to_vec_f64(), theirs.to_vec_f64());
    let diff: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm.max(1e-30)
}

#[test]
fn conv_family_matches_pytorch() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/conv_fixtures.json"
    ))
    .unwrap();
    let fixtures: Value = serde_json::from_str(&text).unwrap();
    let cases = fixtures["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let p = &c["params"];
        let x = tensor(&c["x"]).requires_grad_(true).unwrap();
        let w = tensor(&c["w"]).requires_grad_(true).unwrap();
        let b = c.get("b").map(|b| tensor(b).requires_grad_(true).unwrap());
        let pad = p["padding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect::<Vec<_>>();
        let groups = p["groups"].as_u64().unwrap() as usize;
        let y = match c["op"].as_str().unwrap() {
            op @ ("conv2d" | "masked_conv2d_A" | "masked_conv2d_B") => {
                let opts = Conv2dOptions {
                    stride: pair(&p["stride"]),
                    padding: (pad[0], pad[1], pad[2], pad[3]),
                    dilation: pair(&p["dilation"]),
                    groups,
                };
                match op {
                    "conv2d" => x.conv2d(&w, b.as_ref(), &opts),
                    "masked_conv2d_A" => x.masked_conv2d(&w, b.as_ref(), Mask::A, &opts),
                    _ => x.masked_conv2d(&w, b.as_ref(), Mask::B, &opts),
                }
            }
            "conv_transpose2d" => {
                let opts = ConvTranspose2dOptions {
                    stride: pair(&p["stride"]),
                    padding: (pad[0], pad[1]),
                    output_padding: pair(&p["output_padding"]),
                    dilation: pair(&p["dilation"]),
                    groups,
                };
                x.conv_transpose2d(&w, b.as_ref(), &opts)
            }
            other => panic!("unknown op {other}"),
        }
        .unwrap();
        let checks = [("y", y.clone(), &c["y"])];
        for (what, ours, theirs) in checks {
            let e = relative_error(&ours, &tensor(theirs));
            assert!(e < 1e-5, "{name}: {what} relative error {e:.2e}");
        }
        y.mul(&tensor(&c["r"]))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let mut grads = vec![
            ("gx", x.grad().unwrap(), &c["gx"]),
            ("gw", w.grad().unwrap(), &c["gw"]),
        ];
        if let Some(b) = &b {
            grads.push(("gb", b.grad().unwrap(), &c["gb"]));
        }
        for (what, ours, theirs) in grads {
            let e = relative_error(&ours, &tensor(theirs));
            assert!(e < 1e-5, "{name}: {what} relative error {e:.2e}");
        }
    }
}
