//! Convolution layers: Conv2d, ConvTranspose2d and PixelCNN's MaskedConv2d, with PyTorch's
//! weight layouts, parameter names ("weight", "bias") and default initialisation.

use crate::dtype::DType;
use crate::error::Result;
use crate::nn::{init, parameter, Module};
use crate::ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
use crate::rng::Rng;
use crate::tensor::Tensor;
use kernels::desc::Mask;

fn make(
    shape: &[usize],
    out_channels: usize,
    bias: bool,
    dtype: DType,
    rng: &mut Rng,
) -> Result<(Tensor, Option<Tensor>)> {
    let weight = Tensor::try_zeros(shape, dtype)?;
    let b = bias.then(|| Tensor::zeros(&[out_channels], dtype));
    init::torch_default_(&weight, b.as_ref(), rng)?;
    Ok((parameter(weight)?, b.map(parameter).transpose()?))
}

fn named(weight: &Tensor, bias: &Option<Tensor>) -> Vec<(String, Tensor)> {
    let mut v = vec![("weight".to_string(), weight.clone())];
    if let Some(b) = bias {
        v.push(("bias".to_string(), b.clone()));
    }
    v
}

/// y = W ⋆ x + b: weight [out, in/groups, kh, kw], bias `[out]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// [out, in/groups, kh, kw].
    pub weight: Tensor,
    /// `[out]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// A layer with PyTorch's default initialisation ([`init::torch_default_`]).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: Conv2dOptions,
        bias: bool,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Conv2d> {
        let groups = options.groups.max(1);
        let (weight, bias) = make(
            &[out_channels, in_channels / groups, kernel.0, kernel.1],
            out_channels,
            bias,
            dtype,
            rng,
        )?;
        Ok(Conv2d {
            weight,
            bias,
            options,
        })
    }

    /// The convolution of x [N, C, H, W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), &self.options)
    }
}

impl Module for Conv2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        named(&self.weight, &self.bias)
    }
}

/// A PixelCNN masked convolution (mask A or B, see [`Mask`]): weight [out, in, kh, kw], of which
/// only the unmasked taps are used (and trained).
#[derive(Clone, Debug)]
pub struct MaskedConv2d {
    /// [out, in/groups, kh, kw]; the masked taps are never read.
    pub weight: Tensor,
    /// `[out]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// Which taps the layer sees.
    pub mask: Mask,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

impl MaskedConv2d {
    /// A layer with PyTorch's default initialisation ([`init::torch_default_`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        mask: Mask,
        options: Conv2dOptions,
        bias: bool,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<MaskedConv2d> {
        let groups = options.groups.max(1);
        let (weight, bias) = make(
            &[out_channels, in_channels / groups, kernel.0, kernel.1],
            out_channels,
            bias,
            dtype,
            rng,
        )?;
        Ok(MaskedConv2d {
            weight,
            bias,
            mask,
            options,
        })
    }

    /// The masked convolution of x [N, C, H, W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.masked_conv2d(&self.weight, self.bias.as_ref(), self.mask, &self.options)
    }
}

impl Module for MaskedConv2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        named(&self.weight, &self.bias)
    }
}

/// The transposed convolution (fractionally strided, the DCGAN generator's upsampling):
/// weight [in, out/groups, kh, kw], bias `[out]`.
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    /// [in, out/groups, kh, kw].
    pub weight: Tensor,
    /// `[out]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// Stride, padding, output padding, dilation and groups.
    pub options: ConvTranspose2dOptions,
}

impl ConvTranspose2d {
    /// A layer with PyTorch's default initialisation ([`init::torch_default_`]).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        options: ConvTranspose2dOptions,
        bias: bool,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<ConvTranspose2d> {
        let groups = options.groups.max(1);
        let (weight, bias) = make(
            &[in_channels, out_channels / groups, kernel.0, kernel.1],
            out_channels,
            bias,
            dtype,
            rng,
        )?;
        Ok(ConvTranspose2d {
            weight,
            bias,
            options,
        })
    }

    /// The transposed convolution of x [N, C, H, W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv_transpose2d(&self.weight, self.bias.as_ref(), &self.options)
    }
}

impl Module for ConvTranspose2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        named(&self.weight, &self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_have_pytorch_shapes_and_init_bounds() {
        let mut rng = Rng::new(0);
        let c = Conv2d::new(
            4,
            6,
            (3, 3),
            Conv2dOptions::default().groups(2),
            true,
            DType::F32,
            &mut rng,
        )
        .unwrap();
        assert_eq!(c.weight.shape(), &[6, 2, 3, 3]);
        let bound = 1.0 / (2.0f64 * 9.0).sqrt();
        assert!(c
            .weight
            .to_vec_f64()
            .iter()
            .chain(c.bias.as_ref().unwrap().to_vec_f64().iter())
            .all(|v| v.abs() <= bound));
        let t = ConvTranspose2d::new(
            8,
            4,
            (4, 4),
            ConvTranspose2dOptions::default().stride(2).padding(1),
            false,
            DType::F32,
            &mut rng,
        )
        .unwrap();
        assert_eq!(t.weight.shape(), &[8, 4, 4, 4]);
        assert_eq!(t.named_parameters().len(), 1);
        let y = t
            .forward(&Tensor::zeros(&[2, 8, 7, 7], DType::F32))
            .unwrap();
        assert_eq!(y.shape(), &[2, 4, 14, 14]);
        let m = MaskedConv2d::new(
            1,
            3,
            (7, 7),
            Mask::A,
            Conv2dOptions::default().padding(3),
            true,
            DType::F32,
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            m.forward(&Tensor::zeros(&[1, 1, 28, 28], DType::F32))
                .unwrap()
                .shape(),
            &[1, 3, 28, 28]
        );
    }
}
