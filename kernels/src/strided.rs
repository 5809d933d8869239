//! Walking strided buffers. A tensor view is (shape, strides, offset) over a flat buffer; these
//! helpers visit its elements in row-major order without materialising an index per element.

use crate::float::Float;
use rayon::prelude::*;

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

impl<'a, T: Float> View<'a, T> {
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
        let copy_rows = |v: &[View<T>], out: &mut Vec<T>| {
            let v = v[0];
            for_each_row(v.shape, &[v.strides], &[v.offset], |offs, len, inner| {
                let (o, s) = (offs[0], inner[0]);
                if s == 1 {
                    out.extend_from_slice(&v.data[o..o + len]);
                } else {
                    out.extend((0..len).map(|i| v.data[o + i * s]));
                }
            });
        };
        split_outer(self.numel(), &[*self], copy_rows)
    }
}

/// Runs `kernel` over strided views that share one shape, writing the row-major output. Large
/// outputs are split along the first axis longer than 1, one slab per task, so broadcasting
/// and strided ops use every core too.
pub fn split_outer<T: Float, K>(n: usize, views: &[View<T>], kernel: K) -> Vec<T>
where
    K: Fn(&[View<T>], &mut Vec<T>) + Sync,
{
    let shape = views[0].shape;
    let axis = match shape.iter().position(|&d| d > 1) {
        Some(a) if n >= crate::cpu::elementwise::PARALLEL_THRESHOLD && a + 1 < shape.len() => a,
        _ => {
            let mut out = Vec::with_capacity(n);
            kernel(views, &mut out);
            return out;
        }
    };
    let slab = n / shape[axis];
    let mut out = vec![T::ZERO; n];
    out.par_chunks_mut(slab).enumerate().for_each(|(i, chunk)| {
        let sub: Vec<View<T>> = views
            .iter()
            .map(|v| View {
                data: v.data,
                shape: &v.shape[axis + 1..],
                strides: &v.strides[axis + 1..],
                offset: v.offset + i * v.strides[axis],
            })
            .collect();
        let mut part = Vec::with_capacity(slab);
        kernel(&sub, &mut part);
        chunk.copy_from_slice(&part);
    });
    out
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
        let data: Vec<f64> = (0..6).map(f64::from).collect(); // [[0,1,2],[3,4,5]]
        let v = View {
            data: &data,
            shape: &[3, 2],
            strides: &[1, 3],
            offset: 0,
        };
        assert_eq!(v.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn broadcast_view_repeats() {
        let data = vec![7.0f32, 8.0];
        let v = View {
            data: &data,
            shape: &[3, 2],
            strides: &[0, 1],
            offset: 0,
        };
        assert_eq!(v.to_vec(), vec![7.0, 8.0, 7.0, 8.0, 7.0, 8.0]);
        assert!(is_contiguous(&[1, 4], &[99, 1]));
        assert!(!is_contiguous(&[2, 4], &[1, 2]));
    }
}
