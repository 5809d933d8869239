//! The adversarial models (the lecture's section 4): a generator G, mapping noise z ~ p(z) to
//! images, and a discriminator (or critic) D, trained against each other.
//!
//! ```text
//!   min_G max_D  V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p(z)}[log(1 - D(G(z)))]
//! ```
//!
//! For a fixed G the best D is D*(x) = p_data(x) / (p_data(x) + p_g(x)), and at D* the game's
//! value is V = -log 4 + 2 JSD(p_data || p_g): the generator minimises a Jensen-Shannon
//! divergence, whose minimum -log 4 is reached exactly at p_g = p_data ([`toy`] shows both on a
//! 1-D example). WGAN and WGAN-GP replace the JSD by the Wasserstein-1 distance, estimated by a
//! 1-Lipschitz critic ([`wgan`]).
//!
//! This module holds what the GANs share: the losses, the two players with their optimizers
//! ([`Players`]: weights, checkpoints, samples), the step of the BCE games, the per-epoch
//! monitoring and its warnings. One file per model: [`gan`] (MLPs), [`dcgan`], [`wgan`] (WGAN
//! and WGAN-GP), [`infogan`], [`cgan`] (conditioned on the label), [`cycle_gan`] (plain <-> thick digits),
//! [`text2image`] (captions to digits), [`stargan`] (one generator over six digit domains),
//! [`puzzle_gan`] (the whole digit from three patches), [`progan`] (grown 7x7 -> 14x14 -> 28x28);
//! their networks are in
//! [`networks`].

pub mod cgan;
pub mod cycle_gan;
pub mod dcgan;
pub mod gan;
pub mod infogan;
pub mod networks;
pub mod progan;
pub mod puzzle_gan;
pub mod stargan;
pub mod text2image;
pub mod toy;
pub mod wgan;

