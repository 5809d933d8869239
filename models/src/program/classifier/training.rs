//! The classifier as a model of the registry: `genzoo train classifier` (cross-entropy, Adam with
//! the learning rate decayed per epoch, training images shifted by up to `shift` pixels and a
//! share `styles` of them drawn in the digit domains' strokes and leans) and what `eval` reports
//! for it (accuracy and NLL on both splits, and the accuracy on the test digits in each of the
//! nine styles, read as drawn and with the style undone).

use super::{Classifier, ClassifierConfig, NAME};
use crate::domains::sets::{self, Lean, Stroke};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels, Split};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{loss, Module, Reduction};
use autograd::optim::Optimizer;
use autograd::{Error, Result, Rng, Tensor};
use rayon::prelude::*;

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

/// Each image, with probability `share`, redrawn in a stroke and a lean picked at random
/// ([`sets::with_attributes`]; three draws per image, none when `share` is 0).
pub fn random_styles(batch: &Batch, share: f64, rng: &mut Rng) -> Result<Batch> {
    let mut out = batch.clone();
    if share == 0.0 {
        return Ok(out);
    }
    if batch.rows != 28 || batch.cols != 28 {
        return Err(Error::shape(
            "classifier",
            format!(
                "the digit styles are drawn on 28 x 28 digits, got {} x {}",
                batch.rows, batch.cols
            ),
        ));
    }
    let picks: Vec<Option<(Stroke, Lean)>> = (0..batch.len())
        .map(|_| {
            let styled = rng.uniform() < share;
            let stroke = Stroke::ALL[rng.below(3) as usize];
            let lean = Lean::ALL[rng.below(3) as usize];
            styled.then_some((stroke, lean))
        })
        .collect();
    out.images
        .par_chunks_mut(28 * 28)
        .zip(batch.images.par_chunks(28 * 28))
        .zip(picks)
        .for_each(|((dst, src), pick)| {
            if let Some((stroke, lean)) = pick {
                dst.copy_from_slice(&sets::with_attributes(src, stroke, lean));
            }
        });
    Ok(out)
}

/// The accuracy on the test digits drawn in each stroke and lean ([`sets::with_attributes`]),
/// read as drawn (`test_accuracy_{stroke}_{lean}`) and with the style undone first
/// (`..._style_undone`, [`sets::without_style`]: how the harness classifier, which knows plain
/// digits, reads them); each set's mean over the nine styles beside.
pub fn accuracy_by_style(c: &Classifier, split: &Split) -> Result<Vec<Metric>> {
    // the split's digits, drawn otherwise, read as a split is
    let read = |images: Vec<u8>| -> Result<f64> {
        let drawn = Split {
            images,
            labels: split.labels.clone(),
            rows: split.rows,
            cols: split.cols,
        };
        Ok(c.accuracy_and_loss(&drawn)?.0)
    };
    let (mut metrics, mut drawn_sum, mut undone_sum) = (Vec::new(), 0.0, 0.0);
    for stroke in Stroke::ALL {
        for lean in Lean::ALL {
            let styled: Vec<u8> = split
                .images
                .par_chunks(28 * 28)
                .flat_map_iter(|img| sets::with_attributes(img, stroke, lean))
                .collect();
            let undone: Vec<u8> = styled
                .par_chunks(28 * 28)
                .flat_map_iter(sets::without_style)
                .collect();
            let name = format!("test_accuracy_{}_{}", stroke.word(), lean.word());
            let (drawn, plain) = (read(styled)?, read(undone)?);
            drawn_sum += drawn;
            undone_sum += plain;
            metrics.push(Metric::new(name.clone(), drawn));
            metrics.push(Metric::new(format!("{name}_style_undone"), plain));
        }
    }
    metrics.push(Metric::new("test_accuracy_styled", drawn_sum / 9.0));
    metrics.push(Metric::new(
        "test_accuracy_styled_style_undone",
        undone_sum / 9.0,
    ));
    Ok(metrics)
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
        let batch = random_styles(batch, self.config.styles, rng)?;
        let batch = random_shift(&batch, self.config.shift, rng);
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
        let mut metrics = vec![
            Metric::new("test_accuracy", acc),
            Metric::new("test_nll_nats", loss),
            Metric::new("train_accuracy", train_acc),
            Metric::new("train_nll_nats", train_loss),
        ];
        if ctx.data.test.rows == 28 && ctx.data.test.cols == 28 {
            metrics.extend(accuracy_by_style(self, &ctx.data.test)?);
        }
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::data;

    #[test]
    fn random_styles_redraws_the_asked_share_of_digits() {
        let data = data::embedded().unwrap();
        let idx: Vec<usize> = (0..200).collect();
        let batch = data.train.batch(&idx);
        let mut rng = Rng::new(3);
        let same = random_styles(&batch, 0.0, &mut rng).unwrap();
        assert_eq!(same.images, batch.images);
        assert_eq!(rng.state(), Rng::new(3).state(), "no draws at share 0");
        let changed = |share: f64| {
            let out = random_styles(&batch, share, &mut Rng::new(4)).unwrap();
            assert_eq!(out.labels, batch.labels);
            out.images
                .chunks(784)
                .zip(batch.images.chunks(784))
                .filter(|(a, b)| a != b)
                .count() as f64
                / 200.0
        };
        // a regular upright style leaves most digits as they are: 1/9 of the picks change little
        let all = changed(1.0);
        assert!(all > 0.8, "share 1: {all} changed");
        let half = changed(0.5);
        assert!(half > 0.3 && half < 0.6, "share 0.5: {half} changed");
    }
}
