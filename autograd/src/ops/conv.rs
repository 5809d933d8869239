//! 2-D convolution, transposed convolution and masked (PixelCNN) convolution, NCHW, with
//! PyTorch's weight layouts and output sizes.
//!
//! All three rest on three recorded ops over one `ConvGeometry` (see `kernels::cpu::conv`):
//! `Conv` (y = W ⋆ x), `ConvInputGrad` (its adjoint in x, which *is* conv_transpose2d) and
//! `ConvWeightGrad` (its adjoint in W). Each one's backward is written with the other two, so
//! convolutions are differentiable to any order (WGAN-GP's penalty through a DCGAN critic).

use crate::error::{Error, Result};
use crate::op::Op;
use crate::tensor::Tensor;
use kernels::desc::{conv_out_size, mask_taps, ConvGeometry, Mask};
use std::sync::Arc;

/// Options of `conv2d` and `masked_conv2d`; PyTorch's defaults (stride 1, no padding, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// (row, column) stride.
    pub stride: (usize, usize),
    /// (top, bottom, left, right)
    pub padding: (usize, usize, usize, usize),
    /// (row, column) spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Channel groups, each with its own slice of the weight.
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: (1, 1),
            padding: (0, 0, 0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// A square stride.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// The same padding on all four sides.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p, p, p);
        self
    }
    /// Per-side padding (top, bottom, left, right), e.g. for causal convolutions.
    pub fn padding_sides(mut self, top: usize, bottom: usize, left: usize, right: usize) -> Self {
        self.padding = (top, bottom, left, right);
        self
    }
    /// A square dilation.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// Sets the channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Options of `conv_transpose2d`; PyTorch's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// (row, column) stride.
    pub stride: (usize, usize),
    /// (height, width): removed from both sides of the output, as in PyTorch
    pub padding: (usize, usize),
    /// (height, width): added to the bottom/right of the output
    pub output_padding: (usize, usize),
    /// (row, column) spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Channel groups, each with its own slice of the weight.
    pub groups: usize,
}

impl Default for ConvTranspose2dOptions {
    fn default() -> Self {
        ConvTranspose2dOptions {
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl ConvTranspose2dOptions {
    /// A square stride.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// The same padding on both axes.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    /// The same output padding on both axes.
    pub fn output_padding(mut self, p: usize) -> Self {
        self.output_padding = (p, p);
        self
    }
    /// A square dilation.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// Sets the channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

fn input_shape(g: &ConvGeometry) -> [usize; 4] {
    [g.n, g.c_in, g.h, g.w]
}
fn output_shape(g: &ConvGeometry) -> [usize; 4] {
    [g.n, g.c_out, g.ho, g.wo]
}
fn weight_shape(g: &ConvGeometry) -> [usize; 4] {
    [g.c_out, g.c_in / g.groups, g.kh, g.kw]
}

fn expect_shape(op: &'static str, what: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?}, the geometry needs {shape:?}",
                t.shape()
            ),
        ));
    }
    Ok(())
}

impl Tensor {
    /// The recorded convolution y = W ⋆ x over `geo`.
    pub(crate) fn conv_op(x: &Tensor, w: &Tensor, geo: &Arc<ConvGeometry>) -> Result<Tensor> {
        expect_shape("conv2d", "input", x, &input_shape(geo))?;
        expect_shape("conv2d", "weight", w, &weight_shape(geo))?;
        let op = Op::Conv {
            x: x.clone(),
            w: w.clone(),
            geo: geo.clone(),
        };
        let storage = x
            .storage()
            .conv_forward(x.layout(), &w.storage(), w.layout(), geo)?;
        Ok(Tensor::from_op_result(storage, &output_shape(geo), op))
    }

