//! InfoGAN (Chen, Duan, Houthooft, Schulman, Sutskever & Abbeel 2016, "InfoGAN: Interpretable
//! Representation Learning by Information Maximizing Generative Adversarial Nets").
//!
//! The generator's input is split into incompressible noise z (62-d, U(-1, 1) as in the paper's code) and a latent code
//! c: a 10-way categorical c1 and two continuous c2, c3 ~ U(-1, 1). Nothing ties c to the image
//! unless asked: InfoGAN adds the mutual information I(c; G(z, c)), through its variational
//! lower bound with an auxiliary distribution Q(c | x),
//!
//! ```text
//!   min_{G,Q} max_D  V(D, G) - lambda L_I(G, Q)
//!   L_I = E_{c ~ p(c), x ~ G(z, c)}[log Q(c | x)] + H(c)  <=  I(c; G(z, c))
//! ```
//!
//! With Q's categorical part a softmax over 10 logits and its continuous part a Gaussian of
//! fixed unit variance, -log Q(c | x) is a cross-entropy for c1 plus (c - mu(x))^2 / 2 per
//! continuous code (up to a constant). The networks are the paper's for MNIST (its table 1):
//!
//! ```text
//!   G:     [z | c] (74) -> FC 1024 -> BN -> ReLU -> FC 7*7*128 -> BN -> ReLU
//!            -> ConvT(128, 64, k4, s2) -> BN -> ReLU -> ConvT(64, 1, k4, s2) -> tanh
//!   trunk: x -> Conv(1, 64, k4, s2) -> LReLU -> Conv(64, 128, k4, s2) -> BN -> LReLU
//!            -> FC 1024 -> BN -> LReLU                          (shared by D and Q)
//!   D:     trunk -> FC 1                Q: trunk -> FC 128 -> BN -> LReLU -> FC 10 + 2
//! ```
//!
//! (the DCGAN's layers of [`crate::adversarial::networks`] with the extra FC 1024 layers). Each
//! batch both players take the information term into their own loss on the same generated
//! batch: D and its trunk minimise the BCE, Q's head lambda L_I on the trunk's detached
//! features (so the trunk learns only real against fake, and Q can read c1 only from what D
//! sees in a digit: training the trunk on L_I too, as the paper's code does, let trunk, Q and G
//! agree on a code of their own before G drew digits, and c1 erred on 53-70% of the test
//! digits); then G minimises the non-saturating loss plus lambda L_I through the updated trunk
//! and Q. One Adam per player, (0.5, 0.999), D at 2e-4 and G at 1e-3;
//! lambda = 1 for c1, `lambda_continuous` for c2, c3.
//!
//! Evaluation ([`Infogan::c1_error`]): Q's c1 as an unsupervised classifier of the test digits,
//! its clusters mapped to labels by the best one-to-one matching of the confusion matrix; and
//! traversal grids (`traversal_c2.png`, `traversal_c3.png`: rows c1 = 0..9, columns the
//! continuous code from -2 to 2, beyond the training range as in the paper's figure 2; one z for
//! the whole grid).

