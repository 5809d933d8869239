//! Puzzle-GAN (Lee, Hwang, Hong & Kim 2018, "Unsupervised Holistic Image Generation from Key
//! Local Patches"): from k = 3 patches cut from a digit, their positions not given, generate
//! the whole digit and a mask M_hat of where the patches belong.
//!
//! ```text
//!   e_l = sum_i E_l(p_i)                 the part encoder's features at 14x14, 7x7 and 1x1,
//!                                          summed over the patches (order-free);
//!                                          e_1 = R(sum_i E_1(p_i)), R an MLP (below)
//!   M_hat = M(e)                          mask generator, skip connections from e_14, e_7
//!   x_hat = G(e_1, z, M's features)       image generator, skip connections from M
//!   L_D = BCE(D(x), 1) + BCE(D(x_hat), 0) + BCE(D(x_s ⊙ M + x ⊙ (1 - M)), 0)
//!                                         + BCE(D(x ⊙ M + x_s ⊙ (1 - M)), 0)
//!   L_G = BCE(D(x_hat), 1) + w_mask |M_hat - M|_1 + w_app |M ⊙ (x_hat - x)|_1
//! ```
//!
//! M is the union of the patch boxes (the ground truth mask), x_s another digit of the batch:
//! the two composites, another digit's content inside the mask over the real background and
//! the real parts over another digit's background, are fakes D must reject, so G's parts and
//! the rest must fit together. The mask term is a mean over all pixels, the appearance term a
//! mean over the pixels inside the true mask. Their weight w falls log-linearly over training
//! (`np.logspace` in the paper's code), here from 100 to 30 over 30 epochs, G updated on every
//! batch. The paper's code goes from 1e-2 to 1e-4 and updates G on every second batch; here that
//! left G ignoring its patches (after 3 epochs the classifier read the source digit in 10% of
//! the completions, chance, and no predicted mask overlapped its truth): under Adam the weight
//! does not set how fast the terms train but what share of the gradient of G's shared layers
//! they get, and at 1e-2 the adversarial term's was all of it. Falling to 3 (from 30), it let
//! the late epochs trade the patches for realism: the source digit kept 58.8% against 71.8%
//! with the weight held at 30 or more (README).
//!
//! At digit scale. A patch is a box of 8-10 pixels centred on an inked pixel, resized
//! (bilinear) to 28 x 28 as the paper's code resizes its crops to the image's size, so the
//! network sees the patch's content and not where it was. Networks (the paper's U-Net
//! structure, DCGAN-sized; a transposed convolution from 1 x 1 is a linear layer), with one
//! addition, the mixer R on the summed code (DeepSets' rho, Zaheer et al. 2017): the paper's
//! generators begin with a linear layer of the sum, in which each patch adds a term of its own
//! and the patches meet only in the ReLU after it; R lets them combine first (the source digit
//! kept 49.9% -> 58.8% at the old weights, `mixer` 0 turns it off):
//!
//! ```text
//!   E: p -> Conv(1, 32, k4, s2) -> LReLU [e_14] -> Conv(32, 64, k4, s2) -> BN -> LReLU [e_7]
//!        -> Linear(64*7*7, 128) -> LReLU, summed over the patches
//!        -> R: Linear(128, 256) -> LReLU -> Linear(256, 128) -> LReLU [e_1]
//!   M: e_1 -> Linear -> [64, 7, 7] -> BN -> ReLU, | e_7 -> ConvT(128, 32) -> BN -> ReLU, | e_14
//!        -> ConvT(64, 1) -> sigmoid
//!   G: [e_1 | z] -> Linear -> [64, 7, 7] -> BN -> ReLU, | M_7 -> ConvT(192, 32) -> BN -> ReLU,
//!        | M_14 -> ConvT(96, 1) -> tanh
//!   D: DCGAN's discriminator
//! ```
//!
//! (`|` joins channels; ConvT is k4 s2 p1.) Evaluation on the test digits, each with three
//! boxes from a fixed seed: the mask's IoU with the true union (M_hat > 0.5), the classifier's
//! agreement with the source digit's label, the L1 distance inside the true mask, and the
//! sample metrics (FCD, ...) of the completed digits. `genzoo complete` draws patches,
//! masks, completions and originals.

use crate::adversarial::networks::{
    batch_of, check_latent, conv_stride2, dcgan_init, stride2, ConvDiscriminator, NormOptions,
    SLOPE,
};
use crate::adversarial::{
    bce_to, player_adams, player_optimizers, player_optimizers_mut, player_weights, to_unit,
    uniform_symmetric, GanConfig, Monitor, Network, WeightAverage,
};
use crate::autoregressive::completion_indices;
use crate::latent::Mlp;
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Mnist, Pixels, Split};
use crate::program::eval::{EvalContext, Metric};
use crate::program::{checkpoint, image, metrics};
use autograd::nn::{self, BatchNorm2d, Conv2d, ConvTranspose2d, Linear, Module, Reduction};
use autograd::optim::{Adam, Optimizer};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub static ENTRY: Entry = Entry {
    name: "puzzle-gan",
    title: "Puzzle-GAN: the whole digit and a mask of where they belong from three key patches",
    paper:
        "Lee, Hwang, Hong & Kim 2018, Unsupervised Holistic Image Generation from Key Local Patches",
    family: Family::Adversarial,
    default_epochs: 30,
    default_batch_size: 64,
    default_config: || serde_json::to_value(PuzzleConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(PuzzleGan::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// Patches per digit.
pub const PATCHES: usize = 3;
/// A patch box's side: 8, 9 or 10 pixels.
pub const BOX_MIN: usize = 8;
pub const BOX_MAX: usize = 10;
const N: usize = 28;
const PIXELS: usize = N * N;
/// The part code's size (e_1).
const CODE: usize = 128;
/// Channels at 7 x 7 and at 14 x 14 in the encoder (and in each generator's own maps).
const C7: usize = 64;
const C14: usize = 32;
/// An inked pixel, where a patch may be centred: at least half intensity.
const INK: u8 = 128;
/// Test digits the per-epoch metrics complete.
const EPOCH_DIGITS: usize = 500;
/// The seed of the test digits' patch boxes (evaluation, pictures, samples).
const TEST_BOXES: u64 = 0x09a7_c4e5;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PuzzleConfig {
    /// Adam's learning rate, both players.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// The size of the noise z ~ U(-1, 1) (the paper's code draws it uniform).
    pub noise: usize,
    /// The L1 terms' weight at the first epoch and at `decay_epochs` and after.
    pub weight_start: f64,
    pub weight_end: f64,
    pub decay_epochs: u64,
    /// G is updated on every `g_every`-th batch (the paper's code: 2; here 1).
    pub g_every: u64,
    /// Whether the mask generator reads the part encoder's 14 x 14 and 7 x 7 maps (the paper's
    /// U-Net skips); without them it reads the summed part code alone.
    pub part_skips: bool,
    /// The width of the hidden layer of an MLP between the summed part code and the generators
    /// (DeepSets' rho: without it, the code's first layer in each generator is linear, so each
    /// patch adds its own term and the patches meet only in the ReLU after it); 0: none, as the
    /// paper. A run saved before the key existed has none.
    #[serde(default = "saved_before_the_mixer")]
    pub mixer: usize,
    /// BatchNorm's eps and momentum (PyTorch's meaning).
    pub bn_eps: f64,
    pub bn_momentum: f64,
    /// Decay of a moving average of the generator side's weights (E, R, M and G, and their
    /// BatchNorm statistics), updated after every generator step, that completes (beyond the
    /// paper, as the other GANs' averages here; [`WeightAverage`]); the trained networks'
    /// figures are reported beside it as `trained_*`. 0: no average (the paper, and a run
    /// saved before the key).
    #[serde(default = "crate::adversarial::saved_before_averages")]
    pub ema_decay: f64,
}

/// `mixer` of a run saved before the key existed: none (its checkpoint holds none). New runs
/// write the key; `Default` gives them theirs.
fn saved_before_the_mixer() -> usize {
    0
}

impl Default for PuzzleConfig {
    fn default() -> Self {
        PuzzleConfig {
            // DCGAN's 2e-4 before 2026-12-07: 5e-4 kept the digit in 74.3% / 72.8% of the
            // test completions against 71.8% / 67.2% (seeds 0 / 1, README); the L1 terms,
            // weighted 30-100, make G's task nearer a regression than a game
            lr: 5e-4,
            beta1: 0.5,
            beta2: 0.999,
            noise: 64,
            weight_start: 100.0,
            weight_end: 30.0,
            decay_epochs: ENTRY.default_epochs as u64,
            g_every: 1,
            part_skips: true,
            mixer: 256,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
            ema_decay: 0.0,
        }
    }
}

impl PuzzleConfig {
    /// The shared GAN settings (Adam, BatchNorm) as the other BCE games hold them.
    fn gan(&self) -> GanConfig {
        GanConfig {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            latent: self.noise,
            bn_eps: self.bn_eps,
            bn_momentum: self.bn_momentum,
            ..GanConfig::default()
        }
    }

    /// The L1 terms' weight in epoch `epoch` (0-based): `logspace(start, end, decay_epochs)`.
    pub fn l1_weight(&self, epoch: u64) -> f64 {
        let last = self.decay_epochs.saturating_sub(1).max(1) as f64;
        let t = (epoch as f64 / last).min(1.0);
        let (a, b) = (self.weight_start.log10(), self.weight_end.log10());
        10f64.powf(a + (b - a) * t)
    }

    fn check(&self) -> Result<()> {
        check_latent(ENTRY.name, "noise", self.noise)?;
        let weights_ok = [self.weight_start, self.weight_end]
            .iter()
            .all(|w| w.is_finite() && *w > 0.0);
        crate::adversarial::check_ema_decay(ENTRY.name, self.ema_decay)?;
        if !weights_ok || self.g_every == 0 {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "weight_start and weight_end must be positive and g_every at least 1, got {}, {}, {}",
                    self.weight_start, self.weight_end, self.g_every
                ),
            ));
        }
        Ok(())
    }
}

