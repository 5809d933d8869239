//! The genzoo program's parts, which every model uses and none defines:
//!
//! - [`data`]: MNIST in IDX files (the embedded subset by default), pixel forms, batches.
//! - [`run`]: run folders, the training loop (progress, sample grids, loss plot, metrics,
//!   checkpoints, resume, NaN checks, Ctrl-C) and loading runs back.
//! - [`checkpoint`]: safetensors checkpoints, written atomically; a model's state in them.
//! - [`eval`], [`metrics`], [`classifier`]: the evaluation harness (FCD, KID, label statistics
//!   on the shipped LeNet-style classifier).
//! - [`image`]: PNG grids, the loss plot, the scatter of 2-d codes, `.npy` arrays.
//! - [`profile`]: `genzoo profile`, training steps under the engine's per-op profiler; the
//!   table and the Chrome trace.
//! - [`report`]: `genzoo report`, one self-contained HTML page over many run folders.
//!
//! The command line itself is `src/bin/genzoo.rs`.

pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod eval;
pub(crate) mod fnv;
pub mod image;
pub mod metrics;
pub mod profile;
pub mod report;
pub mod run;
