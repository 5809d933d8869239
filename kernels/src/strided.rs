//! Walking strided buffers. A tensor view is (shape, strides, offset) over a flat buffer; these
//! helpers visit its elements in row-major order without materialising an index per element.

/// Row-major strides of a contiguous tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

/// True when a view with these strides visits its buffer densely in row-major order
/// (size-1 axes may carry any stride).
pub fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

/// A read-only strided view over a flat buffer.
#[derive(Clone, Copy, Debug)]
pub struct View<'a, T> {
    pub data: &'a [T],
    pub shape: &'a [usize],
    pub strides: &'a [usize],
    pub offset: usize,
}

impl<'a, T: Copy> View<'a, T> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The buffer slice holding the view, when the view is contiguous.
    pub fn as_contiguous(&self) -> Option<&'a [T]> {
        if is_contiguous(self.shape, self.strides) {
            Some(&self.data[self.offset..self.offset + self.numel()])
        } else {
            None
        }
    }

    /// Copies the view into a new contiguous row-major buffer.
    pub fn to_vec(&self) -> Vec<T> {
        if let Some(s) = self.as_contiguous() {
            return s.to_vec();
        }
        let mut out = Vec::with_capacity(self.numel());
        for_each_row(
            self.shape,
            &[self.strides],
            &[self.offset],
            |offs, len, inner| {
                let (o, s) = (offs[0], inner[0]);
                if s == 1 {
                    out.extend_from_slice(&self.data[o..o + len]);
                } else {
                    out.extend((0..len).map(|i| self.data[o + i * s]));
                }
            },
        );
        out
    }
}

/// Visits the rows (last axis) of a row-major walk over `shape` for several strided operands at
/// once. `f(offsets, row_len, inner_strides)` receives, per operand, the buffer offset of the row's
/// first element and the operand's stride along the last axis.
pub fn for_each_row<F>(shape: &[usize], strides: &[&[usize]], offsets: &[usize], mut f: F)
where
    F: FnMut(&[usize], usize, &[usize]),
{
    let n_ops = strides.len();
    if shape.contains(&0) {
        return;
    }
    if shape.is_empty() {
        f(offsets, 1, &vec![0; n_ops]);
        return;
    }
    let rank = shape.len();
    let row_len = shape[rank - 1];
    let inner: Vec<usize> = strides.iter().map(|s| s[rank - 1]).collect();
    let outer = &shape[..rank - 1];
    let mut idx = vec![0usize; outer.len()];
    let mut offs: Vec<usize> = offsets.to_vec();
    loop {
        f(&offs, row_len, &inner);
        // advance the outer multi-index like an odometer
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            idx[axis] += 1;
            for (o, s) in offs.iter_mut().zip(strides) {
                *o += s[axis];
            }
            if idx[axis] < outer[axis] {
                break;
            }
            for (o, s) in offs.iter_mut().zip(strides) {
                *o -= s[axis] * outer[axis];
            }
            idx[axis] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_view_copies_in_row_major_order() {
        let data: Vec<i32> = (0..6).collect(); // [[0,1,2],[3,4,5]]
        let v = View {
            data: &data,
            shape: &[3, 2],
            strides: &[1, 3],
            offset: 0,
        };
        assert_eq!(v.to_vec(), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn broadcast_view_repeats() {
        let data = vec![7, 8];
        let v = View {
            data: &data,
            shape: &[3, 2],
            strides: &[0, 1],
            offset: 0,
        };
        assert_eq!(v.to_vec(), vec![7, 8, 7, 8, 7, 8]);
        assert!(is_contiguous(&[1, 4], &[99, 1]));
        assert!(!is_contiguous(&[2, 4], &[1, 2]));
    }
}
