//! StarGAN (Choi, Choi, Kim, Ha, Kim & Choo 2018, "StarGAN: Unified Generative Adversarial
//! Networks for Multi-Domain Image-to-Image Translation"): one generator G(x, c) that takes a
//! digit x into any of the attribute domains c ([`crate::domains::sets`]: plain, thin, thick,
//! slanted left, slanted right, coloured), the target domain given as label maps (one plane per
//! domain, the target's all ones) joined to the image's channels. One critic D scores realism
//! (D_src, a 3 x 3 map of patch scores) and classifies the domain (D_cls):
//!
//! ```text
//!   L_D = -E[D_src(x)] + E[D_src(G(x, c))] + lambda_gp GP + lambda_cls E[-log D_cls(c' | x)]
//!   L_G = -E[D_src(G(x, c))] + lambda_cls E[-log D_cls(c | G(x, c))]
//!         + lambda_rec E[|x - G(G(x, c), c')|_1]
//! ```
//!
//! with x a real digit of domain c', c a random target, GP WGAN-GP's penalty on D_src
//! ([`crate::adversarial::wgan::gradient_penalty`]), lambda_cls = 1, lambda_rec = 10,
//! lambda_gp = 10, five critic steps per generator step, Adam (0.5, 0.999): the paper's
//! settings, but for the learning rate, 2e-4 rather than 1e-4 (G takes about 3,400 steps in the
//! 20 minutes; the higher rate kept more digits on both seeds tried, README). Every image has
//! three channels (a grey digit on all three), so the coloured domain fits.
//!
//! The networks are the paper's scaled to 28 x 28: G is CycleGAN's residual generator
//! ([`crate::adversarial::cycle_gan::ResnetGenerator`], instance norm) with 3 + 6 planes in (2
//! more with `coordinates`) and 3 out, one downsampling before its residual blocks (the paper's
//! two with `downsamplings`, no better here on the slanted domains, README); D is three 4 x 4
//! stride-2 convolutions (f, 2f, 4f, leaky ReLU 0.01, no normalisation, as WGAN-GP's critic
//! needs; f is `critic_filters` where that is set) to [4f, 3, 3], then a 3 x 3 convolution to
//! the patch scores and a 3 x 3 valid one to the six domain logits.
//!
//! **Translating with a weight average** (beyond the paper, as CycleGAN's translators here and
//! ProGAN's sampler): a moving average of G's weights ([`WeightAverage`], decay 0.999, updated
//! after every generator step) translates, and the trained G's figures are reported beside it as
//! `trained_*`. The trained G swings from epoch to epoch in how thin it draws (thin reached 45%
//! to 95% of the 100 epoch digits over the last four epochs of a run), its average does not
//! (91-98%); `ema_decay = 0` translates with G itself.
//!
//! **Data.** Each training digit is put in one domain for good, by a hash of its pixels, and
//! kept only if it measures in it (a thick digit is not plain, a thinning that fell short is
//! not thin). **Evaluation**, on the test digits, for each target domain but plain: the share
//! measured in the target domain (the coloured one: coloured at all, a mean spread between
//! channels above 0.1), the share the style classifier still reads as the same digit
//! ([`sets::read_digits`], a coloured digit's stroke taken as its brightest channel), and for
//! the grey domains the mean L1 to the true translation, each beside the true
//! translations' figures.

