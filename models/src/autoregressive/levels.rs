//! The values a pixel takes in the autoregressive models, and the distribution over them.
//!
//! - **Binary** (2 levels, the default): a pixel is 0 or 1 and its conditional a Bernoulli,
//!   one logit per pixel.
//! - **K grey levels** (K in 3..=256; 256 is 8-bit grey): the byte b becomes the level
//!   k = floor(b K / 256), fed to the network as k / (K - 1) in [0, 1], and the conditional is a
//!   K-way categorical (the PixelRNN paper's 256-way softmax), K logits per pixel:
//!
//! ```text
//!   p(x_i = k | x_<i) = softmax(l_i)_k          -log p(x) = sum_i (logsumexp(l_i) - l_(i, k_i))
//! ```
//!
//! The network's output is `[B, L, H, W]` with L = 1 (binary) or K, so each model only sizes
//! its last layer by [`Levels::logits_per_pixel`]; [`Levels::nll_per_image`] and the draw in
//! [`super::Known::next`] read that axis. K = 256 of `Pixels::Unit` is the byte itself.
//!
//! Every likelihood is compared with the **independent baseline**: each pixel on its own, its
//! level's frequency in the training split with add-one smoothing ([`independent_baseline`]).

use crate::program::data::{Batch, Pixels, Split};
use autograd::nn::loss::softmax_cross_entropy;
use autograd::{Error, Result, Rng, Tensor};

use super::distributions::Bernoulli;

/// The number of values a pixel takes: 2 (binary) or K in 3..=256 grey levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels(usize);

impl Levels {
    /// Binary pixels.
    pub const BINARY: Levels = Levels(2);

    /// `levels` values per pixel, in 2..=256 (an error names `model` otherwise).
    pub fn new(model: &'static str, levels: usize) -> Result<Levels> {
        if !(2..=256).contains(&levels) {
            return Err(Error::invalid(
                model,
                format!(
                    "levels must be in 2..=256 (2: binary pixels, 256: 8-bit grey), got {levels}"
                ),
            ));
        }
        Ok(Levels(levels))
    }

    /// K.
    pub fn count(self) -> usize {
        self.0
    }

    pub fn is_binary(self) -> bool {
        self.0 == 2
    }

    /// The network's outputs per pixel: 1 Bernoulli logit, or K categorical logits.
    pub fn logits_per_pixel(self) -> usize {
        if self.is_binary() {
            1
        } else {
            self.0
        }
    }

    /// How a split's bytes become images for evaluation: the fixed threshold for binary
    /// pixels, byte / 255 (then [`Levels::quantise`]) for grey levels.
    pub fn eval_pixels(self) -> Pixels {
        if self.is_binary() {
            Pixels::Threshold
        } else {
            Pixels::Unit
        }
    }

    /// The images of `batch` as the model reads them: `binary` (threshold or stochastic) for
    /// binary pixels, else the levels k / (K - 1).
    pub fn images(self, batch: &Batch, binary: Pixels, rng: &mut Rng) -> Result<Tensor> {
        if self.is_binary() {
            batch.tensor(binary, rng)
        } else {
            self.from_eval_pixels(&batch.tensor(Pixels::Unit, rng)?)
        }
    }

    /// Images in the form [`Levels::eval_pixels`] gives, on the levels: as they are for binary
    /// pixels (thresholded) and for 256 levels (byte / 255 is the level already), quantised
    /// otherwise; so the common cases skip [`Levels::quantise`]'s copy.
    pub fn from_eval_pixels(self, x: &Tensor) -> Result<Tensor> {
        if self.is_binary() || self.0 == 256 {
            Ok(x.clone())
        } else {
            self.quantise(x)
        }
    }