use crate::adversarial::networks::NormOptions;
use crate::model::{Entry, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{self, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, DType, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

/// `ema_decay` of a run saved before the key existed: no average (the checkpoint holds none).
/// New runs write the key, so only such runs take this; `Default` gives new runs theirs.
pub fn saved_before_averages() -> f64 {
    0.0
}

/// Refuses an `ema_decay` outside [0, 1) in `model`'s config (0: no average).
pub fn check_ema_decay(model: &'static str, ema_decay: f64) -> Result<()> {
    if (0.0..1.0).contains(&ema_decay) {
        Ok(())
    } else {
        Err(autograd::Error::invalid(
            model,
            format!("ema_decay must be in [0, 1), got {ema_decay}"),
        ))
    }
}

/// The learning rate of 0-based `epoch` under the linear decay of the CycleGAN and StarGAN
/// papers' code: `constant_epochs` at `lr`, then epoch `constant_epochs + k` (k =
/// 1..=`decay_epochs`) at lr · (1 - k / (decay_epochs + 1)); later epochs stay at the last rate.
/// `decay_epochs` 0: a constant rate.
pub fn linearly_decayed_lr(lr: f64, epoch: u64, constant_epochs: u64, decay_epochs: u64) -> f64 {
    let k = (epoch + 1)
        .saturating_sub(constant_epochs)
        .min(decay_epochs);
    lr * (1.0 - k as f64 / (decay_epochs + 1) as f64)
}

/// Binary cross-entropy of discriminator logits against one label for the whole batch (1:
/// "real", 0: "generated"), averaged over the batch: -mean log σ(l) for label 1, -mean
/// log(1 - σ(l)) for label 0, computed stably from the logits. Also the AAE's and WAE-GAN's
/// losses on their code space.
pub fn bce_to(logits: &Tensor, label: f64) -> Result<Tensor> {
    nn::loss::bce_with_logits(logits, &logits.full_like(label), nn::Reduction::Mean)
}

/// The generator's loss in the BCE games.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorLoss {
    /// -log D(G(z)): the same fixed point as the minimax game, but strong gradients while D
    /// still rejects the samples (Goodfellow et al. 2014, section 3). The default.
    NonSaturating,
    /// log(1 - D(G(z))), the game's own term: its gradient vanishes when D(G(z)) -> 0, which is
    /// where training starts.
    Minimax,
}

/// The generator's loss from D's logits on generated images (a mean over the batch).
pub fn generator_loss(fake_logits: &Tensor, kind: GeneratorLoss) -> Result<Tensor> {
    match kind {
        GeneratorLoss::NonSaturating => bce_to(fake_logits, 1.0),
        // log(1 - σ(l)) = -BCE(l, 0)
        GeneratorLoss::Minimax => bce_to(fake_logits, 0.0)?.neg(),
    }
}

/// d loss / d logit of each generator loss for one sample, at D(G(z)) = σ(l) = d: the lecture's
/// point about the two losses. Non-saturating: -(1 - d), largest where d -> 0; minimax: -d,
/// vanishing there.
pub fn generator_loss_slope(kind: GeneratorLoss, d: f64) -> f64 {
    match kind {
        GeneratorLoss::NonSaturating => -(1.0 - d),
        GeneratorLoss::Minimax => -d,
    }
}

/// D's loss: real images labelled 1, generated ones 0, each term a batch mean.
pub fn discriminator_loss(real_logits: &Tensor, fake_logits: &Tensor) -> Result<Tensor> {
    bce_to(real_logits, 1.0)?.add(&bce_to(fake_logits, 0.0)?)
}

/// z ~ N(0, I) of shape [n, dim].
pub fn noise(n: usize, dim: usize, rng: &mut Rng) -> Tensor {
    Tensor::randn(&[n, dim], DType::F32, rng)
}

/// Independent draws of U(-1, 1) (InfoGAN's and Puzzle-GAN's noise, as their papers' code draws
/// it).
pub fn uniform_symmetric(shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
    Tensor::rand(shape, DType::F32, rng)
        .mul_scalar(2.0)?
        .add_scalar(-1.0)
}

/// Generator output in [-1, 1] -> an image in [0, 1].
pub fn to_unit(x: &Tensor) -> Result<Tensor> {
    x.add_scalar(1.0)?.mul_scalar(0.5)?.clamp(0.0, 1.0)
}

/// Grey levels of [28, 28] digits -> [n, 1, 28, 28] in [-1, 1].
pub fn symmetric_from_grey(images: &[u8]) -> Result<Tensor> {
    const PIXELS: usize = 28 * 28;
    let v = images.iter().map(|&b| b as f32 / 127.5 - 1.0).collect();
    Tensor::from_vec(v, &[images.len() / PIXELS, 1, 28, 28])
}

/// [n, 1, 28, 28] in [-1, 1] -> grey levels.
pub fn grey_levels(x: &Tensor) -> Vec<u8> {
    x.to_vec_f32()
        .iter()
        .map(|v| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Both players' parameters and buffers under "generator.*" / "discriminator.*".
pub fn player_weights(generator: &dyn Module, discriminator: &dyn Module) -> Vec<(String, Tensor)> {
    let mut w = nn::prefixed("generator", generator.state_dict());
    w.extend(nn::prefixed("discriminator", discriminator.state_dict()));
    w
}

/// One Adam from `config` per player, over its parameters named as [`player_weights`] names
/// them.
pub fn player_adams(
    config: &GanConfig,
    generator: &dyn Module,
    discriminator: &dyn Module,
) -> Result<(Adam, Adam)> {
    let adam = config.adam();
    let g = Adam::new(
        nn::prefixed("generator", generator.named_parameters()),
        adam,
    )?;
    let d = Adam::new(
        nn::prefixed("discriminator", discriminator.named_parameters()),
        adam,
    )?;
    Ok((g, d))
}

/// The largest absolute difference of two tensors of one shape (the tests' comparisons).
#[cfg(test)]
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `to`'s parameters and buffers set to `from`'s (a weight average starts as the network it
/// follows).
pub fn copy_weights(to: &dyn Module, from: &dyn Module) -> Result<()> {
    for (t, f) in paired_state(to, from)? {
        t.copy_from(&f)?;
    }
    Ok(())
}

/// One step of a moving average of a network's weights (the network that samples in ProGAN,
/// Karras et al. 2018): after the `t`-th training step (from 1),
/// average = d · average + (1 - d) · current, d = min(decay, (1 + t) / (10 + t)), the warm-up
/// of TensorFlow's moving averages, so that early averages soon forget the initial weights.
/// Buffers are averaged alike: a BatchNorm's running statistics, averaged over the same steps,
/// are what the averaged network normalises with when it samples.
pub fn update_weight_average(
    average: &dyn Module,
    current: &dyn Module,
    decay: f64,
    t: u64,
) -> Result<()> {
    let d = decay.min((1.0 + t as f64) / (10.0 + t as f64)) as f32;
    for (a, c) in paired_state(average, current)? {
        let c = c.to_vec_f32();
        a.update_data::<f32>(|v| {
            for (v, c) in v.iter_mut().zip(&c) {
                *v = d * *v + (1.0 - d) * c;
            }
        })?;
    }
    Ok(())
}

/// The parameters and buffers of two networks of one architecture, in pairs.
fn paired_state(a: &dyn Module, b: &dyn Module) -> Result<Vec<(Tensor, Tensor)>> {
    let (pa, pb) = (a.state_dict(), b.state_dict());
    let same = pa.len() == pb.len()
        && pa
            .iter()
            .zip(&pb)
            .all(|((na, ta), (nb, tb))| na == nb && ta.shape() == tb.shape());
    if !same {
        return Err(autograd::Error::invalid(
            "weight average",
            "the average and the network it follows differ in their parameters",
        ));
    }
    Ok(pa
        .into_iter()
        .zip(pb)
        .map(|((_, a), (_, b))| (a, b))
        .collect())
}

/// A network's weights averaged over its training steps ([`update_weight_average`]), to sample
/// from, as ProGAN samples from one (Karras et al. 2018; Yazici et al. 2019, "The Unusual
/// Effectiveness of Averaging in GAN Training": the average of an oscillating generator sits
/// nearer the equilibrium than any of its steps). The average is never trained and stays in
/// evaluation mode.
pub struct WeightAverage<N> {
    pub net: N,
    decay: f64,
    /// Steps averaged so far (an f64 scalar, checkpointed, so that a resumed run's warm-up
    /// continues the uninterrupted one's).
    steps: Tensor,
}

impl<N: Module> WeightAverage<N> {
    /// The average of `current` from here on, held in `holder`: a network of `current`'s
    /// architecture made for the purpose (its weights are overwritten).
    pub fn new(mut holder: N, current: &N, decay: f64) -> Result<WeightAverage<N>> {
        if !(0.0..1.0).contains(&decay) {
            return Err(autograd::Error::invalid(
                "weight average",
                format!("the decay must be in [0, 1), got {decay}"),
            ));
        }
        copy_weights(&holder, current)?;
        holder.set_training(false);
        Ok(WeightAverage {
            net: holder,
            decay,
            steps: Tensor::zeros(&[], DType::F64),
        })
    }

    /// One step of the average towards `current`'s weights.
    pub fn update(&mut self, current: &N) -> Result<()> {
        let t = self.steps.item()? as u64 + 1;
        update_weight_average(&self.net, current, self.decay, t)?;
        self.steps = Tensor::scalar(t as f64, DType::F64);
        Ok(())
    }

    /// The average's parameters and buffers under `name.*` and its step count as `name_steps`,
    /// for a checkpoint.
    pub fn state(&self, name: &str) -> Vec<(String, Tensor)> {
        let mut w = nn::prefixed(name, self.net.state_dict());
        w.push((format!("{name}_steps"), self.steps.clone()));
        w
    }
}

/// The two players' optimizers under the names every GAN's checkpoint gives them.
pub fn player_optimizers<'a>(
    g: &'a dyn Optimizer,
    d: &'a dyn Optimizer,
) -> Vec<(&'static str, &'a dyn Optimizer)> {
    vec![("optimizer_g", g), ("optimizer_d", d)]
}

/// [`player_optimizers`], to load them.
pub fn player_optimizers_mut<'a>(
    g: &'a mut dyn Optimizer,
    d: &'a mut dyn Optimizer,
) -> Vec<(&'static str, &'a mut dyn Optimizer)> {
    vec![("optimizer_g", g), ("optimizer_d", d)]
}

/// A network of one player: a module whose forward may update buffers (BatchNorm's running
/// statistics), hence `&mut self`.
pub trait Network: Module {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor>;
}

/// The two players and their optimizers, with what every GAN does the same way: weights and
/// optimizer state under "generator.*" / "discriminator.*" and "optimizer_g" / "optimizer_d",
/// the train/eval switch, samples from noise, and D's running accuracy.
pub struct Players<G: Network, D: Network> {
    pub generator: G,
    pub discriminator: D,
    pub opt_g: Box<dyn Optimizer>,
    pub opt_d: Box<dyn Optimizer>,
    /// The size of z.
    pub latent: usize,
    pub monitor: Monitor,
}

impl<G: Network, D: Network> Players<G, D> {
    /// Parameters and buffers of both networks.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        player_weights(&self.generator, &self.discriminator)
    }

    pub fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        player_optimizers(&*self.opt_g, &*self.opt_d)
    }

    pub fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        player_optimizers_mut(&mut *self.opt_g, &mut *self.opt_d)
    }

    pub fn set_training(&mut self, training: bool) {
        self.generator.set_training(training);
        self.discriminator.set_training(training);
    }

    /// `n` images in [0, 1] from fresh noise.
    pub fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let z = noise(n, self.latent, rng);
        to_unit(&self.generator.forward(&z)?)
    }

    /// One step of the BCE game on real images `x` (in [-1, 1]): D on the real batch and on as
    /// many generated images (labels 1 and 0), then G against the updated D with `loss`.
    pub fn bce_step(&mut self, x: &Tensor, loss: GeneratorLoss, rng: &mut Rng) -> Result<Losses> {
        let n = x.shape().first().copied().unwrap_or(0);
        let z = noise(n, self.latent, rng);
        let fake = self.generator.forward(&z)?;
        let d_loss = discriminator_step(
            &mut self.discriminator,
            &mut *self.opt_d,
            &mut self.monitor,
            x,
            &fake,
        )?;
        // G's step: through the updated D to the generated images' graph
        let g_loss = generator_loss(&self.discriminator.forward(&fake)?, loss)?;
        self.opt_g.minimize(&g_loss)?;
        Ok(vec![
            ("d_loss".into(), d_loss),
            ("g_loss".into(), g_loss.item()?),
        ])
    }
}

