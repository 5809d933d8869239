//! PixelCNN on colour digits, with the colour masks of the PixelRNN paper (van den Oord,
//! Kalchbrenner & Kavukcuoglu 2016, section 3.4 and figure 2): the sub-pixels are ordered
//! raster order first and R, G, B within a pixel,
//!
//! ```text
//!   p(x) = prod_i p(x_(i,R) | x_<i) p(x_(i,G) | x_<i, x_(i,R)) p(x_(i,B) | x_<i, x_(i,R), x_(i,G)),
//! ```
//!
//! each a 256-way softmax. Every layer's feature maps are three groups, one per colour. Taps
//! above and left of the centre read every group; at the centre, mask A lets group c read only
//! the input groups before it (R reads nothing of its own pixel, G reads R, B reads R and G) and
//! mask B also its own group. The network is the reference PixelCNN's plain stack:
//!
//! ```text
//!   h_0 = MaskA_7x7(x)                  3 -> 3c
//!   h_l = MaskB_3x3(ReLU(h_(l-1)))      3c -> 3c, l = 1..L
//!   logits = MaskB_1x1(ReLU(MaskB_1x1(ReLU(h_L))))   3c -> 3e -> 3 x 256: group c gives colour c
//! ```
//!
//! The data are the coloured domain of the conditional models ([`crate::domains::sets::Domain`]):
//! each digit tinted over a textured background, its tint and texture drawn from the digit's
//! pixel hash, so that the training and test sets are fixed; the planes are quantised to bytes.
//! Sampling and completion run the network one position at a time over cached activations, as
//! PixelCNN's do, three times per pixel (R, then G, then B).

