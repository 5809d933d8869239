//! PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks",
//! sections 3.4-3.5 and figure 5), for binary images.
//!
//! The conditionals p(x_i | x_<i) of all pixels come from one stack of masked convolutions, so
//! the exact likelihood log p(x) = sum_i log p(x_i | x_<i) is a single forward pass:
//!
//! ```text
//!   h_0 = MaskA_7x7(x)                                  the centre tap masked: pixel i is unseen
//!   h_l = h_(l-1) + 1x1(ReLU(MaskB_3x3(ReLU(1x1(ReLU(h_(l-1)))))))   residual blocks, 2h -> h -> h -> 2h
//!   logit = 1x1(ReLU(1x1(ReLU(h_L))))                   p(x_i = 1 | x_<i) = sigmoid(logit_i)
//! ```
//!
//! That is the paper's residual layout (its figure 5). `layout = "plain"` is the simpler stack
//! most PixelCNN tutorials build, h_l = MaskB_3x3(ReLU(h_(l-1))) at the width of the stream (2h),
//! with the same input layer and head: `--preset reference` is its 192k-parameter
//! A7 + 5 x B3, 64-channel form.
//!
//! Mask A keeps the taps above the centre and left of it on the centre row; mask B also keeps
//! the centre (a later layer may read its own position's features, which were computed without
//! x_i). Masked taps are skipped by the convolution, not multiplied by zero.
//!
//! Sampling is sequential, pixel after pixel in raster order. Instead of 784 full forward passes
//! it runs the network at one position at a time over cached activations (the "fast
//! generation" of Ramachandran et al. 2017): every activation at (r, c) depends only on pixels
//! before (r, c), so each is computed exactly once, when its position comes; a pixel costs one
//! column of the network, and a whole sample one forward pass.