use crate::adversarial::cycle_gan::{conv, ResnetGenerator};
use crate::adversarial::wgan::gradient_penalty;
use crate::adversarial::{
    linearly_decayed_lr, player_optimizers, player_optimizers_mut, player_weights,
    symmetric_from_grey, to_unit, Network, WeightAverage,
};
use crate::domains::morpho;
use crate::domains::sets::{self, to_grey_levels, Domain, MadeDigits};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Mnist};
use crate::program::eval::{EvalContext, Metric};
use crate::program::{checkpoint, image};
use autograd::nn::{self, Conv2d, Module, Reduction};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub static ENTRY: Entry = Entry {
    name: "stargan",
    title: "StarGAN, one generator over six digit domains: WGAN-GP, domain classification, reconstruction",
    paper: "Choi et al. 2018, StarGAN: Unified Generative Adversarial Networks for Multi-Domain Image-to-Image Translation",
    family: Family::Adversarial,
    default_epochs: 30,
    default_batch_size: 16,
    default_config: || serde_json::to_value(StarConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(StarGan::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

const N: usize = 28;
const PIXELS: usize = N * N;
/// Every image's planes.
const CHANNELS: usize = 3;
/// The domains, in the order of D_cls's logits and of the label maps.
pub const DOMAINS: [Domain; 6] = Domain::ALL;
/// The targets evaluated: every domain but plain (the test digits' own).
pub const TARGETS: [Domain; 5] = [
    Domain::Thin,
    Domain::Thick,
    Domain::SlantedLeft,
    Domain::SlantedRight,
    Domain::Coloured,
];
/// Test digits the per-epoch metrics translate (all of them in `genzoo eval`).
const EPOCH_DIGITS: usize = 100;
/// Above this mean spread between an image's channels it counts as coloured.
pub const COLOURED_SPREAD: f64 = 0.1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StarConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Critic steps per generator step.
    pub n_critic: usize,
    /// lambda_gp, lambda_cls, lambda_rec.
    pub gp_weight: f64,
    pub cls_weight: f64,
    pub rec_weight: f64,
    /// Channels of the networks' first layer (f).
    pub filters: usize,
    /// Residual blocks of the generator.
    pub blocks: usize,
    /// Epochs at the full learning rate before it decays (the paper, CelebA: 10 of 20).
    pub constant_epochs: u64,
    /// Epochs over which both players' rates then decay linearly towards 0
    /// ([`linearly_decayed_lr`]; the paper: 10). 0: a constant rate.
    pub decay_epochs: u64,
    /// Decay of a moving average of G's weights, updated after every generator step, that
    /// translates (beyond the paper, as CycleGAN's averages; [`WeightAverage`]); the trained
    /// G's figures are reported beside it as `trained_*`. 0: no average, the trained G
    /// translates (the paper).
    #[serde(default = "crate::adversarial::saved_before_averages")]
    pub ema_decay: f64,
    /// Two more input planes for G holding each pixel's column and row, scaled to [-1, 1]
    /// (CoordConv, Liu et al. 2018; beyond the paper): a shear moves a pixel by an amount that
    /// depends on its row, which convolutions alone do not see. false: the paper's input (and
    /// what a run saved before the key reads as).
    #[serde(default)]
    pub coordinates: bool,
    /// G's stride-2 convolutions before its residual blocks: 1 (blocks at 14 x 14, 2f planes)
    /// or 2 (at 7 x 7, 4f planes: the paper's two). A run saved before the key had one.
    #[serde(default = "one_downsampling")]
    pub downsamplings: usize,
    /// Channels of the critic's first layer, if not `filters` (the paper's G and D both start
    /// at 64; here at f = 32, and the critic, the cheaper network, can be made wider alone).
    #[serde(default)]
    pub critic_filters: Option<usize>,
}

/// What a config saved before `downsamplings` reads as.
fn one_downsampling() -> usize {
    1
}

impl Default for StarConfig {
    fn default() -> Self {
        StarConfig {
            // the paper's 1e-4 kept fewer digits on both seeds tried (README); 30 epochs at
            // 2e-4 fit the 20 minutes now that the image head skips im2col
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            n_critic: 5,
            gp_weight: 10.0,
            cls_weight: 1.0,
            rec_weight: 10.0,
            filters: 32,
            blocks: 3,
            constant_epochs: 10,
            // off: seed 0 with the paper's 10 + 10 kept the digit as often or less (coloured
            // 74.0% against 79.8%) and reached thin less (83.3% against 95.2%) (README)
            decay_epochs: 0,
            // seed 0, 20 epochs, all test digits: the average reaches the thin domain for
            // 95.2% (the trained G of the same run 78.2%)
            ema_decay: 0.999,
            coordinates: false,
            downsamplings: 1,
            critic_filters: None,
        }
    }
}

/// D: the shared trunk, the patch scores D_src and the domain logits D_cls (module doc).
pub struct StarCritic {
    c1: Conv2d,
    c2: Conv2d,
    c3: Conv2d,
    src: Conv2d,
    cls: Conv2d,
}

const SLOPE: f64 = 0.01;

impl StarCritic {
    pub fn new(f: usize, rng: &mut Rng) -> Result<StarCritic> {
        Ok(StarCritic {
            c1: conv(CHANNELS, f, 4, 2, 1, rng)?,
            c2: conv(f, 2 * f, 4, 2, 1, rng)?,
            c3: conv(2 * f, 4 * f, 4, 2, 1, rng)?,
            src: conv(4 * f, 1, 3, 1, 1, rng)?,
            cls: conv(4 * f, DOMAINS.len(), 3, 1, 0, rng)?,
        })
    }

    fn trunk(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.c1.forward(x)?.leaky_relu(SLOPE)?;
        let h = self.c2.forward(&h)?.leaky_relu(SLOPE)?;
        self.c3.forward(&h)?.leaky_relu(SLOPE)
    }

    /// Images [n, 3, 28, 28] -> patch scores [n, 1, 3, 3] and domain logits [n, 6].
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.trunk(x)?;
        let n = x.shape()[0];
        let logits = self.cls.forward(&h)?.reshape(&[n, DOMAINS.len()])?;
        Ok((self.src.forward(&h)?, logits))
    }

    /// The patch scores alone (what the gradient penalty constrains).
    fn score(&self, x: &Tensor) -> Result<Tensor> {
        self.src.forward(&self.trunk(x)?)
    }
}

impl Module for StarCritic {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("c1", &self.c1),
                ("c2", &self.c2),
                ("c3", &self.c3),
                ("src", &self.src),
                ("cls", &self.cls),
            ],
            |m| m.named_parameters(),
        )
    }
}

/// A training digit in its domain: [3, 28, 28] in [0, 1] and the domain's index.
#[derive(Clone)]
struct InDomain {
    planes: Vec<f32>,
    domain: usize,
}

/// The digit put in the domain its hash picks, kept if it measures in it (module doc).
fn make_training_digit(img: &[u8], _label: usize, hash: u64) -> Option<InDomain> {
    let domain = (hash % DOMAINS.len() as u64) as usize;
    let d = DOMAINS[domain];
    let made = d.apply(img, &mut Rng::new(hash));
    if d.channels() == 1 {
        let m = morpho::measure(&to_grey_levels(&made), N, N)?;
        if d.holds(&m) != Some(true) {
            return None;
        }
    }
    Some(InDomain {
        planes: three_planes(made),
        domain,
    })
}

