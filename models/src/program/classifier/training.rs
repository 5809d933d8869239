//! The classifier as a model of the registry: `genzoo train classifier` (cross-entropy, Adam with
//! the learning rate decayed per epoch, training images shifted by up to `shift` pixels) and
//! what `eval` reports for it (accuracy and NLL on both splits).

use super::{Classifier, ClassifierConfig, NAME};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels, Split};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{loss, Module, Reduction};
use autograd::optim::Optimizer;
use autograd::{Error, Result, Rng, Tensor};

pub static ENTRY: Entry = Entry {
    name: NAME,
    title: "LeNet-style MNIST classifier (the evaluation harness's feature extractor)",
    paper: "LeCun, Bottou, Bengio & Haffner 1998, Gradient-based learning applied to document recognition",
    family: Family::Classifier,
    default_epochs: 10,
    default_batch_size: 64,
    default_config: || serde_json::to_value(ClassifierConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(Classifier::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// Each image moved by (dx, dy) in [-shift, shift] (drawn from `rng`, two draws per image), the
/// uncovered border filled with 0.
pub fn random_shift(batch: &Batch, shift: usize, rng: &mut Rng) -> Batch {
    let (rows, cols) = (batch.rows, batch.cols);
    let mut out = batch.clone();
    if shift == 0 {
        return out;
    }
    let span = 2 * shift as u64 + 1;
    for (src, dst) in batch
        .images
        .chunks_exact(rows * cols)
        .zip(out.images.chunks_exact_mut(rows * cols))
    {
        let dx = rng.below(span) as isize - shift as isize;
        let dy = rng.below(span) as isize - shift as isize;
        for r in 0..rows as isize {
            for c in 0..cols as isize {
                let (sr, sc) = (r - dy, c - dx);
                dst[(r * cols as isize + c) as usize] =
                    if sr >= 0 && sc >= 0 && sr < rows as isize && sc < cols as isize {
                        src[(sr * cols as isize + sc) as usize]
                    } else {
                        0
                    };
            }
        }
    }
    out
}

impl GenerativeModel for Classifier {
    fn name(&self) -> &'static str {
        NAME
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn pixels(&self) -> Pixels {
        Pixels::Unit
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        Module::state_dict(self)
    }

    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        vec![("optimizer", &self.opt)]
    }

    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        vec![("optimizer", &mut self.opt)]
    }

    fn begin_epoch(&mut self, epoch: u64) -> Result<()> {
        let lr = self.config.lr * self.config.lr_decay.powi(epoch.min(10_000) as i32);
        self.opt.set_lr(lr)
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let batch = random_shift(batch, self.config.shift, rng);
        let (_, logits) = self.forward(&batch.unit()?, Some(rng))?;
        let labels = batch.label_indices();
        let loss = loss::cross_entropy(&logits, &labels, Reduction::Mean)?;
        self.opt.minimize(&loss)?;
        let preds = crate::program::metrics::argmax_rows(&logits.to_vec_f64(), 10);
        let acc = preds.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64
            / labels.len().max(1) as f64;
        Ok(vec![("loss".into(), loss.item()?), ("acc".into(), acc)])
    }

    fn sample(&mut self, _n: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "sample",
            "the classifier is not a generative model: it has nothing to sample",
        ))
    }

    /// The cross-entropy of the held-out digits.
    fn validation_loss(&mut self, split: &Split, _rng: &mut Rng) -> Result<Option<f64>> {
        Ok(Some(self.accuracy_and_loss(split)?.1))
    }

    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let (acc, loss) = self.accuracy_and_loss(&ctx.data.test)?;
        Ok(vec![
            Metric::new("test_accuracy", acc),
            Metric::new("test_loss", loss),
        ])
    }

    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let (acc, loss) = self.accuracy_and_loss(&ctx.data.test)?;
        let (train_acc, train_loss) = self.accuracy_and_loss(&ctx.data.train)?;
        Ok(vec![
            Metric::new("test_accuracy", acc),
            Metric::new("test_nll_nats", loss),
            Metric::new("train_accuracy", train_acc),
            Metric::new("train_nll_nats", train_loss),
        ])
    }
}
