//! 2-D pooling over the last two axes of [N, C, H, W] (or [C, H, W]) tensors, with PyTorch's
//! `F.max_pool2d` / `F.avg_pool2d` conventions (`ceil_mode=False`).
//!
//! Both are built from existing differentiable ops, so their gradients (and gradients of
//! gradients) need no rules of their own:
//! - max pooling: a kernel finds each window's argmax, then the output is a `gather` of the
//!   flattened spatial axis at those indices (backward: `scatter_add`, whose backward is `gather`);
//! - average pooling is linear and separable: y = P_h · x · P_wᵀ with one small averaging matrix
//!   per axis, two matmuls (backward: the transposed matmuls); windows that tile the input
//!   (stride = kernel, no padding) are a reshape and a sum over each block (backward: expand).
//!
//! Also here: the spatial-shape helpers shared with padding and upsampling.

use crate::error::{Error, Result};
use crate::op::Indices;
use crate::tensor::Tensor;
use kernels::desc::WindowAxis;

/// Checks that `x` is [N, C, H, W] or [C, H, W] and returns (planes = N·C, H, W).
pub(crate) fn spatial_dims(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if !(s.len() == 3 || s.len() == 4) {
        return Err(Error::shape(
            op,
            format!("expects an [N, C, H, W] or [C, H, W] input, got {s:?}"),
        ));
    }
    let r = s.len();
    Ok((s[..r - 2].iter().product(), s[r - 2], s[r - 1]))
}

/// `x`'s shape with the last two axes replaced by (h, w).
pub(crate) fn with_spatial(x: &Tensor, h: usize, w: usize) -> Vec<usize> {
    let mut s = x.shape().to_vec();
    let r = s.len();
    s[r - 2] = h;
    s[r - 1] = w;
    s
}

/// y = A_h · x · A_wᵀ over the last two axes: `rows` is A_h ([ho, h], row-major), `cols` is
/// A_w ([wo, w]). Two matmuls with constant matrices, so differentiable to any order.
pub(crate) fn separable(
    x: &Tensor,
    rows: Vec<f64>,
    ho: usize,
    cols: Vec<f64>,
    wo: usize,
) -> Result<Tensor> {
    let r = x.rank();
    let (h, w) = (x.shape()[r - 2], x.shape()[r - 1]);
    debug_assert_eq!(rows.len(), ho * h);
    debug_assert_eq!(cols.len(), wo * w);
    // A_wᵀ as a [w, wo] matrix
    let mut cols_t = vec![0.0; w * wo];
    for o in 0..wo {
        for i in 0..w {
            cols_t[i * wo + o] = cols[o * w + i];
        }
    }
    let a_wt = constant(cols_t, &[w, wo], x)?;
    let a_h = constant(rows, &[ho, h], x)?;
    a_h.matmul(&x.matmul(&a_wt)?)
}

/// Whether the windows of `a` tile its axis: side by side, unpadded, covering every position.
fn tiles(a: &WindowAxis) -> bool {
    a.stride == a.kernel && a.pad == 0 && a.dilation == 1 && a.out * a.kernel == a.size
}

/// The mean of each window of windows that tile both axes ([`tiles`]): x viewed as
/// [.., ho, kh, wo, kw] and summed over kh and kw, one reduction (its backward an expand)
/// where the separable form takes two matmuls whose inner sizes are a few pixels.
fn block_mean(x: &Tensor, rows: &WindowAxis, cols: &WindowAxis) -> Result<Tensor> {
    let lead = &x.shape()[..x.rank() - 2];
    let mut blocks = lead.to_vec();
    blocks.extend([rows.out, rows.kernel, cols.out, cols.kernel]);
    let r = lead.len() as isize;
    x.reshape(&blocks)?
        .sum(&[r + 1, r + 3], false)?
        .mul_scalar(1.0 / (rows.kernel * cols.kernel) as f64)
}

/// `data` as a constant of `like`'s dtype on its device (not the default device: an op follows
/// its inputs).
fn constant(data: Vec<f64>, shape: &[usize], like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, shape)?
        .to_dtype(like.dtype())?
        .to_device(like.device())
}