/// One plane repeated on all three (three planes are kept as they are).
fn three_planes(planes: Vec<f32>) -> Vec<f32> {
    if planes.len() == PIXELS {
        planes.repeat(CHANNELS)
    } else {
        planes
    }
}

/// [3, 28, 28] in [0, 1] -> the mean of the three channels, [28, 28].
fn channel_mean(planes: &[f32]) -> Vec<f32> {
    (0..PIXELS)
        .map(|p| (planes[p] + planes[PIXELS + p] + planes[2 * PIXELS + p]) / 3.0)
        .collect()
}

/// [3, 28, 28] in [0, 1] -> the mean spread between channels, max - min (0 for a grey image).
pub fn channel_spread(planes: &[f32]) -> f64 {
    (0..PIXELS)
        .map(|p| {
            let v = [planes[p], planes[PIXELS + p], planes[2 * PIXELS + p]];
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            f64::from(hi - lo)
        })
        .sum::<f64>()
        / PIXELS as f64
}

/// The grey digit a classifier should read from [3, 28, 28] in [0, 1]: a coloured image's
/// stroke is its brightest channel above the background's (whose value is at most 0.45), a grey
/// one's the mean of its channels.
fn digit_view(planes: &[f32]) -> Vec<u8> {
    let grey: Vec<f32> = if channel_spread(planes) > COLOURED_SPREAD {
        (0..PIXELS)
            .map(|p| {
                let hi = planes[p]
                    .max(planes[PIXELS + p])
                    .max(planes[2 * PIXELS + p]);
                ((hi - 0.5) * 2.0).clamp(0.0, 1.0)
            })
            .collect()
    } else {
        channel_mean(planes)
    };
    to_grey_levels(&grey)
}

/// Whether [3, 28, 28] in [0, 1] is in `domain` by measurement (the coloured domain: coloured
/// at all).
fn reached(planes: &[f32], domain: Domain) -> bool {
    if domain == Domain::Coloured {
        return channel_spread(planes) > COLOURED_SPREAD;
    }
    morpho::measure(&to_grey_levels(&channel_mean(planes)), N, N).and_then(|m| domain.holds(&m))
        == Some(true)
}

fn domain_index(d: Domain) -> usize {
    DOMAINS.iter().position(|&x| x == d).unwrap_or(0)
}

/// The target domains as label maps: [n, 6, 28, 28], plane c all ones for a target c.
fn label_maps(targets: &[usize]) -> Result<Tensor> {
    let n = targets.len();
    Tensor::one_hot(targets, DOMAINS.len(), DType::F32)?
        .reshape(&[n, DOMAINS.len(), 1, 1])?
        .expand(&[n, DOMAINS.len(), N, N])
}

pub struct StarGan {
    config: StarConfig,
    g: ResnetGenerator,
    d: StarCritic,
    opt_g: Adam,
    opt_d: Adam,
    /// Critic steps taken (every `n_critic`-th is followed by a generator step); kept in
    /// checkpoints.
    critic_steps: Tensor,
    made: MadeDigits<InDomain>,
    /// The moving average of G (`ema_decay` > 0), which translates.
    average: Option<WeightAverage<ResnetGenerator>>,
}

