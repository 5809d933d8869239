//! Sample-quality statistics on classifier features, in f64: the Frechet distance between the
//! Gaussians fitted to two feature sets (FID's formula, here on our MNIST classifier: FCD), the
//! kernel inception distance (KID: unbiased MMD^2 with the cubic polynomial kernel), and the
//! classifier's label histogram over a set of images (KL to uniform, classes covered, the
//! "inception score" with our classifier).
//!
//! Feature sets are row-major `n x d` slices.

use autograd::{Error, Result};

/// Mean (d) and unbiased covariance (d x d, divided by n - 1) of `n` rows of `d` features.
pub fn mean_cov(x: &[f64], n: usize, d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    check_set("mean_cov", x, n, d, 2)?;
    let mut mu = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for (m, v) in mu.iter_mut().zip(row) {
            *m += v;
        }
    }
    mu.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0.0; d * d];
    let mut centred = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for ((c, v), m) in centred.iter_mut().zip(row).zip(&mu) {
            *c = v - m;
        }
        for i in 0..d {
            let ci = centred[i];
            let out = &mut cov[i * d..(i + 1) * d];
            for (o, cj) in out[i..].iter_mut().zip(&centred[i..]) {
                *o += ci * cj;
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / (n as f64 - 1.0);
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    Ok((mu, cov))
}

fn check_set(op: &'static str, x: &[f64], n: usize, d: usize, min_n: usize) -> Result<()> {
    if d == 0 || x.len() != n * d {
        return Err(Error::shape(
            op,
            format!("{} values are not {n} rows of {d} features", x.len()),
        ));
    }
    if n < min_n {
        return Err(Error::invalid(
            op,
            format!("needs at least {min_n} feature rows, got {n}"),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            op,
            format!("feature {} of row {} is {}", i % d, i / d, x[i]),
        ));
    }
    Ok(())
}

/// Eigen-decomposition of a symmetric `n x n` matrix by cyclic Jacobi rotations: the
/// eigenvalues and the eigenvectors as the columns of a row-major `n x n` matrix, so that
/// `a = V diag(w) V^T`.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off.sqrt() <= 1e-15 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A <- A J (columns p, q), then J^T A (rows p, q); V <- V J
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The square root of a symmetric positive semi-definite matrix: V diag(sqrt(max(w, 0))) V^T
/// (eigenvalues that rounding made slightly negative count as 0).
pub fn sqrtm_psd(a: &[f64], n: usize) -> Vec<f64> {
    let (w, v) = symmetric_eigen(a, n);
    let r: Vec<f64> = w.iter().map(|x| x.max(0.0).sqrt()).collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = (0..n).map(|k| v[i * n + k] * r[k] * v[j * n + k]).sum();
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            let (row, brow) = (&mut out[i * n..(i + 1) * n], &b[k * n..(k + 1) * n]);
            for (o, bv) in row.iter_mut().zip(brow) {
                *o += aik * bv;
            }
        }
    }
    out
}

/// The Frechet distance between N(mu1, c1) and N(mu2, c2):
/// |mu1 - mu2|^2 + tr(c1) + tr(c2) - 2 tr(sqrtm(c1 c2)).
///
/// c1 c2 is not symmetric, but it is similar to s c2 s with s = sqrtm(c1), which is symmetric
/// positive semi-definite and has the same eigenvalues, so tr(sqrtm(c1 c2)) =
/// tr(sqrtm(s c2 s)), computed with two symmetric eigen-decompositions. Clamped at 0 (rounding
/// can give -1e-12 for identical sets).
pub fn frechet_distance(mu1: &[f64], c1: &[f64], mu2: &[f64], c2: &[f64], d: usize) -> f64 {
    let s = sqrtm_psd(c1, d);
    let m = matmul(&matmul(&s, c2, d), &s, d);
    // symmetrise away rounding before the eigen-decomposition
    let mut m_sym = m.clone();
    for i in 0..d {
        for j in 0..d {
            m_sym[i * d + j] = 0.5 * (m[i * d + j] + m[j * d + i]);
        }
    }
    let (w, _) = symmetric_eigen(&m_sym, d);
    let tr_sqrt: f64 = w.iter().map(|x| x.max(0.0).sqrt()).sum();
    let diff: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let tr1: f64 = (0..d).map(|i| c1[i * d + i]).sum();
    let tr2: f64 = (0..d).map(|i| c2[i * d + i]).sum();
    (diff + tr1 + tr2 - 2.0 * tr_sqrt).max(0.0)
}

