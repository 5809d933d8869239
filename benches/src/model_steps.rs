//! The `model_steps` cases of the contract: one whole training iteration of a lecture model
//! (forward, loss, backward, optimizer update), timed as `genzoo train` runs it: a
//! [`GenerativeModel`] from the models crate and its [`GenerativeModel::train_step`] on a fixed
//! [`Batch`] of MNIST images (the first training images of the embedded subset). `fwd` is None;
//! `fwdbwd` is the iteration. PyTorch's twins are in benches/torch_compare.py
//! (`model_step_cases`).
//!
//! Where the contract's network is one of the zoo's with some config, the case is that model
//! built by its registry entry (`vae_mnist_step`); otherwise the contract's network is put
//! together from our layers and run through the models' shared training code for its family
//! (`pixelcnn_mnist_step`: a [`LikelihoodModel`], whose train step is the one every
//! exact-likelihood model of the zoo runs). `dcgan_mnist_step` and `wgangp_mnist_step` are the
//! zoo's DCGAN and WGAN-GP.

use crate::{shapes, Case};
use autograd::nn::{Conv2d, MaskedConv2d, Module};
use autograd::optim::{Adam, AdamConfig};
use autograd::rng::Rng;
use autograd::{Conv2dOptions, DType, Error, Mask, Result, Tensor};
use models::adversarial::wgan::{self, Wgan, WganConfig};
use models::adversarial::{dcgan, GanConfig};
use models::autoregressive::distributions::Bernoulli;
use models::autoregressive::{mask_a_input, Known, LikelihoodModel};
use models::latent::vae::{self, VaeConfig};
use models::model::{Entry, GenerativeModel};
use models::program::data::{self, Batch, Pixels};
use serde_json::Value;

