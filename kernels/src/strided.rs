//! Walking strided buffers. A tensor view is (shape, strides, offset) over a flat buffer; these
//! helpers visit its elements in row-major order without materialising an index per element.

use crate::float::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

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
    /// The whole buffer the view reads from.
    pub data: &'a [T],
    /// The size of each axis.
    pub shape: &'a [usize],
    /// The step in `data` between neighbours along each axis (0 for a broadcast axis).
    pub strides: &'a [usize],
    /// Where element [0, 0, ...] lies in `data`.
    pub offset: usize,
}

impl<'a, T: Float> View<'a, T> {
    /// Elements in the view: the product of its shape.
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
        if let Some(copy) = self.repeat_last() {
            return copy;
        }
        let copy_rows = |v: &[View<T>], out: &mut RowWriter<T>| {
            let v = v[0];
            for_each_row(v.shape, &[v.strides], &[v.offset], |offs, len, inner| {
                let (o, s) = (offs[0], inner[0]);
                let row = out.next_row(len);
                if s == 1 {
                    for (d, &x) in row.iter_mut().zip(&v.data[o..o + len]) {
                        d.write(x);
                    }
                } else {
                    for (i, d) in row.iter_mut().enumerate() {
                        d.write(v.data[o + i * s]);
                    }
                }
            });
        };
        split_outer(self.numel(), &[*self], copy_rows)
    }

    /// The copy of a view whose last axis repeats one element (stride 0, as a broadcast of
    /// [.., w, 1] to [.., w, f] leaves it; nearest upsampling and the gradient of a block sum
    /// are such views): rows of the axis before it, each element written f times, rather than
    /// rows of f elements each.
    fn repeat_last(&self) -> Option<Vec<T>> {
        let rank = self.shape.len();
        if rank < 2 || self.strides[rank - 1] != 0 || self.shape[rank - 1] <= 1 {
            return None;
        }
        let repeat = self.shape[rank - 1];
        let outer = View {
            data: self.data,
            shape: &self.shape[..rank - 1],
            strides: &self.strides[..rank - 1],
            offset: self.offset,
        };
        let copy_rows = |v: &[View<T>], out: &mut RowWriter<T>| {
            let v = v[0];
            for_each_row(v.shape, &[v.strides], &[v.offset], |offs, len, inner| {
                let (o, s) = (offs[0], inner[0]);
                let row = out.next_row(len * repeat);
                for (i, block) in row.chunks_exact_mut(repeat).enumerate() {
                    let x = v.data[o + i * s];
                    for d in block {
                        d.write(x);
                    }
                }
            });
        };
        Some(split_outer_repeated(
            outer.numel(),
            repeat,
            &[outer],
            copy_rows,
        ))
    }
}

/// Merges adjacent axes that every operand walks as one (stride of the outer axis = stride of
/// the inner axis times its length) and drops size-1 axes, so that rows get as long as the
/// layouts allow: x [64, 64, 28, 28] plus a per-channel bias [1, 64, 1, 1] becomes rows of 784.
/// Returns the merged shape and each operand's merged strides.
pub fn coalesce(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::with_capacity(shape.len()); strides.len()];
    for (axis, &d) in shape.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let mergeable = out_shape.last().is_some()
            && strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| o[o.len() - 1] == s[axis] * d);
        if mergeable {
            *out_shape.last_mut().unwrap_or(&mut 0) *= d;
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                let last = o.len() - 1;
                o[last] = s[axis];
            }
        } else {
            out_shape.push(d);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[axis]);
            }
        }
    }
    (out_shape, out_strides)
}

/// Where a kernel writes its share of a row-major output: rows are handed out in order and
/// must be filled completely.
pub struct RowWriter<'a, T> {
    buf: &'a mut [MaybeUninit<T>],
    written: usize,
}

impl<T: Copy> RowWriter<'_, T> {
    /// The next `len` elements of the output, to be written in full.
    pub fn next_row(&mut self, len: usize) -> &mut [MaybeUninit<T>] {
        let row = &mut self.buf[self.written..self.written + len];
        self.written += len;
        row
    }
}

/// Output elements a task of [`split_outer`] takes at least (as whole slabs).
const TASK_ELEMENTS: usize = 16_384;

/// Runs `kernel` over strided views that share one shape, writing the row-major output. The
/// views' axes are first merged where their layouts allow ([`coalesce`]). Large outputs are
/// split along the first axis, a run of slabs per task, so broadcasting and strided ops use every
/// core too. Each task writes its slab of the output in place.
pub fn split_outer<T: Float, K>(n: usize, views: &[View<T>], kernel: K) -> Vec<T>
where
    K: Fn(&[View<T>], &mut RowWriter<T>) + Sync,
{
    split_outer_repeated(n, 1, views, kernel)
}

