//! The evaluation harness: what `genzoo eval` and the per-epoch metrics report.
//!
//! Sample quality is measured on the shipped MNIST classifier ([`crate::program::classifier`]): its
//! penultimate features give the Frechet classifier distance and KID between generated images and
//! the real test images (KID on features scaled by one fixed factor, the one that gives the real
//! test features a mean square of 1, so that its kernel (x.y/d + 1)^3 sees unit-scale inputs), its predictions give the label histogram (KL to uniform, classes
//! covered, classifier score) and, for conditional models, the accuracy on the intended labels.
//! Every figure comes with a real-vs-real baseline: the same statistic for as many real training
//! images against the same test images, which says what "as good as real data" reads as.

use crate::program::classifier::Classifier;
use crate::program::data::{self, Mnist, Pixels};
use crate::program::metrics;
use autograd::{no_grad, Error, Result, Rng, Tensor};

/// One reported figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    /// The same statistic for real training images against the real test images.
    pub baseline: Option<f64>,
    /// Extra detail for people (e.g. the label histogram), printed under the table.
    pub detail: Option<String>,
}

impl Metric {
    pub fn new(name: impl Into<String>, value: f64) -> Metric {
        Metric {
            name: name.into(),
            value,
            baseline: None,
            detail: None,
        }
    }

    pub fn with_baseline(name: impl Into<String>, value: f64, baseline: f64) -> Metric {
        Metric {
            baseline: Some(baseline),
            ..Metric::new(name, value)
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Metric {
        self.detail = Some(detail.into());
        self
    }
}

/// Classifier outputs for a set of images: `n` rows of `d` features and of 10 logits.
#[derive(Clone, Debug)]
pub struct Features {
    pub n: usize,
    pub d: usize,
    pub features: Vec<f64>,
    pub logits: Vec<f64>,
}

/// Real-data features, per pixel form.
struct Real {
    pixels: Pixels,
    n_train: usize,
    test: Features,
    train: Features,
    train_labels: Vec<usize>,
    /// The factor that gives the test features a mean square of 1 per dimension, applied to
    /// every set before KID so that its polynomial kernel sees unit-scale features.
    kid_scale: f64,
}

/// What a model's evaluation may use: the data, a seeded generator, the number of samples to
/// draw, and (loaded on first use) the classifier with the real data's features.
pub struct EvalContext<'a> {
    pub data: &'a Mnist,
    pub rng: Rng,
    /// How many samples the sample-quality metrics draw.
    pub samples: usize,
    /// Importance samples for latent-variable models' IWAE bound (`genzoo eval --iwae-k`);
    /// `None`: the model's own config.
    pub iwae_k: Option<usize>,
    classifier: Option<Classifier>,
    /// The style classifier ([`Classifier::shipped_styles`]), loaded when first asked for.
    style_classifier: Option<Classifier>,
    real: Vec<Real>,
}

const CLASSES: usize = 10;

/// The classifier in `slot`, loaded by `load` when first asked for.
fn loaded(
    slot: &mut Option<Classifier>,
    load: fn() -> Result<Classifier>,
) -> Result<&mut Classifier> {
    if slot.is_none() {
        *slot = Some(load()?);
    }
    slot.as_mut()
        .ok_or_else(|| Error::invalid("eval", "no classifier"))
}

/// `c`'s penultimate features and logits for images [n, 1, 28, 28] in [0, 1], in batches of 250.
fn classify(c: &mut Classifier, images: &Tensor) -> Result<Features> {
    let s = images.shape().to_vec();
    if s.len() != 4 || s[1] != 1 || s[2] != 28 || s[3] != 28 {
        return Err(Error::shape(
            "eval",
            format!("the classifier reads [n, 1, 28, 28] images, got {s:?}"),
        ));
    }
    c.set_eval();
    let n = s[0];
    let (mut features, mut logits, mut d) = (Vec::new(), Vec::new(), 0);
    no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < n {
            let len = (n - start).min(250);
            let x = images.narrow(0, start, len)?.contiguous()?;
            let (f, l) = c.features_and_logits(&x)?;
            d = f.shape()[1];
            features.extend(f.to_vec_f64());
            logits.extend(l.to_vec_f64());
            start += len;
        }
        Ok(())
    })?;
    Ok(Features {
        n,
        d,
        features,
        logits,
    })
}

