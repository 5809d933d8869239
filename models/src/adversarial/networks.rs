//! The players' networks.
//!
//! - [`MlpGenerator`] / [`MlpDiscriminator`]: the GAN of Goodfellow et al. 2014 as the lecture
//!   (and PyTorch-GAN's `gan.py`) builds it for MNIST: z -> 128 -> 256 -> 512 -> 1024 -> 784
//!   with LeakyReLU 0.2, BatchNorm1d after every hidden layer but the first, tanh; and
//!   784 -> 512 -> 256 -> 1 with LeakyReLU 0.2.
//! - [`ConvGenerator`] / [`ConvDiscriminator`]: the DCGAN of shapes.json's `dcgan_mnist_step`
//!   (Radford et al. 2015 at MNIST's size): z -> Linear(z, 128*7*7) -> BatchNorm -> ReLU ->
//!   [128, 7, 7] -> ConvTranspose(128, 64, k4, s2, p1) -> BatchNorm2d -> ReLU ->
//!   ConvTranspose(64, 1, k4, s2, p1) -> tanh; and x -> Conv(1, 64, k4, s2, p1) -> LeakyReLU 0.2 ->
//!   Conv(64, 128, k4, s2, p1) -> [BatchNorm2d] -> LeakyReLU 0.2 -> flatten -> Linear(128*7*7, 1).
//!   Without the BatchNorm the discriminator is `wgangp_mnist_step`'s critic.
//!
//! [`dcgan_init`] is DCGAN's initialisation: convolution weights ~ N(0, 0.02), BatchNorm
//! gamma ~ N(1, 0.02) and beta = 0; the linear layers keep PyTorch's default.

use crate::adversarial::Network;
use crate::latent::Mlp;
use autograd::nn::{self, init, BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Linear, Module};
use autograd::{Conv2dOptions, ConvTranspose2dOptions, DType, Error, Result, Rng, Tensor};

const PIXELS: usize = 28 * 28;
/// LeakyReLU's slope in every discriminator.
pub(crate) const SLOPE: f64 = 0.2;

/// The batch size: a tensor's first dimension (0 for a scalar).
pub(crate) fn batch_of(x: &Tensor) -> usize {
    x.shape().first().copied().unwrap_or(0)
}

/// BatchNorm's eps and momentum, with PyTorch's meaning: y = (x - mean) / sqrt(var + eps), and
/// running = (1 - momentum) running + momentum batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormOptions {
    pub eps: f64,
    pub momentum: f64,
}

impl Default for NormOptions {
    fn default() -> Self {
        NormOptions {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

/// z -> 128 -> 256 -> 512 -> 1024 -> 784 (module doc).
pub struct MlpGenerator {
    layers: Vec<Linear>,
    /// After layers 2, 3 and 4.
    norms: Vec<BatchNorm1d>,
}

impl MlpGenerator {
    pub fn new(latent: usize, norm: NormOptions, rng: &mut Rng) -> Result<MlpGenerator> {
        let sizes = [latent, 128, 256, 512, 1024, PIXELS];
        let layers = sizes
            .windows(2)
            .map(|w| Linear::new(w[0], w[1], true, DType::F32, rng))
            .collect::<Result<Vec<_>>>()?;
        let norms = [256, 512, 1024]
            .iter()
            .map(|&c| BatchNorm1d::with_options(c, norm.eps, norm.momentum, DType::F32))
            .collect::<Result<Vec<_>>>()?;
        Ok(MlpGenerator { layers, norms })
    }
}

impl Module for MlpGenerator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.extend(nn::prefixed(&format!("fc{}", i + 1), l.named_parameters()));
        }
        for (i, n) in self.norms.iter().enumerate() {
            out.extend(nn::prefixed(&format!("bn{}", i + 2), n.named_parameters()));
        }
        out
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.norms
            .iter()
            .enumerate()
            .flat_map(|(i, n)| nn::prefixed(&format!("bn{}", i + 2), n.named_buffers()))
            .collect()
    }
    fn set_training(&mut self, training: bool) {
        self.norms.iter_mut().for_each(|n| n.set_training(training));
    }
}

