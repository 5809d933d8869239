//! Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), PyTorch's `torch.optim.Adam`
//! and `torch.optim.AdamW`.

use crate::error::{Error, Result};
use crate::optim::{check_hyper, pair_mut, Optimizer, ParamList, ParamSet};
use crate::tensor::Tensor;
use kernels::desc::AdamStep;

/// Hyperparameters of [`Adam`]. `Default` gives PyTorch's Adam; [`AdamConfig::adamw`] gives
/// PyTorch's AdamW (decoupled weight decay 1e-2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// 1e-3
    pub lr: f64,
    /// (0.9, 0.999)
    pub betas: (f64, f64),
    /// 1e-8
    pub eps: f64,
    /// 0 for Adam, 1e-2 for AdamW
    pub weight_decay: f64,
    /// false: L2 decay added to the gradient (Adam); true: p *= 1 - lr wd (AdamW)
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch's AdamW defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, decoupled weight decay 1e-2.
    pub fn adamw() -> AdamConfig {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled_weight_decay: true,
            ..AdamConfig::default()
        }
    }
}

/// At step t (counted per parameter, from 1):
///
/// - Adam: g <- g + wd p; AdamW: p <- p (1 - lr wd);
/// - m <- beta1 m + (1 - beta1) g, v <- beta2 v + (1 - beta2) g^2;
/// - p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
///
/// State per parameter: "step", "exp_avg" (m), "exp_avg_sq" (v).
#[derive(Clone, Debug)]
pub struct Adam {
    config: AdamConfig,
    set: ParamSet,
}

const KEYS: &[&str] = &["exp_avg", "exp_avg_sq"];

impl Adam {
    /// Errors on a negative or non-finite lr, eps or weight decay, or a beta outside [0, 1).
    pub fn new(params: impl Into<ParamList>, config: AdamConfig) -> Result<Adam> {
        let op = Adam::op_name(&config);
        check_hyper(op, "lr", config.lr)?;
        check_hyper(op, "eps", config.eps)?;
        check_hyper(op, "weight_decay", config.weight_decay)?;
        for (i, b) in [config.betas.0, config.betas.1].into_iter().enumerate() {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid(
                    op,
                    format!("beta{} must be in [0, 1), got {b}", i + 1),
                ));
            }
        }
        Ok(Adam {
            config,
            set: ParamSet::new(op, params.into())?,
        })
    }

    fn op_name(config: &AdamConfig) -> &'static str {
        if config.decoupled_weight_decay {
            "adamw"
        } else {
            "adam"
        }
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    fn step_param(&mut self, i: usize) -> Result<()> {
        let op = Adam::op_name(&self.config);
        let Some(g) = self.set.grad_of(op, i)? else {
            return Ok(());
        };
        let c = self.config;
        let p = self.set.params[i].1.clone();
        let state = self.set.state_mut(i, KEYS.len())?;
        state.step += 1;
        let step = AdamStep {
            step: state.step,
            lr: c.lr,
            beta1: c.betas.0,
            beta2: c.betas.1,
            eps: c.eps,
            weight_decay: c.weight_decay,
            decoupled: c.decoupled_weight_decay,
        };
        let (m, v) = pair_mut(&mut state.buffers)
            .ok_or_else(|| Error::invalid(op, "state must hold exp_avg and exp_avg_sq"))?;
        let grad = g.storage();
        p.update_storage(op, |data| data.adam_step((&grad, g.layout()), m, v, &step))
    }
}