impl<'a> EvalContext<'a> {
    pub fn new(data: &'a Mnist, seed: u64, samples: usize) -> EvalContext<'a> {
        EvalContext {
            data,
            rng: Rng::new(seed),
            samples,
            iwae_k: None,
            classifier: None,
            style_classifier: None,
            real: Vec::new(),
        }
    }

    /// Uses `classifier` instead of the shipped one (tests, or a freshly trained one).
    pub fn with_classifier(mut self, classifier: Classifier) -> EvalContext<'a> {
        self.classifier = Some(classifier);
        self
    }

    fn classifier(&mut self) -> Result<&mut Classifier> {
        loaded(&mut self.classifier, Classifier::shipped)
    }

    /// The classifier's penultimate features and logits for images [n, 1, 28, 28] in [0, 1].
    pub fn features(&mut self, images: &Tensor) -> Result<Features> {
        let c = self.classifier()?;
        classify(c, images)
    }

    /// The digits the style classifier reads in images [n, 1, 28, 28] in [0, 1]: the
    /// measurement of "which digit" for the domain models, whose digits are drawn thin, thick or
    /// leaning (the harness classifier, trained on plain digits, misreads more of those).
    pub fn read_styled_digits(&mut self, images: &Tensor) -> Result<Vec<usize>> {
        let c = loaded(&mut self.style_classifier, Classifier::shipped_styles)?;
        let f = classify(c, images)?;
        Ok(crate::program::metrics::argmax_rows(&f.logits, CLASSES))
    }

    /// Real images of a split in the form `pixels` as [n, 1, 28, 28] in [0, 1].
    fn real_images(split: &data::Split, pixels: Pixels) -> Result<Tensor> {
        let form = match pixels {
            Pixels::Symmetric => Pixels::Unit,
            p => p,
        };
        // stochastic binarisation of the reference data is seeded, so the baseline is stable
        split.tensor(form, &mut Rng::new(0xB1A5))
    }

    fn real(&mut self, pixels: Pixels, n_train: usize) -> Result<usize> {
        if let Some(i) = self
            .real
            .iter()
            .position(|r| r.pixels == pixels && r.n_train == n_train)
        {
            return Ok(i);
        }
        let test_x = Self::real_images(&self.data.test, pixels)?;
        let train_split = self.data.train.head(n_train);
        let train_x = Self::real_images(&train_split, pixels)?;
        let test = self.features(&test_x)?;
        let train = self.features(&train_x)?;
        let ms =
            test.features.iter().map(|v| v * v).sum::<f64>() / test.features.len().max(1) as f64;
        let kid_scale = if ms > 0.0 { 1.0 / ms.sqrt() } else { 1.0 };
        self.real.push(Real {
            kid_scale,
            pixels,
            n_train,
            test,
            train,
            train_labels: train_split.labels.iter().map(|&l| usize::from(l)).collect(),
        });
        Ok(self.real.len() - 1)
    }

