//! One seeded random generator for the whole engine: xoshiro256++ (Blackman & Vigna, 2019), its
//! 256-bit state filled from the seed by splitmix64. The same seed gives the same stream on every
//! platform, so the same seed gives the same run on the CPU.
//!
//! - [`Rng`]: `next_u64`, `uniform` in [0, 1), `normal` (Box-Muller), `below`, `shuffle`.
//! - Tensor constructors: [`Tensor::rand`], [`Tensor::rand_uniform`], [`Tensor::randn`],
//!   [`Tensor::bernoulli`], [`Tensor::categorical`]. Elements are drawn in row-major order, one
//!   draw per element.
//! - A thread-local default generator: [`manual_seed`] and [`with_default`], for code that does
//!   not thread an `&mut Rng` through.

use crate::backend::Storage;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::RefCell;

/// The seed of the thread-local default generator before any [`manual_seed`].
pub const DEFAULT_SEED: u64 = 0x5EED_2024;

/// splitmix64 (Steele, Lea & Flood 2014): a 64-bit state advanced by the golden-ratio increment,
/// then mixed. Used only to expand a seed into xoshiro's state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++: 256 bits of state, period 2^256 - 1, output
/// `rotl(s0 + s3, 23) + s0`, then the state steps by xor-shift-rotate.
///
/// `Clone` copies the state (the copy repeats the stream); use [`Rng::split`] for an independent
/// generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
    /// The second normal of the last Box-Muller pair, returned by the next `normal()`.
    spare_normal: Option<u64>,
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for word in &mut s {
            *word = splitmix64(&mut sm);
        }
        // splitmix64 is a bijection of its counter, so four outputs are never all zero; keep the
        // guard anyway because the all-zero state is xoshiro's one fixed point.
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng {
            s,
            spare_normal: None,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits: `(x >> 11) * 2^-53`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, 1) as f32 with 24 random bits: `(x >> 40) * 2^-24` (never rounds up to 1).
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A standard normal N(0, 1) by Box-Muller: with u1 in (0, 1] and u2 in [0, 1),
    /// r = sqrt(-2 ln u1), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2). z1 is kept for the next call.
    pub fn normal(&mut self) -> f64 {
        if let Some(bits) = self.spare_normal.take() {
            return f64::from_bits(bits);
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln(u1) is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare_normal = Some((r * theta.sin()).to_bits());
        r * theta.cos()
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's multiply-and-reject).
    /// `n == 0` gives 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n; // 2^64 mod n
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Shuffles `items` in place (Fisher-Yates), e.g. a dataset's order for one epoch.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A new generator seeded from this one's next output: an independent stream for a worker or
    /// a sub-task, reproducible from the parent's seed. Advances `self` by one draw.
    pub fn split(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// The whole state as words: xoshiro's four, then the bits of the pending Box-Muller normal
    /// when there is one. [`Rng::from_state`] rebuilds a generator that continues the same
    /// stream, so a checkpoint can resume a run exactly.
    pub fn state(&self) -> Vec<u64> {
        let mut words = self.s.to_vec();
        words.extend(self.spare_normal);
        words
    }

    /// The generator whose state is `words`, as written by [`Rng::state`]. Errors unless there
    /// are 4 or 5 words and the first four are not all zero (xoshiro's fixed point).
    pub fn from_state(words: &[u64]) -> Result<Rng> {
        if !(words.len() == 4 || words.len() == 5) {
            return Err(Error::invalid(
                "Rng::from_state",
                format!("a generator's state is 4 or 5 words, got {}", words.len()),
            ));
        }
        if words[..4] == [0; 4] {
            return Err(Error::invalid(
                "Rng::from_state",
                "the all-zero state is not a valid xoshiro256++ state",
            ));
        }
        let mut s = [0u64; 4];
        s.copy_from_slice(&words[..4]);
        Ok(Rng {
            s,
            spare_normal: words.get(4).copied(),
        })
    }

    /// A generator derived from the current state without advancing it.
    fn fork(&self) -> Rng {
        Rng::new(self.s[0] ^ self.s[1].rotate_left(17) ^ self.s[2].rotate_left(31) ^ self.s[3])
    }

    /// `n` uniforms in [0, 1) as a storage of `dtype`.
    fn uniform_storage(&mut self, n: usize, dtype: DType) -> Storage {
        match dtype {
            DType::F32 => Storage::from_vec::<f32>((0..n).map(|_| self.uniform_f32()).collect()),
            DType::F64 => Storage::from_vec::<f64>((0..n).map(|_| self.uniform()).collect()),
            DType::BF16 => f64_storage(
                (0..n).map(|_| f64::from(self.uniform_f32())).collect(),
                dtype,
            ),
        }
    }
}

thread_local! {
    static DEFAULT: RefCell<Rng> = RefCell::new(Rng::new(DEFAULT_SEED));
}

/// Reseeds this thread's default generator: after `manual_seed(s)` the draws made through
/// [`with_default`] are the same on every run.
pub fn manual_seed(seed: u64) {
    DEFAULT.with(|cell| *cell.borrow_mut() = Rng::new(seed));
}

/// Runs `f` with this thread's default generator.
///
/// The generator is moved out of its slot while `f` runs, so a nested `with_default` (or a
/// `manual_seed` inside `f`) cannot fail: a nested call gets a generator derived from the outer
/// one's state, whose draws do not advance the outer stream, and the outer generator is put back
/// when `f` returns. Still deterministic: the same seed gives the same values.
pub fn with_default<R>(f: impl FnOnce(&mut Rng) -> R) -> R {
    let mut rng = DEFAULT.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fork = slot.fork();
        std::mem::replace(&mut *slot, fork)
    });
    let out = f(&mut rng);
    DEFAULT.with(|cell| *cell.borrow_mut() = rng);
    out
}

