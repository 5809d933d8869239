//! Text-to-image (Reed, Akata, Yan, Logeswaran, Schiele & Lee 2016, "Generative Adversarial
//! Text to Image Synthesis") on captioned digits: "a thin two leaning left" in, a thin two
//! leaning left out. The captions name what [`crate::domains::sets`] measures (the digit, its
//! stroke and its lean), so whether a sample obeys its caption is a number.
//!
//! A text encoder phi maps a caption t to an embedding phi(t); G draws x = G(z, phi(t)) and the
//! matching-aware discriminator D(x, phi(t)) scores image-text pairs (GAN-CLS, the paper's
//! algorithm 1), with real images paired with their own caption (real), with a wrong caption
//! (fake) and generated images with their caption (fake):
//!
//! ```text
//!   L_D = -log D(x, h) - 1/2 [log(1 - D(x, h^)) + log(1 - D(G(z, h), h))]
//!   L_G = -log D(G(z, h), h) - lambda_int log D(G(z', h_int), h_int)     h_int = (h1 + h2) / 2
//! ```
//!
//! The second term of L_G is GAN-INT: G is also asked for images of interpolated embeddings,
//! which D judges although no real image has them, filling the space between captions. Here h2
//! is the embedding of another caption of the same digit: between "a thin two" and "a thick
//! two leaning right" lie twos of middling stroke and lean, while the midpoint of a two and an
//! eight is no digit at all (interpolating across digits, as between the paper's freely worded
//! captions, held the classifier's agreement on the held-out captions near 50% after 9 epochs).
//!
//! **The text encoder** (word embeddings and an LSTM over the words, its last hidden state to
//! three classifiers: digit, stroke, lean) is trained first, on its own, as a caption-to-
//! attribute model, and then frozen; phi(t) is the three classifiers' probabilities side by
//! side (16 numbers). As in the paper, whose char-CNN-RNN encoder is pre-trained on a joint
//! image-text objective and then fixed: through a GAN the caption's words would learn only from
//! D's noisy, moving gradient, while here every caption's attributes are known exactly, so a
//! few hundred steps of cross-entropy make an encoder that reads unseen word combinations.
//!
//! **Held-out captions.** One (stroke, lean) combination per digit ([`held_out`]) never reaches
//! training, neither as an image's caption nor as a wrong one nor in the encoder's training:
//! the targets are measured on those, so the model must compose what it learnt.
//!
//! **Data.** Each training digit is given one (stroke, lean) combination, chosen by a hash of its
//! pixels, by [`sets::with_attributes`], and captioned by what the result measures (a digit
//! whose perturbation fell short is captioned as it is; one that measures as a held-out
//! combination is left out). The made digits are kept in memory after their first use.
//!
//! **Networks.** DCGAN's ([`crate::adversarial::networks`]): G reads [z | phi(t)]; D reads the
//! caption by projection (Miyato & Koyama 2018), as the conditional GAN's D does
//! ([`crate::adversarial::cgan`], where the paper's way of joining the condition to D's input
//! was tried and fell short): D(x, h) = w . f(x) + b + (V h) . f(x), with f D's convolutional
//! trunk. BCE with logits, Adam 2e-4 (0.5, 0.999).
//!
//! **Drawing with a weight average** (beyond the paper, as CycleGAN's and StarGAN's translators
//! here): a moving average of G's weights ([`WeightAverage`], decay 0.999) draws the samples,
//! metrics and pictures; the trained G's figures on the held-out captions come beside it as
//! `trained_held_out_*`. Late in training G swings from epoch to epoch in how thick it draws
//! (the held-out captions' stroke obeyed on 77-96% of 200 samples over epochs 16-30 of a seed-1
//! run); `ema_decay = 0` draws with G itself.

