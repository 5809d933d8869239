//! CycleGAN (Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using
//! Cycle-Consistent Adversarial Networks") between plain and thick digits
//! ([`crate::domains::sets`]), trained unpaired: a digit of the training split belongs to one
//! domain for good (by a hash of its pixels, so the two domains hold disjoint halves), and the
//! thick domain is those digits thickened.
//!
//! Two generators G: A -> B (plain to thick) and F: B -> A, two discriminators D_A, D_B, with
//! LSGAN's least-squares losses, cycle consistency and an identity term:
//!
//! ```text
//!   L_G = (D_B(G(a)) - 1)^2 + (D_A(F(b)) - 1)^2
//!         + lambda_cyc (|F(G(a)) - a|_1 + |G(F(b)) - b|_1) + lambda_id (|G(b) - b|_1 + |F(a) - a|_1)
//!   L_D = 1/2 [(D_B(b) - 1)^2 + D_B(b~)^2] + 1/2 [(D_A(a) - 1)^2 + D_A(a~)^2]
//! ```
//!
//! with lambda_cyc = 10 and lambda_id = 5 (the paper's 0.5 lambda_cyc), and b~, a~ drawn from a
//! history of the last 50 generated images (each new one returned at once, or with probability
//! 1/2 swapped for a stored one once the history is full). The networks are the paper's scaled
//! to 28 x 28: a residual generator (c7s1-f, d2f, R2f x blocks, u f, c7s1-1, instance norm,
//! tanh) and a 7 x 7 PatchGAN discriminator (C f, C 2f, 3 x 3 to one channel). Adam 2e-4
//! (0.5, 0.999), G and F sharing one, D_A and D_B another.
//!
//! Beyond the paper, the networks that translate (in samples, metrics and `translations.png`)
//! are moving averages of G's and F's weights, decay 0.999 (about two epochs; ProGAN samples
//! from such an average): late in training the trained networks swing from epoch to epoch
//! (seed 0: the thick-to-plain translations measured plain on 87.5% of the test digits after
//! 10 epochs, the average's on 95.7%). `ema_decay = 0` translates with the trained networks.
//!
//! Because the true translation exists here (the thickening itself), evaluation reports the
//! mean L1 to it beside the paper's measures: on the test digits, both directions, the share
//! whose classifier label is kept and the share measured in the target domain.

