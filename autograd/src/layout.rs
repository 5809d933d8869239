//! A tensor's view of its storage: shape, strides (in elements) and offset. Every view op
//! (reshape of contiguous data, permute, narrow, expand) is a pure function on layouts.

use crate::error::{Error, Result};
use kernels::strided::{contiguous_strides, is_contiguous};

/// How a tensor reads its storage: element `[i, j, ...]` is at `offset + i * strides[0] + j * strides[1] + ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The size of each axis.
    pub shape: Vec<usize>,
    /// The step in storage elements along each axis (0 on broadcast axes).
    pub strides: Vec<usize>,
    /// Where element `[0, 0, ...]` lies in the storage.
    pub offset: usize,
}

impl Layout {
    /// Row-major strides over `shape`, from offset 0.
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements lie in row-major order without gaps.
    pub fn is_contiguous(&self) -> bool {
        is_contiguous(&self.shape, &self.strides)
    }

    /// Axes reordered: output axis i is axis `perm[i]` (an error, naming `op`, if `perm` is not a permutation).
    pub fn permute(&self, op: &'static str, perm: &[usize]) -> Result<Layout> {
        let rank = self.shape.len();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::shape(
                op,
                format!(
                    "{perm:?} is not a permutation of the axes of a tensor of shape {:?}",
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// `len` positions of `axis` from `start` (an error if they do not fit).
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Layout> {
        if axis >= self.shape.len() {
            return Err(Error::index(
                "narrow",
                format!("axis {axis} out of range for shape {:?}", self.shape),
            ));
        }
        if start + len > self.shape[axis] {
            return Err(Error::index(
                "narrow",
                format!(
                    "range {start}..{} exceeds size {} of axis {axis} (shape {:?})",
                    start + len,
                    self.shape[axis],
                    self.shape
                ),
            ));
        }
        let mut out = self.clone();
        out.shape[axis] = len;
        out.offset += start * self.strides[axis];
        Ok(out)
    }

    /// Broadcasts to `shape` (NumPy rules: align right, size-1 axes stretch with stride 0).
    pub fn expand(&self, shape: &[usize]) -> Result<Layout> {
        let err = || {
            Error::shape(
                "expand",
                format!("cannot broadcast {:?} to {:?}", self.shape, shape),
            )
        };
        if shape.len() < self.shape.len() {
            return Err(err());
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0; shape.len()];
        for (i, &d) in shape.iter().enumerate() {
            if i < lead {
                continue;
            }
            let (own, s) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if own == d {
                s
            } else if own == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// A reshape that keeps sharing storage; `None` when the data must be copied first.
    pub fn reshape_view(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            Some(Layout {
                shape: shape.to_vec(),
                strides: contiguous_strides(shape),
                offset: self.offset,
            })
        } else {
            None
        }
    }
}

/// The shape two operands broadcast to (NumPy rules).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                format!("shapes {a:?} and {b:?} do not broadcast (axis {i}: {da} vs {db})"),
            ));
        };
    }
    Ok(out)
}

/// Resolves a possibly negative axis (-1 is the last) against `rank`; a scalar has no axes.
pub fn resolve_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(Error::index(
            op,
            format!("axis {axis} out of range for a tensor of rank {rank}"),
        ));
    }
    Ok(a as usize)
}

/// Resolves, sorts and deduplicates a list of axes; an empty list means every axis.
pub fn resolve_axes(op: &'static str, axes: &[isize], rank: usize) -> Result<Vec<usize>> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        if rank == 0 {
            return Err(Error::index(
                op,
                format!("axis {a} out of range for a scalar"),
            ));
        }
        out.push(resolve_axis(op, a, rank)?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shapes("t", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert!(broadcast_shapes("t", &[3, 2], &[3]).is_err());
        assert!(Layout::contiguous(&[2, 3]).expand(&[3, 3]).is_err());
        let l = Layout::contiguous(&[1, 3]).expand(&[2, 2, 3]).unwrap();
        assert_eq!(l.strides, vec![0, 0, 1]);
    }

    #[test]
    fn narrow_moves_the_offset() {
        let l = Layout::contiguous(&[4, 5]).narrow(1, 2, 3).unwrap();
        assert_eq!(
            (l.offset, l.shape.clone(), l.is_contiguous()),
            (2, vec![4, 3], false)
        );
        assert!(Layout::contiguous(&[4, 5]).narrow(1, 4, 2).is_err());
    }
}