use crate::autoregressive::distributions::Categorical;
use crate::autoregressive::levels::{independent_nll, Levels};
use crate::autoregressive::{self, Cache, TapConv};
use crate::domains::sets::{pixel_hash, Domain};
use crate::model::{draw_samples, Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Mnist, Split};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{init, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, Conv2dOptions, DType, Error, Mask, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static ENTRY: Entry = Entry {
    name: "pixelcnn-colour",
    title: "PixelCNN on colour digits: R -> G -> B masks within a pixel, a 256-way softmax per sub-pixel",
    paper: "van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks",
    family: Family::Likelihood,
    default_epochs: 10,
    default_batch_size: 32,
    default_config: || serde_json::to_value(PixelCnnColourConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(PixelCnnColour::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// Colours per pixel.
const COLOURS: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PixelCnnColourConfig {
    pub lr: f64,
    /// c, the feature maps of each colour's group (3c in all).
    pub channels: usize,
    /// L, the 3x3 mask-B layers.
    pub layers: usize,
    /// e, the head's hidden maps per group (3e in all).
    pub head: usize,
    /// Values per sub-pixel, K in 3..=256 (256: bytes).
    pub levels: usize,
    /// Images are `image_size` x `image_size` (28 for MNIST).
    pub image_size: usize,
}

impl Default for PixelCnnColourConfig {
    fn default() -> Self {
        PixelCnnColourConfig {
            lr: 2e-3,
            channels: 32,
            layers: 5,
            head: 32,
            levels: 256,
            image_size: autoregressive::default_image_size(),
        }
    }
}

/// A convolution whose weight is multiplied by a fixed colour mask of its centre tap (the taps
/// below and right of the centre are skipped by the spatial mask B).
struct ColourConv {
    weight: Tensor,
    bias: Tensor,
    /// [out, in, kh, kw] of ones, with the centre's forbidden (output group, input group)
    /// pairs zero
    mask: Tensor,
    padding: usize,
}

/// The group (colour) of channel `ch` of `channels` split in three.
fn group(ch: usize, channels: usize) -> usize {
    ch * COLOURS / channels
}

impl ColourConv {
    /// `input` -> `output` channels (each a multiple of 3: three equal groups), kernel k x k;
    /// mask A lets output group g see input groups < g at the centre, mask B also g.
    fn new(input: usize, output: usize, k: usize, mask: Mask, rng: &mut Rng) -> Result<ColourConv> {
        let weight = Tensor::zeros(&[output, input, k, k], DType::F32);
        let bias = Tensor::zeros(&[output], DType::F32);
        let bound = 1.0 / ((input * k * k) as f64).sqrt();
        init::uniform_(&weight, -bound, bound, rng)?;
        init::uniform_(&bias, -bound, bound, rng)?;
        let centre = k / 2;
        let mut m = vec![1f32; output * input * k * k];
        for o in 0..output {
            for i in 0..input {
                let (go, gi) = (group(o, output), group(i, input));
                let allowed = match mask {
                    Mask::A => gi < go,
                    _ => gi <= go,
                };
                if !allowed {
                    m[((o * input + i) * k + centre) * k + centre] = 0.0;
                }
            }
        }
        Ok(ColourConv {
            weight: weight.requires_grad_(true)?,
            bias: bias.requires_grad_(true)?,
            mask: Tensor::from_vec(m, &[output, input, k, k])?,
            padding: k / 2,
        })
    }

    fn masked_weight(&self) -> Result<Tensor> {
        self.weight.mul(&self.mask)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let opts = Conv2dOptions::default().padding(self.padding);
        x.masked_conv2d(&self.masked_weight()?, Some(&self.bias), Mask::B, &opts)
    }

    /// The layer at one position over a cache of its input ([`TapConv`]).
    fn at_position(&self) -> Result<TapConv> {
        TapConv::of(
            &self.masked_weight()?.detach(),
            Some(&self.bias),
            Some(Mask::B),
        )
    }

    fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}.weight"), self.weight.clone()),
            (format!("{prefix}.bias"), self.bias.clone()),
        ]
    }
}

pub struct PixelCnnColour {
    config: PixelCnnColourConfig,
    levels: Levels,
    input: ColourConv,
    layers: Vec<ColourConv>,
    head1: ColourConv,
    head2: ColourConv,
    opt: Adam,
}

impl PixelCnnColour {
    pub fn new(config: PixelCnnColourConfig, rng: &mut Rng) -> Result<PixelCnnColour> {
        autoregressive::check_image_size(ENTRY.name, config.image_size)?;
        let levels = Levels::new(ENTRY.name, config.levels)?;
        let c = &config;
        if levels.is_binary()
            || [c.channels, c.head].iter().any(|&v| v == 0 || v > 512)
            || c.layers > 64
        {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "levels must be in 3..=256, channels and head in 1..=512 and layers at most 64, got {}, {}, {} and {}",
                    c.levels, c.channels, c.head, c.layers
                ),
            ));
        }
        let (width, head) = (COLOURS * c.channels, COLOURS * c.head);
        let input = ColourConv::new(COLOURS, width, 7, Mask::A, rng)?;
        let layers = (0..c.layers)
            .map(|_| ColourConv::new(width, width, 3, Mask::B, rng))
            .collect::<Result<Vec<_>>>()?;
        let head1 = ColourConv::new(width, head, 1, Mask::B, rng)?;
        let head2 = ColourConv::new(head, COLOURS * levels.count(), 1, Mask::B, rng)?;
        let mut model = PixelCnnColour {
            config: config.clone(),
            levels,
            input,
            layers,
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

    fn check(&self, x: &Tensor) -> Result<()> {
        let (s, size) = (x.shape(), self.config.image_size);
        if s.len() != 4 || s[1] != COLOURS || s[2] != size || s[3] != size {
            return Err(Error::shape(
                ENTRY.name,
                format!("expects colour images [B, 3, {size}, {size}], got {s:?}"),
            ));
        }
        Ok(())
    }

    /// The logits of every sub-pixel, [B, 3 K, H, W] (colour c's K logits at channels
    /// c K .. (c + 1) K) for colour images x [B, 3, H, W] on the levels: one pass.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        let mut h = self.input.forward(x)?;
        for layer in &self.layers {
            h = layer.forward(&h.relu()?)?;
        }
        self.head2.forward(&self.head1.forward(&h.relu()?)?.relu()?)
    }

    /// -log p(x) per image, nats, `[B]`, summed over the 3 x H x W sub-pixels.
    pub fn nll(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s) = (
            x.shape().first().copied().unwrap_or(0),
            self.config.image_size,
        );
        let k = self.levels.count();
        // colour c of image n is image 3n + c of one-channel images with K logits
        let logits = self.logits(x)?.reshape(&[b * COLOURS, k, s, s])?;
        let planes = x.reshape(&[b * COLOURS, 1, s, s])?;
        self.levels
            .nll_per_image(ENTRY.name, &logits, &planes)?
            .reshape(&[b, COLOURS])?
            .sum(&[1], false)
    }

    /// Colour images [n, 3, s, s] drawn sub-pixel by sub-pixel, the first `known` pixels (all
    /// three colours) of `given` held fixed; and the logits each was drawn from, as
    /// [`PixelCnnColour::logits`] lays them out.
    fn generate(
        &self,
        n: usize,
        given: Option<(&Tensor, usize)>,
        rng: &mut Rng,
    ) -> Result<(Tensor, Tensor)> {
        let (s, k) = (self.config.image_size, self.levels.count());
        let top = (k - 1) as f32;
        let given = given.map(|(g, count)| (g.to_vec_f32(), count));
        let input = self.input.at_position()?;
        let convs = self
            .layers
            .iter()
            .map(|l| l.at_position())
            .collect::<Result<Vec<_>>>()?;
        let (head1, head2) = (self.head1.at_position()?, self.head2.at_position()?);
        let width = COLOURS * self.config.channels;
        let mut image = Cache::new(n, s, COLOURS);
        let mut below: Vec<Cache> = (0..convs.len()).map(|_| Cache::new(n, s, width)).collect();
        let mut head_in = Cache::new(n, s, width);
        let mut head_mid = Cache::new(n, s, COLOURS * self.config.head);
        let mut logits = vec![0f32; n * COLOURS * k * s * s];
        for i in 0..s * s {
            let (r, c) = (i / s, i % s);
            let mut pixel = vec![0f32; n * COLOURS];
            for colour in 0..COLOURS {
                image.set(r, c, &Tensor::from_vec(pixel.clone(), &[n, COLOURS])?);
                let mut h = input.at(&image, r, c)?;
                for (conv, cache) in convs.iter().zip(below.iter_mut()) {
                    cache.set(r, c, &h.relu()?);
                    h = conv.at(cache, r, c)?;
                }
                head_in.set(r, c, &h.relu()?);
                head_mid.set(r, c, &head1.at(&head_in, r, c)?.relu()?);
                let out = head2.at(&head_mid, r, c)?.narrow(1, colour * k, k)?;
                let values = match &given {
                    Some((g, count)) if i < *count => (0..n)
                        .map(|b| g[(b * COLOURS + colour) * s * s + i])
                        .collect::<Vec<_>>(),
                    _ => Categorical::from_logits(&out)?
                        .sample(rng)?
                        .into_iter()
                        .map(|l| l as f32 / top)
                        .collect(),
                };
                let out = out.to_vec_f32();
                for b in 0..n {
                    pixel[b * COLOURS + colour] = values[b];
                    for l in 0..k {
                        logits[((b * COLOURS + colour) * k + l) * s * s + i] = out[b * k + l];
                    }
                }
            }
            image.set(r, c, &Tensor::from_vec(pixel, &[n, COLOURS])?);
        }
        let images = Tensor::from_vec(image.data, &[n, s, s, COLOURS])?
            .permute(&[0, 3, 1, 2])?
            .contiguous()?;
        Ok((images, Tensor::from_vec(logits, &[n, COLOURS * k, s, s])?))
    }

    /// The colour versions of `batch`'s digits on the levels, [B, 3, 28, 28].
    pub fn colour_images(&self, batch: &Batch) -> Result<Tensor> {
        self.levels.quantise(&colour_digits(batch)?)
    }
}

