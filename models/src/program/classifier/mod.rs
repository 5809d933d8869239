//! The evaluation harness's MNIST classifier, LeNet-style (LeCun et al. 1998), trained with our
//! own engine by `genzoo train classifier`:
//!
//! conv 5x5 (32) -> relu -> max-pool 2 -> conv 5x5 (64) -> relu -> max-pool 2 -> fc (256) -> relu
//! -> dropout -> fc (128, the penultimate features the sample metrics use) -> relu -> fc (10
//! logits). Adam with a learning rate decayed per epoch, training images shifted by up to 2
//! pixels.
//!
//! Its trained weights ship in the repository (`models/weights/classifier.safetensors`, compiled
//! in) so that `genzoo eval` works on a fresh machine; [`Classifier::shipped`] loads them.

use crate::program::checkpoint;
use crate::program::data::Batches;
use autograd::nn::{self, loss, Conv2d, Dropout, Linear, MaxPool2d, Module, Reduction};
use autograd::optim::{Adam, AdamConfig};
use autograd::{no_grad, Conv2dOptions, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub mod training;

/// The classifier's name in the registry and in its checkpoints' metadata.
pub const NAME: &str = "classifier";

/// The weights `genzoo eval` uses: `model.safetensors` of a `genzoo train classifier` run.
const SHIPPED: &[u8] = include_bytes!("../../../weights/classifier.safetensors");

/// The style classifier's weights: a run trained with `styles` 0.75 (see the weights' README).
const SHIPPED_STYLES: &[u8] = include_bytes!("../../../weights/style-classifier.safetensors");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Adam's learning rate in the first epoch.
    pub lr: f64,
    /// The learning rate is multiplied by this after every epoch.
    pub lr_decay: f64,
    /// Channels of the two convolutions.
    pub conv1: usize,
    pub conv2: usize,
    /// Width of the hidden layer and of the penultimate features.
    pub hidden: usize,
    pub features: usize,
    /// Dropout probability on the hidden layer during training.
    pub dropout: f64,
    /// Training images are shifted by up to this many pixels each way (0: no augmentation).
    pub shift: usize,
    /// The share of training images drawn in a style of the digit domains instead, a stroke and
    /// a lean picked at random ([`crate::domains::sets::with_attributes`]): 0 for the harness classifier (plain
    /// digits); the style classifier, which reads the domain models' digits, is trained on 0.75.
    pub styles: f64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            lr: 2e-3,
            lr_decay: 0.8,
            conv1: 32,
            conv2: 64,
            hidden: 256,
            features: 128,
            dropout: 0.3,
            shift: 2,
            styles: 0.0,
        }
    }
}

pub struct Classifier {
    config: ClassifierConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    dropout: Dropout,
    opt: Adam,
}

/// MNIST's pixel mean and standard deviation, to centre the input.
const MEAN: f64 = 0.1307;
const STD: f64 = 0.3081;

impl Classifier {
    pub fn new(config: ClassifierConfig, rng: &mut Rng) -> Result<Classifier> {
        for (name, v) in [
            ("conv1", config.conv1),
            ("conv2", config.conv2),
            ("hidden", config.hidden),
            ("features", config.features),
        ] {
            if v == 0 || v > 4096 {
                return Err(Error::invalid(
                    "classifier",
                    format!("{name} must be in 1..=4096, got {v}"),
                ));
            }
        }
        if !(config.lr_decay > 0.0 && config.lr_decay <= 1.0) {
            return Err(Error::invalid(
                "classifier",
                format!("lr_decay must be in (0, 1], got {}", config.lr_decay),
            ));
        }
        if !(0.0..=1.0).contains(&config.styles) {
            return Err(Error::invalid(
                "classifier",
                format!("styles must be in [0, 1], got {}", config.styles),
            ));
        }
        if config.shift > 8 {
            return Err(Error::invalid(
                "classifier",
                format!("shift must be at most 8 pixels, got {}", config.shift),
            ));
        }
        let o = Conv2dOptions::default();
        let conv1 = Conv2d::new(1, config.conv1, (5, 5), o.clone(), true, DType::F32, rng)?;
        let conv2 = Conv2d::new(config.conv1, config.conv2, (5, 5), o, true, DType::F32, rng)?;
        let fc1 = Linear::new(config.conv2 * 16, config.hidden, true, DType::F32, rng)?;
        let fc2 = Linear::new(config.hidden, config.features, true, DType::F32, rng)?;
        let fc3 = Linear::new(config.features, 10, true, DType::F32, rng)?;
        let dropout = Dropout::new(config.dropout)?;
        let mut c = Classifier {
            dropout,
            opt: Adam::new(Vec::<(String, Tensor)>::new(), AdamConfig::default())?,
            config: config.clone(),
            conv1,
            conv2,
            pool: MaxPool2d::new(2),
            fc1,
            fc2,
            fc3,
        };
        c.opt = Adam::new(
            c.named_parameters(),
            AdamConfig {
                lr: config.lr,
                ..AdamConfig::default()
            },
        )?;
        Ok(c)
    }

