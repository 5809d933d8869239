//! Parameter initialisers, following `torch.nn.init`. Each fills an existing whole, contiguous
//! tensor in place (like PyTorch's trailing-underscore functions) with one draw per element in
//! row-major order from the given generator, so the same seed gives the same weights.
//!
//! Fans are computed from the shape as PyTorch does: for a weight [out, in, k1, k2, ...] the
//! receptive field is r = k1 * k2 * ..., fan_in = in * r and fan_out = out * r.

use crate::error::{Error, Result};
use crate::nn::update_f64;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The nonlinearity that follows a layer, for [`calculate_gain`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// gain 1 (also right for convolutions without a nonlinearity)
    Linear,
    /// gain 1
    Sigmoid,
    /// gain 5/3
    Tanh,
    /// gain sqrt(2)
    Relu,
    /// gain sqrt(2 / (1 + slope^2)); PyTorch's default slope is 0.01
    LeakyRelu(f64),
    /// gain 3/4
    Selu,
}

/// PyTorch's `calculate_gain`: the factor that keeps activations' variance steady through the
/// nonlinearity (see [`Nonlinearity`] for each value).
pub fn calculate_gain(nonlinearity: Nonlinearity) -> f64 {
    match nonlinearity {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// Which fan the Kaiming initialisers normalise by: fan_in keeps the forward activations'
/// variance, fan_out the backward gradients'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FanMode {
    /// Normalise by fan_in (the default).
    #[default]
    FanIn,
    /// Normalise by fan_out.
    FanOut,
}

/// (fan_in, fan_out) of a weight shape: `(shape[1] * r, shape[0] * r)` with r the product of
/// shape[2..]. Needs at least 2 axes.
pub fn fan_in_and_fan_out(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape(
            "fan_in_and_fan_out",
            format!("fans need a tensor with at least 2 axes, got shape {shape:?}"),
        ));
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

fn check_param(op: &'static str, name: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{name} must be finite, got {v}"),
        ))
    }
}

/// Fills `t` with U(lo, hi): x = lo + (hi - lo) u, u ~ U(0, 1).
pub fn uniform_(t: &Tensor, lo: f64, hi: f64, rng: &mut Rng) -> Result<()> {
    check_param("uniform_", "lo", lo)?;
    check_param("uniform_", "hi", hi)?;
    if lo > hi {
        return Err(Error::invalid(
            "uniform_",
            format!(
                "need lo <= hi, got lo {lo}, hi {hi} (tensor {:?})",
                t.shape()
            ),
        ));
    }
    let draws: Vec<f64> = (0..t.numel())
        .map(|_| lo + (hi - lo) * rng.uniform())
        .collect();
    update_f64(t, |i, _| draws[i])
}

/// Fills `t` with N(mean, std^2): x = mean + std z, z ~ N(0, 1).
pub fn normal_(t: &Tensor, mean: f64, std: f64, rng: &mut Rng) -> Result<()> {
    check_param("normal_", "mean", mean)?;
    check_param("normal_", "std", std)?;
    if std < 0.0 {
        return Err(Error::invalid(
            "normal_",
            format!("std must be >= 0, got {std} (tensor {:?})", t.shape()),
        ));
    }
    let draws: Vec<f64> = (0..t.numel()).map(|_| mean + std * rng.normal()).collect();
    update_f64(t, |i, _| draws[i])
}

/// Fills `t` with `value`.
pub fn constant_(t: &Tensor, value: f64) -> Result<()> {
    update_f64(t, |_, _| value)
}

/// Fills `t` with zeros.
pub fn zeros_(t: &Tensor) -> Result<()> {
    constant_(t, 0.0)
}

/// Fills `t` with ones.
pub fn ones_(t: &Tensor) -> Result<()> {
    constant_(t, 1.0)
}

/// Glorot & Bengio (2010), uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
pub fn xavier_uniform_(t: &Tensor, gain: f64, rng: &mut Rng) -> Result<()> {
    let (fan_in, fan_out) = fan_in_and_fan_out(t.shape())?;
    if t.numel() == 0 {
        return Ok(());
    }
    let a = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
    uniform_(t, -a, a, rng)
}