impl Optimizer for Adam {
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
        check_hyper(Adam::op_name(&self.config), "lr", lr)?;
        self.config.lr = lr;
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.set.export(KEYS)
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.set.import(Adam::op_name(&self.config), KEYS, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::optim::test_util::{close, quadratic_step};

    /// The reference update on one scalar with gradient 2 (p - 1).
    fn reference(cfg: AdamConfig, steps: usize) -> f64 {
        let (mut p, mut m, mut v) = (3.0f64, 0.0, 0.0);
        let (b1, b2) = cfg.betas;
        for t in 1..=steps {
            let mut g = 2.0 * (p - 1.0);
            if cfg.decoupled_weight_decay {
                p *= 1.0 - cfg.lr * cfg.weight_decay;
            } else {
                g += cfg.weight_decay * p;
            }
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mhat = m / (1.0 - b1.powi(t as i32));
            let vhat = v / (1.0 - b2.powi(t as i32));
            p -= cfg.lr * mhat / (vhat.sqrt() + cfg.eps);
        }
        p
    }

    fn run(cfg: AdamConfig, steps: usize) -> f64 {
        let p = Tensor::from_vec(vec![3.0f64], &[1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt = Adam::new(vec![p.clone()], cfg).unwrap();
        for _ in 0..steps {
            opt.zero_grad();
            quadratic_step(&p, &[1.0], &[1.0]);
            opt.step().unwrap();
        }
        p.item().unwrap()
    }

    #[test]
    fn adam_and_adamw_follow_the_formulas() {
        let adam = AdamConfig {
            lr: 0.1,
            weight_decay: 0.1,
            ..Default::default()
        };
        let adamw = AdamConfig {
            lr: 0.1,
            ..AdamConfig::adamw()
        };
        for cfg in [AdamConfig::default(), adam, adamw] {
            close(&[run(cfg, 6)], &[reference(cfg, 6)], 1e-13);
        }
        // the first step moves every coordinate by about lr, whatever the gradient's scale
        let p = Tensor::from_vec(vec![100.0f32, -0.001], &[2])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt = Adam::new(
            vec![p.clone()],
            AdamConfig {
                lr: 0.01,
                ..Default::default()
            },
        )
        .unwrap();
        quadratic_step(&p, &[1.0, 1.0], &[0.0, 0.0]);
        opt.step().unwrap();
        close(&p.to_vec_f64(), &[99.99, -0.001 + 0.01], 1e-4);
    }

    #[test]
    fn steps_are_counted_per_parameter_and_state_round_trips() {
        let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::from_vec(vec![3.0f64], &[1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let cfg = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };
        let mut opt = Adam::new(
            vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())],
            cfg,
        )
        .unwrap();
        quadratic_step(&a, &[1.0, 1.0], &[0.0, 0.0]);
        opt.step().unwrap();
        opt.zero_grad();
        quadratic_step(&a, &[1.0, 1.0], &[0.0, 0.0]);
        quadratic_step(&b, &[1.0], &[0.0]);
        opt.step().unwrap();
        let state = opt.state_tensors();
        let get = |n: &str| state.iter().find(|(k, _)| k == n).unwrap().1.to_vec_f64();
        assert_eq!(get("a.step"), vec![2.0]);
        assert_eq!(get("b.step"), vec![1.0]);
        assert_eq!(state.len(), 6);
        // b's first step is Adam's first step: a move of lr against the gradient's sign
        close(&b.to_vec_f64(), &[2.9], 1e-9);
        // a fresh optimizer with the loaded state continues identically
        let a2 = Tensor::from_vec(a.to_vec::<f64>().unwrap(), &[2])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b2 = Tensor::from_vec(b.to_vec::<f64>().unwrap(), &[1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt2 = Adam::new(
            vec![("a".to_string(), a2.clone()), ("b".to_string(), b2.clone())],
            cfg,
        )
        .unwrap();
        opt2.load_state(&state).unwrap();
        for (o, (x, y)) in [(&mut opt, (&a, &b)), (&mut opt2, (&a2, &b2))] {
            o.zero_grad();
            quadratic_step(x, &[1.0, 1.0], &[0.0, 0.0]);
            quadratic_step(y, &[1.0], &[0.0]);
            o.step().unwrap();
        }
        assert_eq!(a.to_vec_f64(), a2.to_vec_f64());
        assert_eq!(b.to_vec_f64(), b2.to_vec_f64());
        // an f32 state does not load into f64 parameters
        let mut bad = state.clone();
        bad[1].1 = bad[1].1.to_dtype(DType::F32).unwrap();
        assert!(opt2.load_state(&bad).is_err());
    }

    #[test]
    fn bad_configs_are_errors() {
        let p = Tensor::zeros(&[1], DType::F32)
            .requires_grad_(true)
            .unwrap();
        for cfg in [
            AdamConfig {
                lr: -0.1,
                ..Default::default()
            },
            AdamConfig {
                betas: (1.0, 0.999),
                ..Default::default()
            },
            AdamConfig {
                betas: (0.9, -0.1),
                ..Default::default()
            },
            AdamConfig {
                eps: -1.0,
                ..Default::default()
            },
            AdamConfig {
                weight_decay: -1.0,
                ..AdamConfig::adamw()
            },
        ] {
            assert!(Adam::new(vec![p.clone()], cfg).is_err());
        }
        let mut ok = Adam::new(vec![p.clone()], AdamConfig::adamw()).unwrap();
        assert!(ok.set_lr(f64::INFINITY).is_err());
        ok.set_lr(0.5).unwrap();
        assert_eq!(ok.lr(), 0.5);
    }
}
