//! Spatial padding of [N, C, H, W] (or [C, H, W]) tensors, with PyTorch's conventions:
//! `F.pad(x, (left, right, top, bottom))` (zeros) and `mode="reflect"` (`nn.ReflectionPad2d`).
//!
//! Both are built from differentiable ops: zero padding concatenates zero blocks (backward: a
//! narrow), reflection padding is an `index_select` per axis with reflected indices (backward:
//! `index_add`, which adds a reflected position's gradient onto its source).

use super::pool::spatial_dims;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The source index of each output position of an axis of `size` reflect-padded by
/// (`before`, `after`): the edge is the mirror and is not repeated (2 1 | 0 1 2 3 | 2 1).
fn reflected(size: usize, before: usize, after: usize) -> Vec<usize> {
    (0..before + size + after)
        .map(|i| {
            let j = i as isize - before as isize;
            let last = size as isize - 1;
            let k = if j < 0 {
                -j
            } else if j > last {
                2 * last - j
            } else {
                j
            };
            k as usize
        })
        .collect()
}

impl Tensor {
    /// Zero padding of the last two axes by (left, right, top, bottom), PyTorch's
    /// `F.pad(x, (left, right, top, bottom))` / `nn.ZeroPad2d`, for [N, C, H, W] or [C, H, W].
    pub fn pad2d(
        &self,
        (left, right, top, bottom): (usize, usize, usize, usize),
    ) -> Result<Tensor> {
        const OP: &str = "pad2d";
        spatial_dims(OP, self)?;
        let zeros = |x: &Tensor, axis: usize, n: usize| {
            let mut s = x.shape().to_vec();
            s[axis] = n;
            Tensor::full_on(&s, 0.0, x.dtype(), x.device())
        };
        let around = |x: Tensor, axis: usize, before: usize, after: usize| -> Result<Tensor> {
            if before == 0 && after == 0 {
                return Ok(x);
            }
            let mut parts = Vec::with_capacity(3);
            if before > 0 {
                parts.push(zeros(&x, axis, before)?);
            }
            parts.push(x.clone());
            if after > 0 {
                parts.push(zeros(&x, axis, after)?);
            }
            Tensor::concat(&parts, axis as isize)
        };
        let r = self.rank();
        let wide = around(self.clone(), r - 1, left, right)?;
        around(wide, r - 2, top, bottom)
    }

    /// Reflection padding of the last two axes by (left, right, top, bottom), PyTorch's
    /// `F.pad(x, pads, mode="reflect")` / `nn.ReflectionPad2d`: the border row or column is the
    /// mirror and is not repeated. As in PyTorch, each pad must be smaller than its axis.
    pub fn pad2d_reflect(
        &self,
        (left, right, top, bottom): (usize, usize, usize, usize),
    ) -> Result<Tensor> {
        const OP: &str = "pad2d_reflect";
        let (_, h, w) = spatial_dims(OP, self)?;
        for (pads, size, axis) in [((left, right), w, "width"), ((top, bottom), h, "height")] {
            if pads != (0, 0) && pads.0.max(pads.1) >= size {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "padding {pads:?} of the {axis} must be smaller than it ({size}) for \
                         input {:?}",
                        self.shape()
                    ),
                ));
            }
        }
        let r = self.rank() as isize;
        let mut y = self.clone();
        if left > 0 || right > 0 {
            y = y.index_select(r - 1, &reflected(w, left, right))?;
        }
        if top > 0 || bottom > 0 {
            y = y.index_select(r - 2, &reflected(h, top, bottom))?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn reflected_indices_mirror_without_repeating_the_edge() {
        assert_eq!(reflected(4, 2, 2), vec![2, 1, 0, 1, 2, 3, 2, 1]);
        assert_eq!(reflected(3, 0, 0), vec![0, 1, 2]);
    }

    #[test]
    fn zero_and_reflect_padding() {
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 2, 3]).unwrap();
        let z = x.pad2d((1, 0, 0, 1)).unwrap();
        assert_eq!(z.shape(), &[1, 3, 4]);
        assert_eq!(
            z.to_vec_f64(),
            vec![0.0, 1.0, 2.0, 3.0, 0.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0]
        );
        let r = x.pad2d_reflect((2, 1, 1, 0)).unwrap();
        assert_eq!(r.shape(), &[1, 3, 6]);
        assert_eq!(
            r.to_vec_f64(),
            vec![
                6.0, 5.0, 4.0, 5.0, 6.0, 5.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 6.0, 5.0, 4.0, 5.0,
                6.0, 5.0
            ]
        );
    }

    #[test]
    fn bad_padding_is_an_error() {
        let x = Tensor::zeros(&[1, 1, 3, 2], DType::F32);
        let e = x.pad2d_reflect((2, 0, 0, 0)).unwrap_err().to_string();
        assert!(
            e.contains("pad2d_reflect") && e.contains("[1, 1, 3, 2]"),
            "{e}"
        );
        assert!(x.pad2d_reflect((1, 1, 3, 0)).is_err());
        assert!(x.pad2d_reflect((1, 1, 2, 2)).is_ok());
        assert!(Tensor::zeros(&[3, 2], DType::F32)
            .pad2d((1, 1, 1, 1))
            .is_err());
    }
}
