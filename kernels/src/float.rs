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
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn tanh(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    fn is_nan(self) -> bool;
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// e^x as straight-line code that auto-vectorises ([`crate::vmath`] for f32, within 2 ulp;
    /// std for f64, whose callers are the gradient checks).
    fn exp_vectorised(self) -> Self;
    /// ln x, as [`Float::exp_vectorised`].
    fn ln_vectorised(self) -> Self;
    /// ln(1 + x), as [`Float::exp_vectorised`].
    fn ln_1p_vectorised(self) -> Self;
}

macro_rules! impl_float {
    ($t:ty, $exp:path, $ln:path, $ln_1p:path) => {
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
            fn tanh(self) -> Self {
                <$t>::tanh(self)
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
        }
    };
}

impl_float!(f32, vmath::exp_f32, vmath::ln_f32, vmath::ln_1p_f32);
impl_float!(f64, f64::exp, f64::ln, f64::ln_1p);
