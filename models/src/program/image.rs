//! Pictures and arrays: a PNG grid of images, a PNG plot of loss curves drawn by our own small
//! rasteriser (lines, axes, a 5x7 bitmap font for the tick labels and the legend), and the
//! `.npy` format NumPy loads.

use autograd::{Error, Result, Tensor};

fn png_bytes(width: usize, height: usize, color: png::ColorType, data: &[u8]) -> Result<Vec<u8>> {
    let err = |e: png::EncodingError| Error::invalid("png", format!("cannot encode: {e}"));
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(data).map_err(err)?;
        writer.finish().map_err(err)?;
    }
    Ok(out)
}

/// The PNG of a grid of images `[N, C, H, W]` (C = 1 grey or 3 RGB) whose values are in [0, 1]
/// (others are clamped, NaN is drawn black): `cols` images per row (default: about sqrt N), each
/// pixel drawn `scale` x `scale`, 2-pixel mid-grey gaps.
pub fn grid_png(images: &Tensor, cols: Option<usize>, scale: usize) -> Result<Vec<u8>> {
    let s = images.shape();
    if s.len() != 4 || !(s[1] == 1 || s[1] == 3) || s[0] == 0 || s[2] == 0 || s[3] == 0 {
        return Err(Error::shape(
            "grid_png",
            format!("expects images [N, 1 or 3, H, W] with N, H, W > 0, got {s:?}"),
        ));
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let scale = scale.max(1);
    let cols = cols
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
        .clamp(1, n);
    let rows = n.div_ceil(cols);
    let pad = 2;
    let (cell_h, cell_w) = (h * scale, w * scale);
    let width = pad + cols * (cell_w + pad);
    let height = pad + rows * (cell_h + pad);
    if width > 1 << 15 || height > 1 << 15 {
        return Err(Error::invalid(
            "grid_png",
            format!("a {width} x {height} picture is too large; draw fewer images"),
        ));
    }
    let v = images.to_vec_f32();
    let mut px = vec![128u8; width * height * c];
    for i in 0..n {
        let (gr, gc) = (i / cols, i % cols);
        let (y0, x0) = (pad + gr * (cell_h + pad), pad + gc * (cell_w + pad));
        for y in 0..cell_h {
            for x in 0..cell_w {
                for ch in 0..c {
                    let val = v[((i * c + ch) * h + y / scale) * w + x / scale];
                    let byte = if val.is_nan() {
                        0
                    } else {
                        (val.clamp(0.0, 1.0) * 255.0).round() as u8
                    };
                    px[((y0 + y) * width + x0 + x) * c + ch] = byte;
                }
            }
        }
    }
    let color = if c == 1 {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    };
    png_bytes(width, height, color, &px)
}

/// An array read from a `.npy` file: its shape and its values as f64.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// Reads a `.npy` file's bytes (format 1.0, 2.0 or 3.0; C order; little-endian f4, f8, i4, i8
/// or u1), `source` naming the file in errors. The header's shape must match the data's length
/// exactly, so a malformed or truncated file is an error, never a panic or a huge allocation.
pub fn npy_read(bytes: &[u8], source: &str) -> Result<NpyArray> {
    let bad = |msg: String| Error::invalid("npy", format!("{source}: {msg}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("the header runs past the end of the file".into()))?;
    let header = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| bad("the header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad(format!("no 'descr' in the header {header:?}")))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            "Fortran-order arrays are not supported (save with C order)".into(),
        ));
    }
    let dims = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad(format!("no 'shape' in the header {header:?}")))?;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| bad(format!("bad dimension {d:?} in the shape")))
        })
        .collect::<Result<Vec<usize>>>()?;
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "|u1" | "<u1" => 1,
        other => {
            return Err(bad(format!(
                "dtype {other:?} is not supported (use float32, float64, int32, int64 or uint8)"
            )))
        }
    };
    let data = &bytes[end..];
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|c| c.checked_mul(width) == Some(data.len()))
        .ok_or_else(|| {
            bad(format!(
                "shape {shape:?} of {descr} needs a different size than the {} bytes of data",
                data.len()
            ))
        })?;
    let values = data
        .chunks_exact(width)
        .take(count)
        .map(|c| match descr {
            "<f4" => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "<i4" => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            "<f8" => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            "<i8" => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            _ => f64::from(c[0]),
        })
        .collect();
    Ok(NpyArray { shape, values })
}

