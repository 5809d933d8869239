//! What the autoregressive models (FVSBN, NADE, PixelCNN) share: raster-order generation with
//! an optional known prefix (sampling is completion with nothing known), the completion picture
//! of `genzoo complete`, and the checks their tests run.
//!
//! Every model factorises p(x) = prod_i p(x_i | x_<i) over the pixels in raster order (row by
//! row, left to right), so
//! - the exact log-likelihood is one pass: all conditionals at once from the full image,
//! - sampling is D steps: draw x_1, then x_2 given x_1, ...,
//! - completion is the same loop with the first pixels given instead of drawn.

use crate::model::{draw_samples, GenerativeModel, Losses};
use crate::program::data::{Batch, Mnist, Pixels, Split};
use crate::program::eval::{check_samples, means_over, EvalContext, Metric};
use autograd::nn::{Conv2d, MaskedConv2d};
use autograd::optim::{Adam, Optimizer};
use autograd::{mask_taps, no_grad, Conv2dOptions, DType, Error, Mask, Result, Rng, Tensor};
use distributions::{Bernoulli, Categorical};
pub use levels::Levels;

pub mod distributions;
pub mod fvsbn;
pub mod levels;
pub mod nade;
pub mod pixel_cnn;
pub mod pixel_cnn_colour;
pub mod pixel_rnn;
pub mod rnade;

/// An exact-likelihood model (FVSBN, NADE, PixelCNN, the PixelRNNs): what each one defines. Its
/// [`GenerativeModel`] is the blanket impl below, written once for all of them: maximum
/// likelihood steps, sampling and completion by [`LikelihoodModel::generate`], the exact test
/// NLL after every epoch and in `eval`.
pub trait LikelihoodModel {
    /// The registry name ([`crate::model::Entry::name`]).
    fn name(&self) -> &'static str;
    /// The config that rebuilds this model; stored in every checkpoint.
    fn config(&self) -> serde_json::Value;
    /// Parameters under PyTorch-style names.
    fn weights(&self) -> Vec<(String, Tensor)>;
    /// The one optimizer, Adam on every parameter (saved under "optimizer").
    fn optimizer(&self) -> &Adam;
    fn optimizer_mut(&mut self) -> &mut Adam;
    /// How training images are binarised (evaluation always uses the fixed threshold); unused
    /// by a model of grey levels.
    fn training_pixels(&self) -> Pixels;
    /// The values a pixel takes: binary unless the model says otherwise.
    fn levels(&self) -> Levels {
        Levels::BINARY
    }
    /// Images are `image_size` x `image_size`.
    fn image_size(&self) -> usize;
    /// -log p(x) per image, nats, `[B]`, for images `[B, 1, H, W]` on the model's
    /// [`LikelihoodModel::levels`].
    fn nll(&self, x: &Tensor) -> Result<Tensor>;
    /// Images drawn pixel by pixel in raster order with the `known` prefix held fixed, and
    /// the logits they were drawn from.
    fn generate(&self, known: &Known, rng: &mut Rng) -> Result<(Tensor, Tensor)>;
}

