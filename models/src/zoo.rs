//! The registry of models: the [`GenerativeModel`] trait every model implements, and the table
//! [`ENTRIES`] that `genzoo` reads.
//!
//! Adding a model is one file and one line:
//!
//! 1. `models/src/my_model.rs` defines a config struct (serde, with defaults and
//!    `deny_unknown_fields`, an `lr` field that `--lr` sets), a struct holding the layers and the
//!    optimizer(s), `impl GenerativeModel for MyModel`, and
//!    `pub static ENTRY: Entry = Entry { name: "my_model", build: |cfg, rng| ..., .. }`.
//! 2. `pub mod my_model;` in `lib.rs` and `&my_model::ENTRY` in [`ENTRIES`].
//!
//! The program does everything else: batches, progress, sample grids from fixed noise, the loss
//! plot, metrics as JSON lines, checkpoints (weights under PyTorch names from
//! [`GenerativeModel::weights`], optimizer state from [`GenerativeModel::optimizers`]) and resume,
//! NaN checks, Ctrl-C, and `eval` with the family's metrics ([`crate::eval`]).

use crate::data::{Batch, Pixels};
use crate::eval::{EvalContext, Metric};
use autograd::optim::Optimizer;
use autograd::{Error, Result, Rng, Tensor};
use std::collections::HashMap;

/// What kind of model it is, which decides what `eval` reports by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Not generative: the evaluation harness's classifier.
    Classifier,
    /// Exact likelihood (FVSBN, NADE, PixelRNN/CNN): NLL in nats per image.
    Likelihood,
    /// Latent-variable models (VAE, AAE): ELBO terms and an importance-weighted bound.
    LatentVariable,
    /// GANs: sample quality only (FCD, KID, label histogram).
    Adversarial,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Classifier => "classifier",
            Family::Likelihood => "likelihood",
            Family::LatentVariable => "latent-variable",
            Family::Adversarial => "adversarial",
        }
    }
}

/// Losses of one training step, by name ("loss", or "d_loss" and "g_loss", ...), in the order
/// the progress bar and the plot show them.
pub type Losses = Vec<(String, f64)>;

/// One model in the registry.
pub struct Entry {
    /// The name on the command line (`genzoo train NAME`), lower case.
    pub name: &'static str,
    /// A short description for `genzoo list`.
    pub title: &'static str,
    /// The paper the model comes from.
    pub paper: &'static str,
    pub family: Family,
    /// Epochs and batch size when the command line does not say.
    pub default_epochs: usize,
    pub default_batch_size: usize,
    /// The config a run starts from (before `--lr` and `--set`).
    pub default_config: fn() -> serde_json::Value,
    /// Builds the model (and its optimizers) from a config, drawing initial weights from `rng`.
    pub build: fn(&serde_json::Value, &mut Rng) -> Result<Box<dyn GenerativeModel>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entry({})", self.name)
    }
}

/// Every model `genzoo` knows, in `genzoo list` order.
pub static ENTRIES: &[&Entry] = &[
    &crate::classifier::ENTRY,
    &crate::vae::ENTRY,
    &crate::vae::CONV_ENTRY,
    &crate::fvsbn::ENTRY,
    &crate::nade::ENTRY,
    &crate::pixel_cnn::ENTRY,
    &crate::pixel_rnn::ROW_ENTRY,
    &crate::pixel_rnn::DIAGONAL_ENTRY,
    &crate::aae::ENTRY,
    &crate::wae::MMD_ENTRY,
    &crate::wae::GAN_ENTRY,
];

/// The entry called `name`, or an error listing the known names.
pub fn find(name: &str) -> Result<&'static Entry> {
    ENTRIES
        .iter()
        .copied()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            Error::invalid(
                "genzoo",
                format!(
                    "no model called {name:?}; known models: {}",
                    names().join(", ")
                ),
            )
        })
}

pub fn names() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}

/// Reads a model's config from JSON, with the error naming the model and the problem
/// (an unknown key, a value of the wrong type).
pub fn parse_config<T: serde::de::DeserializeOwned>(
    model: &str,
    config: &serde_json::Value,
) -> Result<T> {
    serde_json::from_value(config.clone())
        .map_err(|e| Error::invalid("config", format!("{model}: {e} (config {config})")))
}

/// A trainable model as `genzoo` drives it.
pub trait GenerativeModel {
    /// The registry name ([`Entry::name`]).
    fn name(&self) -> &'static str;

    /// The config that rebuilds this model ([`Entry::build`]); stored in every checkpoint.
    fn config(&self) -> serde_json::Value;

    /// The form of the data it trains on; `eval` compares its samples with real images in that
    /// form ([`Pixels::Symmetric`] counts as [`Pixels::Unit`]: samples are always in [0, 1]).
    fn pixels(&self) -> Pixels {
        Pixels::Unit
    }

    /// Parameters and buffers under PyTorch-style names ("encoder.fc1.weight").
    fn weights(&self) -> Vec<(String, Tensor)>;