/// One step of D in the BCE game: real images `x` labelled 1, `fake` ones (detached: G is not
/// trained here) labelled 0; D's accuracy goes to `monitor`. Returns the loss.
pub fn discriminator_step(
    d: &mut dyn Network,
    opt: &mut dyn Optimizer,
    monitor: &mut Monitor,
    x: &Tensor,
    fake: &Tensor,
) -> Result<f64> {
    let real_logits = d.forward(x)?;
    let fake_logits = d.forward(&fake.detach())?;
    let loss = discriminator_loss(&real_logits, &fake_logits)?;
    opt.minimize(&loss)?;
    monitor.record(&real_logits, &fake_logits);
    loss.item()
}

/// The settings of the BCE games ([`gan`], [`dcgan`]): Adam for both players.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GanConfig {
    /// Adam's learning rate, both players.
    pub lr: f64,
    /// Adam's betas, both players.
    pub beta1: f64,
    pub beta2: f64,
    /// The size of z ~ N(0, I).
    pub latent: usize,
    pub loss: GeneratorLoss,
    /// BatchNorm's eps and momentum (PyTorch's meaning, [`NormOptions`]).
    pub bn_eps: f64,
    pub bn_momentum: f64,
}

impl Default for GanConfig {
    fn default() -> Self {
        GanConfig {
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            latent: 100,
            loss: GeneratorLoss::NonSaturating,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
        }
    }
}