use crate::adversarial::{
    copy_weights, grey_levels, linearly_decayed_lr, player_optimizers, player_optimizers_mut,
    symmetric_from_grey, update_weight_average, Network,
};
use crate::domains::morpho;
use crate::domains::sets::{self, pixel_hash, thicken_to, Domain, THICK_TARGET};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Mnist, Pixels};
use crate::program::eval::{EvalContext, Metric};
use crate::program::image;
use autograd::nn::{self, Conv2d, ConvTranspose2d, InstanceNorm2d, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, Conv2dOptions, ConvTranspose2dOptions, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub static ENTRY: Entry = Entry {
    name: "cycle-gan",
    title: "CycleGAN, plain <-> thick digits unpaired: LSGAN, cycle and identity losses, history of 50",
    paper: "Zhu, Park, Isola & Efros 2017, Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
    family: Family::Adversarial,
    default_epochs: 10,
    default_batch_size: 16,
    default_config: || serde_json::to_value(CycleConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(CycleGan::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

const N: usize = 28;
const PIXELS: usize = N * N;
/// Test digits the per-epoch metrics translate (all of them in `genzoo eval`).
const EPOCH_DIGITS: usize = 200;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CycleConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// lambda_cyc.
    pub cycle_weight: f64,
    /// lambda_id.
    pub identity_weight: f64,
    /// Generated images each discriminator's history keeps.
    pub history: usize,
    /// Channels of the networks' first layer (f).
    pub filters: usize,
    /// Residual blocks of each generator.
    pub blocks: usize,
    /// Epochs at the full learning rate before it decays (the paper: 100 of 200).
    pub constant_epochs: u64,
    /// Epochs over which it then decays linearly towards 0, as the paper's code does it
    /// ([`linearly_decayed_lr`]). 0 (the default): a constant rate.
    pub decay_epochs: u64,
    /// Decay of a moving average of G's and F's weights (as ProGAN samples from one), which
    /// then translates in samples, metrics and `translations.png`; the trained networks'
    /// figures are reported beside it as `trained_*`. 0: no average, the trained networks
    /// translate (the paper). The default 0.999 averages over about two epochs.
    #[serde(default = "crate::adversarial::saved_before_averages")]
    pub ema_decay: f64,
}

impl Default for CycleConfig {
    fn default() -> Self {
        CycleConfig {
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            cycle_weight: 10.0,
            identity_weight: 5.0,
            history: 50,
            filters: 32,
            blocks: 3,
            constant_epochs: 3,
            // off: over 6 epochs (the default then), 3 constant then 3 decaying kept fewer labels
            // (92.8% / 91.5% against 93.4% / 93.4%, README)
            decay_epochs: 0,
            // seed 0, 10 epochs, all test digits: the averages keep 94.1% / 96.6% of the labels
            // and reach 100% / 95.7% of the domain; the trained networks 94.5% / 96.5% and
            // 100% / 87.5% (README)
            ema_decay: 0.999,
        }
    }
}

impl CycleConfig {
    /// The learning rate of 0-based `epoch` (see `decay_epochs`).
    pub fn lr_at(&self, epoch: u64) -> f64 {
        linearly_decayed_lr(self.lr, epoch, self.constant_epochs, self.decay_epochs)
    }
}

pub(crate) fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Result<Conv2d> {
    let options = Conv2dOptions {
        stride: (stride, stride),
        padding: (pad, pad, pad, pad),
        ..Conv2dOptions::default()
    };
    Conv2d::new(c_in, c_out, (k, k), options, true, DType::F32, rng)
}

fn norm(c: usize) -> Result<InstanceNorm2d> {
    InstanceNorm2d::new(c, DType::F32)
}

/// conv 3x3 -> IN -> ReLU -> conv 3x3 -> IN, added to its input.
struct Residual {
    a: Conv2d,
    na: InstanceNorm2d,
    b: Conv2d,
    nb: InstanceNorm2d,
}

impl Residual {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let h = self.na.forward(&self.a.forward(x)?)?.relu()?;
        x.add(&self.nb.forward(&self.b.forward(&h)?)?)
    }
}

/// The residual generator: [n, c_in, 28, 28] -> [n, c_out, 28, 28] in [-1, 1].
pub struct ResnetGenerator {
    stem: Conv2d,
    n_stem: InstanceNorm2d,
    /// `downs[i]` halves the map from f·2^i to f·2^(i+1) planes.
    downs: Vec<(Conv2d, InstanceNorm2d)>,
    blocks: Vec<Residual>,
    /// `ups[i]` undoes `downs[i]`: f·2^(i+1) planes back to f·2^i; run from the last.
    ups: Vec<(ConvTranspose2d, InstanceNorm2d)>,
    head: Conv2d,
}

/// The most downsamplings a 28 x 28 map takes and comes back from whole (28 -> 14 -> 7).
pub const MAX_DOWNSAMPLINGS: usize = 2;

/// The parameter prefix of the `i`-th downsampling or upsampling: the first is plain `down` /
/// `up`, as it was when there was only one, so runs saved then load.
fn level_name(kind: &str, i: usize) -> String {
    if i == 0 {
        kind.to_string()
    } else {
        format!("{kind}{}", i + 1)
    }
}

impl ResnetGenerator {
    /// One plane in, one plane out (CycleGAN's digits), one downsampling.
    pub fn new(f: usize, blocks: usize, rng: &mut Rng) -> Result<ResnetGenerator> {
        ResnetGenerator::with_channels(1, 1, f, 1, blocks, rng)
    }

    /// `c_in` planes in ([n, c_in, 28, 28]), `c_out` out (StarGAN: image and domain maps in,
    /// an RGB image out); `downsamplings` stride-2 convolutions before the residual blocks (1
    /// or 2: the residual blocks at 14 x 14 with 2f planes, or at 7 x 7 with 4f, the paper's).
    pub fn with_channels(
        c_in: usize,
        c_out: usize,
        f: usize,
        downsamplings: usize,
        blocks: usize,
        rng: &mut Rng,
    ) -> Result<ResnetGenerator> {
        if !(1..=MAX_DOWNSAMPLINGS).contains(&downsamplings) {
            return Err(Error::invalid(
                "ResnetGenerator",
                format!(
                    "downsamplings must be in 1..={MAX_DOWNSAMPLINGS} (28 x 28 halves twice), \
                     got {downsamplings}"
                ),
            ));
        }
        let up = ConvTranspose2dOptions {
            stride: (2, 2),
            padding: (1, 1),
            ..ConvTranspose2dOptions::default()
        };
        let stem = conv(c_in, f, 7, 1, 3, rng)?;
        let downs = (0..downsamplings)
            .map(|i| {
                let planes = f << i;
                Ok((conv(planes, 2 * planes, 4, 2, 1, rng)?, norm(2 * planes)?))
            })
            .collect::<Result<_>>()?;
        let inner = f << downsamplings;
        let blocks = (0..blocks)
            .map(|_| {
                Ok(Residual {
                    a: conv(inner, inner, 3, 1, 1, rng)?,
                    na: norm(inner)?,
                    b: conv(inner, inner, 3, 1, 1, rng)?,
                    nb: norm(inner)?,
                })
            })
            .collect::<Result<_>>()?;
        let ups = (0..downsamplings)
            .map(|i| {
                let planes = f << i;
                let t = ConvTranspose2d::new(
                    2 * planes,
                    planes,
                    (4, 4),
                    up.clone(),
                    true,
                    DType::F32,
                    rng,
                )?;
                Ok((t, norm(planes)?))
            })
            .collect::<Result<_>>()?;
        Ok(ResnetGenerator {
            stem,
            n_stem: norm(f)?,
            downs,
            blocks,
            ups,
            head: conv(f, c_out, 7, 1, 3, rng)?,
        })
    }
}

impl Module for ResnetGenerator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        // in the order of the one-downsampling generator's names before there could be two
        let mut kids: Vec<(String, &dyn Module)> = vec![("stem".into(), &self.stem)];
        for (i, (down, _)) in self.downs.iter().enumerate() {
            kids.push((level_name("down", i), down));
        }
        for (i, (up, _)) in self.ups.iter().enumerate() {
            kids.push((level_name("up", i), up));
        }
        kids.push(("head".into(), &self.head));
        for (i, b) in self.blocks.iter().enumerate() {
            kids.push((format!("block{i}.a"), &b.a));
            kids.push((format!("block{i}.b"), &b.b));
        }
        kids.iter()
            .flat_map(|(name, m)| nn::prefixed(name, m.named_parameters()))
            .collect()
    }
}