// ----- the patches -------------------------------------------------------------------------

/// A square box in a 28 x 28 digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchBox {
    pub top: usize,
    pub left: usize,
    pub size: usize,
}

impl PatchBox {
    /// Whether the pixel at raster index `i` lies in the box.
    pub fn covers(&self, i: usize) -> bool {
        let (r, c) = (i / N, i % N);
        (self.top..self.top + self.size).contains(&r)
            && (self.left..self.left + self.size).contains(&c)
    }
}

/// `PATCHES` boxes of `BOX_MIN..=BOX_MAX` pixels, each centred (as near as the border allows)
/// on an inked pixel of `img` drawn at random among those no earlier box covers (so the patches
/// are different parts of the digit, as the paper's key parts are; any inked pixel once every
/// one is covered); on a blank image, anywhere.
pub fn pick_boxes(img: &[u8], rng: &mut Rng) -> [PatchBox; PATCHES] {
    let ink: Vec<usize> = (0..img.len().min(PIXELS))
        .filter(|&i| img[i] >= INK)
        .collect();
    let mut chosen: Vec<PatchBox> = Vec::with_capacity(PATCHES);
    for _ in 0..PATCHES {
        let size = BOX_MIN + rng.below((BOX_MAX - BOX_MIN + 1) as u64) as usize;
        let uncovered: Vec<usize> = ink
            .iter()
            .copied()
            .filter(|&i| !chosen.iter().any(|b| b.covers(i)))
            .collect();
        let pool = if uncovered.is_empty() {
            &ink
        } else {
            &uncovered
        };
        let centre = if pool.is_empty() {
            rng.below(PIXELS as u64) as usize
        } else {
            pool[rng.below(pool.len() as u64) as usize]
        };
        let place = |c: usize| c.saturating_sub(size / 2).min(N - size);
        chosen.push(PatchBox {
            top: place(centre / N),
            left: place(centre % N),
            size,
        });
    }
    std::array::from_fn(|k| chosen[k])
}

/// The boxes of test digit `index` (`img`) wherever the test digits are completed (evaluation,
/// pictures, samples): the same digit, the same boxes.
pub fn test_boxes(img: &[u8], index: usize) -> [PatchBox; PATCHES] {
    pick_boxes(img, &mut Rng::new(TEST_BOXES ^ index as u64))
}

/// The box of `img` (grey levels) resized to 28 x 28 by bilinear interpolation (pixel centres
/// aligned, as PIL and PyTorch's `align_corners=False`), in [-1, 1].
pub fn crop_resized(img: &[u8], b: PatchBox) -> Vec<f32> {
    let scale = b.size as f64 / N as f64;
    let at = |r: usize, c: usize| img[(b.top + r) * N + b.left + c] as f64;
    let source = |o: usize| {
        let s = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (b.size - 1) as f64);
        let i = (s.floor() as usize).min(b.size - 1);
        (i, (i + 1).min(b.size - 1), s - i as f64)
    };
    let mut out = Vec::with_capacity(PIXELS);
    for r in 0..N {
        let (r0, r1, fr) = source(r);
        for c in 0..N {
            let (c0, c1, fc) = source(c);
            let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
            let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
            let v = top * (1.0 - fr) + bottom * fr;
            out.push((v / 127.5 - 1.0) as f32);
        }
    }
    out
}

/// The union of `boxes` as a 28 x 28 mask of 0 and 1.
pub fn union_mask(boxes: &[PatchBox]) -> Vec<f32> {
    let mut m = vec![0.0f32; PIXELS];
    for b in boxes {
        for r in b.top..b.top + b.size {
            m[r * N + b.left..r * N + b.left + b.size].fill(1.0);
        }
    }
    m
}

/// What G is given for a batch of digits and what it is measured against.
pub struct Puzzle {
    /// [PATCHES * n, 1, 28, 28]: every digit's first patch, then every second, then every third.
    pub patches: Tensor,
    /// The true masks [n, 1, 28, 28].
    pub mask: Tensor,
    pub boxes: Vec<[PatchBox; PATCHES]>,
}

impl Puzzle {
    /// The patches and masks of `images` (n grey-level digits) with boxes from `rng`.
    pub fn of(images: &[u8], rng: &mut Rng) -> Result<Puzzle> {
        let boxes = images
            .chunks_exact(PIXELS)
            .map(|d| pick_boxes(d, rng))
            .collect();
        Puzzle::with_boxes(images, boxes)
    }

    /// The patches and masks of `images` (n grey-level digits) cut by `boxes` (n of them).
    pub fn with_boxes(images: &[u8], boxes: Vec<[PatchBox; PATCHES]>) -> Result<Puzzle> {
        let n = boxes.len();
        let mask: Vec<f32> = boxes.iter().flat_map(|b| union_mask(b)).collect();
        Ok(Puzzle {
            patches: stacked_patches(images, &boxes, crop_resized)?,
            mask: Tensor::from_vec(mask, &[n, 1, N, N])?,
            boxes,
        })
    }
}

/// Every digit's first patch, then every second, then every third ([PATCHES * n, 1, 28, 28]),
/// each cut from `images` (n grey-level digits) by `cut` with the digit's `boxes`.
fn stacked_patches(
    images: &[u8],
    boxes: &[[PatchBox; PATCHES]],
    cut: fn(&[u8], PatchBox) -> Vec<f32>,
) -> Result<Tensor> {
    let digits: Vec<&[u8]> = images.chunks_exact(PIXELS).collect();
    let n = digits.len();
    if boxes.len() != n {
        return Err(Error::shape(
            ENTRY.name,
            format!("{} digits cut by {} sets of boxes", n, boxes.len()),
        ));
    }
    let mut patches = Vec::with_capacity(PATCHES * n * PIXELS);
    for k in 0..PATCHES {
        for (d, b) in digits.iter().zip(boxes) {
            patches.extend(cut(d, b[k]));
        }
    }
    Tensor::from_vec(patches, &[PATCHES * n, 1, N, N])
}