use crate::adversarial::networks::{
    check_latent, ConvGenerator, ConvTrunk, NormOptions, TRUNK_FEATURES,
};
use crate::adversarial::{
    bce_to, discriminator_loss, epoch_metrics, player_optimizers, player_optimizers_mut, to_unit,
    uniform_symmetric, Monitor, Network,
};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Mnist, Pixels};
use crate::program::eval::{EvalContext, Metric};
use crate::program::image;
use autograd::nn::{self, BatchNorm1d, Linear, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub static ENTRY: Entry = Entry {
    name: "infogan",
    title: "InfoGAN, 62-d noise + 10-way categorical + 2 continuous codes, D and Q sharing a trunk",
    paper: "Chen et al. 2016, InfoGAN: Interpretable Representation Learning by Information Maximizing GANs",
    family: Family::Adversarial,
    default_epochs: 20,
    default_batch_size: 64,
    default_config: || serde_json::to_value(InfoganConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(Infogan::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// The categorical code's size.
pub const CATEGORIES: usize = 10;
/// The continuous codes.
pub const CONTINUOUS: usize = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfoganConfig {
    /// Adam's learning rate for D, its trunk and Q's head.
    pub lr: f64,
    /// Adam's learning rate for G (the paper: 1e-3 for G, 2e-4 for D).
    pub lr_g: f64,
    /// The size of the noise z.
    pub noise: usize,
    /// z ~ U(-noise_scale, noise_scale).
    pub noise_scale: f64,
    /// lambda, the weight of the information term.
    pub lambda: f64,
    /// The weight of the continuous codes' term within it.
    pub lambda_continuous: f64,
}

impl InfoganConfig {
    /// n draws of z ~ U(-noise_scale, noise_scale), [n, noise].
    pub fn z(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        uniform_symmetric(&[n, self.noise], rng)?.mul_scalar(self.noise_scale)
    }
}

impl Default for InfoganConfig {
    fn default() -> Self {
        InfoganConfig {
            lr: 2e-4,
            lr_g: 1e-3,
            noise: 62,
            noise_scale: 1.0,
            lambda: 1.0,
            lambda_continuous: 0.1,
        }
    }
}

/// Q's head on the shared trunk's features.
struct QHead {
    fc1: Linear,
    bn: BatchNorm1d,
    fc2: Linear,
}

impl Module for QHead {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[("fc1", &self.fc1), ("bn", &self.bn), ("fc2", &self.fc2)],
            |m| m.named_parameters(),
        )
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::prefixed("bn", self.bn.named_buffers())
    }
    fn set_training(&mut self, training: bool) {
        self.bn.set_training(training)
    }
}

impl QHead {
    /// features [n, 6272] -> (c1 logits [n, 10], c2 c3 means [n, 2]).
    fn forward(&mut self, f: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.bn.forward(&self.fc1.forward(f)?)?.leaky_relu(0.2)?;
        let out = self.fc2.forward(&h)?;
        Ok((
            out.narrow(1, 0, CATEGORIES)?,
            out.narrow(1, CATEGORIES, CONTINUOUS)?,
        ))
    }
}

/// A draw of the generator's input: z, c1 (as labels and one-hot) and the continuous codes.
pub struct Codes {
    pub z: Tensor,
    pub c1: Vec<usize>,
    pub continuous: Tensor,
}

impl Codes {
    /// z as `config` draws it ([`InfoganConfig::z`]), c1 uniform on 0..10, c2 c3 ~ U(-1, 1).
    pub fn draw(n: usize, config: &InfoganConfig, rng: &mut Rng) -> Result<Codes> {
        let z = config.z(n, rng)?;
        let c1 = (0..n)
            .map(|_| rng.below(CATEGORIES as u64) as usize)
            .collect();
        let continuous = uniform_symmetric(&[n, CONTINUOUS], rng)?;
        Ok(Codes { z, c1, continuous })
    }

    /// [z | one-hot c1 | c2 c3], the generator's input.
    pub fn input(&self) -> Result<Tensor> {
        let onehot = Tensor::one_hot(&self.c1, CATEGORIES, DType::F32)?;
        Tensor::concat(&[self.z.clone(), onehot, self.continuous.clone()], 1)
    }
}

/// The width of the FC layers the paper adds to the DCGAN's G and D.
const HIDDEN: usize = 1024;

/// G: [z | c] -> FC 1024 -> BN -> ReLU -> the DCGAN generator.
struct InfoGenerator {
    fc: Linear,
    bn: BatchNorm1d,
    dcgan: ConvGenerator,
}

impl Module for InfoGenerator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("fc0", &self.fc),
                ("bn0_fc", &self.bn),
                ("dcgan", &self.dcgan),
            ],
            |m| m.named_parameters(),
        )
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::children(&[("bn0_fc", &self.bn), ("dcgan", &self.dcgan)], |m| {
            m.named_buffers()
        })
    }
    fn set_training(&mut self, training: bool) {
        self.bn.set_training(training);
        self.dcgan.set_training(training);
    }
}

impl Network for InfoGenerator {
    fn forward(&mut self, codes: &Tensor) -> Result<Tensor> {
        let h = self.bn.forward(&self.fc.forward(codes)?)?.relu()?;
        self.dcgan.forward(&h)
    }
}

/// D's and Q's shared trunk: the DCGAN discriminator's convolutions, then FC 1024 -> BN -> LReLU.
struct InfoTrunk {
    convs: ConvTrunk,
    fc: Linear,
    bn: BatchNorm1d,
}

impl InfoTrunk {
    fn features(&mut self, x: &Tensor) -> Result<Tensor> {
        let f = self.convs.features(x)?;
        self.bn.forward(&self.fc.forward(&f)?)?.leaky_relu(0.2)
    }
}

