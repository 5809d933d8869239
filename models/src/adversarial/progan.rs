//! Progressive GAN (Karras, Aila, Laine & Lehtinen 2017, "Progressive Growing of GANs for
//! Improved Quality, Stability, and Variation") at digit scale: 7x7 -> 14x14 -> 28x28.
//!
//! Training grows both networks a resolution at a time. The schedule is five stages, counted in
//! training steps (`stage_steps`): 7 stable, 14 fade, 14 stable, 28 fade, 28 stable (after the
//! last, training stays at 28 stable); by default 2, 2, 2, 3 and 17 epochs of 563 steps (batch
//! 16), with 64, 32 and 16 channels at 7x7, 14x14 and 28x28 (narrow, to fit 20 minutes on 2
//! cores). During a fade the new block is blended in with alpha rising linearly from 0 to 1 over
//! the stage (alpha = steps into the stage / its length):
//!
//! ```text
//!   G:    out = (1 - alpha) up2(toRGB_old(h_old)) + alpha toRGB_new(block_new(up2(h_old)))
//!   D:    h   = (1 - alpha) fromRGB_old(pool2(x)) + alpha block_new(fromRGB_new(x))
//!   real: x_r = (1 - alpha) up2(pool2(x_r)) + alpha x_r     (x_r: the digit avg-pooled to r)
//! ```
//!
//! with up2 nearest-neighbour upsampling and pool2 2x2 average pooling.
//!
//! The paper's three stabilisers:
//!
//! ```text
//!   PixelNorm:   b_{x,y} = a_{x,y} / sqrt(mean_c a_{x,y,c}^2 + 1e-8)  (G: on z, after every layer)
//!   mbstd:       s = mean_{c,x,y} sqrt(Var_group(a_{c,x,y}) + 1e-8) per group of 4 samples,
//!                appended to D's last block as one constant feature map
//!   equalised lr: w_stored ~ N(0, 1), w = w_stored sqrt(2 / fan_in) at run time, biases 0
//! ```
//!
//! The loss is WGAN-GP's ([`gradient_penalty`]) with the drift term keeping the critic's scores
//! near zero, one critic step per generator step, Adam 1e-3 (0, 0.99) for both:
//!
//! ```text
//!   critic:    E[D(G(z))] - E[D(x)] + 10 E[(||grad D(x_hat)||_2 - 1)^2] + 0.001 E[D(x)^2]
//!   generator: -E[D(G(z))]
//! ```
//!
//! Samples and the per-epoch metrics come from an exponential moving average of G's weights
//! (decay 0.999, warmed up as TensorFlow's moving averages are: min(0.999, (1 + t) / (10 + t))
//! after the t-th generator step), at the current resolution upsampled (nearest) to 28x28. The
//! checkpoint holds both networks, the average, both optimizers and the step count from which
//! the stage and alpha follow (written beside it as `resolution` and `alpha`). `stage_7.png`, `stage_14_fade.png` (mid fade), `stage_14.png`,
//! `stage_28_fade.png` and `stage_28.png` are grids of the average's samples when each is
//! reached, written after the last epoch.