impl Network for ResnetGenerator {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.n_stem.forward(&self.stem.forward(x)?)?.relu()?;
        for (down, n) in &mut self.downs {
            h = n.forward(&down.forward(&h)?)?.relu()?;
        }
        for b in &mut self.blocks {
            h = b.forward(&h)?;
        }
        for (up, n) in self.ups.iter_mut().rev() {
            h = n.forward(&up.forward(&h)?)?.relu()?;
        }
        self.head.forward(&h)?.tanh()
    }
}

/// The PatchGAN discriminator: [n, 1, 28, 28] -> one score per 7 x 7 patch [n, 1, 7, 7].
pub struct PatchDiscriminator {
    c1: Conv2d,
    c2: Conv2d,
    n2: InstanceNorm2d,
    c3: Conv2d,
}

impl PatchDiscriminator {
    pub fn new(f: usize, rng: &mut Rng) -> Result<PatchDiscriminator> {
        Ok(PatchDiscriminator {
            c1: conv(1, f, 4, 2, 1, rng)?,
            c2: conv(f, 2 * f, 4, 2, 1, rng)?,
            n2: norm(2 * f)?,
            c3: conv(2 * f, 1, 3, 1, 1, rng)?,
        })
    }
}

impl Module for PatchDiscriminator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[("c1", &self.c1), ("c2", &self.c2), ("c3", &self.c3)],
            |m| m.named_parameters(),
        )
    }
}

impl Network for PatchDiscriminator {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let h = self.c1.forward(x)?.leaky_relu(0.2)?;
        let h = self.n2.forward(&self.c2.forward(&h)?)?.leaky_relu(0.2)?;
        self.c3.forward(&h)
    }
}

/// `net` run once on the images of both batches, its output split back: for networks whose
/// every layer works on each image alone (these, with instance norm), the two forwards batched.
fn forward_joined<N: Network>(net: &mut N, parts: [&Tensor; 2]) -> Result<[Tensor; 2]> {
    let n = parts[0].shape()[0];
    let out = net.forward(&Tensor::concat(&[parts[0].clone(), parts[1].clone()], 0)?)?;
    let rest = out.shape()[0] - n;
    Ok([out.narrow(0, 0, n)?, out.narrow(0, n, rest)?])
}

/// LSGAN's loss: the mean of (score - target)^2.
fn least_squares(scores: &Tensor, target: f64) -> Result<Tensor> {
    scores.sub_scalar(target)?.square()?.mean_all()
}

fn l1(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.sub(b)?.abs()?.mean_all()
}

/// The last `capacity` generated images a discriminator is shown (module doc), kept as
/// tensors so that a checkpoint holds them and a resumed run continues bit for bit.
struct History {
    images: Tensor,
    len: Tensor,
    capacity: usize,
}

impl History {
    fn new(capacity: usize) -> History {
        History {
            images: Tensor::zeros(&[capacity, 1, N, N], DType::F32),
            len: Tensor::zeros(&[1], DType::F32),
            capacity,
        }
    }

    /// The batch to show D for the newly generated `fresh` (detached), updating the history.
    fn query(&mut self, fresh: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        if self.capacity == 0 {
            return Ok(fresh.clone());
        }
        let mut stored = self.images.to_vec::<f32>()?;
        let mut len = self.len.to_vec_f64()[0] as usize;
        let new = fresh.to_vec::<f32>()?;
        let mut out = Vec::with_capacity(new.len());
        for img in new.chunks(PIXELS) {
            if len < self.capacity {
                stored[len * PIXELS..(len + 1) * PIXELS].copy_from_slice(img);
                len += 1;
                out.extend_from_slice(img);
            } else if rng.uniform() < 0.5 {
                let k = ((rng.uniform() * self.capacity as f64) as usize).min(self.capacity - 1);
                let slot = &mut stored[k * PIXELS..(k + 1) * PIXELS];
                out.extend_from_slice(slot);
                slot.copy_from_slice(img);
            } else {
                out.extend_from_slice(img);
            }
        }
        self.images
            .update_data::<f32>(|d| d.copy_from_slice(&stored))?;
        self.len.update_data::<f32>(|d| d[0] = len as f32)?;
        Tensor::from_vec(out, fresh.shape())
    }
}

