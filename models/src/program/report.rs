//! `genzoo report`: one self-contained HTML page over every run folder under a folder.
//!
//! The page opens with a table of the runs (folder, model, epochs, wall time and the key final
//! metrics: [`KEY_METRICS`]), each row linking to the run's `<section>`: the model (its registry
//! entry's title and paper), the settings from `config.json`, the wall time (the sum of the
//! epoch lines' seconds), the last epoch's sample grid and a strip of a few earlier epochs'
//! grids, the loss curves (`loss.png`, `fcd.png`) with the last epoch's mean losses and
//! validation loss, the last epoch's metrics beside their baselines (real vs real; for a
//! likelihood, the independent-pixel model) where `metrics.jsonl` has them, and every other PNG
//! of the run folder under its file name.
//!
//! Images are inlined as base64 `data:` URIs and there is no script, so the file stands alone.
//! A run folder that cannot be read in full (a line of `metrics.jsonl` that is not JSON, a
//! missing `config.json`, an image that is not a PNG) has its problems listed in its section;
//! only a folder with no runs at all is an error. All text from the run folders is escaped.

use crate::program::run::{CHECKPOINT, CONFIG, FCD_PLOT, LOSS_PLOT, METRICS, SAMPLES, WEIGHTS};
use crate::registry;
use autograd::{Error, Result};
use serde_json::{Map, Value};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The final metrics in the overview table, in its column order (blank where a run has none).
pub const KEY_METRICS: [&str; 4] = ["fcd", "kid", "nll", "classes_covered"];
/// Earlier epochs' sample grids shown in a run's strip, at most.
const STRIP: usize = 5;
/// How deep under the runs folder run folders are looked for.
pub const MAX_DEPTH: usize = 6;

fn io(path: &Path, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// `s` with `&`, `<`, `>`, `"` and `'` written as entities, safe in text and in quoted
/// attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with `=` padding).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `dir` is a run folder: it holds `config.json`, a checkpoint, weights or
/// `metrics.jsonl`.
pub fn is_run(dir: &Path) -> bool {
    [CONFIG, CHECKPOINT, WEIGHTS, METRICS]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// The run folders under `root` (`root` itself when it is one), at most [`MAX_DEPTH`] folders
/// down, sorted; a run folder's own subfolders are not searched.
pub fn find_runs(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(io(root, "not a folder"));
    }
    let mut runs = Vec::new();
    walk(root, 0, &mut runs)?;
    runs.sort();
    Ok(runs)
}

fn walk(dir: &Path, depth: usize, runs: &mut Vec<PathBuf>) -> Result<()> {
    if is_run(dir) {
        runs.push(dir.to_path_buf());
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, format!("cannot list: {e}")))?;
    for entry in entries.flatten() {
        // a link to a folder is followed (the depth bounds a loop of links)
        if entry.path().is_dir() {
            walk(&entry.path(), depth + 1, runs)?;
        }
    }
    Ok(())
}

/// Refuses an output path that is not named `.html` / `.htm`, or that names something other
/// than an HTML file already there (a folder, or a file not starting with `<!doctype html` or
/// `<html`), so the report never writes over a run's files.
pub fn check_output(out: &Path) -> Result<()> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if ext != "html" && ext != "htm" {
        return Err(io(out, "the report's file name must end in .html"));
    }
    if std::fs::symlink_metadata(out).is_ok() {
        if !out.is_file() {
            return Err(io(out, "is there and is not a file; not overwriting it"));
        }
        let bytes = std::fs::read(out).map_err(|e| io(out, format!("cannot read: {e}")))?;
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_lowercase();
        let head = head.trim_start_matches('\u{feff}').trim_start();
        if !(head.starts_with("<!doctype html") || head.starts_with("<html")) {
            return Err(io(
                out,
                "is there and is not an HTML file; not overwriting it",
            ));
        }
    }
    Ok(())
}

/// One epoch line of `metrics.jsonl`.
#[derive(Clone, Debug, Default)]
struct Epoch {
    epoch: u64,
    seconds: f64,
    train: Vec<(String, f64)>,
    validation: Option<f64>,
    best_epoch: Option<u64>,
    metrics: Vec<(String, f64)>,
    baselines: Map<String, Value>,
    warnings: Vec<String>,
}