use crate::adversarial::networks::{check_latent, ConvGenerator, ConvTrunk, TRUNK_FEATURES};
use crate::adversarial::{
    bce_to, noise, player_adams, player_optimizers, player_optimizers_mut, player_weights,
    symmetric_from_grey, to_unit, GanConfig, Monitor, Network, WeightAverage, EPOCH_SAMPLES,
};
use crate::domains::sets::{self, Attributes, Lean, MadeDigits, Stroke, VOCABULARY};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Mnist};
use crate::program::eval::{EvalContext, Metric};
use crate::program::{checkpoint, image, metrics};
use autograd::nn::{self, init, Embedding, Linear, Lstm, Module, Reduction};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub static ENTRY: Entry = Entry {
    name: "text2image",
    title: "text-to-image GAN: captions read by an LSTM, GAN-CLS matching-aware D, GAN-INT",
    paper: "Reed et al. 2016, Generative Adversarial Text to Image Synthesis",
    family: Family::Adversarial,
    default_epochs: 30,
    default_batch_size: 64,
    default_config: || serde_json::to_value(TextConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(TextToImage::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

const N: usize = 28;
const PIXELS: usize = N * N;
const DIGITS: usize = 10;
/// phi(t): the digit's ten probabilities, the stroke's three, the lean's three.
pub const EMBEDDING: usize = DIGITS + 3 + 3;
/// The longest caption ("a thick seven leaning right"); shorter ones are padded in front.
const MAX_WORDS: usize = 5;
/// The padding word's id, after the vocabulary's.
const PAD: usize = VOCABULARY.len();

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// Adam's learning rate, both players.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// The size of z ~ N(0, I).
    pub latent: usize,
    /// lambda_int: the weight of GAN-INT's term in G's loss (0: GAN-CLS alone).
    pub interpolation_weight: f64,
    /// The text encoder: word embedding size, LSTM hidden size, and its training (Adam steps
    /// over all training captions, learning rate).
    pub word_dim: usize,
    pub text_hidden: usize,
    pub encoder_steps: usize,
    pub encoder_lr: f64,
    /// BatchNorm's eps and momentum (PyTorch's meaning).
    pub bn_eps: f64,
    pub bn_momentum: f64,
    /// Decay of a moving average of G's weights (and BatchNorm statistics), updated after every
    /// generator step, that draws the samples, metrics and pictures (beyond the paper, as
    /// CycleGAN's and StarGAN's translators here; [`WeightAverage`]); the trained G's figures
    /// on the held-out captions are reported beside it as `trained_*`. 0: G itself draws (the
    /// paper).
    #[serde(default = "crate::adversarial::saved_before_averages")]
    pub ema_decay: f64,
}

impl Default for TextConfig {
    fn default() -> Self {
        let gan = GanConfig::default();
        TextConfig {
            lr: gan.lr,
            beta1: gan.beta1,
            beta2: gan.beta2,
            latent: gan.latent,
            interpolation_weight: 1.0,
            word_dim: 16,
            text_hidden: 64,
            encoder_steps: 300,
            encoder_lr: 1e-2,
            bn_eps: gan.bn_eps,
            bn_momentum: gan.bn_momentum,
            ema_decay: 0.999,
        }
    }
}

impl TextConfig {
    /// The DCGAN settings the players are built and trained with.
    fn gan(&self) -> GanConfig {
        GanConfig {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            latent: self.latent,
            bn_eps: self.bn_eps,
            bn_momentum: self.bn_momentum,
            ..GanConfig::default()
        }
    }
}

/// The (stroke, lean) combination held out for `digit`: the nine combinations in turn
/// (digit d gets number 4d mod 9: thin / regular / thick by number / 3, left / upright / right
/// by number mod 3), so every stroke and every lean is held out for some digits.
pub fn held_out(digit: usize) -> (Stroke, Lean) {
    let k = (4 * digit) % 9;
    (Stroke::ALL[k / 3], Lean::ALL[k % 3])
}

pub fn is_held_out(a: &Attributes) -> bool {
    held_out(a.label) == (a.stroke, a.lean)
}

/// Every caption's attributes that training may see: 10 digits x 9 combinations, less the 10
/// held out.
pub fn training_attributes() -> Vec<Attributes> {
    all_attributes()
        .into_iter()
        .filter(|a| !is_held_out(a))
        .collect()
}

/// The held-out captions' attributes, one per digit.
pub fn held_out_attributes() -> Vec<Attributes> {
    (0..DIGITS)
        .map(|label| {
            let (stroke, lean) = held_out(label);
            Attributes {
                label,
                stroke,
                lean,
            }
        })
        .collect()
}

fn all_attributes() -> Vec<Attributes> {
    let mut out = Vec::new();
    for label in 0..DIGITS {
        for stroke in Stroke::ALL {
            for lean in Lean::ALL {
                out.push(Attributes {
                    label,
                    stroke,
                    lean,
                });
            }
        }
    }
    out
}

fn stroke_index(s: Stroke) -> usize {
    Stroke::ALL.iter().position(|&x| x == s).unwrap_or(0)
}

fn lean_index(l: Lean) -> usize {
    Lean::ALL.iter().position(|&x| x == l).unwrap_or(0)
}

/// The captions as word ids, padded in front to [`MAX_WORDS`], laid out [time, batch] as the
/// LSTM reads them.
fn word_ids(captions: &[Attributes]) -> Vec<usize> {
    let rows: Vec<Vec<usize>> = captions
        .iter()
        .map(|a| {
            let text = sets::caption(a);
            let ids: Vec<usize> = text
                .split(' ')
                .map(|w| VOCABULARY.iter().position(|v| *v == w).unwrap_or(PAD))
                .collect();
            let mut row = vec![PAD; MAX_WORDS.saturating_sub(ids.len())];
            row.extend(ids);
            row
        })
        .collect();
    (0..MAX_WORDS)
        .flat_map(|t| rows.iter().map(move |r| r[t]))
        .collect()
}

/// Word embeddings, an LSTM over the caption, and from its last hidden state the logits of the
/// digit, the stroke and the lean.
pub struct TextEncoder {
    words: Embedding,
    lstm: Lstm,
    head: Linear,
    /// 1 once trained (kept in checkpoints, so a loaded model is not trained again).
    trained: Tensor,
}

impl TextEncoder {
    pub fn new(config: &TextConfig, rng: &mut Rng) -> Result<TextEncoder> {
        Ok(TextEncoder {
            words: Embedding::new(VOCABULARY.len() + 1, config.word_dim, DType::F32, rng)?,
            lstm: Lstm::new(config.word_dim, config.text_hidden, true, DType::F32, rng)?,
            head: Linear::new(config.text_hidden, EMBEDDING, true, DType::F32, rng)?,
            trained: Tensor::zeros(&[1], DType::F32),
        })
    }

    /// Captions -> the three classifiers' logits side by side, [n, 16].
    fn logits(&self, captions: &[Attributes]) -> Result<Tensor> {
        let n = captions.len();
        let x = self
            .words
            .forward_shaped(&word_ids(captions), &[MAX_WORDS, n])?;
        let (_, (h, _)) = self.lstm.forward(&x, None)?;
        self.head
            .forward(&h.reshape(&[n, self.lstm.hidden_size()])?)
    }

    /// phi(t): the digit's, the stroke's and the lean's probabilities, [n, 16], as a constant
    /// (the encoder is frozen).
    pub fn embed(&self, captions: &[Attributes]) -> Result<Tensor> {
        let l = no_grad(|| self.logits(captions))?;
        let parts = [(0, DIGITS), (DIGITS, 3), (DIGITS + 3, 3)]
            .iter()
            .map(|&(start, len)| l.narrow(1, start, len)?.softmax(1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::concat(&parts, 1)?.detach())
    }

    /// The sum of the three cross-entropies of `captions` against their attributes.
    fn loss(&self, captions: &[Attributes]) -> Result<Tensor> {
        let l = self.logits(captions)?;
        let digit: Vec<usize> = captions.iter().map(|a| a.label).collect();
        let stroke: Vec<usize> = captions.iter().map(|a| stroke_index(a.stroke)).collect();
        let lean: Vec<usize> = captions.iter().map(|a| lean_index(a.lean)).collect();
        let ce = |start, len, targets: &[usize]| {
            nn::loss::cross_entropy(&l.narrow(1, start, len)?, targets, Reduction::Mean)
        };
        ce(0, DIGITS, &digit)?
            .add(&ce(DIGITS, 3, &stroke)?)?
            .add(&ce(DIGITS + 3, 3, &lean)?)
    }

    /// The share of `captions` whose three attributes the encoder reads right.
    pub fn accuracy(&self, captions: &[Attributes]) -> Result<f64> {
        let l = no_grad(|| self.logits(captions))?.to_vec_f64();
        let argmax = |row: &[f64]| {
            (0..row.len())
                .max_by(|&i, &j| row[i].total_cmp(&row[j]))
                .unwrap_or(0)
        };
        let right = captions
            .iter()
            .zip(l.chunks(EMBEDDING))
            .filter(|(a, row)| {
                argmax(&row[..DIGITS]) == a.label
                    && argmax(&row[DIGITS..DIGITS + 3]) == stroke_index(a.stroke)
                    && argmax(&row[DIGITS + 3..]) == lean_index(a.lean)
            })
            .count();
        Ok(right as f64 / captions.len().max(1) as f64)
    }

    pub fn is_trained(&self) -> bool {
        self.trained.item().is_ok_and(|v| v > 0.5)
    }

    /// Trains the encoder on the training captions (all at once, `steps` Adam steps) and marks
    /// it trained.
    pub fn train(&mut self, steps: usize, lr: f64) -> Result<()> {
        let captions = training_attributes();
        let mut adam = Adam::new(
            self.named_parameters(),
            AdamConfig {
                lr,
                ..AdamConfig::default()
            },
        )?;
        for _ in 0..steps {
            let loss = self.loss(&captions)?;
            adam.minimize(&loss)?;
        }
        init::constant_(&self.trained, 1.0)
    }
}

impl Module for TextEncoder {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("words", &self.words as &dyn Module),
                ("lstm", &self.lstm),
                ("head", &self.head),
            ],
            |m| m.named_parameters(),
        )
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![("trained".to_string(), self.trained.clone())]
    }
}