/// The Frechet distance between Gaussians fitted to two feature sets (FID's formula).
pub fn frechet_of_sets(a: &[f64], na: usize, b: &[f64], nb: usize, d: usize) -> Result<f64> {
    let (m1, c1) = mean_cov(a, na, d)?;
    let (m2, c2) = mean_cov(b, nb, d)?;
    Ok(frechet_distance(&m1, &c1, &m2, &c2, d))
}

/// KID (Binkowski et al. 2018): the unbiased estimate of MMD^2 between two feature sets under
/// the kernel k(x, y) = (x . y / d + 1)^3:
/// mean over i != j of k(a_i, a_j) + the same for b - 2 mean over all (i, j) of k(a_i, b_j).
/// About 0 (and possibly slightly negative) for sets from the same distribution.
pub fn kid(a: &[f64], na: usize, b: &[f64], nb: usize, d: usize) -> Result<f64> {
    check_set("kid", a, na, d, 2)?;
    check_set("kid", b, nb, d, 2)?;
    let k = |x: &[f64], y: &[f64]| {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        (dot / d as f64 + 1.0).powi(3)
    };
    let within = |x: &[f64], n: usize| {
        let mut s = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                s += k(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
            }
        }
        2.0 * s / (n as f64 * (n as f64 - 1.0))
    };
    let mut cross = 0.0;
    for i in 0..na {
        for j in 0..nb {
            cross += k(&a[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]);
        }
    }
    Ok(within(a, na) + within(b, nb) - 2.0 * cross / (na as f64 * nb as f64))
}

/// What a classifier says about a set of images: how often it predicts each class.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelStats {
    /// Predictions per class.
    pub histogram: Vec<usize>,
    /// KL(histogram / n || uniform) in nats: 0 when every class is predicted equally often,
    /// ln(classes) when one class takes everything.
    pub kl_to_uniform: f64,
    /// Classes predicted for at least a tenth of their uniform share (n / classes / 10).
    pub classes_covered: usize,
    /// exp(E_x KL(p(y|x) || p(y))), the "inception score" computed with our classifier:
    /// between 1 and the number of classes; high when each image is confidently one class and
    /// the classes are balanced.
    pub classifier_score: f64,
}

/// Softmax of a row of logits, in f64.
fn softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The index of each row's largest logit (the first on ties).
pub fn argmax_rows(logits: &[f64], classes: usize) -> Vec<usize> {
    logits
        .chunks_exact(classes.max(1))
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        })
        .collect()
}

/// Label statistics of `n` rows of `classes` logits.
pub fn label_stats(logits: &[f64], n: usize, classes: usize) -> Result<LabelStats> {
    check_set("label_stats", logits, n, classes, 1)?;
    let mut histogram = vec![0usize; classes];
    for p in argmax_rows(logits, classes) {
        histogram[p] += 1;
    }
    let kl_to_uniform = histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            p * (p * classes as f64).ln()
        })
        .sum::<f64>()
        .max(0.0);
    let share = n as f64 / classes as f64 / 10.0;
    let classes_covered = histogram
        .iter()
        .filter(|&&c| c > 0 && c as f64 >= share)
        .count();
    let probs: Vec<Vec<f64>> = logits.chunks_exact(classes).map(softmax).collect();
    let mut marginal = vec![0.0; classes];
    for p in &probs {
        for (m, v) in marginal.iter_mut().zip(p) {
            *m += v / n as f64;
        }
    }
    let mean_kl: f64 = probs
        .iter()
        .map(|p| {
            p.iter()
                .zip(&marginal)
                .filter(|(v, _)| **v > 0.0)
                .map(|(v, m)| v * (v / m).ln())
                .sum::<f64>()
        })
        .sum::<f64>()
        / n as f64;
    Ok(LabelStats {
        histogram,
        kl_to_uniform,
        classes_covered,
        classifier_score: mean_kl.exp(),
    })
}

