//! The conv2d, conv_transpose2d and masked_conv2d cases of the contract.

use crate::{dims, random, shapes, Case};
use autograd::rng::Rng;
use autograd::{no_grad, Conv2dOptions, ConvTranspose2dOptions, Mask, Result, Tensor};
use serde_json::Value;

pub(crate) fn shape4(v: &Value) -> [usize; 4] {
    let a: Vec<usize> = v
        .as_array()
        .expect("shape array")
        .iter()
        .map(|d| d.as_u64().expect("dimension") as usize)
        .collect();
    [a[0], a[1], a[2], a[3]]
}

#[derive(Clone, Copy)]
enum Kind {
    Conv,
    Transpose,
    Masked(Mask),
}

fn run(kind: Kind, x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    match kind {
        Kind::Conv => x.conv2d(
            w,
            None,
            &Conv2dOptions::default().stride(stride).padding(pad),
        ),
        Kind::Transpose => x.conv_transpose2d(
            w,
            None,
            &ConvTranspose2dOptions::default()
                .stride(stride)
                .padding(pad),
        ),
        Kind::Masked(m) => x.masked_conv2d(
            w,
            None,
            m,
            &Conv2dOptions::default().stride(stride).padding(pad),
        ),
    }
}

/// Every case of the three convolution groups: forward (no graph), and forward + backward
/// (gradients of the input and the weight) from a random upstream gradient.
pub fn conv_cases(rng: &mut Rng) -> Result<Vec<Case>> {
    let spec = shapes();
    let mut cases = Vec::new();
    for group in ["conv2d", "conv_transpose2d", "masked_conv2d"] {
        for c in spec[group].as_array().into_iter().flatten() {
            let (xs, ws) = (shape4(&c["x"]), shape4(&c["w"]));
            let stride = c["stride"].as_u64().unwrap_or(1) as usize;
            let pad = dims(c, "pad");
            let kind = match (group, c["mask"].as_str()) {
                ("conv2d", _) => Kind::Conv,
                ("conv_transpose2d", _) => Kind::Transpose,
                (_, Some("A")) => Kind::Masked(Mask::A),
                _ => Kind::Masked(Mask::B),
            };
            let gpu_only = c["gpu_only"].as_bool().unwrap_or(false);
            // the big gpu_only cases are only built when they run
            let (x, w) = if gpu_only {
                (
                    Tensor::zeros(&[1, 1, 1, 1], autograd::DType::F32),
                    Tensor::zeros(&[1, 1, 1, 1], autograd::DType::F32),
                )
            } else {
                (random(&xs, rng, true)?, random(&ws, rng, true)?)
            };
            let y_shape = if gpu_only {
                vec![1, 1, 1, 1]
            } else {
                no_grad(|| run(kind, &x, &w, stride, pad))?.shape().to_vec()
            };
            let g = random(&y_shape, rng, false)?;
            // 2 N Cout Ho Wo Cin kh kw; a transposed convolution does the same work as the
            // convolution it transposes: 2 N Cin H W Cout kh kw over its own input
            let flops = match kind {
                Kind::Transpose => 2 * xs.iter().product::<usize>() * ws[1] * ws[2] * ws[3],
                _ => 2 * y_shape.iter().product::<usize>() * ws[1] * ws[2] * ws[3],
            };
            if matches!(kind, Kind::Masked(_)) {
                // the same shape through our plain conv2d: the masked kernel should beat it
                let (fx, fw, x, w, g) = (x.clone(), w.clone(), x.clone(), w.clone(), g.clone());
                cases.push(Case {
                    group: "conv2d_on_masked_shapes".into(),
                    name: c["name"].as_str().unwrap_or("?").into(),
                    gpu_only,
                    flops: Some(flops as u64),
                    fwd: Some(Box::new(move || {
                        no_grad(|| run(Kind::Conv, &fx, &fw, stride, pad)).map(drop)
                    })),
                    fwdbwd: Box::new(move || {
                        x.zero_grad();
                        w.zero_grad();
                        run(Kind::Conv, &x, &w, stride, pad)?.backward_with(&g)
                    }),
                });
            }
            let (fx, fw) = (x.clone(), w.clone());
            cases.push(Case {
                group: group.into(),
                name: c["name"].as_str().unwrap_or("?").into(),
                gpu_only,
                flops: Some(flops as u64),
                fwd: Some(Box::new(move || {
                    no_grad(|| run(kind, &fx, &fw, stride, pad)).map(drop)
                })),
                fwdbwd: Box::new(move || {
                    x.zero_grad();
                    w.zero_grad();
                    run(kind, &x, &w, stride, pad)?.backward_with(&g)
                }),
            });
        }
    }
    Ok(cases)
}