use crate::autoregressive::{
    self, logits_image, Cache, Known, Levels, LikelihoodModel, Pointwise, TapConv,
};
use crate::model::{Entry, Family, Preset};
use crate::program::data::Pixels;
use autograd::nn::{self, Conv2d, MaskedConv2d, Module};
use autograd::optim::{Adam, AdamConfig};
use autograd::{Conv2dOptions, DType, Error, Mask, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static ENTRY: Entry = Entry {
    name: "pixelcnn",
    title: "PixelCNN: 7x7 mask-A conv, residual blocks of 3x3 mask-B convs, 1x1 head",
    paper: "van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks",
    family: Family::Likelihood,
    default_epochs: 3,
    default_batch_size: 32,
    default_config: || serde_json::to_value(PixelCnnConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(PixelCnn::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[
        Preset {
            name: "paper",
            about: "van den Oord et al. 2016 (the PixelRNN paper's MNIST PixelCNN): 15 residual layers of h = 16, 20 epochs; about 14 min",
            config: r#"{"blocks": 15, "channels": 32, "bottleneck": 16}"#,
            epochs: 20,
            batch_size: 32,
            patience: None,
        },
        Preset {
            name: "reference",
            about: "the PyTorch reference of README.md: plain layout, 7x7 mask A then 5 3x3 mask-B layers of 64 channels (192,065 parameters), thresholded digits; about 13 min on the 2-core CPU (measured: best epoch 15 of 20, 71.4 nats)",
            config: r#"{"layout": "plain", "blocks": 5, "channels": 64, "head": 64, "pixels": "threshold"}"#,
            epochs: 30,
            batch_size: 32,
            patience: Some(5),
        },
        Preset {
            name: "grey",
            about: "8-bit grey digits, a 256-way softmax per pixel: the reference network with 256 logits (208,640 parameters), early-stopped on the validation digits",
            config: r#"{"layout": "plain", "blocks": 5, "channels": 64, "head": 64, "levels": 256}"#,
            epochs: 30,
            batch_size: 32,
            patience: Some(3),
        },
    ],
};

/// How the masked convolutions between the input layer and the head are stacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The paper's residual blocks, 2h -> h -> 3x3 mask B -> h -> 2h, added to their input.
    Residual,
    /// ReLU then a 3x3 mask-B convolution at the stream's width (2h -> 2h), no skip.
    Plain,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PixelCnnConfig {
    pub lr: f64,
    pub layout: Layout,
    /// 2h, the channels between the blocks (the residual stream; every layer's, plain).
    pub channels: usize,
    /// h, the channels inside a residual block (around its 3x3 mask-B convolution); unused by
    /// the plain layout.
    pub bottleneck: usize,
    /// Residual blocks, or plain layers; each one widens the receptive field by one row up and
    /// one column to each side.
    pub blocks: usize,
    /// Channels of the hidden 1x1 layer of the output head.
    pub head: usize,
    /// Images are `image_size` x `image_size` (28 for MNIST).
    pub image_size: usize,
    /// How training images become binary. The fixed threshold by default, the form the test
    /// uses: early-stopped, the default network gives 73.00 nats on the test digits where
    /// stochastic binarisation gives 78.42 (README.md has the comparison). Evaluation always
    /// uses the threshold. Unused for grey levels.
    pub pixels: Pixels,
    /// Values per pixel: 2, binary (a Bernoulli per pixel); K in 3..=256, grey levels (a
    /// K-way softmax per pixel; 256 is 8-bit grey). See [`autoregressive::levels`].
    pub levels: usize,
}

impl Default for PixelCnnConfig {
    fn default() -> Self {
        PixelCnnConfig {
            lr: 2e-3,
            layout: Layout::Residual,
            channels: 32,
            bottleneck: 16,
            blocks: 6,
            head: 32,
            image_size: autoregressive::default_image_size(),
            pixels: Pixels::Threshold,
            levels: 2,
        }
    }
}

/// One layer between the input and the head.
enum Block {
    /// h + 1x1 (h -> 2h) (ReLU (3x3 mask B (h -> h) (ReLU (1x1 (2h -> h) (ReLU h))))).
    Residual {
        reduce: Conv2d,
        conv: MaskedConv2d,
        expand: Conv2d,
    },
    /// 3x3 mask B (2h -> 2h) (ReLU h).
    Plain { conv: MaskedConv2d },
}

impl Block {
    fn new(c: &PixelCnnConfig, rng: &mut Rng) -> Result<Block> {
        let (f, one) = (DType::F32, Conv2dOptions::default());
        let mask_b = |channels, rng: &mut Rng| {
            let same = Conv2dOptions::default().padding(1);
            MaskedConv2d::new(channels, channels, (3, 3), Mask::B, same, true, f, rng)
        };
        Ok(match c.layout {
            Layout::Residual => Block::Residual {
                reduce: Conv2d::new(c.channels, c.bottleneck, (1, 1), one.clone(), true, f, rng)?,
                conv: mask_b(c.bottleneck, rng)?,
                expand: Conv2d::new(c.bottleneck, c.channels, (1, 1), one, true, f, rng)?,
            },
            Layout::Plain => Block::Plain {
                conv: mask_b(c.channels, rng)?,
            },
        })
    }

    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        match self {
            Block::Residual {
                reduce,
                conv,
                expand,
            } => {
                let t = reduce.forward(&h.relu()?)?.relu()?;
                h.add(&expand.forward(&conv.forward(&t)?.relu()?)?)
            }
            Block::Plain { conv } => conv.forward(&h.relu()?),
        }
    }
}

impl Module for Block {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            Block::Residual {
                reduce,
                conv,
                expand,
            } => nn::children(
                &[
                    ("reduce", reduce as &dyn Module),
                    ("conv", conv),
                    ("expand", expand),
                ],
                |m| m.named_parameters(),
            ),
            Block::Plain { conv } => nn::prefixed("conv", conv.named_parameters()),
        }
    }
}

/// A block run one position at a time ([`PixelCnn::generate`]): its 3x3 convolution reads a
/// cache of its input, filled as positions come.
enum BlockAt {
    Residual {
        reduce: Pointwise,
        conv: TapConv,
        expand: Pointwise,
        mid: Cache,
    },
    Plain {
        conv: TapConv,
        input: Cache,
    },
}

impl BlockAt {
    fn of(block: &Block, n: usize, size: usize) -> Result<BlockAt> {
        let taps = |c: &MaskedConv2d| TapConv::of(&c.weight, c.bias.as_ref(), Some(Mask::B));
        Ok(match block {
            Block::Residual {
                reduce,
                conv,
                expand,
            } => BlockAt::Residual {
                reduce: Pointwise::of(reduce)?,
                conv: taps(conv)?,
                expand: Pointwise::of(expand)?,
                mid: Cache::new(n, size, conv.weight.shape()[0]),
            },
            Block::Plain { conv } => BlockAt::Plain {
                conv: taps(conv)?,
                input: Cache::new(n, size, conv.weight.shape()[1]),
            },
        })
    }

