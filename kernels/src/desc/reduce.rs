//! How a reduction, a softmax or an index op sees its operand: a contiguous buffer as
//! [outer, axis, inner] around the axis (or run of adjacent axes) it works along.

/// A contiguous row-major buffer split around one axis (or a run of adjacent axes taken as
/// one): `outer` blocks, each of `axis` slices of `inner` contiguous elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisSplit {
    /// Product of the axes before the split.
    pub outer: usize,
    /// Product of the axes reduced or indexed along.
    pub axis: usize,
    /// Product of the axes after: the contiguous stride of the axis.
    pub inner: usize,
}

impl AxisSplit {
    /// `shape` split around the axes `first..=last`.
    pub fn around(shape: &[usize], first: usize, last: usize) -> AxisSplit {
        AxisSplit {
            outer: shape[..first].iter().product(),
            axis: shape[first..=last].iter().product(),
            inner: shape[last + 1..].iter().product(),
        }
    }

    /// Elements of the whole buffer.
    pub fn len(&self) -> usize {
        self.outer * self.axis * self.inner
    }

    /// True when the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (outer, axis, inner), as the kernels over such a split take it.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.outer, self.axis, self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::AxisSplit;

    #[test]
    fn splits_around_a_run_of_axes() {
        let s = AxisSplit::around(&[2, 3, 4, 5], 1, 2);
        assert_eq!((s.outer, s.axis, s.inner), (2, 12, 5));
        assert_eq!(s.len(), 120);
        let s = AxisSplit::around(&[7], 0, 0);
        assert_eq!((s.outer, s.axis, s.inner), (1, 7, 1));
    }
}
