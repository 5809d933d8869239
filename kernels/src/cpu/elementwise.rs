//! Elementwise kernels: unary maps, broadcasting binary maps, and the ternary select.
//! Large buffers are split across threads with rayon; each chunk is a plain loop over slices
//! that the compiler can vectorise.

use crate::cpu::parallel::{cost, worth_splitting};
use crate::cpu::vector;
use crate::desc::elementwise::{BinaryKind, UnaryKind};
use crate::float::Float;
use crate::strided::{for_each_row, split_outer, RowWriter, View};
use rayon::prelude::*;
use std::mem::MaybeUninit;

const CHUNK: usize = 1 << 13;

#[inline(always)]
fn softplus<T: Float>(x: T) -> T {
    x.max(T::ZERO) + (-x.abs()).exp_vectorised().ln_1p_vectorised()
}

/// `f` applied to every element of `x`, split across threads for large buffers. Each chunk
/// runs a loop compiled for AVX-512 where the CPU has it ([`crate::cpu::vector`]).
fn map_slice<T: Float, F: Fn(T) -> T + Sync + Copy>(x: &[T], f: F) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    let dst = &mut out.spare_capacity_mut()[..x.len()];
    if !worth_splitting(x.len(), cost::ELEMENT_NS) {
        map_chunk(dst, x, f);
    } else {
        dst.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, i)| map_chunk(o, i, f));
    }
    // SAFETY: map_chunk wrote all x.len() elements
    unsafe { out.set_len(x.len()) };
    out
}

fn map_chunk<T: Float, F: Fn(T) -> T + Copy>(out: &mut [MaybeUninit<T>], x: &[T], f: F) {
    vector::widest(
        #[inline(always)]
        || map_loop(out, x, f),
    )
}

#[inline(always)]
fn map_loop<T: Float, F: Fn(T) -> T + Copy>(out: &mut [MaybeUninit<T>], x: &[T], f: F) {
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(f(v));
    }
}

/// `f` applied to pairs of elements of two equally long buffers, as [`map_slice`].
fn zip_slices<T: Float, F: Fn(T, T) -> T + Sync + Copy>(a: &[T], b: &[T], f: F) -> Vec<T> {
    let n = a.len().min(b.len());
    let mut out = Vec::with_capacity(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    if !worth_splitting(n, cost::ELEMENT_NS) {
        zip_chunk(dst, &a[..n], &b[..n], f);
    } else {
        dst.par_chunks_mut(CHUNK)
            .zip(a[..n].par_chunks(CHUNK).zip(b[..n].par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| zip_chunk(o, a, b, f));
    }
    // SAFETY: zip_chunk wrote all n elements
    unsafe { out.set_len(n) };
    out
}

fn zip_chunk<T: Float, F: Fn(T, T) -> T + Copy>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[T],
    f: F,
) {
    vector::widest(
        #[inline(always)]
        || zip_loop(out, a, b, f),
    )
}

#[inline(always)]
fn zip_loop<T: Float, F: Fn(T, T) -> T + Copy>(out: &mut [MaybeUninit<T>], a: &[T], b: &[T], f: F) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        o.write(f(x, y));
    }
}

/// Applies `kind` to every element of the contiguous buffer `x`.
pub fn unary<T: Float>(x: &[T], kind: UnaryKind) -> Vec<T> {
    let c = |v: f64| T::from_f64(v);
    match kind {
        UnaryKind::Neg => map_slice(
            x,
            #[inline(always)]
            |v| -v,
        ),
        UnaryKind::Exp => map_slice(
            x,
            #[inline(always)]
            |v| v.exp_vectorised(),
        ),
        UnaryKind::Log => map_slice(
            x,
            #[inline(always)]
            |v| v.ln_vectorised(),
        ),
        UnaryKind::Sqrt => map_slice(
            x,
            #[inline(always)]
            |v| v.sqrt(),
        ),
        UnaryKind::Abs => map_slice(
            x,
            #[inline(always)]
            |v| v.abs(),
        ),
        UnaryKind::Sigmoid => map_slice(
            x,
            #[inline(always)]
            |v| v.sigmoid_vectorised(),
        ),
        UnaryKind::Tanh => map_slice(
            x,
            #[inline(always)]
            |v| v.tanh_vectorised(),
        ),
        UnaryKind::Relu => map_slice(
            x,
            #[inline(always)]
            |v| v.max(T::ZERO),
        ),
        UnaryKind::LeakyRelu(s) => {
            let s = c(s);
            map_slice(
                x,
                #[inline(always)]
                move |v| if v > T::ZERO { v } else { v * s },
            )
        }
        UnaryKind::Softplus => map_slice(
            x,
            #[inline(always)]
            |v| softplus(v),
        ),
        UnaryKind::Elu(a) => {
            let a = c(a);
            map_slice(
                x,
                #[inline(always)]
                move |v| {
                    if v > T::ZERO {
                        v
                    } else {
                        a * (v.exp() - T::ONE)
                    }
                },
            )
        }
        UnaryKind::Powf(p) => {
            // x^2 and x^1 exactly as libm's powf gives them, without its per-element call
            // (x^1 is what the backward of a square computes: 2 x^(2 - 1))
            if p == 2.0 {
                map_slice(
                    x,
                    #[inline(always)]
                    |v| v * v,
                )
            } else if p == 1.0 {
                x.to_vec()
            } else {
                let p = c(p);
                map_slice(
                    x,
                    #[inline(always)]
                    move |v| v.powf(p),
                )
            }
        }
        UnaryKind::Clamp(lo, hi) => {
            let (lo, hi) = (c(lo), c(hi));
            map_slice(
                x,
                #[inline(always)]
                move |v| v.max(lo).min(hi),
            )
        }
        UnaryKind::AddScalar(s) => {
            let s = c(s);
            map_slice(
                x,
                #[inline(always)]
                move |v| v + s,
            )
        }
        UnaryKind::MulScalar(s) => {
            let s = c(s);
            map_slice(
                x,
                #[inline(always)]
                move |v| v * s,
            )
        }
        UnaryKind::Sign => map_slice(
            x,
            #[inline(always)]
            |v| {
                if v > T::ZERO {
                    T::ONE
                } else if v < T::ZERO {
                    -T::ONE
                } else {
                    T::ZERO
                }
            },
        ),
        UnaryKind::GtScalar(s) => {
            let s = c(s);
            map_slice(
                x,
                #[inline(always)]
                move |v| if v > s { T::ONE } else { T::ZERO },
            )
        }
        UnaryKind::InRange(lo, hi) => {
            let (lo, hi) = (c(lo), c(hi));
            map_slice(
                x,
                #[inline(always)]
                move |v| if v >= lo && v <= hi { T::ONE } else { T::ZERO },
            )
        }
    }
}

