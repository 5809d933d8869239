//! The GAN theory of Goodfellow et al. 2014 (section 4), demonstrated in one dimension.
//!
//! For a fixed generator distribution p_g, the discriminator maximising
//! V(D) = E_{p_data}[log D(x)] + E_{p_g}[log(1 - D(x))] is, pointwise,
//!
//! ```text
//!   D*(x) = p_data(x) / (p_data(x) + p_g(x))
//!   V(D*) = -log 4 + 2 JSD(p_data || p_g)
//! ```
//!
//! Here p_data is a mixture of two Gaussians and p_g one Gaussian (fixed: only D trains). A small
//! MLP D trained by Adam on samples of both ([`train_discriminator`]) approaches D*, and the
//! two sides of the value identity are computed by quadrature: V(D*) from its definition, the
//! JSD from its own, (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2 ([`Toy::value_at_optimum`],
//! [`Toy::jsd`]). `genzoo gan-theory` writes the picture (D beside D* and both densities) and
//! the lecture's plot of the two generator losses' slopes.

use crate::adversarial::{discriminator_loss, generator_loss_slope, GeneratorLoss};
use crate::latent::Mlp;
use crate::program::image;
use autograd::nn::Module;
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, Result, Rng, Tensor};

/// A normal density N(mean, sd^2).
#[derive(Clone, Copy, Debug)]
pub struct Normal {
    pub mean: f64,
    pub sd: f64,
}

impl Normal {
    pub fn pdf(&self, x: f64) -> f64 {
        let u = (x - self.mean) / self.sd;
        (-0.5 * u * u).exp() / (self.sd * (2.0 * std::f64::consts::PI).sqrt())
    }
    pub fn draw(&self, rng: &mut Rng) -> f64 {
        self.mean + self.sd * rng.normal()
    }
}

/// The toy: p_data an equal mixture of `data`, p_g = `generator`.
#[derive(Clone, Debug)]
pub struct Toy {
    pub data: [Normal; 2],
    pub generator: Normal,
}

impl Default for Toy {
    /// p_data = (N(-2, 0.5^2) + N(2, 0.5^2)) / 2, p_g = N(0.5, 1).
    fn default() -> Self {
        Toy {
            data: [
                Normal {
                    mean: -2.0,
                    sd: 0.5,
                },
                Normal { mean: 2.0, sd: 0.5 },
            ],
            generator: Normal { mean: 0.5, sd: 1.0 },
        }
    }
}

/// Quadrature range and step: [-8, 8] holds all but ~1e-15 of both densities.
const LO: f64 = -8.0;
const HI: f64 = 8.0;
const STEPS: usize = 16_000;