/// The bytes of a `.npy` file (format version 1.0) holding `data` as little-endian f32 with
/// `shape` in C order: `numpy.load` gives an array of that shape and dtype float32.
pub fn npy_bytes(data: &[f32], shape: &[usize]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::shape(
            "npy",
            format!("{} values do not fill shape {shape:?}", data.len()),
        ));
    }
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    while 10 + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(total + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

// ----- the loss plot -----------------------------------------------------------------------------

/// 5x7 glyphs, one byte per row (bit 4 is the leftmost column).
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_lowercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        ' ' => [0; 7],
        'a' => [0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E],
        'c' => [0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        'e' => [0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        'g' => [0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x02, 0, 0x06, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'm' => [0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'n' => [0, 0, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        'q' => [0, 0, 0x0D, 0x13, 0x0F, 0x01, 0x01],
        'r' => [0, 0, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'u' => [0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D],
        'v' => [0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A],
        'x' => [0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        'y' => [0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'z' => [0, 0, 0x1F, 0x02, 0x04, 0x08, 0x1F],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

type Rgb = [u8; 3];

/// An RGB raster with clipped drawing.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize, bg: Rgb) -> Canvas {
        Canvas {
            w,
            h,
            px: bg.iter().copied().cycle().take(w * h * 3).collect(),
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// Bresenham's line, `thick` pixels wide.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb, thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(x, y, x + thick - 1, y + thick - 1, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with its top-left corner at (x, y), 6 pixels per character.
    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.set(x + 6 * k as i64 + col, y + row as i64, c);
                    }
                }
            }
        }
    }
}

const PALETTE: [Rgb; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
];

/// About five round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-300);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 20 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

fn label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// The PNG of loss curves: each series is (name, points (x = step, y = loss)). Each series is
/// drawn raw in a light tint and smoothed (exponential moving average) in full colour; the y axis
/// is logarithmic when every value is positive and they span more than a factor of 20.
/// Non-finite points are skipped.
pub fn loss_plot_png(
    series: &[(String, Vec<(f64, f64)>)],
    width: usize,
    height: usize,
) -> Result<Vec<u8>> {
    let style = PlotStyle {
        x_label: "step",
        smooth: true,
        log_y_allowed: true,
    };
    plot_png(series, width, height, &style)
}

/// How [`plot_png`] draws: the x axis's name, whether series are smoothed (loss curves) or
/// drawn as they are (functions), whether the y axis may turn logarithmic.
pub struct PlotStyle<'a> {
    pub x_label: &'a str,
    pub smooth: bool,
    pub log_y_allowed: bool,
}

/// The PNG of curves of `series` (name, points), in `style` ([`loss_plot_png`] is the loss
/// style).
pub fn plot_png(
    series: &[(String, Vec<(f64, f64)>)],
    width: usize,
    height: usize,
    style: &PlotStyle,
) -> Result<Vec<u8>> {
    let (width, height) = (width.clamp(200, 4000), height.clamp(150, 4000));
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let mut c = Canvas::new(width, height, [255, 255, 255]);
    let (left, right, top, bottom) = (70i64, width as i64 - 15, 15i64, height as i64 - 30);
    let ink = [40, 40, 40];
    if pts.is_empty() {
        c.text(left, top + 20, "no losses yet", ink);
        return png_bytes(width, height, png::ColorType::Rgb, &c.px);
    }
    let log = style.log_y_allowed && pts.iter().all(|p| p.1 > 0.0) && {
        let (lo, hi) = pts
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        hi / lo > 20.0
    };
    let fy = |y: f64| if log { y.log10() } else { y };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(fy(y));
        y1 = y1.max(fy(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * (right - left) as f64).round() as i64;
    let py = |y: f64| bottom - ((fy(y) - y0) / (y1 - y0) * (bottom - top) as f64).round() as i64;
    // grid and tick labels
    let grid = [225, 225, 225];
    for t in ticks(x0, x1) {
        let x = px(t);
        c.line((x, top), (x, bottom), grid, 1);
        let s = label(t);
        c.text(x - 3 * s.len() as i64, bottom + 6, &s, ink);
    }
    let yticks: Vec<f64> = if log {
        let (lo, hi) = (y0.floor() as i32, y1.ceil() as i32);
        (lo..=hi)
            .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
            .filter(|v| (y0..=y1).contains(&v.log10()))
            .collect()
    } else {
        ticks(y0, y1)
    };
    for t in yticks {
        let y = if log {
            bottom - ((t.log10() - y0) / (y1 - y0) * (bottom - top) as f64).round() as i64
        } else {
            bottom - ((t - y0) / (y1 - y0) * (bottom - top) as f64).round() as i64
        };
        c.line((left, y), (right, y), grid, 1);
        let s = label(t);
        c.text(left - 6 - 6 * s.len() as i64, y - 3, &s, ink);
    }
    c.line((left, bottom), (right, bottom), ink, 1);
    c.line((left, top), (left, bottom), ink, 1);
    c.text(
        right - 6 * style.x_label.len() as i64,
        bottom + 18,
        style.x_label,
        ink,
    );
    if log {
        c.text(4, top, "log", ink);
    }
    // curves: raw (tinted), then smoothed
    let visible: Vec<&(String, Vec<(f64, f64)>)> = series.iter().collect();
    for (k, (_, p)) in visible.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        let good: Vec<(f64, f64)> = p
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log || *y > 0.0))
            .collect();
        if !style.smooth {
            for w in good.windows(2) {
                c.line((px(w[0].0), py(w[0].1)), (px(w[1].0), py(w[1].1)), col, 2);
            }
            continue;
        }
        let tint = col.map(|v| ((u16::from(v) + 3 * 255) / 4) as u8);
        for w in good.windows(2) {
            c.line((px(w[0].0), py(w[0].1)), (px(w[1].0), py(w[1].1)), tint, 1);
        }
        let alpha = (10.0 / good.len().max(1) as f64).clamp(0.02, 1.0);
        let mut ema: Option<f64> = None;
        let smooth: Vec<(f64, f64)> = good
            .iter()
            .map(|&(x, y)| {
                let v = fy(y);
                let e = ema.map_or(v, |e| e + alpha * (v - e));
                ema = Some(e);
                (x, if log { 10f64.powf(e) } else { e })
            })
            .collect();
        for w in smooth.windows(2) {
            c.line((px(w[0].0), py(w[0].1)), (px(w[1].0), py(w[1].1)), col, 2);
        }
    }
    // legend, top right
    for (k, (name, _)) in visible.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        let y = top + 6 + 12 * k as i64;
        let x = right - 12 - 6 * name.chars().count() as i64;
        c.rect(x - 4, y - 2, right - 4, y + 9, [255, 255, 255]);
        c.rect(x, y, x + 7, y + 7, col);
        c.text(x + 12, y, name, ink);
    }
    png_bytes(width, height, png::ColorType::Rgb, &c.px)
}

