//! What a model is to the program: the [`GenerativeModel`] trait every model implements, its
//! [`Family`], the [`Losses`] of a step, and the [`Entry`] a model describes itself with
//! (name, paper, defaults, how to build it). No model is named here; the table of them is
//! [`crate::registry`].
//!
//! Adding a model is one file and one line:
//!
//! 1. `models/src/FAMILY/my_model.rs` defines a config struct (serde, with defaults and
//!    `deny_unknown_fields`, an `lr` field that `--lr` sets), a struct holding the layers and the
//!    optimizer(s), `impl GenerativeModel for MyModel` (or, for an exact-likelihood model,
//!    [`crate::autoregressive::LikelihoodModel`], which gives the `GenerativeModel`), and
//!    `pub static ENTRY: Entry = Entry { name: "my_model", build: |cfg, rng| ..., .. }`; the model
//!    takes its name from `ENTRY.name` (written once).
//! 2. `pub mod my_model;` in the family's `mod.rs` and `&my_model::ENTRY` in
//!    [`crate::registry::ENTRIES`].
//!
//! The program does everything else: batches, progress, sample grids from fixed noise, the loss
//! plot, metrics as JSON lines, checkpoints (weights under PyTorch names from
//! [`GenerativeModel::weights`], optimizer state from [`GenerativeModel::optimizers`]) and resume,
//! NaN checks, Ctrl-C, and `eval` with the family's metrics ([`crate::program::eval`]).

use crate::latent::LatentModel;
use crate::program::checkpoint;
use crate::program::data::{Batch, Mnist, Pixels, Split};
use crate::program::eval::{check_samples, EvalContext, Metric};
use autograd::optim::Optimizer;
use autograd::{no_grad, Error, Result, Rng, Tensor};

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
    /// Named settings beside the quick defaults (`genzoo train MODEL --preset NAME`).
    pub presets: &'static [Preset],
}

/// A named size and schedule of a model (`--preset paper`: its paper's network; `--preset
/// reference`: the PyTorch reference of README.md): config keys set over the defaults (before
/// `--lr` and `--set`), and the epochs, batch size and patience a run with it takes unless the
/// command line says.
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    /// What it is, where it comes from, and its expected wall time on the 2-core CPU.
    pub about: &'static str,
    /// The config keys it sets, a JSON object.
    pub config: &'static str,
    pub epochs: usize,
    pub batch_size: usize,
    /// Early stopping (`--patience`) when the run holds out validation digits.
    pub patience: Option<usize>,
}