/// The matching-aware D by projection (module doc): its trunk f, the linear head w, b and the
/// projection V of the text embedding.
pub struct TextDiscriminator {
    trunk: ConvTrunk,
    fc: Linear,
    project: Linear,
}

impl TextDiscriminator {
    pub fn new(config: &GanConfig, rng: &mut Rng) -> Result<TextDiscriminator> {
        let project = Linear::new(EMBEDDING, TRUNK_FEATURES, false, DType::F32, rng)?;
        init::normal_(&project.weight, 0.0, 0.02, rng)?;
        Ok(TextDiscriminator {
            trunk: ConvTrunk::new(Some(config.norm()), rng)?,
            fc: Linear::new(TRUNK_FEATURES, 1, true, DType::F32, rng)?,
            project,
        })
    }

    /// Trunk features f(x) [n, 6272] -> the logits of pairing them with embeddings `h` [n, 16].
    fn score(&self, features: &Tensor, h: &Tensor) -> Result<Tensor> {
        let projection = features.mul(&self.project.forward(h)?)?.sum(&[1], true)?;
        self.fc.forward(features)?.add(&projection)
    }

    /// Images [n, 1, 28, 28] with embeddings [n, 16] -> logits [n, 1].
    pub fn forward(&mut self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        let f = self.trunk.features(x)?;
        self.score(&f, h)
    }
}

impl Module for TextDiscriminator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.trunk.named_parameters();
        p.extend(nn::prefixed("fc", self.fc.named_parameters()));
        p.extend(nn::prefixed("project", self.project.named_parameters()));
        p
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.trunk.named_buffers()
    }
    fn set_training(&mut self, training: bool) {
        self.trunk.set_training(training)
    }
}

/// A training digit as the model trains on it: given attributes, and captioned by measurement.
#[derive(Clone)]
struct Captioned {
    image: Vec<u8>,
    caption: Attributes,
}

