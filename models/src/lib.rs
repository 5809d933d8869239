//! The lecture's generative models, their data and the genzoo program.
//!
//! - [`data`]: MNIST in IDX files (the embedded subset by default), pixel transforms, batches.
//! - [`zoo`]: the [`zoo::GenerativeModel`] trait and the registry of models.
//! - [`run`]: run folders, the training loop (progress, sample grids, loss plot, metrics,
//!   checkpoints, resume, NaN checks, Ctrl-C) and loading runs back.
//! - [`checkpoint`]: safetensors checkpoints, written atomically.
//! - [`eval`], [`metrics`], [`classifier`]: the evaluation harness (FCD, KID, label statistics
//!   on the shipped LeNet-style classifier).
//! - [`image`]: PNG grids, the loss plot, `.npy` arrays.

pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod eval;
pub mod image;
pub mod metrics;
pub mod run;
pub mod vae;
pub mod zoo;
