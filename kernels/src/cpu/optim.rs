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
    let (lr, mom, damp, wd) = (
        T::from_f64(lr),
        T::from_f64(momentum),
        T::from_f64(dampening),
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
                    mom * *b + (T::ONE - damp) * d
                };
                let step = if nesterov { d + mom * *b } else { *b };
                *p -= lr * step;
            }
        }
    }
}

/// Adam / AdamW (PyTorch convention). `decoupled` selects AdamW's p *= 1 - lr * wd; otherwise the
/// weight decay is added to the gradient (Adam's L2). `step` counts from 1.
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
    let bc1 = 1.0 - beta1.powi(step as i32);
    let bc2 = 1.0 - beta2.powi(step as i32);
    let step_size = T::from_f64(lr / bc1);
    let bc2_sqrt = T::from_f64(bc2.sqrt());
    let (b1, b2, eps_t, wd) = (
        T::from_f64(beta1),
        T::from_f64(beta2),
        T::from_f64(eps),
        T::from_f64(weight_decay),
    );
    let decay = T::from_f64(1.0 - lr * weight_decay);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if decoupled {
            *p *= decay;
            g
        } else {
            g + wd * *p
        };
        *m = b1 * *m + (T::ONE - b1) * g;
        *v = b2 * *v + (T::ONE - b2) * g * g;
        let denom = v.sqrt() / bc2_sqrt + eps_t;
        *p -= step_size * *m / denom;
    }
}

/// RMSprop (PyTorch convention, no centering): v = alpha v + (1 - alpha) g^2;
/// buf = momentum buf + g / (sqrt(v) + eps); p -= lr buf.
#[allow(clippy::too_many_arguments)]
pub fn rmsprop<T: Float>(
    p: &mut [T],
    g: &[T],
    v: &mut [T],
    buf: &mut [T],
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
    for (((p, &g), v), b) in p.iter_mut().zip(g).zip(v.iter_mut()).zip(buf.iter_mut()) {
        let g = g + wd * *p;
        *v = a * *v + (T::ONE - a) * g * g;
        let d = g / (v.sqrt() + eps);
        if mom > T::ZERO {
            *b = mom * *b + d;
            *p -= lr * *b;
        } else {
            *p -= lr * d;
        }
    }
}