    /// Grey images in [0, 1] (byte / 255) to the levels k / (K - 1), k = floor(byte K / 256);
    /// identity for K = 256, the fixed threshold for K = 2. An error names a value outside
    /// [0, 1].
    pub fn quantise(self, x: &Tensor) -> Result<Tensor> {
        let k = self.indices_of_grey(x)?;
        let top = (self.0 - 1) as f32;
        Tensor::from_vec(k.iter().map(|&k| k as f32 / top).collect(), x.shape())?
            .to_dtype(x.dtype())
    }

    /// The level k = floor(byte K / 256) of every pixel of grey images in [0, 1] (byte / 255);
    /// an error names a value outside [0, 1].
    pub fn indices_of_grey(self, x: &Tensor) -> Result<Vec<usize>> {
        x.to_vec_f32()
            .into_iter()
            .map(|v| {
                if !(0.0..=1.0).contains(&v) {
                    return Err(Error::invalid(
                        "levels",
                        format!("grey images must lie in [0, 1], got a pixel {v}"),
                    ));
                }
                let byte = (v * 255.0).round() as usize;
                Ok(byte * self.0 / 256)
            })
            .collect()
    }

    /// The level index k of every pixel of images whose values are k / (K - 1); an error names
    /// `model` and the first value off that grid.
    pub fn indices(self, model: &'static str, x: &Tensor) -> Result<Vec<usize>> {
        let top = (self.0 - 1) as f32;
        x.to_vec_f32()
            .into_iter()
            .map(|v| {
                let k = (v * top).round();
                if (0.0..=top).contains(&k) && (k / top - v).abs() < 1e-6 {
                    Ok(k as usize)
                } else {
                    Err(Error::invalid(
                        model,
                        format!(
                            "expects pixels on the {} levels k / {top} (k = 0..={top}), got {v}",
                            self.0
                        ),
                    ))
                }
            })
            .collect()
    }

    /// -log p(x) per image, nats, `[B]`, for images `x` `[B, 1, H, W]` on the levels and the
    /// network's output `logits` `[B, L, H, W]` (L = [`Levels::logits_per_pixel`]).
    pub fn nll_per_image(self, model: &'static str, logits: &Tensor, x: &Tensor) -> Result<Tensor> {
        if self.is_binary() {
            return Bernoulli::from_logits(logits).nll_per_image(x);
        }
        let (s, l) = (x.shape(), logits.shape());
        if s.len() != 4 || l.len() != 4 || s[1] != 1 || l[1] != self.0 || l[0] != s[0] {
            return Err(Error::shape(
                model,
                format!(
                    "{}-level likelihood needs images [B, 1, H, W] and logits [B, {}, H, W], got {s:?} and {l:?}",
                    self.0, self.0
                ),
            ));
        }
        // one fused softmax cross-entropy over the K logits of every pixel
        softmax_cross_entropy(logits, 1, &self.indices(model, x)?)?
            .reshape(&[s[0], s[2] * s[3]])?
            .sum(&[1], false)
    }
}

/// The independent baseline's NLL per image, nats, averaged over `test`: each pixel its own
/// categorical over the K levels, fitted to `train` with add-one smoothing,
/// p_i(k) = (count_i(k) + 1) / (N + K).
pub fn independent_baseline(levels: Levels, train: &Split, test: &Split) -> Result<f64> {
    let d = train.rows * train.cols;
    if d == 0 || train.is_empty() || test.is_empty() || test.rows * test.cols != d {
        return Err(Error::invalid(
            "independent_baseline",
            format!(
                "needs non-empty splits of equal image size, got {} images of {} pixels and {} of {}",
                train.len(),
                d,
                test.len(),
                test.rows * test.cols
            ),
        ));
    }
    let k = levels.count();
    let level_of = |split: &Split| -> Vec<usize> {
        split
            .images
            .iter()
            .map(|&b| usize::from(b) * k / 256)
            .collect()
    };
    Ok(independent_nll(k, d, &level_of(train), &level_of(test)))
}