use crate::adversarial::networks::check_latent;
use crate::adversarial::wgan::gradient_penalty;
use crate::adversarial::{
    copy_weights, epoch_metrics, noise, player_optimizers, player_optimizers_mut, player_weights,
    to_unit, update_weight_average,
};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::checkpoint::write_atomic;
use crate::program::data::{Batch, Mnist, Pixels};
use crate::program::eval::{EvalContext, Metric};
use crate::program::image;
use autograd::nn::{self, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, Conv2dOptions, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub static ENTRY: Entry = Entry {
    name: "progan",
    title: "Progressive GAN: 7x7 -> 14x14 -> 28x28 with fade-ins, PixelNorm, minibatch stddev, equalised lr, WGAN-GP + drift, EMA generator",
    paper: "Karras, Aila, Laine & Lehtinen 2017, Progressive Growing of GANs for Improved Quality, Stability, and Variation",
    family: Family::Adversarial,
    default_epochs: DEFAULT_EPOCHS,
    default_batch_size: BATCH,
    default_config: || serde_json::to_value(ProganConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(Progan::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// The default batch. (64 until 2026-12-07: a step's cost is about proportional to its batch
/// here, so 16 takes four times the steps in about the same time, and at equal wall time its
/// FCD is lower; the paper's batch at its highest resolutions is 16 too. README.)
const BATCH: usize = 16;
/// One epoch of the 9,001 training digits at the default batch.
const EPOCH_STEPS: u64 = 9001_u64.div_ceil(BATCH as u64);
/// The default stages in epochs: 7 stable, 14 fade, 14 stable, 28 fade, 28 stable.
/// (28 stable was 5 epochs until 2026-12-06: at equal wall time ProGAN's FCD gains on DCGAN's
/// the longer both train, so the default now fills the 20 minutes; README.)
const STAGE_EPOCHS: [u64; 5] = [2, 2, 2, 3, 17];
/// The default run: the five stages.
const DEFAULT_EPOCHS: usize =
    (STAGE_EPOCHS[0] + STAGE_EPOCHS[1] + STAGE_EPOCHS[2] + STAGE_EPOCHS[3] + STAGE_EPOCHS[4])
        as usize;
const SLOPE: f64 = 0.2;
/// The stages' names, as the grids written when each is reached name them.
const GRID_NAMES: [&str; 5] = [
    "stage_7",
    "stage_14_fade",
    "stage_14",
    "stage_28_fade",
    "stage_28",
];
const GRID: usize = 64;
const GRID_SEED: u64 = 0x9a06;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProganConfig {
    /// Adam's learning rate, both players.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// The size of z ~ N(0, I).
    pub latent: usize,
    /// Channels of the blocks at 7x7, 14x14 and 28x28 (G's and D's alike).
    pub channels: [usize; 3],
    /// Training steps of each stage: 7 stable, 14 fade, 14 stable, 28 fade, 28 stable.
    pub stage_steps: [u64; 5],
    /// Samples per minibatch-stddev group.
    pub group: usize,
    /// The gradient penalty's weight (lambda).
    pub penalty: f64,
    /// The penalty is computed on every `penalty_every`-th critic step only, weighted
    /// `penalty_every` times as much there (StyleGAN2's lazy regularisation, Karras et al.
    /// 2020: the same penalty in expectation at a fraction of the double backwards). 1: every
    /// step, as the paper.
    pub penalty_every: u64,
    /// The drift term's weight (epsilon_drift).
    pub drift: f64,
    /// Decay of the generator's moving average.
    pub ema_decay: f64,
}

impl Default for ProganConfig {
    fn default() -> Self {
        ProganConfig {
            lr: 1e-3,
            beta1: 0.0,
            beta2: 0.99,
            latent: 128,
            channels: [64, 32, 16],
            stage_steps: STAGE_EPOCHS.map(|e| e * EPOCH_STEPS),
            group: 4,
            penalty: 10.0,
            penalty_every: 1,
            drift: 1e-3,
            ema_decay: 0.999,
        }
    }
}

/// Where training is: the resolution level (0: 7x7, 1: 14x14, 2: 28x28) and the weight alpha
/// of its newest block (1 when stable).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    pub level: usize,
    pub alpha: f64,
}

impl Phase {
    /// The side of the images at this level.
    pub fn resolution(self) -> usize {
        7 << self.level
    }
}

/// The phase after `step` training steps of the stages `stage_steps`.
pub fn phase_at(stage_steps: &[u64; 5], step: u64) -> Phase {
    let mut start = 0;
    for (stage, &len) in stage_steps.iter().enumerate() {
        if step < start + len {
            let level = stage.div_ceil(2);
            let fading = stage % 2 == 1;
            let alpha = if fading {
                (step - start) as f64 / len as f64
            } else {
                1.0
            };
            return Phase { level, alpha };
        }
        start += len;
    }
    Phase {
        level: 2,
        alpha: 1.0,
    }
}

/// The step counts at which the stage grids are taken: the end of each stable stage and the
/// middle of each fade.
fn grid_steps(stage_steps: &[u64; 5]) -> [u64; 5] {
    let mut at = [0; 5];
    let mut start = 0;
    for (stage, &len) in stage_steps.iter().enumerate() {
        at[stage] = if stage % 2 == 1 {
            start + len / 2
        } else {
            start + len
        };
        start += len;
    }
    at
}

/// A conv or linear weight with the equalised learning rate: stored ~ N(0, 1), used times
/// sqrt(2 / fan_in).
fn equalized_weight(
    shape: &[usize],
    fan_in: usize,
    dtype: DType,
    rng: &mut Rng,
) -> Result<(Tensor, f64)> {
    let weight = Tensor::randn(shape, dtype, rng).requires_grad_(true)?;
    Ok((weight, (2.0 / fan_in as f64).sqrt()))
}

/// A k x k convolution (stride 1, "same" padding) with the equalised learning rate.
pub struct EqualizedConv2d {
    /// [out, in, k, k], ~ N(0, 1) at the start.
    pub weight: Tensor,
    /// \[out\], zero at the start.
    pub bias: Tensor,
    /// sqrt(2 / (in k k)).
    pub scale: f64,
    options: Conv2dOptions,
}

impl EqualizedConv2d {
    pub fn new(
        input: usize,
        output: usize,
        kernel: usize,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Self> {
        let fan_in = input * kernel * kernel;
        let (weight, scale) =
            equalized_weight(&[output, input, kernel, kernel], fan_in, dtype, rng)?;
        let pad = kernel / 2;
        Ok(EqualizedConv2d {
            weight,
            bias: Tensor::zeros(&[output], dtype).requires_grad_(true)?,
            scale,
            options: Conv2dOptions {
                padding: (pad, pad, pad, pad),
                ..Conv2dOptions::default()
            },
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(
            &self.weight.mul_scalar(self.scale)?,
            Some(&self.bias),
            &self.options,
        )
    }
}

impl Module for EqualizedConv2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
}

/// A linear layer with the equalised learning rate.
pub struct EqualizedLinear {
    /// [out, in], ~ N(0, 1) at the start.
    pub weight: Tensor,
    /// \[out\], zero at the start.
    pub bias: Tensor,
    /// sqrt(2 / in).
    pub scale: f64,
}

impl EqualizedLinear {
    pub fn new(input: usize, output: usize, dtype: DType, rng: &mut Rng) -> Result<Self> {
        let (weight, scale) = equalized_weight(&[output, input], input, dtype, rng)?;
        Ok(EqualizedLinear {
            weight,
            bias: Tensor::zeros(&[output], dtype).requires_grad_(true)?,
            scale,
        })
    }

    /// x [n, in] -> [n, out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.mul_scalar(self.scale)?.transpose(0, 1)?)?
            .add(&self.bias)
    }
}

impl Module for EqualizedLinear {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
}

/// x / sqrt(mean over channels (axis 1) of x^2 + 1e-8), at every pixel.
pub fn pixel_norm(x: &Tensor) -> Result<Tensor> {
    x.div(&x.square()?.mean(&[1], true)?.add_scalar(1e-8)?.sqrt()?)
}

/// x [n, C, H, W] with one more feature map: per group of `group` consecutive samples (the
/// last group takes what is left), the standard deviation over the group of each feature at
/// each pixel, averaged over features and pixels; every sample of the group gets its group's
/// number as a constant map. -> [n, C + 1, H, W].
pub fn minibatch_stddev(x: &Tensor, group: usize) -> Result<Tensor> {
    let shape = x.shape();
    if shape.len() != 4 || group == 0 {
        return Err(Error::invalid(
            "minibatch_stddev",
            format!("needs [n, C, H, W] and a group of 1 or more, got {shape:?} and {group}"),
        ));
    }
    let (n, h, w) = (shape[0], shape[2], shape[3]);
    let whole = n / group * group;
    let mut maps = Vec::new();
    if whole > 0 {
        maps.push(group_stddev(&x.narrow(0, 0, whole)?, group, h, w)?);
    }
    if n > whole {
        maps.push(group_stddev(
            &x.narrow(0, whole, n - whole)?,
            n - whole,
            h,
            w,
        )?);
    }
    let mut parts = vec![x.clone()];
    parts.push(Tensor::concat(&maps, 0)?);
    Tensor::concat(&parts, 1)
}

/// [k g, C, H, W] -> [k g, 1, H, W]: each group of `g`'s mean standard deviation, as a map.
fn group_stddev(x: &Tensor, g: usize, h: usize, w: usize) -> Result<Tensor> {
    let s = x.shape();
    let (m, c) = (s[0], s[1]);
    let k = m / g;
    let y = x.reshape(&[k, g, c, h, w])?;
    let centred = y.sub(&y.mean(&[1], true)?)?;
    let std = centred
        .square()?
        .mean(&[1], false)?
        .add_scalar(1e-8)?
        .sqrt()?;
    std.mean(&[1, 2, 3], false)?
        .reshape(&[k, 1, 1, 1, 1])?
        .expand(&[k, g, 1, h, w])?
        .reshape(&[m, 1, h, w])
}

/// (1 - alpha) old + alpha new.
fn blend(old: &Tensor, new: &Tensor, alpha: f64) -> Result<Tensor> {
    old.mul_scalar(1.0 - alpha)?.add(&new.mul_scalar(alpha)?)
}

fn pool2(x: &Tensor) -> Result<Tensor> {
    x.avg_pool2d((2, 2), (2, 2), (0, 0), true)
}

/// conv -> LReLU 0.2 (-> PixelNorm in G).
fn conv_act(conv: &EqualizedConv2d, x: &Tensor, norm: bool) -> Result<Tensor> {
    let h = conv.forward(x)?.leaky_relu(SLOPE)?;
    if norm {
        pixel_norm(&h)
    } else {
        Ok(h)
    }
}

/// Two 3x3 convolutions: G's block after its upsampling, D's before its pooling.
pub struct Block {
    pub conv1: EqualizedConv2d,
    pub conv2: EqualizedConv2d,
}

impl Block {
    fn new(
        input: usize,
        middle: usize,
        output: usize,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Block> {
        Ok(Block {
            conv1: EqualizedConv2d::new(input, middle, 3, dtype, rng)?,
            conv2: EqualizedConv2d::new(middle, output, 3, dtype, rng)?,
        })
    }

    fn forward(&self, x: &Tensor, norm: bool) -> Result<Tensor> {
        conv_act(&self.conv2, &conv_act(&self.conv1, x, norm)?, norm)
    }
}

impl Module for Block {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(&[("conv1", &self.conv1), ("conv2", &self.conv2)], |m| {
            m.named_parameters()
        })
    }
}

/// z -> PN -> Linear -> LReLU -> PN -> [C, 7, 7] -> conv3x3 -> LReLU -> PN; then per level
/// up2 -> conv3x3 -> LReLU -> PN -> conv3x3 -> LReLU -> PN; a 1x1 toRGB per level.
pub struct Generator {
    pub fc: EqualizedLinear,
    pub conv7: EqualizedConv2d,
    /// The 14x14 and 28x28 blocks.
    pub blocks: Vec<Block>,
    /// At 7x7, 14x14, 28x28.
    pub to_rgb: Vec<EqualizedConv2d>,
    channels: [usize; 3],
}

impl Generator {
    pub fn new(
        latent: usize,
        channels: [usize; 3],
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Generator> {
        let c = channels;
        Ok(Generator {
            fc: EqualizedLinear::new(latent, c[0] * 49, dtype, rng)?,
            conv7: EqualizedConv2d::new(c[0], c[0], 3, dtype, rng)?,
            blocks: vec![
                Block::new(c[0], c[1], c[1], dtype, rng)?,
                Block::new(c[1], c[2], c[2], dtype, rng)?,
            ],
            to_rgb: c
                .iter()
                .map(|&ch| EqualizedConv2d::new(ch, 1, 1, dtype, rng))
                .collect::<Result<_>>()?,
            channels,
        })
    }

    /// z [n, latent] -> images [n, 1, r, r] (r the phase's resolution), unbounded.
    pub fn forward(&self, z: &Tensor, phase: Phase) -> Result<Tensor> {
        let n = z.shape().first().copied().unwrap_or(0);
        let h = self.fc.forward(&pixel_norm(z)?)?.leaky_relu(SLOPE)?;
        let h = pixel_norm(&h)?.reshape(&[n, self.channels[0], 7, 7])?;
        let mut h = conv_act(&self.conv7, &h, true)?;
        let mut previous = None;
        for block in &self.blocks[..phase.level] {
            let up = h.upsample_nearest2d(2)?;
            previous = Some(h);
            h = block.forward(&up, true)?;
        }
        let new = self.to_rgb[phase.level].forward(&h)?;
        match previous {
            Some(old) if phase.alpha < 1.0 => {
                let old = self.to_rgb[phase.level - 1]
                    .forward(&old)?
                    .upsample_nearest2d(2)?;
                blend(&old, &new, phase.alpha)
            }
            _ => Ok(new),
        }
    }
}

impl Module for Generator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = nn::children(&[("fc", &self.fc), ("conv7", &self.conv7)], |m| {
            m.named_parameters()
        });
        for (i, b) in self.blocks.iter().enumerate() {
            out.extend(nn::prefixed(
                &format!("block{}", 14 << i),
                b.named_parameters(),
            ));
        }
        for (i, t) in self.to_rgb.iter().enumerate() {
            out.extend(nn::prefixed(
                &format!("to_rgb{}", 7 << i),
                t.named_parameters(),
            ));
        }
        out
    }
}

/// A 1x1 fromRGB -> LReLU per level; blocks conv3x3 -> LReLU -> conv3x3 -> LReLU -> pool2 at
/// 28x28 and 14x14; at 7x7 mbstd -> conv3x3 -> LReLU -> Linear(C 7 7, C) -> LReLU -> Linear(C, 1).
pub struct Critic {
    /// At 7x7, 14x14, 28x28.
    pub from_rgb: Vec<EqualizedConv2d>,
    /// The 14x14 and 28x28 blocks (each pools to the level below).
    pub blocks: Vec<Block>,
    pub conv7: EqualizedConv2d,
    pub fc1: EqualizedLinear,
    pub fc2: EqualizedLinear,
    group: usize,
}

impl Critic {
    pub fn new(channels: [usize; 3], group: usize, dtype: DType, rng: &mut Rng) -> Result<Critic> {
        let c = channels;
        Ok(Critic {
            from_rgb: c
                .iter()
                .map(|&ch| EqualizedConv2d::new(1, ch, 1, dtype, rng))
                .collect::<Result<_>>()?,
            blocks: vec![
                Block::new(c[1], c[1], c[0], dtype, rng)?,
                Block::new(c[2], c[2], c[1], dtype, rng)?,
            ],
            conv7: EqualizedConv2d::new(c[0] + 1, c[0], 3, dtype, rng)?,
            fc1: EqualizedLinear::new(c[0] * 49, c[0], dtype, rng)?,
            fc2: EqualizedLinear::new(c[0], 1, dtype, rng)?,
            group,
        })
    }

    /// fromRGB of `level` -> LReLU.
    fn rgb_features(&self, x: &Tensor, level: usize) -> Result<Tensor> {
        self.from_rgb[level].forward(x)?.leaky_relu(SLOPE)
    }

    /// Images [n, 1, r, r] at the phase's resolution -> scores [n, 1].
    pub fn forward(&self, x: &Tensor, phase: Phase) -> Result<Tensor> {
        let level = phase.level;
        let mut h = self.rgb_features(x, level)?;
        if level > 0 {
            h = pool2(&self.blocks[level - 1].forward(&h, false)?)?;
            if phase.alpha < 1.0 {
                let old = self.rgb_features(&pool2(x)?, level - 1)?;
                h = blend(&old, &h, phase.alpha)?;
            }
        }
        for block in self.blocks[..level.saturating_sub(1)].iter().rev() {
            h = pool2(&block.forward(&h, false)?)?;
        }
        let h = conv_act(&self.conv7, &minibatch_stddev(&h, self.group)?, false)?;
        let n = h.shape()[0];
        let h = self.fc1.forward(&h.reshape(&[n, h.numel() / n.max(1)])?)?;
        self.fc2.forward(&h.leaky_relu(SLOPE)?)
    }
}

impl Module for Critic {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, f) in self.from_rgb.iter().enumerate() {
            out.extend(nn::prefixed(
                &format!("from_rgb{}", 7 << i),
                f.named_parameters(),
            ));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            out.extend(nn::prefixed(
                &format!("block{}", 14 << i),
                b.named_parameters(),
            ));
        }
        out.extend(nn::children(
            &[
                ("conv7", &self.conv7),
                ("fc1", &self.fc1),
                ("fc2", &self.fc2),
            ],
            |m| m.named_parameters(),
        ));
        out
    }
}

/// Real digits [n, 1, 28, 28] as the critic sees them in `phase`: avg-pooled to its resolution
/// and, during a fade, blended with their upsampled half-resolution version.
pub fn real_at(x: &Tensor, phase: Phase) -> Result<Tensor> {
    let mut x = x.clone();
    for _ in phase.level..2 {
        x = pool2(&x)?;
    }
    if phase.level > 0 && phase.alpha < 1.0 {
        let coarse = pool2(&x)?.upsample_nearest2d(2)?;
        x = blend(&coarse, &x, phase.alpha)?;
    }
    Ok(x)
}

pub struct Progan {
    config: ProganConfig,
    pub generator: Generator,
    pub critic: Critic,
    /// The moving average of G's weights, which samples.
    pub average: Generator,
    opt_g: Adam,
    opt_d: Adam,
    /// Training steps taken (f64 scalar, saved): the stage and alpha follow from it.
    steps: Tensor,
    /// The stage grids taken so far, [5, 64, 1, 28, 28] in [0, 1], and which were (1) or not.
    grids: Tensor,
    grids_taken: Tensor,
}

impl Progan {
    pub fn new(config: ProganConfig, rng: &mut Rng) -> Result<Progan> {
        check_latent(ENTRY.name, "latent", config.latent)?;
        let invalid = |m: String| Err(Error::invalid(ENTRY.name, m));
        if config.channels.iter().any(|&c| c == 0 || c > 1024) {
            return invalid(format!(
                "channels must each be in 1..=1024, got {:?}",
                config.channels
            ));
        }
        if config.group == 0 {
            return invalid("group must be 1 or more".into());
        }
        let weight_ok = |w: f64| w >= 0.0 && w.is_finite();
        if !(weight_ok(config.penalty) && weight_ok(config.drift)) {
            return invalid(format!(
                "penalty and drift must be >= 0 and finite, got {} and {}",
                config.penalty, config.drift
            ));
        }
        if config.penalty_every == 0 {
            return invalid("penalty_every must be 1 or more".into());
        }
        crate::adversarial::check_ema_decay(ENTRY.name, config.ema_decay)?;
        let (latent, channels) = (config.latent, config.channels);
        let generator = Generator::new(latent, channels, DType::F32, rng)?;
        let critic = Critic::new(channels, config.group, DType::F32, rng)?;
        // the average starts as G (its own tensors, never trained)
        let average = Generator::new(latent, channels, DType::F32, &mut Rng::new(0))?;
        copy_weights(&average, &generator)?;
        let adam = AdamConfig {
            lr: config.lr,
            betas: (config.beta1, config.beta2),
            ..AdamConfig::default()
        };
        let opt_g = Adam::new(
            nn::prefixed("generator", generator.named_parameters()),
            adam,
        )?;
        let opt_d = Adam::new(
            nn::prefixed("discriminator", critic.named_parameters()),
            adam,
        )?;
        Ok(Progan {
            config,
            generator,
            critic,
            average,
            opt_g,
            opt_d,
            steps: Tensor::zeros(&[], DType::F64),
            grids: Tensor::zeros(&[5, GRID, 1, 28, 28], DType::F32),
            grids_taken: Tensor::zeros(&[5], DType::F64),
        })
    }

    fn step_count(&self) -> Result<u64> {
        Ok(self.steps.item()? as u64)
    }

    /// The phase of the networks as trained so far.
    pub fn phase(&self) -> Result<Phase> {
        Ok(phase_at(&self.config.stage_steps, self.step_count()?))
    }

    /// One critic step and one generator step on real digits `x` (in [-1, 1], 28x28) at the
    /// current phase, then the average's update and, at a stage's grid step, its grid.
    fn step(&mut self, x: &Tensor, rng: &mut Rng) -> Result<Losses> {
        let phase = self.phase()?;
        let real = real_at(x, phase)?;
        let n = real.shape()[0];
        let (g, d) = (&self.generator, &self.critic);
        let z = noise(n, self.config.latent, rng);
        let fake = no_grad(|| g.forward(&z, phase))?;
        let c_real = d.forward(&real, phase)?;
        let c_fake = d.forward(&fake, phase)?;
        let wasserstein = c_real.mean_all()?.sub(&c_fake.mean_all()?)?;
        let e = Tensor::rand(&[n, 1, 1, 1], DType::F32, rng);
        let drift = c_real.square()?.mean_all()?;
        let mut critic_loss = wasserstein.neg()?;
        let every = self.config.penalty_every;
        let gp = if self.step_count()? % every == 0 {
            let gp = gradient_penalty(&mut |v| d.forward(v, phase), &real, &fake, &e)?;
            critic_loss = critic_loss.add(&gp.mul_scalar(self.config.penalty * every as f64)?)?;
            Some(gp)
        } else {
            None
        };
        let critic_loss = critic_loss.add(&drift.mul_scalar(self.config.drift)?)?;
        self.opt_d.minimize(&critic_loss)?;

        let z = noise(n, self.config.latent, rng);
        let g_loss = d
            .forward(&g.forward(&z, phase)?, phase)?
            .mean_all()?
            .neg()?;
        self.opt_g.minimize(&g_loss)?;
        let steps = self.step_count()? + 1;
        self.steps = Tensor::scalar(steps as f64, DType::F64);
        update_weight_average(&self.average, &self.generator, self.config.ema_decay, steps)?;
        self.take_grid(steps)?;
        let mut losses = vec![
            ("critic_loss".into(), critic_loss.item()?),
            ("wasserstein".into(), wasserstein.item()?),
            ("drift".into(), drift.item()?),
            ("g_loss".into(), g_loss.item()?),
        ];
        if let Some(gp) = gp {
            losses.insert(2, ("penalty".into(), gp.item()?));
        }
        Ok(losses)
    }

    /// At a stage's grid step, the average's samples into its slot of `grids`.
    fn take_grid(&mut self, steps: u64) -> Result<()> {
        let at = grid_steps(&self.config.stage_steps);
        let Some(stage) = at.iter().position(|&s| s == steps) else {
            return Ok(());
        };
        let grid = no_grad(|| self.sample(GRID, &mut Rng::new(GRID_SEED)))?;
        let mut all = self.grids.to_vec_f32();
        let size = GRID * 28 * 28;
        all[stage * size..(stage + 1) * size].copy_from_slice(&grid.to_vec_f32());
        self.grids = Tensor::from_vec(all, &[5, GRID, 1, 28, 28])?;
        let mut taken = self.grids_taken.to_vec_f64();
        taken[stage] = 1.0;
        self.grids_taken = Tensor::from_vec(taken, &[5])?;
        Ok(())
    }
}

impl GenerativeModel for Progan {
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
        let mut w = player_weights(&self.generator, &self.critic);
        w.extend(nn::prefixed(
            "generator_average",
            self.average.named_parameters(),
        ));
        w.push(("steps".into(), self.steps.clone()));
        // the stage follows from the step count; written out for whoever reads the checkpoint
        // (loaded back, they change nothing)
        if let Ok(phase) = self.phase() {
            w.push((
                "resolution".into(),
                Tensor::scalar(phase.resolution() as f64, DType::F64),
            ));
            w.push(("alpha".into(), Tensor::scalar(phase.alpha, DType::F64)));
        }
        w.push(("stage_grids".into(), self.grids.clone()));
        w.push(("stage_grids_taken".into(), self.grids_taken.clone()));
        w
    }
    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        player_optimizers(&self.opt_g, &self.opt_d)
    }
    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        player_optimizers_mut(&mut self.opt_g, &mut self.opt_d)
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = batch.tensor(Pixels::Symmetric, rng)?;
        self.step(&x, rng)
    }
    /// The average's samples at the current resolution, upsampled (nearest) to 28x28.
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let phase = self.phase()?;
        let z = noise(n, self.config.latent, rng);
        let x = self.average.forward(&z, phase)?;
        to_unit(&x.upsample_nearest2d(28 / phase.resolution())?)
    }
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut metrics = epoch_metrics(self, ctx, None)?;
        let phase = self.phase()?;
        metrics.push(Metric::new("resolution", phase.resolution() as f64));
        metrics.push(Metric::new("alpha", phase.alpha));
        Ok(metrics)
    }
    /// The stage grids taken (module doc).
    fn end_of_training(&mut self, dir: &Path, _data: &Mnist) -> Result<()> {
        let taken = self.grids_taken.to_vec_f64();
        for (stage, name) in GRID_NAMES.iter().enumerate() {
            if taken[stage] > 0.0 {
                let grid = self
                    .grids
                    .narrow(0, stage, 1)?
                    .reshape(&[GRID, 1, 28, 28])?;
                write_atomic(
                    &dir.join(format!("{name}.png")),
                    &image::grid_png(&grid, Some(8), 2)?,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adversarial::max_diff;

    const SMALL: [usize; 3] = [8, 6, 4];

    #[test]
    fn the_schedule_fades_in_linearly_then_stays_at_28() {
        let stages = [2, 4, 1, 2, 1];
        let at = |s| {
            let p = phase_at(&stages, s);
            (p.resolution(), p.alpha)
        };
        assert_eq!(at(0), (7, 1.0));
        assert_eq!(at(1), (7, 1.0));
        assert_eq!(at(2), (14, 0.0));
        assert_eq!(at(3), (14, 0.25));
        assert_eq!(at(5), (14, 0.75));
        assert_eq!(at(6), (14, 1.0));
        assert_eq!(at(7), (28, 0.0));
        assert_eq!(at(8), (28, 0.5));
        assert_eq!(at(9), (28, 1.0));
        assert_eq!(at(1000), (28, 1.0));
        assert_eq!(grid_steps(&stages), [2, 4, 7, 8, 10]);
    }

    #[test]
    fn the_default_stages_are_whole_epochs_of_the_embedded_digits_at_the_default_batch() {
        let train = crate::program::data::embedded().unwrap().train.len();
        let epoch = train.div_ceil(ENTRY.default_batch_size) as u64;
        let steps = ProganConfig::default().stage_steps;
        assert_eq!(steps, STAGE_EPOCHS.map(|e| e * epoch));
        assert_eq!(steps.iter().sum::<u64>(), DEFAULT_EPOCHS as u64 * epoch);
        assert_eq!(ENTRY.default_epochs, DEFAULT_EPOCHS);
    }

    #[test]
    fn at_alpha_0_the_generator_draws_the_lower_resolution_upsampled() {
        let mut rng = Rng::new(1);
        let g = Generator::new(5, SMALL, DType::F32, &mut rng).unwrap();
        let z = noise(3, 5, &mut rng);
        for level in 1..=2 {
            let lower = g
                .forward(
                    &z,
                    Phase {
                        level: level - 1,
                        alpha: 1.0,
                    },
                )
                .unwrap();
            let faded = g.forward(&z, Phase { level, alpha: 0.0 }).unwrap();
            assert_eq!(faded.shape(), &[3, 1, 7 << level, 7 << level]);
            assert_eq!(
                faded.to_vec_f32(),
                lower.upsample_nearest2d(2).unwrap().to_vec_f32(),
                "level {level}"
            );
            // the new block counts once alpha is above 0
            let half = g.forward(&z, Phase { level, alpha: 0.5 }).unwrap();
            assert!(max_diff(&half, &faded) > 1e-3, "level {level}");
        }
    }

    #[test]
    fn the_critic_fades_from_the_pooled_old_path_to_the_new_one() {
        let mut rng = Rng::new(2);
        let d = Critic::new(SMALL, 4, DType::F32, &mut rng).unwrap();
        let x = Tensor::randn(&[4, 1, 28, 28], DType::F32, &mut rng);
        let x14 = pool2(&x).unwrap();
        for (level, x) in [(1, &x14), (2, &x)] {
            // alpha 0: the lower-resolution critic on the pooled image
            let faded = d.forward(x, Phase { level, alpha: 0.0 }).unwrap();
            let lower = d
                .forward(
                    &pool2(x).unwrap(),
                    Phase {
                        level: level - 1,
                        alpha: 1.0,
                    },
                )
                .unwrap();
            assert_eq!(faded.to_vec_f32(), lower.to_vec_f32(), "level {level}");
            // alpha 1: the old fromRGB takes no part
            let stable = Phase { level, alpha: 1.0 };
            let before = d.forward(x, stable).unwrap();
            let mid = d.forward(x, Phase { level, alpha: 0.5 }).unwrap();
            d.from_rgb[level - 1]
                .weight
                .update_data::<f32>(|w| w.iter_mut().for_each(|v| *v += 1.0))
                .unwrap();
            assert_eq!(
                d.forward(x, stable).unwrap().to_vec_f32(),
                before.to_vec_f32(),
                "level {level}"
            );
            let mid_after = d.forward(x, Phase { level, alpha: 0.5 }).unwrap();
            assert!(max_diff(&mid, &mid_after) > 1e-4, "level {level}");
        }
    }

    #[test]
    fn pixel_norm_gives_unit_mean_square_at_every_pixel() {
        let mut rng = Rng::new(3);
        let x = Tensor::randn(&[3, 5, 4, 4], DType::F64, &mut rng)
            .mul_scalar(7.0)
            .unwrap();
        let ms = pixel_norm(&x)
            .unwrap()
            .square()
            .unwrap()
            .mean(&[1], false)
            .unwrap();
        assert_eq!(ms.shape(), &[3, 4, 4]);
        for v in ms.to_vec_f64() {
            assert!((v - 1.0).abs() < 1e-7, "{v}");
        }
        // on z: per sample
        let z = Tensor::from_vec(vec![3.0f64, 4.0], &[1, 2]).unwrap();
        let b = pixel_norm(&z).unwrap().to_vec_f64();
        let r = 12.5f64.sqrt();
        assert!(
            (b[0] - 3.0 / r).abs() < 1e-9 && (b[1] - 4.0 / r).abs() < 1e-9,
            "{b:?}"
        );
    }

    #[test]
    fn minibatch_stddev_on_a_hand_computed_example() {
        // 5 samples, 2 features, 1 pixel, groups of 4: the first four form a group, the fifth
        // is alone. Feature 0 over the group: 1, 3, 1, 3 (std 1); feature 1: 0, 0, 0, 4 (mean
        // 1, variance 3, std sqrt 3): the group's number is (1 + sqrt 3) / 2.
        let x = Tensor::from_vec(
            vec![1.0f64, 0.0, 3.0, 0.0, 1.0, 0.0, 3.0, 4.0, 9.0, -9.0],
            &[5, 2, 1, 1],
        )
        .unwrap();
        let y = minibatch_stddev(&x, 4).unwrap();
        assert_eq!(y.shape(), &[5, 3, 1, 1]);
        let v = y.to_vec_f64();
        let want = ((1.0f64 + 1e-8).sqrt() + (3.0f64 + 1e-8).sqrt()) / 2.0;
        for s in 0..4 {
            assert!((v[3 * s + 2] - want).abs() < 1e-12, "{v:?}");
            assert_eq!(&v[3 * s..3 * s + 2], &x.to_vec_f64()[2 * s..2 * s + 2]);
        }
        // a group of one has no spread: sqrt(1e-8)
        assert!((v[14] - 1e-4).abs() < 1e-12, "{v:?}");
        // the map is constant over pixels
        let x = Tensor::randn(&[8, 3, 2, 2], DType::F64, &mut Rng::new(4));
        let y = minibatch_stddev(&x, 4).unwrap();
        let m = y.narrow(1, 3, 1).unwrap().to_vec_f64();
        assert!(m[..16].iter().all(|&v| v == m[0]) && m[16..].iter().all(|&v| v == m[16]));
        assert_ne!(m[0], m[16]);
    }

    #[test]
    fn equalized_layers_scale_their_stored_weights_by_the_he_constant() {
        let mut rng = Rng::new(5);
        let conv = EqualizedConv2d::new(3, 4, 3, DType::F64, &mut rng).unwrap();
        conv.bias
            .update_data::<f64>(|b| b.iter_mut().enumerate().for_each(|(i, v)| *v = i as f64))
            .unwrap();
        let c = (2.0f64 / 27.0).sqrt();
        assert_eq!(conv.scale, c);
        let scaled: Vec<f64> = conv.weight.to_vec_f64().iter().map(|w| w * c).collect();
        let plain = Tensor::from_vec(scaled, &[4, 3, 3, 3]).unwrap();
        let x = Tensor::randn(&[2, 3, 5, 5], DType::F64, &mut rng);
        let opts = Conv2dOptions {
            padding: (1, 1, 1, 1),
            ..Conv2dOptions::default()
        };
        let want = x.conv2d(&plain, Some(&conv.bias), &opts).unwrap();
        assert!(max_diff(&conv.forward(&x).unwrap(), &want) < 1e-12);

        let lin = EqualizedLinear::new(6, 2, DType::F64, &mut rng).unwrap();
        let c = (2.0f64 / 6.0).sqrt();
        let w = lin.weight.to_vec_f64();
        let x = Tensor::randn(&[3, 6], DType::F64, &mut rng);
        let xv = x.to_vec_f64();
        let y = lin.forward(&x).unwrap().to_vec_f64();
        for s in 0..3 {
            for o in 0..2 {
                let want: f64 = (0..6).map(|i| xv[6 * s + i] * w[6 * o + i] * c).sum();
                assert!((y[2 * s + o] - want).abs() < 1e-12);
            }
        }
        // stored ~ N(0, 1), biases 0
        let big = EqualizedConv2d::new(64, 64, 3, DType::F32, &mut rng).unwrap();
        let w = big.weight.to_vec_f64();
        let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
        assert!((var - 1.0).abs() < 0.05, "{var}");
        assert!(lin.bias.to_vec_f64().iter().all(|&b| b == 0.0));
    }

    /// The penalty differentiates through the gradient of every op of a fading critic (pooling,
    /// the blend, minibatch stddev): its gradient by the engine matches finite differences.
    #[test]
    fn the_penalty_differentiates_through_the_fading_critic() {
        let mut rng = Rng::new(6);
        let d = Critic::new([3, 2, 2], 2, DType::F64, &mut rng).unwrap();
        let phase = Phase {
            level: 2,
            alpha: 0.5,
        };
        let real = Tensor::randn(&[4, 1, 28, 28], DType::F64, &mut rng);
        let fake = Tensor::randn(&[4, 1, 28, 28], DType::F64, &mut rng);
        let e = Tensor::rand(&[4, 1, 1, 1], DType::F64, &mut rng);
        let penalty =
            |d: &Critic| gradient_penalty(&mut |v| d.forward(v, phase), &real, &fake, &e).unwrap();
        let params = d.parameters();
        let grads = autograd::grad(&[penalty(&d)], &[], &params, false).unwrap();
        // missing gradients: fc2's bias, the unused 7x7 fromRGB; a few elements of each
        let checked = crate::adversarial::wgan::check_against_finite_differences(
            &params,
            &grads,
            &|| penalty(&d).item().unwrap(),
            &|n| (0..n).step_by(n.div_ceil(3)).collect(),
            1e-5,
        );
        assert!(checked > 30, "{checked}");
    }

    #[test]
    fn training_walks_the_stages_and_averages_the_generator() {
        let m = crate::program::data::embedded().unwrap();
        let batch = m.train.batch(&(0..8).collect::<Vec<_>>());
        let mut rng = Rng::new(7);
        let cfg = ProganConfig {
            channels: SMALL,
            latent: 8,
            stage_steps: [1, 2, 1, 2, 1],
            ..ProganConfig::default()
        };
        let mut p = Progan::new(cfg, &mut rng).unwrap();
        let mut resolutions = Vec::new();
        for _ in 0..8 {
            resolutions.push(p.phase().unwrap().resolution());
            let l = p.train_step(&batch, &mut rng).unwrap();
            assert!(l.iter().all(|(_, v)| v.is_finite()), "{l:?}");
        }
        assert_eq!(resolutions, [7, 14, 14, 14, 28, 28, 28, 28]);
        assert_eq!(p.grids_taken.to_vec_f64(), vec![1.0; 5]);
        let s = p.sample(3, &mut rng).unwrap();
        assert_eq!(s.shape(), &[3, 1, 28, 28]);
        // the average trails G
        let (a, g) = (&p.average.fc.weight, &p.generator.fc.weight);
        assert!(max_diff(a, g) > 0.0);
        assert!(p
            .weights()
            .iter()
            .any(|(n, _)| n == "generator_average.fc.weight"));
    }

    #[test]
    fn a_lazy_penalty_is_taken_every_kth_step_at_k_times_the_weight() {
        let m = crate::program::data::embedded().unwrap();
        let batch = m.train.batch(&(0..8).collect::<Vec<_>>());
        let run = |every: u64| {
            let mut rng = Rng::new(8);
            let cfg = ProganConfig {
                channels: SMALL,
                latent: 8,
                penalty_every: every,
                ..ProganConfig::default()
            };
            let mut p = Progan::new(cfg, &mut rng).unwrap();
            (0..5)
                .map(|_| p.train_step(&batch, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        let value = |l: &Losses, key: &str| l.iter().find(|(k, _)| k == key).map(|&(_, v)| v);
        let (eager, lazy) = (run(1), run(3));
        let taken: Vec<bool> = lazy.iter().map(|l| value(l, "penalty").is_some()).collect();
        assert_eq!(taken, [true, false, false, true, false]);
        assert!(eager.iter().all(|l| value(l, "penalty").is_some()));
        // the first step is the same draw in both: the lazy critic loss holds 3 x lambda x gp
        let (e, l) = (&eager[0], &lazy[0]);
        let gp = value(e, "penalty").unwrap();
        assert_eq!(value(l, "penalty"), Some(gp));
        let extra = value(l, "critic_loss").unwrap() - value(e, "critic_loss").unwrap();
        assert!(
            (extra - 20.0 * gp).abs() < 1e-4 * (1.0 + gp),
            "{extra} against {}",
            20.0 * gp
        );
        let bad = ProganConfig {
            penalty_every: 0,
            ..ProganConfig::default()
        };
        assert!(Progan::new(bad, &mut Rng::new(0)).is_err());
    }
}
