//! A fully connected layer: y = x W^T + b.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::nn::{init, parameter, Module};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// y = x W^T + b for x of shape [..., in] (any number of leading axes), W of shape [out, in]
/// and b of shape `[out]` (PyTorch's layout, so checkpoints keep PyTorch's names and layouts).
#[derive(Clone, Debug)]
pub struct Linear {
    /// W, [out, in].
    pub weight: Tensor,
    /// b, `[out]`, when the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation ([`init::torch_default_`]): W and b drawn
    /// from U(-1/sqrt(in), 1/sqrt(in)), weight first, from `rng`.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Linear> {
        let weight = Tensor::try_zeros(&[out_features, in_features], dtype)?;
        let b = bias.then(|| Tensor::zeros(&[out_features], dtype));
        init::torch_default_(&weight, b.as_ref(), rng)?;
        Ok(Linear {
            weight: parameter(weight)?,
            bias: b.map(parameter).transpose()?,
        })
    }

    /// A layer holding the given tensors (made leaves that require grad); checks that the weight
    /// is `[out, in]` and the bias `[out]` of the same dtype.
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        if weight.rank() != 2 {
            return Err(Error::shape(
                "linear",
                format!("weight must be [out, in], got {:?}", weight.shape()),
            ));
        }
        if let Some(b) = &bias {
            weight.same_dtype("linear", b)?;
            if b.shape() != [weight.shape()[0]] {
                return Err(Error::shape(
                    "linear",
                    format!(
                        "bias {:?} does not fit weight {:?}: need [{}]",
                        b.shape(),
                        weight.shape(),
                        weight.shape()[0]
                    ),
                ));
            }
        }
        Ok(Linear {
            weight: parameter(weight)?,
            bias: bias.map(parameter).transpose()?,
        })
    }

    /// The input's last axis, in.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The output's last axis, out.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// x `[..., in]` -> x W^T + b `[..., out]`. A 1-D x `[in]` gives `[out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let in_features = self.in_features();
        if x.rank() == 0 || x.shape()[x.rank() - 1] != in_features {
            return Err(Error::shape(
                "linear",
                format!(
                    "input {:?} must end in {in_features} features for weight {:?}",
                    x.shape(),
                    self.weight.shape()
                ),
            ));
        }
        self.weight.same_dtype("linear", x)?;
        let y = if x.rank() == 1 {
            x.unsqueeze(0)?.matmul_t(&self.weight)?.squeeze(0)?
        } else {
            x.matmul_t(&self.weight)?
        };
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
}

impl Module for Linear {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            out.push(("bias".to_string(), b.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_matches_hand_computation() {
        let w = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, -1.0, 0.0, 1.0], &[2, 3]).unwrap();
        let b = Tensor::from_vec(vec![0.5f64, -0.5], &[2]).unwrap();
        let lin = Linear::from_parts(w, Some(b)).unwrap();
        let x = Tensor::from_vec(vec![1.0f64, 1.0, 1.0, 0.0, 1.0, 2.0], &[2, 3]).unwrap();
        let y = lin.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.to_vec_f64(), vec![6.5, -0.5, 8.5, 1.5]);
        // 1-D and 3-D inputs
        let y1 = lin
            .forward(&Tensor::from_vec(vec![1.0f64, 1.0, 1.0], &[3]).unwrap())
            .unwrap();
        assert_eq!(y1.shape(), &[2]);
        assert_eq!(y1.to_vec_f64(), vec![6.5, -0.5]);
        let y3 = lin.forward(&x.reshape(&[2, 1, 3]).unwrap()).unwrap();
        assert_eq!(y3.shape(), &[2, 1, 2]);
        // gradients: dL/dW = sum_n g_n x_n^T, dL/db = sum_n g_n
        y.sum_all().unwrap().backward().unwrap();
        assert_eq!(
            lin.weight.grad().unwrap().to_vec_f64(),
            vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(
            lin.bias.as_ref().unwrap().grad().unwrap().to_vec_f64(),
            vec![2.0, 2.0]
        );
    }

    #[test]
    fn shapes_and_names() {
        let mut rng = Rng::new(0);
        let lin = Linear::new(5, 3, true, DType::F32, &mut rng).unwrap();
        assert_eq!(lin.weight.shape(), &[3, 5]);
        assert_eq!(lin.in_features(), 5);
        assert_eq!(lin.out_features(), 3);
        let names: Vec<String> = lin.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias"]);
        let bound = 1.0 / 5f64.sqrt();
        assert!(lin
            .parameters()
            .iter()
            .all(|p| p.to_vec_f64().iter().all(|v| v.abs() <= bound)));
        let e = lin
            .forward(&Tensor::zeros(&[2, 4], DType::F32))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linear") && e.contains("[2, 4]") && e.contains("[3, 5]"),
            "{e}"
        );
        assert!(lin.forward(&Tensor::zeros(&[2, 5], DType::F64)).is_err());
        let nb = Linear::new(5, 3, false, DType::F32, &mut rng).unwrap();
        assert_eq!(nb.parameters().len(), 1);
        assert!(Linear::from_parts(
            Tensor::zeros(&[3, 5], DType::F32),
            Some(Tensor::zeros(&[5], DType::F32))
        )
        .is_err());
        // same seed, same layer
        let a = Linear::new(4, 4, true, DType::F32, &mut Rng::new(1)).unwrap();
        let b = Linear::new(4, 4, true, DType::F32, &mut Rng::new(1)).unwrap();
        assert_eq!(a.weight.to_vec_f64(), b.weight.to_vec_f64());
    }
}