// ----- the networks ------------------------------------------------------------------------

/// The part encoder's features of the patches, each summed over a digit's patches.
struct PartFeatures {
    e14: Tensor,
    e7: Tensor,
    e1: Tensor,
}

/// E: a patch -> features at 14 x 14, 7 x 7 and a code (module doc), shared by the patches.
struct PartEncoder {
    conv1: Conv2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    fc: Linear,
}

impl PartEncoder {
    fn new(norm: NormOptions, rng: &mut Rng) -> Result<PartEncoder> {
        Ok(PartEncoder {
            conv1: Conv2d::new(1, C14, (4, 4), conv_stride2(), true, DType::F32, rng)?,
            conv2: Conv2d::new(C14, C7, (4, 4), conv_stride2(), true, DType::F32, rng)?,
            bn2: BatchNorm2d::with_options(C7, norm.eps, norm.momentum, DType::F32)?,
            fc: Linear::new(C7 * 49, CODE, true, DType::F32, rng)?,
        })
    }

    /// Patches [PATCHES * n, 1, 28, 28] -> each feature summed over a digit's patches.
    fn forward(&mut self, patches: &Tensor) -> Result<PartFeatures> {
        let kn = batch_of(patches);
        let n = kn / PATCHES;
        let e14 = self.conv1.forward(patches)?.leaky_relu(SLOPE)?;
        let e7 = self
            .bn2
            .forward(&self.conv2.forward(&e14)?)?
            .leaky_relu(SLOPE)?;
        let e1 = self
            .fc
            .forward(&e7.reshape(&[kn, C7 * 49])?)?
            .leaky_relu(SLOPE)?;
        let summed = |t: &Tensor| -> Result<Tensor> {
            let mut shape = vec![PATCHES, n];
            shape.extend_from_slice(&t.shape()[1..]);
            t.reshape(&shape)?.sum(&[0], false)
        };
        Ok(PartFeatures {
            e14: summed(&e14)?,
            e7: summed(&e7)?,
            e1: summed(&e1)?,
        })
    }
}

impl Module for PartEncoder {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("conv1", &self.conv1),
                ("conv2", &self.conv2),
                ("bn2", &self.bn2),
                ("fc", &self.fc),
            ],
            |m| m.named_parameters(),
        )
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::prefixed("bn2", self.bn2.named_buffers())
    }
    fn set_training(&mut self, training: bool) {
        self.bn2.set_training(training)
    }
}

/// The decoder both generators share in shape: a code -> [C7, 7, 7] -> BN -> ReLU, joined to
/// `skip7` -> ConvT -> [C14, 14, 14] -> BN -> ReLU, joined to `skip14` -> ConvT -> one plane.
/// Returns its two joined maps (what the image generator's skips read) and the plane.
struct Decoder {
    fc: Linear,
    bn0: BatchNorm2d,
    deconv1: ConvTranspose2d,
    bn1: BatchNorm2d,
    deconv2: ConvTranspose2d,
}

impl Decoder {
    fn new(
        code: usize,
        skip7: usize,
        skip14: usize,
        norm: NormOptions,
        rng: &mut Rng,
    ) -> Result<Decoder> {
        let bn = |c| BatchNorm2d::with_options(c, norm.eps, norm.momentum, DType::F32);
        Ok(Decoder {
            fc: Linear::new(code, C7 * 49, true, DType::F32, rng)?,
            bn0: bn(C7)?,
            deconv1: ConvTranspose2d::new(
                C7 + skip7,
                C14,
                (4, 4),
                stride2(),
                true,
                DType::F32,
                rng,
            )?,
            bn1: bn(C14)?,
            deconv2: ConvTranspose2d::new(
                C14 + skip14,
                1,
                (4, 4),
                stride2(),
                true,
                DType::F32,
                rng,
            )?,
        })
    }

    fn forward(
        &mut self,
        code: &Tensor,
        skip7: Option<&Tensor>,
        skip14: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let n = batch_of(code);
        let h7 = self.fc.forward(code)?.reshape(&[n, C7, 7, 7])?;
        let h7 = joined(self.bn0.forward(&h7)?.relu()?, skip7)?;
        let h14 = self.bn1.forward(&self.deconv1.forward(&h7)?)?.relu()?;
        let h14 = joined(h14, skip14)?;
        let plane = self.deconv2.forward(&h14)?;
        Ok((h7, h14, plane))
    }
}

/// `h` with `skip`'s channels after its own, or `h` alone.
fn joined(h: Tensor, skip: Option<&Tensor>) -> Result<Tensor> {
    match skip {
        Some(skip) => Tensor::concat(&[h, skip.clone()], 1),
        None => Ok(h),
    }
}

impl Module for Decoder {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("fc", &self.fc),
                ("bn0", &self.bn0),
                ("deconv1", &self.deconv1),
                ("bn1", &self.bn1),
                ("deconv2", &self.deconv2),
            ],
            |m| m.named_parameters(),
        )
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::children(&[("bn0", &self.bn0), ("bn1", &self.bn1)], |m| {
            m.named_buffers()
        })
    }
    fn set_training(&mut self, training: bool) {
        self.bn0.set_training(training);
        self.bn1.set_training(training);
    }
}

/// The generator side: the part encoder, the mask generator and the image generator, trained
/// together by one optimizer as in the paper's code.
pub struct PuzzleGenerator {
    encoder: PartEncoder,
    mask: Decoder,
    image: Decoder,
    /// Whether the mask generator reads the part encoder's maps (the paper's U-Net skips).
    part_skips: bool,
    /// The MLP on the summed part code, if any (`PuzzleConfig::mixer`).
    mixer: Option<Mlp>,
}

impl PuzzleGenerator {
    fn new(
        noise: usize,
        part_skips: bool,
        mixer: usize,
        norm: NormOptions,
        rng: &mut Rng,
    ) -> Result<PuzzleGenerator> {
        // how many of the encoder's maps the mask generator joins to its own: one or none
        let skipped = usize::from(part_skips);
        let mut g = PuzzleGenerator {
            encoder: PartEncoder::new(norm, rng)?,
            mask: Decoder::new(CODE, skipped * C7, skipped * C14, norm, rng)?,
            // the image generator's skips are the mask generator's joined maps
            image: Decoder::new(
                CODE + noise,
                (1 + skipped) * C7,
                (1 + skipped) * C14,
                norm,
                rng,
            )?,
            part_skips,
            mixer: None,
        };
        dcgan_init(&g, rng)?;
        // made last, so that without it every other weight is drawn as before
        if mixer > 0 {
            g.mixer = Some(Mlp::leaky(&[CODE, mixer, CODE], SLOPE, rng)?);
        }
        Ok(g)
    }

    /// Patches [PATCHES * n, 1, 28, 28] and noise z [n, noise] -> (the digit in [-1, 1], the
    /// mask in [0, 1]), each [n, 1, 28, 28].
    pub fn forward(&mut self, patches: &Tensor, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut e = self.encoder.forward(patches)?;
        if let Some(mixer) = &self.mixer {
            e.e1 = mixer.forward(&e.e1)?.leaky_relu(SLOPE)?;
        }
        let (skip7, skip14) = match self.part_skips {
            true => (Some(&e.e7), Some(&e.e14)),
            false => (None, None),
        };
        let (m7, m14, m) = self.mask.forward(&e.e1, skip7, skip14)?;
        let code = Tensor::concat(&[e.e1, z.clone()], 1)?;
        let (_, _, x) = self.image.forward(&code, Some(&m7), Some(&m14))?;
        Ok((x.tanh()?, m.sigmoid()?))
    }
}

