//! Indexing kernels on contiguous buffers viewed as [outer, axis, inner]:
//! index_select / index_add (whole slices by index) and gather / scatter_add (per element).

use crate::float::Float;

/// `out[o, i, :] = x[o, idx[i], :]`; `x` is [outer, n, inner]. Indices are checked by the caller.
pub fn index_select<T: Float>(
    x: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let start = (o * n + i) * inner;
            out.extend_from_slice(&x[start..start + inner]);
        }
    }
    out
}

/// The adjoint of [`index_select`]: `out[o, idx[i], :] += src[o, i, :]` into zeros of [outer, n, inner].
pub fn index_add<T: Float>(
    src: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    let mut out = vec![T::ZERO; outer * n * inner];
    for o in 0..outer {
        for (i, &target) in idx.iter().enumerate() {
            let s = (o * idx.len() + i) * inner;
            let d = (o * n + target) * inner;
            for (acc, &v) in out[d..d + inner].iter_mut().zip(&src[s..s + inner]) {
                *acc += v;
            }
        }
    }
    out
}

/// out[o, j, k] = x[o, index[o, j, k], k]; `x` is [outer, n, inner], `index` is [outer, m, inner].
pub fn gather<T: Float>(
    x: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    index: &[usize],
    m: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * m * inner);
    for o in 0..outer {
        for j in 0..m {
            for k in 0..inner {
                let i = index[(o * m + j) * inner + k];
                out.push(x[(o * n + i) * inner + k]);
            }
        }
    }
    out
}

/// The adjoint of [`gather`]: out[o, index[o, j, k], k] += src[o, j, k] into zeros of [outer, n, inner].
pub fn scatter_add<T: Float>(
    src: &[T],
    outer: usize,
    n: usize,
    inner: usize,
    index: &[usize],
    m: usize,
) -> Vec<T> {
    let mut out = vec![T::ZERO; outer * n * inner];
    for o in 0..outer {
        for j in 0..m {
            for k in 0..inner {
                let p = (o * m + j) * inner + k;
                out[(o * n + index[p]) * inner + k] += src[p];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_then_add_back_counts_repeats() {
        let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // [3 rows, 2]
        let y = index_select(&x, 1, 3, 2, &[2, 0, 2]);
        assert_eq!(y, vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
        let back = index_add(&[1.0f64; 6], 1, 3, 2, &[2, 0, 2]);
        assert_eq!(back, vec![1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn gather_picks_per_row() {
        let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2,3], gather along axis 1
        let y = gather(&x, 2, 3, 1, &[2, 0], 1);
        assert_eq!(y, vec![3.0, 4.0]);
        let back = scatter_add(&[1.0f64, 1.0], 2, 3, 1, &[2, 0], 1);
        assert_eq!(back, vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }
}