impl<M: LikelihoodModel> GenerativeModel for M {
    fn name(&self) -> &'static str {
        LikelihoodModel::name(self)
    }

    fn config(&self) -> serde_json::Value {
        LikelihoodModel::config(self)
    }

    fn pixels(&self) -> Pixels {
        if self.levels().is_binary() {
            self.training_pixels()
        } else {
            Pixels::Unit
        }
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        LikelihoodModel::weights(self)
    }

    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        vec![("optimizer", self.optimizer())]
    }

    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        vec![("optimizer", self.optimizer_mut())]
    }

    /// One step of maximum likelihood: the mean NLL of the batch, backward, an Adam step.
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = self.levels().images(batch, self.training_pixels(), rng)?;
        let loss = self.nll(&x)?.mean_all()?;
        let opt = self.optimizer_mut();
        opt.minimize(&loss)?;
        Ok(vec![("loss".into(), loss.item()?)])
    }

    /// `n` images drawn pixel by pixel.
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let pixels = self.image_size() * self.image_size();
        Ok(self.generate(&Known::none(n, pixels), rng)?.0)
    }

    /// The images with all but their first `known` pixels drawn again.
    fn complete(&mut self, images: &Tensor, known: usize, rng: &mut Rng) -> Result<Tensor> {
        let name = LikelihoodModel::name(self);
        let images = match self.levels() {
            l if l.is_binary() => images.clone(),
            l => l.quantise(images)?,
        };
        let k = Known::prefix(name, &images, self.image_size(), self.levels(), known)?;
        Ok(self.generate(&k, rng)?.0)
    }

    /// The exact NLL of the held-out images, in the test's form (thresholded, or on the
    /// grey levels).
    fn validation_loss(&mut self, split: &Split, rng: &mut Rng) -> Result<Option<f64>> {
        let levels = self.levels();
        let m = means_over(split, levels.eval_pixels(), 100, 1, rng, |x, _, _| {
            Ok(vec![self.nll(&levels.from_eval_pixels(x)?)?.to_vec_f64()])
        })?;
        Ok(m.first().copied())
    }

    /// The exact test NLL (every epoch's metric).
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        likelihood_metrics(ctx, self.levels(), |x| self.nll(x))
    }

    /// `genzoo eval`: the exact test NLL, then the sample metrics of drawn images.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut metrics = self.epoch_metrics(ctx)?;
        let samples = draw_samples(self, ctx)?;
        metrics.extend(ctx.sample_metrics(&samples, self.training_pixels(), None)?);
        Ok(metrics)
    }
}

/// The first layer of the convolutional and recurrent models (PixelCNN, PixelRNN): a 7x7 mask-A
/// convolution (padding 3, with bias) from the binary image to `channels` maps, so that no
/// position sees its own pixel.
pub fn mask_a_input(channels: usize, rng: &mut Rng) -> Result<MaskedConv2d> {
    MaskedConv2d::new(
        1,
        channels,
        (7, 7),
        Mask::A,
        Conv2dOptions::default().padding(3),
        true,
        DType::F32,
        rng,
    )
}

/// The image size the autoregressive models use unless their config says otherwise.
pub fn default_image_size() -> usize {
    28
}

/// Checks a model's `image_size` config field (1..=64 pixels a side).
pub fn check_image_size(model: &'static str, size: usize) -> Result<()> {
    if !(1..=64).contains(&size) {
        return Err(Error::invalid(
            model,
            format!("image_size must be in 1..=64, got {size}"),
        ));
    }
    Ok(())
}

/// Checks that `x` is a batch [B, 1, size, size] for a model of images `size` x `size`.
pub fn check_images(model: &'static str, x: &Tensor, size: usize) -> Result<()> {
    let s = x.shape();
    if s.len() != 4 || s[1] != 1 || s[2] != size || s[3] != size {
        return Err(Error::shape(
            model,
            format!("expects images [B, 1, {size}, {size}] (its image_size), got {s:?}"),
        ));
    }
    Ok(())
}