    /// The sample-quality metrics of `samples` [n, 1, 28, 28] in [0, 1] against the real test
    /// images in the form `pixels`, each with its real-vs-real baseline (n real training images
    /// against the same test images): FCD, KID, label KL to uniform, classes covered, classifier
    /// score, and with `intended` labels (conditional models) the classifier's accuracy on them.
    pub fn sample_metrics(
        &mut self,
        samples: &Tensor,
        pixels: Pixels,
        intended: Option<&[usize]>,
    ) -> Result<Vec<Metric>> {
        let n = samples.shape().first().copied().unwrap_or(0);
        if n < 2 {
            return Err(Error::invalid(
                "eval",
                format!("sample metrics need at least 2 samples, got {n}"),
            ));
        }
        if let Some(l) = intended {
            if l.len() != n {
                return Err(Error::shape(
                    "eval",
                    format!("{} intended labels for {n} samples", l.len()),
                ));
            }
        }
        let gen = self.features(samples)?;
        let n_train = n.min(self.data.train.len());
        let ri = self.real(pixels, n_train)?;
        let real = &self.real[ri];
        let (t, r) = (&real.test, &real.train);
        let fcd = metrics::frechet_of_sets(&gen.features, gen.n, &t.features, t.n, gen.d)?;
        let fcd_base = metrics::frechet_of_sets(&r.features, r.n, &t.features, t.n, r.d)?;
        let scaled =
            |f: &Features| -> Vec<f64> { f.features.iter().map(|v| v * real.kid_scale).collect() };
        let (gs, ts, rs) = (scaled(&gen), scaled(t), scaled(r));
        let kid = metrics::kid(&gs, gen.n, &ts, t.n, gen.d)?;
        let kid_base = metrics::kid(&rs, r.n, &ts, t.n, r.d)?;
        let ls = metrics::label_stats(&gen.logits, gen.n, CLASSES)?;
        let lb = metrics::label_stats(&r.logits, r.n, CLASSES)?;
        let hist = |h: &[usize]| {
            h.iter()
                .enumerate()
                .map(|(c, k)| format!("{c}:{k}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut out = vec![
            Metric::with_baseline("fcd", fcd, fcd_base),
            Metric::with_baseline("kid", kid, kid_base),
            Metric::with_baseline("label_kl_to_uniform", ls.kl_to_uniform, lb.kl_to_uniform)
                .detail(format!(
                    "predicted labels of {n} samples: {}; of {} real: {}",
                    hist(&ls.histogram),
                    r.n,
                    hist(&lb.histogram)
                )),
            Metric::with_baseline(
                "classes_covered",
                ls.classes_covered as f64,
                lb.classes_covered as f64,
            ),
            Metric::with_baseline("classifier_score", ls.classifier_score, lb.classifier_score),
        ];
        if let Some(labels) = intended {
            let acc = metrics::accuracy(&gen.logits, CLASSES, labels)?;
            let base = metrics::accuracy(&r.logits, CLASSES, &real.train_labels)?;
            out.push(Metric::with_baseline("intended_label_accuracy", acc, base));
        }
        Ok(out)
    }
}

impl EvalContext<'_> {
    /// Per-digit metrics of a conditional model, `samples[d]` ([n, 1, 28, 28] in [0, 1]) drawn
    /// asking for digit d: how often the classifier agrees with d, and the FCD against the real
    /// test digits d, each beside its real-data baseline (the training digits d: the
    /// classifier's agreement with their labels, and as many of them as there are samples
    /// against the same test digits); then the lowest agreement over the digits.
    pub fn per_class_metrics(&mut self, samples: &[Tensor]) -> Result<Vec<Metric>> {
        let test_labels: Vec<usize> = self.data.test.labels.iter().map(|&l| l.into()).collect();
        let ri = self.real(Pixels::Unit, self.data.train.len())?;
        let mut out = Vec::new();
        let (mut lowest, mut lowest_base) = (f64::INFINITY, f64::INFINITY);
        for (digit, s) in samples.iter().enumerate() {
            let gen = self.features(s)?;
            let real = &self.real[ri];
            let rows_of = |labels: &[usize]| -> Vec<usize> {
                (0..labels.len()).filter(|&i| labels[i] == digit).collect()
            };
            let test_rows = rows_of(&test_labels);
            let mut train_rows = rows_of(&real.train_labels);
            train_rows.truncate(gen.n.max(2));
            if test_rows.len() < 2 || train_rows.len() < 2 {
                return Err(Error::invalid(
                    "eval",
                    format!("too few real digits {digit} for per-digit metrics"),
                ));
            }
            let pick = |values: &[f64], width: usize, rows: &[usize]| -> Vec<f64> {
                rows.iter()
                    .flat_map(|&r| values[r * width..(r + 1) * width].iter().copied())
                    .collect()
            };
            let dim = gen.d;
            let test = pick(&real.test.features, dim, &test_rows);
            let train = pick(&real.train.features, dim, &train_rows);
            let fcd = metrics::frechet_of_sets(&gen.features, gen.n, &test, test_rows.len(), dim)?;
            let fcd_base =
                metrics::frechet_of_sets(&train, train_rows.len(), &test, test_rows.len(), dim)?;
            let agreement = metrics::accuracy(&gen.logits, CLASSES, &vec![digit; gen.n])?;
            let base = metrics::accuracy(
                &pick(&real.train.logits, CLASSES, &train_rows),
                CLASSES,
                &vec![digit; train_rows.len()],
            )?;
            lowest = lowest.min(agreement);
            lowest_base = lowest_base.min(base);
            out.push(
                Metric::with_baseline(format!("digit_{digit}_agreement"), agreement, base)
                    .detail(format!("{} samples asked for {digit}", gen.n)),
            );
            out.push(Metric::with_baseline(
                format!("digit_{digit}_fcd"),
                fcd,
                fcd_base,
            ));
        }
        out.push(Metric::with_baseline(
            "lowest_digit_agreement",
            lowest,
            lowest_base,
        ));
        Ok(out)
    }
}

/// Checks the sample contract: [n, C, H, W], values in [0, 1].
pub fn check_samples(model: &str, s: &Tensor, n: usize) -> Result<()> {
    if s.rank() != 4 || s.shape()[0] != n {
        return Err(Error::shape(
            "sample",
            format!(
                "{model} returned samples of shape {:?} for n = {n}, not [n, C, H, W]",
                s.shape()
            ),
        ));
    }
    if let Some(v) = s
        .to_vec_f64()
        .into_iter()
        .find(|v| !(0.0..=1.0).contains(v))
    {
        return Err(Error::invalid(
            "sample",
            format!("{model} returned a sample value {v} outside [0, 1]"),
        ));
    }
    Ok(())
}

/// The mean over the test images of per-image quantities (NLL in nats, ELBO terms, ...):
/// `f(batch, labels, rng)` gets test batches of up to `batch_size` images in the form `pixels`
/// and returns, for each of `names`, one value per image of the batch. Runs in no-grad mode.
pub fn mean_per_image(
    ctx: &mut EvalContext,
    pixels: Pixels,
    batch_size: usize,
    names: &[&str],
    f: impl FnMut(&Tensor, &[usize], &mut Rng) -> Result<Vec<Vec<f64>>>,
) -> Result<Vec<Metric>> {
    let data = ctx.data;
    let means = means_over(&data.test, pixels, batch_size, names.len(), &mut ctx.rng, f)?;
    Ok(names
        .iter()
        .zip(means)
        .map(|(n, m)| Metric::new(*n, m))
        .collect())
}

/// [`mean_per_image`] over any split (the validation split of a run): the means of `count`
/// per-image quantities, with `rng` for `f` and for stochastic binarisation.
pub fn means_over(
    split: &data::Split,
    pixels: Pixels,
    batch_size: usize,
    count: usize,
    rng: &mut Rng,
    mut f: impl FnMut(&Tensor, &[usize], &mut Rng) -> Result<Vec<Vec<f64>>>,
) -> Result<Vec<f64>> {
    let mut sums = vec![0.0; count];
    let mut n = 0usize;
    for idx in data::Batches::sequential(split.len(), batch_size) {
        let batch = split.batch(&idx);
        let x = batch.tensor(pixels, rng)?;
        let labels = batch.label_indices();
        let values = no_grad(|| f(&x, &labels, rng))?;
        if values.len() != count || values.iter().any(|v| v.len() != idx.len()) {
            return Err(Error::shape(
                "eval",
                format!("expected {count} lists of {} values", idx.len()),
            ));
        }
        for (s, v) in sums.iter_mut().zip(&values) {
            *s += v.iter().sum::<f64>();
        }
        n += idx.len();
    }
    Ok(sums.into_iter().map(|s| s / n.max(1) as f64).collect())
}
