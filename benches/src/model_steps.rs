//! The `model_steps` cases of the contract: one whole training iteration of a lecture model
//! (forward, loss, backward, optimizer update) on a fixed batch. `fwd` is None; `fwdbwd` is the
//! iteration. PyTorch's twins are in benches/torch_compare.py (`model_step_cases`).

use crate::{shapes, Case};
use autograd::nn::{loss, Linear, Reduction};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::rng::Rng;
use autograd::{DType, Error, Result, Tensor};

/// `vae_mnist_step`: the VAE of PyTorch's example. Encoder 784-400 (ReLU) with two heads 400-20
/// (mu, logvar); z = mu + exp(logvar / 2) eps with a fresh eps every iteration; decoder 20-400
/// (ReLU)-784 (sigmoid); loss BCE(sum) + KL(q(z|x) || N(0, I)) (sum); Adam lr 1e-3. The input is a
/// fixed batch of uniform values in [0, 1). The sigmoid and the BCE are computed together from
/// the logits (`bce_with_logits`, the same function of the parameters); the PyTorch twin does the
/// same with `binary_cross_entropy_with_logits`.
///
/// flops counts the forward's matmuls, 2 B (784 400 + 2 400 20 + 20 400 + 400 784); the whole
/// iteration does about three times that.
pub fn vae_step_case(rng: &mut Rng) -> Result<Case> {
    let spec = shapes();
    let c = spec["model_steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "vae_mnist_step")
        .ok_or_else(|| {
            Error::invalid(
                "vae_step_case",
                "shapes.json has no model_steps/vae_mnist_step",
            )
        })?;
    let b = c["batch"].as_u64().unwrap_or(128) as usize;
    let (d, h, z) = (784, 400, 20);
    let f = DType::F32;
    let fc1 = Linear::new(d, h, true, f, rng)?;
    let fc_mu = Linear::new(h, z, true, f, rng)?;
    let fc_logvar = Linear::new(h, z, true, f, rng)?;
    let fc3 = Linear::new(z, h, true, f, rng)?;
    let fc4 = Linear::new(h, d, true, f, rng)?;
    let mut params = Vec::new();
    for (name, l) in [
        ("fc1", &fc1),
        ("fc21", &fc_mu),
        ("fc22", &fc_logvar),
        ("fc3", &fc3),
        ("fc4", &fc4),
    ] {
        params.push((format!("{name}.weight"), l.weight.clone()));
        if let Some(bias) = &l.bias {
            params.push((format!("{name}.bias"), bias.clone()));
        }
    }
    let mut opt = Adam::new(
        params,
        AdamConfig {
            lr: 1e-3,
            ..AdamConfig::default()
        },
    )?;
    let x = Tensor::rand(&[b, d], f, rng);
    let mut noise = rng.split();
    let flops = 2 * b * (d * h + 2 * h * z + z * h + h * d);
    Ok(Case {
        group: "model_steps".into(),
        name: "vae_mnist_step".into(),
        gpu_only: c["gpu_only"].as_bool().unwrap_or(false),
        flops: Some(flops as u64),
        fwd: None,
        fwdbwd: Box::new(move || {
            let hidden = fc1.forward(&x)?.relu()?;
            let (mu, logvar) = (fc_mu.forward(&hidden)?, fc_logvar.forward(&hidden)?);
            let eps = Tensor::randn(&[b, z], f, &mut noise);
            let code = mu.add(&logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)?;
            let logits = fc4.forward(&fc3.forward(&code)?.relu()?)?;
            let bce = loss::bce_with_logits(&logits, &x, Reduction::Sum)?;
            let kl = loss::gaussian_kl(&mu, &logvar, Reduction::Sum)?;
            let total = bce.add(&kl)?;
            opt.zero_grad();
            total.backward()?;
            opt.step()
        }),
    })
}

/// `pixelcnn_mnist_step`: x [64, 1, 28, 28] binarised -> masked conv A (1 -> 64, 7x7, pad 3) ->
/// ReLU -> 5 x [masked conv B (64 -> 64, 3x3, pad 1) -> ReLU] -> 1x1 conv (64 -> 64) -> ReLU ->
/// 1x1 conv (64 -> 1) -> per-pixel Bernoulli logits; loss BCE with logits (mean); Adam lr 1e-3.
/// The batch is a fixed random binary image set. flops counts the forward's convolutions at
/// their nominal (unmasked) size.
pub fn pixelcnn_step_case(rng: &mut Rng) -> Result<Case> {
    use autograd::nn::{Conv2d, MaskedConv2d};
    use autograd::{Conv2dOptions, Mask};
    let spec = shapes();
    let c = spec["model_steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "pixelcnn_mnist_step")
        .ok_or_else(|| {
            Error::invalid(
                "pixelcnn_step_case",
                "shapes.json has no model_steps/pixelcnn_mnist_step",
            )
        })?;
    let b = c["batch"].as_u64().unwrap_or(64) as usize;
    let (ch, f) = (64, DType::F32);
    let first = MaskedConv2d::new(
        1,
        ch,
        (7, 7),
        Mask::A,
        Conv2dOptions::default().padding(3),
        true,
        f,
        rng,
    )?;
    let blocks = (0..5)
        .map(|_| {
            MaskedConv2d::new(
                ch,
                ch,
                (3, 3),
                Mask::B,
                Conv2dOptions::default().padding(1),
                true,
                f,
                rng,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let head1 = Conv2d::new(ch, ch, (1, 1), Conv2dOptions::default(), true, f, rng)?;
    let head2 = Conv2d::new(ch, 1, (1, 1), Conv2dOptions::default(), true, f, rng)?;
    let mut params: Vec<Tensor> = vec![first.weight.clone()];
    params.extend(first.bias.clone());
    for l in &blocks {
        params.push(l.weight.clone());
        params.extend(l.bias.clone());
    }
    for l in [&head1, &head2] {
        params.push(l.weight.clone());
        params.extend(l.bias.clone());
    }
    let mut opt = Adam::new(
        params,
        AdamConfig {
            lr: 1e-3,
            ..AdamConfig::default()
        },
    )?;
    let x = Tensor::rand(&[b, 1, 28, 28], f, rng).gt_scalar(0.5)?;
    let pixels = b * 28 * 28;
    let flops = 2 * pixels * (ch * 49 + 5 * ch * ch * 9 + ch * ch + ch);
    Ok(Case {
        group: "model_steps".into(),
        name: "pixelcnn_mnist_step".into(),
        gpu_only: c["gpu_only"].as_bool().unwrap_or(false),
        flops: Some(flops as u64),
        fwd: None,
        fwdbwd: Box::new(move || {
            let mut h = first.forward(&x)?.relu()?;
            for l in &blocks {
                h = l.forward(&h)?.relu()?;
            }
            let logits = head2.forward(&head1.forward(&h)?.relu()?)?;
            let loss = loss::bce_with_logits(&logits, &x, Reduction::Mean)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()
        }),
    })
}
