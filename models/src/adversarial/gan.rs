//! The generative adversarial network of Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley,
//! Ozair, Courville & Bengio (2014), with multilayer perceptrons for both players.
//!
//! ```text
//!   D step:  max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]
//!   G step:  min_G  E_z[-log D(G(z))]        (non-saturating, the default)
//!       or   min_G  E_z[log(1 - D(G(z)))]    (minimax: `--set loss=minimax`)
//! ```
//!
//! One D step and one G step per batch, Adam 2e-4 (0.5, 0.999) for both, batch 64, images in
//! [-1, 1] (G ends in tanh). Networks: [`MlpGenerator`] z\[100\] -> 128 -> 256 -> 512 -> 1024 ->
//! 784 and [`MlpDiscriminator`] 784 -> 512 -> 256 -> 1 (see [`crate::adversarial::networks`]).
//! The two generator losses have the same fixed point but not the same gradients: at
//! D(G(z)) = d the minimax loss's slope with respect to D's logit is -d, which vanishes early
//! in training when D rejects every sample, the non-saturating one's -(1 - d)
//! ([`crate::adversarial::generator_loss_slope`]; `genzoo figures` draws both).

use crate::adversarial::networks::{check_latent, MlpDiscriminator, MlpGenerator};
use crate::adversarial::{BceGan, GanConfig};
use crate::model::{Entry, Family};

pub type Gan = BceGan<MlpGenerator, MlpDiscriminator>;

pub static ENTRY: Entry = Entry {
    name: "gan",
    title: "GAN, MLP generator z100-128-256-512-1024-784 and discriminator 784-512-256-1",
    paper: "Goodfellow et al. 2014, Generative Adversarial Nets",
    family: Family::Adversarial,
    default_epochs: 30,
    default_batch_size: 64,
    default_config: || serde_json::to_value(GanConfig::default()).unwrap_or_default(),
    build: |cfg, rng| {
        let config: GanConfig = ENTRY.parse_config(cfg)?;
        check_latent(ENTRY.name, "latent", config.latent)?;
        let g = MlpGenerator::new(config.latent, config.norm(), rng)?;
        let d = MlpDiscriminator::new(rng)?;
        Ok(Box::new(Gan::new(&ENTRY, config, g, d)?))
    },
    presets: &[],
};