impl GanConfig {
    pub fn norm(&self) -> NormOptions {
        NormOptions {
            eps: self.bn_eps,
            momentum: self.bn_momentum,
        }
    }

    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            betas: (self.beta1, self.beta2),
            ..AdamConfig::default()
        }
    }
}

/// A GAN of the BCE game with networks `G` and `D`: [`gan::Gan`] (MLPs) and [`dcgan::Dcgan`]
/// (convolutions) differ only in these.
pub struct BceGan<G: Network, D: Network> {
    entry: &'static Entry,
    config: GanConfig,
    pub players: Players<G, D>,
}

impl<G: Network, D: Network> BceGan<G, D> {
    /// The model of `entry` from its networks; Adam from `config` for both.
    pub fn new(
        entry: &'static Entry,
        config: GanConfig,
        generator: G,
        discriminator: D,
    ) -> Result<Self> {
        let (opt_g, opt_d) = player_adams(&config, &generator, &discriminator)?;
        Ok(BceGan {
            entry,
            players: Players {
                generator,
                discriminator,
                opt_g: Box::new(opt_g),
                opt_d: Box::new(opt_d),
                latent: config.latent,
                monitor: Monitor::default(),
            },
            config,
        })
    }
}

impl<G: Network, D: Network> GenerativeModel for BceGan<G, D> {
    fn name(&self) -> &'static str {
        self.entry.name
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
        self.players.bce_step(&x, self.config.loss, rng)
    }
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        self.players.sample(n, rng)
    }
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let monitor = self.players.monitor.clone();
        epoch_metrics(self, ctx, Some(&monitor))
    }
}