/// [`split_outer`] for a kernel that writes `repeat` outputs per element of the views: the
/// output holds n · repeat elements.
fn split_outer_repeated<T: Float, K>(
    n: usize,
    repeat: usize,
    views: &[View<T>],
    kernel: K,
) -> Vec<T>
where
    K: Fn(&[View<T>], &mut RowWriter<T>) + Sync,
{
    let strides: Vec<&[usize]> = views.iter().map(|v| v.strides).collect();
    let (shape, merged) = coalesce(views[0].shape, &strides);
    let merged_views: Vec<View<T>> = views
        .iter()
        .zip(&merged)
        .map(|(v, s)| View {
            data: v.data,
            shape: &shape,
            strides: s,
            offset: v.offset,
        })
        .collect();
    let total = n * repeat;
    let mut out = Vec::with_capacity(total);
    let dst = &mut out.spare_capacity_mut()[..total];
    let parallel =
        crate::cpu::parallel::worth_splitting(total, crate::cpu::parallel::cost::ELEMENT_NS)
            && shape.len() >= 2;
    if !parallel {
        let mut writer = RowWriter {
            buf: dst,
            written: 0,
        };
        kernel(&merged_views, &mut writer);
        assert_eq!(
            writer.written, total,
            "split_outer: the kernel left elements unwritten"
        );
    } else {
        // a task takes a run of first-axis slabs, enough to outweigh its own cost: merged
        // layouts can leave a long first axis of short slabs (rows of a few elements)
        let slab = (total / shape[0]).max(1);
        let per_task = TASK_ELEMENTS.div_ceil(slab).max(1);
        dst.par_chunks_mut(slab * per_task)
            .enumerate()
            .for_each(|(t, chunk)| {
                let mut sub_shape = shape.clone();
                sub_shape[0] = chunk.len() / slab;
                let sub: Vec<View<T>> = merged_views
                    .iter()
                    .map(|v| View {
                        data: v.data,
                        shape: &sub_shape,
                        strides: v.strides,
                        offset: v.offset + t * per_task * v.strides[0],
                    })
                    .collect();
                let mut writer = RowWriter {
                    buf: chunk,
                    written: 0,
                };
                kernel(&sub, &mut writer);
                assert_eq!(
                    writer.written,
                    chunk.len(),
                    "split_outer: the kernel left elements unwritten"
                );
            });
    }
    // SAFETY: every task wrote its whole slab (asserted above), so all elements are written
    unsafe { out.set_len(total) };
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
    fn coalesce_merges_axes_every_operand_walks_as_one() {
        // x [2, 3, 4, 5] contiguous plus a per-channel [1, 3, 1, 1] broadcast
        let (shape, strides) = coalesce(&[2, 3, 4, 5], &[&[60, 20, 5, 1], &[0, 1, 0, 0]]);
        assert_eq!(shape, vec![2, 3, 20]);
        assert_eq!(strides, vec![vec![60, 20, 1], vec![0, 1, 0]]);
        // a transposed operand keeps its axes apart; size-1 axes vanish
        let (shape, strides) = coalesce(&[3, 1, 2], &[&[1, 7, 3], &[2, 9, 1]]);
        assert_eq!(shape, vec![3, 2]);
        assert_eq!(strides, vec![vec![1, 3], vec![2, 1]]);
        // a view with nothing to merge, and a scalar
        assert_eq!(coalesce(&[], &[&[]]), (vec![], vec![vec![]]));
    }

    /// The view's elements read one index at a time: what every copy must give.
    fn walked<T: Float>(v: &View<T>) -> Vec<T> {
        let mut out = Vec::with_capacity(v.numel());
        let mut idx = vec![0usize; v.shape.len()];
        for _ in 0..v.numel() {
            let at: usize = idx.iter().zip(v.strides).map(|(i, s)| i * s).sum();
            out.push(v.data[v.offset + at]);
            for a in (0..idx.len()).rev() {
                idx[a] += 1;
                if idx[a] < v.shape[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        out
    }

    #[test]
    fn views_that_repeat_their_last_axis_or_have_short_rows_copy_as_walked() {
        let data: Vec<f32> = (0..40_000).map(|i| i as f32).collect();
        // blocks of nearest upsampling (x [.., 7, 1, 7, 1] broadcast to [.., 7, 2, 7, 2]), large
        // enough to be split across tasks, and small; a last axis repeated by 3 after a
        // transposed one; rows of two elements (a transposed pair) in many slabs
        let cases: [(&[usize], &[usize], usize); 5] = [
            (&[64, 8, 7, 2, 7, 2], &[392, 49, 7, 0, 1, 0], 0),
            (&[2, 3, 2, 3, 2], &[9, 3, 0, 1, 0], 5),
            (&[5, 4, 3], &[1, 5, 0], 2),
            (&[9000, 2, 2], &[4, 1, 2], 3),
            (&[3, 1, 4], &[4, 7, 0], 0),
        ];
        for (shape, strides, offset) in cases {
            let v = View {
                data: &data,
                shape,
                strides,
                offset,
            };
            assert_eq!(
                v.to_vec(),
                walked(&v),
                "shape {shape:?} strides {strides:?}"
            );
        }
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