// ----- the scatter of 2-d codes ----------------------------------------------------------------

/// Ten colours for the ten digits (matplotlib's "tab10", its grey swapped for black so that it
/// stands out from the light-grey background points).
const DIGIT_COLOURS: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [0, 0, 0],
    [188, 189, 34],
    [23, 190, 207],
];

/// The PNG (`size` x `size` pixels plus a legend column) of a scatter of 2-d points: `points`
/// are (x, y, class) drawn as small discs in the class's colour (classes 0..=9; others wrap),
/// `background` points (e.g. draws from a prior) as light-grey dots under them. Both axes have
/// the same scale, so shapes are not distorted; the range covers every finite point (with NaNs
/// and infinities skipped), padded by 5%.
pub fn scatter_png(
    points: &[(f64, f64, usize)],
    background: &[(f64, f64)],
    size: usize,
) -> Result<Vec<u8>> {
    let size = size.clamp(200, 4000);
    let legend_w = 60usize;
    let (width, height) = (size + legend_w, size);
    let mut c = Canvas::new(width, height, [255, 255, 255]);
    let ink = [40, 40, 40];
    let finite = |x: f64, y: f64| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.0, p.1))
        .chain(background.iter().copied())
        .filter(|&(x, y)| finite(x, y))
        .collect();
    let (left, top) = (60i64, 15i64);
    let side = size as i64 - left - 30;
    if all.is_empty() {
        c.text(left, top + 20, "no points", ink);
        return png_bytes(width, height, png::ColorType::Rgb, &c.px);
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // one scale for both axes: the larger span, centred
    let span = ((x1 - x0).max(y1 - y0) * 1.1).max(1e-9);
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let (x0, x1, y0, y1) = (
        cx - span / 2.0,
        cx + span / 2.0,
        cy - span / 2.0,
        cy + span / 2.0,
    );
    let (right, bottom) = (left + side, top + side);
    let px = |x: f64| left + ((x - x0) / span * side as f64).round() as i64;
    let py = |y: f64| bottom - ((y - y0) / span * side as f64).round() as i64;
    let grid = [230, 230, 230];
    for t in ticks(x0, x1) {
        let x = px(t);
        c.line((x, top), (x, bottom), grid, 1);
        let s = label(t);
        c.text(x - 3 * s.len() as i64, bottom + 6, &s, ink);
    }
    for t in ticks(y0, y1) {
        let y = py(t);
        c.line((left, y), (right, y), grid, 1);
        let s = label(t);
        c.text(left - 6 - 6 * s.len() as i64, y - 3, &s, ink);
    }
    for &(x, y) in background {
        if finite(x, y) {
            let (u, v) = (px(x), py(y));
            c.rect(u, v, u + 1, v + 1, [200, 200, 200]);
        }
    }
    for &(x, y, class) in points {
        if finite(x, y) {
            let col = DIGIT_COLOURS[class % DIGIT_COLOURS.len()];
            let (u, v) = (px(x), py(y));
            for dy in -2i64..=2 {
                for dx in -2i64..=2 {
                    if dx * dx + dy * dy <= 5 {
                        c.set(u + dx, v + dy, col);
                    }
                }
            }
        }
    }
    c.line((left, bottom), (right, bottom), ink, 1);
    c.line((left, top), (left, bottom), ink, 1);
    c.line((right, top), (right, bottom), ink, 1);
    c.line((left, top), (right, top), ink, 1);
    for (k, col) in DIGIT_COLOURS.iter().enumerate() {
        let y = top + 6 + 16 * k as i64;
        let x = size as i64 + 6;
        c.rect(x, y, x + 9, y + 9, *col);
        c.text(x + 16, y + 1, &k.to_string(), ink);
    }
    png_bytes(width, height, png::ColorType::Rgb, &c.px)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autograd::DType;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn grid_places_images_with_gaps() {
        let mut v = vec![0f32; 3 * 2 * 2];
        v[0] = 1.0; // image 0, top-left
        v[11] = 2.0; // image 2, bottom-right, clamped
        let t = Tensor::from_vec(v, &[3, 1, 2, 2]).unwrap();
        let (info, px) = decode(&grid_png(&t, None, 1).unwrap());
        // 2 columns, 2 rows: 2 + 2 * (2 + 2) = 10 pixels each way
        assert_eq!((info.width, info.height), (10, 10));
        assert_eq!(px[2 * 10 + 2], 255);
        assert_eq!(px[2 * 10 + 3], 0);
        assert_eq!(px[0], 128);
        assert_eq!(px[7 * 10 + 3], 255);
        let (info, _) = decode(&grid_png(&t, Some(3), 3).unwrap());
        assert_eq!((info.width, info.height), (2 + 3 * 8, 2 + 8));
        assert!(grid_png(&Tensor::zeros(&[2, 2, 4, 4], DType::F32), None, 1).is_err());
        assert!(grid_png(&Tensor::zeros(&[4, 4], DType::F32), None, 1).is_err());
    }

    #[test]
    fn npy_files_read_back_and_malformed_ones_are_errors() {
        let b = npy_bytes(&[0.0, 0.5, 1.0, 0.25, 0.75, 1.0], &[2, 1, 1, 3]).unwrap();
        let a = npy_read(&b, "x.npy").unwrap();
        assert_eq!(a.shape, vec![2, 1, 1, 3]);
        assert_eq!(a.values, vec![0.0, 0.5, 1.0, 0.25, 0.75, 1.0]);
        for cut in [0, 5, 9, 20, b.len() - 1] {
            assert!(npy_read(&b[..cut], "x.npy").is_err(), "cut at {cut}");
        }
        // the header edited in place (same length): a huge shape is an error, not an allocation
        let edit = |from: &[u8], to: &[u8]| {
            let at = b.windows(from.len()).position(|w| w == from).unwrap();
            let mut e = b.clone();
            e[at..at + to.len()].copy_from_slice(to);
            e
        };
        let e = npy_read(&edit(b"(2, 1, 1, 3)", b"(9999999999)"), "x.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.npy") && e.contains("9999999999"), "{e}");
        assert!(
            npy_read(&edit(b"<f4", b"|u1"), "x.npy").is_err(),
            "24 bytes are not 6 uint8"
        );
        let flat = npy_read(&edit(b"(2, 1, 1, 3)", b"(6,)        "), "x.npy").unwrap();
        assert_eq!(flat.shape, vec![6], "spaces after the shape are padding");
    }

    #[test]
    fn npy_header_is_what_numpy_expects() {
        let b = npy_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 1, 1, 3]).unwrap();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 1, 3), }")
        );
        assert!(header.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 24);
        assert_eq!(&b[10 + hlen..10 + hlen + 4], &1f32.to_le_bytes());
        assert!(npy_bytes(&[1.0], &[2]).is_err());
        let one = npy_bytes(&[1.0, 2.0], &[2]).unwrap();
        assert!(std::str::from_utf8(&one[10..one.len() - 8])
            .unwrap()
            .contains("(2,)"));
    }

    #[test]
    fn scatter_draws_each_class_in_its_colour() {
        let points: Vec<(f64, f64, usize)> = (0..10)
            .map(|k| ((k as f64).cos(), (k as f64).sin(), k))
            .collect();
        let bg = [(0.0, 0.0), (f64::NAN, 1.0)];
        let (info, px) = decode(&scatter_png(&points, &bg, 300).unwrap());
        assert_eq!((info.width, info.height), (360, 300));
        for col in &DIGIT_COLOURS {
            assert!(px.chunks(3).any(|p| p == col), "{col:?} drawn");
        }
        assert!(px.chunks(3).any(|p| p == [200, 200, 200]));
        // nothing finite to draw: still a picture
        decode(&scatter_png(&[(f64::NAN, 0.0, 1)], &[], 300).unwrap());
        decode(&scatter_png(&[(1.0, 1.0, 3)], &[], 300).unwrap());
    }

    #[test]
    fn loss_plot_draws_every_series() {
        let a: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 2.0 * (-(i as f64) / 50.0).exp() + 0.01))
            .collect();
        let b: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 0.5 + 0.1 * (i as f64 / 7.0).sin()))
            .collect();
        let png = loss_plot_png(&[("nll".into(), a), ("kl".into(), b)], 640, 400).unwrap();
        let (info, px) = decode(&png);
        assert_eq!((info.width, info.height), (640, 400));
        for col in &PALETTE[..2] {
            assert!(px.chunks(3).any(|p| p == col), "{col:?} drawn");
        }
        // nothing to draw, NaNs, a single point: still a picture
        for s in [
            vec![],
            vec![("x".to_string(), vec![(0.0, f64::NAN)])],
            vec![("x".to_string(), vec![(3.0, 1.0)])],
        ] {
            decode(&loss_plot_png(&s, 300, 200).unwrap());
        }
        let t = ticks(0.0, 1.0);
        assert_eq!(t.len(), 6);
        assert!(t
            .iter()
            .zip([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
            .all(|(a, b)| (a - b).abs() < 1e-9));
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(12000.0), "12000");
        assert_eq!(label(1e-5), "1e-5");
    }
}
