//! Morpho-MNIST (Castro et al. 2019, "Morpho-MNIST: quantitative assessment and diagnostics for
//! representation learning"): measurements of a digit's shape and the perturbations that change
//! one of them, written from the paper's definitions.
//!
//! Every measurement works on the digit upscaled [`SCALE`] times and binarised at half
//! intensity, where strokes are several pixels wide:
//!
//! ```text
//!   thickness = 2 · mean_{p ∈ skeleton} d(p) / SCALE      d: distance to the background
//!   slant     = arctan(-μ11 / μ02)                         central moments, y pointing down
//!   width, height: the slant-corrected digit's bounding box / SCALE
//! ```
//!
//! so a stroke `t` pixels wide has thickness `t`, and a digit leaning right (its top to the
//! right) has a positive slant. Thinning and thickening are an erosion and a dilation by a disc
//! whose radius follows the measured thickness (both read off the distance transform, so the
//! disc is exactly Euclidean); slanting is a shear about the digit's centre of mass. A perturbed
//! digit is brought back to the original size by averaging each SCALE x SCALE block.

/// The upscaling factor of every measurement and perturbation (the paper's).
pub const SCALE: usize = 4;

/// A binary image, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    pub rows: usize,
    pub cols: usize,
    pub px: Vec<bool>,
}

impl Binary {
    fn at(&self, r: isize, c: isize) -> bool {
        r >= 0
            && c >= 0
            && (r as usize) < self.rows
            && (c as usize) < self.cols
            && self.px[r as usize * self.cols + c as usize]
    }

    pub fn count(&self) -> usize {
        self.px.iter().filter(|&&p| p).count()
    }
}

/// The measurements of one digit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Morphometrics {
    /// Mean stroke width, in pixels of the original image.
    pub thickness: f64,
    /// Radians; positive when the digit leans right.
    pub slant: f64,
    /// The slant-corrected digit's bounding box, in original pixels.
    pub width: f64,
    pub height: f64,
}

/// `img` ([rows, cols] grey levels 0..=255) upscaled SCALE times by bilinear interpolation
/// between pixel centres, binarised at half intensity.
pub fn upscale_binarise(img: &[u8], rows: usize, cols: usize) -> Binary {
    let (big_r, big_c) = (rows * SCALE, cols * SCALE);
    let grey = |r: isize, c: isize| -> f64 {
        let r = r.clamp(0, rows as isize - 1) as usize;
        let c = c.clamp(0, cols as isize - 1) as usize;
        img[r * cols + c] as f64
    };
    let mut px = vec![false; big_r * big_c];
    for (i, p) in px.iter_mut().enumerate() {
        let (br, bc) = (i / big_c, i % big_c);
        // the big pixel's centre in original pixel coordinates (centres at k + 0.5)
        let y = (br as f64 + 0.5) / SCALE as f64 - 0.5;
        let x = (bc as f64 + 0.5) / SCALE as f64 - 0.5;
        let (y0, x0) = (y.floor(), x.floor());
        let (fy, fx) = (y - y0, x - x0);
        let (y0, x0) = (y0 as isize, x0 as isize);
        let v = (1.0 - fy) * ((1.0 - fx) * grey(y0, x0) + fx * grey(y0, x0 + 1))
            + fy * ((1.0 - fx) * grey(y0 + 1, x0) + fx * grey(y0 + 1, x0 + 1));
        *p = v >= 127.5;
    }
    Binary {
        rows: big_r,
        cols: big_c,
        px,
    }
}

/// The squared Euclidean distance transform of one line (Felzenszwalb & Huttenlocher 2012):
/// `out[q] = min_p (q - p)^2 + f[p]`, by the lower envelope of parabolas.
fn distance_1d(f: &[f64], out: &mut [f64]) {
    let n = f.len();
    let mut v = vec![0usize; n];
    let mut z = vec![0.0f64; n + 1];
    let mut k = 0;
    // the first finite parabola starts the envelope; lines with none stay infinite
    let Some(first) = f.iter().position(|x| x.is_finite()) else {
        out.fill(f64::INFINITY);
        return;
    };
    v[0] = first;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        let intersect = |p: usize| {
            ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q as f64 - p as f64))
        };
        let mut s = intersect(v[k]);
        while s <= z[k] {
            k -= 1;
            s = intersect(v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let d = q as f64 - v[k] as f64;
        *o = d * d + f[v[k]];
    }
}