/// The contract's entry `name` of `model_steps`.
fn contract(name: &str) -> Result<Value> {
    shapes()["model_steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
        .ok_or_else(|| {
            Error::invalid(
                "model_steps",
                format!("shapes.json has no model_steps/{name}"),
            )
        })
}

/// The contract's batch size for a case.
fn batch_size(c: &Value) -> Result<usize> {
    c["batch"]
        .as_u64()
        .map(|b| b as usize)
        .ok_or_else(|| Error::invalid("model_steps", format!("no batch size in {c}")))
}

/// The first `n` training images of the embedded MNIST subset, as `genzoo train` batches them.
fn mnist_batch(n: usize) -> Result<Batch> {
    let mnist = data::embedded()?;
    let idx: Vec<usize> = (0..n.min(mnist.train.len())).collect();
    Ok(mnist.train.batch(&idx))
}

/// A case timing `model.train_step(batch)`; the step's random draws (binarisation, noise) come
/// from a generator of its own.
fn step_case(
    name: &str,
    c: &Value,
    flops: usize,
    mut model: Box<dyn GenerativeModel>,
    batch: Batch,
    rng: &mut Rng,
) -> Case {
    let mut draws = rng.split();
    model.set_training(true);
    Case {
        group: "model_steps".into(),
        name: name.into(),
        gpu_only: c["gpu_only"].as_bool().unwrap_or(false),
        flops: Some(flops as u64),
        fwd: None,
        fwdbwd: Box::new(move || model.train_step(&batch, &mut draws).map(drop)),
    }
}

/// `vae_mnist_step`: `genzoo train vae`'s model (the zoo's [`vae::ENTRY`] with its default
/// config: encoder 784-400 (ReLU) with the two heads 400-20 for mu and logvar, decoder
/// 20-400 (ReLU)-784, Bernoulli logits, Adam lr 1e-3) and its train step: stochastic
/// binarisation of the batch, z = mu + exp(logvar / 2) eps with a fresh eps every iteration,
/// loss -ELBO = BCE with logits summed over the pixels + KL(q(z|x) || N(0, I)), averaged over
/// the batch (the contract's sums, divided by the batch size: the same work).
///
/// flops counts the forward's matmuls, 2 B (784 400 + 2 400 20 + 20 400 + 400 784); the whole
/// iteration does about three times that.
pub fn vae_step_case(rng: &mut Rng) -> Result<Case> {
    let c = contract("vae_mnist_step")?;
    let b = batch_size(&c)?;
    let config: VaeConfig = vae::ENTRY.parse_config(&(vae::ENTRY.default_config)())?;
    let (d, h, z) = (28 * 28, config.hidden, config.latent);
    if (h, z, config.conv, config.lr) != (400, 20, false, 1e-3) {
        return Err(Error::invalid(
            "vae_step_case",
            format!("the vae's default config no longer matches the contract: {config:?}"),
        ));
    }
    let model = build(&vae::ENTRY, rng)?;
    let flops = 2 * b * (d * h + 2 * h * z + z * h + h * d);
    Ok(step_case(
        "vae_mnist_step",
        &c,
        flops,
        model,
        mnist_batch(b)?,
        rng,
    ))
}

/// A zoo model with its default config, as `genzoo train NAME` builds it.
fn build(entry: &Entry, rng: &mut Rng) -> Result<Box<dyn GenerativeModel>> {
    (entry.build)(&(entry.default_config)(), rng)
}

/// The contract's PixelCNN (not the zoo's residual one): masked conv A (1 -> 64, 7x7, pad 3) ->
/// ReLU -> 5 x [masked conv B (64 -> 64, 3x3, pad 1) -> ReLU] -> 1x1 conv (64 -> 64) -> ReLU ->
/// 1x1 conv (64 -> 1) -> per-pixel Bernoulli logits, trained as the zoo's exact-likelihood
/// models are ([`LikelihoodModel`]: the NLL of [`Bernoulli::nll_per_image`], its mean over the
/// batch, Adam lr 1e-3).
struct ContractPixelCnn {
    first: MaskedConv2d,
    blocks: Vec<MaskedConv2d>,
    head1: Conv2d,
    head2: Conv2d,
    opt: Adam,
}

impl ContractPixelCnn {
    const SIZE: usize = 28;

    fn new(channels: usize, lr: f64, rng: &mut Rng) -> Result<ContractPixelCnn> {
        let (ch, f) = (channels, DType::F32);
        let first = mask_a_input(ch, rng)?;
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
        let net = ContractPixelCnn {
            first,
            blocks,
            head1,
            head2,
            opt: Adam::new(Vec::<(String, Tensor)>::new(), AdamConfig::default())?,
        };
        let opt = AdamConfig {
            lr,
            ..AdamConfig::default()
        };
        Ok(ContractPixelCnn {
            opt: Adam::new(LikelihoodModel::weights(&net), opt)?,
            ..net
        })
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x)?.relu()?;
        for l in &self.blocks {
            h = l.forward(&h)?.relu()?;
        }
        self.head2.forward(&self.head1.forward(&h)?.relu()?)
    }
}

impl LikelihoodModel for ContractPixelCnn {
    fn name(&self) -> &'static str {
        "pixelcnn_mnist_step"
    }

    fn config(&self) -> Value {
        Value::Null
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        let mut all = autograd::nn::prefixed("first", self.first.named_parameters());
        for (i, l) in self.blocks.iter().enumerate() {
            all.extend(autograd::nn::prefixed(
                &format!("blocks.{i}"),
                l.named_parameters(),
            ));
        }
        all.extend(autograd::nn::prefixed(
            "head1",
            self.head1.named_parameters(),
        ));
        all.extend(autograd::nn::prefixed(
            "head2",
            self.head2.named_parameters(),
        ));
        all
    }

    fn optimizer(&self) -> &Adam {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Adam {
        &mut self.opt
    }

    fn training_pixels(&self) -> Pixels {
        Pixels::Stochastic
    }

    fn image_size(&self) -> usize {
        Self::SIZE
    }

    fn nll(&self, x: &Tensor) -> Result<Tensor> {
        Bernoulli::from_logits(&self.logits(x)?).nll_per_image(x)
    }

    fn generate(&self, _known: &Known, _rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        Err(Error::invalid(
            "pixelcnn_mnist_step",
            "the benchmark's PixelCNN only trains",
        ))
    }
}

