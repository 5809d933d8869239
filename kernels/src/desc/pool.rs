//! A pooling window, one spatial axis at a time.

/// One spatial axis of a pooling window: out position o reads input positions
/// `o * stride - pad + t * dilation` for t in 0..kernel (positions outside 0..size are padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowAxis {
    /// Input positions along the axis.
    pub size: usize,
    /// Window size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Implicit padding before the first position.
    pub pad: usize,
    /// Spacing between a window's taps.
    pub dilation: usize,
    /// Number of output positions (the caller computes and checks it).
    pub out: usize,
}

impl WindowAxis {
    /// The input positions (inside 0..size) read by output position `o`, in increasing order.
    pub fn taps(&self, o: usize) -> impl Iterator<Item = usize> + '_ {
        let start = (o * self.stride) as isize - self.pad as isize;
        (0..self.kernel).filter_map(move |t| {
            let p = start + (t * self.dilation) as isize;
            (p >= 0 && (p as usize) < self.size).then_some(p as usize)
        })
    }
}