/// Checks one axis of a pooling window and returns its geometry (PyTorch's rules: kernel and
/// stride > 0, dilation > 0, pad <= kernel / 2, at least one output position).
fn window_axis(
    op: &'static str,
    x: &Tensor,
    (size, kernel, stride, pad, dilation): (usize, usize, usize, usize, usize),
) -> Result<WindowAxis> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(Error::invalid(
            op,
            format!(
                "kernel, stride and dilation must be positive, got kernel {kernel}, stride \
                 {stride}, dilation {dilation} (input {:?})",
                x.shape()
            ),
        ));
    }
    if pad > kernel / 2 {
        return Err(Error::invalid(
            op,
            format!(
                "padding {pad} must be at most half the kernel size {kernel} (input {:?})",
                x.shape()
            ),
        ));
    }
    let span = dilation * (kernel - 1) + 1;
    if size + 2 * pad < span {
        return Err(Error::shape(
            op,
            format!(
                "the window (kernel {kernel}, dilation {dilation}, span {span}) is larger than \
                 the padded input ({size} + 2·{pad}) of input {:?}",
                x.shape()
            ),
        ));
    }
    Ok(WindowAxis {
        size,
        kernel,
        stride,
        pad,
        dilation,
        out: (size + 2 * pad - span) / stride + 1,
    })
}

/// The two window axes of a pooling op on `x`.
fn windows(
    op: &'static str,
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
) -> Result<(usize, WindowAxis, WindowAxis)> {
    let (planes, h, w) = spatial_dims(op, x)?;
    let rows = window_axis(op, x, (h, kernel.0, stride.0, padding.0, dilation.0))?;
    let cols = window_axis(op, x, (w, kernel.1, stride.1, padding.1, dilation.1))?;
    Ok((planes, rows, cols))
}