fn numbers(v: &Value) -> Vec<(String, f64)> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| (k.clone(), x.as_f64().unwrap_or(f64::NAN)))
        .collect()
}

/// The epoch lines of `metrics.jsonl`, the number of step lines, and a problem for each line
/// that cannot be read.
fn read_metrics(text: &str) -> (Vec<Epoch>, usize, Vec<String>) {
    let (mut epochs, mut steps, mut problems) = (Vec::new(), 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{METRICS} line {}: not JSON ({e})", i + 1));
                continue;
            }
        };
        match v.get("type").and_then(Value::as_str) {
            Some("step") => steps += 1,
            Some("epoch") => epochs.push(Epoch {
                epoch: v["epoch"].as_u64().unwrap_or(epochs.len() as u64 + 1),
                seconds: v["seconds"].as_f64().unwrap_or(0.0),
                train: numbers(&v["train"]),
                validation: v["validation"].as_f64(),
                best_epoch: v["best_epoch"].as_u64(),
                metrics: numbers(&v["metrics"]),
                baselines: v["baseline"].as_object().cloned().unwrap_or_default(),
                warnings: v["warnings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|w| w.as_str().map(String::from))
                    .collect(),
            }),
            _ => problems.push(format!(
                "{METRICS} line {}: neither a step nor an epoch",
                i + 1
            )),
        }
    }
    (epochs, steps, problems)
}

/// What the page shows of one run folder.
struct Run {
    dir: PathBuf,
    /// The folder relative to the runs folder.
    name: String,
    anchor: String,
    config: Option<Value>,
    model: Option<String>,
    epochs: Vec<Epoch>,
    steps: usize,
    problems: Vec<String>,
}

impl Run {
    fn read(root: &Path, dir: &Path, index: usize) -> Run {
        let name = match dir.strip_prefix(root) {
            Ok(p) if !p.as_os_str().is_empty() => p.display().to_string(),
            _ => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
        };
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let mut problems = Vec::new();
        let config = match std::fs::read_to_string(dir.join(CONFIG)) {
            Ok(t) => match serde_json::from_str::<Value>(&t) {
                Ok(v) => Some(v),
                Err(e) => {
                    problems.push(format!("{CONFIG}: not JSON ({e})"));
                    None
                }
            },
            Err(e) => {
                problems.push(format!("{CONFIG}: cannot read ({e})"));
                None
            }
        };
        let model = config
            .as_ref()
            .and_then(|c| c["model"].as_str().map(String::from));
        if config.is_some() && model.is_none() {
            problems.push(format!("{CONFIG}: no model named"));
        }
        let (epochs, steps) = match std::fs::read_to_string(dir.join(METRICS)) {
            Ok(t) => {
                let (e, s, p) = read_metrics(&t);
                problems.extend(p);
                (e, s)
            }
            Err(e) => {
                problems.push(format!("{METRICS}: cannot read ({e})"));
                (Vec::new(), 0)
            }
        };
        Run {
            dir: dir.to_path_buf(),
            name,
            anchor: format!("run-{}-{slug}", index + 1),
            config,
            model,
            epochs,
            steps,
            problems,
        }
    }

    fn seconds(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum()
    }

    fn last(&self) -> Option<&Epoch> {
        self.epochs.last()
    }
}

/// A number in a table: 4 significant digits or so, integers as integers.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if x == x.round() && a < 1e9 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.3}")
    } else if a >= 1e-3 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

/// A wall time: "12.3 s", "4 min 05 s", "2 h 07 min".
fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// An `<img>` of the PNG at `path` as a data URI in a captioned figure, or a problem (noted in
/// `problems`) when it cannot be read or is not a PNG.
fn figure(path: &Path, caption: &str, problems: &mut Vec<String>) -> String {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let raw = caption;
    let caption = escape(caption);
    match std::fs::read(path) {
        Ok(bytes) if bytes.starts_with(SIGNATURE) => format!(
            "<figure><img src=\"data:image/png;base64,{}\" alt=\"{caption}\"><figcaption>{caption}</figcaption></figure>\n",
            base64(&bytes)
        ),
        Ok(_) => {
            problems.push(format!("{raw}: not a PNG"));
            format!("<figure class=\"missing\">{caption}: not a PNG</figure>\n")
        }
        Err(e) => {
            problems.push(format!("{raw}: cannot read ({e})"));
            format!("<figure class=\"missing\">{caption}: cannot read</figure>\n")
        }
    }
}