/// The integral of `f` over [LO, HI] by Simpson's rule.
fn integrate(f: impl Fn(f64) -> f64) -> f64 {
    let h = (HI - LO) / STEPS as f64;
    let mut s = f(LO) + f(HI);
    for i in 1..STEPS {
        s += f(LO + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

/// x ln(x / y), with 0 ln 0 = 0.
fn xlogx_over(x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else {
        x * (x / y).ln()
    }
}

impl Toy {
    pub fn p_data(&self, x: f64) -> f64 {
        0.5 * (self.data[0].pdf(x) + self.data[1].pdf(x))
    }

    pub fn p_g(&self, x: f64) -> f64 {
        self.generator.pdf(x)
    }

    /// D*(x) = p_data / (p_data + p_g).
    pub fn optimal(&self, x: f64) -> f64 {
        let (p, q) = (self.p_data(x), self.p_g(x));
        if p + q == 0.0 {
            0.5
        } else {
            p / (p + q)
        }
    }

    /// V(D) = E_data[log D] + E_g[log(1 - D)] by quadrature, for any D in (0, 1).
    pub fn value(&self, d: impl Fn(f64) -> f64) -> f64 {
        integrate(|x| {
            let v = d(x).clamp(1e-300, 1.0 - 1e-16);
            let (p, q) = (self.p_data(x), self.p_g(x));
            (if p > 0.0 { p * v.ln() } else { 0.0 })
                + (if q > 0.0 { q * (1.0 - v).ln() } else { 0.0 })
        })
    }

    /// V(D*), from V's definition.
    pub fn value_at_optimum(&self) -> f64 {
        self.value(|x| self.optimal(x))
    }

    /// JSD(p_data || p_g) from its definition, in nats.
    pub fn jsd(&self) -> f64 {
        integrate(|x| {
            let (p, q) = (self.p_data(x), self.p_g(x));
            let m = 0.5 * (p + q);
            if m == 0.0 {
                0.0
            } else {
                0.5 * xlogx_over(p, m) + 0.5 * xlogx_over(q, m)
            }
        })
    }
}

/// A trained discriminator of the toy: an MLP 1 -> 64 -> 64 -> 1 (ReLU) giving D's logit.
pub struct ToyDiscriminator {
    net: Mlp,
}

impl ToyDiscriminator {
    /// D(x) for every x of `xs`.
    pub fn probabilities(&self, xs: &[f64]) -> Result<Vec<f64>> {
        let x = Tensor::from_vec(
            xs.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
            &[xs.len(), 1],
        )?;
        let d = no_grad(|| self.net.forward(&x)?.sigmoid())?;
        Ok(d.to_vec_f64())
    }
}

/// Trains D on `steps` batches of 256 draws from each side (p_g fixed), maximising V by
/// minimising BCE (data 1, generated 0) with Adam 1e-3.
pub fn train_discriminator(toy: &Toy, steps: usize, rng: &mut Rng) -> Result<ToyDiscriminator> {
    let net = Mlp::new(&[1, 64, 64, 1], rng)?;
    let mut opt = Adam::new(
        net.named_parameters(),
        AdamConfig {
            lr: 1e-3,
            ..AdamConfig::default()
        },
    )?;
    let batch = 256;
    for _ in 0..steps {
        let real: Vec<f32> = (0..batch)
            .map(|_| toy.data[rng.below(2) as usize].draw(rng) as f32)
            .collect();
        let fake: Vec<f32> = (0..batch).map(|_| toy.generator.draw(rng) as f32).collect();
        let real = Tensor::from_vec(real, &[batch, 1])?;
        let fake = Tensor::from_vec(fake, &[batch, 1])?;
        let loss = discriminator_loss(&net.forward(&real)?, &net.forward(&fake)?)?;
        opt.minimize(&loss)?;
    }
    Ok(ToyDiscriminator { net })
}

/// Where the gap is measured: the points of a grid on [-5, 5] where p_data + p_g is at least
/// this. Out in the tails neither side draws samples, so nothing tells D what D* is there.
pub const SUPPORT_DENSITY: f64 = 0.02;

/// The largest |D(x) - D*(x)| over the grid points of [-5, 5] (step 0.05) where p_data + p_g
/// >= [`SUPPORT_DENSITY`].
pub fn max_gap(toy: &Toy, d: &ToyDiscriminator) -> Result<f64> {
    let xs: Vec<f64> = (0..=200)
        .map(|i| -5.0 + i as f64 * 0.05)
        .filter(|&x| toy.p_data(x) + toy.p_g(x) >= SUPPORT_DENSITY)
        .collect();
    let got = d.probabilities(&xs)?;
    Ok(xs
        .iter()
        .zip(&got)
        .map(|(&x, &g)| (g - toy.optimal(x)).abs())
        .fold(0.0, f64::max))
}

/// The picture of the theory: the trained D and D* over [-5, 5], with p_data and p_g scaled to
/// the same height (PNG bytes).
pub fn optimal_discriminator_png(toy: &Toy, d: &ToyDiscriminator) -> Result<Vec<u8>> {
    let xs: Vec<f64> = (0..=200).map(|i| -5.0 + i as f64 * 0.05).collect();
    let got = d.probabilities(&xs)?;
    let peak = xs
        .iter()
        .map(|&x| toy.p_data(x).max(toy.p_g(x)))
        .fold(0.0, f64::max);
    let series = vec![
        (
            "D (trained)".to_string(),
            xs.iter().copied().zip(got).collect(),
        ),
        (
            "optimal D = p_data / (p_data + p_g)".to_string(),
            xs.iter().map(|&x| (x, toy.optimal(x))).collect(),
        ),
        (
            "p_data (scaled)".to_string(),
            xs.iter().map(|&x| (x, toy.p_data(x) / peak)).collect(),
        ),
        (
            "p_g (scaled)".to_string(),
            xs.iter().map(|&x| (x, toy.p_g(x) / peak)).collect(),
        ),
    ];
    let style = image::PlotStyle {
        x_label: "x",
        smooth: false,
        log_y_allowed: false,
    };
    image::plot_png(&series, 800, 480, &style)
}

/// The lecture's point about the two generator losses: d loss / d logit against D(G(z)) in
/// (0, 1) for each (PNG bytes). The minimax loss's slope vanishes where training starts
/// (D(G(z)) near 0), the non-saturating one's is largest there.
pub fn generator_loss_slopes_png() -> Result<Vec<u8>> {
    let ds: Vec<f64> = (1..200).map(|i| i as f64 / 200.0).collect();
    let curve = |kind| {
        ds.iter()
            .map(|&d| (d, generator_loss_slope(kind, d)))
            .collect()
    };
    let series = vec![
        (
            "non-saturating -log D(G(z))".to_string(),
            curve(GeneratorLoss::NonSaturating),
        ),
        (
            "minimax log(1 - D(G(z)))".to_string(),
            curve(GeneratorLoss::Minimax),
        ),
    ];
    let style = image::PlotStyle {
        x_label: "D(G(z))",
        smooth: false,
        log_y_allowed: false,
    };
    image::plot_png(&series, 800, 480, &style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_at_the_optimum_is_minus_log_4_plus_twice_the_jsd() {
        for toy in [
            Toy::default(),
            Toy {
                generator: Normal {
                    mean: -1.0,
                    sd: 2.0,
                },
                ..Toy::default()
            },
        ] {
            let v = toy.value_at_optimum();
            let want = -(4.0f64).ln() + 2.0 * toy.jsd();
            assert!(
                (v - want).abs() < 1e-2,
                "V(D*) = {v}, -log 4 + 2 JSD = {want}"
            );
            // D* is the best discriminator: any other scores lower
            assert!(toy.value(|_| 0.5) < v && toy.value(|x| toy.optimal(x) * 0.9) < v);
        }
        // equal distributions: JSD 0, V = -log 4
        let same = Toy {
            data: [Normal { mean: 0.0, sd: 1.0 }; 2],
            generator: Normal { mean: 0.0, sd: 1.0 },
        };
        assert!(same.jsd().abs() < 1e-9);
        assert!((same.value_at_optimum() + (4.0f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn a_trained_discriminator_approaches_the_optimal_one() {
        let toy = Toy::default();
        let d = train_discriminator(&toy, 2000, &mut Rng::new(1)).unwrap();
        let gap = max_gap(&toy, &d).unwrap();
        assert!(
            gap < 0.05,
            "max |D - D*| where the densities have mass = {gap}"
        );
        // and its value is close to (and, up to quadrature, not above) V(D*)
        let xs: Vec<f64> = (0..=16_000).map(|i| LO + i as f64 * 1e-3).collect();
        let probs = d.probabilities(&xs).unwrap();
        let lookup = |x: f64| probs[(((x - LO) / 1e-3).round() as usize).min(probs.len() - 1)];
        let v = toy.value(lookup);
        let best = toy.value_at_optimum();
        assert!(
            v <= best + 1e-3 && v > best - 0.05,
            "V(D) = {v}, V(D*) = {best}"
        );
    }
}
