//! RMSprop (Hinton's lecture 6e), PyTorch's `torch.optim.RMSprop` without centering.

use crate::error::Result;
use crate::optim::{check_hyper, Optimizer, ParamList, ParamSet};
use crate::tensor::Tensor;
use kernels::desc::RmspropStep;

/// Hyperparameters of [`RmsProp`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    /// 1e-2
    pub lr: f64,
    /// 0.99
    pub alpha: f64,
    /// 1e-8
    pub eps: f64,
    /// L2 penalty added to the gradient, 0
    pub weight_decay: f64,
    /// 0
    pub momentum: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
        }
    }
}

/// With g <- g + wd p and v <- alpha v + (1 - alpha) g^2:
///
/// - momentum 0: p <- p - lr g / (sqrt(v) + eps);
/// - otherwise b <- momentum b + g / (sqrt(v) + eps), p <- p - lr b.
///
/// State per parameter: "step", "square_avg" (v), and "momentum_buffer" (b) when momentum > 0.
#[derive(Clone, Debug)]
pub struct RmsProp {
    config: RmsPropConfig,
    set: ParamSet,
}

impl RmsProp {
    /// Errors on a negative or non-finite lr, alpha, eps, momentum or weight decay.
    pub fn new(params: impl Into<ParamList>, config: RmsPropConfig) -> Result<RmsProp> {
        for (name, v) in [
            ("lr", config.lr),
            ("alpha", config.alpha),
            ("eps", config.eps),
            ("weight_decay", config.weight_decay),
            ("momentum", config.momentum),
        ] {
            check_hyper("rmsprop", name, v)?;
        }
        Ok(RmsProp {
            config,
            set: ParamSet::new("rmsprop", params.into())?,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }

    fn keys(&self) -> &'static [&'static str] {
        if self.config.momentum > 0.0 {
            &["square_avg", "momentum_buffer"]
        } else {
            &["square_avg"]
        }
    }

    fn step_param(&mut self, i: usize) -> Result<()> {
        let Some(g) = self.set.grad_of("rmsprop", i)? else {
            return Ok(());
        };
        let c = self.config;
        let n_buffers = self.keys().len();
        let p = self.set.params[i].1.clone();
        let state = self.set.state_mut(i, n_buffers)?;
        state.step += 1;
        let mut bufs = state.buffers.iter_mut();
        let (Some(v), buf) = (bufs.next(), bufs.next()) else {
            return Err(crate::error::Error::invalid(
                "rmsprop",
                "state must hold square_avg",
            ));
        };
        let step = RmspropStep {
            lr: c.lr,
            alpha: c.alpha,
            eps: c.eps,
            momentum: c.momentum,
            weight_decay: c.weight_decay,
        };
        let grad = g.storage();
        p.update_storage("rmsprop", |data| {
            data.rmsprop_step((&grad, g.layout()), v, buf, &step)
        })
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) -> Result<()> {
        for i in 0..self.set.params.len() {
            self.step_param(i)?;
        }
        Ok(())
    }

    fn params(&self) -> &[(String, Tensor)] {
        &self.set.params
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_hyper("rmsprop", "lr", lr)?;
        self.config.lr = lr;
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.set.export(self.keys())
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let keys = self.keys();
        self.set.import("rmsprop", keys, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::optim::test_util::{close, quadratic_step};

    fn run(cfg: RmsPropConfig) -> (f64, f64) {
        let p = Tensor::from_vec(vec![2.0f64], &[1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt = RmsProp::new(vec![p.clone()], cfg).unwrap();
        let (mut pv, mut v, mut b) = (2.0f64, 0.0f64, 0.0f64);
        for _ in 0..5 {
            opt.zero_grad();
            quadratic_step(&p, &[1.0], &[0.0]);
            opt.step().unwrap();
            let g = 2.0 * pv + cfg.weight_decay * pv;
            v = cfg.alpha * v + (1.0 - cfg.alpha) * g * g;
            let d = g / (v.sqrt() + cfg.eps);
            if cfg.momentum > 0.0 {
                b = cfg.momentum * b + d;
                pv -= cfg.lr * b;
            } else {
                pv -= cfg.lr * d;
            }
        }
        (p.item().unwrap(), pv)
    }

    #[test]
    fn follows_the_formulas() {
        for cfg in [
            RmsPropConfig::default(),
            RmsPropConfig {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 0.1,
                alpha: 0.9,
                ..Default::default()
            },
        ] {
            let (got, want) = run(cfg);
            close(&[got], &[want], 1e-13);
        }
    }

    #[test]
    fn state_keys_depend_on_momentum() {
        let p = Tensor::from_vec(vec![1.0f32, 2.0], &[2])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut plain =
            RmsProp::new(vec![("w".to_string(), p.clone())], RmsPropConfig::default()).unwrap();
        quadratic_step(&p, &[1.0, 1.0], &[0.0, 0.0]);
        plain.step().unwrap();
        let names: Vec<String> = plain.state_tensors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["w.step", "w.square_avg"]);
        let mut heavy = RmsProp::new(
            vec![("w".to_string(), p.clone())],
            RmsPropConfig {
                momentum: 0.5,
                ..Default::default()
            },
        )
        .unwrap();
        heavy.step().unwrap();
        let state = heavy.state_tensors();
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w.step", "w.square_avg", "w.momentum_buffer"]);
        assert_eq!(state[1].1.dtype(), DType::F32);
        // a state with a momentum buffer does not fit an optimizer without momentum
        assert!(plain.load_state(&state).is_err());
        heavy.load_state(&state).unwrap();
        assert!(RmsProp::new(
            vec![p],
            RmsPropConfig {
                alpha: -0.5,
                ..Default::default()
            }
        )
        .is_err());
    }
}