impl Network for MlpGenerator {
    /// z [n, latent] -> images [n, 1, 28, 28] in [-1, 1].
    fn forward(&mut self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.layers[0].forward(z)?.leaky_relu(SLOPE)?;
        for (layer, norm) in self.layers[1..4].iter().zip(self.norms.iter_mut()) {
            h = norm.forward(&layer.forward(&h)?)?.leaky_relu(SLOPE)?;
        }
        let x = self.layers[4].forward(&h)?.tanh()?;
        x.reshape(&[batch_of(z), 1, 28, 28])
    }
}

/// 784 -> 512 -> 256 -> 1 (module doc).
pub struct MlpDiscriminator {
    net: Mlp,
}

impl MlpDiscriminator {
    pub fn new(rng: &mut Rng) -> Result<MlpDiscriminator> {
        Ok(MlpDiscriminator {
            net: Mlp::leaky(&[PIXELS, 512, 256, 1], SLOPE, rng)?,
        })
    }
}

impl Module for MlpDiscriminator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.net.named_parameters()
    }
}

impl Network for MlpDiscriminator {
    /// images [n, 1, 28, 28] -> logits [n, 1].
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        self.net.forward(&x.reshape(&[batch_of(x), PIXELS])?)
    }
}

/// A transposed convolution k4 s2 p1: doubles height and width.
pub(crate) fn stride2() -> ConvTranspose2dOptions {
    ConvTranspose2dOptions {
        stride: (2, 2),
        padding: (1, 1),
        ..ConvTranspose2dOptions::default()
    }
}

/// A convolution k4 s2 p1: halves height and width.
pub(crate) fn conv_stride2() -> Conv2dOptions {
    Conv2dOptions {
        stride: (2, 2),
        padding: (1, 1, 1, 1),
        ..Conv2dOptions::default()
    }
}

/// The DCGAN generator (module doc).
pub struct ConvGenerator {
    fc: Linear,
    bn0: BatchNorm1d,
    deconv1: ConvTranspose2d,
    bn1: BatchNorm2d,
    deconv2: ConvTranspose2d,
}

/// Channels of the generator's first feature map and of the discriminator's last one.
pub const WIDE: usize = 128;
/// Channels of the other hidden feature map.
pub const NARROW: usize = 64;
/// Features the discriminator's trunk ends with: 128 x 7 x 7.
pub const TRUNK_FEATURES: usize = WIDE * 7 * 7;

impl ConvGenerator {
    pub fn new(latent: usize, norm: NormOptions, rng: &mut Rng) -> Result<ConvGenerator> {
        let bn1d = |c| BatchNorm1d::with_options(c, norm.eps, norm.momentum, DType::F32);
        let bn2d = |c| BatchNorm2d::with_options(c, norm.eps, norm.momentum, DType::F32);
        let g = ConvGenerator {
            fc: Linear::new(latent, TRUNK_FEATURES, true, DType::F32, rng)?,
            bn0: bn1d(TRUNK_FEATURES)?,
            deconv1: ConvTranspose2d::new(WIDE, NARROW, (4, 4), stride2(), true, DType::F32, rng)?,
            bn1: bn2d(NARROW)?,
            deconv2: ConvTranspose2d::new(NARROW, 1, (4, 4), stride2(), true, DType::F32, rng)?,
        };
        dcgan_init(&g, rng)?;
        Ok(g)
    }
}

impl Module for ConvGenerator {
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

impl Network for ConvGenerator {
    /// z [n, latent] -> images [n, 1, 28, 28] in [-1, 1].
    fn forward(&mut self, z: &Tensor) -> Result<Tensor> {
        let h = self.bn0.forward(&self.fc.forward(z)?)?.relu()?;
        let h = h.reshape(&[batch_of(z), WIDE, 7, 7])?;
        let h = self.bn1.forward(&self.deconv1.forward(&h)?)?.relu()?;
        self.deconv2.forward(&h)?.tanh()
    }
}

/// The DCGAN discriminator's convolutions: images [n, 1, 28, 28] -> features [n, 128*7*7]
/// (Conv -> LeakyReLU -> Conv -> [BatchNorm2d] -> LeakyReLU -> flatten). InfoGAN's D and Q share
/// it.
pub struct ConvTrunk {
    conv1: Conv2d,
    conv2: Conv2d,
    bn2: Option<BatchNorm2d>,
}

impl ConvTrunk {
    /// `norm`: the BatchNorm2d after the second convolution, or None.
    pub fn new(norm: Option<NormOptions>, rng: &mut Rng) -> Result<ConvTrunk> {
        ConvTrunk::with_channels(1, norm, rng)
    }