    /// The classifier trained by `genzoo train classifier`, shipped with the program.
    pub fn shipped() -> Result<Classifier> {
        Classifier::from_bytes(
            SHIPPED,
            "models/weights/classifier.safetensors (compiled in)",
        )
    }

    /// The style classifier, shipped with the program: the same network trained on digits drawn
    /// in the domains' strokes and leans as well as plain ones, which reads the domain models'
    /// digits (the harness classifier stays the plain-digit one, so the sample metrics keep
    /// their meaning).
    pub fn shipped_styles() -> Result<Classifier> {
        Classifier::from_bytes(
            SHIPPED_STYLES,
            "models/weights/style-classifier.safetensors (compiled in)",
        )
    }

    /// A classifier from the bytes of a checkpoint or weights file of a classifier run.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Classifier> {
        if bytes.is_empty() {
            return Err(Error::Io {
                path: name.to_string(),
                msg: "the classifier's weights are missing (empty file): run `genzoo train classifier` and copy the run's model.safetensors there, then rebuild".into(),
            });
        }
        let ck = checkpoint::from_bytes(bytes, name)?;
        if ck.meta.model != NAME {
            return Err(Error::Io {
                path: name.to_string(),
                msg: format!("holds a {:?} model, not the classifier", ck.meta.model),
            });
        }
        let config = checkpoint::parse_config(NAME, &ck.meta.config)?;
        let mut c = Classifier::new(config, &mut Rng::new(0))?;
        let weights = Module::state_dict(&c);
        checkpoint::load_state_dict(
            NAME,
            weights,
            vec![("optimizer", &mut c.opt)],
            &ck.tensors,
            name,
        )?;
        Ok(c)
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Evaluation behaviour (the classifier has no dropout or BatchNorm; kept for symmetry).
    pub fn set_eval(&mut self) {}

    /// Penultimate features [B, features] and logits [B, 10] of images [B, 1, 28, 28] in [0, 1].
    pub fn features_and_logits(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward(x, None)
    }

    /// The forward pass; with a generator, dropout is applied (training).
    fn forward(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<(Tensor, Tensor)> {
        let s = x.shape();
        if s.len() != 4 || s[1] != 1 || s[2] != 28 || s[3] != 28 {
            return Err(Error::shape(
                "classifier",
                format!("expects images [B, 1, 28, 28], got {s:?}"),
            ));
        }
        let x = x.sub_scalar(MEAN)?.div_scalar(STD)?;
        let h = self.pool.forward(&self.conv1.forward(&x)?.relu()?)?;
        let h = self.pool.forward(&self.conv2.forward(&h)?.relu()?)?;
        let h = h.flatten_from(1)?;
        let mut h = self.fc1.forward(&h)?.relu()?;
        if let Some(rng) = rng {
            h = self.dropout.forward(&h, rng)?;
        }
        let f = self.fc2.forward(&h)?.relu()?;
        let logits = self.fc3.forward(&f)?;
        Ok((f, logits))
    }

    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.features_and_logits(x)?.1)
    }

    /// Accuracy and mean cross-entropy (nats) over a split, in batches of 250.
    pub fn accuracy_and_loss(&self, split: &crate::program::data::Split) -> Result<(f64, f64)> {
        let (mut hits, mut loss_sum) = (0usize, 0.0);
        no_grad(|| -> Result<()> {
            for idx in Batches::sequential(split.len(), 250) {
                let b = split.batch(&idx);
                let logits = self.logits(&b.unit()?)?;
                let labels = b.label_indices();
                loss_sum += loss::cross_entropy(&logits, &labels, Reduction::Sum)?.item()?;
                let preds = crate::program::metrics::argmax_rows(&logits.to_vec_f64(), 10);
                hits += preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
            }
            Ok(())
        })?;
        let n = split.len().max(1) as f64;
        Ok((hits as f64 / n, loss_sum / n))
    }
}

impl Module for Classifier {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("conv1", &self.conv1),
                ("conv2", &self.conv2),
                ("fc1", &self.fc1),
                ("fc2", &self.fc2),
                ("fc3", &self.fc3),
            ],
            |m| m.named_parameters(),
        )
    }
}