/// D's accuracy over an epoch: real images with a positive logit and generated ones with a
/// negative one, counted in the D steps. Not part of a checkpoint: it restarts with each epoch
/// (and with a resumed run).
#[derive(Clone, Debug, Default)]
pub struct Monitor {
    correct: u64,
    seen: u64,
}

impl Monitor {
    pub fn record(&mut self, real_logits: &Tensor, fake_logits: &Tensor) {
        let (r, f) = (real_logits.to_vec_f64(), fake_logits.to_vec_f64());
        self.correct += r.iter().filter(|&&v| v > 0.0).count() as u64;
        self.correct += f.iter().filter(|&&v| v < 0.0).count() as u64;
        self.seen += (r.len() + f.len()) as u64;
    }

    /// The fraction correct so far, None before the first D step.
    pub fn accuracy(&self) -> Option<f64> {
        (self.seen > 0).then(|| self.correct as f64 / self.seen as f64)
    }

    pub fn reset(&mut self) {
        *self = Monitor::default();
    }
}

/// How many samples the per-epoch metrics draw.
pub const EPOCH_SAMPLES: usize = 500;

/// What a GAN reports after every epoch: the sample metrics of [`EPOCH_SAMPLES`] samples from a
/// fixed seed (FCD, KID, classes covered, label KL) and, for the BCE games, D's accuracy over the
/// epoch. [`warnings`] reads them.
pub fn epoch_metrics(
    model: &mut dyn GenerativeModel,
    ctx: &mut EvalContext,
    monitor: Option<&Monitor>,
) -> Result<Vec<Metric>> {
    let mut rng = Rng::new(0x5eed_ea7c);
    let samples = no_grad(|| model.sample(EPOCH_SAMPLES, &mut rng))?;
    let mut metrics = ctx.sample_metrics(&samples, Pixels::Unit, None)?;
    if let Some(acc) = monitor.and_then(Monitor::accuracy) {
        metrics.push(Metric::new("d_accuracy", acc));
    }
    Ok(metrics)
}

/// Below this many digits covered by an epoch's samples, the run warns of mode collapse.
pub const COLLAPSE_CLASSES: f64 = 8.0;
/// Above this D accuracy over a whole epoch, the run warns that D wins outright.
pub const D_WINS_ACCURACY: f64 = 0.99;