fn indicator<T: Float>(b: bool) -> T {
    if b {
        T::ONE
    } else {
        T::ZERO
    }
}

/// `a` and `b` must already have `out_shape` as their shape (broadcast axes carry stride 0).
pub fn binary<T: Float>(a: View<T>, b: View<T>, kind: BinaryKind) -> Vec<T> {
    match kind {
        BinaryKind::Add => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| x + y,
        ),
        BinaryKind::Sub => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| x - y,
        ),
        BinaryKind::Mul => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| x * y,
        ),
        BinaryKind::Div => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| x / y,
        ),
        BinaryKind::Maximum => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| x.max(y),
        ),
        BinaryKind::Minimum => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| x.min(y),
        ),
        BinaryKind::Eq => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| indicator(x == y),
        ),
        BinaryKind::Gt => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| indicator(x > y),
        ),
        BinaryKind::Ge => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| indicator(x >= y),
        ),
        BinaryKind::LeakyReluGrad(slope) => {
            let slope = T::from_f64(slope);
            zip_map(
                a,
                b,
                #[inline(always)]
                move |g, x| if x > T::ZERO { g } else { g * slope },
            )
        }
        BinaryKind::Lt => zip_map(
            a,
            b,
            #[inline(always)]
            |x, y| indicator(x < y),
        ),
    }
}

fn zip_map<T: Float, F: Fn(T, T) -> T + Sync + Copy>(a: View<T>, b: View<T>, f: F) -> Vec<T> {
    let n = a.numel();
    if let (Some(xa), Some(xb)) = (a.as_contiguous(), b.as_contiguous()) {
        return zip_slices(xa, xb, f);
    }
    let row_kernel = |a: View<T>, b: View<T>, out: &mut RowWriter<T>| {
        for_each_row(
            a.shape,
            &[a.strides, b.strides],
            &[a.offset, b.offset],
            |offs, len, inner| {
                let (oa, ob) = (offs[0], offs[1]);
                let row = out.next_row(len);
                match (inner[0], inner[1]) {
                    (1, 1) => zip_chunk(row, &a.data[oa..oa + len], &b.data[ob..ob + len], f),
                    (1, 0) => {
                        let y = b.data[ob];
                        map_chunk(
                            row,
                            &a.data[oa..oa + len],
                            #[inline(always)]
                            move |x| f(x, y),
                        )
                    }
                    (0, 1) => {
                        let x = a.data[oa];
                        map_chunk(
                            row,
                            &b.data[ob..ob + len],
                            #[inline(always)]
                            move |y| f(x, y),
                        )
                    }
                    (sa, sb) => {
                        for (i, d) in row.iter_mut().enumerate() {
                            d.write(f(a.data[oa + i * sa], b.data[ob + i * sb]));
                        }
                    }
                }
            },
        );
    };
    split_outer(n, &[a, b], |views, out| row_kernel(views[0], views[1], out))
}

/// out = mask != 0 ? a : b, all three already broadcast to the output shape.
pub fn select<T: Float>(mask: View<T>, a: View<T>, b: View<T>) -> Vec<T> {
    split_outer(a.numel(), &[mask, a, b], |v, out| {
        let (mask, a, b) = (v[0], v[1], v[2]);
        for_each_row(
            a.shape,
            &[mask.strides, a.strides, b.strides],
            &[mask.offset, a.offset, b.offset],
            |offs, len, inner| {
                for (i, d) in out.next_row(len).iter_mut().enumerate() {
                    let m = mask.data[offs[0] + i * inner[0]];
                    d.write(if m != T::ZERO {
                        a.data[offs[1] + i * inner[1]]
                    } else {
                        b.data[offs[2] + i * inner[2]]
                    });
                }
            },
        );
    })
}

/// `acc += add`, elementwise, in place (the recurrences' accumulations of small rows).
pub fn add_into<T: Float>(acc: &mut [T], add: &[T]) {
    for (a, &b) in acc.iter_mut().zip(add) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_and_softplus_are_stable_at_extremes() {
        let y = unary(&[-1000.0f32, 0.0, 1000.0], UnaryKind::Sigmoid);
        assert_eq!(y, vec![0.0, 0.5, 1.0]);
        let s = unary(&[-1000.0f64, 1000.0], UnaryKind::Softplus);
        assert!(s[0].abs() < 1e-300 && (s[1] - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn binary_broadcasts_a_row() {
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [10.0f64, 20.0, 30.0];
        let out = binary(
            View {
                data: &a,
                shape: &[2, 3],
                strides: &[3, 1],
                offset: 0,
            },
            View {
                data: &b,
                shape: &[2, 3],
                strides: &[0, 1],
                offset: 0,
            },
            BinaryKind::Add,
        );
        assert_eq!(out, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    }
}