/// The coloured domain's version of each digit of `batch` ([`Domain::Coloured`], tint and
/// texture drawn from the digit's pixel hash), rounded to bytes: [B, 3, rows, cols] in [0, 1].
pub fn colour_digits(batch: &Batch) -> Result<Tensor> {
    let d = batch.rows * batch.cols;
    let mut out = Vec::with_capacity(batch.len() * COLOURS * d);
    for img in batch.images.chunks(d) {
        let planes = Domain::Coloured.apply(img, &mut Rng::new(pixel_hash(img)));
        out.extend(planes.into_iter().map(|v| (v * 255.0).round() / 255.0));
    }
    Tensor::from_vec(out, &[batch.len(), COLOURS, batch.rows, batch.cols])
}

impl Module for PixelCnnColour {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut all = self.input.named_parameters("input");
        for (i, l) in self.layers.iter().enumerate() {
            all.extend(l.named_parameters(&format!("layers.{i}")));
        }
        all.extend(self.head1.named_parameters("head1"));
        all.extend(self.head2.named_parameters("head2"));
        all
    }
}

impl GenerativeModel for PixelCnnColour {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        vec![("optimizer", &self.opt)]
    }

    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        vec![("optimizer", &mut self.opt)]
    }

    /// One step of maximum likelihood on the colour digits.
    fn train_step(&mut self, batch: &Batch, _rng: &mut Rng) -> Result<Losses> {
        let loss = self.nll(&self.colour_images(batch)?)?.mean_all()?;
        self.opt.minimize(&loss)?;
        Ok(vec![("loss".into(), loss.item()?)])
    }

    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(self.generate(n, None, rng)?.0)
    }

    /// Colour images [n, 3, H, W] on the levels with all but their first `known` pixels drawn
    /// again.
    fn complete(&mut self, images: &Tensor, known: usize, rng: &mut Rng) -> Result<Tensor> {
        self.check(images)?;
        let s = self.config.image_size;
        if known > s * s {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "cannot keep {known} known pixels of a {}-pixel image",
                    s * s
                ),
            ));
        }
        self.levels.indices(ENTRY.name, images)?;
        Ok(self
            .generate(images.shape()[0], Some((images, known)), rng)?
            .0)
    }

    /// The colour test digits, each row the original, its top half (the rest grey) and
    /// `per_image` completions of the bottom half.
    fn completion_picture(
        &mut self,
        data: &Mnist,
        n: usize,
        per_image: usize,
        seed: u64,
    ) -> Result<Option<(Tensor, usize, String)>> {
        let batch = data
            .test
            .batch(&autoregressive::completion_indices(data, n));
        let x = self.colour_images(&batch)?;
        let (n, s) = (x.shape()[0], self.config.image_size);
        let known = (s / 2) * s;
        let mut rng = Rng::new(seed);
        let mut columns = vec![x.clone()];
        let mask: Vec<f32> = (0..COLOURS * s * s)
            .map(|j| if j % (s * s) < known { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, &[1, COLOURS, s, s])?;
        let grey = mask.neg()?.add_scalar(1.0)?.mul_scalar(0.5)?;
        columns.push(x.mul(&mask)?.add(&grey)?);
        for _ in 0..per_image {
            columns.push(no_grad(|| self.complete(&x, known, &mut rng))?);
        }
        // rows of images: image b's columns side by side
        let stacked = Tensor::stack(&columns, 1)?.reshape(&[n * columns.len(), COLOURS, s, s])?;
        let caption = format!("original, top half, {per_image} completions (colour)");
        Ok(Some((stacked, columns.len(), caption)))
    }

    fn validation_loss(&mut self, split: &Split, _rng: &mut Rng) -> Result<Option<f64>> {
        Ok(Some(self.mean_nll(split)?))
    }

    /// The test NLL in nats per image and in bits per dimension over the 3 x 784 sub-pixels,
    /// beside the independent baseline of the colour sub-pixels.
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let data = ctx.data;
        let nats = self.mean_nll(&data.test)?;
        let base = self.independent_baseline(&data.train, &data.test)?;
        let [nll, bits] = autoregressive::nll_metrics(nats, base, COLOURS * data.test.pixels());
        Ok(vec![
            nll,
            bits.detail("bits per sub-pixel: nats / (3 x 784 ln 2)"),
        ])
    }

    /// The likelihood, and the mean sub-pixel value of the samples beside the colour test
    /// digits' (the sample metrics' classifier reads grey digits, not these).
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut metrics = self.epoch_metrics(ctx)?;
        let samples = draw_samples(self, ctx)?;
        let all = (0..ctx.data.test.len()).collect::<Vec<_>>();
        let test = self.colour_images(&ctx.data.test.batch(&all))?;
        let mean =
            |t: &Tensor| -> Result<f64> { Ok(t.sum_all()?.item()? / t.numel().max(1) as f64) };
        metrics.push(
            Metric::with_baseline("samples_mean_level", mean(&samples)?, mean(&test)?).detail(
                "the mean of the drawn sub-pixels in [0, 1]; baseline: the colour test digits'",
            ),
        );
        Ok(metrics)
    }
}