/// The warnings what users of GAN code trip over deserve, from an epoch's metrics: samples that
/// collapsed onto a few digits, and a discriminator that wins outright (G's gradients vanish).
pub fn warnings(metrics: &[Metric]) -> Vec<String> {
    let get = |n: &str| metrics.iter().find(|m| m.name == n).map(|m| m.value);
    let mut out = Vec::new();
    if let Some(c) = get("classes_covered") {
        if c < COLLAPSE_CLASSES {
            out.push(format!(
                "mode collapse: the samples cover only {c} of 10 digits (see the sample grid)"
            ));
        }
    }
    if let Some(a) = get("d_accuracy") {
        if a > D_WINS_ACCURACY {
            out.push(format!(
                "the discriminator wins outright: {:.1}% correct over the epoch, so the generator's gradients vanish (try a lower discriminator learning rate or the non-saturating loss)",
                100.0 * a
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run saved before its model had a weight average (its config has no `ema_decay`) is
    /// read as having none, so its checkpoint, which holds none, still loads; new runs average.
    #[test]
    fn runs_saved_before_the_averages_are_read_without_one() {
        for entry in [
            &crate::adversarial::cycle_gan::ENTRY,
            &crate::adversarial::stargan::ENTRY,
            &crate::adversarial::text2image::ENTRY,
        ] {
            let mut config = (entry.default_config)();
            assert_eq!(config["ema_decay"], 0.999, "{}", entry.name);
            let fresh = (entry.build)(&config, &mut Rng::new(0)).unwrap();
            assert!(
                fresh.weights().iter().any(|(n, _)| n.contains("average")),
                "{}",
                entry.name
            );
            config.as_object_mut().unwrap().remove("ema_decay");
            let old = (entry.build)(&config, &mut Rng::new(0)).unwrap();
            assert_eq!(old.config()["ema_decay"], 0.0, "{}", entry.name);
            assert!(
                !old.weights().iter().any(|(n, _)| n.contains("average")),
                "{}",
                entry.name
            );
        }
    }

    /// The average starts as the network, then moves (1 - d) of the way to it each step, d
    /// warmed up from 2/11; networks of other shapes are refused.
    #[test]
    fn a_weight_average_follows_its_network() {
        let mut rng = Rng::new(0);
        let net = nn::Linear::new(3, 2, true, DType::F32, &mut rng).unwrap();
        let avg = nn::Linear::new(3, 2, true, DType::F32, &mut rng).unwrap();
        copy_weights(&avg, &net).unwrap();
        assert_eq!(avg.weight.to_vec_f64(), net.weight.to_vec_f64());
        let before = avg.weight.to_vec_f64();
        net.weight
            .update_data::<f32>(|v| v.iter_mut().for_each(|x| *x += 1.0))
            .unwrap();
        update_weight_average(&avg, &net, 0.999, 1).unwrap();
        let d = 2.0 / 11.0;
        for (a, b) in avg.weight.to_vec_f64().iter().zip(&before) {
            assert!((a - (b + (1.0 - d))).abs() < 1e-6, "{a} from {b}");
        }
        // late, the decay is the one asked for
        let before = avg.weight.to_vec_f64();
        update_weight_average(&avg, &net, 0.5, 1000).unwrap();
        let now = net.weight.to_vec_f64();
        for ((a, b), n) in avg.weight.to_vec_f64().iter().zip(&before).zip(&now) {
            assert!((a - (0.5 * b + 0.5 * n)).abs() < 1e-6);
        }
        let other = nn::Linear::new(4, 2, true, DType::F32, &mut rng).unwrap();
        assert!(update_weight_average(&other, &net, 0.9, 1).is_err());
        assert!(copy_weights(&other, &net).is_err());
    }

    /// A BatchNorm's running statistics are averaged as its weights are, and a [`WeightAverage`]
    /// counts its steps, stays in evaluation mode and refuses a decay outside [0, 1).
    #[test]
    fn a_weight_average_averages_buffers_and_counts_its_steps() {
        struct Norm(nn::BatchNorm1d);
        impl Module for Norm {
            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                self.0.named_parameters()
            }
            fn named_buffers(&self) -> Vec<(String, Tensor)> {
                self.0.named_buffers()
            }
            fn set_training(&mut self, training: bool) {
                self.0.set_training(training)
            }
        }
        impl Network for Norm {
            fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
                self.0.forward(x)
            }
        }
        let norm = || Norm(nn::BatchNorm1d::new(2, DType::F32).unwrap());
        let mut net = norm();
        let mut rng = Rng::new(1);
        net.forward(
            &Tensor::randn(&[8, 2], DType::F32, &mut rng)
                .add_scalar(3.0)
                .unwrap(),
        )
        .unwrap();
        let mut avg = WeightAverage::new(norm(), &net, 0.5).unwrap();
        assert!(!avg.net.0.is_training());
        let start = avg.net.0.running_mean.to_vec_f64();
        assert_eq!(
            start,
            net.0.running_mean.to_vec_f64(),
            "starts as the network"
        );
        net.forward(
            &Tensor::randn(&[8, 2], DType::F32, &mut rng)
                .add_scalar(3.0)
                .unwrap(),
        )
        .unwrap();
        avg.update(&net).unwrap();
        // step 1: d = min(0.5, 2 / 11)
        let d = 2.0 / 11.0;
        let now = net.0.running_mean.to_vec_f64();
        for ((a, s), n) in avg
            .net
            .0
            .running_mean
            .to_vec_f64()
            .iter()
            .zip(&start)
            .zip(&now)
        {
            assert!(
                (a - (d * s + (1.0 - d) * n)).abs() < 1e-6,
                "{a}: {s} -> {n}"
            );
        }
        avg.update(&net).unwrap();
        let state = avg.state("g_average");
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"g_average.running_var"), "{names:?}");
        let steps = state.iter().find(|(n, _)| n == "g_average_steps").unwrap();
        assert_eq!(steps.1.item().unwrap(), 2.0);
        assert!(WeightAverage::new(norm(), &net, 1.0).is_err());
    }

    #[test]
    fn the_two_generator_losses_and_their_slopes() {
        let l = Tensor::from_vec(vec![-3.0f64, 0.0, 2.0], &[3, 1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        for kind in [GeneratorLoss::NonSaturating, GeneratorLoss::Minimax] {
            let loss = generator_loss(&l, kind).unwrap();
            let d: Vec<f64> = [-3.0f64, 0.0, 2.0]
                .iter()
                .map(|v| 1.0 / (1.0 + (-v).exp()))
                .collect();
            let want: f64 = d
                .iter()
                .map(|d| match kind {
                    GeneratorLoss::NonSaturating => -d.ln(),
                    GeneratorLoss::Minimax => (1.0 - d).ln(),
                })
                .sum::<f64>()
                / 3.0;
            assert!((loss.item().unwrap() - want).abs() < 1e-12, "{kind:?}");
            let g = autograd::grad(&[loss], &[], std::slice::from_ref(&l), false).unwrap()[0]
                .clone()
                .unwrap()
                .to_vec_f64();
            for (g, d) in g.iter().zip(&d) {
                let want = generator_loss_slope(kind, *d) / 3.0;
                assert!((g - want).abs() < 1e-12, "{kind:?}: {g} vs {want}");
            }
        }
        // at d = 0.01 the non-saturating slope is ~99x the minimax one
        let ratio = generator_loss_slope(GeneratorLoss::NonSaturating, 0.01)
            / generator_loss_slope(GeneratorLoss::Minimax, 0.01);
        assert!((ratio - 99.0).abs() < 1e-9);
    }

    #[test]
    fn warnings_name_collapse_and_a_winning_discriminator() {
        let m = |c: f64, a: f64| {
            vec![
                Metric::new("classes_covered", c),
                Metric::new("d_accuracy", a),
            ]
        };
        assert!(warnings(&m(10.0, 0.8)).is_empty());
        let w = warnings(&m(3.0, 0.995));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("mode collapse") && w[0].contains("3 of 10"));
        assert!(w[1].contains("wins outright"));
        let mut mon = Monitor::default();
        assert_eq!(mon.accuracy(), None);
        let real = Tensor::from_vec(vec![1.0f32, -1.0], &[2, 1]).unwrap();
        let fake = Tensor::from_vec(vec![-2.0f32, -3.0], &[2, 1]).unwrap();
        mon.record(&real, &fake);
        assert_eq!(mon.accuracy(), Some(0.75));
    }
}