impl Module for InfoTrunk {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[("convs", &self.convs), ("fc", &self.fc), ("bn", &self.bn)],
            |m| m.named_parameters(),
        )
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::children(&[("convs", &self.convs), ("bn", &self.bn)], |m| {
            m.named_buffers()
        })
    }
    fn set_training(&mut self, training: bool) {
        self.convs.set_training(training);
        self.bn.set_training(training);
    }
}

/// D: the trunk and its logit.
struct InfoDiscriminator {
    trunk: InfoTrunk,
    head: Linear,
}

impl Module for InfoDiscriminator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(&[("trunk", &self.trunk), ("head", &self.head)], |m| {
            m.named_parameters()
        })
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::prefixed("trunk", self.trunk.named_buffers())
    }
    fn set_training(&mut self, training: bool) {
        self.trunk.set_training(training)
    }
}

impl Network for InfoDiscriminator {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let f = self.trunk.features(x)?;
        self.head.forward(&f)
    }
}

pub struct Infogan {
    config: InfoganConfig,
    generator: InfoGenerator,
    /// The trunk and D's head.
    discriminator: InfoDiscriminator,
    q: QHead,
    /// The trunk, D's head and Q's head.
    opt_d: Adam,
    /// G.
    opt_g: Adam,
    monitor: Monitor,
}

