//! Pooling layers: thin wrappers over [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`] with
//! PyTorch's `nn.MaxPool2d` / `nn.AvgPool2d` defaults (stride = kernel, no padding, dilation 1,
//! `count_include_pad = true`, `ceil_mode = false`). They have no parameters.

use crate::error::Result;
use crate::nn::Module;
use crate::tensor::Tensor;

/// PyTorch's `nn.MaxPool2d(kernel, stride, padding, dilation)` over [N, C, H, W] or [C, H, W].
/// Each field is (height, width).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Padding on both sides of each axis (never chosen as a maximum).
    pub padding: (usize, usize),
    /// Spacing between a window's taps.
    pub dilation: (usize, usize),
}

impl MaxPool2d {
    /// A square `kernel` with PyTorch's defaults: stride = kernel, padding 0, dilation 1.
    pub fn new(kernel: usize) -> MaxPool2d {
        MaxPool2d {
            kernel: (kernel, kernel),
            stride: (kernel, kernel),
            padding: (0, 0),
            dilation: (1, 1),
        }
    }

    /// A square stride.
    pub fn stride(mut self, stride: usize) -> MaxPool2d {
        self.stride = (stride, stride);
        self
    }

    /// The same padding on every side.
    pub fn padding(mut self, padding: usize) -> MaxPool2d {
        self.padding = (padding, padding);
        self
    }

    /// A square dilation.
    pub fn dilation(mut self, dilation: usize) -> MaxPool2d {
        self.dilation = (dilation, dilation);
        self
    }

    /// The pooled x ([`Tensor::max_pool2d`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.kernel, self.stride, self.padding, self.dilation)
    }
}

impl Module for MaxPool2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// PyTorch's `nn.AvgPool2d(kernel, stride, padding, count_include_pad=...)` over [N, C, H, W]
/// or [C, H, W]. Each tuple is (height, width).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Zero padding on both sides of each axis.
    pub padding: (usize, usize),
    /// Divide by the whole window (true, PyTorch's default) or by its positions inside the input.
    pub count_include_pad: bool,
}

impl AvgPool2d {
    /// A square `kernel` with PyTorch's defaults: stride = kernel, padding 0,
    /// `count_include_pad = true`.
    pub fn new(kernel: usize) -> AvgPool2d {
        AvgPool2d {
            kernel: (kernel, kernel),
            stride: (kernel, kernel),
            padding: (0, 0),
            count_include_pad: true,
        }
    }

    /// A square stride.
    pub fn stride(mut self, stride: usize) -> AvgPool2d {
        self.stride = (stride, stride);
        self
    }

    /// The same padding on every side.
    pub fn padding(mut self, padding: usize) -> AvgPool2d {
        self.padding = (padding, padding);
        self
    }

    /// Sets `count_include_pad`.
    pub fn count_include_pad(mut self, include: bool) -> AvgPool2d {
        self.count_include_pad = include;
        self
    }

    /// The pooled x ([`Tensor::avg_pool2d`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d(
            self.kernel,
            self.stride,
            self.padding,
            self.count_include_pad,
        )
    }
}

impl Module for AvgPool2d {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn layers_use_pytorch_defaults() {
        let x = Tensor::from_vec((0..16).map(f64::from).collect(), &[1, 1, 4, 4]).unwrap();
        let max = MaxPool2d::new(2);
        assert_eq!(max.stride, (2, 2));
        assert_eq!(
            max.forward(&x).unwrap().to_vec_f64(),
            vec![5.0, 7.0, 13.0, 15.0]
        );
        let avg = AvgPool2d::new(2);
        assert_eq!(
            avg.forward(&x).unwrap().to_vec_f64(),
            vec![2.5, 4.5, 10.5, 12.5]
        );
        let y = AvgPool2d::new(3)
            .stride(1)
            .padding(1)
            .count_include_pad(false)
            .forward(&Tensor::ones(&[2, 3, 3], DType::F64))
            .unwrap();
        assert_eq!(y.to_vec_f64(), vec![1.0; 18]);
        assert_eq!(
            MaxPool2d::new(3)
                .stride(1)
                .padding(1)
                .dilation(1)
                .forward(&x)
                .unwrap()
                .shape(),
            &[1, 1, 4, 4]
        );
        assert!(max.named_parameters().is_empty());
    }
}
