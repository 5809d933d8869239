//! The conditional GAN (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets"): both
//! players are given the digit's label y, so G learns p(x | y) and can be asked for a digit.
//!
//! ```text
//!   min_G max_D  E_{(x, y) ~ p_data}[log D(x, y)] + E_{z ~ p(z), y ~ p(y)}[log(1 - D(G(z, y), y))]
//! ```
//!
//! At DCGAN's size (the networks of [`crate::adversarial::dcgan`]), y enters each player as the
//! paper has it, joined to its input: G reads [z | onehot(y)] (100 + 10), D reads the image with
//! ten label planes behind it (plane y all ones, the rest zeros: 11 input channels). Real images
//! come with their own labels; each generated image is asked for the label of the real image
//! beside it, so D sees every digit as often real as fake. Losses, optimizers and
//! initialisation are DCGAN's (BCE with logits, non-saturating G loss, Adam 2e-4 (0.5, 0.999)).
//!
//! `genzoo sample cgan --label 7` draws sevens; `genzoo eval` reports, per digit, how often the
//! harness classifier agrees with the digit asked for (on `--samples` draws per digit) and the
//! FCD against the real test digits of that class, each beside its real-data baseline.

use crate::adversarial::networks::{check_latent, ConvDiscriminator, ConvGenerator};
use crate::adversarial::{
    discriminator_step, epoch_metrics, generator_loss, noise, to_unit, GanConfig, Network, Players,
};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels};
use crate::program::eval::{EvalContext, Metric};
use crate::program::image;
use autograd::nn;
use autograd::optim::{Adam, Optimizer};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use std::path::Path;