pub struct TextToImage {
    config: TextConfig,
    encoder: TextEncoder,
    generator: ConvGenerator,
    /// The moving average of G (`ema_decay` > 0), which draws.
    average: Option<WeightAverage<ConvGenerator>>,
    discriminator: TextDiscriminator,
    opt_g: Adam,
    opt_d: Adam,
    monitor: Monitor,
    /// The training digits made and captioned ([`make_training_digit`]).
    made: MadeDigits<Captioned>,
}

/// The (stroke, lean) combination a training digit is given: one of the nine by its hash, the
/// digit's held-out one replaced by the next.
fn combination_for(label: usize, hash: u64) -> (Stroke, Lean) {
    let k = (hash % 9) as usize;
    let pick = |k: usize| (Stroke::ALL[k / 3], Lean::ALL[k % 3]);
    if pick(k) == held_out(label) {
        pick((k + 1) % 9)
    } else {
        pick(k)
    }
}

/// A training digit made and captioned (see [`Captioned`]); `None` when it measures as a
/// held-out caption or has no stroke.
fn make_training_digit(img: &[u8], label: usize, hash: u64) -> Option<Captioned> {
    let (stroke, lean) = combination_for(label, hash);
    let image = sets::with_attributes(img, stroke, lean);
    let caption = Attributes::measured(label, &image)?;
    (!is_held_out(&caption)).then_some(Captioned { image, caption })
}

