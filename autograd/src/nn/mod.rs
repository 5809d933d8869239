//! Neural-network building blocks: layers that own named parameters, their initialisers, and the
//! losses the lecture models need.
//!
//! Layers are plain structs with their own `forward` (its arguments differ: an embedding takes
//! ids, dropout takes a generator). What they share is the [`Module`] trait: parameters and
//! buffers listed under stable PyTorch-style names ("fc1.weight", "bn.running_mean"), so a model
//! saves and loads as a file whose names PyTorch could read, and a train/eval switch.
//!
//! A model made of layers lists its children's parameters under the child's name:
//!
//! ```
//! use autograd::nn::{self, Linear, Module};
//! use autograd::{rng::Rng, DType, Tensor};
//!
//! struct Mlp { fc1: Linear, fc2: Linear }
//! impl Module for Mlp {
//!     fn named_parameters(&self) -> Vec<(String, Tensor)> {
//!         nn::children(&[("fc1", &self.fc1), ("fc2", &self.fc2)], |m| m.named_parameters())
//!     }
//! }
//! let mut rng = Rng::new(0);
//! let mlp = Mlp {
//!     fc1: Linear::new(2, 8, true, DType::F32, &mut rng).unwrap(),
//!     fc2: Linear::new(8, 1, true, DType::F32, &mut rng).unwrap(),
//! };
//! let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
//! ```

pub mod batchnorm;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod init;
pub mod instancenorm;
pub mod linear;
pub mod loss;
pub mod lstm;
pub mod pool;

pub use batchnorm::{BatchNorm, BatchNorm1d, BatchNorm2d};
pub use conv::{Conv2d, ConvTranspose2d, MaskedConv2d};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use instancenorm::InstanceNorm2d;
pub use linear::Linear;
pub use loss::Reduction;
pub use lstm::{Lstm, LstmCell};
pub use pool::{AvgPool2d, MaxPool2d};

use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::Tensor;

/// What every layer and model shares: named parameters, named buffers and a training flag.
pub trait Module {
    /// The trainable tensors under names relative to this module, in a stable order
    /// ("weight", "bias"; a model: "fc1.weight", ...).
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// The parameters without their names, in the same order.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// State that is saved with the parameters but not trained (BatchNorm's running statistics).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Parameters then buffers: everything a checkpoint holds (PyTorch's `state_dict` names).
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut all = self.named_parameters();
        all.extend(self.named_buffers());
        all
    }

    /// Switches between training (batch statistics, dropout on) and evaluation behaviour.
    /// Layers without such a difference ignore it; models forward it to their children.
    fn set_training(&mut self, _training: bool) {}

    /// Training mode: `set_training(true)`.
    fn train(&mut self) {
        self.set_training(true)
    }

    /// Evaluation mode: `set_training(false)`.
    fn eval(&mut self) {
        self.set_training(false)
    }

    /// Clears the gradient of every parameter.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// The number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }
}

/// "prefix.name", or `name` alone when `prefix` is empty.
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Prefixes every name of `named` with `prefix` and a dot.
pub fn prefixed(prefix: &str, named: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    named
        .into_iter()
        .map(|(n, t)| (join_name(prefix, &n), t))
        .collect()
}

/// Concatenates `list(child)` over named children, each prefixed with its child's name, e.g.
/// `children(&[("enc", &self.enc), ("dec", &self.dec)], |m| m.named_parameters())`.
pub fn children(
    children: &[(&str, &dyn Module)],
    list: impl Fn(&dyn Module) -> Vec<(String, Tensor)>,
) -> Vec<(String, Tensor)> {
    children
        .iter()
        .flat_map(|(name, m)| prefixed(name, list(*m)))
        .collect()
}

/// A fresh leaf that requires grad: how layers make their parameters.
pub(crate) fn parameter(t: Tensor) -> Result<Tensor> {
    t.detach().requires_grad_(true)
}

/// Rewrites every element of a whole, contiguous tensor in place: `data[i] = f(i, data[i])`,
/// computed in f64 whatever the dtype.
pub(crate) fn update_f64(t: &Tensor, f: impl Fn(usize, f64) -> f64) -> Result<()> {
    match t.dtype() {
        DType::F32 => t.update_data::<f32>(|d| {
            for (i, v) in d.iter_mut().enumerate() {
                *v = f(i, f64::from(*v)) as f32;
            }
        }),
        DType::F64 => t.update_data::<f64>(|d| {
            for (i, v) in d.iter_mut().enumerate() {
                *v = f(i, *v);
            }
        }),
        DType::BF16 => Err(crate::error::Error::dtype(
            "init",
            "layers keep f32 or f64 parameters; cast them to bf16 where they are used",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    struct Block {
        fc: Linear,
        bn: BatchNorm1d,
    }
    impl Module for Block {
        fn named_parameters(&self) -> Vec<(String, Tensor)> {
            children(&[("fc", &self.fc), ("bn", &self.bn)], |m| {
                m.named_parameters()
            })
        }
        fn named_buffers(&self) -> Vec<(String, Tensor)> {
            children(&[("fc", &self.fc), ("bn", &self.bn)], |m| m.named_buffers())
        }
        fn set_training(&mut self, training: bool) {
            self.bn.set_training(training);
        }
    }
    struct Net {
        block: Block,
        out: Linear,
    }
    impl Module for Net {
        fn named_parameters(&self) -> Vec<(String, Tensor)> {
            children(&[("block", &self.block), ("out", &self.out)], |m| {
                m.named_parameters()
            })
        }
        fn named_buffers(&self) -> Vec<(String, Tensor)> {
            children(&[("block", &self.block), ("out", &self.out)], |m| {
                m.named_buffers()
            })
        }
        fn set_training(&mut self, training: bool) {
            self.block.set_training(training);
        }
    }

    #[test]
    fn nested_names_are_prefixed() {
        let mut rng = Rng::new(0);
        let mut net = Net {
            block: Block {
                fc: Linear::new(3, 4, true, DType::F32, &mut rng).unwrap(),
                bn: BatchNorm1d::new(4, DType::F32).unwrap(),
            },
            out: Linear::new(4, 1, false, DType::F32, &mut rng).unwrap(),
        };
        let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "block.fc.weight",
                "block.fc.bias",
                "block.bn.weight",
                "block.bn.bias",
                "out.weight"
            ]
        );
        let buffers: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(buffers, ["block.bn.running_mean", "block.bn.running_var"]);
        assert_eq!(net.state_dict().len(), 7);
        assert_eq!(net.num_parameters(), 12 + 4 + 4 + 4 + 4);
        assert!(net.parameters().iter().all(|p| p.requires_grad()));
        net.eval();
        assert!(!net.block.bn.is_training());
        net.train();
        assert!(net.block.bn.is_training());
        assert_eq!(join_name("", "w"), "w");
        assert_eq!(join_name("a", ""), "a");
    }
}
