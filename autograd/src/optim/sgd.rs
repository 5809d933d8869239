//! Stochastic gradient descent with momentum, PyTorch's `torch.optim.SGD`.

use crate::error::{Error, Result};
use crate::optim::{check_hyper, Optimizer, ParamList, ParamSet};
use crate::tensor::Tensor;
use kernels::desc::SgdStep;

/// Hyperparameters of [`Sgd`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// 1e-3
    pub lr: f64,
    /// 0
    pub momentum: f64,
    /// 0
    pub dampening: f64,
    /// L2 penalty added to the gradient, 0
    pub weight_decay: f64,
    /// false
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// With d = g + weight_decay * p:
///
/// - momentum 0: p <- p - lr d;
/// - otherwise b <- d on the first step, b <- momentum b + (1 - dampening) d after, and
///   p <- p - lr (d + momentum b) with Nesterov, p <- p - lr b without.
///
/// State per parameter: "momentum_buffer" (only when momentum != 0) and the step count.
#[derive(Clone, Debug)]
pub struct Sgd {
    config: SgdConfig,
    set: ParamSet,
}

impl Sgd {
    /// Errors on a negative or non-finite lr, momentum or weight decay, and on Nesterov without
    /// momentum or with dampening (as PyTorch does).
    pub fn new(params: impl Into<ParamList>, config: SgdConfig) -> Result<Sgd> {
        check_hyper("sgd", "lr", config.lr)?;
        check_hyper("sgd", "momentum", config.momentum)?;
        check_hyper("sgd", "weight_decay", config.weight_decay)?;
        if !config.dampening.is_finite() {
            return Err(Error::invalid(
                "sgd",
                format!("dampening must be finite, got {}", config.dampening),
            ));
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::invalid(
                "sgd",
                format!(
                    "Nesterov momentum requires momentum > 0 and dampening 0, got momentum {} and dampening {}",
                    config.momentum, config.dampening
                ),
            ));
        }
        Ok(Sgd {
            config,
            set: ParamSet::new("sgd", params.into())?,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    fn keys(&self) -> &'static [&'static str] {
        if self.config.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        }
    }

    fn step_param(&mut self, i: usize) -> Result<()> {
        let Some(g) = self.set.grad_of("sgd", i)? else {
            return Ok(());
        };
        let c = self.config;
        let n_buffers = self.keys().len();
        let p = self.set.params[i].1.clone();
        let state = self.set.state_mut(i, n_buffers)?;
        let step = SgdStep {
            first_step: state.step == 0,
            lr: c.lr,
            momentum: c.momentum,
            dampening: c.dampening,
            weight_decay: c.weight_decay,
            nesterov: c.nesterov,
        };
        state.step += 1;
        let grad = g.storage();
        p.update_storage("sgd", |data| {
            data.sgd_step((&grad, g.layout()), state.buffers.first_mut(), &step)
        })
    }
}