impl Module for PuzzleGenerator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut params = nn::children(
            &[
                ("encoder", &self.encoder as &dyn Module),
                ("mask", &self.mask),
                ("image", &self.image),
            ],
            |m| m.named_parameters(),
        );
        if let Some(mixer) = &self.mixer {
            params.extend(nn::prefixed("mixer", mixer.named_parameters()));
        }
        params
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("encoder", &self.encoder as &dyn Module),
                ("mask", &self.mask),
                ("image", &self.image),
            ],
            |m| m.named_buffers(),
        )
    }
    fn set_training(&mut self, training: bool) {
        self.encoder.set_training(training);
        self.mask.set_training(training);
        self.image.set_training(training);
    }
}

// ----- the model ---------------------------------------------------------------------------

pub struct PuzzleGan {
    config: PuzzleConfig,
    generator: PuzzleGenerator,
    discriminator: ConvDiscriminator,
    opt_g: Adam,
    opt_d: Adam,
    monitor: Monitor,
    /// Batches trained (a scalar, in the checkpoint: G's every-second-batch turn resumes
    /// where it was).
    steps: Tensor,
    /// The L1 terms' weight this epoch.
    weight: f64,
    /// The moving average of the generator side (`ema_decay` > 0), which completes.
    average: Option<WeightAverage<PuzzleGenerator>>,
}

/// a ⊙ m + b ⊙ (1 - m).
fn composite(a: &Tensor, b: &Tensor, m: &Tensor) -> Result<Tensor> {
    a.mul(m)?.add(&b.mul(&m.neg()?.add_scalar(1.0)?)?)
}

/// The mean of |a - b| over the pixels where the mask `m` is 1: the appearance term.
fn masked_l1(a: &Tensor, b: &Tensor, m: &Tensor) -> Result<Tensor> {
    let inside = m.sum_all()?.item()?.max(1.0);
    a.sub(b)?.mul(m)?.abs()?.sum_all()?.mul_scalar(1.0 / inside)
}

/// The batch rolled by one: each digit's "another digit".
fn rolled(x: &Tensor) -> Result<Tensor> {
    let n = batch_of(x);
    if n < 2 {
        return Ok(x.clone());
    }
    Tensor::concat(&[x.narrow(0, 1, n - 1)?, x.narrow(0, 0, 1)?], 0)
}

/// The completions of some test digits with what they are measured by.
struct Completed {
    /// The digits, in [0, 1].
    digits: Tensor,
    /// Predicted masks, in [0, 1].
    masks: Tensor,
    puzzle: Puzzle,
    originals: Tensor,
    labels: Vec<usize>,
}

impl PuzzleGan {
    pub fn new(config: PuzzleConfig, rng: &mut Rng) -> Result<PuzzleGan> {
        config.check()?;
        let gan = config.gan();
        let made = |rng: &mut Rng| {
            PuzzleGenerator::new(
                config.noise,
                config.part_skips,
                config.mixer,
                gan.norm(),
                rng,
            )
        };
        let generator = made(rng)?;
        let discriminator = ConvDiscriminator::new(Some(gan.norm()), rng)?;
        let (opt_g, opt_d) = player_adams(&gan, &generator, &discriminator)?;
        let weight = config.l1_weight(0);
        let average = if config.ema_decay > 0.0 {
            // its own tensors, made without drawing on the run's generator
            let holder = made(&mut Rng::new(0))?;
            Some(WeightAverage::new(holder, &generator, config.ema_decay)?)
        } else {
            None
        };
        Ok(PuzzleGan {
            config,
            generator,
            discriminator,
            opt_g,
            opt_d,
            monitor: Monitor::default(),
            steps: Tensor::zeros(&[], DType::F64),
            weight,
            average,
        })
    }

    /// One batch: D on the real digits (1), the completions and both composites (0); then, on
    /// G's turn, G (with E and M) on the non-saturating loss and the weighted L1 terms.
    fn step(&mut self, images: &[u8], rng: &mut Rng) -> Result<Losses> {
        let n = images.len() / PIXELS;
        let x = crate::adversarial::symmetric_from_grey(images)?;
        let puzzle = Puzzle::of(images, rng)?;
        let z = uniform_symmetric(&[n, self.config.noise], rng)?;
        let (fake, mask_hat) = self.generator.forward(&puzzle.patches, &z)?;
        let m = &puzzle.mask;
        let other = rolled(&x)?;
        let d = &mut self.discriminator;
        let real_logits = d.forward(&x)?;
        let fake_logits = d.forward(&fake.detach())?;
        let d_loss = bce_to(&real_logits, 1.0)?
            .add(&bce_to(&fake_logits, 0.0)?)?
            .add(&bce_to(&d.forward(&composite(&other, &x, m)?)?, 0.0)?)?
            .add(&bce_to(&d.forward(&composite(&x, &other, m)?)?, 0.0)?)?;
        self.opt_d.minimize(&d_loss)?;
        self.monitor.record(&real_logits, &fake_logits);
        let mut out = vec![("d_loss".to_string(), d_loss.item()?)];

        let step = self.steps.item()? as u64 + 1;
        self.steps = Tensor::scalar(step as f64, DType::F64);
        if step.is_multiple_of(self.config.g_every) {
            let adversarial = bce_to(&self.discriminator.forward(&fake)?, 1.0)?;
            let mask_l1 = nn::loss::l1(&mask_hat, m, Reduction::Mean)?;
            let appearance_l1 = masked_l1(&fake, &x, m)?;
            let g_loss = adversarial.add(&mask_l1.add(&appearance_l1)?.mul_scalar(self.weight)?)?;
            self.opt_g.minimize(&g_loss)?;
            if let Some(avg) = &mut self.average {
                avg.update(&self.generator)?;
            }
            out.push(("g_loss".into(), adversarial.item()?));
            out.push(("mask_l1".into(), mask_l1.item()?));
            out.push(("appearance_l1".into(), appearance_l1.item()?));
        }
        Ok(out)
    }

    /// The generator side that completes: the average where there is one, unless `trained`
    /// asks for the trained networks.
    fn completer(&mut self, trained: bool) -> &mut PuzzleGenerator {
        match (&mut self.average, trained) {
            (Some(avg), false) => &mut avg.net,
            _ => &mut self.generator,
        }
    }

    /// Completions of test digits `indices` (wrapping) by [`Self::completer`], each with its
    /// three boxes from [`test_boxes`] and its index (the same digit, the same boxes), noise
    /// from `rng`.
    fn complete_test(
        &mut self,
        data: &Mnist,
        indices: &[usize],
        trained: bool,
        rng: &mut Rng,
    ) -> Result<Completed> {
        let test = &data.test;
        if test.is_empty() {
            return Err(Error::invalid(ENTRY.name, "no test digits to complete"));
        }
        let picked: Vec<usize> = indices.iter().map(|i| i % test.len()).collect();
        let mut images = Vec::with_capacity(picked.len() * PIXELS);
        let mut boxes = Vec::with_capacity(picked.len());
        for &i in &picked {
            images.extend_from_slice(test.image(i));
            boxes.push(test_boxes(test.image(i), i));
        }
        let n = picked.len();
        let puzzle = Puzzle::with_boxes(&images, boxes)?;
        self.set_training(false);
        let z = uniform_symmetric(&[n, self.config.noise], rng)?;
        let completer = self.completer(trained);
        let (digits, masks) = no_grad(|| completer.forward(&puzzle.patches, &z))?;
        Ok(Completed {
            digits: to_unit(&digits)?,
            masks,
            originals: crate::adversarial::symmetric_from_grey(&images)
                .and_then(|x| to_unit(&x))?,
            labels: picked
                .iter()
                .map(|&i| usize::from(test.labels[i]))
                .collect(),
            puzzle,
        })
    }