impl Infogan {
    pub fn new(config: InfoganConfig, rng: &mut Rng) -> Result<Infogan> {
        check_latent(ENTRY.name, "noise", config.noise)?;
        for (name, v) in [
            ("lambda", config.lambda),
            ("lambda_continuous", config.lambda_continuous),
            ("noise_scale", config.noise_scale),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(
                    ENTRY.name,
                    format!("{name} must be >= 0 and finite, got {v}"),
                ));
            }
        }
        let norm = NormOptions::default();
        let f32 = DType::F32;
        let generator = InfoGenerator {
            fc: Linear::new(
                config.noise + CATEGORIES + CONTINUOUS,
                HIDDEN,
                true,
                f32,
                rng,
            )?,
            bn: BatchNorm1d::new(HIDDEN, f32)?,
            dcgan: ConvGenerator::new(HIDDEN, norm, rng)?,
        };
        let discriminator = InfoDiscriminator {
            trunk: InfoTrunk {
                convs: ConvTrunk::new(Some(norm), rng)?,
                fc: Linear::new(TRUNK_FEATURES, HIDDEN, true, f32, rng)?,
                bn: BatchNorm1d::new(HIDDEN, f32)?,
            },
            head: Linear::new(HIDDEN, 1, true, f32, rng)?,
        };
        let q = QHead {
            fc1: Linear::new(HIDDEN, 128, true, f32, rng)?,
            bn: BatchNorm1d::new(128, f32)?,
            fc2: Linear::new(128, CATEGORIES + CONTINUOUS, true, f32, rng)?,
        };
        let adam = |lr| AdamConfig {
            lr,
            betas: (0.5, 0.999),
            ..AdamConfig::default()
        };
        let g = nn::prefixed("generator", generator.named_parameters());
        let mut d = nn::prefixed("discriminator", discriminator.named_parameters());
        d.extend(nn::prefixed("q", q.named_parameters()));
        Ok(Infogan {
            opt_d: Adam::new(d, adam(config.lr))?,
            opt_g: Adam::new(g, adam(config.lr_g))?,
            config,
            generator,
            discriminator,
            q,
            monitor: Monitor::default(),
        })
    }

    /// -log Q(c | x) per batch (mean) from the trunk's features of generated images: the
    /// cross-entropy of c1 plus lambda_continuous times the Gaussian term (c - mu)^2 / 2 summed
    /// over the continuous codes.
    fn information_loss(&mut self, features: &Tensor, codes: &Codes) -> Result<Tensor> {
        let (logits, mu) = self.q.forward(features)?;
        let ce = nn::loss::cross_entropy(&logits, &codes.c1, nn::Reduction::Mean)?;
        let gauss = mu
            .sub(&codes.continuous)?
            .square()?
            .sum(&[1], false)?
            .mean_all()?
            .mul_scalar(0.5)?;
        ce.add(&gauss.mul_scalar(self.config.lambda_continuous)?)
    }

    /// D's side of a step on real `x` and generated `fake`: the BCE of D and its trunk (real 1,
    /// generated 0), and Q's head's information term on the trunk's detached features, so that
    /// the trunk learns only real against fake. Returns (BCE, information term, real logits,
    /// fake logits).
    fn discriminator_objective(
        &mut self,
        x: &Tensor,
        fake: &Tensor,
        codes: &Codes,
    ) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let real_logits = self.discriminator.forward(x)?;
        let features = self.discriminator.trunk.features(&fake.detach())?;
        let fake_logits = self.discriminator.head.forward(&features)?;
        let d_loss = discriminator_loss(&real_logits, &fake_logits)?;
        let info = self.information_loss(&features.detach(), codes)?;
        Ok((d_loss, info, real_logits, fake_logits))
    }

    fn step(&mut self, x: &Tensor, rng: &mut Rng) -> Result<Losses> {
        let n = x.shape().first().copied().unwrap_or(0);
        let lambda = self.config.lambda;
        let codes = Codes::draw(n, &self.config, rng)?;
        let fake = self.generator.forward(&codes.input()?)?;
        let (d_loss, info, real_logits, fake_logits) =
            self.discriminator_objective(x, &fake, &codes)?;
        self.opt_d
            .minimize(&d_loss.add(&info.mul_scalar(lambda)?)?)?;
        self.monitor.record(&real_logits, &fake_logits);
        // G: fool the updated D and keep its code readable by the updated Q
        let features = self.discriminator.trunk.features(&fake)?;
        let g_loss = bce_to(&self.discriminator.head.forward(&features)?, 1.0)?;
        let g_info = self.information_loss(&features, &codes)?;
        self.opt_g
            .minimize(&g_loss.add(&g_info.mul_scalar(lambda)?)?)?;
        Ok(vec![
            ("d_loss".into(), d_loss.item()?),
            ("g_loss".into(), g_loss.item()?),
            ("info_loss".into(), g_info.item()?),
        ])
    }

    /// Q's most likely c1 for each image of `x` (in [-1, 1]).
    pub fn c1_of(&mut self, x: &Tensor) -> Result<Vec<usize>> {
        let (logits, _) = no_grad(|| {
            let f = self.discriminator.trunk.features(x)?;
            self.q.forward(&f)
        })?;
        Ok(crate::program::metrics::argmax_rows(
            &logits.to_vec_f64(),
            CATEGORIES,
        ))
    }

    /// c1 as an unsupervised classifier of the test digits: the error after mapping clusters to
    /// labels by the best one-to-one matching of the confusion matrix.
    pub fn c1_error(&mut self, ctx: &EvalContext) -> Result<f64> {
        let test = &ctx.data.test;
        let mut clusters = Vec::with_capacity(test.len());
        let idx: Vec<usize> = (0..test.len()).collect();
        for chunk in idx.chunks(100) {
            let b = test.batch(chunk);
            clusters.extend(self.c1_of(&b.tensor(Pixels::Symmetric, &mut Rng::new(0))?)?);
        }
        let labels: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
        Ok(matching_error(&clusters, &labels))
    }

    /// Whether G draws digits by c1: 50 samples for each value of c1, labelled by the
    /// harness's classifier, and the error of c1 as their label after the best one-to-one
    /// matching. Low when G's categories are the digits, whether or not Q reads them back from
    /// real digits.
    pub fn c1_sample_error(&mut self, ctx: &mut EvalContext) -> Result<f64> {
        let per_value = 50;
        let n = CATEGORIES * per_value;
        let mut codes = Codes::draw(n, &self.config, &mut ctx.rng)?;
        codes.c1 = (0..n).map(|i| i % CATEGORIES).collect();
        self.generator.set_training(false);
        let x = no_grad(|| self.generator.forward(&codes.input()?))?;
        let f = ctx.features(&to_unit(&x)?)?;
        let predicted = crate::program::metrics::argmax_rows(&f.logits, CATEGORIES);
        Ok(matching_error(&codes.c1, &predicted))
    }

    /// The traversal grid of continuous code `k`: rows c1 = 0..9, columns code k from -2 to 2
    /// (8 values), the other code 0 and one z for the whole grid, in [0, 1].
    pub fn traversal(&mut self, k: usize, rng: &mut Rng) -> Result<Tensor> {
        let cols = 8;
        let n = CATEGORIES * cols;
        // one z for the whole grid: rows differ in c1 only, columns in code k only
        let z_one: Vec<f32> = self.config.z(1, rng)?.to_vec_f32();
        let (mut z, mut c1, mut cont) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..CATEGORIES {
            for c in 0..cols {
                z.extend_from_slice(&z_one);
                c1.push(r);
                let v = -2.0 + 4.0 * c as f32 / (cols - 1) as f32;
                cont.extend(if k == 0 { [v, 0.0] } else { [0.0, v] });
            }
        }
        let codes = Codes {
            z: Tensor::from_vec(z, &[n, self.config.noise])?,
            c1,
            continuous: Tensor::from_vec(cont, &[n, CONTINUOUS])?,
        };
        self.generator.set_training(false);
        let x = no_grad(|| self.generator.forward(&codes.input()?))?;
        to_unit(&x)
    }
}

