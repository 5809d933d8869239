//! DCGAN (Radford, Metz & Chintala 2015, "Unsupervised Representation Learning with Deep
//! Convolutional Generative Adversarial Networks") at MNIST's size: the networks of shapes.json's
//! `dcgan_mnist_step`.
//!
//! The paper's guidelines, as they appear here: strided convolutions instead of pooling in D,
//! transposed ("fractionally-strided") convolutions in G; BatchNorm in both, but not at G's
//! output or D's input; ReLU in G with tanh at its output, LeakyReLU 0.2 in D; Adam 2e-4 with
//! beta1 = 0.5; weights ~ N(0, 0.02) (BatchNorm's gamma ~ N(1, 0.02)).
//!
//! ```text
//!   G: z[100] -> Linear(100, 128*7*7) -> BN -> ReLU -> [128, 7, 7]
//!        -> ConvT(128, 64, k4, s2, p1) -> BN -> ReLU -> ConvT(64, 1, k4, s2, p1) -> tanh
//!   D: x[1, 28, 28] -> Conv(1, 64, k4, s2, p1) -> LReLU -> Conv(64, 128, k4, s2, p1) -> BN
//!        -> LReLU -> flatten -> Linear(128*7*7, 1)
//!   loss: BCE with logits, D on real (1) and generated (0), G non-saturating -log D(G(z))
//! ```

use crate::adversarial::networks::{check_latent, ConvDiscriminator, ConvGenerator};
use crate::adversarial::{BceGan, GanConfig};
use crate::model::{Entry, Family};

pub type Dcgan = BceGan<ConvGenerator, ConvDiscriminator>;

pub static ENTRY: Entry = Entry {
    name: "dcgan",
    title: "DCGAN, deconvolution generator and convolution discriminator (shapes.json dcgan_mnist_step)",
    paper: "Radford, Metz & Chintala 2015, Unsupervised Representation Learning with Deep Convolutional GANs",
    family: Family::Adversarial,
    default_epochs: 30,
    default_batch_size: 64,
    default_config: || serde_json::to_value(GanConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(build(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// The DCGAN of `config`, weights drawn from `rng`.
pub fn build(config: GanConfig, rng: &mut autograd::Rng) -> autograd::Result<Dcgan> {
    check_latent(ENTRY.name, "latent", config.latent)?;
    let g = ConvGenerator::new(config.latent, config.norm(), rng)?;
    let d = ConvDiscriminator::new(Some(config.norm()), rng)?;
    Dcgan::new(&ENTRY, config, g, d)
}