impl StarGan {
    pub fn new(config: StarConfig, rng: &mut Rng) -> Result<StarGan> {
        let c = &config;
        if c.n_critic == 0 || c.n_critic > 100 {
            return Err(Error::invalid(
                ENTRY.name,
                format!("n_critic must be in 1..=100, got {}", c.n_critic),
            ));
        }
        let critic_filters = c.critic_filters.unwrap_or(c.filters);
        for (key, v) in [
            ("filters", c.filters),
            ("critic_filters", critic_filters),
            ("blocks", c.blocks),
        ] {
            if v == 0 || v > 512 {
                return Err(Error::invalid(
                    ENTRY.name,
                    format!("{key} must be in 1..=512, got {v}"),
                ));
            }
        }
        for (key, v) in [
            ("gp_weight", c.gp_weight),
            ("cls_weight", c.cls_weight),
            ("rec_weight", c.rec_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    ENTRY.name,
                    format!("{key} must be a finite number >= 0, got {v}"),
                ));
            }
        }
        crate::adversarial::check_ema_decay(ENTRY.name, c.ema_decay)?;
        let generator = |rng: &mut Rng| {
            ResnetGenerator::with_channels(
                CHANNELS + DOMAINS.len() + if c.coordinates { 2 } else { 0 },
                CHANNELS,
                c.filters,
                c.downsamplings,
                c.blocks,
                rng,
            )
        };
        let g = generator(rng)?;
        let d = StarCritic::new(critic_filters, rng)?;
        let average = if c.ema_decay > 0.0 {
            // its own tensors, made without drawing on the run's generator
            Some(WeightAverage::new(
                generator(&mut Rng::new(0))?,
                &g,
                c.ema_decay,
            )?)
        } else {
            None
        };
        let adam = AdamConfig {
            lr: c.lr,
            betas: (c.beta1, c.beta2),
            ..AdamConfig::default()
        };
        let opt_g = Adam::new(nn::prefixed("generator", g.named_parameters()), adam)?;
        let opt_d = Adam::new(nn::prefixed("discriminator", d.named_parameters()), adam)?;
        Ok(StarGan {
            config,
            g,
            d,
            opt_g,
            opt_d,
            critic_steps: Tensor::zeros(&[], DType::F64),
            made: MadeDigits::default(),
            average,
        })
    }

    /// G(x, c): images [n, 3, 28, 28] in [-1, 1] into the domains `targets`.
    fn translate(&mut self, x: &Tensor, targets: &[usize]) -> Result<Tensor> {
        translate_by(&mut self.g, x, targets, self.config.coordinates)
    }

    /// The generator that translates: the average where there is one, else G.
    fn translator(&mut self) -> &mut ResnetGenerator {
        match &mut self.average {
            Some(avg) => &mut avg.net,
            None => &mut self.g,
        }
    }

    /// One critic step on real images `x` ([-1, 1]) of the domains `own`; every `n_critic`-th
    /// also a generator step.
    fn step(&mut self, x: &Tensor, own: &[usize], rng: &mut Rng) -> Result<Losses> {
        let n = own.len();
        let k = DOMAINS.len() as u64;
        let targets: Vec<usize> = (0..n).map(|_| rng.below(k) as usize).collect();
        let steps = self.critic_steps.item()? as u64 + 1;
        let generator_step = steps.is_multiple_of(self.config.n_critic as u64);
        // G does not change during the critic's step, so on a step that trains G too its
        // translation is made once, with its graph, and the critic reads it detached
        let graphed = generator_step
            .then(|| self.translate(x, &targets))
            .transpose()?;
        let fake = match &graphed {
            Some(f) => f.detach(),
            None => no_grad(|| self.translate(x, &targets))?,
        };
        let (src_real, cls_real) = self.d.forward(x)?;
        let (src_fake, _) = self.d.forward(&fake)?;
        let wasserstein = src_real.mean_all()?.sub(&src_fake.mean_all()?)?;
        let d_cls = nn::loss::cross_entropy(&cls_real, own, Reduction::Mean)?;
        let e = Tensor::rand(&[n, 1, 1, 1], DType::F32, rng);
        let critic = &self.d;
        let gp = gradient_penalty(&mut |v| critic.score(v), x, &fake, &e)?;
        let c = &self.config;
        let d_loss = wasserstein
            .neg()?
            .add(&d_cls.mul_scalar(c.cls_weight)?)?
            .add(&gp.mul_scalar(c.gp_weight)?)?;
        self.opt_d.minimize(&d_loss)?;
        self.critic_steps = Tensor::scalar(steps as f64, DType::F64);
        let mut out: Losses = vec![
            ("d_loss".into(), d_loss.item()?),
            ("wasserstein".into(), wasserstein.item()?),
            ("d_cls".into(), d_cls.item()?),
            ("penalty".into(), gp.item()?),
        ];
        if let Some(fake) = graphed {
            let (src_fake, cls_fake) = self.d.forward(&fake)?;
            let g_cls = nn::loss::cross_entropy(&cls_fake, &targets, Reduction::Mean)?;
            let back = self.translate(&fake, own)?;
            let rec = back.sub(x)?.abs()?.mean_all()?;
            let c = &self.config;
            let g_loss = src_fake
                .mean_all()?
                .neg()?
                .add(&g_cls.mul_scalar(c.cls_weight)?)?
                .add(&rec.mul_scalar(c.rec_weight)?)?;
            self.opt_g.minimize(&g_loss)?;
            if let Some(avg) = &mut self.average {
                avg.update(&self.g)?;
            }
            out.push(("g_loss".into(), g_loss.item()?));
            out.push(("g_cls".into(), g_cls.item()?));
            out.push(("reconstruction".into(), rec.item()?));
        }
        Ok(out)
    }

    /// The test digits `rows` as [n, 3, 28, 28] in [-1, 1] (the grey plane on all three), with
    /// their labels.
    fn test_digits(data: &Mnist, rows: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        let grey: Vec<u8> = rows
            .iter()
            .flat_map(|&i| data.test.image(i).iter().copied())
            .collect();
        let x = symmetric_from_grey(&grey)?.expand(&[rows.len(), CHANNELS, N, N])?;
        let labels = rows.iter().map(|&i| data.test.labels[i].into()).collect();
        Ok((x, labels))
    }

    /// The first `n` test digits (all of them if fewer).
    fn first_test_digits(data: &Mnist, n: usize) -> Result<(Tensor, Vec<usize>)> {
        let rows: Vec<usize> = (0..n.min(data.test.len())).collect();
        Self::test_digits(data, &rows)
    }

    /// Per target domain: reached, digit kept, and L1 to the true translation (grey domains),
    /// on the first `n` test digits, beside the true translations' figures; for the translator
    /// and, where that is an average, for the trained G as `trained_*`.
    fn translation_metrics(&mut self, ctx: &mut EvalContext, n: usize) -> Result<Vec<Metric>> {
        let (x, labels) = Self::first_test_digits(ctx.data, n)?;
        let n = labels.len();
        let originals = &ctx.data.test.images[..n * PIXELS];
        let coordinates = self.config.coordinates;
        let mut ours = Figures::new("");
        let mut trained = self.average.is_some().then(|| Figures::new("trained_"));
        for target in TARGETS {
            let truth: Vec<f32> = originals
                .par_chunks(PIXELS)
                .enumerate()
                .flat_map_iter(|(i, img)| three_planes(target.apply(img, &mut Rng::new(i as u64))))
                .collect();
            let real = Measured::of(ctx, &truth, &truth, &labels, target)?;
            let made = translated(self.translator(), &x, target, coordinates)?;
            ours.add(
                Measured::of(ctx, &made, &truth, &labels, target)?,
                &real,
                target,
                n,
            );
            if let Some(t) = &mut trained {
                let made = translated(&mut self.g, &x, target, coordinates)?;
                t.add(
                    Measured::of(ctx, &made, &truth, &labels, target)?,
                    &real,
                    target,
                    n,
                );
            }
        }
        let mut out = ours.finish();
        if let Some(t) = trained {
            out.extend(t.finish());
        }
        Ok(out)
    }
}