    /// The completion metrics of the first `n` test digits (module doc); where the average
    /// completes, the trained networks' digit kept, mask IoU and L1 beside as `trained_*`.
    fn completion_metrics(&mut self, ctx: &mut EvalContext, n: usize) -> Result<Vec<Metric>> {
        let n = n.min(ctx.data.test.len());
        let indices: Vec<usize> = (0..n).collect();
        let noise = || Rng::new(0x009e_5eed);
        let c = self.complete_test(ctx.data, &indices, false, &mut noise())?;
        let (iou, l1) = mask_scores(&c)?;
        let gen = ctx.features(&c.digits)?;
        let real = ctx.features(&c.originals)?;
        let kept = metrics::accuracy(&gen.logits, 10, &c.labels)?;
        let base = metrics::accuracy(&real.logits, 10, &c.labels)?;
        let parts = ctx.features(&c.originals.mul(&c.puzzle.mask)?)?;
        let parts_read = metrics::accuracy(&parts.logits, 10, &c.labels)?;
        let mut m = vec![
            Metric::with_baseline("digit_kept", kept, base)
                .detail(format!("the classifier reads the source digit's label in {n} completions (baseline: in the test digits themselves)")),
            Metric::new("patches_alone_read", parts_read).detail("the classifier reads the source digit's label in the patches alone, in place on a blank image: what they tell without completion"),
            Metric::new("mask_iou", iou).detail("predicted mask (> 0.5) against the union of the patch boxes, mean over digits"),
            Metric::new("l1_in_mask", l1).detail("mean |completion - original| inside the true mask, pixels in [0, 1]"),
        ];
        m.extend(ctx.sample_metrics(&c.digits, Pixels::Unit, None)?);
        if self.average.is_some() {
            let t = self.complete_test(ctx.data, &indices, true, &mut noise())?;
            let (iou, l1) = mask_scores(&t)?;
            let gen = ctx.features(&t.digits)?;
            m.extend([
                Metric::new(
                    "trained_digit_kept",
                    metrics::accuracy(&gen.logits, 10, &t.labels)?,
                )
                .detail("digit_kept of the trained networks rather than their average"),
                Metric::new("trained_mask_iou", iou),
                Metric::new("trained_l1_in_mask", l1),
            ]);
        }
        Ok(m)
    }
}

/// The mean IoU of the predicted masks (> 0.5) with the true ones, and the mean L1 distance
/// between completion and original inside the true masks (in [0, 1]).
fn mask_scores(c: &Completed) -> Result<(f64, f64)> {
    let (pred, truth) = (c.masks.to_vec_f32(), c.puzzle.mask.to_vec_f32());
    let (gen, orig) = (c.digits.to_vec_f32(), c.originals.to_vec_f32());
    let n = truth.len() / PIXELS;
    let (mut iou, mut l1, mut inside) = (0.0, 0.0, 0.0);
    for d in 0..n {
        let (mut both, mut either) = (0usize, 0usize);
        for i in d * PIXELS..(d + 1) * PIXELS {
            let (p, t) = (pred[i] > 0.5, truth[i] > 0.5);
            both += usize::from(p && t);
            either += usize::from(p || t);
            if t {
                l1 += (gen[i] - orig[i]).abs() as f64;
                inside += 1.0;
            }
        }
        iou += if either == 0 {
            1.0
        } else {
            both as f64 / either as f64
        };
    }
    if n == 0 || inside == 0.0 {
        return Err(Error::invalid(ENTRY.name, "no digits to score"));
    }
    Ok((iou / n as f64, l1 / inside))
}

impl GenerativeModel for PuzzleGan {
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
        let mut w = player_weights(&self.generator, &self.discriminator);
        w.push(("steps".into(), self.steps.clone()));
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
    fn set_training(&mut self, training: bool) {
        self.generator.set_training(training);
        self.discriminator.set_training(training);
    }
    fn begin_epoch(&mut self, epoch: u64) -> Result<()> {
        self.monitor.reset();
        self.weight = self.config.l1_weight(epoch);
        Ok(())
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        self.step(&batch.images, rng)
    }
    fn sample(&mut self, _n: usize, _rng: &mut Rng) -> Result<Tensor> {
        Err(Error::invalid(
            "sample",
            "puzzle-gan completes digits from their patches rather than drawing them: its samples are completions of the test digits (sample_given)",
        ))
    }
    /// Completions of test digits `first..` (wrapping), each from its three patches.
    fn sample_given(
        &mut self,
        first: usize,
        n: usize,
        data: &Mnist,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let indices: Vec<usize> = (first..first + n).collect();
        Ok(self.complete_test(data, &indices, false, rng)?.digits)
    }
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut m = self.completion_metrics(ctx, EPOCH_DIGITS)?;
        if let Some(acc) = self.monitor.accuracy() {
            m.push(Metric::new("d_accuracy", acc));
        }
        Ok(m)
    }
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let n = ctx.data.test.len();
        self.completion_metrics(ctx, n)
    }
    fn completion_picture(
        &mut self,
        data: &Mnist,
        n: usize,
        per_image: usize,
        seed: u64,
    ) -> Result<Option<(Tensor, usize, String)>> {
        let (grid, cols) = completion_picture(self, data, n, per_image, seed)?;
        let columns =
            format!("three patches, true mask, predicted mask, {per_image} completions, original");
        Ok(Some((grid, cols, columns)))
    }
    /// `completions.png` ([`completion_picture`], ten test digits, three completions each).
    fn end_of_training(&mut self, dir: &Path, data: &Mnist) -> Result<()> {
        let (grid, cols) = completion_picture(self, data, 10, 3, 0)?;
        checkpoint::write_atomic(
            &dir.join("completions.png"),
            &image::grid_png(&grid, Some(cols), 2)?,
        )
    }
}

/// The completion picture: for `n` test digits (the first of each class in turn) a row of the
/// three patches, the true mask, the predicted mask, `per_image` completions (other noise)
/// and the original. Returns the images and the number of columns.
pub fn completion_picture(
    model: &mut PuzzleGan,
    data: &Mnist,
    n: usize,
    per_image: usize,
    seed: u64,
) -> Result<(Tensor, usize)> {
    let indices = completion_indices(data, n);
    let n = indices.len();
    let mut rng = Rng::new(seed);
    let draws = (0..per_image.max(1))
        .map(|_| model.complete_test(data, &indices, false, &mut rng))
        .collect::<Result<Vec<_>>>()?;
    let c = &draws[0];
    let patches = to_unit(&c.puzzle.patches)?.to_vec_f32();
    let truth = c.puzzle.mask.to_vec_f32();
    let pred = c.masks.to_vec_f32();
    let orig = c.originals.to_vec_f32();
    let drawn: Vec<Vec<f32>> = draws.iter().map(|d| d.digits.to_vec_f32()).collect();
    let cols = PATCHES + 2 + draws.len() + 1;
    let mut out = Vec::with_capacity(n * cols * PIXELS);
    let row = |v: &[f32], i: usize| v[i * PIXELS..(i + 1) * PIXELS].to_vec();
    for d in 0..n {
        for k in 0..PATCHES {
            out.extend(row(&patches, k * n + d));
        }
        out.extend(row(&truth, d));
        out.extend(row(&pred, d));
        for digits in &drawn {
            out.extend(row(digits, d));
        }
        out.extend(row(&orig, d));
    }
    Ok((Tensor::from_vec(out, &[n * cols, 1, N, N])?, cols))
}

// ----- what the patches tell: a supervised reader ----------------------------------------

/// How a [`PatchReader`] gets a digit's patches: as G does (each box resized to 28 x 28, where
/// it was lost), or in place (each box's pixels where they were, the rest blank).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchView {
    Resized,
    InPlace,
}

/// The pixels of `img` inside `b`, in place, blank (-1) elsewhere; in [-1, 1].
fn in_place(img: &[u8], b: PatchBox) -> Vec<f32> {
    (0..PIXELS)
        .map(|i| {
            let v = if b.covers(i) { img[i] } else { 0 };
            (v as f64 / 127.5 - 1.0) as f32
        })
        .collect()
}

