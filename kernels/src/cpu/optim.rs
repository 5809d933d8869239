//! Optimizer updates, applied in place to a parameter buffer. Each is one fused pass over the
//! parameter, its gradient and its state, following PyTorch's update rules exactly.

use crate::cpu::parallel::{cost, worth_splitting};
use crate::cpu::vector;
use crate::desc::{AdamStep, RmspropStep, SgdStep};
use crate::float::Float;
use rayon::prelude::*;

/// SGD with momentum (PyTorch convention: buf = momentum * buf + (1 - dampening) * g;
/// nesterov uses g + momentum * buf), L2 weight decay added to the gradient.
pub fn sgd<T: Float>(p: &mut [T], g: &[T], buf: Option<&mut [T]>, h: &SgdStep) {
    let SgdStep {
        first_step,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    } = *h;
    let (lr, mom, one_minus_damp, wd) = (
        T::from_f64(lr),
        T::from_f64(momentum),
        T::from_f64(1.0 - dampening),
        T::from_f64(weight_decay),
    );
    match buf {
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                let d = g + wd * *p;
                *p -= lr * d;
            }
        }
        Some(buf) => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                let d = g + wd * *p;
                *b = if first_step {
                    d
                } else {
                    mom * *b + one_minus_damp * d
                };
                let step = if nesterov { d + mom * *b } else { *b };
                *p -= lr * step;
            }
        }
    }
}

/// Adam / AdamW (PyTorch convention). `decoupled` selects AdamW's p *= 1 - lr * wd; otherwise the
/// weight decay is added to the gradient (Adam's L2). `step` counts from 1 (0 is treated as 1).
///
/// m = lerp(m, g, 1 - beta1) (= beta1 m + (1 - beta1) g, PyTorch's `exp_avg.lerp_`);
/// v = beta2 v + (1 - beta2) g^2;
/// p -= (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
pub fn adam<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamStep) {
    let AdamStep {
        step,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    } = *h;
    // `powf` is C's pow, as Python's `beta ** step` in PyTorch's Adam (`powi` rounds differently)
    let t = step.max(1) as f64;
    let bc1 = 1.0 - beta1.powf(t);
    let bc2 = 1.0 - beta2.powf(t);
    let k = AdamConstants {
        step_size: T::from_f64(lr / bc1),
        inv_bc2_sqrt: T::from_f64(1.0 / bc2.sqrt()),
        w1: T::from_f64(1.0 - beta1),
        b2: T::from_f64(beta2),
        one_minus_b2: T::from_f64(1.0 - beta2),
        eps: T::from_f64(eps),
        wd: T::from_f64(weight_decay),
        decay: T::from_f64(1.0 - lr * weight_decay),
    };
    let small_w1 = (1.0 - beta1).abs() < 0.5;
    // one pass per chunk; the two flags pick a loop without branches so that it vectorises
    let chunk = |p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]| match (decoupled, small_w1) {
        (true, true) => adam_chunk::<T, true, true>(p, g, m, v, &k),
        (true, false) => adam_chunk::<T, true, false>(p, g, m, v, &k),
        (false, true) => adam_chunk::<T, false, true>(p, g, m, v, &k),
        (false, false) => adam_chunk::<T, false, false>(p, g, m, v, &k),
    };
    if !worth_splitting(p.len(), cost::ELEMENT_NS) {
        return chunk(p, g, m, v);
    }
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| chunk(p, g, m, v));
}

const CHUNK: usize = 1 << 14;

struct AdamConstants<T> {
    step_size: T,
    inv_bc2_sqrt: T,
    w1: T,
    b2: T,
    one_minus_b2: T,
    eps: T,
    wd: T,
    decay: T,
}

/// The loop, compiled for AVX-512 where the CPU has it (16 lanes).
fn adam_chunk<T: Float, const DECOUPLED: bool, const SMALL_W1: bool>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    k: &AdamConstants<T>,
) {
    vector::widest(
        #[inline(always)]
        || adam_loop::<T, DECOUPLED, SMALL_W1>(p, g, m, v, k),
    )
}

#[inline(always)]
fn adam_loop<T: Float, const DECOUPLED: bool, const SMALL_W1: bool>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    k: &AdamConstants<T>,
) {
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let g = if DECOUPLED {
            p[i] *= k.decay;
            g[i]
        } else {
            g[i] + k.wd * p[i]
        };
        // torch.lerp: start + w (end - start) for |w| < 0.5, else end - (end - start) (1 - w)
        m[i] = if SMALL_W1 {
            m[i] + k.w1 * (g - m[i])
        } else {
            g - (g - m[i]) * (T::ONE - k.w1)
        };
        v[i] = k.b2 * v[i] + k.one_minus_b2 * g * g;
        // a multiply by 1/sqrt(bc2) for PyTorch's divide: one division fewer, within 1 ulp
        let denom = v[i].sqrt() * k.inv_bc2_sqrt + k.eps;
        p[i] -= k.step_size * m[i] / denom;
    }
}

/// RMSprop (PyTorch convention, no centering): v = alpha v + (1 - alpha) g^2;
/// with momentum (`buf` given): buf = momentum buf + g / (sqrt(v) + eps), p -= lr buf;
/// without (`buf` None, as PyTorch keeps no buffer when momentum is 0): p -= lr g / (sqrt(v) + eps).
pub fn rmsprop<T: Float>(
    p: &mut [T],
    g: &[T],
    v: &mut [T],
    buf: Option<&mut [T]>,
    h: &RmspropStep,
) {
    let RmspropStep {
        lr,
        alpha,
        eps,
        momentum,
        weight_decay,
    } = *h;
    let (lr, a, eps, mom, wd) = (
        T::from_f64(lr),
        T::from_f64(alpha),
        T::from_f64(eps),
        T::from_f64(momentum),
        T::from_f64(weight_decay),
    );
    let one_minus_a = T::from_f64(1.0 - alpha);
    match buf {
        Some(buf) => {
            for (((p, &g), v), b) in p.iter_mut().zip(g).zip(v.iter_mut()).zip(buf.iter_mut()) {
                let g = g + wd * *p;
                *v = a * *v + one_minus_a * g * g;
                *b = mom * *b + g / (v.sqrt() + eps);
                *p -= lr * *b;
            }
        }
        None => {
            for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                let g = g + wd * *p;
                *v = a * *v + one_minus_a * g * g;
                *p -= lr * g / (v.sqrt() + eps);
            }
        }
    }
}