impl Entry {
    /// The preset called `name`, or an error listing this model's presets.
    pub fn preset(&self, name: &str) -> Result<&'static Preset> {
        self.presets.iter().find(|p| p.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.presets.iter().map(|p| p.name).collect();
            Error::invalid(
                "train",
                format!(
                    "--preset {name:?}: the {} model has {}",
                    self.name,
                    if known.is_empty() {
                        "no presets".to_string()
                    } else {
                        format!("the presets {}", known.join(", "))
                    }
                ),
            )
        })
    }

    /// Reads this model's config from JSON ([`checkpoint::parse_config`], errors naming the
    /// model).
    pub fn parse_config<T: serde::de::DeserializeOwned>(
        &self,
        config: &serde_json::Value,
    ) -> Result<T> {
        checkpoint::parse_config(self.name, config)
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entry({})", self.name)
    }
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

    /// The fewest digits a training step works on (StarGAN and text-to-image pair digits within
    /// a batch); `genzoo train` refuses a batch size that is smaller or that leaves an epoch a
    /// last batch that is, before the first step rather than at the end of the first epoch.
    fn min_batch(&self) -> usize {
        1
    }

    /// One optimisation step on a batch; returns the step's losses (finite, or training stops).
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses>;

    /// `n` samples as [n, 1, 28, 28] (or [n, C, H, W]) in [0, 1]. Called in no-grad mode and
    /// evaluation behaviour.
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor>;

    /// Samples `first .. first + n` of the model's run of samples for the pictures and the
    /// evaluation, given the run's data (callers draw in chunks, `first` counting on): what
    /// [`GenerativeModel::sample`] draws (`first` does not matter), or for a model that
    /// translates digits (CycleGAN, StarGAN) its translations of the test digits from the
    /// `first`-th on, wrapping around after the last.
    fn sample_given(
        &mut self,
        _first: usize,
        n: usize,
        _data: &Mnist,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        self.sample(n, rng)
    }

    /// Conditional models (the conditional GAN): `n` samples of the digit `label`, as
    /// [`GenerativeModel::sample`] draws them (`genzoo sample --label`). Others: an error.
    fn sample_label(&mut self, _n: usize, _label: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "sample",
            format!(
                "the {} model is not conditioned on a label (--label is for cgan)",
                self.name()
            ),
        ))
    }

    /// Text-conditioned models (text-to-image): `n` samples of what `caption` describes
    /// (`genzoo sample --caption`); a caption with words outside the vocabulary is an error
    /// naming them. Others: an error.
    fn sample_caption(&mut self, _n: usize, _caption: &str, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "sample",
            format!(
                "the {} model does not read captions (--caption is for text2image)",
                self.name()
            ),
        ))
    }

    /// Models with an encoder (VAE, AAE, WAE): the encoder and decoder, from which the training
    /// loop draws reconstructions, interpolations and the scatter of 2-d codes after the last
    /// epoch ([`crate::latent::write_pictures`]). `None` (the default) for the others.
    fn latent(&self) -> Option<&dyn LatentModel> {
        None
    }

    /// Autoregressive models: `images` [n, 1, H, W] (values in {0, 1} for binary models, grey
    /// in [0, 1] for models of grey levels), of which the first `known` pixels in raster order
    /// are kept and the rest drawn pixel by pixel given them
    /// (`genzoo complete`: the bottom half given the top half). Called in no-grad mode and
    /// evaluation behaviour. Other models: an error.
    fn complete(&mut self, _images: &Tensor, _known: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "complete",
            format!(
                "the {} model cannot complete images (the autoregressive models and puzzle-gan can)",
                self.name()
            ),
        ))
    }

    /// Models with a completion picture of their own (Puzzle-GAN's patches, the colour
    /// PixelCNN's colour digits): `genzoo complete`'s picture for `n` test digits with
    /// `per_image` completions each, as images, the number of columns of the grid and what the
    /// columns show. None (the default): the autoregressive models' picture, the bottom half
    /// drawn given the top half ([`GenerativeModel::complete`]).
    fn completion_picture(
        &mut self,
        _data: &Mnist,
        _n: usize,
        _per_image: usize,
        _seed: u64,
    ) -> Result<Option<(Tensor, usize, String)>> {
        Ok(None)
    }

    /// Pictures of its own written into the run folder `dir` after the last epoch (InfoGAN's
    /// code traversals, the conditional GAN's digits, CycleGAN's translations of `data`'s test
    /// digits), in evaluation behaviour. None by default.
    fn end_of_training(&mut self, _dir: &std::path::Path, _data: &Mnist) -> Result<()> {
        Ok(())
    }

    /// What early stopping watches: a loss on held-out images (`split`, the run's validation
    /// digits), lower is better, computed in no-grad mode and evaluation behaviour with `rng`
    /// for any draws. Likelihood models: the exact NLL in nats per image; the VAE: its negative
    /// ELBO; the autoencoders: their reconstruction error; the classifier: its cross-entropy.
    /// `None` (the default, the GANs): the model has none, and runs hold nothing out.
    fn validation_loss(&mut self, _split: &Split, _rng: &mut Rng) -> Result<Option<f64>> {
        Ok(None)
    }

    /// Cheap metrics reported after every epoch (e.g. the classifier's test accuracy).
    fn epoch_metrics(&mut self, _ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        Ok(Vec::new())
    }

    /// The model's own evaluation (`genzoo eval`). The default is its family's sample-quality
    /// metrics; likelihood and latent-variable models add their NLL or ELBO terms
    /// ([`crate::program::eval::mean_per_image`]) to those.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let pixels = self.pixels();
        let samples = draw_samples(self, ctx)?;
        ctx.sample_metrics(&samples, pixels, None)
    }

    /// Weights, then each optimizer's state under "{prefix}.{param}.{key}": everything a
    /// checkpoint holds.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        checkpoint::state_dict(self.weights(), self.optimizers())
    }

    /// Loads what [`GenerativeModel::state_dict`] saved ([`checkpoint::load_state_dict`]): every
    /// weight must be present with its shape and dtype and no unknown name may be left over;
    /// optimizer state may be absent (a weights-only file), then the optimizers start fresh.
    /// `source` (the file) is named in errors.
    fn load_state_dict(&mut self, state: &[(String, Tensor)], source: &str) -> Result<()> {
        let (model, weights) = (self.name(), self.weights());
        checkpoint::load_state_dict(model, weights, self.optimizers_mut(), state, source)
    }
}

/// `ctx.samples` samples from `model`, drawn 100 at a time in no-grad mode and evaluation
/// behaviour, checked to be [n, C, H, W] in [0, 1].
pub fn draw_samples<M: GenerativeModel + ?Sized>(
    model: &mut M,
    ctx: &mut EvalContext,
) -> Result<Tensor> {
    model.set_training(false);
    let mut parts = Vec::new();
    let mut left = ctx.samples;
    while left > 0 {
        let k = left.min(100);
        let first = ctx.samples - left;
        let s = no_grad(|| model.sample_given(first, k, ctx.data, &mut ctx.rng))?;
        check_samples(model.name(), &s, k)?;
        parts.push(s);
        left -= k;
    }
    Tensor::concat(&parts, 0)
}