/// Glorot & Bengio (2010), normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
pub fn xavier_normal_(t: &Tensor, gain: f64, rng: &mut Rng) -> Result<()> {
    let (fan_in, fan_out) = fan_in_and_fan_out(t.shape())?;
    if t.numel() == 0 {
        return Ok(());
    }
    let std = gain * (2.0 / (fan_in + fan_out) as f64).sqrt();
    normal_(t, 0.0, std, rng)
}

fn kaiming_std(
    op: &'static str,
    t: &Tensor,
    mode: FanMode,
    nonlinearity: Nonlinearity,
) -> Result<Option<f64>> {
    let (fan_in, fan_out) = fan_in_and_fan_out(t.shape())?;
    if t.numel() == 0 {
        return Ok(None);
    }
    let fan = match mode {
        FanMode::FanIn => fan_in,
        FanMode::FanOut => fan_out,
    };
    let gain = calculate_gain(nonlinearity);
    check_param(op, "gain", gain)?;
    Ok(Some(gain / (fan as f64).sqrt()))
}

/// He et al. (2015), uniform: U(-b, b) with b = sqrt(3) * gain / sqrt(fan), the fan chosen by
/// `mode` and the gain by `nonlinearity` (PyTorch's `kaiming_uniform_(t, a, mode, nonlinearity)`
/// is `Nonlinearity::LeakyRelu(a)` here).
pub fn kaiming_uniform_(
    t: &Tensor,
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut Rng,
) -> Result<()> {
    match kaiming_std("kaiming_uniform_", t, mode, nonlinearity)? {
        Some(std) => {
            let bound = 3f64.sqrt() * std;
            uniform_(t, -bound, bound, rng)
        }
        None => Ok(()),
    }
}

/// He et al. (2015), normal: N(0, std^2) with std = gain / sqrt(fan).
pub fn kaiming_normal_(
    t: &Tensor,
    mode: FanMode,
    nonlinearity: Nonlinearity,
    rng: &mut Rng,
) -> Result<()> {
    match kaiming_std("kaiming_normal_", t, mode, nonlinearity)? {
        Some(std) => normal_(t, 0.0, std, rng),
        None => Ok(()),
    }
}