    /// The recorded adjoint of the convolution in its input (conv_transpose2d's forward).
    pub(crate) fn conv_input_grad_op(
        dy: &Tensor,
        w: &Tensor,
        geo: &Arc<ConvGeometry>,
    ) -> Result<Tensor> {
        expect_shape(
            "conv2d_input_grad",
            "output gradient",
            dy,
            &output_shape(geo),
        )?;
        expect_shape("conv2d_input_grad", "weight", w, &weight_shape(geo))?;
        let op = Op::ConvInputGrad {
            dy: dy.clone(),
            w: w.clone(),
            geo: geo.clone(),
        };
        let storage = dy
            .storage()
            .conv_input_grad(dy.layout(), &w.storage(), w.layout(), geo)?;
        Ok(Tensor::from_op_result(storage, &input_shape(geo), op))
    }

    /// The recorded adjoint of the convolution in its weight.
    pub(crate) fn conv_weight_grad_op(
        x: &Tensor,
        dy: &Tensor,
        geo: &Arc<ConvGeometry>,
    ) -> Result<Tensor> {
        expect_shape("conv2d_weight_grad", "input", x, &input_shape(geo))?;
        expect_shape(
            "conv2d_weight_grad",
            "output gradient",
            dy,
            &output_shape(geo),
        )?;
        let op = Op::ConvWeightGrad {
            x: x.clone(),
            dy: dy.clone(),
            geo: geo.clone(),
        };
        let storage = x
            .storage()
            .conv_weight_grad(x.layout(), &dy.storage(), dy.layout(), geo)?;
        Ok(Tensor::from_op_result(storage, &weight_shape(geo), op))
    }