    /// The trunk over images of `channels` planes (a conditional D's image and label planes).
    pub fn with_channels(
        channels: usize,
        norm: Option<NormOptions>,
        rng: &mut Rng,
    ) -> Result<ConvTrunk> {
        let t = ConvTrunk {
            conv1: Conv2d::new(
                channels,
                NARROW,
                (4, 4),
                conv_stride2(),
                true,
                DType::F32,
                rng,
            )?,
            conv2: Conv2d::new(NARROW, WIDE, (4, 4), conv_stride2(), true, DType::F32, rng)?,
            bn2: norm
                .map(|n| BatchNorm2d::with_options(WIDE, n.eps, n.momentum, DType::F32))
                .transpose()?,
        };
        dcgan_init(&t, rng)?;
        Ok(t)
    }

    pub fn features(&mut self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(x)?.leaky_relu(SLOPE)?;
        let mut h = self.conv2.forward(&h)?;
        if let Some(bn) = &mut self.bn2 {
            h = bn.forward(&h)?;
        }
        h.leaky_relu(SLOPE)?.reshape(&[batch_of(x), TRUNK_FEATURES])
    }
}

impl Module for ConvTrunk {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut kids: Vec<(&str, &dyn Module)> =
            vec![("conv1", &self.conv1), ("conv2", &self.conv2)];
        if let Some(bn) = &self.bn2 {
            kids.push(("bn2", bn));
        }
        nn::children(&kids, |m| m.named_parameters())
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        match &self.bn2 {
            Some(bn) => nn::prefixed("bn2", bn.named_buffers()),
            None => Vec::new(),
        }
    }
    fn set_training(&mut self, training: bool) {
        if let Some(bn) = &mut self.bn2 {
            bn.set_training(training);
        }
    }
}

/// The DCGAN discriminator, or without its BatchNorm the WGAN-GP critic (module doc): the
/// [`ConvTrunk`] and Linear(128*7*7, 1), its parameters named as one module's ("conv1.weight",
/// ..., "fc.weight").
pub struct ConvDiscriminator {
    trunk: ConvTrunk,
    fc: Linear,
}

impl ConvDiscriminator {
    /// `norm`: the BatchNorm2d after the second convolution, or None (a critic with no
    /// normalisation, as WGAN-GP's penalty needs: it is taken per sample).
    pub fn new(norm: Option<NormOptions>, rng: &mut Rng) -> Result<ConvDiscriminator> {
        ConvDiscriminator::with_channels(1, norm, rng)
    }

    /// The discriminator over inputs of `channels` planes.
    pub fn with_channels(
        channels: usize,
        norm: Option<NormOptions>,
        rng: &mut Rng,
    ) -> Result<ConvDiscriminator> {
        Ok(ConvDiscriminator {
            trunk: ConvTrunk::with_channels(channels, norm, rng)?,
            fc: Linear::new(TRUNK_FEATURES, 1, true, DType::F32, rng)?,
        })
    }
}

impl Module for ConvDiscriminator {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = self.trunk.named_parameters();
        p.extend(nn::prefixed("fc", self.fc.named_parameters()));
        p
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.trunk.named_buffers()
    }
    fn set_training(&mut self, training: bool) {
        self.trunk.set_training(training)
    }
}

impl Network for ConvDiscriminator {
    /// images [n, channels, 28, 28] -> logits (critic scores) [n, 1].
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let f = self.trunk.features(x)?;
        self.fc.forward(&f)
    }
}

