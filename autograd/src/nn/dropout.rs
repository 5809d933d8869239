//! Dropout (Srivastava et al., 2014), the "inverted" form PyTorch uses.

use crate::backend::{Held, Storage};
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Training: y = x * m / (1 - p) with m_i ~ Bernoulli(1 - p), one uniform per element in
/// row-major order (element i is dropped when u_i < p), so `E[y] = x`. Evaluation: y = x.
/// The mask is a constant, so the gradient is g * m / (1 - p).
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f64,
    training: bool,
}

impl Dropout {
    /// Errors unless 0 <= p < 1.
    pub fn new(p: f64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("drop probability must be in [0, 1), got {p}"),
            ));
        }
        Ok(Dropout { p, training: true })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// True in training mode (elements dropped), false in evaluation (the identity).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// In training, each element zeroed with probability p and the rest scaled by 1 / (1 - p);
    /// in evaluation (or for p = 0), x itself.
    pub fn forward(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        let scale = 1.0 / (1.0 - self.p);
        let keep: Vec<f64> = (0..x.numel())
            .map(|_| if rng.uniform() < self.p { 0.0 } else { scale })
            .collect();
        let storage = Storage::from_f64s(keep, x.dtype());
        let mask = Tensor::new_internal(
            Held::new(storage),
            crate::layout::Layout::contiguous(x.shape()),
            None,
        )
        .to_device(x.device())?;
        x.mul(&mask)
    }
}

impl Module for Dropout {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn scales_kept_units_and_passes_through_in_eval() {
        let mut rng = Rng::new(0);
        let mut d = Dropout::new(0.25).unwrap();
        let x = Tensor::ones(&[100_000], DType::F64)
            .requires_grad_(true)
            .unwrap();
        let y = d.forward(&x, &mut rng).unwrap();
        let v = y.to_vec_f64();
        assert!(v.iter().all(|&e| e == 0.0 || (e - 4.0 / 3.0).abs() < 1e-12));
        let kept = v.iter().filter(|&&e| e != 0.0).count() as f64 / v.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 1.0).abs() < 0.02);
        y.sum_all().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec_f64(), v);
        d.eval();
        let z = d.forward(&x, &mut rng).unwrap();
        assert_eq!(z.to_vec_f64(), x.to_vec_f64());
        // the same seed drops the same units
        d.train();
        let a = d.forward(&x, &mut Rng::new(5)).unwrap().to_vec_f64();
        let b = d.forward(&x, &mut Rng::new(5)).unwrap().to_vec_f64();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_probabilities_are_errors() {
        for p in [-0.1, 1.0, 2.0, f64::NAN] {
            let e = Dropout::new(p).unwrap_err().to_string();
            assert!(e.contains("dropout"), "{e}");
        }
        let d = Dropout::new(0.0).unwrap();
        let x = Tensor::ones(&[3], DType::F32);
        assert_eq!(
            d.forward(&x, &mut Rng::new(0)).unwrap().to_vec_f64(),
            vec![1.0; 3]
        );
    }
}