    /// 2-D convolution (cross-correlation, as in PyTorch): x [N, Cin, H, W], weight
    /// [Cout, Cin/groups, kh, kw], optional bias `[Cout]` -> [N, Cout, Ho, Wo] with
    /// Ho = (H + top + bottom - dilation (kh - 1) - 1) / stride + 1.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv2dOptions,
    ) -> Result<Tensor> {
        self.conv2d_with_taps("conv2d", weight, bias, opts, None)
    }

    /// A PixelCNN masked convolution: as `conv2d`, but only the taps `mask` keeps take part
    /// (see [`Mask`]); the masked taps are skipped, not multiplied by zero, and their weights get
    /// zero gradient. Works for k x k, k x 1 and 1 x k kernels.
    pub fn masked_conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        mask: Mask,
        opts: &Conv2dOptions,
    ) -> Result<Tensor> {
        self.conv2d_with_taps("masked_conv2d", weight, bias, opts, Some(mask))
    }

    fn conv2d_with_taps(
        &self,
        op: &'static str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv2dOptions,
        mask: Option<Mask>,
    ) -> Result<Tensor> {
        self.same_dtype(op, weight)?;
        let (x, w) = (self.shape(), weight.shape());
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::shape(op, format!("needs input [N, C, H, W] and weight [Cout, Cin/groups, kh, kw], got {x:?} and {w:?}")));
        }
        let g = opts.groups;
        if g == 0 || x[1] % g != 0 || w[0] % g != 0 {
            return Err(Error::shape(
                op,
                format!(
                    "groups {g} must divide input channels {} and output channels {}",
                    x[1], w[0]
                ),
            ));
        }
        if w[1] * g != x[1] {
            return Err(Error::shape(
                op,
                format!(
                    "input has {} channels but weight expects {} ({x:?} vs {w:?}, groups {g})",
                    x[1],
                    w[1] * g
                ),
            ));
        }
        check_positive(op, opts.stride, opts.dilation, (w[2], w[3]))?;
        let (pt, pb, pl, pr) = opts.padding;
        let ho = conv_out_size(x[2], pt, pb, w[2], opts.stride.0, opts.dilation.0);
        let wo = conv_out_size(x[3], pl, pr, w[3], opts.stride.1, opts.dilation.1);
        let (ho, wo) = match (ho, wo) {
            (Some(ho), Some(wo)) => (ho, wo),
            _ => {
                return Err(Error::shape(
                    op,
                    format!(
                        "kernel {}x{} (dilation {:?}) does not fit input {x:?} padded by {:?}",
                        w[2], w[3], opts.dilation, opts.padding
                    ),
                ))
            }
        };
        let geo = Arc::new(ConvGeometry {
            n: x[0],
            c_in: x[1],
            h: x[2],
            w: x[3],
            c_out: w[0],
            kh: w[2],
            kw: w[3],
            stride: opts.stride,
            pad: opts.padding,
            dilation: opts.dilation,
            groups: g,
            ho,
            wo,
            taps: mask_taps(w[2], w[3], mask),
        });
        let y = Tensor::conv_op(self, weight, &geo)?;
        add_channel_bias(op, y, bias, w[0])
    }

    /// Transposed convolution (the adjoint of conv2d in its input), as PyTorch's:
    /// x [N, Cin, H, W], weight [Cin, Cout/groups, kh, kw] -> [N, Cout, Ho, Wo] with
    /// Ho = (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1.
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &ConvTranspose2dOptions,
    ) -> Result<Tensor> {
        let op = "conv_transpose2d";
        self.same_dtype(op, weight)?;
        let (x, w) = (self.shape(), weight.shape());
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::shape(op, format!("needs input [N, C, H, W] and weight [Cin, Cout/groups, kh, kw], got {x:?} and {w:?}")));
        }
        let g = opts.groups;
        if g == 0 || x[1] % g != 0 {
            return Err(Error::shape(
                op,
                format!("groups {g} must divide input channels {}", x[1]),
            ));
        }
        if w[0] != x[1] {
            return Err(Error::shape(
                op,
                format!(
                    "input has {} channels but weight expects {} ({x:?} vs {w:?})",
                    x[1], w[0]
                ),
            ));
        }
        check_positive(op, opts.stride, opts.dilation, (w[2], w[3]))?;
        let (op_h, op_w) = opts.output_padding;
        if op_h >= opts.stride.0.max(opts.dilation.0) || op_w >= opts.stride.1.max(opts.dilation.1)
        {
            return Err(Error::invalid(
                op,
                format!(
                    "output_padding {:?} must be smaller than stride {:?} or dilation {:?}",
                    opts.output_padding, opts.stride, opts.dilation
                ),
            ));
        }
        let out_size = |input: usize, s: usize, p: usize, d: usize, k: usize, extra: usize| {
            ((input.max(1) - 1) * s + d * (k - 1) + extra + 1).checked_sub(2 * p)
        };
        let ho = out_size(
            x[2],
            opts.stride.0,
            opts.padding.0,
            opts.dilation.0,
            w[2],
            op_h,
        );
        let wo = out_size(
            x[3],
            opts.stride.1,
            opts.padding.1,
            opts.dilation.1,
            w[3],
            op_w,
        );
        let (ho, wo) = match (ho, wo) {
            (Some(ho), Some(wo)) if ho > 0 && wo > 0 && x[2] > 0 && x[3] > 0 => (ho, wo),
            _ => {
                return Err(Error::shape(
                    op,
                    format!(
                        "padding {:?} leaves no output for input {x:?} and kernel {}x{}",
                        opts.padding, w[2], w[3]
                    ),
                ))
            }
        };
        // the convolution whose input gradient this is: input [N, Cout, Ho, Wo] -> output [N, Cin, H, W]
        let geo = Arc::new(ConvGeometry {
            n: x[0],
            c_in: w[1] * g,
            h: ho,
            w: wo,
            c_out: x[1],
            kh: w[2],
            kw: w[3],
            stride: opts.stride,
            pad: (
                opts.padding.0,
                opts.padding.0,
                opts.padding.1,
                opts.padding.1,
            ),
            dilation: opts.dilation,
            groups: g,
            ho: x[2],
            wo: x[3],
            taps: mask_taps(w[2], w[3], None),
        });
        let y = Tensor::conv_input_grad_op(self, weight, &geo)?;
        add_channel_bias(op, y, bias, w[1] * g)
    }
}

