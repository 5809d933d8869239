//! Spatial upsampling of [N, C, H, W] (or [C, H, W]) tensors by an integer factor, with
//! PyTorch's `F.interpolate(x, scale_factor=factor, mode=...)` conventions.
//!
//! Both are built from differentiable ops: nearest is a broadcast of each pixel to a block,
//! copied (backward: a sum over each block of copies); bilinear is linear and
//! separable, y = A_h · x · A_wᵀ with one interpolation matrix per axis (two matmuls).

use super::pool::{separable, spatial_dims};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn check_factor(op: &'static str, x: &Tensor, factor: usize) -> Result<(usize, usize)> {
    let (_, h, w) = spatial_dims(op, x)?;
    if factor == 0 {
        return Err(Error::invalid(
            op,
            format!(
                "the scale factor must be positive, got 0 (input {:?})",
                x.shape()
            ),
        ));
    }
    Ok((h, w))
}

/// The [size·factor, size] matrix of 1-D linear interpolation, PyTorch's source-index rule:
/// with `align_corners`, src = dst · (size-1)/(out-1) (corner pixels' centres align);
/// without, src = max(0, (dst + 0.5) / factor - 0.5) (half-pixel centres, clamped at the edge).
fn linear_matrix(size: usize, factor: usize, align_corners: bool) -> Vec<f64> {
    let out = size * factor;
    let mut m = vec![0.0; out * size];
    if size == 0 {
        return m;
    }
    for o in 0..out {
        let src = if align_corners {
            if out > 1 {
                o as f64 * (size - 1) as f64 / (out - 1) as f64
            } else {
                0.0
            }
        } else {
            ((o as f64 + 0.5) / factor as f64 - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(size - 1);
        let i1 = if i0 + 1 < size { i0 + 1 } else { i0 };
        let l1 = src - i0 as f64;
        m[o * size + i0] += 1.0 - l1;
        m[o * size + i1] += l1;
    }
    m
}

impl Tensor {
    /// Nearest-neighbour upsampling of the last two axes by an integer `factor`: each input
    /// pixel becomes a factor x factor block. PyTorch's
    /// `F.interpolate(x, scale_factor=factor, mode="nearest")` / `nn.UpsamplingNearest2d`.
    pub fn upsample_nearest2d(&self, factor: usize) -> Result<Tensor> {
        const OP: &str = "upsample_nearest2d";
        let (h, w) = check_factor(OP, self, factor)?;
        if factor == 1 {
            return Ok(self.clone());
        }
        // [.., h, 1, w, 1] broadcast to [.., h, f, w, f] and copied: each pixel a block
        let lead = &self.shape()[..self.rank() - 2];
        let with = |inner: [usize; 4]| [lead, &inner[..]].concat();
        self.reshape(&with([h, 1, w, 1]))?
            .expand(&with([h, factor, w, factor]))?
            .reshape(&[lead, &[h * factor, w * factor][..]].concat())
    }

    /// Bilinear upsampling of the last two axes by an integer `factor`: PyTorch's
    /// `F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=align_corners)`.
    /// With `align_corners` the corner pixels of input and output coincide (PyTorch's
    /// `nn.UpsamplingBilinear2d`); without it (PyTorch's default) pixels are areas whose
    /// centres sit at half-integers, and positions beyond the edge clamp to it.
    pub fn upsample_bilinear2d(&self, factor: usize, align_corners: bool) -> Result<Tensor> {
        const OP: &str = "upsample_bilinear2d";
        let (h, w) = check_factor(OP, self, factor)?;
        separable(
            self,
            linear_matrix(h, factor, align_corners),
            h * factor,
            linear_matrix(w, factor, align_corners),
            w * factor,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn nearest_repeats_blocks() {
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
        let y = x.upsample_nearest2d(2).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        assert_eq!(
            y.to_vec_f64(),
            vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]
        );
    }

    #[test]
    fn bilinear_rows_sum_to_one() {
        for align in [false, true] {
            for size in 1..5 {
                for f in 1..4 {
                    let m = linear_matrix(size, f, align);
                    for row in m.chunks(size) {
                        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                    }
                }
            }
        }
        // align_corners: the ends map onto the ends
        let m = linear_matrix(3, 2, true);
        assert_eq!(&m[..3], &[1.0, 0.0, 0.0]);
        assert_eq!(&m[15..], &[0.0, 0.0, 1.0]);
        // half-pixel: out 1 of factor 2 sits at src 0.25
        let m = linear_matrix(3, 2, false);
        assert_eq!(&m[3..6], &[0.75, 0.25, 0.0]);
    }

    #[test]
    fn bad_factor_or_rank_is_an_error() {
        let x = Tensor::zeros(&[1, 1, 2, 2], DType::F32);
        let e = x.upsample_bilinear2d(0, false).unwrap_err().to_string();
        assert!(
            e.contains("upsample_bilinear2d") && e.contains("[1, 1, 2, 2]"),
            "{e}"
        );
        assert!(x.upsample_nearest2d(0).is_err());
        assert!(Tensor::zeros(&[2, 2], DType::F32)
            .upsample_nearest2d(2)
            .is_err());
    }
}
