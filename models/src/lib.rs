//! The lecture's generative models, their data and the genzoo program, laid out like the lecture:
//!
//! - [`model`]: what a model is to the program, the [`model::GenerativeModel`] trait, and the
//!   [`model::Entry`] each model describes itself with; [`registry`]: the table of every model.
//! - [`autoregressive`]: the exact-likelihood models ([`autoregressive::fvsbn`],
//!   [`autoregressive::nade`], [`autoregressive::pixel_cnn`], [`autoregressive::pixel_rnn`]) and
//!   what they share ([`autoregressive::LikelihoodModel`]: generation in raster order, completion
//!   of half images, the NLL metrics), with their distributions.
//! - [`latent`]: the latent-variable models ([`latent::vae`], [`latent::aae`], [`latent::wae`]) and
//!   what they share: encoder and decoder ([`latent::LatentModel`]) and the pictures written at
//!   the end of training.
//! - [`adversarial`]: the GANs (next).
//! - [`domains`]: data derived from the digits with measurable attributes (Morpho-MNIST's
//!   thickness and slant, and the perturbations that change them).
//! - [`program`]: the genzoo program's parts: data, the training loop, checkpoints, the
//!   evaluation harness (with its classifier), image / plot / `.npy` output.

pub mod adversarial;
pub mod autoregressive;
pub mod domains;
pub mod latent;
pub mod model;
pub mod program;
pub mod registry;