/// The fraction of rows whose largest logit is at the intended label.
pub fn accuracy(logits: &[f64], classes: usize, labels: &[usize]) -> Result<f64> {
    let preds = argmax_rows(logits, classes);
    if preds.len() != labels.len() || labels.is_empty() {
        return Err(Error::shape(
            "accuracy",
            format!("{} rows of logits for {} labels", preds.len(), labels.len()),
        ));
    }
    let hits = preds.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(hits as f64 / labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autograd::Rng;

    fn gaussian_set(n: usize, d: usize, shift: f64, rng: &mut Rng) -> Vec<f64> {
        // correlated features: x_j = z_j + 0.5 z_{j-1} + shift
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let z: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
            for j in 0..d {
                out.push(z[j] + if j > 0 { 0.5 * z[j - 1] } else { 0.0 } + shift);
            }
        }
        out
    }

    #[test]
    fn eigen_and_sqrtm_reconstruct() {
        let mut rng = Rng::new(1);
        let d = 12;
        let x = gaussian_set(50, d, 0.0, &mut rng);
        let (_, c) = mean_cov(&x, 50, d).unwrap();
        let (w, v) = symmetric_eigen(&c, d);
        for i in 0..d {
            for j in 0..d {
                let r: f64 = (0..d).map(|k| v[i * d + k] * w[k] * v[j * d + k]).sum();
                assert!((r - c[i * d + j]).abs() < 1e-10, "{i} {j}");
            }
        }
        let s = sqrtm_psd(&c, d);
        let s2 = matmul(&s, &s, d);
        for (a, b) in s2.iter().zip(&c) {
            assert!((a - b).abs() < 1e-10);
        }
        // a known case: diag(4, 9) has square root diag(2, 3)
        assert_eq!(
            sqrtm_psd(&[4.0, 0.0, 0.0, 9.0], 2),
            vec![2.0, 0.0, 0.0, 3.0]
        );
    }

    #[test]
    fn frechet_matches_closed_forms() {
        // 1-D: (m1 - m2)^2 + (s1 - s2)^2
        let fd = frechet_distance(&[1.0], &[4.0], &[3.0], &[9.0], 1);
        assert!((fd - (4.0 + 1.0)).abs() < 1e-12, "{fd}");
        // commuting diagonal covariances
        let fd = frechet_distance(
            &[0.0, 0.0],
            &[1.0, 0.0, 0.0, 4.0],
            &[0.0, 0.0],
            &[4.0, 0.0, 0.0, 16.0],
            2,
        );
        assert!((fd - (1.0 + 4.0)).abs() < 1e-12, "{fd}");
    }

    #[test]
    fn identical_sets_are_at_zero_and_disjoint_ones_are_not() {
        let mut rng = Rng::new(7);
        let d = 16;
        let a = gaussian_set(400, d, 0.0, &mut rng);
        let b = gaussian_set(400, d, 0.0, &mut rng);
        let far = gaussian_set(400, d, 3.0, &mut rng);
        let same = frechet_of_sets(&a, 400, &a, 400, d).unwrap();
        assert!(same < 1e-9, "identical sets: {same}");
        let near = frechet_of_sets(&a, 400, &b, 400, d).unwrap();
        let apart = frechet_of_sets(&a, 400, &far, 400, d).unwrap();
        assert!(near < 1.5, "two draws of one distribution: {near}");
        assert!(apart > 100.0, "shifted by 3 in 16 dims: {apart}"); // 16 * 9 = 144
        let k_same = kid(&a, 400, &b, 400, d).unwrap();
        let k_far = kid(&a, 400, &far, 400, d).unwrap();
        assert!(k_same.abs() < 0.05, "{k_same}");
        assert!(k_far > 10.0, "{k_far}");
        assert!(kid(&a, 1, &b, 400, d).is_err());
        assert!(frechet_of_sets(&a, 400, &b[..10], 1, d).is_err());
        let mut bad = a.clone();
        bad[5] = f64::NAN;
        let e = frechet_of_sets(&bad, 400, &b, 400, d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("NaN"), "{e}");
    }

    #[test]
    fn label_statistics() {
        // 20 images: classes 0..10 twice each, confidently
        let classes = 10;
        let mut logits = vec![0.0; 20 * classes];
        for i in 0..20 {
            logits[i * classes + i % classes] = 50.0;
        }
        let s = label_stats(&logits, 20, classes).unwrap();
        assert_eq!(s.histogram, vec![2; 10]);
        assert!(s.kl_to_uniform.abs() < 1e-12);
        assert_eq!(s.classes_covered, 10);
        assert!(
            (s.classifier_score - 10.0).abs() < 1e-6,
            "{}",
            s.classifier_score
        );
        // everything predicted as 3
        let mut collapsed = vec![0.0; 20 * classes];
        for i in 0..20 {
            collapsed[i * classes + 3] = 50.0;
        }
        let s = label_stats(&collapsed, 20, classes).unwrap();
        assert_eq!(s.classes_covered, 1);
        assert!((s.kl_to_uniform - 10f64.ln()).abs() < 1e-12);
        assert!((s.classifier_score - 1.0).abs() < 1e-9);
        let labels: Vec<usize> = (0..20).map(|i| i % 10).collect();
        assert_eq!(accuracy(&logits, classes, &labels).unwrap(), 1.0);
        assert_eq!(accuracy(&collapsed, classes, &labels).unwrap(), 0.1);
        assert!(accuracy(&logits, classes, &labels[..3]).is_err());
    }
}