/// A supervised reader of a digit's three patches: G's part encoder (the same layers, its codes
/// summed over the patches) and a head to the ten labels, trained with cross-entropy on
/// the training digits, each epoch with new boxes. Why: a completion's label is a function of
/// the patches and z, so no completion keeps the digit more often than the best reader of the
/// patches reads it; this reader measures that ceiling from below.
pub struct PatchReader {
    view: PatchView,
    encoder: PartEncoder,
    /// The summed code -> ten logits: one linear layer, or an MLP with a hidden layer.
    head: Mlp,
    opt: Adam,
}

impl PatchReader {
    /// A reader of patches seen as `view`, its head linear (`hidden` 0: the summed code's
    /// patches each add their own evidence) or an MLP with a hidden layer of `hidden` units
    /// (the patches' evidence combined).
    pub fn new(view: PatchView, hidden: usize, lr: f64, rng: &mut Rng) -> Result<PatchReader> {
        let norm = GanConfig::default().norm();
        let encoder = PartEncoder::new(norm, rng)?;
        let head = if hidden == 0 {
            Mlp::new(&[CODE, 10], rng)?
        } else {
            Mlp::leaky(&[CODE, hidden, 10], SLOPE, rng)?
        };
        let mut params = nn::prefixed("encoder", encoder.named_parameters());
        params.extend(nn::prefixed("head", head.named_parameters()));
        let opt = Adam::new(
            params,
            autograd::optim::AdamConfig {
                lr,
                ..Default::default()
            },
        )?;
        Ok(PatchReader {
            view,
            encoder,
            head,
            opt,
        })
    }

    /// The patches of `images` cut by `boxes`, in this reader's view, laid out as [`Puzzle`]'s.
    fn patches(&self, images: &[u8], boxes: &[[PatchBox; PATCHES]]) -> Result<Tensor> {
        let cut = match self.view {
            PatchView::Resized => crop_resized,
            PatchView::InPlace => in_place,
        };
        stacked_patches(images, boxes, cut)
    }