/// For every pixel where `b` is `inside`, the Euclidean distance from its centre to the centre
/// of the nearest pixel where it is not; 0 elsewhere. The world outside the image is
/// background: a stroke touching the border ends there, and it is nobody's nearest stroke.
pub fn distance_transform(b: &Binary, inside: bool) -> Vec<f64> {
    // one pixel of margin: the world outside the image
    let (r, c) = (b.rows + 2, b.cols + 2);
    let mut f = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            let v = if i == 0 || j == 0 || i == r - 1 || j == c - 1 {
                false
            } else {
                b.px[(i - 1) * b.cols + (j - 1)]
            };
            f[i * c + j] = if v == inside { f64::INFINITY } else { 0.0 };
        }
    }
    let mut col = vec![0.0; r];
    let mut out = vec![0.0; r];
    for j in 0..c {
        for i in 0..r {
            col[i] = f[i * c + j];
        }
        distance_1d(&col, &mut out);
        for i in 0..r {
            f[i * c + j] = out[i];
        }
    }
    let mut row_out = vec![0.0; c];
    for i in 0..r {
        distance_1d(&f[i * c..(i + 1) * c], &mut row_out);
        f[i * c..(i + 1) * c].copy_from_slice(&row_out);
    }
    let mut d = vec![0.0; b.rows * b.cols];
    for i in 0..b.rows {
        for j in 0..b.cols {
            d[i * b.cols + j] = f[(i + 1) * c + (j + 1)].sqrt();
        }
    }
    d
}

/// The skeleton of `b` by Zhang & Suen's thinning (1984): boundary pixels whose removal keeps
/// the shape connected are peeled in two alternating sub-iterations until none is left.
pub fn skeleton(b: &Binary) -> Binary {
    let mut s = b.clone();
    loop {
        let mut changed = false;
        for step in 0..2 {
            let mut remove = Vec::new();
            for r in 0..s.rows as isize {
                for c in 0..s.cols as isize {
                    if !s.at(r, c) {
                        continue;
                    }
                    // neighbours p2..p9, clockwise from north
                    let p = [
                        s.at(r - 1, c),
                        s.at(r - 1, c + 1),
                        s.at(r, c + 1),
                        s.at(r + 1, c + 1),
                        s.at(r + 1, c),
                        s.at(r + 1, c - 1),
                        s.at(r, c - 1),
                        s.at(r - 1, c - 1),
                    ];
                    let neighbours = p.iter().filter(|&&x| x).count();
                    let transitions = (0..8).filter(|&i| !p[i] && p[(i + 1) % 8]).count();
                    let (n, e, so, w) = (p[0], p[2], p[4], p[6]);
                    // step 1: N·E·S = 0 and E·S·W = 0 (a south-east boundary pixel);
                    // step 2: N·E·W = 0 and N·S·W = 0 (a north-west one)
                    let keep_side = if step == 0 {
                        !(e && so && (n || w))
                    } else {
                        !(n && w && (e || so))
                    };
                    if (2..=6).contains(&neighbours) && transitions == 1 && keep_side {
                        remove.push(r as usize * s.cols + c as usize);
                    }
                }
            }
            changed |= !remove.is_empty();
            for i in remove {
                s.px[i] = false;
            }
        }
        if !changed {
            return s;
        }
    }
}

