//! The element types the kernels compute in. Every kernel is generic over [`Float`], so the f64
//! path used by the gradient checks is the same code as the f32 path used for training.

use crate::vmath;
use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point element: f32 or f64.
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + PartialOrd
    + PartialEq
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// -∞, where a max starts.
    const NEG_INFINITY: Self;
    /// From f64, rounding to nearest for f32.
    fn from_f64(v: f64) -> Self;
    /// To f64, exactly.
    fn to_f64(self) -> f64;
    /// e^x (std's).
    fn exp(self) -> Self;
    /// ln x (std's).
    fn ln(self) -> Self;
    /// ln(1 + x) (std's), accurate near 0.
    fn ln_1p(self) -> Self;
    /// √x.
    fn sqrt(self) -> Self;
    /// |x|.
    fn abs(self) -> Self;
    /// x^p.
    fn powf(self, p: Self) -> Self;
    /// The larger of the two (std's: a NaN operand gives the other).
    fn max(self, other: Self) -> Self;
    /// The smaller of the two (std's: a NaN operand gives the other).
    fn min(self, other: Self) -> Self;
    /// True for NaN.
    fn is_nan(self) -> bool;
    /// `self * a + b`, rounded twice (a product and a sum, not a fused multiply-add).
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// e^x as straight-line code that auto-vectorises ([`crate::vmath`] for f32, within 2 ulp;
    /// std for f64, whose callers are the gradient checks).
    fn exp_vectorised(self) -> Self;
    /// ln x, as [`Float::exp_vectorised`].
    fn ln_vectorised(self) -> Self;
    /// ln(1 + x), as [`Float::exp_vectorised`].
    fn ln_1p_vectorised(self) -> Self;
    /// tanh x, as [`Float::exp_vectorised`].
    fn tanh_vectorised(self) -> Self;
    /// The logistic sigmoid σ(x) = 1 / (1 + e^-x), the engine's one (`Tensor::sigmoid` and the
    /// LSTM gates): from e = e^-|x|, which never overflows, σ = 1 / (1 + e) for x >= 0 and
    /// e / (1 + e) below, so that σ of a large negative x keeps its digits instead of
    /// rounding 1 - σ(-x).
    #[inline(always)]
    fn sigmoid_vectorised(self) -> Self {
        let e = (-self.abs()).exp_vectorised();
        let s = Self::ONE / (Self::ONE + e);
        if self >= Self::ZERO {
            s
        } else {
            e * s
        }
    }
}

macro_rules! impl_float {
    ($t:ty, $exp:path, $ln:path, $ln_1p:path, $tanh:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                self * a + b
            }
            #[inline(always)]
            fn exp_vectorised(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn ln_vectorised(self) -> Self {
                $ln(self)
            }
            #[inline(always)]
            fn ln_1p_vectorised(self) -> Self {
                $ln_1p(self)
            }
            #[inline(always)]
            fn tanh_vectorised(self) -> Self {
                $tanh(self)
            }
        }
    };
}

impl_float!(
    f32,
    vmath::exp_f32,
    vmath::ln_f32,
    vmath::ln_1p_f32,
    vmath::tanh_f32
);
impl_float!(f64, f64::exp, f64::ln, f64::ln_1p, f64::tanh);

#[cfg(test)]
mod tests {
    use super::Float;

    /// σ of f32 against σ in f64, relative error over [-30, 30] and at the limits.
    #[test]
    fn f32_sigmoid_is_close_to_exact_and_saturates() {
        let exact = |x: f64| 1.0 / (1.0 + (-x).exp());
        let worst = (-300_000..=300_000)
            .map(|k| k as f32 * 1e-4)
            .map(|x| {
                let s = f64::from(x.sigmoid_vectorised());
                ((s - exact(f64::from(x))) / exact(f64::from(x))).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "sigmoid relative error {worst}");
        assert_eq!(0.0f32.sigmoid_vectorised(), 0.5);
        assert_eq!(f32::INFINITY.sigmoid_vectorised(), 1.0);
        assert_eq!(f32::NEG_INFINITY.sigmoid_vectorised(), 0.0);
        assert_eq!(200.0f32.sigmoid_vectorised(), 1.0);
        // far below zero σ(x) = e^x, kept (not rounded to 0 through 1 - σ(-x))
        let tiny = (-90.0f32).sigmoid_vectorised();
        assert!(tiny > 0.0 && (f64::from(tiny) / exact(-90.0) - 1.0).abs() < 1e-6);
        assert!(f32::NAN.sigmoid_vectorised().is_nan());
        assert_eq!(
            (-3.0f64).sigmoid_vectorised(),
            (-3.0f64).exp() / (1.0 + (-3.0f64).exp())
        );
    }
}