impl PixelCnnColour {
    fn mean_nll(&self, split: &Split) -> Result<f64> {
        let (mut total, mut n) = (0.0, 0usize);
        for idx in crate::program::data::Batches::sequential(split.len(), 100) {
            let x = self.colour_images(&split.batch(&idx))?;
            total += no_grad(|| self.nll(&x))?.to_vec_f64().iter().sum::<f64>();
            n += idx.len();
        }
        Ok(total / n.max(1) as f64)
    }

    /// Each colour sub-pixel on its own: its level's frequency among the training digits'
    /// colour versions, add-one smoothed; nats per test image.
    fn independent_baseline(&self, train: &Split, test: &Split) -> Result<f64> {
        let k = self.levels.count();
        let levels_of = |split: &Split| -> Result<Vec<usize>> {
            let all = (0..split.len()).collect::<Vec<_>>();
            let unit = colour_digits(&split.batch(&all))?;
            self.levels.indices_of_grey(&unit)
        };
        let (tr, te) = (levels_of(train)?, levels_of(test)?);
        Ok(independent_nll(k, COLOURS * train.pixels(), &tr, &te))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoregressive::checks;

    fn small(size: usize, levels: usize, layers: usize) -> PixelCnnColour {
        let config = PixelCnnColourConfig {
            channels: 2,
            layers,
            head: 2,
            levels,
            image_size: size,
            lr: 0.01,
        };
        PixelCnnColour::new(config, &mut Rng::new(3)).unwrap()
    }

    fn random_image(n: usize, size: usize, levels: usize, rng: &mut Rng) -> Tensor {
        let top = (levels - 1) as f32;
        let v = (0..n * COLOURS * size * size)
            .map(|_| (rng.uniform() * levels as f64).floor().min(f64::from(top)) as f32 / top)
            .collect();
        Tensor::from_vec(v, &[n, COLOURS, size, size]).unwrap()
    }

    #[test]
    fn sub_pixels_see_only_earlier_pixels_and_earlier_colours() {
        // d logits(i, c) / d x(j, c') is 0 unless j < i, or j = i and c' < c; and the
        // allowed ones that matter most are there (G reads R of its own pixel, R the pixel
        // before)
        let (s, k) = (4, 5);
        let m = PixelCnnColour::new(
            PixelCnnColourConfig {
                channels: 4,
                ..small(s, k, 2).config
            },
            &mut Rng::new(3),
        )
        .unwrap();
        let x = random_image(1, s, k, &mut Rng::new(1))
            .requires_grad_(true)
            .unwrap();
        let logits = m.logits(&x).unwrap().reshape(&[COLOURS, k, s * s]).unwrap();
        let d = s * s;
        let (mut reads_own_pixel, mut reads_previous) = (0, 0);
        for i in 0..d {
            for c in 0..COLOURS {
                let out = logits
                    .narrow(0, c, 1)
                    .unwrap()
                    .narrow(2, i, 1)
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let g = autograd::grad(&[out], &[], std::slice::from_ref(&x), false).unwrap();
                let g = g[0]
                    .as_ref()
                    .map(|t| t.to_vec_f64())
                    .unwrap_or(vec![0.0; COLOURS * d]);
                for cp in 0..COLOURS {
                    for j in 0..d {
                        let allowed = j < i || (j == i && cp < c);
                        let v = g[cp * d + j];
                        assert!(
                            allowed || v == 0.0,
                            "colour {c} of pixel {i} sees colour {cp} of pixel {j}: {v}"
                        );
                    }
                }
                if c > 0 && g[(c - 1) * d + i] != 0.0 {
                    reads_own_pixel += 1;
                }
                if c == 0 && i > 0 && g[2 * d + i - 1] != 0.0 {
                    reads_previous += 1;
                }
            }
        }
        // ReLUs can silence a path at a few positions of a random network; most must be live
        assert!(
            reads_own_pixel >= d,
            "G and B read their pixel's earlier colour at only {reads_own_pixel} of {}",
            2 * d
        );
        assert!(
            reads_previous >= d / 2,
            "R reads the previous pixel's B at only {reads_previous} of {}",
            d - 1
        );
    }

    #[test]
    fn probabilities_of_all_colour_pixels_sum_to_one() {
        // a 1 x 1 image of three colours on 3 levels: 27 images
        let m = small(1, 3, 1);
        let v: Vec<f32> = (0..27)
            .flat_map(|n| (0..3).map(move |c| (n / 3usize.pow(c)) as f32 % 3.0 / 2.0))
            .collect();
        let x = Tensor::from_vec(v, &[27, COLOURS, 1, 1]).unwrap();
        let nll = no_grad(|| m.nll(&x)).unwrap().to_vec_f64();
        let total: f64 = nll.iter().map(|l| (-l).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        let spread = nll.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - nll.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(spread > 0.1, "a flat model ({spread}) proves little");
    }

    #[test]
    fn fast_generation_matches_full_passes() {
        // the logits the generator drew from are those of one pass over its finished images,
        // and its draws those of full passes, one per sub-pixel, with the same random numbers
        let (s, k, n) = (4, 5, 3);
        let m = small(s, k, 2);
        let given = random_image(n, s, k, &mut Rng::new(8));
        for known in [None, Some((&given, 7))] {
            let (x, l) = no_grad(|| m.generate(n, known, &mut Rng::new(2))).unwrap();
            let full = no_grad(|| m.logits(&x)).unwrap();
            for (a, b) in l.to_vec_f64().iter().zip(full.to_vec_f64()) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
            let mut rng = Rng::new(2);
            let d = s * s;
            let mut slow = vec![0f32; n * COLOURS * d];
            let g = given.to_vec_f32();
            for i in 0..d {
                for c in 0..COLOURS {
                    let img = Tensor::from_vec(slow.clone(), &[n, COLOURS, s, s]).unwrap();
                    let logits = no_grad(|| m.logits(&img))
                        .unwrap()
                        .reshape(&[n, COLOURS * k, d])
                        .unwrap();
                    let here = logits
                        .narrow(1, c * k, k)
                        .unwrap()
                        .narrow(2, i, 1)
                        .unwrap()
                        .reshape(&[n, k])
                        .unwrap();
                    let values: Vec<f32> = match known {
                        Some((_, count)) if i < count => {
                            (0..n).map(|b| g[(b * COLOURS + c) * d + i]).collect()
                        }
                        _ => Categorical::from_logits(&here)
                            .unwrap()
                            .sample(&mut rng)
                            .unwrap()
                            .into_iter()
                            .map(|l| l as f32 / (k - 1) as f32)
                            .collect(),
                    };
                    for b in 0..n {
                        slow[(b * COLOURS + c) * d + i] = values[b];
                    }
                }
            }
            assert_eq!(x.to_vec_f32(), slow);
        }
    }

    #[test]
    fn learns_samples_and_completes_colour_digits() {
        let mut m = small(28, 256, 1);
        let batch = checks::tiny_batch(28, 8);
        let x = m.colour_images(&batch).unwrap();
        assert_eq!(x.shape(), &[8, 3, 28, 28]);
        // the same digit is coloured the same way every time
        assert_eq!(
            x.to_vec_f32(),
            m.colour_images(&batch).unwrap().to_vec_f32()
        );
        let mut rng = Rng::new(3);
        let first = m.train_step(&batch, &mut rng).unwrap()[0].1;
        let mut last = first;
        for _ in 0..15 {
            last = m.train_step(&batch, &mut rng).unwrap()[0].1;
        }
        assert!(last < first - 200.0, "loss {first} -> {last}");
        let small_m = small(5, 256, 1);
        let mut small_m = small_m;
        let s = no_grad(|| small_m.sample(2, &mut rng)).unwrap();
        assert_eq!(s.shape(), &[2, 3, 5, 5]);
        small_m.levels.indices("test", &s).unwrap();
        let given = random_image(2, 5, 256, &mut Rng::new(4));
        let c = no_grad(|| small_m.complete(&given, 10, &mut rng)).unwrap();
        let (cv, gv) = (c.to_vec_f32(), given.to_vec_f32());
        for plane in 0..6 {
            assert_eq!(
                cv[plane * 25..plane * 25 + 10],
                gv[plane * 25..plane * 25 + 10]
            );
        }
        assert!(no_grad(|| small_m.complete(&given, 26, &mut rng)).is_err());
        assert!(
            no_grad(|| small_m.complete(&given.add_scalar(0.001).unwrap(), 10, &mut rng)).is_err()
        );
        let grey = Tensor::zeros(&[2, 1, 5, 5], DType::F32);
        assert!(no_grad(|| small_m.complete(&grey, 10, &mut rng)).is_err());
        let bad = PixelCnnColourConfig {
            levels: 2,
            ..PixelCnnColourConfig::default()
        };
        assert!(PixelCnnColour::new(bad, &mut Rng::new(0)).is_err());
    }
}