impl TextToImage {
    pub fn new(config: TextConfig, rng: &mut Rng) -> Result<TextToImage> {
        check_latent(ENTRY.name, "latent", config.latent)?;
        for (key, v) in [
            ("word_dim", config.word_dim),
            ("text_hidden", config.text_hidden),
        ] {
            check_latent(ENTRY.name, key, v)?;
        }
        crate::adversarial::check_ema_decay(ENTRY.name, config.ema_decay)?;
        if !(config.interpolation_weight.is_finite() && config.interpolation_weight >= 0.0) {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "interpolation_weight must be a finite number >= 0, got {}",
                    config.interpolation_weight
                ),
            ));
        }
        let gan = config.gan();
        let encoder = TextEncoder::new(&config, rng)?;
        let generator = ConvGenerator::new(config.latent + EMBEDDING, gan.norm(), rng)?;
        let discriminator = TextDiscriminator::new(&gan, rng)?;
        let (opt_g, opt_d) = player_adams(&gan, &generator, &discriminator)?;
        let average = if config.ema_decay > 0.0 {
            // its own tensors, made without drawing on the run's generator
            let holder =
                ConvGenerator::new(config.latent + EMBEDDING, gan.norm(), &mut Rng::new(0))?;
            Some(WeightAverage::new(holder, &generator, config.ema_decay)?)
        } else {
            None
        };
        Ok(TextToImage {
            config,
            encoder,
            generator,
            average,
            discriminator,
            opt_g,
            opt_d,
            monitor: Monitor::default(),
            made: MadeDigits::default(),
        })
    }

    /// G(z, phi(t)) for fresh noise and the embeddings `h` [n, 16], in [-1, 1].
    fn generate(&mut self, h: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        generate_by(&mut self.generator, self.config.latent, h, rng)
    }

    /// The generator that draws: the average where there is one, else G; `trained` asks for
    /// G itself.
    fn drawer(&mut self, trained: bool) -> &mut ConvGenerator {
        match &mut self.average {
            Some(avg) if !trained => &mut avg.net,
            _ => &mut self.generator,
        }
    }

    /// `n` samples of each of `captions` in turn (caption i for samples i*n .. (i+1)*n), in
    /// [0, 1], by the drawer (or by G itself when `trained`).
    fn draw(
        &mut self,
        captions: &[Attributes],
        n: usize,
        trained: bool,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let each: Vec<Attributes> = captions
            .iter()
            .flat_map(|a| std::iter::repeat_n(*a, n))
            .collect();
        let h = self.encoder.embed(&each)?;
        let latent = self.config.latent;
        to_unit(&generate_by(self.drawer(trained), latent, &h, rng)?)
    }

    /// For each caption, another training caption chosen at random (the "wrong text").
    fn wrong_captions(captions: &[Attributes], rng: &mut Rng) -> Vec<Attributes> {
        let pool = training_attributes();
        captions
            .iter()
            .map(|a| loop {
                let b = pool[rng.below(pool.len() as u64) as usize];
                if b != *a {
                    break b;
                }
            })
            .collect()
    }

    /// For each caption, another training caption of the same digit chosen at random: GAN-INT
    /// interpolates between these (module doc).
    fn partner_captions(captions: &[Attributes], rng: &mut Rng) -> Vec<Attributes> {
        let pool = training_attributes();
        captions
            .iter()
            .map(|a| {
                let same: Vec<&Attributes> = pool
                    .iter()
                    .filter(|b| b.label == a.label && *b != a)
                    .collect();
                *same[rng.below(same.len() as u64) as usize]
            })
            .collect()
    }

    /// One step of GAN-CLS (and GAN-INT) on real images `x` in [-1, 1] with their captions.
    fn step(&mut self, x: &Tensor, captions: &[Attributes], rng: &mut Rng) -> Result<Losses> {
        let h = self.encoder.embed(captions)?;
        let wrong = self.encoder.embed(&Self::wrong_captions(captions, rng))?;
        let fake = self.generate(&h, rng)?;

        let real_features = self.discriminator.trunk.features(x)?;
        let real_right = self.discriminator.score(&real_features, &h)?;
        let real_wrong = self.discriminator.score(&real_features, &wrong)?;
        let fake_right = self.discriminator.forward(&fake.detach(), &h)?;
        let d_loss = bce_to(&real_right, 1.0)?.add(
            &bce_to(&real_wrong, 0.0)?
                .add(&bce_to(&fake_right, 0.0)?)?
                .mul_scalar(0.5)?,
        )?;
        self.opt_d.minimize(&d_loss)?;
        self.monitor.record(&real_right, &fake_right);

        let mut g_loss = bce_to(&self.discriminator.forward(&fake, &h)?, 1.0)?;
        if self.config.interpolation_weight > 0.0 {
            let partners = Self::partner_captions(captions, rng);
            let h_int = h.add(&self.encoder.embed(&partners)?)?.mul_scalar(0.5)?;
            let fake_int = self.generate(&h_int, rng)?;
            let int_loss = bce_to(&self.discriminator.forward(&fake_int, &h_int)?, 1.0)?;
            g_loss = g_loss.add(&int_loss.mul_scalar(self.config.interpolation_weight)?)?;
        }
        self.opt_g.minimize(&g_loss)?;
        if let Some(avg) = &mut self.average {
            avg.update(&self.generator)?;
        }
        Ok(vec![
            ("d_loss".into(), d_loss.item()?),
            ("g_loss".into(), g_loss.item()?),
        ])
    }

    /// How `samples` ([n, 1, 28, 28] in [0, 1], sample i asked for `asked[i]`) obey their
    /// captions: the style classifier's agreement with the digit ([`sets::read_digits`]: the
    /// harness classifier knows plain digits only), and the shares
    /// whose measured stroke, lean, and all three are as asked.
    fn obedience(
        ctx: &mut EvalContext,
        samples: &Tensor,
        asked: &[Attributes],
    ) -> Result<Obedience> {
        let labels: Vec<usize> = asked.iter().map(|a| a.label).collect();
        let grey = sets::to_grey_levels(&samples.to_vec_f32());
        let predicted = sets::read_digits(ctx, &grey)?;
        let measured: Vec<Option<Attributes>> = grey
            .par_chunks(PIXELS)
            .zip(&labels)
            .map(|(img, &l)| Attributes::measured(l, img))
            .collect();
        let n = asked.len().max(1) as f64;
        let share =
            |hit: &dyn Fn(usize) -> bool| (0..asked.len()).filter(|&i| hit(i)).count() as f64 / n;
        let stroke_ok = |i: usize| measured[i].is_some_and(|m| m.stroke == asked[i].stroke);
        let lean_ok = |i: usize| measured[i].is_some_and(|m| m.lean == asked[i].lean);
        // asked is in runs of one caption: the digit's share per run, in order
        let mut per_caption: Vec<(Attributes, usize, usize)> = Vec::new();
        for (i, a) in asked.iter().enumerate() {
            match per_caption.last_mut() {
                Some((b, hits, seen)) if b == a => {
                    *hits += usize::from(predicted[i] == labels[i]);
                    *seen += 1;
                }
                _ => per_caption.push((*a, usize::from(predicted[i] == labels[i]), 1)),
            }
        }
        Ok(Obedience {
            digit_per_caption: per_caption
                .into_iter()
                .map(|(a, hits, seen)| (a, hits as f64 / seen as f64))
                .collect(),
            digit: share(&|i| predicted[i] == labels[i]),
            stroke: share(&stroke_ok),
            lean: share(&lean_ok),
            all: share(&|i| predicted[i] == labels[i] && stroke_ok(i) && lean_ok(i)),
        })
    }

    /// The real-data baseline of [`Self::obedience`] for `captions`: test digits of each
    /// caption's digit given its stroke and lean, `n` per caption (cycling through the digits
    /// of that label), as grey images in [0, 1] with their attributes.
    fn real_with(
        data: &Mnist,
        captions: &[Attributes],
        n: usize,
    ) -> Result<(Tensor, Vec<Attributes>)> {
        let test = &data.test;
        let mut jobs = Vec::new();
        for a in captions {
            let rows: Vec<usize> = (0..test.len())
                .filter(|&i| usize::from(test.labels[i]) == a.label)
                .collect();
            if rows.is_empty() {
                return Err(Error::invalid(
                    "eval",
                    format!("no test digit {} to compare with", a.label),
                ));
            }
            jobs.extend((0..n).map(|k| (rows[k % rows.len()], *a)));
        }
        let made: Vec<u8> = jobs
            .par_iter()
            .flat_map_iter(|&(i, a)| sets::with_attributes(test.image(i), a.stroke, a.lean))
            .collect();
        let x = Tensor::from_vec(
            made.iter().map(|&b| b as f32 / 255.0).collect(),
            &[jobs.len(), 1, N, N],
        )?;
        Ok((x, jobs.into_iter().map(|(_, a)| a).collect()))
    }

    /// Obedience on `captions` (`per` samples each), beside the real baseline, named
    /// `{prefix}_digit`, `_stroke`, `_lean`, `_all`; and the FCD of the samples against the
    /// real digits so made.
    fn caption_metrics(
        &mut self,
        ctx: &mut EvalContext,
        prefix: &str,
        captions: &[Attributes],
        per: usize,
        trained: bool,
    ) -> Result<Vec<Metric>> {
        self.set_training(false);
        let mut rng = Rng::new(ctx.rng.next_u64());
        let samples = no_grad(|| self.draw(captions, per, trained, &mut rng))?;
        let asked: Vec<Attributes> = captions
            .iter()
            .flat_map(|a| std::iter::repeat_n(*a, per))
            .collect();
        let ours = Self::obedience(ctx, &samples, &asked)?;
        let (real, real_asked) = Self::real_with(ctx.data, captions, per)?;
        let base = Self::obedience(ctx, &real, &real_asked)?;
        let gen = ctx.features(&samples)?;
        let reference = ctx.features(&real)?;
        let fcd = metrics::frechet_of_sets(
            &gen.features,
            gen.n,
            &reference.features,
            reference.n,
            gen.d,
        )?;
        let mut detail = format!(
            "{} samples, {per} per caption; baseline: test digits given the captions' attributes",
            asked.len()
        );
        // one figure per held-out caption (the seen ones are too many to list)
        if captions.len() <= DIGITS {
            let each: Vec<String> = ours
                .digit_per_caption
                .iter()
                .zip(&base.digit_per_caption)
                .map(|((a, d), (_, r))| {
                    format!(
                        "\"{}\" {:.0}% (real {:.0}%)",
                        sets::caption(a),
                        100.0 * d,
                        100.0 * r
                    )
                })
                .collect();
            detail = format!("{detail}; per caption: {}", each.join(", "));
        }
        Ok(vec![
            Metric::with_baseline(format!("{prefix}_digit"), ours.digit, base.digit).detail(detail),
            Metric::with_baseline(format!("{prefix}_stroke"), ours.stroke, base.stroke),
            Metric::with_baseline(format!("{prefix}_lean"), ours.lean, base.lean),
            Metric::with_baseline(format!("{prefix}_all"), ours.all, base.all),
            Metric::new(format!("{prefix}_fcd"), fcd)
                .detail("against the test digits given the same attributes"),
        ])
    }
}