/// The epoch grids `samples/epoch-NNN.png`, by epoch.
fn epoch_grids(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut grids: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("samples"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("epoch-")?
                .strip_suffix(".png")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    grids.sort();
    grids
}

/// The PNGs directly in the run folder, sorted by name.
fn pngs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.to_lowercase().ends_with(".png"))
        .collect();
    names.sort();
    names
}

/// `k` of `n` items (k < n), evenly spread from the first.
fn spread(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    let mut picked: Vec<usize> = (0..k).map(|i| i * (n - 1) / (k - 1).max(1)).collect();
    picked.dedup();
    picked
}

fn section(run: &Run) -> String {
    let mut problems = run.problems.clone();
    let mut h = String::new();
    let dir = &run.dir;
    let _ = writeln!(
        h,
        "<section id=\"{}\">\n<h2>{}</h2>\n<p class=\"path\">{}</p>",
        escape(&run.anchor),
        escape(&run.name),
        escape(&dir.display().to_string())
    );
    // the model
    match run.model.as_deref() {
        Some(m) => match registry::find(m) {
            Ok(entry) => {
                let _ = writeln!(
                    h,
                    "<p class=\"model\"><b>{}</b>: {}<br><i>{}</i></p>",
                    escape(m),
                    escape(entry.title),
                    escape(entry.paper)
                );
            }
            Err(_) => {
                let _ = writeln!(
                    h,
                    "<p class=\"model\"><b>{}</b> (not a model of this genzoo)</p>",
                    escape(m)
                );
                problems.push(format!("model {m} is not in the registry"));
            }
        },
        None => h.push_str("<p class=\"model\">model unknown</p>\n"),
    }
    // the settings
    if let Some(c) = &run.config {
        h.push_str("<h3>Settings</h3>\n<table class=\"settings\">\n");
        let mut row = |k: &str, v: &Value| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                v => v.to_string(),
            };
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
        };
        for (k, v) in c["config"].as_object().into_iter().flatten() {
            row(k, v);
        }
        row("epochs", &c["epochs"]);
        let s = &c["settings"];
        for k in ["batch_size", "seed", "preset", "limit_batches", "val"] {
            if s.get(k).is_some() {
                row(k, &s[k]);
            }
        }
        if c.get("data").is_some() {
            row("data", &c["data"]);
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "<p>{} epochs, {} steps in {} of training.</p>",
        run.epochs.len(),
        run.steps,
        duration(run.seconds())
    );
    // the samples
    let grids = epoch_grids(dir);
    if let Some((last, path)) = grids.last() {
        h.push_str("<h3>Samples</h3>\n");
        h.push_str(&figure(path, &format!("epoch {last}"), &mut problems));
        let earlier = &grids[..grids.len() - 1];
        if !earlier.is_empty() {
            h.push_str("<div class=\"strip\">\n");
            for i in spread(earlier.len(), STRIP) {
                let (e, p) = &earlier[i];
                h.push_str(&figure(p, &format!("epoch {e}"), &mut problems));
            }
            h.push_str("</div>\n");
        }
    } else if dir.join(SAMPLES).is_file() {
        h.push_str("<h3>Samples</h3>\n");
        h.push_str(&figure(&dir.join(SAMPLES), SAMPLES, &mut problems));
    }
    // the losses
    let files = pngs(dir);
    h.push_str("<h3>Losses</h3>\n");
    for plot in [LOSS_PLOT, FCD_PLOT] {
        if files.iter().any(|f| f == plot) {
            h.push_str(&figure(&dir.join(plot), plot, &mut problems));
        }
    }
    if let Some(last) = run.last() {
        h.push_str("<table class=\"losses\">\n<tr><th>last epoch's mean</th><th>value</th></tr>\n");
        for (k, v) in &last.train {
            let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(k), num(*v));
        }
        if let Some(v) = last.validation {
            let best = last
                .best_epoch
                .map(|b| format!(" (best: epoch {b})"))
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<tr><td>validation{}</td><td>{}</td></tr>",
                escape(&best),
                num(v)
            );
        }
        h.push_str("</table>\n");
        // the metrics
        if !last.metrics.is_empty() {
            let _ = writeln!(
                h,
                "<h3>Metrics, epoch {}</h3>\n<table class=\"metrics\">\n<tr><th>metric</th><th>value</th><th>baseline (real vs real; for a likelihood, independent pixels)</th></tr>",
                last.epoch
            );
            for (k, v) in &last.metrics {
                let base = last
                    .baselines
                    .get(k)
                    .and_then(Value::as_f64)
                    .map(num)
                    .unwrap_or_default();
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{base}</td></tr>",
                    escape(k),
                    num(*v)
                );
            }
            h.push_str("</table>\n");
        }
        for w in &last.warnings {
            let _ = writeln!(h, "<p class=\"warning\">warning: {}</p>", escape(w));
        }
    }
    // every other picture
    let others: Vec<&String> = files
        .iter()
        .filter(|f| ![LOSS_PLOT, FCD_PLOT].contains(&f.as_str()))
        .filter(|f| f.as_str() != SAMPLES || grids.is_empty())
        .collect();
    if !others.is_empty() {
        h.push_str("<h3>Pictures</h3>\n<div class=\"pictures\">\n");
        for f in others {
            h.push_str(&figure(&dir.join(f), f, &mut problems));
        }
        h.push_str("</div>\n");
    }
    if !problems.is_empty() {
        h.push_str("<h3>Problems</h3>\n<ul class=\"problems\">\n");
        for p in &problems {
            let _ = writeln!(h, "<li>{}</li>", escape(p));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
    h
}

fn overview(runs: &[Run]) -> String {
    let mut h = String::from(
        "<table class=\"overview\">\n<tr><th>run</th><th>model</th><th>epochs</th><th>wall time</th>",
    );
    for k in KEY_METRICS {
        let _ = write!(h, "<th>{k}</th>");
    }
    h.push_str("</tr>\n");
    for run in runs {
        let planned = run
            .config
            .as_ref()
            .and_then(|c| c["epochs"].as_u64())
            .map(|n| format!(" / {n}"))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}{planned}</td><td>{}</td>",
            escape(&run.anchor),
            escape(&run.name),
            escape(run.model.as_deref().unwrap_or("?")),
            run.epochs.len(),
            duration(run.seconds())
        );
        for k in KEY_METRICS {
            let v = run
                .last()
                .and_then(|e| e.metrics.iter().find(|(n, _)| n == k))
                .map(|(_, v)| num(*v))
                .unwrap_or_default();
            let _ = write!(h, "<td>{v}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1400px;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}\
td{font-variant-numeric:tabular-nums}section{border-top:2px solid #888;margin-top:2em}\
figure{display:inline-block;margin:4px;vertical-align:top}figcaption{font-size:small;color:#555}\
img{max-width:100%;image-rendering:pixelated}.strip img{width:140px}.pictures img{max-width:560px}\
.path{color:#777;font-size:small}.problems,.warning,.missing{color:#a00}";

/// The page over the run folders `runs` (found under `root`), as one HTML string.
pub fn render(root: &Path, runs: &[PathBuf]) -> String {
    let runs: Vec<Run> = runs
        .iter()
        .enumerate()
        .map(|(i, d)| Run::read(root, d, i))
        .collect();
    let title = format!("genzoo runs in {}", root.display());
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n",
        t = escape(&title)
    );
    h.push_str(&overview(&runs));
    for run in &runs {
        h.push_str(&section(run));
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// The page over every run folder under `root`; an error when there is none.
pub fn report(root: &Path) -> Result<String> {
    let runs = find_runs(root)?;
    if runs.is_empty() {
        return Err(io(
            root,
            format!("no run folders here (a run folder holds {CONFIG}, {CHECKPOINT}, {WEIGHTS} or {METRICS})"),
        ));
    }
    Ok(render(root, &runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh temporary folder, removed on drop.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new(name: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!(
                "genzoo-report-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tiny_png() -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2, 2);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .unwrap()
            .write_image_data(&[0, 255, 255, 0])
            .unwrap();
        out
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn spread_picks_evenly_from_the_first() {
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        assert_eq!(spread(9, 5), vec![0, 2, 4, 6, 8]);
        assert_eq!(spread(59, 5), vec![0, 14, 29, 43, 58]);
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(num(10.0), "10");
        assert_eq!(num(184.836), "184.8");
        assert_eq!(num(0.30886), "0.3089");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(7620.0), "2 h 07 min");
    }

    fn write_run(dir: &Path, model: &str, metrics: &str) {
        std::fs::create_dir_all(dir.join("samples")).unwrap();
        let config = serde_json::json!({
            "model": model, "epochs": 2,
            "config": {"lr": 0.001, "note": "<b>&</b>"},
            "settings": {"batch_size": 64, "seed": 7},
        });
        std::fs::write(dir.join(CONFIG), config.to_string()).unwrap();
        std::fs::write(dir.join(METRICS), metrics).unwrap();
        for f in [
            "samples/epoch-001.png",
            "samples/epoch-002.png",
            SAMPLES,
            LOSS_PLOT,
        ] {
            std::fs::write(dir.join(f), tiny_png()).unwrap();
        }
    }

    #[test]
    fn a_page_has_a_row_and_a_section_per_run_and_reports_broken_ones() {
        let tmp = Tmp::new("page");
        let root = &tmp.0;
        let good = "{\"type\":\"step\",\"step\":1}\n\
            {\"type\":\"epoch\",\"epoch\":1,\"seconds\":1.5,\"train\":{\"loss\":2.0},\"metrics\":{\"fcd\":300.0}}\n\
            {\"type\":\"epoch\",\"epoch\":2,\"seconds\":2.5,\"train\":{\"loss\":1.0},\"validation\":0.9,\"best_epoch\":2,\
            \"metrics\":{\"fcd\":250.5,\"kid\":0.25},\"baseline\":{\"fcd\":3.25}}\n";
        write_run(&root.join("a"), "dcgan", good);
        write_run(
            &root.join("nested/b"),
            "no-such-<model>",
            "{\"type\":\"epoch\"\nnot json\n",
        );
        std::fs::write(root.join("nested/b/traversal.png"), b"not a png").unwrap();
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::fs::write(root.join("c").join(WEIGHTS), b"").unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();

        let runs = find_runs(root).unwrap();
        assert_eq!(runs.len(), 3, "{runs:?}");
        let html = report(root).unwrap();
        assert_eq!(html.matches("<section").count(), 3);
        assert_eq!(html.matches("<tr><td><a href=\"#run-").count(), 3);
        // the good run: its model, settings, wall time, metrics beside the baseline
        assert!(html.contains("Radford"), "the paper of dcgan");
        assert!(html.contains("<th>batch_size</th><td>64</td>"));
        assert!(
            html.contains("&lt;b&gt;&amp;&lt;/b&gt;"),
            "config text is escaped"
        );
        assert!(
            html.contains("4.0 s"),
            "wall time is the sum of the epochs' seconds"
        );
        assert!(html.contains("<td>fcd</td><td>250.5</td><td>3.250</td>"));
        assert!(html.contains("<td>kid</td><td>0.2500</td><td></td>"));
        assert!(html.contains("validation (best: epoch 2)"));
        assert!(html.contains("epoch 1") && html.contains("epoch 2"));
        // the broken run: its problems listed, its unsafe text escaped
        assert!(html.contains("no-such-&lt;model&gt;"));
        assert!(!html.contains("no-such-<model>"));
        assert!(html.contains("line 2: not JSON"));
        assert!(html.contains("traversal.png: not a PNG"));
        assert!(html.contains("config.json: cannot read"));
        // every image is a PNG
        for uri in html.split("data:image/png;base64,").skip(1) {
            assert!(
                uri.starts_with("iVBORw0KGgo"),
                "a PNG's signature in base64"
            );
        }
    }

    #[test]
    fn no_runs_is_an_error_and_output_must_be_html() {
        let tmp = Tmp::new("none");
        let err = report(&tmp.0).unwrap_err().to_string();
        assert!(err.contains("no run folders"), "{err}");
        assert!(report(&tmp.0.join("missing")).is_err());
        assert!(check_output(&tmp.0.join("r.html")).is_ok());
        assert!(check_output(&tmp.0.join("metrics.jsonl")).is_err());
        let old = tmp.0.join("old.html");
        std::fs::write(&old, "<!DOCTYPE html>\n<html></html>").unwrap();
        assert!(check_output(&old).is_ok());
        let other = tmp.0.join("notes.html");
        std::fs::write(&other, "my notes").unwrap();
        assert!(check_output(&other).is_err());
        std::fs::create_dir_all(tmp.0.join("dir.html")).unwrap();
        assert!(check_output(&tmp.0.join("dir.html")).is_err());
    }
}