fn check_positive(
    op: &'static str,
    stride: (usize, usize),
    dilation: (usize, usize),
    kernel: (usize, usize),
) -> Result<()> {
    if stride.0 == 0
        || stride.1 == 0
        || dilation.0 == 0
        || dilation.1 == 0
        || kernel.0 == 0
        || kernel.1 == 0
    {
        return Err(Error::invalid(op, format!("stride {stride:?}, dilation {dilation:?} and kernel {kernel:?} must all be positive")));
    }
    Ok(())
}

fn add_channel_bias(
    op: &'static str,
    y: Tensor,
    bias: Option<&Tensor>,
    channels: usize,
) -> Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(b) => {
            if b.shape() != [channels] {
                return Err(Error::shape(
                    op,
                    format!("bias has shape {:?}, expected [{channels}]", b.shape()),
                ));
            }
            y.add(&b.reshape(&[1, channels, 1, 1])?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn masks_keep_the_causal_taps() {
        assert_eq!(
            mask_taps(3, 3, Some(Mask::A)),
            vec![(0, 0), (0, 1), (0, 2), (1, 0)]
        );
        assert_eq!(
            mask_taps(3, 3, Some(Mask::B)),
            vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
        );
        assert_eq!(mask_taps(3, 1, Some(Mask::B)), vec![(0, 0), (1, 0)]);
        assert_eq!(mask_taps(1, 3, Some(Mask::A)), vec![(0, 0)]);
        assert_eq!(mask_taps(7, 7, Some(Mask::A)).len(), 24);
        assert_eq!(mask_taps(2, 2, None).len(), 4);
    }

    #[test]
    fn output_sizes_follow_pytorch() {
        let x = Tensor::zeros(&[2, 4, 7, 7], DType::F32);
        let w = Tensor::zeros(&[4, 3, 4, 4], DType::F32);
        let y = x
            .conv_transpose2d(
                &w,
                None,
                &ConvTranspose2dOptions::default().stride(2).padding(1),
            )
            .unwrap();
        assert_eq!(y.shape(), &[2, 3, 14, 14]);
        let y = x
            .conv_transpose2d(
                &w,
                None,
                &ConvTranspose2dOptions::default()
                    .stride(2)
                    .padding(1)
                    .output_padding(1),
            )
            .unwrap();
        assert_eq!(y.shape(), &[2, 3, 15, 15]);
        let w = Tensor::zeros(&[8, 4, 4, 4], DType::F32);
        let y = x
            .conv2d(&w, None, &Conv2dOptions::default().stride(2).padding(1))
            .unwrap();
        assert_eq!(y.shape(), &[2, 8, 3, 3]);
    }

    #[test]
    fn bad_shapes_are_errors_naming_the_op() {
        let x = Tensor::zeros(&[64, 3, 28, 28], DType::F32);
        let w = Tensor::zeros(&[64, 1, 4, 4], DType::F32);
        let e = x
            .conv2d(&w, None, &Conv2dOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conv2d") && e.contains("3 channels") && e.contains("[64, 1, 4, 4]"),
            "{e}"
        );
        let big = Tensor::zeros(&[1, 1, 9, 9], DType::F32);
        assert!(Tensor::zeros(&[1, 1, 3, 3], DType::F32)
            .conv2d(&big, None, &Conv2dOptions::default())
            .is_err());
        assert!(x
            .conv2d(
                &Tensor::zeros(&[4, 3, 3, 3], DType::F32),
                None,
                &Conv2dOptions::default().stride(0)
            )
            .is_err());
        assert!(x
            .conv2d(
                &Tensor::zeros(&[4, 3, 3, 3], DType::F32),
                None,
                &Conv2dOptions::default().groups(2)
            )
            .is_err());
        let w_t = Tensor::zeros(&[3, 2, 3, 3], DType::F32);
        assert!(x
            .conv_transpose2d(
                &w_t,
                None,
                &ConvTranspose2dOptions::default()
                    .stride(2)
                    .output_padding(2)
            )
            .is_err());
    }
}
