//! exp, ln, ln(1 + x) and tanh for f32 written as straight-line arithmetic, so that a loop
//! calling them is auto-vectorised (libm's `expf`/`logf`/`tanhf` are opaque calls, one element
//! at a time). These are the engine's only f32 versions: the elementwise kernels, the losses and
//! the LSTM gates all reach them through [`crate::float::Float`] (whose `sigmoid_vectorised` is
//! built on [`exp_f32`]).
//!
//! exp and ln follow Cephes: reduce the argument with a power of two (exact), evaluate a
//! minimax polynomial on the reduced range, scale back. Measured against std over 10^7
//! arguments (tests below): at most 2 ulp (tanh against the f64 value rounded). Special values follow IEEE/libm:
//! exp(+big) = inf, exp(-big) = 0 (through the subnormals), ln(0) = -inf, ln(negative) = NaN,
//! tanh(±inf) = ±1, NaN stays NaN.

/// Adding and subtracting 1.5 * 2^23 rounds an f32 below 2^22 in magnitude to the nearest
/// integer (ties to even), and the sum's low mantissa bits are that integer.
const ROUND: f32 = 12_582_912.0;

/// 2^n for integer n in [-126, 127], built from its bits.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// e^x.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for the n that occur
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Past ln(f32::MAX) = 88.72 e^x overflows, below -103.97 (ln of half the smallest
    // subnormal) it rounds to 0. Clamped to [-104.5, 89], the arithmetic below gets there on its
    // own: n = 128 makes 2^64 * 2^64 = inf, n = -151 leaves y 2^-151, which rounds to 0. So the
    // special values need no selects of their own (which cost a quarter of the time); a NaN
    // stays NaN through the clamp and the polynomial.
    let xc = x.clamp(-104.5, 89.0);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    // n as an integer read from the bits of `shifted`: integer arithmetic that vectorises (the
    // cast `n as i32` saturates, which LLVM does not vectorise, and made exp 2.6x slower)
    let ni = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes 5.0000001201e-1, which rounds to 0.5 in f32
    let y = p * r * r + r + 1.0;
    // 2^n as two factors so that n in [-151, 128] never leaves the normal exponent range
    let half = ni >> 1;
    y * pow2i(half) * pow2i(ni - half)
}

/// ln x.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    // x = m 2^e with m in [sqrt(1/2), sqrt(2)); subnormals are scaled up by 2^23 first
    let subnormal = x < f32::MIN_POSITIVE;
    let xs = if subnormal { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // in [0.5, 1)
    if m < std::f32::consts::FRAC_1_SQRT_2 {
        m += m;
        e -= 1;
    }
    let e = if subnormal { e - 23 } else { e } as f32;
    let f = m - 1.0;
    let z = f * f;
    let mut p = 7.037_683_6e-2_f32;
    p = p * f - 1.151_461e-1;
    p = p * f + 1.167_699_9e-1;
    p = p * f - 1.242_014_1e-1;
    p = p * f + 1.424_932_3e-1;
    p = p * f - 1.666_805_8e-1;
    p = p * f + 2.000_071_4e-1;
    p = p * f - 2.499_999_4e-1;
    p = p * f + 3.333_333e-1;
    let y = f * z * p + e * -2.121_944_4e-4 - 0.5 * z;
    let ln = f + y + e * 0.693_359_4;
    if x > 0.0 && x < f32::INFINITY {
        ln
    } else if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else {
        f32::NAN
    }
}

/// ln(1 + x), accurate for small x: with u = 1 + x rounded, ln(u) * x / (u - 1) cancels the
/// rounding of u (Goldberg's trick).
#[inline(always)]
pub fn ln_1p_f32(x: f32) -> f32 {
    let u = 1.0 + x;
    let d = u - 1.0;
    let l = ln_f32(u);
    if d == 0.0 {
        x
    } else if u == f32::INFINITY {
        l
    } else {
        l * (x / d)
    }
}

/// tanh x: Cephes' odd polynomial for |x| < 0.625, where 1 - 2 / (e^2|x| + 1) would lose
/// digits to cancellation, and that formula beyond (e^2|x| = inf gives 1), with x's sign. Both
/// branches are computed and one selected, so that the loop stays branch-free.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let s = x * x;
    let mut p = -5.704_988_7e-3_f32;
    p = p * s + 2.063_909e-2;
    p = p * s - 5.373_971_6e-2;
    p = p * s + 1.333_144_2e-1;
    p = p * s - 3.333_328e-1;
    let small = p * s * x + x;
    let large = 1.0 - 2.0 / (exp_f32(a + a) + 1.0);
    // tanh has x's sign in both branches (the polynomial's would be lost at x = -0)
    let t = if a < 0.625 { small } else { large };
    t.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0;
        }
        let key = |v: f32| {
            let i = v.to_bits() as i32;
            if i < 0 {
                i32::MIN - i
            } else {
                i
            }
        };
        (key(a) as i64 - key(b) as i64).unsigned_abs() as u32
    }

    /// Arguments spread over every binade from 1e-30 to 1e30, both signs, plus a dense grid.
    fn arguments() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..4_000_000)
            .map(|i| f32::from_bits(0x0d00_0000 + i * 400))
            .filter(|v| v.is_finite())
            .collect();
        let negatives: Vec<f32> = xs.iter().map(|v| -v).collect();
        xs.extend(negatives);
        xs.extend((-200_000..200_000).map(|i| i as f32 * 1e-3));
        xs
    }

    #[test]
    fn exp_within_two_ulp_of_std() {
        let worst = arguments()
            .into_iter()
            .filter(|&x| x.exp() > f32::MIN_POSITIVE)
            .map(|x| (ulps(exp_f32(x), x.exp()), x))
            .max_by_key(|&(u, _)| u)
            .unwrap();
        assert!(worst.0 <= 2, "exp: {} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn ln_and_ln_1p_within_two_ulp_of_std() {
        for x in arguments() {
            if x > 0.0 {
                let (ours, std) = (ln_f32(x), x.ln());
                assert!(ulps(ours, std) <= 2, "ln({x}) = {ours}, std {std}");
            }
            if x > -1.0 {
                let (ours, std) = (ln_1p_f32(x), x.ln_1p());
                assert!(ulps(ours, std) <= 2, "ln_1p({x}) = {ours}, std {std}");
            }
        }
    }

    #[test]
    fn tanh_within_two_ulp_of_f64() {
        let worst = arguments()
            .into_iter()
            .map(|x| (ulps(tanh_f32(x), (x as f64).tanh() as f32), x))
            .max_by_key(|&(u, _)| u)
            .unwrap();
        assert!(worst.0 <= 2, "tanh: {} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn special_values_follow_ieee() {
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        let tiny = exp_f32(-100.0);
        assert!(tiny > 0.0 && ulps(tiny, (-100.0f32).exp()) <= 2);
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(1.0), 0.0);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert!(ln_f32(-1.0).is_nan() && ln_f32(f32::NAN).is_nan());
        assert!(ulps(ln_f32(1e-40), 1e-40f32.ln()) <= 2);
        assert_eq!(ln_1p_f32(-1.0), f32::NEG_INFINITY);
        assert_eq!(ln_1p_f32(1e-30), 1e-30);
        assert_eq!(ln_1p_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh_f32(0.0), 0.0);
        assert!(tanh_f32(-0.0).is_sign_negative());
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(1e-30), 1e-30);
    }
}