pub struct CycleGan {
    config: CycleConfig,
    /// A -> B, plain to thick.
    g: ResnetGenerator,
    /// B -> A.
    f: ResnetGenerator,
    d_a: PatchDiscriminator,
    d_b: PatchDiscriminator,
    opt_g: Adam,
    opt_d: Adam,
    history_a: History,
    history_b: History,
    /// Moving averages of G and F (`ema_decay` > 0).
    averages: Option<Averages>,
}

/// The weight averages of the two generators and the steps averaged so far.
struct Averages {
    g: ResnetGenerator,
    f: ResnetGenerator,
    steps: Tensor,
}

/// Which domain a training digit belongs to for good: a hash of its pixels (true: plain).
fn is_plain(img: &[u8]) -> bool {
    pixel_hash(img) & 1 == 0
}

/// Each digit thickened into the thick domain, in parallel.
fn thickened(images: &[u8]) -> Vec<u8> {
    use rayon::prelude::*;
    images
        .par_chunks(PIXELS)
        .flat_map_iter(|img| thicken_to(img, THICK_TARGET))
        .collect()
}

impl CycleGan {
    pub fn new(config: CycleConfig, rng: &mut Rng) -> Result<CycleGan> {
        let c = &config;
        if !(1..=256).contains(&c.filters) || c.blocks > 16 || c.history > 1000 {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "filters must be in 1..=256, blocks at most 16 and history at most 1000, got {}, {} and {}",
                    c.filters, c.blocks, c.history
                ),
            ));
        }
        crate::adversarial::check_ema_decay(ENTRY.name, c.ema_decay)?;
        for (name, w) in [
            ("cycle_weight", c.cycle_weight),
            ("identity_weight", c.identity_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::invalid(
                    ENTRY.name,
                    format!("{name} must be finite and >= 0, got {w}"),
                ));
            }
        }
        let g = ResnetGenerator::new(c.filters, c.blocks, rng)?;
        let f = ResnetGenerator::new(c.filters, c.blocks, rng)?;
        let d_a = PatchDiscriminator::new(c.filters, rng)?;
        let d_b = PatchDiscriminator::new(c.filters, rng)?;
        let averages = if c.ema_decay > 0.0 {
            // their own tensors, made without drawing on the run's generator
            let mut scratch = Rng::new(0);
            let average = |net: &ResnetGenerator, scratch: &mut Rng| -> Result<ResnetGenerator> {
                let a = ResnetGenerator::new(c.filters, c.blocks, scratch)?;
                copy_weights(&a, net)?;
                Ok(a)
            };
            Some(Averages {
                g: average(&g, &mut scratch)?,
                f: average(&f, &mut scratch)?,
                steps: Tensor::zeros(&[], DType::F64),
            })
        } else {
            None
        };
        let adam = AdamConfig {
            lr: c.lr,
            betas: (c.beta1, c.beta2),
            ..AdamConfig::default()
        };
        let mut g_params = nn::prefixed("g", g.named_parameters());
        g_params.extend(nn::prefixed("f", f.named_parameters()));
        let mut d_params = nn::prefixed("d_a", d_a.named_parameters());
        d_params.extend(nn::prefixed("d_b", d_b.named_parameters()));
        Ok(CycleGan {
            opt_g: Adam::new(g_params, adam)?,
            opt_d: Adam::new(d_params, adam)?,
            history_a: History::new(c.history),
            history_b: History::new(c.history),
            averages,
            config,
            g,
            f,
            d_a,
            d_b,
        })
    }

    /// One step on real plain digits `a` and thick digits `b` (both in [-1, 1]): G and F on
    /// L_G, then both discriminators on L_D with images from the histories.
    fn step(&mut self, a: &Tensor, b: &Tensor, rng: &mut Rng) -> Result<Losses> {
        let (wc, wi) = (self.config.cycle_weight, self.config.identity_weight);
        // each network runs once on the batches it takes at a level (every layer works on each
        // image alone, instance norm included, so this is the separate passes, batched)
        let [fake_b, same_b] = forward_joined(&mut self.g, [a, b])?;
        let [fake_a, same_a] = forward_joined(&mut self.f, [b, a])?;
        let adversarial = least_squares(&self.d_b.forward(&fake_b)?, 1.0)?
            .add(&least_squares(&self.d_a.forward(&fake_a)?, 1.0)?)?;
        let cycle = l1(&self.f.forward(&fake_b)?, a)?.add(&l1(&self.g.forward(&fake_a)?, b)?)?;
        let identity = l1(&same_b, b)?.add(&l1(&same_a, a)?)?;
        let g_loss = adversarial
            .add(&cycle.mul_scalar(wc)?)?
            .add(&identity.mul_scalar(wi)?)?;
        self.opt_g.minimize(&g_loss)?;
        if let Some(avg) = &mut self.averages {
            let t = avg.steps.item()? as u64 + 1;
            update_weight_average(&avg.g, &self.g, self.config.ema_decay, t)?;
            update_weight_average(&avg.f, &self.f, self.config.ema_decay, t)?;
            avg.steps = Tensor::scalar(t as f64, DType::F64);
        }
        let shown_a = self.history_a.query(&fake_a.detach(), rng)?;
        let shown_b = self.history_b.query(&fake_b.detach(), rng)?;
        let [real_a, seen_a] = forward_joined(&mut self.d_a, [a, &shown_a])?;
        let [real_b, seen_b] = forward_joined(&mut self.d_b, [b, &shown_b])?;
        let d_a_loss = least_squares(&real_a, 1.0)?
            .add(&least_squares(&seen_a, 0.0)?)?
            .mul_scalar(0.5)?;
        let d_b_loss = least_squares(&real_b, 1.0)?
            .add(&least_squares(&seen_b, 0.0)?)?
            .mul_scalar(0.5)?;
        self.opt_d.minimize(&d_a_loss.add(&d_b_loss)?)?;
        Ok(vec![
            ("g_adversarial".into(), adversarial.item()?),
            ("cycle".into(), cycle.item()?),
            ("identity".into(), identity.item()?),
            ("d_a".into(), d_a_loss.item()?),
            ("d_b".into(), d_b_loss.item()?),
        ])
    }

    /// `net` applied to grey digits, 100 at a time, in no-grad mode: grey levels back.
    fn translate(net: &mut ResnetGenerator, images: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(100 * PIXELS) {
            let y = no_grad(|| net.forward(&symmetric_from_grey(chunk)?))?;
            out.extend(grey_levels(&y));
        }
        Ok(out)
    }

    /// The networks that translate: the averages where there are some, else G and F.
    fn translators(&mut self) -> (&mut ResnetGenerator, &mut ResnetGenerator) {
        match &mut self.averages {
            Some(avg) => (&mut avg.g, &mut avg.f),
            None => (&mut self.g, &mut self.f),
        }
    }

    /// The translation measures on the first `n` test digits, both directions (module doc), of
    /// the translators and, where they are averages, of the trained networks as `trained_*`.
    fn translation_metrics(&mut self, ctx: &mut EvalContext, n: usize) -> Result<Vec<Metric>> {
        let truth = Truth::new(ctx, n)?;
        let mut out = Vec::new();
        if self.averages.is_some() {
            out = Self::measures(&mut self.g, &mut self.f, ctx, &truth, "trained_")?;
        }
        let (g, f) = self.translators();
        let mut ours = Self::measures(g, f, ctx, &truth, "")?;
        ours.append(&mut out);
        Ok(ours)
    }

    /// [`Self::translation_metrics`] of the networks `g` (plain to thick) and `f`, each name
    /// after `prefix`.
    fn measures(
        g: &mut ResnetGenerator,
        f: &mut ResnetGenerator,
        ctx: &mut EvalContext,
        truth: &Truth,
        prefix: &str,
    ) -> Result<Vec<Metric>> {
        let to_thick = Self::translate(g, &truth.plain)?;
        let to_plain = Self::translate(f, &truth.thick)?;
        let mut out = Vec::new();
        for ((name, made, target, real), (kept_real, reached_real)) in [
            ("plain_to_thick", &to_thick, Domain::Thick, &truth.thick),
            ("thick_to_plain", &to_plain, Domain::Plain, &truth.plain),
        ]
        .into_iter()
        .zip(truth.baselines)
        {
            let kept = label_kept(ctx, made, &truth.labels)?;
            let reached = in_domain(made, target);
            let l1_to_truth = made
                .iter()
                .zip(real.iter())
                .map(|(&p, &q)| (p as f64 - q as f64).abs() / 255.0)
                .sum::<f64>()
                / made.len() as f64;
            out.push(
                Metric::with_baseline(format!("{prefix}{name}_label_kept"), kept, kept_real)
                    .detail(format!(
                        "{} test digits; baseline: the true translations",
                        truth.labels.len()
                    )),
            );
            out.push(Metric::with_baseline(
                format!("{prefix}{name}_domain_reached"),
                reached,
                reached_real,
            ));
            out.push(Metric::new(
                format!("{prefix}{name}_l1_to_truth"),
                l1_to_truth,
            ));
        }
        Ok(out)
    }
}