struct Obedience {
    /// The digit's share for each run of one caption in the samples, in order.
    digit_per_caption: Vec<(Attributes, f64)>,
    digit: f64,
    stroke: f64,
    lean: f64,
    all: f64,
}

impl GenerativeModel for TextToImage {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        let mut w = player_weights(&self.generator, &self.discriminator);
        w.extend(nn::prefixed("text_encoder", self.encoder.state_dict()));
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
    fn begin_epoch(&mut self, _epoch: u64) -> Result<()> {
        self.monitor.reset();
        Ok(())
    }
    /// Two digits at least, as the step asks (its networks batch-normalise over the batch).
    fn min_batch(&self) -> usize {
        2
    }
    /// The first step trains the text encoder first (module doc).
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        if !self.encoder.is_trained() {
            self.encoder
                .train(self.config.encoder_steps, self.config.encoder_lr)?;
        }
        let items = self.made.of_batch(batch, make_training_digit);
        let least = self.min_batch();
        if items.len() < least {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "fewer than {least} digits of this batch could be captioned: use a larger \
                     batch size"
                ),
            ));
        }
        let grey: Vec<u8> = items.iter().flat_map(|c| c.image.iter().copied()).collect();
        let captions: Vec<Attributes> = items.iter().map(|c| c.caption).collect();
        self.step(&symmetric_from_grey(&grey)?, &captions, rng)
    }
    /// The held-out captions in equal runs (a grid of 100: a row per caption).
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let captions = held_out_attributes();
        let asked: Vec<Attributes> = (0..n).map(|i| captions[i * DIGITS / n.max(1)]).collect();
        let h = self.encoder.embed(&asked)?;
        let latent = self.config.latent;
        to_unit(&generate_by(self.drawer(false), latent, &h, rng)?)
    }
    fn sample_caption(&mut self, n: usize, caption: &str, rng: &mut Rng) -> Result<Tensor> {
        let a = sets::parse_caption(caption)
            .map_err(|e| Error::invalid("sample", format!("--caption {caption:?}: {e}")))?;
        self.draw(&[a], n, false, rng)
    }
    /// Obedience to the held-out captions (20 samples each; by the average and, where there is
    /// one, by the trained G as `trained_held_out_*`), and D's accuracy over the epoch.
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let held = held_out_attributes();
        let mut m = self.caption_metrics(ctx, "held_out", &held, EPOCH_SAMPLES / 25, false)?;
        if self.average.is_some() {
            m.extend(self.caption_metrics(
                ctx,
                "trained_held_out",
                &held,
                EPOCH_SAMPLES / 25,
                true,
            )?);
        }
        if let Some(acc) = self.monitor.accuracy() {
            m.push(Metric::new("d_accuracy", acc));
        }
        Ok(m)
    }
    /// Obedience to the held-out captions and to the training ones, `--samples` in all for
    /// each (1,000 by default: 100 per held-out caption), beside the real baselines, and where
    /// the average draws, the trained G's on the held-out ones as `trained_held_out_*`; the
    /// encoder's accuracy on the held-out captions.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let held = held_out_attributes();
        let per = (ctx.samples / held.len()).max(2);
        let mut m = self.caption_metrics(ctx, "held_out", &held, per, false)?;
        let seen = training_attributes();
        let per_seen = (ctx.samples / seen.len()).max(2);
        m.extend(self.caption_metrics(ctx, "seen", &seen, per_seen, false)?);
        if self.average.is_some() {
            m.extend(self.caption_metrics(ctx, "trained_held_out", &held, per, true)?);
        }
        m.push(Metric::new(
            "encoder_held_out_accuracy",
            self.encoder.accuracy(&held)?,
        ));
        Ok(m)
    }
    /// `captions.png`: a row per held-out caption, ten draws each; `interpolation.png`: rows
    /// walking phi(t) from one caption to another (GAN-INT's ground), fixed noise per row.
    fn end_of_training(&mut self, dir: &Path, _data: &Mnist) -> Result<()> {
        self.set_training(false);
        let grid = no_grad(|| self.sample(100, &mut Rng::new(0x7e47)))?;
        checkpoint::write_atomic(
            &dir.join("captions.png"),
            &image::grid_png(&grid, Some(10), 2)?,
        )?;
        let walks = no_grad(|| self.interpolations())?;
        checkpoint::write_atomic(
            &dir.join("interpolation.png"),
            &image::grid_png(&walks, Some(10), 2)?,
        )
    }
}