/// DCGAN's initialisation of `module`'s parameters by name: "*conv*.weight" ~ N(0, 0.02),
/// "*bn*.weight" ~ N(1, 0.02), "*bn*.bias" = 0; others (linear layers, conv biases) untouched.
pub fn dcgan_init(module: &dyn Module, rng: &mut Rng) -> Result<()> {
    for (name, p) in module.named_parameters() {
        let leaf = name.rsplit('.').nth(1).unwrap_or("");
        let is_weight = name.ends_with(".weight");
        if leaf.contains("conv") && is_weight {
            init::normal_(&p, 0.0, 0.02, rng)?;
        } else if leaf.starts_with("bn") && is_weight {
            init::normal_(&p, 1.0, 0.02, rng)?;
        } else if leaf.starts_with("bn") && name.ends_with(".bias") {
            init::zeros_(&p)?;
        }
    }
    Ok(())
}

/// Errors unless `size` (the config field `field`: the size of z) is usable: 1..=4096.
pub fn check_latent(model: &'static str, field: &str, size: usize) -> Result<()> {
    if size == 0 || size > 4096 {
        return Err(Error::invalid(
            model,
            format!("{field} must be in 1..=4096, got {size}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_parameter_counts_match_the_contract() {
        let mut rng = Rng::new(0);
        let mut g = ConvGenerator::new(100, NormOptions::default(), &mut rng).unwrap();
        let mut d = ConvDiscriminator::new(Some(NormOptions::default()), &mut rng).unwrap();
        let z = Tensor::randn(&[3, 100], DType::F32, &mut rng);
        let x = g.forward(&z).unwrap();
        assert_eq!(x.shape(), &[3, 1, 28, 28]);
        assert!(x.to_vec_f64().iter().all(|v| v.abs() <= 1.0));
        assert_eq!(d.forward(&x).unwrap().shape(), &[3, 1]);
        // PyTorch's counts for the same modules
        let g_params = 100 * 6272 + 6272 + 2 * 6272 + 128 * 64 * 16 + 64 + 2 * 64 + 64 * 16 + 1;
        assert_eq!(g.num_parameters(), g_params);
        let d_params = 64 * 16 + 64 + 64 * 128 * 16 + 128 + 2 * 128 + 6272 + 1;
        assert_eq!(d.num_parameters(), d_params);
        let critic = ConvDiscriminator::new(None, &mut rng).unwrap();
        assert_eq!(critic.num_parameters(), d_params - 2 * 128);
        let names: Vec<String> = d.state_dict().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"bn2.running_var".to_string()), "{names:?}");

        let mut mg = MlpGenerator::new(100, NormOptions::default(), &mut rng).unwrap();
        let mut md = MlpDiscriminator::new(&mut rng).unwrap();
        let x = mg.forward(&z).unwrap();
        assert_eq!(x.shape(), &[3, 1, 28, 28]);
        assert_eq!(md.forward(&x).unwrap().shape(), &[3, 1]);
    }

    #[test]
    fn dcgan_init_draws_convolutions_and_batchnorm_as_the_paper_says() {
        let mut rng = Rng::new(1);
        let g = ConvGenerator::new(100, NormOptions::default(), &mut rng).unwrap();
        let stats = |t: &Tensor| {
            let v = t.to_vec_f64();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            (m, s)
        };
        let (m, s) = stats(&g.deconv1.weight);
        assert!(m.abs() < 2e-3 && (s - 0.02).abs() < 1e-3, "{m} {s}");
        let (m, s) = stats(&g.bn0.weight);
        assert!((m - 1.0).abs() < 2e-3 && (s - 0.02).abs() < 2e-3, "{m} {s}");
        assert!(g.bn0.bias.to_vec_f64().iter().all(|&b| b == 0.0));
        // the linear layer keeps PyTorch's default U(-1/sqrt(100), 1/sqrt(100))
        let w = g.fc.weight.to_vec_f64();
        assert!(w.iter().all(|v| v.abs() <= 0.1) && w.iter().any(|v| v.abs() > 0.09));
    }
}