/// `pixelcnn_mnist_step`: the contract's PixelCNN ([`ContractPixelCnn`]) and the zoo's
/// likelihood train step on a batch of MNIST images binarised stochastically. flops counts the
/// forward's convolutions at their nominal (unmasked) size.
pub fn pixelcnn_step_case(rng: &mut Rng) -> Result<Case> {
    let c = contract("pixelcnn_mnist_step")?;
    let b = batch_size(&c)?;
    let ch = 64;
    let model = ContractPixelCnn::new(ch, 1e-3, rng)?;
    let pixels = b * 28 * 28;
    let flops = 2 * pixels * (ch * 49 + 5 * ch * ch * 9 + ch * ch + ch);
    Ok(step_case(
        "pixelcnn_mnist_step",
        &c,
        flops,
        Box::new(model),
        mnist_batch(b)?,
        rng,
    ))
}

/// Forward FLOPs of the DCGAN generator and discriminator of the contract for a batch of `b`:
/// every multiply-add of the linear layers and (transposed) convolutions, twice.
fn dcgan_forward_flops(b: usize) -> usize {
    let g = 100 * 6272 + 128 * 64 * 16 * 7 * 7 + 64 * 16 * 14 * 14;
    let d = 64 * 16 * 14 * 14 + 64 * 128 * 16 * 7 * 7 + 6272;
    2 * b * (g + d)
}

/// `dcgan_mnist_step`: `genzoo train dcgan`'s model (the zoo's [`dcgan::ENTRY`], default config:
/// the contract's networks, Adam 2e-4 (0.5, 0.999), BCE with logits, non-saturating G loss) and
/// its train step: D on the real batch (in [-1, 1]) and on as many generated images, then G.
/// flops: one forward of G and D ([`dcgan_forward_flops`]); the iteration runs D three times.
pub fn dcgan_step_case(rng: &mut Rng) -> Result<Case> {
    let c = contract("dcgan_mnist_step")?;
    let b = batch_size(&c)?;
    let config: GanConfig = dcgan::ENTRY.parse_config(&(dcgan::ENTRY.default_config)())?;
    if (config.latent, config.lr, config.beta1, config.beta2) != (100, 2e-4, 0.5, 0.999) {
        return Err(Error::invalid(
            "dcgan_step_case",
            format!("the dcgan's default config no longer matches the contract: {config:?}"),
        ));
    }
    let model = build(&dcgan::ENTRY, rng)?;
    Ok(step_case(
        "dcgan_mnist_step",
        &c,
        dcgan_forward_flops(b),
        model,
        mnist_batch(b)?,
        rng,
    ))
}

/// `wgangp_mnist_step`: `genzoo train wgan-gp`'s model (the zoo's [`wgan::WGAN_GP_ENTRY`]: the
/// DCGAN generator, the critic without normalisation, the penalty 10 (||grad C(x_hat)|| - 1)^2
/// through a double backward, Adam 1e-4 (0.5, 0.9)) with one critic step per generator step,
/// as the contract times it (`genzoo train wgan-gp` takes five critic steps, each one of these
/// iterations without the generator's part).
pub fn wgangp_step_case(rng: &mut Rng) -> Result<Case> {
    let c = contract("wgangp_mnist_step")?;
    let b = batch_size(&c)?;
    let config = WganConfig {
        n_critic: 1,
        ..WganConfig::penalised()
    };
    let model = Wgan::new(&wgan::WGAN_GP_ENTRY, config, rng)?;
    Ok(step_case(
        "wgangp_mnist_step",
        &c,
        dcgan_forward_flops(b),
        Box::new(model),
        mnist_batch(b)?,
        rng,
    ))
}

/// Every model-step case of the contract, in its order.
pub fn model_step_cases(rng: &mut Rng) -> Result<Vec<Case>> {
    Ok(vec![
        dcgan_step_case(rng)?,
        wgangp_step_case(rng)?,
        vae_step_case(rng)?,
        pixelcnn_step_case(rng)?,
    ])
}
