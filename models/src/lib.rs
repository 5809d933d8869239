//! The lecture's generative models, their data and the genzoo program.
//!
//! - [`data`]: MNIST in IDX files (the embedded subset by default), pixel transforms, batches.
//! - [`zoo`]: the [`zoo::GenerativeModel`] trait and the registry of models.
//! - [`run`]: run folders, the training loop (progress, sample grids, loss plot, metrics,
//!   checkpoints, resume, NaN checks, Ctrl-C) and loading runs back.
//! - [`checkpoint`]: safetensors checkpoints, written atomically.
//! - [`eval`], [`metrics`], [`classifier`]: the evaluation harness (FCD, KID, label statistics
//!   on the shipped LeNet-style classifier).
//! - [`distributions`]: Bernoulli and categorical distributions, and the lecture's parameter
//!   counting; [`autoregressive`]: what the autoregressive models ([`fvsbn`], [`nade`],
//!   [`pixel_cnn`], [`pixel_rnn`]) share: generation in raster order, completion of half images, the NLL metrics.
//! - [`image`]: PNG grids, the loss plot, the scatter of 2-d codes, `.npy` arrays.
//! - [`latent`]: what the latent-variable models ([`vae`], [`aae`], [`wae`]) share: encoder and
//!   decoder ([`latent::LatentModel`]) and the pictures written at the end of training.

pub mod aae;
pub mod autoregressive;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod distributions;
pub mod eval;
pub mod fvsbn;
pub mod grid_lstm;
pub mod image;
pub mod latent;
pub mod metrics;
pub mod nade;
pub mod pixel_cnn;
pub mod pixel_rnn;
pub mod run;
pub mod vae;
pub mod wae;
pub mod zoo;