/// `genzoo eval`'s likelihood figures: the exact test NLL in nats per image (`nll`), on the
/// test split in the model's form (binarised with the fixed threshold, the same for every
/// binary model so that figures compare, or on its grey levels), and the same in bits per
/// dimension (`nll_bits_per_pixel`, nats / (pixels ln 2)), each beside the independent
/// baseline ([`levels::independent_baseline`]). `nll(x)` gives -log p(x) per image, `[B]`, for
/// a batch `[B, 1, H, W]`.
pub fn likelihood_metrics(
    ctx: &mut EvalContext,
    levels: Levels,
    mut nll: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Vec<Metric>> {
    let data = ctx.data;
    let nats = crate::program::eval::mean_per_image(
        ctx,
        levels.eval_pixels(),
        100,
        &["nll"],
        |x, _, _| Ok(vec![nll(&levels.from_eval_pixels(x)?)?.to_vec_f64()]),
    )?[0]
        .value;
    let base = levels::independent_baseline(levels, &data.train, &data.test)?;
    Ok(nll_metrics(nats, base, data.test.pixels()).to_vec())
}

/// `nll` (nats per image) and `nll_bits_per_pixel` (nats / (`dims` ln 2), bits per dimension),
/// each beside the independent baseline's `base` nats.
pub fn nll_metrics(nats: f64, base: f64, dims: usize) -> [Metric; 2] {
    let bits = |nats: f64| nats / (dims.max(1) as f64 * std::f64::consts::LN_2);
    [
        Metric::with_baseline("nll", nats, base),
        Metric::with_baseline("nll_bits_per_pixel", bits(nats), bits(base)),
    ]
}

/// The pixels fixed during generation: the first `count` pixels (raster order) of each of `n`
/// images of `d` pixels.
#[derive(Clone, Debug)]
pub struct Known {
    data: Vec<f32>,
    n: usize,
    d: usize,
    count: usize,
}

impl Known {
    /// Nothing known: plain sampling of `n` images of `d` pixels.
    pub fn none(n: usize, d: usize) -> Known {
        Known {
            data: Vec::new(),
            n,
            d,
            count: 0,
        }
    }

    /// The first `count` pixels of `images` [n, 1, size, size], whose values must lie on
    /// `levels` (0 or 1 for binary pixels).
    pub fn prefix(
        model: &'static str,
        images: &Tensor,
        size: usize,
        levels: Levels,
        count: usize,
    ) -> Result<Known> {
        check_images(model, images, size)?;
        let (n, d) = (images.shape()[0], size * size);
        if count > d {
            return Err(Error::invalid(
                model,
                format!("cannot keep {count} known pixels of a {d}-pixel image"),
            ));
        }
        levels.indices(model, images)?;
        let data = images.to_vec_f32();
        Ok(Known { data, n, d, count })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn pixels(&self) -> usize {
        self.d
    }

    /// Pixel `i` of every image, [n, 1]: the known value for i < count, otherwise a draw from
    /// the conditional whose logits are `logits`: [n, 1], Bernoulli(sigmoid(logit)); [n, K]
    /// with K > 1, level k of K with probability softmax(logits)_k, as the value k / (K - 1).
    pub fn next(&self, i: usize, logits: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        if i < self.count {
            let col: Vec<f32> = (0..self.n).map(|b| self.data[b * self.d + i]).collect();
            return Tensor::from_vec(col, &[self.n, 1])?.to_dtype(logits.dtype());
        }
        let k = logits.shape().get(1).copied().unwrap_or(1);
        if k == 1 {
            return Bernoulli::from_logits(logits).sample(rng);
        }
        let top = (k - 1) as f32;
        let levels = Categorical::from_logits(logits)?.sample(rng)?;
        Tensor::from_vec(
            levels.into_iter().map(|l| l as f32 / top).collect(),
            &[self.n, 1],
        )?
        .to_dtype(logits.dtype())
    }
}

/// The test images a completion picture shows: the first test image of each class in turn
/// (0, 1, ..., 9, then the next of each), `n` of them, grey (byte / 255) for a model of grey
/// levels (`pixels` Unit), else binarised with the fixed threshold.
pub fn completion_inputs(data: &Mnist, n: usize, pixels: Pixels) -> Result<Tensor> {
    let form = match pixels {
        Pixels::Unit => Pixels::Unit,
        _ => Pixels::Threshold,
    };
    data.test
        .batch(&completion_indices(data, n))
        .tensor(form, &mut Rng::new(0))
}

/// The indices of [`completion_inputs`]' test images: the first of each class in turn.
pub fn completion_indices(data: &Mnist, n: usize) -> Vec<usize> {
    let test = &data.test;
    let mut picked = Vec::new();
    let mut next_of = [0usize; 10];
    'outer: while picked.len() < n.min(test.len()) {
        let before = picked.len();
        for (class, next) in next_of.iter_mut().enumerate() {
            if picked.len() == n {
                break 'outer;
            }
            if let Some(off) = test.labels[*next..]
                .iter()
                .position(|&l| usize::from(l) == class)
            {
                picked.push(*next + off);
                *next += off + 1;
            } else {
                *next = test.len();
            }
        }
        if picked.len() == before {
            break;
        }
    }
    picked
}

/// The completion picture as images for [`crate::program::image::grid_png`] with `2 + per_image` columns:
/// for each of `n` test images ([`completion_inputs`]) a row of the original, its top half (the
/// unknown bottom half drawn mid-grey) and `per_image` completions of the bottom half given the
/// top half, drawn pixel by pixel by `model`.
pub fn completion_grid(
    model: &mut dyn GenerativeModel,
    data: &Mnist,
    n: usize,
    per_image: usize,
    seed: u64,
) -> Result<Tensor> {
    let x = completion_inputs(data, n, model.pixels())?;
    let s = x.shape().to_vec();
    let (n, rows, cols) = (s[0], s[2], s[3]);
    if n == 0 {
        return Err(Error::invalid("complete", "no test images to complete"));
    }
    let known = (rows / 2) * cols;
    model.set_training(false);
    let mut rng = Rng::new(seed);
    let mut completions = Vec::with_capacity(per_image);
    for _ in 0..per_image {
        let c = no_grad(|| model.complete(&x, known, &mut rng))?;
        check_samples(model.name(), &c, n)?;
        completions.push(c.to_vec_f32());
    }
    let d = rows * cols;
    let orig = x.to_vec_f32();
    let mut out = Vec::with_capacity(n * (2 + per_image) * d);
    for b in 0..n {
        let img = &orig[b * d..(b + 1) * d];
        out.extend_from_slice(img);
        out.extend(
            img.iter()
                .enumerate()
                .map(|(i, &v)| if i < known { v } else { 0.5 }),
        );
        for c in &completions {
            out.extend_from_slice(&c[b * d..(b + 1) * d]);
        }
    }
    Tensor::from_vec(out, &[n * (2 + per_image), 1, rows, cols])
}

// ----- generation one position at a time over cached activations --------------------------------

/// Activations [n, s, s, channels] (channels last, so that one position's vector is contiguous),
/// filled in as generation goes; zero where not yet computed. The fast generators of the
/// convolutional and recurrent models (PixelCNN, PixelRNN) keep one per layer.
pub(crate) struct Cache {
    pub(crate) data: Vec<f32>,
    n: usize,
    s: usize,
    channels: usize,
}

impl Cache {
    pub(crate) fn new(n: usize, s: usize, channels: usize) -> Cache {
        Cache {
            data: vec![0.0; n * s * s * channels],
            n,
            s,
            channels,
        }
    }

    /// The image's side, s.
    pub(crate) fn size(&self) -> usize {
        self.s
    }

    /// Stores `v` [n, channels] at position (r, c).
    pub(crate) fn set(&mut self, r: usize, c: usize, v: &Tensor) {
        let v = v.to_vec_f32();
        let ch = self.channels;
        for b in 0..self.n {
            let at = ((b * self.s + r) * self.s + c) * ch;
            self.data[at..at + ch].copy_from_slice(&v[b * ch..(b + 1) * ch]);
        }
    }

    /// The vectors [n, channels] at (r, c), zeros outside the image.
    pub(crate) fn get(&self, r: isize, c: isize) -> Result<Tensor> {
        let (s, ch) = (self.s as isize, self.channels);
        let mut v = vec![0f32; self.n * ch];
        if (0..s).contains(&r) && (0..s).contains(&c) {
            for b in 0..self.n {
                let at = ((b * self.s + r as usize) * self.s + c as usize) * ch;
                v[b * ch..(b + 1) * ch].copy_from_slice(&self.data[at..at + ch]);
            }
        }
        Tensor::from_vec(v, &[self.n, ch])
    }
}

/// A convolution evaluated at one output position: its kept taps' inputs gathered into
/// [n, taps * in] and multiplied by the weights arranged as [taps * in, out].
pub(crate) struct TapConv {
    /// (row, column) offsets of the kept taps from the output position
    offsets: Vec<(isize, isize)>,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl TapConv {
    /// A (masked) convolution with weight [out, in, kh, kw], centred on the output position,
    /// keeping the taps of `mask` ([`mask_taps`]).
    pub(crate) fn of(
        weight: &Tensor,
        bias: Option<&Tensor>,
        mask: Option<Mask>,
    ) -> Result<TapConv> {
        let s = weight.shape();
        let (kh, kw) = (s[2], s[3]);
        let taps = mask_taps(kh, kw, mask);
        let offsets = taps
            .iter()
            .map(|&(i, j)| {
                (
                    i as isize - (kh / 2) as isize,
                    j as isize - (kw / 2) as isize,
                )
            })
            .collect::<Vec<_>>();
        TapConv::arranged(weight, bias, &taps, offsets)
    }

    /// Weight [out, in, kh, kw] whose every tap (i, j), in row-major order, reads the input at
    /// `offsets[i * kw + j]` from the output position: a recurrent model's state-to-state
    /// convolution, which reads the previous row or column.
    pub(crate) fn with_offsets(
        weight: &Tensor,
        bias: Option<&Tensor>,
        offsets: &[(isize, isize)],
    ) -> Result<TapConv> {
        let s = weight.shape();
        let taps: Vec<(usize, usize)> = (0..s[2])
            .flat_map(|i| (0..s[3]).map(move |j| (i, j)))
            .collect();
        if taps.len() != offsets.len() {
            return Err(Error::shape(
                "tap_conv",
                format!(
                    "weight {s:?} has {} taps but {} offsets were given",
                    taps.len(),
                    offsets.len()
                ),
            ));
        }
        TapConv::arranged(weight, bias, &taps, offsets.to_vec())
    }

    fn arranged(
        weight: &Tensor,
        bias: Option<&Tensor>,
        taps: &[(usize, usize)],
        offsets: Vec<(isize, isize)>,
    ) -> Result<TapConv> {
        let s = weight.shape();
        let (cout, cin, kh, kw) = (s[0], s[1], s[2], s[3]);
        let w = weight.to_vec_f32();
        let mut m = vec![0f32; taps.len() * cin * cout];
        for (t, &(ti, tj)) in taps.iter().enumerate() {
            for ci in 0..cin {
                for co in 0..cout {
                    m[(t * cin + ci) * cout + co] = w[((co * cin + ci) * kh + ti) * kw + tj];
                }
            }
        }
        Ok(TapConv {
            offsets,
            weight: Tensor::from_vec(m, &[taps.len() * cin, cout])?,
            bias: bias.map(|b| b.detach()),
        })
    }

    /// The output [n, out] at (r, c), zero padding outside the image.
    pub(crate) fn at(&self, input: &Cache, r: usize, c: usize) -> Result<Tensor> {
        let (n, s, ch) = (input.n, input.s as isize, input.channels);
        let width = self.offsets.len() * ch;
        let mut g = vec![0f32; n * width];
        for b in 0..n {
            for (t, &(dr, dc)) in self.offsets.iter().enumerate() {
                let (rr, cc) = (r as isize + dr, c as isize + dc);
                if rr < 0 || cc < 0 || rr >= s || cc >= s {
                    continue;
                }
                let at = ((b * input.s + rr as usize) * input.s + cc as usize) * ch;
                g[b * width + t * ch..b * width + (t + 1) * ch]
                    .copy_from_slice(&input.data[at..at + ch]);
            }
        }
        let y = Tensor::from_vec(g, &[n, width])?.matmul(&self.weight)?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

/// The logits a generator drew its pixels from, one `[n, L]` per pixel in raster order, as the
/// `[n, L, s, s]` that one forward pass over the finished images gives.
pub(crate) fn logits_image(per_pixel: &[Tensor], n: usize, s: usize) -> Result<Tensor> {
    let l = per_pixel.first().map_or(1, |t| t.shape()[1]);
    Tensor::concat(per_pixel, 1)?
        .reshape(&[n, s, s, l])?
        .permute(&[0, 3, 1, 2])?
        .contiguous()
}

/// A 1x1 convolution as a matrix: [n, in] -> [n, out].
pub(crate) struct Pointwise {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Pointwise {
    pub(crate) fn of(conv: &Conv2d) -> Result<Pointwise> {
        let s = conv.weight.shape();
        Ok(Pointwise {
            weight: conv
                .weight
                .detach()
                .reshape(&[s[0], s[1]])?
                .t()?
                .contiguous()?,
            bias: conv.bias.as_ref().map(|b| b.detach()),
        })
    }

    pub(crate) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight)?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

/// Checks shared by the tests of the autoregressive models.
#[cfg(test)]
pub(crate) mod checks {
    use super::*;
    use crate::program::data::Batch;
    use autograd::DType;

    /// A random image of `size` x `size` on `levels`, [1, 1, size, size].
    pub fn random_image(size: usize, levels: Levels, rng: &mut Rng) -> Tensor {
        let top = (levels.count() - 1) as f32;
        let v: Vec<f32> = (0..size * size)
            .map(|_| {
                (rng.uniform() * levels.count() as f64)
                    .floor()
                    .min(f64::from(top)) as f32
                    / top
            })
            .collect();
        Tensor::from_vec(v, &[1, 1, size, size]).unwrap()
    }

    /// The autoregressive property through gradients: for a random image of `size` x `size` on
    /// `levels`, d logit_(i, l) / d x_j is exactly 0 for every output l of pixel i and every
    /// j >= i (raster order), and pixel i's logits do depend on x_(i-1) (so the check is not
    /// vacuous).
    pub fn autoregressive(size: usize, levels: Levels, logits: impl Fn(&Tensor) -> Result<Tensor>) {
        let d = size * size;
        let x = random_image(size, levels, &mut Rng::new(11))
            .requires_grad_(true)
            .unwrap();
        let l = logits(&x).unwrap();
        let per_pixel = levels.logits_per_pixel();
        assert_eq!(l.shape(), &[1, per_pixel, size, size]);
        let flat = l.reshape(&[per_pixel, d]).unwrap();
        let mut depends_on_previous = 0;
        for i in 0..d {
            let out = flat.narrow(1, i, 1).unwrap().sum_all().unwrap();
            let g = autograd::grad(&[out], &[], std::slice::from_ref(&x), false).unwrap();
            let g = g[0]
                .as_ref()
                .map(|t| t.to_vec_f64())
                .unwrap_or_else(|| vec![0.0; d]);
            for (j, gj) in g.iter().enumerate().skip(i) {
                assert!(
                    *gj == 0.0,
                    "d logit_{i} / d x_{j} = {gj}, should be 0 (pixel {i} must not see pixel {j})"
                );
            }
            if i > 0 && g[i - 1] != 0.0 {
                depends_on_previous += 1;
            }
        }
        assert!(
            depends_on_previous >= d / 2,
            "only {depends_on_previous} of {d} logits depend on the previous pixel"
        );
    }

    /// Exact normalisation: the probabilities of all K^(size^2) images on `levels` (K of
    /// them) sum to 1.
    pub fn normalised(size: usize, levels: Levels, nll: impl Fn(&Tensor) -> Result<Tensor>) {
        let (d, k) = (size * size, levels.count());
        let count = k.pow(d as u32);
        assert!(count <= 1 << 16);
        let top = (k - 1) as f64;
        let mut v = Vec::with_capacity(count * d);
        for image in 0..count {
            v.extend((0..d).map(|i| (image / k.pow(i as u32) % k) as f64 / top));
        }
        let x = Tensor::from_vec(v, &[count, 1, size, size])
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let nll = no_grad(|| nll(&x)).unwrap().to_vec_f64();
        assert_eq!(nll.len(), count);
        let total: f64 = nll.iter().map(|l| (-l).exp()).sum();
        assert!(
            (total - 1.0).abs() < 1e-4,
            "the probabilities of all {count} images sum to {total}"
        );
        let spread = nll.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - nll.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(spread > 0.1, "a flat model ({spread}) proves little");
    }

    /// Generation the slow way, `size`^2 full forward passes (one per pixel, each batched over
    /// the images): the reference a fast generator is tested against.
    pub fn generate_by_full_passes(
        known: &Known,
        size: usize,
        logits: impl Fn(&Tensor) -> Result<Tensor>,
        rng: &mut Rng,
    ) -> Tensor {
        let (n, d) = (known.n(), known.pixels());
        let mut x = vec![0f32; n * d];
        for i in 0..d {
            let all = logits(&Tensor::from_vec(x.clone(), &[n, 1, size, size]).unwrap()).unwrap();
            let per_pixel = all.shape()[1];
            let l = all
                .reshape(&[n, per_pixel, d])
                .unwrap()
                .narrow(2, i, 1)
                .unwrap()
                .reshape(&[n, per_pixel])
                .unwrap();
            let xi = known.next(i, &l, rng).unwrap().to_vec_f32();
            for (b, v) in xi.into_iter().enumerate() {
                x[b * d + i] = v;
            }
        }
        Tensor::from_vec(x, &[n, 1, size, size]).unwrap()
    }

    /// A fast generator `generate(known, rng)` -> (images, the logits each pixel was drawn
    /// from) against the definition, for plain sampling and for completion of 5 images of
    /// `size` x `size` on `levels`: the logits it used are those of one pass over the finished
    /// images, and its draws are those of `size`^2 full passes with the same random numbers.
    pub fn generation_matches_full_passes(
        size: usize,
        levels: Levels,
        logits: impl Fn(&Tensor) -> Result<Tensor>,
        generate: impl Fn(&Known, &mut Rng) -> Result<(Tensor, Tensor)>,
    ) {
        let d = size * size;
        let given = levels
            .images(&tiny_batch(size, 5), Pixels::Threshold, &mut Rng::new(0))
            .unwrap();
        for known in [
            Known::none(5, d),
            Known::prefix("test", &given, size, levels, d / 2).unwrap(),
        ] {
            let (x, l) = no_grad(|| generate(&known, &mut Rng::new(2))).unwrap();
            let full = no_grad(|| logits(&x)).unwrap();
            for (a, b) in l.to_vec_f64().iter().zip(full.to_vec_f64()) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
            let slow = no_grad(|| generate_by_full_passes(&known, size, &logits, &mut Rng::new(2)));
            assert_eq!(x.to_vec_f32(), slow.to_vec_f32());
        }
    }

    /// The grey-level checks of a convolutional or recurrent model built by
    /// `build(levels, size, depth)`: on 256 levels autoregressive through gradients, on 3
    /// levels the probabilities of all 2 x 2 images sum to one, on 5 levels the fast generator
    /// matches full passes. `logits` is the model's one-pass output.
    pub fn grey_levels<M: LikelihoodModel>(
        build: impl Fn(Levels, usize, usize) -> M,
        logits: impl Fn(&M, &Tensor) -> Result<Tensor>,
    ) {
        let grey = |k| Levels::new("test", k).unwrap();
        let m = build(grey(256), 6, 2);
        autoregressive(6, grey(256), |x| logits(&m, x));
        let m = build(grey(3), 2, 1);
        normalised(2, grey(3), |x| m.nll(x));
        let m = build(grey(5), 5, 2);
        generation_matches_full_passes(5, grey(5), |x| logits(&m, x), |k, rng| m.generate(k, rng));
    }

    /// A batch of `n` random images of `size` x `size` drawn from a few fixed patterns (bytes
    /// 0 and 255, with a grey ramp along the pattern's pixels), so that a model can learn
    /// something in a few steps.
    pub fn tiny_batch(size: usize, n: usize) -> Batch {
        let d = size * size;
        let mut rng = Rng::new(5);
        let mut images = Vec::with_capacity(n * d);
        for b in 0..n {
            for i in 0..d {
                let (r, c) = (i / size, i % size);
                let on = match b % 3 {
                    0 => r == c,
                    1 => r < size / 2,
                    _ => c % 2 == 0,
                };
                let flip = rng.uniform() < 0.05;
                images.push(if on != flip { 255 - (r * 8) as u8 } else { 0 });
            }
        }
        Batch {
            images,
            labels: vec![0; n],
            rows: size,
            cols: size,
        }
    }

    /// A few steps on tiny data lower the loss; samples and completions are images on `levels`
    /// of the right shape, and completions keep the known pixels.
    pub fn learns_and_samples(model: &mut dyn GenerativeModel, size: usize, levels: Levels) {
        let batch = tiny_batch(size, 32);
        let mut rng = Rng::new(3);
        let first = model.train_step(&batch, &mut rng).unwrap()[0].1;
        let mut last = first;
        for _ in 0..25 {
            last = model.train_step(&batch, &mut rng).unwrap()[0].1;
        }
        assert!(
            last < 0.8 * first,
            "{}: loss {first} -> {last}",
            model.name()
        );
        model.set_training(false);
        let s = no_grad(|| model.sample(5, &mut rng)).unwrap();
        assert_eq!(s.shape(), &[5, 1, size, size]);
        levels.indices("test", &s).unwrap();
        let x = levels.images(&batch, Pixels::Threshold, &mut rng).unwrap();
        let known = (size / 2) * size;
        let c = no_grad(|| model.complete(&x, known, &mut rng)).unwrap();
        assert_eq!(c.shape(), x.shape());
        let (cv, xv) = (c.to_vec_f32(), x.to_vec_f32());
        let d = size * size;
        for b in 0..x.shape()[0] {
            assert_eq!(cv[b * d..b * d + known], xv[b * d..b * d + known]);
        }
        levels.indices("test", &c).unwrap();
        assert!(no_grad(|| model.complete(&x, d + 1, &mut rng)).is_err());
        let off_levels = if levels.is_binary() { 0.5 } else { 2.0 };
        let bad = x.mul_scalar(0.0).unwrap().add_scalar(off_levels).unwrap();
        assert!(no_grad(|| model.complete(&bad, known, &mut rng)).is_err());
    }
}