/// PyTorch's default for `nn.Linear` and the convolutions (`reset_parameters`): the weight gets
/// kaiming_uniform with a = sqrt(5), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias gets
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) too (zeros when fan_in is 0). Weight first, then bias.
pub fn torch_default_(weight: &Tensor, bias: Option<&Tensor>, rng: &mut Rng) -> Result<()> {
    kaiming_uniform_(
        weight,
        FanMode::FanIn,
        Nonlinearity::LeakyRelu(5f64.sqrt()),
        rng,
    )?;
    if let Some(b) = bias {
        let (fan_in, _) = fan_in_and_fan_out(weight.shape())?;
        let bound = if fan_in > 0 {
            1.0 / (fan_in as f64).sqrt()
        } else {
            0.0
        };
        uniform_(b, -bound, bound, rng)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn stats(t: &Tensor) -> (f64, f64, f64) {
        let v = t.to_vec_f64();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let max_abs = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        (mean, var.sqrt(), max_abs)
    }

    #[test]
    fn gains_match_pytorch() {
        assert_eq!(calculate_gain(Nonlinearity::Linear), 1.0);
        assert_eq!(calculate_gain(Nonlinearity::Sigmoid), 1.0);
        assert!((calculate_gain(Nonlinearity::Tanh) - 5.0 / 3.0).abs() < 1e-15);
        assert!((calculate_gain(Nonlinearity::Relu) - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert!((calculate_gain(Nonlinearity::LeakyRelu(0.01)) - 1.4141428569978354).abs() < 1e-15);
        assert_eq!(calculate_gain(Nonlinearity::Selu), 0.75);
    }

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(fan_in_and_fan_out(&[4, 3]).unwrap(), (3, 4));
        assert_eq!(
            fan_in_and_fan_out(&[16, 8, 3, 5]).unwrap(),
            (8 * 15, 16 * 15)
        );
        let e = fan_in_and_fan_out(&[5]).unwrap_err().to_string();
        assert!(e.contains("[5]"), "{e}");
    }

    #[test]
    fn bounds_and_statistics() {
        let mut rng = Rng::new(11);
        let (fan_in, fan_out) = (200usize, 300usize);
        let w = Tensor::zeros(&[fan_out, fan_in], DType::F64);

        xavier_uniform_(&w, 2.0, &mut rng).unwrap();
        let a = 2.0 * (6.0 / 500.0f64).sqrt();
        let (m, s, max) = stats(&w);
        assert!(max <= a && max > 0.99 * a, "{max} vs {a}");
        assert!(
            m.abs() < 0.01 && (s - a / 3f64.sqrt()).abs() < 0.01 * a,
            "{m} {s}"
        );

        xavier_normal_(&w, 1.0, &mut rng).unwrap();
        let (m, s, _) = stats(&w);
        let want = (2.0 / 500.0f64).sqrt();
        assert!(m.abs() < 0.005 && (s - want).abs() < 0.01 * want, "{m} {s}");

        kaiming_uniform_(&w, FanMode::FanIn, Nonlinearity::Relu, &mut rng).unwrap();
        let bound = 3f64.sqrt() * 2f64.sqrt() / (fan_in as f64).sqrt();
        let (_, s, max) = stats(&w);
        assert!(max <= bound && max > 0.99 * bound);
        assert!((s - bound / 3f64.sqrt()).abs() < 0.01 * bound);

        kaiming_normal_(&w, FanMode::FanOut, Nonlinearity::Tanh, &mut rng).unwrap();
        let want = 5.0 / 3.0 / (fan_out as f64).sqrt();
        let (m, s, _) = stats(&w);
        assert!(m.abs() < 0.01 * want * 10.0 && (s - want).abs() < 0.01 * want);

        normal_(&w, 3.0, 0.5, &mut rng).unwrap();
        let (m, s, _) = stats(&w);
        assert!((m - 3.0).abs() < 0.005 && (s - 0.5).abs() < 0.005);

        uniform_(&w, -0.25, 0.75, &mut rng).unwrap();
        let v = w.to_vec_f64();
        assert!(v.iter().all(|&x| (-0.25..0.75).contains(&x)));

        zeros_(&w).unwrap();
        assert!(w.to_vec_f64().iter().all(|&x| x == 0.0));
        ones_(&w).unwrap();
        assert!(w.to_vec_f64().iter().all(|&x| x == 1.0));
    }

    #[test]
    fn torch_default_linear_bounds() {
        let mut rng = Rng::new(12);
        let w = Tensor::zeros(&[64, 25], DType::F32);
        let b = Tensor::zeros(&[64], DType::F32);
        torch_default_(&w, Some(&b), &mut rng).unwrap();
        let bound = 1.0 / 5.0;
        for t in [&w, &b] {
            let (_, _, max) = stats(t);
            assert!(max <= bound + 1e-7 && max > 0.9 * bound, "{max}");
        }
        let (_, s, _) = stats(&w);
        assert!((s - bound / 3f64.sqrt()).abs() < 0.05 * bound);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut rng = Rng::new(13);
        let w = Tensor::zeros(&[2, 2], DType::F32);
        assert!(normal_(&w, 0.0, -1.0, &mut rng).is_err());
        assert!(uniform_(&w, 1.0, -1.0, &mut rng).is_err());
        assert!(uniform_(&w, f64::NAN, 1.0, &mut rng).is_err());
        assert!(xavier_uniform_(&Tensor::zeros(&[3], DType::F32), 1.0, &mut rng).is_err());
        // a non-contiguous view cannot be filled in place
        let view = w.t().unwrap();
        assert!(normal_(&view, 0.0, 1.0, &mut rng).is_err());
        // zero-element tensors are left alone
        let empty = Tensor::zeros(&[0, 3], DType::F32);
        kaiming_uniform_(&empty, FanMode::FanIn, Nonlinearity::Relu, &mut rng).unwrap();
    }
}
