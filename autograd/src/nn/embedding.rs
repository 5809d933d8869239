//! A lookup table of learned vectors: row i of the weight is the embedding of id i.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::nn::{init, parameter, Module};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// `out[j] = W[ids[j]]` with W of shape `[num_embeddings, dim]`. The gradient of W adds each
/// output row's gradient into the row it came from (index_select's adjoint, index_add).
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The table, [num_embeddings, dim].
    pub weight: Tensor,
}

impl Embedding {
    /// A table initialised like PyTorch's: W ~ N(0, 1).
    pub fn new(
        num_embeddings: usize,
        dim: usize,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Embedding> {
        let weight = Tensor::try_zeros(&[num_embeddings, dim], dtype)?;
        init::normal_(&weight, 0.0, 1.0, rng)?;
        Ok(Embedding {
            weight: parameter(weight)?,
        })
    }

    /// A table holding `weight` [num_embeddings, dim].
    pub fn from_weight(weight: Tensor) -> Result<Embedding> {
        if weight.rank() != 2 {
            return Err(Error::shape(
                "embedding",
                format!(
                    "weight must be [num_embeddings, dim], got {:?}",
                    weight.shape()
                ),
            ));
        }
        Ok(Embedding {
            weight: parameter(weight)?,
        })
    }

    /// Rows of the table.
    pub fn num_embeddings(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Features per row.
    pub fn dim(&self) -> usize {
        self.weight.shape()[1]
    }

    /// ids `[len]` -> `[len, dim]`. Errors on an id >= num_embeddings.
    pub fn forward(&self, ids: &[usize]) -> Result<Tensor> {
        let n = self.num_embeddings();
        if let Some((j, id)) = ids.iter().enumerate().find(|(_, &id)| id >= n) {
            return Err(Error::index(
                "embedding",
                format!(
                    "id {id} at position {j} is out of range for a table of {n} embeddings (weight {:?})",
                    self.weight.shape()
                ),
            ));
        }
        self.weight.index_select(0, ids)
    }

    /// ids laid out row-major over `shape` -> [*shape, dim] (e.g. [batch, time] token ids).
    pub fn forward_shaped(&self, ids: &[usize], shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != ids.len() {
            return Err(Error::shape(
                "embedding",
                format!("{} ids do not fill shape {shape:?}", ids.len()),
            ));
        }
        let mut out_shape = shape.to_vec();
        out_shape.push(self.dim());
        self.forward(ids)?.reshape(&out_shape)
    }
}

impl Module for Embedding {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_gradient() {
        let w = Tensor::from_vec(vec![0.0f64, 1.0, 10.0, 11.0, 20.0, 21.0], &[3, 2]).unwrap();
        let emb = Embedding::from_weight(w).unwrap();
        let out = emb.forward(&[2, 0, 2]).unwrap();
        assert_eq!(out.shape(), &[3, 2]);
        assert_eq!(out.to_vec_f64(), vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
        out.sum_all().unwrap().backward().unwrap();
        assert_eq!(
            emb.weight.grad().unwrap().to_vec_f64(),
            vec![1.0, 1.0, 0.0, 0.0, 2.0, 2.0]
        );
        let shaped = emb.forward_shaped(&[0, 1, 2, 1], &[2, 2]).unwrap();
        assert_eq!(shaped.shape(), &[2, 2, 2]);
        assert!(emb.forward_shaped(&[0, 1, 2], &[2, 2]).is_err());
    }

    #[test]
    fn out_of_range_ids_are_errors() {
        let emb = Embedding::new(4, 3, DType::F32, &mut Rng::new(0)).unwrap();
        let e = emb.forward(&[1, 4]).unwrap_err().to_string();
        assert!(
            e.contains("embedding") && e.contains("id 4") && e.contains("[4, 3]"),
            "{e}"
        );
        assert_eq!(emb.forward(&[]).unwrap().shape(), &[0, 3]);
        assert!(Embedding::from_weight(Tensor::zeros(&[4], DType::F32)).is_err());
    }
}