fn check_finite(op: &'static str, what: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{what} must be finite, got {v}"),
        ))
    }
}

impl Tensor {
    /// Uniform samples in [0, 1): x ~ U(0, 1).
    pub fn rand(shape: &[usize], dtype: DType, rng: &mut Rng) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_sampled(rng.uniform_storage(n, dtype), shape)
    }

    /// Uniform samples x = lo + (hi - lo) u with u ~ U(0, 1), i.e. in [lo, hi) (up to the rounding
    /// of that product). Errors when lo > hi or either is not finite.
    pub fn rand_uniform(
        shape: &[usize],
        lo: f64,
        hi: f64,
        dtype: DType,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        check_finite("rand_uniform", "lo", lo)?;
        check_finite("rand_uniform", "hi", hi)?;
        if lo > hi {
            return Err(Error::invalid(
                "rand_uniform",
                format!("need lo <= hi, got lo {lo}, hi {hi} for shape {shape:?}"),
            ));
        }
        let n: usize = shape.iter().product();
        let width = hi - lo;
        let data: Vec<f64> = (0..n).map(|_| lo + width * rng.uniform()).collect();
        Ok(Tensor::from_sampled(f64_storage(data, dtype), shape))
    }

    /// Standard normal samples, x ~ N(0, 1) (Box-Muller, drawn in f64 and rounded to `dtype`).
    pub fn randn(shape: &[usize], dtype: DType, rng: &mut Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        Tensor::from_sampled(f64_storage(data, dtype), shape)
    }

    /// Bernoulli samples: out_i = 1 with probability p_i, else 0 (`out_i = [u_i < p_i]`,
    /// u_i ~ U(0, 1)). Same shape and dtype as `probs`; a constant (no gradient). Errors on a
    /// probability outside [0, 1] (or NaN).
    pub fn bernoulli(probs: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let p = probs.to_vec_f64();
        if let Some((i, bad)) = p
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
        {
            return Err(Error::invalid(
                "bernoulli",
                format!(
                    "probability {bad} at flat index {i} of a tensor of shape {:?} is outside [0, 1]",
                    probs.shape()
                ),
            ));
        }
        let data: Vec<f64> = p
            .iter()
            .map(|&p| if rng.uniform() < p { 1.0 } else { 0.0 })
            .collect();
        Ok(Tensor::from_sampled(
            f64_storage(data, probs.dtype()),
            probs.shape(),
        ))
    }

    /// One category per row of `weights` [N, K]: row n gives index k with probability
    /// w[n, k] / sum_j w[n, j] (inverse-CDF sampling, one uniform per row). Weights need not be
    /// normalised but must be finite and nonnegative with a positive row sum.
    pub fn categorical(weights: &Tensor, rng: &mut Rng) -> Result<Vec<usize>> {
        if weights.rank() != 2 {
            return Err(Error::shape(
                "categorical",
                format!("weights must be [N, K], got shape {:?}", weights.shape()),
            ));
        }
        let (n, k) = (weights.shape()[0], weights.shape()[1]);
        let w = weights.to_vec_f64();
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let r = &w[row * k..(row + 1) * k];
            if let Some(bad) = r.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(Error::invalid(
                    "categorical",
                    format!(
                        "row {row} of weights {:?} has weight {bad}; weights must be finite and >= 0",
                        weights.shape()
                    ),
                ));
            }
            let total: f64 = r.iter().sum();
            if !(total > 0.0 && total.is_finite()) {
                return Err(Error::invalid(
                    "categorical",
                    format!(
                        "row {row} of weights {:?} sums to {total}; need a positive finite sum",
                        weights.shape()
                    ),
                ));
            }
            let target = rng.uniform() * total;
            let mut acc = 0.0;
            // rounding can leave `target` just above the last partial sum: fall back to the last
            // category with positive weight
            let mut pick = r.iter().rposition(|&v| v > 0.0).unwrap_or(0);
            for (j, &v) in r.iter().enumerate() {
                acc += v;
                if target < acc {
                    pick = j;
                    break;
                }
            }
            out.push(pick);
        }
        Ok(out)
    }

    /// Host-drawn samples as a tensor on the default device (the same draws on every device).
    fn from_sampled(storage: Storage, shape: &[usize]) -> Tensor {
        Tensor::made(storage, shape)
    }
}