/// The first `n` test digits, their thickenings and labels, and the baselines (label kept,
/// domain reached) of the true translations, plain to thick then thick to plain: made once
/// per evaluation, whichever networks are measured against them.
struct Truth {
    plain: Vec<u8>,
    thick: Vec<u8>,
    labels: Vec<usize>,
    baselines: [(f64, f64); 2],
}

impl Truth {
    fn new(ctx: &mut EvalContext, n: usize) -> Result<Truth> {
        let test = &ctx.data.test;
        let n = n.min(test.len());
        let plain = test.images[..n * PIXELS].to_vec();
        let labels: Vec<usize> = test.labels[..n].iter().map(|&l| l.into()).collect();
        let thick = thickened(&plain);
        let baselines = [
            (
                label_kept(ctx, &thick, &labels)?,
                in_domain(&thick, Domain::Thick),
            ),
            (
                label_kept(ctx, &plain, &labels)?,
                in_domain(&plain, Domain::Plain),
            ),
        ];
        Ok(Truth {
            plain,
            thick,
            labels,
            baselines,
        })
    }
}

/// The share of `images` (grey levels) the style classifier reads as `labels`
/// ([`sets::read_digits`]: the harness classifier knows plain digits, and reads as their digit
/// only 92.8% of the true thickenings).
fn label_kept(ctx: &mut EvalContext, images: &[u8], labels: &[usize]) -> Result<f64> {
    Ok(sets::share_equal(&sets::read_digits(ctx, images)?, labels))
}

