//! Pooling kernels on contiguous [planes, h, w] buffers (planes = N·C of an NCHW tensor).
//!
//! Only max pooling needs a kernel: it finds, for every output position, the flat index
//! (`row * w + col`, within its plane) of the largest input of the window. The engine then takes
//! the output with a gather along the flattened spatial axis, so the backward pass (a
//! scatter-add to those indices) and its own backward are ordinary, differentiable index ops.
//! Average pooling is linear and separable; the engine builds it from two small matmuls.

use crate::desc::pool::WindowAxis;
use crate::float::Float;
use rayon::prelude::*;

/// For each plane and output position (row-major over [planes, rows.out, cols.out]), the flat
/// index `r * cols.size + c` of the window's maximum; padding counts as -inf. Like PyTorch, the
/// first maximum in row-major window order wins ties, and a NaN counts as a maximum.
/// A window with no input position at all (only padding) gets `usize::MAX`; callers rule that out.
pub fn max_pool2d_argmax<T: Float>(
    x: &[T],
    planes: usize,
    rows: &WindowAxis,
    cols: &WindowAxis,
) -> Vec<usize> {
    let plane_in = rows.size * cols.size;
    let plane_out = rows.out * cols.out;
    let mut out = vec![usize::MAX; planes * plane_out];
    if plane_out == 0 {
        return out;
    }
    // taps per output row / column, computed once
    let row_taps: Vec<Vec<usize>> = (0..rows.out).map(|o| rows.taps(o).collect()).collect();
    let col_taps: Vec<Vec<usize>> = (0..cols.out).map(|o| cols.taps(o).collect()).collect();
    out.par_chunks_mut(plane_out)
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * plane_in..(p + 1) * plane_in];
            for (oi, rt) in row_taps.iter().enumerate() {
                for (oj, ct) in col_taps.iter().enumerate() {
                    let mut best = usize::MAX;
                    let mut best_val = T::NEG_INFINITY;
                    for &r in rt {
                        for &c in ct {
                            let i = r * cols.size + c;
                            let v = src[i];
                            if best == usize::MAX || v > best_val || v.is_nan() {
                                best = i;
                                best_val = v;
                                if v.is_nan() {
                                    break;
                                }
                            }
                        }
                        if best_val.is_nan() {
                            break;
                        }
                    }
                    dst[oi * cols.out + oj] = best;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(size: usize, kernel: usize, stride: usize, pad: usize, dilation: usize) -> WindowAxis {
        let out = (size + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
        WindowAxis {
            size,
            kernel,
            stride,
            pad,
            dilation,
            out,
        }
    }

    #[test]
    fn taps_skip_padding() {
        let a = axis(5, 3, 2, 1, 1);
        assert_eq!(a.out, 3);
        assert_eq!(a.taps(0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(a.taps(2).collect::<Vec<_>>(), vec![3, 4]);
        let d = axis(5, 2, 1, 0, 3);
        assert_eq!(d.taps(1).collect::<Vec<_>>(), vec![1, 4]);
    }

    #[test]
    fn argmax_per_window_first_on_ties() {
        // one 3x3 plane, 2x2 windows with stride 1
        let x = [1.0f32, 5.0, 2.0, 5.0, 0.0, 7.0, -1.0, 3.0, 7.0];
        let (r, c) = (axis(3, 2, 1, 0, 1), axis(3, 2, 1, 0, 1));
        assert_eq!(max_pool2d_argmax(&x, 1, &r, &c), vec![1, 5, 3, 5]);
        // padding never wins, even over negative values
        let neg = [-3.0f64, -2.0, -1.0, -4.0];
        let (r, c) = (axis(2, 3, 1, 1, 1), axis(2, 3, 1, 1, 1));
        assert_eq!(max_pool2d_argmax(&neg, 1, &r, &c), vec![2, 2, 2, 2]);
    }
}