/// G(x, c) of the generator `g`: images [n, 3, 28, 28] in [-1, 1] into the domains `targets`,
/// with the coordinate planes after the label maps where G takes them.
fn translate_by(
    g: &mut ResnetGenerator,
    x: &Tensor,
    targets: &[usize],
    coordinates: bool,
) -> Result<Tensor> {
    let mut planes = vec![x.clone(), label_maps(targets)?];
    if coordinates {
        planes.push(coordinate_planes(targets.len())?);
    }
    g.forward(&Tensor::concat(&planes, 1)?)
}

/// [n, 2, 28, 28]: each pixel's column, then its row, scaled from 0..27 to [-1, 1].
fn coordinate_planes(n: usize) -> Result<Tensor> {
    let scaled = |i: usize| (i as f32 - 13.5) / 13.5;
    let planes: Vec<f32> = (0..PIXELS)
        .map(|p| scaled(p % N))
        .chain((0..PIXELS).map(|p| scaled(p / N)))
        .collect();
    Tensor::from_vec(planes, &[1, 2, N, N])?.expand(&[n, 2, N, N])
}

/// `x` translated into `target` by `g`, as [n, 3, 28, 28] in [0, 1] values.
fn translated(
    g: &mut ResnetGenerator,
    x: &Tensor,
    target: Domain,
    coordinates: bool,
) -> Result<Vec<f32>> {
    let n = x.shape()[0];
    let out = no_grad(|| translate_by(g, x, &vec![domain_index(target); n], coordinates))?;
    Ok(to_unit(&out)?.to_vec_f32())
}

/// The measures of translations into one target: the share in the target domain, the share
/// whose digit is kept, and (grey domains) the mean L1 to the true translations.
struct Measured {
    reached: f64,
    kept: f64,
    l1: f64,
}

impl Measured {
    fn of(
        ctx: &mut EvalContext,
        made: &[f32],
        truth: &[f32],
        labels: &[usize],
        target: Domain,
    ) -> Result<Measured> {
        let reached = made
            .par_chunks(CHANNELS * PIXELS)
            .filter(|p| reached(p, target))
            .count() as f64
            / labels.len() as f64;
        let l1 = made
            .iter()
            .zip(truth)
            .map(|(p, q)| f64::from((p - q).abs()))
            .sum::<f64>()
            / made.len() as f64;
        Ok(Measured {
            reached,
            kept: digit_kept(ctx, made, labels)?,
            l1,
        })
    }
}

/// One generator's metrics over the targets, named with `prefix`.
struct Figures {
    prefix: &'static str,
    metrics: Vec<Metric>,
    lowest_reached: f64,
    lowest_kept: f64,
}

impl Figures {
    fn new(prefix: &'static str) -> Figures {
        Figures {
            prefix,
            metrics: Vec::new(),
            lowest_reached: f64::INFINITY,
            lowest_kept: f64::INFINITY,
        }
    }

    /// The measures `m` of translations into `target` of `n` test digits, beside the true
    /// translations' `real`.
    fn add(&mut self, m: Measured, real: &Measured, target: Domain, n: usize) {
        self.lowest_reached = self.lowest_reached.min(m.reached);
        self.lowest_kept = self.lowest_kept.min(m.kept);
        let name = format!("{}{}", self.prefix, target.name().replace('-', "_"));
        self.metrics.push(
            Metric::with_baseline(format!("{name}_reached"), m.reached, real.reached)
                .detail(format!("{n} test digits; baseline: the true translations")),
        );
        self.metrics.push(Metric::with_baseline(
            format!("{name}_digit_kept"),
            m.kept,
            real.kept,
        ));
        if target.channels() == 1 {
            self.metrics
                .push(Metric::new(format!("{name}_l1_to_truth"), m.l1));
        }
    }

    fn finish(mut self) -> Vec<Metric> {
        let p = self.prefix;
        self.metrics.push(Metric::new(
            format!("{p}lowest_reached"),
            self.lowest_reached,
        ));
        self.metrics.push(Metric::new(
            format!("{p}lowest_digit_kept"),
            self.lowest_kept,
        ));
        self.metrics
    }
}

/// The share of `planes` ([n, 3, 28, 28] in [0, 1]) the style classifier reads as `labels`
/// ([`digit_view`], then [`sets::read_digits`]).
fn digit_kept(ctx: &mut EvalContext, planes: &[f32], labels: &[usize]) -> Result<f64> {
    let views: Vec<u8> = planes
        .par_chunks(CHANNELS * PIXELS)
        .flat_map_iter(digit_view)
        .collect();
    Ok(sets::share_equal(&sets::read_digits(ctx, &views)?, labels))
}