/// The share of `images` (grey levels) measured in `domain`.
fn in_domain(images: &[u8], domain: Domain) -> f64 {
    use rayon::prelude::*;
    let n = images.len() / PIXELS;
    let hits = images
        .par_chunks(PIXELS)
        .filter(|img| morpho::measure(img, N, N).and_then(|m| domain.holds(&m)) == Some(true))
        .count();
    hits as f64 / n.max(1) as f64
}

impl Module for CycleGan {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = nn::prefixed("g", self.g.named_parameters());
        p.extend(nn::prefixed("f", self.f.named_parameters()));
        p.extend(nn::prefixed("d_a", self.d_a.named_parameters()));
        p.extend(nn::prefixed("d_b", self.d_b.named_parameters()));
        p
    }
    /// The histories: a resumed run shows its discriminators what the uninterrupted one would;
    /// and the weight averages, if any.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut b = vec![
            ("history_a.images".into(), self.history_a.images.clone()),
            ("history_a.len".into(), self.history_a.len.clone()),
            ("history_b.images".into(), self.history_b.images.clone()),
            ("history_b.len".into(), self.history_b.len.clone()),
        ];
        if let Some(avg) = &self.averages {
            b.extend(nn::prefixed("g_average", avg.g.named_parameters()));
            b.extend(nn::prefixed("f_average", avg.f.named_parameters()));
            b.push(("average_steps".into(), avg.steps.clone()));
        }
        b
    }
}