/// Central moments (μ11, μ02, μ20) and the centre of mass (ȳ, x̄) of `b`'s pixels, `None` when
/// it has none.
fn moments(b: &Binary) -> Option<(f64, f64, f64, f64, f64)> {
    let n = b.count();
    if n == 0 {
        return None;
    }
    let (mut sy, mut sx) = (0.0, 0.0);
    for (i, _) in b.px.iter().enumerate().filter(|(_, &p)| p) {
        sy += (i / b.cols) as f64;
        sx += (i % b.cols) as f64;
    }
    let (my, mx) = (sy / n as f64, sx / n as f64);
    let (mut m11, mut m02, mut m20) = (0.0, 0.0, 0.0);
    for (i, _) in b.px.iter().enumerate().filter(|(_, &p)| p) {
        let (dy, dx) = ((i / b.cols) as f64 - my, (i % b.cols) as f64 - mx);
        m11 += dx * dy;
        m02 += dy * dy;
        m20 += dx * dx;
    }
    Some((m11, m02, m20, my, mx))
}

/// The measurements of `img` ([rows, cols] grey levels); `None` for an image with no stroke.
pub fn measure(img: &[u8], rows: usize, cols: usize) -> Option<Morphometrics> {
    let b = upscale_binarise(img, rows, cols);
    let (m11, m02, _, my, mx) = moments(&b)?;
    let d = distance_transform(&b, true);
    let sk = skeleton(&b);
    let on_skeleton: Vec<f64> = (0..sk.px.len())
        .filter(|&i| sk.px[i])
        .map(|i| d[i])
        .collect();
    let thickness = if on_skeleton.is_empty() {
        0.0
    } else {
        2.0 * on_skeleton.iter().sum::<f64>() / on_skeleton.len() as f64 / SCALE as f64
    };
    let shear = if m02 > 0.0 { -m11 / m02 } else { 0.0 };
    let slant = shear.atan();
    // the bounding box once the slant is undone: x + shear·(y - ȳ) straightens the stroke
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (i, _) in b.px.iter().enumerate().filter(|(_, &p)| p) {
        let (y, x) = ((i / b.cols) as f64, (i % b.cols) as f64);
        let xs = x + shear * (y - my) - mx;
        x_lo = x_lo.min(xs);
        x_hi = x_hi.max(xs);
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
    }
    Some(Morphometrics {
        thickness,
        slant,
        width: (x_hi - x_lo + 1.0) / SCALE as f64,
        height: (y_hi - y_lo + 1.0) / SCALE as f64,
    })
}

/// `b` brought back to [rows, cols] grey levels by averaging each SCALE x SCALE block.
fn downscale(b: &Binary, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let mut on = 0;
            for i in 0..SCALE {
                for j in 0..SCALE {
                    on += b.px[(r * SCALE + i) * b.cols + c * SCALE + j] as usize;
                }
            }
            out[r * cols + c] = ((on * 255) as f64 / (SCALE * SCALE) as f64).round() as u8;
        }
    }
    out
}

/// The disc radius, in original pixels, that `amount` of the digit's half-thickness makes.
fn radius(img: &[u8], rows: usize, cols: usize, amount: f64) -> Option<f64> {
    let m = measure(img, rows, cols)?;
    Some(amount * m.thickness / 2.0)
}

/// Thinner strokes: an erosion by a disc of `amount` times the measured half-thickness (the
/// paper thins by 0.7).
pub fn thin(img: &[u8], rows: usize, cols: usize, amount: f64) -> Vec<u8> {
    match radius(img, rows, cols, amount) {
        Some(r) => erode(img, rows, cols, r),
        None => img.to_vec(),
    }
}

/// Thicker strokes: a dilation by a disc of `amount` times the measured half-thickness (the
/// paper thickens by 1.0).
pub fn thicken(img: &[u8], rows: usize, cols: usize, amount: f64) -> Vec<u8> {
    match radius(img, rows, cols, amount) {
        Some(r) => dilate(img, rows, cols, r),
        None => img.to_vec(),
    }
}

