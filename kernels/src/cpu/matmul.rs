//! Matrix multiplication (placeholder: a plain triple loop; the blocked, packed kernel replaces it).

use crate::float::Float;

/// A strided matrix operand: element (i, j) is `data[offset + i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// C = A * B with A [m, k], B [k, n]; C is contiguous row-major [m, n] and is overwritten.
pub fn matmul<T: Float>(m: usize, k: usize, n: usize, a: MatRef<T>, b: MatRef<T>, c: &mut [T]) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::ZERO;
            for p in 0..k {
                acc += a.data[a.offset + i * a.row_stride + p * a.col_stride]
                    * b.data[b.offset + p * b.row_stride + j * b.col_stride];
            }
            c[i * n + j] = acc;
        }
    }
}

/// `batch` independent products; batch `i` reads A at `a_offsets[i]` and B at `b_offsets[i]`
/// (strides shared) and writes C[i] of the contiguous [batch, m, n] output.
#[allow(clippy::too_many_arguments)]
pub fn batched_matmul<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<T>,
    a_offsets: &[usize],
    b: MatRef<T>,
    b_offsets: &[usize],
    c: &mut [T],
) {
    for (i, c_i) in c
        .chunks_mut((m * n).max(1))
        .enumerate()
        .take(a_offsets.len())
    {
        let ai = MatRef {
            offset: a_offsets[i],
            ..a
        };
        let bi = MatRef {
            offset: b_offsets[i],
            ..b
        };
        matmul(m, k, n, ai, bi, c_i);
    }
}