    /// The block's output at (r, c), `[n, channels]`, from its input there.
    fn at(&mut self, h: &Tensor, r: usize, c: usize) -> Result<Tensor> {
        match self {
            BlockAt::Residual {
                reduce,
                conv,
                expand,
                mid,
            } => {
                mid.set(r, c, &reduce.apply(&h.relu()?)?.relu()?);
                h.add(&expand.apply(&conv.at(mid, r, c)?.relu()?)?)
            }
            BlockAt::Plain { conv, input } => {
                input.set(r, c, &h.relu()?);
                conv.at(input, r, c)
            }
        }
    }
}

pub struct PixelCnn {
    config: PixelCnnConfig,
    levels: Levels,
    input: MaskedConv2d,
    blocks: Vec<Block>,
    head1: Conv2d,
    head2: Conv2d,
    opt: Adam,
}

impl PixelCnn {
    pub fn new(config: PixelCnnConfig, rng: &mut Rng) -> Result<PixelCnn> {
        autoregressive::check_image_size(ENTRY.name, config.image_size)?;
        let levels = Levels::new(ENTRY.name, config.levels)?;
        let c = &config;
        if [c.channels, c.bottleneck, c.head]
            .iter()
            .any(|&v| v == 0 || v > 1024)
            || c.blocks > 64
        {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "channels, bottleneck and head must be in 1..=1024 and blocks at most 64, got {}, {}, {} and {}",
                    c.channels, c.bottleneck, c.head, c.blocks
                ),
            ));
        }
        let f = DType::F32;
        let one = Conv2dOptions::default();
        let input = autoregressive::mask_a_input(c.channels, rng)?;
        let blocks = (0..c.blocks)
            .map(|_| Block::new(c, rng))
            .collect::<Result<Vec<_>>>()?;
        let head1 = Conv2d::new(c.channels, c.head, (1, 1), one.clone(), true, f, rng)?;
        let head2 = Conv2d::new(c.head, levels.logits_per_pixel(), (1, 1), one, true, f, rng)?;
        let mut model = PixelCnn {
            config: config.clone(),
            levels,
            input,
            blocks,
            head1,
            head2,
            opt: Adam::new(Vec::<(String, Tensor)>::new(), AdamConfig::default())?,
        };
        model.opt = Adam::new(
            model.named_parameters(),
            AdamConfig {
                lr: config.lr,
                ..AdamConfig::default()
            },
        )?;
        Ok(model)
    }

    /// The logits of every conditional, [B, L, H, W] for images x [B, 1, H, W] (L = 1 for
    /// binary pixels, K for K grey levels): one pass.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        autoregressive::check_images(ENTRY.name, x, self.config.image_size)?;
        let mut h = self.input.forward(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        self.head2.forward(&self.head1.forward(&h.relu()?)?.relu()?)
    }
}

impl Module for PixelCnn {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut all = nn::prefixed("input", self.input.named_parameters());
        for (i, b) in self.blocks.iter().enumerate() {
            all.extend(nn::prefixed(&format!("blocks.{i}"), b.named_parameters()));
        }
        all.extend(nn::prefixed("head1", self.head1.named_parameters()));
        all.extend(nn::prefixed("head2", self.head2.named_parameters()));
        all
    }
}

impl LikelihoodModel for PixelCnn {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn optimizer(&self) -> &Adam {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Adam {
        &mut self.opt
    }

    fn training_pixels(&self) -> Pixels {
        self.config.pixels
    }

    fn levels(&self) -> Levels {
        self.levels
    }

    fn image_size(&self) -> usize {
        self.config.image_size
    }

    /// -log p(x) per image, nats, `[B]`.
    fn nll(&self, x: &Tensor) -> Result<Tensor> {
        self.levels.nll_per_image(ENTRY.name, &self.logits(x)?, x)
    }