impl GenerativeModel for StarGan {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        let mut w = player_weights(&self.g, &self.d);
        w.push(("critic_steps".into(), self.critic_steps.clone()));
        if let Some(avg) = &self.average {
            w.extend(avg.state("generator_average"));
        }
        w
    }
    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        player_optimizers(&self.opt_g, &self.opt_d)
    }
    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        player_optimizers_mut(&mut self.opt_g, &mut self.opt_d)
    }
    /// Two digits at least, as the step has always asked (what the domains' digits are made
    /// of can fail for a digit, so a step may still find fewer and say so).
    fn min_batch(&self) -> usize {
        2
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let items = self.made.of_batch(batch, make_training_digit);
        let least = self.min_batch();
        if items.len() < least {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "fewer than {least} digits of this batch are in their domain: use a larger \
                     batch size"
                ),
            ));
        }
        let planes: Vec<f32> = items
            .iter()
            .flat_map(|d| d.planes.iter().map(|v| v * 2.0 - 1.0))
            .collect();
        let own: Vec<usize> = items.iter().map(|d| d.domain).collect();
        let x = Tensor::from_vec(planes, &[items.len(), CHANNELS, N, N])?;
        self.step(&x, &own, rng)
    }
    fn sample(&mut self, _n: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "sample",
            "stargan translates digits rather than drawing them: its samples are the test digits translated (sample_given)",
        ))
    }
    /// The test digits translated, sample i being test digit i / 5 (wrapping) into target
    /// i mod 5 (a grid of ten columns: two digits a row, each into the five targets).
    fn sample_given(
        &mut self,
        first: usize,
        n: usize,
        data: &Mnist,
        _rng: &mut Rng,
    ) -> Result<Tensor> {
        let rows: Vec<usize> = (first..first + n)
            .map(|i| (i / TARGETS.len()) % data.test.len())
            .collect();
        let targets: Vec<usize> = (first..first + n)
            .map(|i| domain_index(TARGETS[i % TARGETS.len()]))
            .collect();
        let (inputs, _) = Self::test_digits(data, &rows)?;
        let coordinates = self.config.coordinates;
        to_unit(&translate_by(
            self.translator(),
            &inputs,
            &targets,
            coordinates,
        )?)
    }
    fn begin_epoch(&mut self, epoch: u64) -> Result<()> {
        let c = &self.config;
        let lr = linearly_decayed_lr(c.lr, epoch, c.constant_epochs, c.decay_epochs);
        self.opt_g.set_lr(lr)?;
        self.opt_d.set_lr(lr)
    }

    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        self.translation_metrics(ctx, EPOCH_DIGITS)
    }
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let n = ctx.data.test.len();
        self.translation_metrics(ctx, n)
    }
    /// `translations.png`: a row per test digit (ten), the digit, then its translations into
    /// the five targets.
    fn end_of_training(&mut self, dir: &Path, data: &Mnist) -> Result<()> {
        let (x, _) = Self::first_test_digits(data, 10)?;
        let mut columns = vec![to_unit(&x)?.to_vec_f32()];
        let coordinates = self.config.coordinates;
        for target in TARGETS {
            columns.push(translated(self.translator(), &x, target, coordinates)?);
        }
        let per = CHANNELS * PIXELS;
        let cells: Vec<f32> = (0..10)
            .flat_map(|row| {
                columns
                    .iter()
                    .flat_map(move |c| c[row * per..(row + 1) * per].iter().copied())
            })
            .collect();
        let grid = Tensor::from_vec(cells, &[10 * columns.len(), CHANNELS, N, N])?;
        checkpoint::write_atomic(
            &dir.join("translations.png"),
            &image::grid_png(&grid, Some(columns.len()), 2)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_maps_hold_one_plane_of_ones() {
        let m = label_maps(&[2, 5]).unwrap();
        assert_eq!(m.shape(), &[2, 6, 28, 28]);
        let v = m.to_vec_f64();
        let plane = |i: usize, c: usize| &v[(i * 6 + c) * PIXELS..(i * 6 + c + 1) * PIXELS];
        assert!(plane(0, 2).iter().all(|&x| x == 1.0));
        assert!(plane(1, 5).iter().all(|&x| x == 1.0));
        assert!(plane(0, 5).iter().all(|&x| x == 0.0));
        assert_eq!(v.iter().sum::<f64>(), 2.0 * PIXELS as f64);
    }

    /// With `coordinates`, G reads two more planes, a column ramp and a row ramp from -1 to 1,
    /// and still translates; a config saved before the key reads as the paper's input.
    #[test]
    fn coordinates_are_two_more_planes_for_g() {
        let planes = coordinate_planes(2).unwrap();
        assert_eq!(planes.shape(), &[2, 2, 28, 28]);
        let v = planes.to_vec_f32();
        let at = |i: usize, c: usize, row: usize, col: usize| v[((i * 2 + c) * N + row) * N + col];
        assert_eq!((at(1, 0, 5, 0), at(1, 0, 5, 27)), (-1.0, 1.0));
        assert_eq!((at(1, 1, 0, 9), at(1, 1, 27, 9)), (-1.0, 1.0));
        assert!((at(0, 0, 3, 14) - 0.5 / 13.5).abs() < 1e-6);
        let config = StarConfig {
            coordinates: true,
            filters: 4,
            blocks: 1,
            ..StarConfig::default()
        };
        let mut model = StarGan::new(config, &mut Rng::new(0)).unwrap();
        let stem = model
            .g
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == "stem.weight")
            .unwrap()
            .1;
        assert_eq!(stem.shape(), &[4, CHANNELS + DOMAINS.len() + 2, 7, 7]);
        let x = Tensor::zeros(&[2, CHANNELS, N, N], DType::F32);
        assert_eq!(
            model.translate(&x, &[1, 4]).unwrap().shape(),
            &[2, 3, 28, 28]
        );
        let mut saved = serde_json::to_value(StarConfig::default()).unwrap();
        saved.as_object_mut().unwrap().remove("coordinates");
        let read: StarConfig = serde_json::from_value(saved).unwrap();
        assert!(!read.coordinates);
    }

    /// With two downsamplings G's residual blocks run at 7 x 7 on 4f planes and it still
    /// translates 28 x 28; a third is refused (7 does not halve whole); a config saved before
    /// the key reads as one.
    #[test]
    fn two_downsamplings_put_the_blocks_at_seven_by_seven() {
        let config = StarConfig {
            downsamplings: 2,
            filters: 4,
            blocks: 1,
            ..StarConfig::default()
        };
        let mut model = StarGan::new(config.clone(), &mut Rng::new(0)).unwrap();
        let shapes: std::collections::HashMap<String, Vec<usize>> = model
            .g
            .named_parameters()
            .into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect();
        assert_eq!(shapes["down.weight"], [8, 4, 4, 4]);
        assert_eq!(shapes["down2.weight"], [16, 8, 4, 4]);
        assert_eq!(shapes["block0.a.weight"], [16, 16, 3, 3]);
        assert_eq!(shapes["up2.weight"], [16, 8, 4, 4]);
        assert_eq!(shapes["up.weight"], [8, 4, 4, 4]);
        let x = Tensor::zeros(&[2, CHANNELS, N, N], DType::F32);
        assert_eq!(
            model.translate(&x, &[1, 4]).unwrap().shape(),
            &[2, 3, 28, 28]
        );
        for bad in [0, 3] {
            let config = StarConfig {
                downsamplings: bad,
                ..config.clone()
            };
            let err = StarGan::new(config, &mut Rng::new(0)).err().unwrap();
            assert!(err.to_string().contains("downsamplings"), "{err}");
        }
        let mut saved = serde_json::to_value(StarConfig::default()).unwrap();
        saved.as_object_mut().unwrap().remove("downsamplings");
        let read: StarConfig = serde_json::from_value(saved).unwrap();
        assert_eq!(read.downsamplings, 1);
    }

    /// `critic_filters` widens the critic alone; unset, it is as wide as `filters`; 0 is
    /// refused; a config saved before the key reads as unset.
    #[test]
    fn the_critic_can_be_wider_than_the_generator() {
        let config = StarConfig {
            filters: 4,
            blocks: 1,
            critic_filters: Some(8),
            ..StarConfig::default()
        };
        let first = |m: &StarGan| m.d.named_parameters()[0].1.shape().to_vec();
        let wide = StarGan::new(config.clone(), &mut Rng::new(0)).unwrap();
        assert_eq!(first(&wide), [8, CHANNELS, 4, 4]);
        assert_eq!(wide.g.named_parameters()[0].1.shape()[0], 4);
        let same = StarConfig {
            critic_filters: None,
            ..config.clone()
        };
        assert_eq!(first(&StarGan::new(same, &mut Rng::new(0)).unwrap())[0], 4);
        let zero = StarConfig {
            critic_filters: Some(0),
            ..config
        };
        let err = StarGan::new(zero, &mut Rng::new(0)).err().unwrap();
        assert!(err.to_string().contains("critic_filters"), "{err}");
        let mut saved = serde_json::to_value(StarConfig::default()).unwrap();
        saved.as_object_mut().unwrap().remove("critic_filters");
        let read: StarConfig = serde_json::from_value(saved).unwrap();
        assert_eq!(read.critic_filters, None);
    }

    /// The measures the evaluation rests on: a coloured digit is coloured, a grey one is not,
    /// and the digit view of a coloured digit reads as its digit about as often as the grey
    /// digit itself.
    #[test]
    fn the_measures_tell_colour_and_read_the_digit() {
        let data = crate::program::data::embedded().unwrap();
        let n = 100;
        let mut ctx = EvalContext::new(&data, 0, 10);
        let labels: Vec<usize> = data.test.labels[..n].iter().map(|&l| l.into()).collect();
        let (mut grey, mut coloured) = (Vec::new(), Vec::new());
        for (i, img) in data.test.images[..n * PIXELS].chunks(PIXELS).enumerate() {
            let g = three_planes(Domain::Plain.apply(img, &mut Rng::new(0)));
            let c = Domain::Coloured.apply(img, &mut Rng::new(i as u64));
            assert!(!reached(&g, Domain::Coloured));
            assert!(reached(&c, Domain::Coloured), "coloured digit {i}");
            grey.extend(g);
            coloured.extend(c);
        }
        let kept_grey = digit_kept(&mut ctx, &grey, &labels).unwrap();
        let kept_coloured = digit_kept(&mut ctx, &coloured, &labels).unwrap();
        assert!(kept_grey >= 0.95, "{kept_grey}");
        assert!(kept_coloured >= 0.9, "{kept_coloured}");
    }

    /// The paper's schedule (10 epochs at the rate, then a linear decay) reaches both players'
    /// optimizers at each epoch; the default keeps the rate constant.
    #[test]
    fn both_players_take_the_learning_rate_of_the_epoch() {
        let small = StarConfig {
            filters: 4,
            blocks: 1,
            ..StarConfig::default()
        };
        let mut constant = StarGan::new(small.clone(), &mut Rng::new(0)).unwrap();
        constant.begin_epoch(15).unwrap();
        assert_eq!(constant.opt_g.lr(), small.lr);
        let decaying = StarConfig {
            decay_epochs: 10,
            ..small
        };
        let mut model = StarGan::new(decaying.clone(), &mut Rng::new(0)).unwrap();
        for (epoch, share) in [
            (9, 1.0),
            (10, 10.0 / 11.0),
            (14, 6.0 / 11.0),
            (25, 1.0 / 11.0),
        ] {
            model.begin_epoch(epoch).unwrap();
            let want = decaying.lr * share;
            assert!((model.opt_g.lr() - want).abs() < 1e-15, "epoch {epoch}");
            assert!((model.opt_d.lr() - want).abs() < 1e-15, "epoch {epoch}");
        }
    }

    /// Training digits are kept only in a domain they measure in, and every domain is used.
    #[test]
    fn training_digits_are_put_in_measured_domains() {
        let data = crate::program::data::embedded().unwrap();
        let mut seen = [0usize; 6];
        for i in 0..120 {
            let img = data.train.image(i);
            if let Some(d) = make_training_digit(img, 0, sets::pixel_hash(img)) {
                assert_eq!(d.planes.len(), CHANNELS * PIXELS);
                let domain = DOMAINS[d.domain];
                if domain != Domain::Plain {
                    assert!(reached(&d.planes, domain), "{}", domain.name());
                }
                seen[d.domain] += 1;
            }
        }
        assert!(seen.iter().all(|&k| k > 0), "{seen:?}");
    }

    /// Critic steps train D, every n_critic-th trains G too, and the losses are finite.
    #[test]
    fn generator_steps_come_every_n_critic() {
        let mut rng = Rng::new(4);
        let config = StarConfig {
            n_critic: 2,
            filters: 8,
            blocks: 1,
            ..StarConfig::default()
        };
        let mut m = StarGan::new(config, &mut rng).unwrap();
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..12).collect::<Vec<_>>());
        let sum = |m: &StarGan, prefix: &str| -> f64 {
            m.weights()
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, t)| t.to_vec_f64().iter().sum::<f64>())
                .sum()
        };
        let (g0, d0) = (sum(&m, "generator."), sum(&m, "discriminator."));
        let first = m.train_step(&batch, &mut rng).unwrap();
        assert!(!first.iter().any(|(k, _)| k == "g_loss"));
        assert_eq!(g0, sum(&m, "generator."), "G moved on a critic-only step");
        assert_ne!(d0, sum(&m, "discriminator."));
        let second = m.train_step(&batch, &mut rng).unwrap();
        assert!(second.iter().any(|(k, _)| k == "g_loss"));
        assert!(first.iter().chain(&second).all(|(_, v)| v.is_finite()));
        assert_ne!(g0, sum(&m, "generator."));
        assert_eq!(m.critic_steps.item().unwrap(), 2.0);
        let s = m.sample_given(0, 10, &data, &mut rng).unwrap();
        assert_eq!(s.shape(), &[10, 3, 28, 28]);
        // a later chunk continues the run: samples 5..10 are the second digit's translations
        let later = m.sample_given(5, 5, &data, &mut rng).unwrap();
        assert_eq!(later.to_vec_f64(), s.narrow(0, 5, 5).unwrap().to_vec_f64());
    }

    /// With `ema_decay` an average of G follows the generator steps without changing them,
    /// is in the checkpoint, translates, and the trained G's figures come beside its own.
    #[test]
    fn the_generator_average_translates_and_changes_no_step() {
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..12).collect::<Vec<_>>());
        let run = |ema_decay| {
            let mut rng = Rng::new(4);
            let config = StarConfig {
                n_critic: 1,
                filters: 8,
                blocks: 1,
                ema_decay,
                ..StarConfig::default()
            };
            let mut m = StarGan::new(config, &mut rng).unwrap();
            for _ in 0..3 {
                m.train_step(&batch, &mut rng).unwrap();
            }
            m
        };
        let mut plain = run(0.0);
        let mut averaged = run(0.9);
        let first = |g: &ResnetGenerator| g.state_dict()[0].1.to_vec_f64();
        assert_eq!(first(&plain.g), first(&averaged.g));
        assert_ne!(
            first(&averaged.average.as_ref().unwrap().net),
            first(&averaged.g)
        );
        let w = averaged.weights();
        let steps = w
            .iter()
            .find(|(n, _)| n == "generator_average_steps")
            .unwrap();
        assert_eq!(steps.1.item().unwrap(), 3.0);
        let s = averaged
            .sample_given(0, 5, &data, &mut Rng::new(0))
            .unwrap();
        let (x, _) = StarGan::first_test_digits(&data, 1).unwrap();
        let by_average = translated(
            &mut averaged.average.as_mut().unwrap().net,
            &x,
            Domain::Thin,
            false,
        );
        assert_eq!(s.narrow(0, 0, 1).unwrap().to_vec_f32(), by_average.unwrap());
        let mut ctx = EvalContext::new(&data, 0, 10);
        let metrics = averaged.translation_metrics(&mut ctx, 20).unwrap();
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        for name in [
            "thin_digit_kept",
            "trained_thin_digit_kept",
            "trained_lowest_reached",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let plain_metrics = plain.translation_metrics(&mut ctx, 20).unwrap();
        assert!(!plain_metrics.iter().any(|m| m.name.starts_with("trained_")));
    }
}