/// `net`(z, phi(t)) for fresh noise z [n, `latent`] and the embeddings `h` [n, 16], in [-1, 1].
fn generate_by(
    net: &mut ConvGenerator,
    latent: usize,
    h: &Tensor,
    rng: &mut Rng,
) -> Result<Tensor> {
    let z = noise(h.shape()[0], latent, rng);
    net.forward(&Tensor::concat(&[z, h.clone()], 1)?)
}

impl TextToImage {
    /// Rows of ten images from caption a to caption b, phi interpolated linearly, the noise
    /// fixed along each row.
    fn interpolations(&mut self) -> Result<Tensor> {
        let pairs = [
            ("a thin two leaning left", "a thick two leaning right"),
            ("a four", "a nine"),
            ("a thin seven", "a thick one leaning right"),
            ("an eight leaning left", "a thick three leaning left"),
        ];
        let mut rng = Rng::new(0x1e7);
        let mut rows = Vec::new();
        for (a, b) in pairs {
            let parse = |t: &str| sets::parse_caption(t).map_err(|e| Error::invalid(ENTRY.name, e));
            let h = self.encoder.embed(&[parse(a)?, parse(b)?])?;
            let (ha, hb) = (h.narrow(0, 0, 1)?, h.narrow(0, 1, 1)?);
            let steps: Vec<Tensor> = (0..10)
                .map(|k| {
                    let t = k as f64 / 9.0;
                    ha.mul_scalar(1.0 - t)?.add(&hb.mul_scalar(t)?)
                })
                .collect::<Result<_>>()?;
            let hs = Tensor::concat(&steps, 0)?;
            let z = noise(1, self.config.latent, &mut rng).expand(&[10, self.config.latent])?;
            let x = self.drawer(false).forward(&Tensor::concat(&[z, hs], 1)?)?;
            rows.push(to_unit(&x)?);
        }
        Tensor::concat(&rows, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_digit_holds_out_one_combination_and_every_stroke_and_lean_is_held_out() {
        let held = held_out_attributes();
        assert_eq!(held.len(), 10);
        assert_eq!(training_attributes().len(), 80);
        for s in Stroke::ALL {
            assert!(held.iter().any(|a| a.stroke == s), "{s:?}");
        }
        for l in Lean::ALL {
            assert!(held.iter().any(|a| a.lean == l), "{l:?}");
        }
        for label in 0..10 {
            for hash in 0..40u64 {
                let (stroke, lean) = combination_for(label, hash);
                assert!(!is_held_out(&Attributes {
                    label,
                    stroke,
                    lean
                }));
            }
        }
    }

    #[test]
    fn captions_become_word_ids_padded_in_front() {
        let a = sets::parse_caption("a thick seven leaning right").unwrap();
        let b = sets::parse_caption("a four").unwrap();
        let ids = word_ids(&[a, b]);
        assert_eq!(ids.len(), 2 * MAX_WORDS);
        // time-major: caption b is at odd positions, padded for its first three words
        let b_ids: Vec<usize> = ids.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(b_ids[..3], [PAD, PAD, PAD]);
        assert_eq!(VOCABULARY[b_ids[4]], "four");
        let a_ids: Vec<usize> = ids.iter().step_by(2).copied().collect();
        assert_eq!(VOCABULARY[a_ids[0]], "a");
        assert_eq!(VOCABULARY[a_ids[4]], "right");
    }

    /// The encoder, trained on the 80 training captions, reads the 10 held-out ones right: it
    /// composes words it saw in other captions.
    #[test]
    fn the_text_encoder_reads_held_out_captions() {
        let config = TextConfig::default();
        let mut enc = TextEncoder::new(&config, &mut Rng::new(1)).unwrap();
        assert!(!enc.is_trained());
        enc.train(config.encoder_steps, config.encoder_lr).unwrap();
        assert!(enc.is_trained());
        assert_eq!(enc.accuracy(&training_attributes()).unwrap(), 1.0);
        let held = enc.accuracy(&held_out_attributes()).unwrap();
        assert!(held >= 0.9, "held-out captions read right: {held}");
        let h = enc.embed(&held_out_attributes()).unwrap();
        assert_eq!(h.shape(), &[10, EMBEDDING]);
        // each block is a distribution
        for row in h.to_vec_f64().chunks(EMBEDDING) {
            for (s, l) in [(0, 10), (10, 3), (13, 3)] {
                let sum: f64 = row[s..s + l].iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{sum}");
            }
        }
    }

    /// The caption reaches both players: with the same noise two captions give different
    /// images, and the same image with two captions different logits.
    #[test]
    fn the_caption_changes_what_g_draws_and_what_d_says() {
        let mut rng = Rng::new(5);
        let mut m = TextToImage::new(TextConfig::default(), &mut rng).unwrap();
        m.set_training(false);
        let a = m
            .sample_caption(2, "a thin two", &mut Rng::new(9))
            .unwrap()
            .to_vec_f64();
        let b = m
            .sample_caption(2, "a thick eight leaning left", &mut Rng::new(9))
            .unwrap()
            .to_vec_f64();
        let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
        assert!(diff > 1e-3, "the caption does not reach G ({diff})");
        let x = Tensor::randn(&[2, 1, 28, 28], DType::F32, &mut rng);
        let h1 = m.encoder.embed(&[held_out_attributes()[0]; 2]).unwrap();
        let h2 = m.encoder.embed(&[held_out_attributes()[3]; 2]).unwrap();
        let l1 = m.discriminator.forward(&x, &h1).unwrap().to_vec_f64();
        let l2 = m.discriminator.forward(&x, &h2).unwrap().to_vec_f64();
        let d: f64 = l1.iter().zip(&l2).map(|(p, q)| (p - q).abs()).sum();
        assert!(d > 1e-6, "the caption does not reach D ({d})");
        let e = m
            .sample_caption(1, "a bold seven", &mut rng)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"bold\""), "{e}");
    }