/// The NLL per test image, nats, of each of `dims` variables on its own: its level's frequency
/// among the training images with add-one smoothing, p_i(l) = (count_i(l) + 1) / (N + K). The
/// levels (each below `k`) come image after image, `dims` per image.
pub fn independent_nll(k: usize, dims: usize, train: &[usize], test: &[usize]) -> f64 {
    let mut counts = vec![0u32; dims * k];
    for (j, &l) in train.iter().enumerate() {
        counts[(j % dims) * k + l] += 1;
    }
    let norm = (train.len() / dims.max(1) + k) as f64;
    let total: f64 = test
        .iter()
        .enumerate()
        .map(|(j, &l)| -((f64::from(counts[(j % dims) * k + l]) + 1.0) / norm).ln())
        .sum();
    total / (test.len() / dims.max(1)).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(images: Vec<u8>, pixels: usize) -> Split {
        let n = images.len() / pixels;
        Split {
            images,
            labels: vec![0; n],
            rows: 1,
            cols: pixels,
        }
    }

    #[test]
    fn quantise_and_indices_by_hand() {
        let bytes = [0u8, 63, 64, 127, 128, 255];
        let unit = Tensor::from_vec(
            bytes.iter().map(|&b| f32::from(b) / 255.0).collect(),
            &[1, 1, 1, 6],
        )
        .unwrap();
        let four = Levels::new("test", 4).unwrap();
        assert_eq!(four.indices_of_grey(&unit).unwrap(), vec![0, 0, 1, 1, 2, 3]);
        let q = four.quantise(&unit).unwrap();
        assert_eq!(four.indices("test", &q).unwrap(), vec![0, 0, 1, 1, 2, 3]);
        // 256 levels are the bytes; 2 levels the fixed threshold
        let grey = Levels::new("test", 256).unwrap();
        assert_eq!(
            grey.quantise(&unit).unwrap().to_vec_f32(),
            unit.to_vec_f32()
        );
        let binary = Levels::BINARY.quantise(&unit).unwrap().to_vec_f32();
        assert_eq!(binary, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
        // off the grid, or outside [0, 1]
        assert!(four.indices("test", &unit).is_err());
        assert!(four.quantise(&unit.add_scalar(1.5).unwrap()).is_err());
        assert!(Levels::new("test", 1).is_err() && Levels::new("test", 257).is_err());
    }

    #[test]
    fn categorical_nll_is_logsumexp_minus_the_picked_logit() {
        let three = Levels::new("test", 3).unwrap();
        // one image of two pixels, levels 2 and 0; logits [1, 3, 1, 2]
        let logits = [[0.5f64, -1.0], [2.0, 0.0], [-0.5, 1.5]];
        let flat: Vec<f32> = logits.iter().flatten().map(|&v| v as f32).collect();
        let l = Tensor::from_vec(flat, &[1, 3, 1, 2]).unwrap();
        let x = Tensor::from_vec(vec![1.0, 0.0], &[1, 1, 1, 2]).unwrap();
        let got = three.nll_per_image("test", &l, &x).unwrap().item().unwrap();
        let lse = |p: usize| (0..3).map(|k| logits[k][p].exp()).sum::<f64>().ln();
        let want = (lse(0) - logits[2][0]) + (lse(1) - logits[0][1]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let wrong = Tensor::from_vec(vec![0.0; 4], &[1, 2, 1, 2]).unwrap();
        assert!(three.nll_per_image("test", &wrong, &x).is_err());
    }

    #[test]
    fn independent_baseline_by_hand() {
        // two pixels, three training images; K = 2: pixel 0 is on in 2 of 3, pixel 1 in 0 of 3
        let train = split(vec![255, 0, 200, 10, 0, 0], 2);
        let test = split(vec![255, 255], 2);
        let got = independent_baseline(Levels::BINARY, &train, &test).unwrap();
        let want = -((2.0 + 1.0) / 5.0f64).ln() - ((0.0 + 1.0) / 5.0f64).ln();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert!(independent_baseline(Levels::BINARY, &train, &split(vec![1, 2, 3], 3)).is_err());
    }
}