pub static ENTRY: Entry = Entry {
    name: "cgan",
    title: "conditional GAN: DCGAN with the label joined to G's noise and to D's image",
    paper: "Mirza & Osindero 2014, Conditional Generative Adversarial Nets",
    family: Family::Adversarial,
    default_epochs: 20,
    default_batch_size: 64,
    default_config: || serde_json::to_value(GanConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(Cgan::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// The labels: the ten digits.
pub const CLASSES: usize = 10;

pub struct Cgan {
    config: GanConfig,
    players: Players<ConvGenerator, ConvDiscriminator>,
}

/// y as G reads it: one-hot rows [n, 10].
fn label_codes(labels: &[usize]) -> Result<Tensor> {
    Tensor::one_hot(labels, CLASSES, DType::F32)
}

/// y as D reads it: ten planes per image [n, 10, 28, 28], plane y ones, the others zeros.
fn label_planes(labels: &[usize], rows: usize, cols: usize) -> Result<Tensor> {
    let n = labels.len();
    label_codes(labels)?
        .reshape(&[n, CLASSES, 1, 1])?
        .expand(&[n, CLASSES, rows, cols])
}

/// The input of D: images [n, 1, H, W] with their label planes behind them.
fn with_planes(images: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let s = images.shape();
    Tensor::concat(&[images.clone(), label_planes(labels, s[2], s[3])?], 1)
}

impl Cgan {
    pub fn new(config: GanConfig, rng: &mut Rng) -> Result<Cgan> {
        check_latent(ENTRY.name, "latent", config.latent)?;
        let generator = ConvGenerator::new(config.latent + CLASSES, config.norm(), rng)?;
        let discriminator =
            ConvDiscriminator::with_channels(1 + CLASSES, Some(config.norm()), rng)?;
        let adam = config.adam();
        let opt_g = Adam::new(
            nn::prefixed("generator", nn::Module::named_parameters(&generator)),
            adam,
        )?;
        let opt_d = Adam::new(
            nn::prefixed(
                "discriminator",
                nn::Module::named_parameters(&discriminator),
            ),
            adam,
        )?;
        Ok(Cgan {
            players: Players {
                generator,
                discriminator,
                opt_g: Box::new(opt_g),
                opt_d: Box::new(opt_d),
                latent: config.latent,
                monitor: Default::default(),
            },
            config,
        })
    }

    /// G(z, y) for fresh noise, in [-1, 1].
    fn generate(&mut self, labels: &[usize], rng: &mut Rng) -> Result<Tensor> {
        let z = noise(labels.len(), self.config.latent, rng);
        let input = Tensor::concat(&[z, label_codes(labels)?], 1)?;
        self.players.generator.forward(&input)
    }

    /// One step of the conditional game on real images `x` (in [-1, 1]) with their `labels`:
    /// D on (x, y) labelled 1 and on (G(z, y), y) labelled 0, then G against the updated D.
    fn step(&mut self, x: &Tensor, labels: &[usize], rng: &mut Rng) -> Result<Losses> {
        let fake = self.generate(labels, rng)?;
        let fake_in = with_planes(&fake, labels)?;
        let p = &mut self.players;
        let d_loss = discriminator_step(
            &mut p.discriminator,
            &mut *p.opt_d,
            &mut p.monitor,
            &with_planes(x, labels)?,
            &fake_in,
        )?;
        let g_loss = generator_loss(&p.discriminator.forward(&fake_in)?, self.config.loss)?;
        p.opt_g.minimize(&g_loss)?;
        Ok(vec![
            ("d_loss".into(), d_loss),
            ("g_loss".into(), g_loss.item()?),
        ])
    }

    /// For each digit, `ctx.samples` samples asked for it, 100 at a time.
    fn samples_per_digit(&mut self, ctx: &mut EvalContext) -> Result<Vec<Tensor>> {
        self.set_training(false);
        (0..CLASSES)
            .map(|d| {
                let mut parts = Vec::new();
                let mut left = ctx.samples;
                while left > 0 {
                    let k = left.min(100);
                    parts.push(no_grad(|| self.sample_label(k, d, &mut ctx.rng))?);
                    left -= k;
                }
                Tensor::concat(&parts, 0)
            })
            .collect()
    }
}

/// `n` labels, the ten digits in equal runs (so a grid of 100 has a row per digit).
fn labels_in_runs(n: usize) -> Vec<usize> {
    (0..n).map(|i| i * CLASSES / n.max(1)).collect()
}

impl GenerativeModel for Cgan {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
    fn pixels(&self) -> Pixels {
        Pixels::Symmetric
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        self.players.weights()
    }
    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        self.players.optimizers()
    }
    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        self.players.optimizers_mut()
    }
    fn set_training(&mut self, training: bool) {
        self.players.set_training(training)
    }
    fn begin_epoch(&mut self, _epoch: u64) -> Result<()> {
        self.players.monitor.reset();
        Ok(())
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = batch.tensor(Pixels::Symmetric, rng)?;
        let labels: Vec<usize> = batch.labels.iter().map(|&l| usize::from(l)).collect();
        self.step(&x, &labels, rng)
    }
    /// The ten digits in equal runs.
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        to_unit(&self.generate(&labels_in_runs(n), rng)?)
    }
    fn sample_label(&mut self, n: usize, label: usize, rng: &mut Rng) -> Result<Tensor> {
        if label >= CLASSES {
            return Err(Error::invalid(
                "sample",
                format!("cgan draws the digits 0..=9, not {label}"),
            ));
        }
        to_unit(&self.generate(&vec![label; n], rng)?)
    }
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let monitor = self.players.monitor.clone();
        let mut m = epoch_metrics(self, ctx, Some(&monitor))?;
        // the agreement with the digit asked for, on the epoch's samples (equal runs of digits)
        let n = crate::adversarial::EPOCH_SAMPLES;
        let s = no_grad(|| self.sample(n, &mut Rng::new(0x5eed_ea7c)))?;
        let labels = labels_in_runs(n);
        let acc = ctx.sample_metrics(&s, Pixels::Unit, Some(&labels))?;
        m.extend(
            acc.into_iter()
                .filter(|m| m.name == "intended_label_accuracy"),
        );
        Ok(m)
    }
    /// The sample metrics of equal runs of digits (with the agreement with the digit asked
    /// for), then per digit its agreement and FCD ([`EvalContext::per_class_metrics`]).
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        self.set_training(false);
        let n = ctx.samples;
        let samples = no_grad(|| self.sample(n, &mut ctx.rng))?;
        let mut m = ctx.sample_metrics(&samples, Pixels::Unit, Some(&labels_in_runs(n)))?;
        let per_digit = self.samples_per_digit(ctx)?;
        m.extend(ctx.per_class_metrics(&per_digit)?);
        Ok(m)
    }
    /// `digits.png`: a row per digit asked for, ten draws each.
    fn end_of_training(&mut self, dir: &Path) -> Result<()> {
        let grid = no_grad(|| self.sample(100, &mut Rng::new(0xd161)))?;
        crate::program::checkpoint::write_atomic(
            &dir.join("digits.png"),
            &image::grid_png(&grid, Some(10), 2)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_player_sees_the_label_where_the_paper_puts_it() {
        let mut rng = Rng::new(3);
        let mut gan = Cgan::new(GanConfig::default(), &mut rng).unwrap();
        let planes = label_planes(&[2, 7], 28, 28).unwrap();
        assert_eq!(planes.shape(), &[2, 10, 28, 28]);
        let v = planes.to_vec_f64();
        let plane = |n: usize, c: usize| &v[(n * 10 + c) * 784..(n * 10 + c + 1) * 784];
        assert!(plane(0, 2).iter().all(|&x| x == 1.0) && plane(1, 7).iter().all(|&x| x == 1.0));
        assert_eq!(v.iter().sum::<f64>(), 2.0 * 784.0);
        // G: noise and label; D: image and planes
        let x = gan.sample_label(3, 4, &mut rng).unwrap();
        assert_eq!(x.shape(), &[3, 1, 28, 28]);
        let d_in = with_planes(&x, &[4, 4, 4]).unwrap();
        assert_eq!(d_in.shape(), &[3, 11, 28, 28]);
        assert_eq!(
            gan.players.discriminator.forward(&d_in).unwrap().shape(),
            &[3, 1]
        );
        assert!(gan.sample_label(1, 10, &mut rng).is_err());
        assert_eq!(labels_in_runs(20)[..4], [0, 0, 1, 1]);
        assert_eq!(labels_in_runs(100)[99], 9);
    }

    /// The label must matter to G: with the same noise, two labels give different images, and
    /// D's gradient reaches the label planes.
    #[test]
    fn the_label_changes_what_g_draws_and_what_d_sees() {
        let mut rng = Rng::new(5);
        let mut gan = Cgan::new(GanConfig::default(), &mut rng).unwrap();
        gan.set_training(false);
        let a = gan
            .sample_label(2, 1, &mut Rng::new(9))
            .unwrap()
            .to_vec_f64();
        let b = gan
            .sample_label(2, 8, &mut Rng::new(9))
            .unwrap()
            .to_vec_f64();
        let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
        assert!(diff > 1e-3, "the label does not reach G's output ({diff})");
        let x = Tensor::zeros(&[2, 1, 28, 28], DType::F32);
        let l1 = gan
            .players
            .discriminator
            .forward(&with_planes(&x, &[1, 1]).unwrap())
            .unwrap();
        let l8 = gan
            .players
            .discriminator
            .forward(&with_planes(&x, &[8, 8]).unwrap())
            .unwrap();
        let d: f64 = l1
            .to_vec_f64()
            .iter()
            .zip(l8.to_vec_f64())
            .map(|(p, q)| (p - q).abs())
            .sum();
        assert!(d > 1e-6, "the label does not reach D's output ({d})");
    }

    /// A few steps on a batch of two digits train both players (the losses move and stay
    /// finite).
    #[test]
    fn a_step_trains_both_players() {
        let mut rng = Rng::new(7);
        let mut gan = Cgan::new(GanConfig::default(), &mut rng).unwrap();
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..16).collect::<Vec<_>>());
        let g_sum = |gan: &Cgan| -> f64 {
            gan.weights()
                .iter()
                .filter(|(n, _)| n.starts_with("generator."))
                .map(|(_, t)| t.to_vec_f64().iter().sum::<f64>())
                .sum()
        };
        let before = g_sum(&gan);
        let first = gan.train_step(&batch, &mut rng).unwrap();
        for _ in 0..3 {
            gan.train_step(&batch, &mut rng).unwrap();
        }
        let last = gan.train_step(&batch, &mut rng).unwrap();
        assert!(first.iter().chain(&last).all(|(_, v)| v.is_finite()));
        assert_ne!(first[0].1, last[0].1);
        assert_ne!(before, g_sum(&gan));
    }
}
