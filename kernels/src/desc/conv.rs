//! A convolution's description: its geometry (shapes, stride, padding, dilation, groups) and
//! the kernel taps that take part (all of them, or those a PixelCNN mask keeps).

/// Everything about a convolution's shapes. Input [n, c_in, h, w], output [n, c_out, ho, wo].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// (row, column) stride.
    pub stride: (usize, usize),
    /// (top, bottom, left, right)
    pub pad: (usize, usize, usize, usize),
    /// (row, column) dilation: the spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Channel groups: each group of `c_in / groups` inputs feeds its own `c_out / groups` outputs.
    pub groups: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Active kernel positions (row, col), in row-major order.
    pub taps: Vec<(usize, usize)>,
}

impl ConvGeometry {
    /// Input channels of one group.
    pub fn cin_per_group(&self) -> usize {
        self.c_in / self.groups
    }
    /// Output channels of one group.
    pub fn cout_per_group(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of one group's column matrix: its input channels times the active taps.
    pub fn k_per_group(&self) -> usize {
        self.cin_per_group() * self.taps.len()
    }
    /// Elements of one image of the input, c_in · h · w.
    pub fn in_size(&self) -> usize {
        self.c_in * self.h * self.w
    }
    /// Elements of one image of the output, c_out · ho · wo.
    pub fn out_size(&self) -> usize {
        self.c_out * self.ho * self.wo
    }
    /// Output positions per channel, ho · wo.
    pub fn out_positions(&self) -> usize {
        self.ho * self.wo
    }
    /// True when some dimension is zero, so there is no work (and chunking by it would fail).
    pub fn is_empty(&self) -> bool {
        self.in_size() == 0
            || self.out_size() == 0
            || self.n == 0
            || self.k_per_group() == 0
            || self.groups == 0
    }
}

/// Output size of one spatial axis (PyTorch's formula); `None` when the kernel does not fit.
pub fn conv_out_size(
    input: usize,
    pad_before: usize,
    pad_after: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + pad_before + pad_after;
    if padded < span || stride == 0 {
        None
    } else {
        Some((padded - span) / stride + 1)
    }
}

/// PixelCNN's masks (van den Oord et al. 2016), for one colour channel. With the kernel centre
/// at (kh/2, kw/2), every tap on rows below the centre and right of it on the centre row is
/// masked; mask A also masks the centre itself (the first layer must not see the pixel it
/// predicts), mask B keeps it (later layers may see their own position's features).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Masks the centre tap too: for the first layer.
    A,
    /// Keeps the centre tap: for the layers after the first.
    B,
}

/// The taps (row, col) of a kh x kw kernel that `mask` keeps, in row-major order.
pub fn mask_taps(kh: usize, kw: usize, mask: Option<Mask>) -> Vec<(usize, usize)> {
    let (ci, cj) = (kh / 2, kw / 2);
    let keep = |i: usize, j: usize| match mask {
        None => true,
        Some(m) => i < ci || (i == ci && (j < cj || (j == cj && m == Mask::B))),
    };
    (0..kh)
        .flat_map(|i| (0..kw).map(move |j| (i, j)))
        .filter(|&(i, j)| keep(i, j))
        .collect()
}