/// The erosion by a disc of `radius` original pixels: stroke pixels within that distance of
/// the background are removed (a stroke of thickness t keeps about t - 2 radius).
pub fn erode(img: &[u8], rows: usize, cols: usize, radius: f64) -> Vec<u8> {
    let mut b = upscale_binarise(img, rows, cols);
    let d = distance_transform(&b, true);
    let r = radius * SCALE as f64;
    for (p, &di) in b.px.iter_mut().zip(&d) {
        *p = *p && di > r;
    }
    downscale(&b, rows, cols)
}

/// The dilation by a disc of `radius` original pixels: background within that distance of the
/// stroke joins it (thickness t becomes about t + 2 radius).
pub fn dilate(img: &[u8], rows: usize, cols: usize, radius: f64) -> Vec<u8> {
    let mut b = upscale_binarise(img, rows, cols);
    let d = distance_transform(&b, false);
    let r = radius * SCALE as f64;
    for (p, &di) in b.px.iter_mut().zip(&d) {
        *p = *p || di <= r;
    }
    downscale(&b, rows, cols)
}

/// The digit leaning by `angle` radians more (positive: to the right), by a shear about its
/// centre of mass: the pixel at (y, x) comes from (y, x + tan(angle)·(y - ȳ)).
pub fn slant(img: &[u8], rows: usize, cols: usize, angle: f64) -> Vec<u8> {
    let b = upscale_binarise(img, rows, cols);
    let Some((_, _, _, my, _)) = moments(&b) else {
        return img.to_vec();
    };
    let t = angle.tan();
    let mut out = Binary {
        rows: b.rows,
        cols: b.cols,
        px: vec![false; b.px.len()],
    };
    for r in 0..b.rows {
        let shift = t * (r as f64 - my);
        for c in 0..b.cols {
            let src = (c as f64 + shift).round() as isize;
            out.px[r * b.cols + c] = b.at(r as isize, src);
        }
    }
    downscale(&out, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 28;

    /// A synthetic stroke: pixels within `width / 2` of the line through (14, 14) at `angle`
    /// from the vertical (positive: top to the right), rows 4..24. Anti-aliased by 8 x 8
    /// supersampling, as a scanned pen stroke would be.
    fn stroke(width: f64, angle: f64) -> Vec<u8> {
        let mut img = vec![0u8; N * N];
        let (dx, dy) = (angle.sin(), -angle.cos()); // direction of the line, y down
        for r in 4..24 {
            for c in 0..N {
                let mut on = 0;
                for i in 0..8 {
                    for j in 0..8 {
                        let y = r as f64 + (i as f64 + 0.5) / 8.0 - 14.0;
                        let x = c as f64 + (j as f64 + 0.5) / 8.0 - 14.0;
                        // distance from the line
                        if (x * dy - y * dx).abs() <= width / 2.0 {
                            on += 1;
                        }
                    }
                }
                img[r * N + c] = (on * 255 / 64) as u8;
            }
        }
        img
    }

    #[test]
    fn the_distance_transform_is_euclidean() {
        // one background pixel in the middle of a foreground square
        let mut b = Binary {
            rows: 9,
            cols: 9,
            px: vec![true; 81],
        };
        b.px[4 * 9 + 4] = false;
        let d = distance_transform(&b, false);
        assert_eq!(d[4 * 9 + 4], 1.0, "the hole is 1 from the stroke around it");
        assert!(d
            .iter()
            .enumerate()
            .all(|(i, &v)| i == 4 * 9 + 4 || v == 0.0));
        let inside = distance_transform(&b, true);
        // nearer to the hole at (4, 4) than to the image's outside
        assert!((inside[3 * 9 + 5] - 2f64.sqrt()).abs() < 1e-12);
        assert!((inside[4 * 9 + 6] - 2.0).abs() < 1e-12);
        // the outside of the image is background: the corner pixel is 1 from it
        assert_eq!(inside[0], 1.0);
        // brute force on a random shape
        let mut s = 7u64;
        let px: Vec<bool> = (0..15 * 11)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                (s >> 60) < 11
            })
            .collect();
        let b = Binary {
            rows: 15,
            cols: 11,
            px,
        };
        let d = distance_transform(&b, true);
        for i in 0..15isize {
            for j in 0..11isize {
                let want = if b.at(i, j) {
                    let mut best = f64::INFINITY;
                    for y in -1..16isize {
                        for x in -1..12isize {
                            if !b.at(y, x) {
                                best = best.min((((y - i).pow(2) + (x - j).pow(2)) as f64).sqrt());
                            }
                        }
                    }
                    best
                } else {
                    0.0
                };
                assert!((d[(i * 11 + j) as usize] - want).abs() < 1e-9, "({i}, {j})");
            }
        }
    }

    #[test]
    fn the_skeleton_of_a_bar_is_one_pixel_wide_and_spans_it() {
        let mut b = Binary {
            rows: 20,
            cols: 12,
            px: vec![false; 240],
        };
        for r in 3..17 {
            for c in 3..9 {
                b.px[r * 12 + c] = true;
            }
        }
        let s = skeleton(&b);
        for r in 0..20 {
            let on = (0..12).filter(|&c| s.px[r * 12 + c]).count();
            assert!(on <= 2, "row {r} has {on} skeleton pixels");
        }
        let rows: Vec<usize> = (0..20)
            .filter(|&r| (0..12).any(|c| s.px[r * 12 + c]))
            .collect();
        assert!(rows.len() >= 8, "the skeleton spans {} rows", rows.len());
        assert!(s.count() > 0 && s.px.iter().zip(&b.px).all(|(&s, &b)| !s || b));
    }

    #[test]
    fn strokes_of_known_thickness_and_slant_are_measured_within_ten_percent() {
        for &width in &[1.5, 2.0, 3.0, 4.5] {
            for &deg in &[-25.0f64, -10.0, 0.0, 15.0, 30.0] {
                let angle = deg.to_radians();
                let m = measure(&stroke(width, angle), N, N).unwrap();
                assert!(
                    (m.thickness - width).abs() <= 0.1 * width,
                    "width {width}, angle {deg}: thickness {}",
                    m.thickness
                );
                let slant_error = (m.slant - angle).abs();
                assert!(
                    slant_error <= 0.1 * angle.abs().max(10f64.to_radians()),
                    "width {width}, angle {deg}: slant {} deg",
                    m.slant.to_degrees()
                );
                // the stroke is cut to rows 4..24; straightened, it is `width` wide
                assert!((m.height - 20.0).abs() < 1.0, "{m:?}");
                assert!((m.width - width).abs() < 1.5, "{m:?}");
            }
        }
    }

    #[test]
    fn perturbations_move_their_measurement_the_right_way_on_real_digits() {
        let data = crate::program::data::embedded().unwrap();
        let test = &data.test;
        let mut checked = 0;
        for i in 0..40 {
            let img = test.image(i);
            let Some(m) = measure(img, N, N) else {
                continue;
            };
            let thick = measure(&thicken(img, N, N, 1.0), N, N).unwrap();
            let thin_m = measure(&thin(img, N, N, 0.7), N, N);
            assert!(
                thick.thickness > m.thickness * 1.3,
                "digit {i}: thickness {} thickened to {}",
                m.thickness,
                thick.thickness
            );
            if let Some(t) = thin_m {
                assert!(
                    t.thickness < m.thickness * 0.9,
                    "digit {i}: thickness {} thinned to {}",
                    m.thickness,
                    t.thickness
                );
            }
            let right = measure(&slant(img, N, N, 0.3), N, N).unwrap();
            let left = measure(&slant(img, N, N, -0.3), N, N).unwrap();
            assert!(
                right.slant > m.slant + 0.15 && left.slant < m.slant - 0.15,
                "digit {i}: slant {} -> right {} / left {}",
                m.slant,
                right.slant,
                left.slant
            );
            checked += 1;
        }
        assert!(checked >= 38, "only {checked} digits had a stroke");
    }
}