    /// Sets Adam's learning rate (for a schedule).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.opt.set_lr(lr)
    }

    fn logits(&mut self, patches: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.encoder.forward(patches)?.e1)
    }

    /// One pass over `train` in shuffled batches of `batch` (boxes from `rng`); the mean loss.
    pub fn train_epoch(&mut self, train: &Split, batch: usize, rng: &mut Rng) -> Result<f64> {
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        self.encoder.set_training(true);
        let (mut total, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(batch.max(2)) {
            let b = train.batch(chunk);
            let boxes: Vec<_> = b
                .images
                .chunks_exact(PIXELS)
                .map(|d| pick_boxes(d, rng))
                .collect();
            let patches = self.patches(&b.images, &boxes)?;
            let loss = nn::loss::cross_entropy(
                &self.logits(&patches)?,
                &b.label_indices(),
                Reduction::Mean,
            )?;
            self.opt.minimize(&loss)?;
            total += loss.item()?;
            batches += 1;
        }
        Ok(total / batches.max(1) as f64)
    }

    /// The share of `test`'s digits read right from their patches, cut by [`test_boxes`] (the
    /// boxes the completions are measured on).
    pub fn test_accuracy(&mut self, test: &Split) -> Result<f64> {
        self.encoder.set_training(false);
        let mut logits = Vec::with_capacity(test.len() * 10);
        let indices: Vec<usize> = (0..test.len()).collect();
        for chunk in indices.chunks(250) {
            let b = test.batch(chunk);
            let boxes: Vec<_> = chunk
                .iter()
                .map(|&i| test_boxes(test.image(i), i))
                .collect();
            let patches = self.patches(&b.images, &boxes)?;
            let l = no_grad(|| self.logits(&patches))?;
            logits.extend(l.to_vec_f64());
        }
        let labels: Vec<usize> = test.labels.iter().map(|&l| usize::from(l)).collect();
        metrics::accuracy(&logits, 10, &labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit() -> Vec<u8> {
        crate::program::data::embedded()
            .unwrap()
            .test
            .image(0)
            .to_vec()
    }

    /// Boxes are 8-10 pixels, inside the image, each holding ink (it is centred on some);
    /// a blank image still gets boxes inside it.
    #[test]
    fn boxes_lie_on_ink_inside_the_digit() {
        let img = digit();
        let mut rng = Rng::new(1);
        let mut sizes = std::collections::BTreeSet::new();
        for _ in 0..200 {
            for b in pick_boxes(&img, &mut rng) {
                sizes.insert(b.size);
                assert!((BOX_MIN..=BOX_MAX).contains(&b.size), "{b:?}");
                assert!(b.top + b.size <= N && b.left + b.size <= N, "{b:?}");
                let inked = (b.top..b.top + b.size)
                    .flat_map(|r| (b.left..b.left + b.size).map(move |c| r * N + c))
                    .any(|i| img[i] >= INK);
                assert!(inked, "{b:?} holds no ink");
            }
        }
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        // three inked pixels too far apart for one box to hold two: each box takes another
        // (a box centred on ink an earlier one covers would leave one out)
        let mut three = vec![0u8; PIXELS];
        for i in [3 * N + 3, 14 * N + 14, 24 * N + 24] {
            three[i] = 255;
        }
        for _ in 0..50 {
            let b = pick_boxes(&three, &mut rng);
            for i in [3 * N + 3, 14 * N + 14, 24 * N + 24] {
                assert_eq!(b.iter().filter(|b| b.covers(i)).count(), 1, "{b:?}");
            }
        }
        for b in pick_boxes(&[0u8; PIXELS], &mut rng) {
            assert!(b.top + b.size <= N && b.left + b.size <= N, "{b:?}");
        }
    }

    /// The resize: a 28-pixel box is the image itself; a 14-pixel box of a left-right ramp is
    /// the same ramp, stretched, with PIL's and PyTorch's half-pixel centres (and clamped at
    /// the edges); a union mask covers each pixel of the boxes once.
    #[test]
    fn crops_resize_bilinearly_and_masks_cover_the_boxes() {
        let img = digit();
        let whole = crop_resized(
            &img,
            PatchBox {
                top: 0,
                left: 0,
                size: N,
            },
        );
        for (a, b) in whole.iter().zip(&img) {
            assert!((a - (*b as f32 / 127.5 - 1.0)).abs() < 1e-6);
        }
        let ramp: Vec<u8> = (0..PIXELS).map(|i| (i % N * 9) as u8).collect();
        let half = crop_resized(
            &ramp,
            PatchBox {
                top: 3,
                left: 0,
                size: 14,
            },
        );
        // output column c reads source column (c + 0.5) / 2 - 0.5, so 0 -> 0 (clamped),
        // 1 -> 0.25, 2 -> 0.75, ..., 27 -> 13 (clamped); a source column j holds 9 j
        let want = |c: usize| {
            let s = ((c as f64 + 0.5) / 2.0 - 0.5).clamp(0.0, 13.0);
            (9.0 * s / 127.5 - 1.0) as f32
        };
        for c in 0..N {
            assert!((half[5 * N + c] - want(c)).abs() < 1e-5, "column {c}");
        }
        let boxes = [
            PatchBox {
                top: 0,
                left: 0,
                size: 10,
            },
            PatchBox {
                top: 5,
                left: 5,
                size: 10,
            },
        ];
        let m = union_mask(&boxes);
        assert_eq!(m.iter().sum::<f32>(), 100.0 + 100.0 - 25.0);
        assert_eq!((m[0], m[14 * N + 14], m[15 * N + 15]), (1.0, 1.0, 0.0));
    }

    /// A batch's puzzle lays the patches out patch-major: patch k of digit d is row k n + d.
    #[test]
    fn a_puzzle_holds_every_digits_patches_in_order() {
        let data = crate::program::data::embedded().unwrap();
        let images = data.test.batch(&[0, 1, 2]).images;
        let p = Puzzle::of(&images, &mut Rng::new(4)).unwrap();
        assert_eq!(p.patches.shape(), &[9, 1, N, N]);
        assert_eq!(p.mask.shape(), &[3, 1, N, N]);
        let all = p.patches.to_vec_f32();
        for d in 0..3 {
            for k in 0..PATCHES {
                let want = crop_resized(&images[d * PIXELS..(d + 1) * PIXELS], p.boxes[d][k]);
                let row = k * 3 + d;
                assert_eq!(&all[row * PIXELS..(row + 1) * PIXELS], &want[..]);
            }
        }
    }

    /// The reader's two views: resized as G's patches, and in place (each box's pixels where
    /// they were, blank elsewhere), in the same layout.
    #[test]
    fn the_reader_sees_the_patches_resized_or_in_place() {
        let data = crate::program::data::embedded().unwrap();
        let images = data.test.batch(&[0, 1]).images;
        let boxes: Vec<_> = (0..2)
            .map(|d| test_boxes(&images[d * PIXELS..(d + 1) * PIXELS], d))
            .collect();
        let mut rng = Rng::new(2);
        let resized = PatchReader::new(PatchView::Resized, 0, 1e-3, &mut rng).unwrap();
        let got = resized.patches(&images, &boxes).unwrap();
        let want = Puzzle::with_boxes(&images, boxes.clone()).unwrap().patches;
        assert_eq!(got.to_vec_f32(), want.to_vec_f32());
        let in_place = PatchReader::new(PatchView::InPlace, 0, 1e-3, &mut rng).unwrap();
        let got = in_place.patches(&images, &boxes).unwrap();
        assert_eq!(got.shape(), &[PATCHES * 2, 1, N, N]);
        let got = got.to_vec_f32();
        for d in 0..2 {
            for (k, b) in boxes[d].iter().enumerate() {
                let row = &got[(k * 2 + d) * PIXELS..(k * 2 + d + 1) * PIXELS];
                for (i, &v) in row.iter().enumerate() {
                    let pixel = if b.covers(i) {
                        images[d * PIXELS + i]
                    } else {
                        0
                    };
                    assert_eq!(
                        v,
                        (pixel as f64 / 127.5 - 1.0) as f32,
                        "digit {d} box {k} pixel {i}"
                    );
                }
            }
        }
    }

    /// A reader trained on a few hundred digits' patches reads held-out digits far above
    /// chance (10%): the encoder and the head both train.
    #[test]
    fn a_patch_reader_learns_the_digits() {
        let data = crate::program::data::embedded().unwrap();
        let (train, test) = (data.train.head(1000), data.test.head(300));
        let mut rng = Rng::new(3);
        let mut reader = PatchReader::new(PatchView::InPlace, 0, 2e-3, &mut rng).unwrap();
        let before = reader.test_accuracy(&test).unwrap();
        for _ in 0..3 {
            reader.train_epoch(&train, 32, &mut rng).unwrap();
        }
        let after = reader.test_accuracy(&test).unwrap();
        assert!(
            after > 0.5,
            "test digits read {after} after training (before: {before})"
        );
    }

    /// The patches' codes are summed, so G does not care in which order it is given them; and
    /// it does care which patches it is given.
    #[test]
    fn the_generator_is_order_free_in_its_patches() {
        let variants = [
            PuzzleConfig::default(),
            PuzzleConfig {
                mixer: 32,
                ..PuzzleConfig::default()
            },
            PuzzleConfig {
                part_skips: false,
                ..PuzzleConfig::default()
            },
        ];
        for config in variants {
            generator_is_order_free(config);
        }
    }

    fn generator_is_order_free(config: PuzzleConfig) {
        let mut rng = Rng::new(6);
        let mut gan = PuzzleGan::new(config, &mut rng).unwrap();
        gan.set_training(false);
        let data = crate::program::data::embedded().unwrap();
        let images = data.test.batch(&[0, 1]).images;
        let p = Puzzle::of(&images, &mut rng).unwrap();
        let z = uniform_symmetric(&[2, gan.config.noise], &mut rng).unwrap();
        let (x, m) = gan.generator.forward(&p.patches, &z).unwrap();
        // rows: patch 0 of both digits, patch 1, patch 2 -> patch 2, patch 0, patch 1
        let permuted = p.patches.index_select(0, &[4, 5, 0, 1, 2, 3]).unwrap();
        let (x2, m2) = gan.generator.forward(&permuted, &z).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            a.to_vec_f64()
                .iter()
                .zip(b.to_vec_f64())
                .all(|(u, v)| (u - v).abs() < 1e-5)
        };
        assert!(close(&x, &x2) && close(&m, &m2));
        // another digit's patches for the first digit: a different completion
        let swapped = p.patches.index_select(0, &[1, 1, 3, 3, 5, 5]).unwrap();
        let (x3, _) = gan.generator.forward(&swapped, &z).unwrap();
        assert!(!close(
            &x.narrow(0, 0, 1).unwrap(),
            &x3.narrow(0, 0, 1).unwrap()
        ));
        assert_eq!(x.shape(), &[2, 1, N, N]);
        let mv = m.to_vec_f64();
        assert!(mv.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    /// The mixer is G's (trained with it, saved with it) and only there when asked for; without
    /// the part skips the mask generator's first transposed convolution reads its own maps alone.
    #[test]
    fn the_mixer_and_the_skips_are_what_the_config_says() {
        let names = |config: PuzzleConfig| -> Vec<(String, Vec<usize>)> {
            let gan = PuzzleGan::new(config, &mut Rng::new(1)).unwrap();
            gan.weights()
                .into_iter()
                .map(|(n, t)| (n, t.shape().to_vec()))
                .collect()
        };
        let shape_of = |w: &[(String, Vec<usize>)], name: &str| {
            w.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone())
        };
        let plain = names(PuzzleConfig {
            mixer: 0,
            ..PuzzleConfig::default()
        });
        assert!(plain.iter().all(|(n, _)| !n.contains("mixer")));
        // a run saved before the mixer existed reads as having none
        let mut saved: serde_json::Value = (ENTRY.default_config)();
        saved.as_object_mut().unwrap().remove("mixer");
        let old: PuzzleConfig = ENTRY.parse_config(&saved).unwrap();
        assert_eq!(old.mixer, 0);
        let mixed = names(PuzzleConfig {
            mixer: 48,
            ..PuzzleConfig::default()
        });
        assert_eq!(
            shape_of(&mixed, "generator.mixer.fc1.weight"),
            Some(vec![48, CODE])
        );
        assert_eq!(
            shape_of(&mixed, "generator.mixer.fc2.weight"),
            Some(vec![CODE, 48])
        );
        // one step moves the mixer's weights: Adam holds them
        let mut gan = PuzzleGan::new(
            PuzzleConfig {
                mixer: 48,
                ..PuzzleConfig::default()
            },
            &mut Rng::new(1),
        )
        .unwrap();
        let mixer_weight = |gan: &PuzzleGan| {
            let w = gan.weights();
            let (_, t) = w
                .iter()
                .find(|(n, _)| n == "generator.mixer.fc1.weight")
                .unwrap();
            t.to_vec_f32()
        };
        let before = mixer_weight(&gan);
        let data = crate::program::data::embedded().unwrap();
        let images = data.train.batch(&(0..8).collect::<Vec<_>>()).images;
        gan.step(&images, &mut Rng::new(2)).unwrap();
        assert!(
            before != mixer_weight(&gan),
            "a step left the mixer as it was"
        );
        let deconv = "generator.mask.deconv1.weight";
        assert_eq!(shape_of(&plain, deconv).unwrap()[0], 2 * C7);
        let unskipped = names(PuzzleConfig {
            part_skips: false,
            ..PuzzleConfig::default()
        });
        assert_eq!(shape_of(&unskipped, deconv).unwrap()[0], C7);
    }

    /// The composites: a inside the mask, b outside it; the batch rolled by one.
    #[test]
    fn composites_and_the_other_digit() {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4, 1, 1, 1]).unwrap();
        let b = a.mul_scalar(10.0).unwrap();
        let m = Tensor::from_vec(vec![1.0f32, 0.0, 1.0, 0.0], &[4, 1, 1, 1]).unwrap();
        assert_eq!(
            composite(&a, &b, &m).unwrap().to_vec_f32(),
            vec![1.0, 20.0, 3.0, 40.0]
        );
        assert_eq!(rolled(&a).unwrap().to_vec_f32(), vec![2.0, 3.0, 4.0, 1.0]);
        // |a - b| inside the mask: 9 and 27, over its 2 pixels
        assert_eq!(masked_l1(&a, &b, &m).unwrap().item().unwrap(), 18.0);
    }

    /// The L1 weight falls log-linearly (here from 1e-2 to 1e-4) over `decay_epochs`, then
    /// stays.
    #[test]
    fn the_l1_weight_decays_as_the_papers_logspace() {
        let c = PuzzleConfig {
            weight_start: 1e-2,
            weight_end: 1e-4,
            decay_epochs: 3,
            ..PuzzleConfig::default()
        };
        let w: Vec<f64> = (0..5).map(|e| c.l1_weight(e)).collect();
        for (got, want) in w.iter().zip([1e-2, 1e-3, 1e-4, 1e-4, 1e-4]) {
            assert!((got / want - 1.0).abs() < 1e-12, "{w:?}");
        }
        let bad = PuzzleConfig {
            g_every: 0,
            ..PuzzleConfig::default()
        };
        assert!(PuzzleGan::new(bad, &mut Rng::new(0)).is_err());
    }

    /// With `g_every` 2 (the paper's code) D trains every batch, G (encoder, mask and image
    /// generators) every second one, with finite losses; the step count goes to the checkpoint.
    #[test]
    fn d_trains_every_batch_and_g_every_second() {
        let mut rng = Rng::new(8);
        let config = PuzzleConfig {
            g_every: 2,
            ..PuzzleConfig::default()
        };
        let mut gan = PuzzleGan::new(config, &mut rng).unwrap();
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..8).collect::<Vec<_>>());
        let sum = |gan: &PuzzleGan, prefix: &str| -> f64 {
            gan.weights()
                .iter()
                .filter(|(n, _)| n.starts_with(prefix) && !n.contains("running"))
                .map(|(_, t)| t.to_vec_f64().iter().sum::<f64>())
                .sum()
        };
        let parts = [
            "generator.encoder.",
            "generator.mask.",
            "generator.image.",
            "discriminator.",
        ];
        let before: Vec<f64> = parts.iter().map(|p| sum(&gan, p)).collect();
        let first = gan.train_step(&batch, &mut rng).unwrap();
        assert_eq!(first.len(), 1, "G trained on the first batch: {first:?}");
        assert_eq!(sum(&gan, "generator.image."), before[2]);
        let second = gan.train_step(&batch, &mut rng).unwrap();
        let names: Vec<&str> = second.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["d_loss", "g_loss", "mask_l1", "appearance_l1"]);
        assert!(second.iter().all(|(_, v)| v.is_finite()));
        for (p, b) in parts.iter().zip(before) {
            assert_ne!(sum(&gan, p), b, "{p} did not train");
        }
        assert_eq!(gan.steps.item().unwrap(), 2.0);
    }

    /// With `ema_decay` an average of the generator side follows G's steps without changing
    /// them, is in the checkpoint, completes the digits, and the trained networks' figures
    /// come beside its own; a decay outside [0, 1) is refused.
    #[test]
    fn the_generator_average_completes_and_changes_no_step() {
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..8).collect::<Vec<_>>());
        let run = |ema_decay| {
            let mut rng = Rng::new(5);
            let config = PuzzleConfig {
                ema_decay,
                ..PuzzleConfig::default()
            };
            let mut gan = PuzzleGan::new(config, &mut rng).unwrap();
            for _ in 0..3 {
                gan.train_step(&batch, &mut rng).unwrap();
            }
            gan
        };
        let mut plain = run(0.0);
        let mut averaged = run(0.9);
        let first = |g: &PuzzleGenerator| g.state_dict()[0].1.to_vec_f64();
        assert_eq!(first(&plain.generator), first(&averaged.generator));
        let average = &averaged.average.as_ref().unwrap().net;
        assert_ne!(first(average), first(&averaged.generator));
        let w = averaged.weights();
        let steps = w.iter().find(|(n, _)| n == "generator_average_steps");
        assert_eq!(steps.unwrap().1.item().unwrap(), 3.0);
        assert!(w
            .iter()
            .any(|(n, _)| n == "generator_average.mask.bn0.running_mean"));
        // the samples are the average's completions, not the trained networks'
        let by_average = averaged
            .sample_given(0, 4, &data, &mut Rng::new(2))
            .unwrap();
        let by_trained = averaged
            .complete_test(&data, &[0, 1, 2, 3], true, &mut Rng::new(2))
            .unwrap()
            .digits;
        let by_plain = plain.sample_given(0, 4, &data, &mut Rng::new(2)).unwrap();
        assert_eq!(by_trained.to_vec_f32(), by_plain.to_vec_f32());
        assert_ne!(by_average.to_vec_f32(), by_trained.to_vec_f32());
        let mut ctx = EvalContext::new(&data, 0, 10);
        let names = |gan: &mut PuzzleGan, ctx: &mut EvalContext| -> Vec<String> {
            let m = gan.completion_metrics(ctx, 20).unwrap();
            m.into_iter().map(|m| m.name).collect()
        };
        let with = names(&mut averaged, &mut ctx);
        for name in ["digit_kept", "trained_digit_kept", "trained_mask_iou"] {
            assert!(
                with.iter().any(|n| n == name),
                "{name} missing from {with:?}"
            );
        }
        assert!(!names(&mut plain, &mut ctx)
            .iter()
            .any(|n| n.starts_with("trained_")));
        let bad = PuzzleConfig {
            ema_decay: 1.0,
            ..PuzzleConfig::default()
        };
        let err = PuzzleGan::new(bad, &mut Rng::new(0)).err().unwrap();
        assert!(err.to_string().contains("ema_decay"), "{err}");
    }

    /// The scores: a predicted mask equal to the truth has IoU 1, an empty one 0; the L1 is
    /// measured inside the true mask only.
    #[test]
    fn mask_scores_by_hand() {
        let truth = union_mask(&[PatchBox {
            top: 0,
            left: 0,
            size: 10,
        }]);
        let t = |v: Vec<f32>| Tensor::from_vec(v, &[1, 1, N, N]).unwrap();
        let mut off = vec![0.0f32; PIXELS];
        off[PIXELS - 1] = 1.0; // a difference outside the mask does not count
        off[0] = 0.5; // one inside does
        let completed = |pred: Vec<f32>| Completed {
            digits: t(off.clone()),
            masks: t(pred),
            puzzle: Puzzle {
                patches: t(vec![0.0; PIXELS]),
                mask: t(truth.clone()),
                boxes: vec![],
            },
            originals: t(vec![0.0; PIXELS]),
            labels: vec![0],
        };
        let (iou, l1) = mask_scores(&completed(truth.clone())).unwrap();
        assert_eq!(iou, 1.0);
        assert!((l1 - 0.5 / 100.0).abs() < 1e-12, "{l1}");
        let (iou, _) = mask_scores(&completed(vec![0.0; PIXELS])).unwrap();
        assert_eq!(iou, 0.0);
        let half: Vec<f32> = truth
            .iter()
            .enumerate()
            .map(|(i, &v)| if i / N < 5 { v } else { 0.0 })
            .collect();
        let (iou, _) = mask_scores(&completed(half)).unwrap();
        assert!((iou - 0.5).abs() < 1e-12, "{iou}");
    }
}
