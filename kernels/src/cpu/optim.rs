//! Optimizer updates, applied in place to a parameter buffer. Each is one fused pass over the
//! parameter, its gradient and its state, following PyTorch's update rules exactly.

use crate::float::Float;

/// SGD with momentum (PyTorch convention: buf = momentum * buf + (1 - dampening) * g;
/// nesterov uses g + momentum * buf), L2 weight decay added to the gradient.
#[allow(clippy::too_many_arguments)]
pub fn sgd<T: Float>(
    p: &mut [T],
    g: &[T],
    buf: Option<&mut [T]>,
    first_step: bool,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
) {
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
#[allow(clippy::too_many_arguments)]
pub fn adam<T: Float>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    step: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
) {
    // `powf` is C's pow, as Python's `beta ** step` in PyTorch's Adam (`powi` rounds differently)
    let t = step.max(1) as f64;
    let bc1 = 1.0 - beta1.powf(t);
    let bc2 = 1.0 - beta2.powf(t);
    let step_size = T::from_f64(lr / bc1);
    let bc2_sqrt = T::from_f64(bc2.sqrt());
    let (w1, b2, eps_t, wd) = (
        T::from_f64(1.0 - beta1),
        T::from_f64(beta2),
        T::from_f64(eps),
        T::from_f64(weight_decay),
    );
    let one_minus_b2 = T::from_f64(1.0 - beta2);
    let small_w1 = (1.0 - beta1).abs() < 0.5;
    let decay = T::from_f64(1.0 - lr * weight_decay);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if decoupled {
            *p *= decay;
            g
        } else {
            g + wd * *p
        };
        // torch.lerp: start + w (end - start) for |w| < 0.5, else end - (end - start) (1 - w)
        *m = if small_w1 {
            *m + w1 * (g - *m)
        } else {
            g - (g - *m) * (T::ONE - w1)
        };
        *v = b2 * *v + one_minus_b2 * g * g;
        let denom = v.sqrt() / bc2_sqrt + eps_t;
        *p -= step_size * *m / denom;
    }
}

/// RMSprop (PyTorch convention, no centering): v = alpha v + (1 - alpha) g^2;
/// with momentum (`buf` given): buf = momentum buf + g / (sqrt(v) + eps), p -= lr buf;
/// without (`buf` None, as PyTorch keeps no buffer when momentum is 0): p -= lr g / (sqrt(v) + eps).
#[allow(clippy::too_many_arguments)]
pub fn rmsprop<T: Float>(
    p: &mut [T],
    g: &[T],
    v: &mut [T],
    buf: Option<&mut [T]>,
    lr: f64,
    alpha: f64,
    eps: f64,
    momentum: f64,
    weight_decay: f64,
) {
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