impl Optimizer for Sgd {
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
        check_hyper("sgd", "lr", lr)?;
        self.config.lr = lr;
        Ok(())
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.set.export(self.keys())
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let keys = self.keys();
        self.set.import("sgd", keys, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::optim::test_util::{close, quadratic_step};

    #[test]
    fn momentum_and_nesterov_follow_the_formulas() {
        // gradient of sum(c (p - t)^2) is 2 c (p - t); one element, c = 1, t = 0: g = 2p
        let p = Tensor::from_vec(vec![1.0f64], &[1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.5,
            weight_decay: 0.1,
            nesterov: false,
        };
        let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
        let (mut pv, mut b) = (1.0f64, 0.0f64);
        for step in 0..3 {
            opt.zero_grad();
            quadratic_step(&p, &[1.0], &[0.0]);
            opt.step().unwrap();
            let d = 2.0 * pv + 0.1 * pv;
            b = if step == 0 { d } else { 0.9 * b + 0.5 * d };
            pv -= 0.1 * b;
            close(&p.to_vec_f64(), &[pv], 1e-14);
        }
        let q = Tensor::from_vec(vec![1.0f64], &[1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            ..Default::default()
        };
        let mut opt = Sgd::new(vec![q.clone()], cfg).unwrap();
        let (mut qv, mut b) = (1.0f64, 0.0f64);
        for step in 0..3 {
            opt.zero_grad();
            quadratic_step(&q, &[1.0], &[0.0]);
            opt.step().unwrap();
            let d = 2.0 * qv;
            b = if step == 0 { d } else { 0.9 * b + d };
            qv -= 0.1 * (d + 0.9 * b);
            close(&q.to_vec_f64(), &[qv], 1e-14);
        }
    }

    #[test]
    fn plain_sgd_in_f32_and_skipped_params() {
        let p = Tensor::from_vec(vec![1.0f32, -1.0], &[2])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let idle = Tensor::from_vec(vec![5.0f32], &[1])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt = Sgd::new(
            vec![
                ("p".to_string(), p.clone()),
                ("idle".to_string(), idle.clone()),
            ],
            SgdConfig {
                lr: 0.25,
                ..Default::default()
            },
        )
        .unwrap();
        quadratic_step(&p, &[1.0, 1.0], &[0.0, 0.0]);
        opt.step().unwrap();
        assert_eq!(p.to_vec_f64(), vec![0.5, -0.5]);
        assert_eq!(idle.to_vec_f64(), vec![5.0]);
        let names: Vec<String> = opt.state_tensors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["p.step"]);
    }

    #[test]
    fn bad_configs_are_errors() {
        let p = Tensor::zeros(&[1], DType::F32)
            .requires_grad_(true)
            .unwrap();
        let bad = [
            SgdConfig {
                lr: -1.0,
                ..Default::default()
            },
            SgdConfig {
                momentum: -0.1,
                ..Default::default()
            },
            SgdConfig {
                weight_decay: f64::NAN,
                ..Default::default()
            },
            SgdConfig {
                nesterov: true,
                ..Default::default()
            },
            SgdConfig {
                nesterov: true,
                momentum: 0.9,
                dampening: 0.1,
                ..Default::default()
            },
        ];
        for cfg in bad {
            let e = Sgd::new(vec![p.clone()], cfg).unwrap_err().to_string();
            assert!(e.contains("sgd"), "{e}");
        }
    }

    #[test]
    fn state_round_trips() {
        let make = || {
            Tensor::from_vec(vec![1.0f64, 2.0, -3.0], &[3])
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        };
        let cfg = SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            ..Default::default()
        };
        let (c, t) = ([1.0, 2.0, 0.5], [0.0, 1.0, 1.0]);
        let a = make();
        let mut opt_a = Sgd::new(vec![("w".to_string(), a.clone())], cfg).unwrap();
        for _ in 0..4 {
            opt_a.zero_grad();
            quadratic_step(&a, &c, &t);
            opt_a.step().unwrap();
        }
        let b = make();
        let mut opt_b = Sgd::new(vec![("w".to_string(), b.clone())], cfg).unwrap();
        for _ in 0..2 {
            opt_b.zero_grad();
            quadratic_step(&b, &c, &t);
            opt_b.step().unwrap();
        }
        let saved = opt_b.state_tensors();
        let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w.step", "w.momentum_buffer"]);
        let b2 = Tensor::from_vec(b.to_vec::<f64>().unwrap(), &[3])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt_c = Sgd::new(vec![("w".to_string(), b2.clone())], cfg).unwrap();
        opt_c.load_state(&saved).unwrap();
        for _ in 0..2 {
            opt_c.zero_grad();
            quadratic_step(&b2, &c, &t);
            opt_c.step().unwrap();
        }
        assert_eq!(b2.to_vec_f64(), a.to_vec_f64());
        // wrong shapes, unknown names and missing buffers are errors that change nothing
        let before = opt_c.state_tensors();
        let wrong = vec![
            ("w.step".to_string(), Tensor::scalar(1.0, DType::F64)),
            (
                "w.momentum_buffer".to_string(),
                Tensor::zeros(&[2], DType::F64),
            ),
        ];
        assert!(opt_c.load_state(&wrong).is_err());
        let unknown = vec![("v.step".to_string(), Tensor::scalar(1.0, DType::F64))];
        let e = opt_c.load_state(&unknown).unwrap_err().to_string();
        assert!(e.contains("v.step"), "{e}");
        let missing = vec![("w.step".to_string(), Tensor::scalar(1.0, DType::F64))];
        assert!(opt_c.load_state(&missing).is_err());
        let after = opt_c.state_tensors();
        assert_eq!(before.len(), after.len());
        for ((n1, t1), (n2, t2)) in before.iter().zip(&after) {
            assert_eq!(n1, n2);
            assert_eq!(t1.to_vec_f64(), t2.to_vec_f64());
        }
    }
}