/// The fraction of items whose label is not their cluster's, under the one-to-one map of
/// clusters to labels that matches the most ([`best_matching`]).
pub fn matching_error(clusters: &[usize], labels: &[usize]) -> f64 {
    let mut confusion = [[0usize; CATEGORIES]; CATEGORIES];
    for (&c, &l) in clusters.iter().zip(labels) {
        confusion[c % CATEGORIES][l % CATEGORIES] += 1;
    }
    1.0 - best_matching(&confusion) as f64 / clusters.len().max(1) as f64
}

/// The largest number of items on the diagonal of `confusion` under some one-to-one map of rows
/// (clusters) to columns (labels): a dynamic programme over the sets of labels already taken.
pub fn best_matching(confusion: &[[usize; CATEGORIES]; CATEGORIES]) -> usize {
    let full = 1usize << CATEGORIES;
    // best[mask]: the most matched items with clusters 0..popcount(mask) mapped into `mask`
    let mut best = vec![0usize; full];
    for mask in 1..full {
        let row = mask.count_ones() as usize - 1;
        best[mask] = (0..CATEGORIES)
            .filter(|&l| mask & (1 << l) != 0)
            .map(|l| best[mask ^ (1 << l)] + confusion[row][l])
            .max()
            .unwrap_or(0);
    }
    best[full - 1]
}

impl Module for Infogan {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("generator", &self.generator),
                ("discriminator", &self.discriminator),
                ("q", &self.q),
            ],
            |m| m.named_parameters(),
        )
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("generator", &self.generator),
                ("discriminator", &self.discriminator),
                ("q", &self.q),
            ],
            |m| m.named_buffers(),
        )
    }
}