impl GenerativeModel for CycleGan {
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
    /// Instance norm behaves the same in both modes; nothing to switch.
    fn set_training(&mut self, _training: bool) {}
    /// The batch's digits split by domain (each digit's domain fixed by its pixels), the thick
    /// ones thickened; as many of each as the smaller side has. A batch with none of one domain
    /// (1 in 32,768 of 16 digits) is split in halves by position instead, so a run never stops
    /// on one; a batch of one digit is an error.
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let (mut plain, mut thick) = (Vec::new(), Vec::new());
        for img in batch.images.chunks(PIXELS) {
            if is_plain(img) {
                plain.extend_from_slice(img);
            } else {
                thick.extend_from_slice(img);
            }
        }
        if plain.is_empty() || thick.is_empty() {
            let half = batch.len() / 2;
            if half == 0 {
                return Err(Error::invalid(
                    ENTRY.name,
                    "a batch of one digit cannot hold both domains: use a batch size of at least 2",
                ));
            }
            plain = batch.images[..half * PIXELS].to_vec();
            thick = batch.images[half * PIXELS..2 * half * PIXELS].to_vec();
        }
        let pairs = (plain.len() / PIXELS).min(thick.len() / PIXELS);
        let a = symmetric_from_grey(&plain[..pairs * PIXELS])?;
        let b = symmetric_from_grey(&thickened(&thick[..pairs * PIXELS]))?;
        self.step(&a, &b, rng)
    }
    fn sample(&mut self, _n: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "sample",
            "cycle-gan translates digits rather than drawing them: its samples are the thickened test digits (sample_given)",
        ))
    }
    /// G's (or its average's) translations of test digits `first ..` (wrapping) into the thick
    /// domain.
    fn sample_given(
        &mut self,
        first: usize,
        n: usize,
        data: &Mnist,
        _rng: &mut Rng,
    ) -> Result<Tensor> {
        let test = &data.test;
        let plain: Vec<u8> = (first..first + n)
            .flat_map(|i| test.image(i % test.len()).iter().copied())
            .collect();
        let made = Self::translate(self.translators().0, &plain)?;
        Tensor::from_vec(
            made.iter().map(|&b| b as f32 / 255.0).collect(),
            &[n, 1, N, N],
        )
    }
    fn begin_epoch(&mut self, epoch: u64) -> Result<()> {
        let lr = self.config.lr_at(epoch);
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
    /// `translations.png`: rows of 10 test digits, their thick translations G(a) and those
    /// brought back F(G(a)); then 10 thickened test digits, F(b) and G(F(b)).
    fn end_of_training(&mut self, dir: &Path, data: &Mnist) -> Result<()> {
        let plain = data.test.images[..10 * PIXELS].to_vec();
        let thick = thickened(&plain);
        let (g, f) = self.translators();
        let gb = Self::translate(g, &plain)?;
        let back_a = Self::translate(f, &gb)?;
        let fa = Self::translate(f, &thick)?;
        let back_b = Self::translate(g, &fa)?;
        let rows: Vec<f32> = [&plain, &gb, &back_a, &thick, &fa, &back_b]
            .iter()
            .flat_map(|r| r.iter().map(|&b| b as f32 / 255.0))
            .collect();
        let grid = Tensor::from_vec(rows, &[60, 1, N, N])?;
        crate::program::checkpoint::write_atomic(
            &dir.join("translations.png"),
            &image::grid_png(&grid, Some(10), 2)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_networks_keep_the_image_size_and_patch_the_scores() {
        let mut rng = Rng::new(0);
        let mut g = ResnetGenerator::new(8, 2, &mut rng).unwrap();
        let mut d = PatchDiscriminator::new(8, &mut rng).unwrap();
        let x = Tensor::randn(&[3, 1, 28, 28], DType::F32, &mut rng);
        let y = g.forward(&x).unwrap();
        assert_eq!(y.shape(), &[3, 1, 28, 28]);
        assert!(y.to_vec_f64().iter().all(|v| v.abs() <= 1.0));
        assert_eq!(d.forward(&y).unwrap().shape(), &[3, 1, 7, 7]);
    }

    /// The batched passes of a step give what separate passes give, for both networks.
    #[test]
    fn joined_forwards_equal_separate_ones() {
        let mut rng = Rng::new(6);
        let mut g = ResnetGenerator::new(8, 2, &mut rng).unwrap();
        let mut d = PatchDiscriminator::new(8, &mut rng).unwrap();
        let x = Tensor::randn(&[3, 1, 28, 28], DType::F32, &mut rng);
        let y = Tensor::randn(&[2, 1, 28, 28], DType::F32, &mut rng);
        let close = |p: &Tensor, q: &Tensor| {
            let worst = crate::adversarial::max_diff(p, q);
            assert!(worst < 1e-5, "{worst}");
        };
        let [gx, gy] = forward_joined(&mut g, [&x, &y]).unwrap();
        close(&gx, &g.forward(&x).unwrap());
        close(&gy, &g.forward(&y).unwrap());
        let [dx, dy] = forward_joined(&mut d, [&x, &y]).unwrap();
        close(&dx, &d.forward(&x).unwrap());
        close(&dy, &d.forward(&y).unwrap());
    }

    /// The paper's schedule scaled to 6 epochs: 3 at the full rate, then 3/4, 1/2, 1/4 of it,
    /// and the last rate for any epoch after; the optimizers take it at each epoch. The default
    /// is a constant rate.
    #[test]
    fn the_learning_rate_is_constant_then_decays_linearly() {
        let constant = CycleConfig::default();
        assert!((0..10).all(|e| constant.lr_at(e) == constant.lr));
        let c = CycleConfig {
            constant_epochs: 3,
            decay_epochs: 3,
            ..constant
        };
        let lrs: Vec<f64> = (0..8).map(|e| c.lr_at(e) / c.lr).collect();
        assert_eq!(lrs, [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.25, 0.25]);
        let mut model = CycleGan::new(
            CycleConfig {
                filters: 4,
                blocks: 1,
                ..c.clone()
            },
            &mut Rng::new(0),
        )
        .unwrap();
        model.begin_epoch(4).unwrap();
        assert_eq!(model.opt_g.lr(), c.lr * 0.5);
        assert_eq!(model.opt_d.lr(), c.lr * 0.5);
    }

    /// The history returns new images until it is full, then about half old ones, always
    /// images it was given.
    #[test]
    fn the_history_swaps_in_old_images_once_full() {
        let mut h = History::new(4);
        let mut rng = Rng::new(1);
        let batch = |v: f32| Tensor::full(&[2, 1, 28, 28], v as f64, DType::F32);
        for v in [1.0, 2.0] {
            let out = h.query(&batch(v), &mut rng).unwrap();
            assert!(out.to_vec_f64().iter().all(|&x| x == v as f64));
        }
        assert_eq!(h.len.to_vec_f64(), vec![4.0]);
        let mut old = 0;
        for v in 3..40 {
            let out = h.query(&batch(v as f32), &mut rng).unwrap().to_vec_f64();
            for img in out.chunks(PIXELS) {
                assert!(img.iter().all(|&x| x == img[0]) && img[0] >= 1.0 && img[0] <= v as f64);
                old += (img[0] < v as f64) as usize;
            }
        }
        assert!(
            (20..55).contains(&old),
            "{old} of 74 images came from the history"
        );
    }

    #[test]
    fn the_domains_of_the_training_digits_are_disjoint_halves() {
        let data = crate::program::data::embedded().unwrap();
        let n = data.train.len();
        let plain = (0..n).filter(|&i| is_plain(data.train.image(i))).count();
        assert!(
            (n * 45 / 100..n * 55 / 100).contains(&plain),
            "{plain} of {n}"
        );
    }

    /// A few steps train both sides and the losses stay finite; the checkpointed state includes
    /// the histories.
    #[test]
    fn steps_train_and_the_state_holds_the_histories() {
        let mut rng = Rng::new(2);
        let config = CycleConfig {
            filters: 8,
            blocks: 1,
            ..CycleConfig::default()
        };
        let mut gan = CycleGan::new(config, &mut rng).unwrap();
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..16).collect::<Vec<_>>());
        let first = gan.train_step(&batch, &mut rng).unwrap();
        let mut last = first.clone();
        for _ in 0..4 {
            last = gan.train_step(&batch, &mut rng).unwrap();
        }
        assert!(first.iter().chain(&last).all(|(_, v)| v.is_finite()));
        assert!(
            last[1].1 < first[1].1,
            "cycle loss {} -> {}",
            first[1].1,
            last[1].1
        );
        let names: Vec<String> = GenerativeModel::state_dict(&gan)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.iter().any(|n| n == "history_b.len"), "{names:?}");
        assert!(gan.history_a.len.to_vec_f64()[0] > 0.0);
        let one = data.train.batch(&[0]);
        assert!(gan.train_step(&one, &mut rng).is_err());
    }

    /// With `ema_decay` the averages start as G and F and trail them, are in the checkpointed
    /// state, and change nothing in training: the same losses and weights as without.
    #[test]
    fn the_weight_averages_trail_the_generators_and_change_no_step() {
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..16).collect::<Vec<_>>());
        let config = |ema_decay| CycleConfig {
            filters: 4,
            blocks: 1,
            ema_decay,
            ..CycleConfig::default()
        };
        let mut plain = CycleGan::new(config(0.0), &mut Rng::new(4)).unwrap();
        let mut averaged = CycleGan::new(config(0.9), &mut Rng::new(4)).unwrap();
        assert!(plain.averages.is_none());
        let first = |m: &ResnetGenerator| m.named_parameters()[0].1.to_vec_f64();
        let start = first(&averaged.g);
        assert_eq!(first(&averaged.averages.as_ref().unwrap().g), start);
        let (mut r1, mut r2) = (Rng::new(5), Rng::new(5));
        for _ in 0..3 {
            let a = plain.train_step(&batch, &mut r1).unwrap();
            let b = averaged.train_step(&batch, &mut r2).unwrap();
            assert_eq!(a, b);
        }
        assert_eq!(first(&plain.g), first(&averaged.g));
        let avg = averaged.averages.as_ref().unwrap();
        assert_eq!(avg.steps.item().unwrap(), 3.0);
        let (g, a) = (first(&averaged.g), first(&avg.g));
        assert!(
            a != g && a != start,
            "the average is neither G nor where G began"
        );
        let names: Vec<String> = GenerativeModel::state_dict(&averaged)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for name in [
            "g_average.stem.weight",
            "f_average.head.bias",
            "average_steps",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(CycleGan::new(config(1.0), &mut Rng::new(0)).is_err());
    }

    /// Samples drawn in chunks continue through the test digits (`genzoo sample --n 200` does
    /// not repeat the first 100) and wrap around after the last.
    #[test]
    fn samples_in_chunks_continue_through_the_test_digits() {
        let mut rng = Rng::new(3);
        let config = CycleConfig {
            filters: 4,
            blocks: 1,
            ..CycleConfig::default()
        };
        let mut gan = CycleGan::new(config, &mut rng).unwrap();
        let data = crate::program::data::embedded().unwrap();
        let all = gan.sample_given(0, 4, &data, &mut rng).unwrap();
        let tail = gan.sample_given(2, 2, &data, &mut rng).unwrap();
        assert_eq!(tail.to_vec_f64(), all.narrow(0, 2, 2).unwrap().to_vec_f64());
        assert_ne!(all.narrow(0, 0, 2).unwrap().to_vec_f64(), tail.to_vec_f64());
        let n = data.test.len();
        let wrapped = gan.sample_given(n, 1, &data, &mut rng).unwrap();
        assert_eq!(
            wrapped.to_vec_f64(),
            all.narrow(0, 0, 1).unwrap().to_vec_f64()
        );
    }
}
