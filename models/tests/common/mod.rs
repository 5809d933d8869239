//! Shared by the integration tests: temporary folders, and a tiny generative model that is not
//! in the registry ("pixelwise": independent Bernoulli pixels), which exercises the generative
//! half of the program (sample grids, sample metrics) and can be told to produce a NaN loss.
#![allow(dead_code)]

use autograd::nn::{loss, Reduction};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{DType, Result, Rng, Tensor};
use models::model::{draw_samples, Entry, Family, GenerativeModel, Losses, Preset};
use models::program::data::{Batch, Pixels, Split};
use models::program::eval::{self, EvalContext, Metric};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A fresh, empty temporary folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "genzoo-test-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PixelwiseConfig {
    pub lr: f64,
    /// Report a NaN loss at this step (tests of the NaN check).
    pub nan_at_step: Option<u64>,
    /// The validation loss of epoch i (0-based) is `validation_script[i]` instead of the
    /// held-out digits' NLL (tests of early stopping).
    pub validation_script: Option<Vec<f64>>,
}

impl Default for PixelwiseConfig {
    fn default() -> Self {
        PixelwiseConfig {
            lr: 0.05,
            nan_at_step: None,
            validation_script: None,
        }
    }
}

pub static PIXELWISE: Entry = Entry {
    name: "pixelwise",
    title: "independent Bernoulli pixels (a test model)",
    paper: "none",
    family: Family::Likelihood,
    default_epochs: 1,
    default_batch_size: 32,
    default_config: || serde_json::to_value(PixelwiseConfig::default()).unwrap(),
    build: |cfg, _rng| {
        let config: PixelwiseConfig = PIXELWISE.parse_config(cfg)?;
        let logits = Tensor::zeros(&[1, 1, 28, 28], DType::F32).requires_grad_(true)?;
        let opt = Adam::new(
            vec![("logits".to_string(), logits.clone())],
            AdamConfig {
                lr: config.lr,
                ..Default::default()
            },
        )?;
        Ok(Box::new(Pixelwise {
            config,
            logits,
            opt,
            steps: 0,
            epoch: 0,
        }))
    },
    presets: &[Preset {
        name: "patient",
        about: "early stopping after 2 epochs without a better validation loss (a test preset)",
        config: "{}",
        epochs: 8,
        batch_size: 32,
        patience: Some(2),
    }],
};

pub struct Pixelwise {
    config: PixelwiseConfig,
    logits: Tensor,
    opt: Adam,
    steps: u64,
    /// The epoch in progress (0-based), from `begin_epoch`.
    epoch: u64,
}

impl Pixelwise {
    /// -log p(x) in nats per image of binary images [B, 1, 28, 28].
    fn nll(&self, x: &Tensor) -> Result<Tensor> {
        let l = self.logits.expand(x.shape())?;
        loss::bce_with_logits(&l, x, Reduction::None)?.sum(&[1, 2, 3], false)
    }
}

impl GenerativeModel for Pixelwise {
    fn name(&self) -> &'static str {
        PIXELWISE.name
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap()
    }
    fn pixels(&self) -> Pixels {
        Pixels::Threshold
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        vec![("logits".into(), self.logits.clone())]
    }
    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        vec![("optimizer", &self.opt)]
    }
    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        vec![("optimizer", &mut self.opt)]
    }
    fn begin_epoch(&mut self, epoch: u64) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }
    fn validation_loss(&mut self, split: &Split, rng: &mut Rng) -> Result<Option<f64>> {
        if let Some(script) = &self.config.validation_script {
            return Ok(script.get(self.epoch as usize).copied());
        }
        let m = eval::means_over(split, Pixels::Threshold, 250, 1, rng, |x, _, _| {
            Ok(vec![self.nll(x)?.to_vec_f64()])
        })?;
        Ok(Some(m[0]))
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        self.steps += 1;
        let x = batch.tensor(Pixels::Threshold, rng)?;
        let loss = self.nll(&x)?.mean_all()?;
        self.opt.zero_grad();
        loss.backward()?;
        self.opt.step()?;
        let v = if Some(self.steps) == self.config.nan_at_step {
            f64::NAN
        } else {
            loss.item()?
        };
        Ok(vec![("nll".into(), v)])
    }
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let p = self
            .logits
            .sigmoid()?
            .expand(&[n, 1, 28, 28])?
            .contiguous()?;
        Tensor::bernoulli(&p, rng)
    }
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut out =
            eval::mean_per_image(ctx, Pixels::Threshold, 250, &["nll_nats"], |x, _, _| {
                Ok(vec![self.nll(x)?.to_vec_f64()])
            })?;
        let samples = draw_samples(self, ctx)?;
        out.extend(ctx.sample_metrics(&samples, Pixels::Threshold, None)?);
        Ok(out)
    }
}

/// The bits of every tensor of a checkpoint file, by name.
pub fn tensor_bits(path: &Path) -> Vec<(String, Vec<u64>)> {
    let ck = models::program::checkpoint::load(path).unwrap();
    ck.tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.to_vec_f64().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

/// The `genzoo` program: cargo's build of it, or, on the GPU machine (where the test binaries
/// run from `.device/` without the build tree), the copy `scripts/pack-gpu.sh` put beside them.
pub fn genzoo_program() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_genzoo"));
    let packed = PathBuf::from("../.device/bin/genzoo");
    if !built.exists() && packed.exists() {
        return packed;
    }
    built
}

/// Runs `genzoo` with `args`; a panic is a test failure whatever the exit status.
pub fn genzoo(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(genzoo_program())
        .args(args)
        .output()
        .expect("genzoo runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "genzoo {args:?} panicked:\n{err}"
    );
    out
}

/// Runs `genzoo` with `args` and fails the test, showing its stderr, unless it succeeds.
pub fn genzoo_ok(args: &[&str]) -> std::process::Output {
    let out = genzoo(args);
    assert!(
        out.status.success(),
        "genzoo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