impl GenerativeModel for Infogan {
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
        Module::state_dict(self)
    }
    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        player_optimizers(&self.opt_g, &self.opt_d)
    }
    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        player_optimizers_mut(&mut self.opt_g, &mut self.opt_d)
    }
    fn set_training(&mut self, training: bool) {
        self.generator.set_training(training);
        self.discriminator.set_training(training);
        self.q.set_training(training);
    }
    fn begin_epoch(&mut self, _epoch: u64) -> Result<()> {
        self.monitor.reset();
        Ok(())
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = batch.tensor(Pixels::Symmetric, rng)?;
        self.step(&x, rng)
    }
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let codes = Codes::draw(n, &self.config, rng)?;
        to_unit(&self.generator.forward(&codes.input()?)?)
    }
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let monitor = self.monitor.clone();
        let mut m = epoch_metrics(self, ctx, Some(&monitor))?;
        m.push(Metric::new("c1_test_error", self.c1_error(ctx)?));
        m.push(Metric::new("c1_sample_error", self.c1_sample_error(ctx)?));
        Ok(m)
    }
    /// The sample metrics, then c1's test error as an unsupervised classifier and its error as
    /// the label of G's samples.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let samples = crate::model::draw_samples(self, ctx)?;
        let mut m = ctx.sample_metrics(&samples, Pixels::Unit, None)?;
        m.push(Metric::new("c1_test_error", self.c1_error(ctx)?));
        m.push(Metric::new("c1_sample_error", self.c1_sample_error(ctx)?));
        Ok(m)
    }
    fn end_of_training(&mut self, dir: &Path, _data: &Mnist) -> Result<()> {
        for (k, file) in ["traversal_c2.png", "traversal_c3.png"].iter().enumerate() {
            let grid = self.traversal(k, &mut Rng::new(0x7a5e))?;
            crate::program::checkpoint::write_atomic(
                &dir.join(file),
                &image::grid_png(&grid, Some(8), 2)?,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_matching_finds_the_permutation() {
        let mut c = [[0usize; CATEGORIES]; CATEGORIES];
        // cluster r holds digit (r + 3) % 10 mostly, plus noise
        for r in 0..CATEGORIES {
            c[r][(r + 3) % CATEGORIES] = 50 + r;
            c[r][(r + 5) % CATEGORIES] = 7;
        }
        let want: usize = (0..CATEGORIES).map(|r| 50 + r).sum();
        assert_eq!(best_matching(&c), want);
        // a greedy row-by-row choice would be wrong here: row 0 prefers 0, but 0 is worth more to row 1
        let mut g = [[0usize; CATEGORIES]; CATEGORIES];
        g[0][0] = 5;
        g[0][1] = 4;
        g[1][0] = 10;
        assert_eq!(best_matching(&g), 14);
    }

    #[test]
    fn the_matching_error_ignores_the_names_of_the_clusters() {
        let labels: Vec<usize> = (0..100).map(|i| i % CATEGORIES).collect();
        let renamed: Vec<usize> = labels.iter().map(|&l| (l * 3 + 1) % CATEGORIES).collect();
        assert_eq!(matching_error(&renamed, &labels), 0.0);
        // two clusters merged: one of them can match only one of its two labels
        let merged: Vec<usize> = labels.iter().map(|&l| if l == 9 { 4 } else { l }).collect();
        assert!((matching_error(&merged, &labels) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn the_noise_scale_narrows_z_and_nothing_else() {
        let scaled = |noise_scale| InfoganConfig {
            noise_scale,
            ..InfoganConfig::default()
        };
        let wide = Codes::draw(50, &scaled(1.0), &mut Rng::new(4)).unwrap();
        let narrow = Codes::draw(50, &scaled(0.1), &mut Rng::new(4)).unwrap();
        let (zw, zn) = (wide.z.to_vec_f64(), narrow.z.to_vec_f64());
        assert!(zw.iter().any(|v| v.abs() > 0.5));
        for (w, n) in zw.iter().zip(&zn) {
            assert!((n - 0.1 * w).abs() < 1e-6, "{n} against 0.1 x {w}");
        }
        assert_eq!(wide.c1, narrow.c1);
        assert_eq!(wide.continuous.to_vec_f64(), narrow.continuous.to_vec_f64());
        assert!(Infogan::new(scaled(-1.0), &mut Rng::new(0)).is_err());
    }

    /// -log Q(c | G(z, c)) of fixed codes, no step taken.
    fn information_of(gan: &mut Infogan, codes: &Codes) -> f64 {
        no_grad(|| {
            let fake = gan.generator.forward(&codes.input()?)?;
            let f = gan.discriminator.trunk.features(&fake)?;
            gan.information_loss(&f, codes)?.item()
        })
        .unwrap()
    }

    #[test]
    fn in_d_s_step_the_information_term_trains_q_and_not_the_trunk() {
        let m = crate::program::data::embedded().unwrap();
        let x = m.train.batch(&(0..8).collect::<Vec<_>>());
        let x = x.tensor(Pixels::Symmetric, &mut Rng::new(0)).unwrap();
        let mut rng = Rng::new(3);
        let mut gan = Infogan::new(InfoganConfig::default(), &mut rng).unwrap();
        let codes = Codes::draw(8, &gan.config, &mut rng).unwrap();
        let fake = gan.generator.forward(&codes.input().unwrap()).unwrap();
        let (_, info, _, _) = gan.discriminator_objective(&x, &fake, &codes).unwrap();
        info.backward().unwrap();
        let moved = |params: Vec<(String, Tensor)>| {
            params
                .iter()
                .filter_map(|(_, p)| p.grad())
                .map(|g| g.to_vec_f64().iter().map(|v| v.abs()).sum::<f64>())
                .sum::<f64>()
        };
        assert_eq!(moved(gan.discriminator.trunk.named_parameters()), 0.0);
        assert_eq!(moved(gan.generator.named_parameters()), 0.0);
        assert!(moved(gan.q.named_parameters()) > 0.0);
    }

    #[test]
    fn information_loss_falls_when_q_and_g_train() {
        let m = crate::program::data::embedded().unwrap();
        let batch = m.train.batch(&(0..32).collect::<Vec<_>>());
        let mut rng = Rng::new(8);
        let mut gan = Infogan::new(InfoganConfig::default(), &mut rng).unwrap();
        let held_out = Codes::draw(64, &gan.config, &mut Rng::new(9)).unwrap();
        let before = information_of(&mut gan, &held_out);
        for _ in 0..30 {
            gan.train_step(&batch, &mut rng).unwrap();
        }
        let after = information_of(&mut gan, &held_out);
        // at the start Q guesses: about log 10 for c1
        assert!(before > 0.8 * (CATEGORIES as f64).ln(), "before {before}");
        assert!(after < 0.5 * before, "info loss {before} -> {after}");
        let t = gan.traversal(1, &mut Rng::new(1)).unwrap();
        assert_eq!(t.shape(), &[80, 1, 28, 28]);
    }
}