    /// The optimizers with the prefix their state is saved under ("optimizer", or
    /// "optimizer_g" and "optimizer_d").
    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)>;

    /// The same optimizers, mutable (for loading their state).
    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)>;

    /// Training (true) or evaluation behaviour of BatchNorm, dropout, ...
    fn set_training(&mut self, _training: bool) {}

    /// Called before each epoch's first step (0-based `epoch`; also when a run resumes inside
    /// an epoch), e.g. for a learning-rate schedule. Must depend only on `epoch` so that resumed
    /// runs stay identical.
    fn begin_epoch(&mut self, _epoch: u64) -> Result<()> {
        Ok(())
    }

    /// One optimisation step on a batch; returns the step's losses (finite, or training stops).
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses>;

    /// `n` samples as [n, 1, 28, 28] (or [n, C, H, W]) in [0, 1]. Called in no-grad mode and
    /// evaluation behaviour.
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor>;

    /// Models with an encoder (VAE, AAE, WAE): the encoder and decoder, from which the training
    /// loop draws reconstructions, interpolations and the scatter of 2-d codes after the last
    /// epoch ([`crate::latent::write_pictures`]). `None` (the default) for the others.
    fn latent(&self) -> Option<&dyn crate::latent::LatentModel> {
        None
    }

    /// Autoregressive models: `images` [n, 1, H, W] with values in {0, 1}, of which the first
    /// `known` pixels in raster order are kept and the rest drawn pixel by pixel given them
    /// (`genzoo complete`: the bottom half given the top half). Called in no-grad mode and
    /// evaluation behaviour. Other models: an error.
    fn complete(&mut self, _images: &Tensor, _known: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "complete",
            format!(
                "the {} model cannot complete images (only the autoregressive models can)",
                self.name()
            ),
        ))
    }

    /// Cheap metrics reported after every epoch (e.g. the classifier's test accuracy).
    fn epoch_metrics(&mut self, _ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        Ok(Vec::new())
    }

    /// The model's own evaluation (`genzoo eval`). The default is its family's sample-quality
    /// metrics; likelihood and latent-variable models add their NLL or ELBO terms
    /// ([`crate::eval::mean_per_image`]) to those.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let pixels = self.pixels();
        let samples = crate::eval::draw_samples(self, ctx)?;
        ctx.sample_metrics(&samples, pixels, None)
    }

    /// Weights, then each optimizer's state under "{prefix}.{param}.{key}": everything a
    /// checkpoint holds.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut all = self.weights();
        for (prefix, opt) in self.optimizers() {
            all.extend(
                opt.state_tensors()
                    .into_iter()
                    .map(|(n, t)| (format!("{prefix}.{n}"), t)),
            );
        }
        all
    }

    /// Loads what [`GenerativeModel::state_dict`] saved. Every weight must be present with its
    /// shape and dtype and no unknown name may be left over; optimizer state may be absent
    /// (a weights-only file), then the optimizers start fresh. `source` (the file) is named in
    /// errors. The names and shapes of the weights are checked before anything is loaded; an
    /// optimizer whose state does not fit keeps its own (and the weights stay as they were).
    fn load_state_dict(&mut self, state: &[(String, Tensor)], source: &str) -> Result<()> {
        let err = |msg: String| Error::Io {
            path: source.to_string(),
            msg,
        };
        let mut by_name: HashMap<&str, &Tensor> = HashMap::new();
        for (n, t) in state {
            by_name.insert(n.as_str(), t);
        }
        let weights = self.weights();
        let model = self.name();
        let mut missing = Vec::new();
        for (n, w) in &weights {
            match by_name.get(n.as_str()) {
                None => missing.push(n.clone()),
                Some(t) if t.shape() != w.shape() || t.dtype() != w.dtype() => {
                    return Err(err(format!(
                        "{n} is {:?} {} in the file but {:?} {} in the {model} model (a checkpoint of another config or model?)",
                        t.shape(),
                        t.dtype(),
                        w.shape(),
                        w.dtype()
                    )))
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            return Err(err(format!(
                "not a checkpoint of this {model} model: it lacks {} of its {} weights ({}{})",
                missing.len(),
                weights.len(),
                missing
                    .iter()
                    .take(4)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() > 4 { ", ..." } else { "" }
            )));
        }
        let mut used: std::collections::HashSet<&str> =
            weights.iter().map(|(n, _)| n.as_str()).collect();
        let prefixes: Vec<&'static str> = self.optimizers().iter().map(|(p, _)| *p).collect();
        let mut opt_states: Vec<Vec<(String, Tensor)>> = vec![Vec::new(); prefixes.len()];
        for (n, t) in state {
            if used.contains(n.as_str()) {
                continue;
            }
            let hit = prefixes
                .iter()
                .position(|p| n.strip_prefix(p).is_some_and(|rest| rest.starts_with('.')));
            match hit {
                Some(k) => {
                    opt_states[k].push((n[prefixes[k].len() + 1..].to_string(), t.clone()));
                    used.insert(n.as_str());
                }
                None => {
                    return Err(err(format!(
                        "{n} is not a weight or optimizer state of the {model} model (a checkpoint of another model?)"
                    )))
                }
            }
        }
        for ((prefix, opt), st) in self.optimizers_mut().into_iter().zip(&opt_states) {
            opt.load_state(st)
                .map_err(|e| err(format!("{prefix}: {e}")))?;
        }
        for (n, w) in &weights {
            if let Some(t) = by_name.get(n.as_str()) {
                w.copy_from(t).map_err(|e| err(format!("{n}: {e}")))?;
            }
        }
        Ok(())
    }
}