    /// With `ema_decay` an average of G follows the generator steps without changing them, is
    /// in the checkpoint, draws the samples, and the trained G's figures come beside its own.
    #[test]
    fn the_generator_average_draws_and_changes_no_step() {
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..16).collect::<Vec<_>>());
        let run = |ema_decay| {
            let mut rng = Rng::new(7);
            let config = TextConfig {
                encoder_steps: 20,
                ema_decay,
                ..TextConfig::default()
            };
            let mut m = TextToImage::new(config, &mut rng).unwrap();
            for _ in 0..3 {
                m.train_step(&batch, &mut rng).unwrap();
            }
            m
        };
        let mut plain = run(0.0);
        let mut averaged = run(0.9);
        let first = |g: &ConvGenerator| g.state_dict()[0].1.to_vec_f64();
        assert_eq!(first(&plain.generator), first(&averaged.generator));
        let avg = &averaged.average.as_ref().unwrap().net;
        assert_ne!(first(avg), first(&averaged.generator));
        let steps = averaged
            .weights()
            .into_iter()
            .find(|(n, _)| n == "generator_average_steps")
            .unwrap();
        assert_eq!(steps.1.item().unwrap(), 3.0);
        averaged.set_training(false);
        let s = no_grad(|| averaged.sample_caption(2, "a thick four", &mut Rng::new(1))).unwrap();
        let h = averaged
            .encoder
            .embed(&[sets::parse_caption("a thick four").unwrap(); 2])
            .unwrap();
        let latent = averaged.config.latent;
        let by_average = no_grad(|| {
            let net = &mut averaged.average.as_mut().unwrap().net;
            to_unit(&generate_by(net, latent, &h, &mut Rng::new(1))?)
        })
        .unwrap();
        assert_eq!(s.to_vec_f32(), by_average.to_vec_f32());
        let mut ctx = EvalContext::new(&data, 0, 20);
        let names = |m: &mut TextToImage, ctx: &mut EvalContext| -> Vec<String> {
            m.epoch_metrics(ctx)
                .unwrap()
                .into_iter()
                .map(|x| x.name)
                .collect()
        };
        let with = names(&mut averaged, &mut ctx);
        assert!(with.iter().any(|n| n == "held_out_digit"), "{with:?}");
        assert!(
            with.iter().any(|n| n == "trained_held_out_stroke"),
            "{with:?}"
        );
        let without = names(&mut plain, &mut ctx);
        assert!(!without.iter().any(|n| n.starts_with("trained_")));
    }

    /// A few steps train both players and leave the frozen encoder as it was trained.
    #[test]
    fn steps_train_both_players_and_not_the_encoder() {
        let mut rng = Rng::new(7);
        let config = TextConfig {
            encoder_steps: 20,
            ..TextConfig::default()
        };
        let mut m = TextToImage::new(config, &mut rng).unwrap();
        let data = crate::program::data::embedded().unwrap();
        let batch = data.train.batch(&(0..16).collect::<Vec<_>>());
        let sum = |m: &TextToImage, prefix: &str| -> f64 {
            m.weights()
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, t)| t.to_vec_f64().iter().sum::<f64>())
                .sum()
        };
        let (g0, d0) = (sum(&m, "generator."), sum(&m, "discriminator.project"));
        let first = m.train_step(&batch, &mut rng).unwrap();
        let e1 = sum(&m, "text_encoder.");
        let mut last = first.clone();
        for _ in 0..3 {
            last = m.train_step(&batch, &mut rng).unwrap();
        }
        assert!(first.iter().chain(&last).all(|(_, v)| v.is_finite()));
        assert_ne!(g0, sum(&m, "generator."));
        assert_ne!(
            d0,
            sum(&m, "discriminator.project"),
            "the projection does not train"
        );
        assert_eq!(
            e1,
            sum(&m, "text_encoder."),
            "the encoder moved after its training"
        );
        assert!(m.encoder.is_trained());
        // the made digits are kept, and none is captioned as a held-out combination
        assert_eq!(m.made.seen(), 16);
        assert!(m.made.made().count() > 8);
        assert!(m.made.made().all(|c| !is_held_out(&c.caption)));
    }
}