impl Tensor {
    /// Max pooling over windows of `kernel` = (kh, kw) with `stride`, zero-or-more `padding`
    /// (which acts as -inf) and `dilation` on each of (H, W): PyTorch's
    /// `F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=False)` for [N, C, H, W] or
    /// [C, H, W] input. Output side: (size + 2·pad - dilation·(kernel-1) - 1) / stride + 1.
    ///
    /// The gradient goes to each window's maximum (the first one on ties, as in PyTorch).
    /// Errors on a zero kernel, stride or dilation, padding above kernel / 2, a window larger
    /// than the padded input, and a window that lies entirely in the padding (where PyTorch
    /// would output -inf).
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
    ) -> Result<Tensor> {
        const OP: &str = "max_pool2d";
        let (planes, rows, cols) = windows(OP, self, kernel, stride, padding, dilation)?;
        for (axis, name) in [(&rows, "rows"), (&cols, "columns")] {
            if (0..axis.out).any(|o| axis.taps(o).next().is_none()) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "a window over the {name} lies entirely in the padding (kernel \
                         {kernel:?}, stride {stride:?}, padding {padding:?}, dilation \
                         {dilation:?}, input {:?})",
                        self.shape()
                    ),
                ));
            }
        }
        let index = self
            .storage()
            .max_pool2d_argmax(self.layout(), planes, &rows, &cols)?;
        let index = Indices::new(index, &[planes, rows.out * cols.out])?;
        self.reshape(&[planes, rows.size * cols.size])?
            .gather(1, &index)?
            .reshape(&with_spatial(self, rows.out, cols.out))
    }

    /// Average pooling over windows of `kernel` = (kh, kw) with `stride` and zero `padding` on
    /// each of (H, W): PyTorch's `F.avg_pool2d(x, kernel, stride, padding, ceil_mode=False,
    /// count_include_pad)` for [N, C, H, W] or [C, H, W] input. With `count_include_pad` (PyTorch's
    /// default) every window divides by kh·kw; without it, by the number of its positions that
    /// lie inside the input. Errors as [`Tensor::max_pool2d`] does (without dilation).
    pub fn avg_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        count_include_pad: bool,
    ) -> Result<Tensor> {
        const OP: &str = "avg_pool2d";
        let (_, rows, cols) = windows(OP, self, kernel, stride, padding, (1, 1))?;
        if tiles(&rows) && tiles(&cols) {
            return block_mean(self, &rows, &cols);
        }
        // The window is a rectangle, so is its intersection with the input, and the divisor
        // factors into a row count times a column count: the map is separable.
        let matrix = |a: &WindowAxis| {
            let mut m = vec![0.0; a.out * a.size];
            for o in 0..a.out {
                let divisor = if count_include_pad {
                    a.kernel
                } else {
                    a.taps(o).count()
                };
                for i in a.taps(o) {
                    m[o * a.size + i] = 1.0 / divisor as f64;
                }
            }
            m
        };
        separable(self, matrix(&rows), rows.out, matrix(&cols), cols.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec((0..n).map(|v| v as f64).collect(), shape).unwrap()
    }

    #[test]
    fn max_pool_picks_window_maxima() {
        let x = ramp(&[1, 1, 4, 4]);
        let y = x.max_pool2d((2, 2), (2, 2), (0, 0), (1, 1)).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_vec_f64(), vec![5.0, 7.0, 13.0, 15.0]);
        // padding is -inf: negative inputs still win
        let neg = ramp(&[1, 3, 3]).neg().unwrap();
        let y = neg.max_pool2d((3, 3), (2, 2), (1, 1), (1, 1)).unwrap();
        assert_eq!(y.shape(), &[1, 2, 2]);
        assert_eq!(y.to_vec_f64(), vec![0.0, -1.0, -3.0, -4.0]);
    }

    #[test]
    fn avg_pool_divisors() {
        let x = Tensor::ones(&[1, 1, 3, 3], DType::F64);
        let with = x.avg_pool2d((2, 2), (2, 2), (1, 1), true).unwrap();
        assert_eq!(with.to_vec_f64(), vec![0.25, 0.5, 0.5, 1.0]);
        let without = x.avg_pool2d((2, 2), (2, 2), (1, 1), false).unwrap();
        assert_eq!(without.to_vec_f64(), vec![1.0; 4]);
    }

    #[test]
    fn tiling_windows_average_as_the_separable_form_does() {
        let mut rng = crate::rng::Rng::new(5);
        for (kh, kw) in [(2, 2), (1, 3), (3, 2)] {
            let shape = [2, 3, 2 * kh, 3 * kw];
            let n: usize = shape.iter().product();
            let x = Tensor::from_vec((0..n).map(|_| rng.normal()).collect(), &shape).unwrap();
            let y = x.avg_pool2d((kh, kw), (kh, kw), (0, 0), true).unwrap();
            let (_, rows, cols) = windows("test", &x, (kh, kw), (kh, kw), (0, 0), (1, 1)).unwrap();
            assert!(tiles(&rows) && tiles(&cols));
            let mean = |a: &WindowAxis| {
                let mut m = vec![0.0; a.out * a.size];
                for o in 0..a.out {
                    for i in a.taps(o) {
                        m[o * a.size + i] = 1.0 / a.kernel as f64;
                    }
                }
                m
            };
            let want = separable(&x, mean(&rows), rows.out, mean(&cols), cols.out).unwrap();
            assert_eq!(y.shape(), want.shape());
            for (a, b) in y.to_vec_f64().iter().zip(want.to_vec_f64()) {
                assert!((a - b).abs() < 1e-15, "{kh}x{kw}: {a} against {b}");
            }
        }
        // a window that does not tile (a last row left over, or padding) takes the general form
        let x = ramp(&[1, 1, 5, 4]);
        let (_, rows, cols) = windows("test", &x, (2, 2), (2, 2), (0, 0), (1, 1)).unwrap();
        assert!(!tiles(&rows) && tiles(&cols));
        let y = x.avg_pool2d((2, 2), (2, 2), (0, 0), true).unwrap();
        assert_eq!(y.to_vec_f64(), vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = ramp(&[1, 1, 5, 5]);
        let e = x
            .max_pool2d((0, 2), (1, 1), (0, 0), (1, 1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_pool2d") && e.contains("[1, 1, 5, 5]"),
            "{e}"
        );
        assert!(x.max_pool2d((2, 2), (0, 1), (0, 0), (1, 1)).is_err());
        assert!(x.max_pool2d((3, 3), (1, 1), (2, 2), (1, 1)).is_err());
        assert!(x.max_pool2d((6, 6), (1, 1), (0, 0), (1, 1)).is_err());
        assert!(x.max_pool2d((3, 3), (1, 1), (0, 0), (3, 3)).is_err());
        assert!(x.avg_pool2d((6, 2), (1, 1), (0, 0), true).is_err());
        let e = ramp(&[5, 5])
            .avg_pool2d((2, 2), (1, 1), (0, 0), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("avg_pool2d") && e.contains("[5, 5]"), "{e}");
        // a dilated window that only sees padding (PyTorch returns -inf there)
        let tiny = ramp(&[1, 1, 2, 2]);
        assert!(tiny.max_pool2d((2, 2), (1, 1), (1, 1), (3, 3)).is_err());
    }
}