fn f64_storage(data: Vec<f64>, dtype: DType) -> Storage {
    Storage::from_f64s(data, dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var)
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let sa: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let sb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let sc: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
        let ta = Tensor::randn(&[3, 4], DType::F32, &mut Rng::new(7));
        let tb = Tensor::randn(&[3, 4], DType::F32, &mut Rng::new(7));
        assert_eq!(ta.to_vec_f64(), tb.to_vec_f64());
    }

    #[test]
    fn state_round_trips_mid_stream() {
        let mut a = Rng::new(9);
        a.next_u64();
        a.normal(); // leaves a spare normal pending
        let mut b = Rng::from_state(&a.state()).unwrap();
        assert_eq!(a.state().len(), 5);
        assert_eq!(a.normal(), b.normal());
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(Rng::from_state(&a.state()).unwrap(), a);
        assert!(Rng::from_state(&[1, 2, 3]).is_err());
        assert!(Rng::from_state(&[0, 0, 0, 0]).is_err());
    }

    #[test]
    fn xoshiro_matches_reference_stream() {
        // xoshiro256++ from state [1, 2, 3, 4] (reference implementation's first outputs)
        let mut r = Rng {
            s: [1, 2, 3, 4],
            spare_normal: None,
        };
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, vec![41943041, 58720359, 3588806011781223]);
    }

    #[test]
    fn uniform_moments_and_range() {
        let mut r = Rng::new(1);
        let xs: Vec<f64> = (0..200_000).map(|_| r.uniform()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let (m, v) = mean_var(&xs);
        assert!((m - 0.5).abs() < 0.005, "mean {m}");
        assert!((v - 1.0 / 12.0).abs() < 0.002, "var {v}");
        let t = Tensor::rand(&[1000], DType::F32, &mut r).to_vec_f32();
        assert!(t.iter().all(|&x| (0.0..1.0).contains(&x)));
        let u = Tensor::rand_uniform(&[20_000], -2.0, 3.0, DType::F64, &mut r).unwrap();
        let u = u.to_vec_f64();
        assert!(u.iter().all(|&x| (-2.0..3.0).contains(&x)));
        let (m, v) = mean_var(&u);
        assert!(
            (m - 0.5).abs() < 0.05 && (v - 25.0 / 12.0).abs() < 0.1,
            "{m} {v}"
        );
        assert!(Tensor::rand_uniform(&[2], 1.0, 0.0, DType::F32, &mut r).is_err());
        assert!(Tensor::rand_uniform(&[2], 0.0, f64::NAN, DType::F32, &mut r).is_err());
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(2);
        let xs = Tensor::randn(&[200_000], DType::F64, &mut r).to_vec_f64();
        let (m, v) = mean_var(&xs);
        let n = xs.len() as f64;
        let skew = xs.iter().map(|x| (x - m).powi(3)).sum::<f64>() / n;
        let kurt = xs.iter().map(|x| (x - m).powi(4)).sum::<f64>() / n;
        assert!(m.abs() < 0.01, "mean {m}");
        assert!((v - 1.0).abs() < 0.01, "var {v}");
        assert!(skew.abs() < 0.03, "third moment {skew}");
        assert!((kurt - 3.0).abs() < 0.06, "fourth moment {kurt}");
    }

    #[test]
    fn bernoulli_mean_and_errors() {
        let mut r = Rng::new(3);
        let p = Tensor::full(&[100_000], 0.3, DType::F32);
        let s = Tensor::bernoulli(&p, &mut r).unwrap();
        assert_eq!(s.dtype(), DType::F32);
        let v = s.to_vec_f64();
        assert!(v.iter().all(|&x| x == 0.0 || x == 1.0));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 0.3).abs() < 0.005, "mean {mean}");
        let edges = Tensor::from_vec(vec![0.0f64, 1.0, 0.0, 1.0], &[2, 2]).unwrap();
        assert_eq!(
            Tensor::bernoulli(&edges, &mut r).unwrap().to_vec_f64(),
            vec![0.0, 1.0, 0.0, 1.0]
        );
        for bad in [-0.1, 1.5, f64::NAN] {
            let p = Tensor::from_vec(vec![0.5, bad], &[2]).unwrap();
            let e = Tensor::bernoulli(&p, &mut r).unwrap_err().to_string();
            assert!(e.contains("bernoulli") && e.contains("[2]"), "{e}");
        }
    }

    #[test]
    fn categorical_frequencies() {
        let mut r = Rng::new(4);
        let n = 40_000;
        let mut w = Vec::new();
        for _ in 0..n {
            w.extend_from_slice(&[1.0f64, 0.0, 3.0, 6.0]);
        }
        let probs = Tensor::from_vec(w, &[n, 4]).unwrap();
        let picks = Tensor::categorical(&probs, &mut r).unwrap();
        let mut counts = [0usize; 4];
        for p in picks {
            counts[p] += 1;
        }
        assert_eq!(counts[1], 0, "zero weight never drawn");
        for (k, want) in [(0, 0.1), (2, 0.3), (3, 0.6)] {
            let f = counts[k] as f64 / n as f64;
            assert!((f - want).abs() < 0.01, "category {k}: {f} vs {want}");
        }
        let bad = Tensor::from_vec(vec![0.0f64, 0.0], &[1, 2]).unwrap();
        assert!(Tensor::categorical(&bad, &mut r).is_err());
        let neg = Tensor::from_vec(vec![-1.0f64, 2.0], &[1, 2]).unwrap();
        assert!(Tensor::categorical(&neg, &mut r).is_err());
        let flat = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap();
        assert!(Tensor::categorical(&flat, &mut r).is_err());
    }

    #[test]
    fn below_and_shuffle() {
        let mut r = Rng::new(5);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[r.below(3) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (c as f64 - 10_000.0).abs() < 400.0));
        let mut v: Vec<usize> = (0..50).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn default_generator_is_seeded_and_nests() {
        manual_seed(9);
        let a: Vec<u64> = with_default(|r| (0..5).map(|_| r.next_u64()).collect());
        manual_seed(9);
        let b: Vec<u64> = with_default(|r| {
            let first = r.next_u64();
            // a nested call neither panics nor disturbs the outer stream
            let _ = with_default(|inner| inner.next_u64());
            let mut v = vec![first];
            v.extend((0..4).map(|_| r.next_u64()));
            v
        });
        assert_eq!(a, b);
        assert_eq!(a[0], Rng::new(9).next_u64());
        // the stream continues across calls
        let c = with_default(|r| r.next_u64());
        let mut reference = Rng::new(9);
        let expected: Vec<u64> = (0..6).map(|_| reference.next_u64()).collect();
        assert_eq!(c, expected[5]);
    }
}