    /// Pixel by pixel in raster order, computing the network one position at a time over
    /// cached activations; returns the images and the logits each pixel was drawn from.
    fn generate(&self, known: &Known, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let (n, d, s) = (known.n(), known.pixels(), self.config.image_size);
        let input = TapConv::of(&self.input.weight, self.input.bias.as_ref(), Some(Mask::A))?;
        let mut blocks = self
            .blocks
            .iter()
            .map(|b| BlockAt::of(b, n, s))
            .collect::<Result<Vec<_>>>()?;
        let (head1, head2) = (Pointwise::of(&self.head1)?, Pointwise::of(&self.head2)?);
        // the image so far, channels last
        let mut image = Cache::new(n, s, 1);
        let mut logits = Vec::with_capacity(d);
        for i in 0..d {
            let (r, c) = (i / s, i % s);
            let mut h = input.at(&image, r, c)?;
            for block in blocks.iter_mut() {
                h = block.at(&h, r, c)?;
            }
            let logit = head2.apply(&head1.apply(&h.relu()?)?.relu()?)?;
            image.set(r, c, &known.next(i, &logit, rng)?);
            logits.push(logit);
        }
        Ok((
            Tensor::from_vec(image.data, &[n, 1, s, s])?,
            logits_image(&logits, n, s)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoregressive::checks;

    fn small(size: usize, blocks: usize) -> PixelCnn {
        small_of(Layout::Residual, size, blocks)
    }

    fn small_of(layout: Layout, size: usize, blocks: usize) -> PixelCnn {
        small_with(layout, Levels::BINARY, size, blocks)
    }

    fn small_with(layout: Layout, levels: Levels, size: usize, blocks: usize) -> PixelCnn {
        PixelCnn::new(
            PixelCnnConfig {
                layout,
                image_size: size,
                channels: 8,
                bottleneck: 4,
                blocks,
                head: 8,
                lr: 0.01,
                levels: levels.count(),
                ..PixelCnnConfig::default()
            },
            &mut Rng::new(4),
        )
        .unwrap()
    }

    const LAYOUTS: [Layout; 2] = [Layout::Residual, Layout::Plain];

    #[test]
    fn autoregressive_through_gradients() {
        // 8 x 8: the 7x7 kernel and two blocks reach across most of the image
        for layout in LAYOUTS {
            let m = small_of(layout, 8, 2);
            checks::autoregressive(8, Levels::BINARY, |x| m.logits(x));
        }
    }

    #[test]
    fn probabilities_of_all_images_sum_to_one() {
        for layout in LAYOUTS {
            let m = small_of(layout, 3, 2);
            checks::normalised(3, Levels::BINARY, |x| m.nll(x));
        }
    }

    #[test]
    fn fast_generation_matches_full_forward_passes() {
        for layout in LAYOUTS {
            let m = small_of(layout, 6, 3);
            checks::generation_matches_full_passes(
                6,
                Levels::BINARY,
                |x| m.logits(x),
                |k, rng| m.generate(k, rng),
            );
        }
    }

    fn grey(k: usize) -> Levels {
        Levels::new("test", k).unwrap()
    }

    #[test]
    fn grey_levels_are_autoregressive_normalised_and_generated_exactly() {
        for layout in LAYOUTS {
            checks::grey_levels(
                |levels, size, blocks| small_with(layout, levels, size, blocks),
                |m, x| m.logits(x),
            );
        }
    }

    #[test]
    fn grey_levels_learn_sample_and_complete() {
        for k in [4, 256] {
            let mut m = small_with(Layout::Residual, grey(k), 6, 1);
            checks::learns_and_samples(&mut m, 6, grey(k));
        }
        let bad = PixelCnnConfig {
            levels: 257,
            ..PixelCnnConfig::default()
        };
        assert!(PixelCnn::new(bad, &mut Rng::new(0)).is_err());
    }

    #[test]
    fn reference_preset_is_the_192k_plain_network() {
        // A7 (1 -> 64), five B3 (64 -> 64), head 64 -> 64 -> 1, every layer with a bias
        let preset = ENTRY.preset("reference").unwrap();
        let config = crate::program::run::with_preset(&ENTRY, (ENTRY.default_config)(), preset);
        let m = PixelCnn::new(
            ENTRY.parse_config(&config.unwrap()).unwrap(),
            &mut Rng::new(0),
        );
        let m = m.unwrap();
        assert_eq!(m.config.layout, Layout::Plain);
        let count: usize = m.named_parameters().iter().map(|(_, t)| t.numel()).sum();
        let expected = (49 * 64 + 64) + 5 * (9 * 64 * 64 + 64) + (64 * 64 + 64) + (64 + 1);
        assert_eq!((count, expected), (192_065, 192_065));
    }

    #[test]
    fn learns_samples_and_completes() {
        let mut m = small(6, 1);
        checks::learns_and_samples(&mut m, 6, Levels::BINARY);
        let bad = PixelCnnConfig {
            channels: 0,
            ..PixelCnnConfig::default()
        };
        assert!(PixelCnn::new(bad, &mut Rng::new(0)).is_err());
    }
}
