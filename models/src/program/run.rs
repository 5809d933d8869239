//! A training run: its folder, the training loop, and loading a run back for `sample` / `eval`.
//!
//! The run folder (`--out`, default `runs/<model>`) holds, as training goes:
//!
//! | file | what |
//! |---|---|
//! | `config.json` | the model, its config and the training settings |
//! | `metrics.jsonl` | one JSON object per step (`"type": "step"`, the losses) and per epoch (`"type": "epoch"`, mean losses, epoch metrics and their real-vs-real baselines, seconds) |
//! | `loss.png` | the loss curves, redrawn after every epoch |
//! | `fcd.png` | the FCD of each epoch's samples beside the epoch means of the losses, each curve scaled to its own range (models whose epoch metrics have an FCD: the GANs) |
//! | `samples/epoch-NNN.png`, `samples.png` | 64 samples from fixed noise after every epoch (generative models) |
//! | `checkpoint.safetensors` | weights, optimizer state, step, generator state: what `--resume` continues from |
//! | `model.safetensors` | the weights alone (PyTorch names), e.g. the shipped classifier |
//! | `best.safetensors` | the weights of the epoch with the lowest validation loss so far (models with one, [`GenerativeModel::validation_loss`]); what `eval`, `sample` and `complete` read from a run folder unless told `--last` |
//! | `reconstructions.png`, `interpolations.png`, `latent_scatter.png` | latent-variable models, after the last epoch ([`crate::latent`]) |
//!
//! Determinism: the model is built from `Rng::new(seed)`, and the same generator (saved in every
//! checkpoint) feeds the training steps; each epoch's data order comes from its own seed
//! (the run's seed and the epoch number), and sample grids use a fixed generator of their own.
//! So on the CPU a run resumed from any checkpoint (an epoch's end or a Ctrl-C) ends bit for bit
//! where the uninterrupted run ends.
//!
//! Validation: models with a validation loss (likelihood and latent-variable models, the
//! classifier) hold out the last `--val` training digits (1,000 by default for the likelihood
//! and latent families), score them after every epoch (`validation` in the epoch's record and a
//! curve in `loss.png`), keep the best epoch's weights in `best.safetensors`, and with
//! `--patience P` stop once P epochs in a row have not beaten the best. `--max-minutes M` ends a
//! run after the step that passes M minutes, with a checkpoint to resume from. The best so far
//! is read back from `metrics.jsonl` when a run resumes.

use crate::adversarial;
use crate::latent;
use crate::model::{Entry, Family, GenerativeModel, Losses, Preset};
use crate::program::checkpoint::{self, write_atomic, Checkpoint, Meta};
use crate::program::data::{self, Batches, Mnist};
use crate::program::eval::{EvalContext, Metric};
use crate::program::image;
use crate::registry;
use autograd::{no_grad, Error, Result, Rng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The run folder's lock file: held by the training process for its whole life.
pub const LOCK: &str = ".genzoo.lock";
pub const WEIGHTS: &str = "model.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const LOSS_PLOT: &str = "loss.png";
pub const FCD_PLOT: &str = "fcd.png";
pub const SAMPLES: &str = "samples.png";
pub const CONFIG: &str = "config.json";
pub const BEST: &str = "best.safetensors";

/// The validation digits held out by default, for models that have a validation loss.
pub const DEFAULT_VAL: usize = 1000;

/// Samples in the per-epoch grid.
const GRID: usize = 64;
/// Seeds of the generators for the sample grids and for the per-epoch evaluation.
const GRID_SEED: u64 = 0x6121_D5EE_D000_0001;
const EVAL_SEED: u64 = 0xE7A1_5EED_0000_0002;
/// The generator of the validation loss's draws (a VAE's codes), the same every epoch.
const VAL_SEED: u64 = 0x7A1_5EED_0000_0003;

/// The settings of a run that a resumed run keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub batch_size: usize,
    pub seed: u64,
    /// The data folder, or None for the embedded subset.
    pub data: Option<String>,
    /// Batches per epoch when limited (tests, quick looks).
    pub limit_batches: Option<usize>,
    /// The last `val` training digits are held out for validation (0 in checkpoints of runs
    /// from before validation existed).
    #[serde(default)]
    pub val: usize,
    /// The preset the run started from (`--preset`), if any.
    #[serde(default)]
    pub preset: Option<String>,
    /// The digest of the data it trains on ([`Mnist::digest`]), checked when it resumes (absent
    /// in runs from before it was kept).
    #[serde(default)]
    pub data_digest: Option<String>,
}

/// What `genzoo train` was asked for; `None` means "the default" (or, with `resume`, "as the
/// run was").
#[derive(Clone, Debug, Default)]
pub struct TrainRequest {
    pub model: String,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub seed: Option<u64>,
    pub data: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub resume: bool,
    /// Config overrides `key=value` (value as JSON, else as a string).
    pub set: Vec<(String, Value)>,
    pub limit_batches: Option<usize>,
    /// Training digits held out for validation [default: [`DEFAULT_VAL`] for models with a
    /// validation loss, else 0]; a resumed run keeps its own.
    pub val: Option<usize>,
    /// A named size and schedule of the model ([`crate::model::Preset`]); a resumed run keeps
    /// its own.
    pub preset: Option<String>,
    /// Stop when this many epochs in a row have not lowered the validation loss.
    pub patience: Option<usize>,
    /// End the run (with a checkpoint) after the step that passes this many minutes.
    pub max_minutes: Option<f64>,
    /// Draw progress bars (they are hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Print a line per epoch to stderr.
    pub verbose: bool,
}

/// How training ended, when it did not fail.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Finished {
        dir: PathBuf,
        epochs: u64,
        step: u64,
    },
    /// Ctrl-C: the step in progress was finished and a checkpoint written.
    Interrupted { dir: PathBuf, step: u64 },
    /// `--patience` epochs in a row without a better validation loss than `best_epoch`'s.
    EarlyStopped {
        dir: PathBuf,
        epochs: u64,
        step: u64,
        best_epoch: u64,
    },
    /// `--max-minutes` passed: the step in progress was finished and a checkpoint written.
    OutOfTime { dir: PathBuf, step: u64 },
}

/// Bytes in a mebibyte, for the epoch line.
const MIB: f64 = 1024.0 * 1024.0;
fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid("train", msg)
}

fn io(path: &Path, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// The environment variable that sets the host-memory budget for tensors, in MiB.
pub const HOST_MEMORY_ENV: &str = "GENZOO_HOST_MEMORY_MIB";

/// The host-memory budget for the command's tensors ([`autograd::set_host_memory_limit`]):
/// `GENZOO_HOST_MEMORY_MIB` when it is set, else 90% of what the machine has available as the
/// command starts (`MemAvailable` in /proc/meminfo; the rest is for what tensors do not count:
/// kernels' scratch, data, the program), so that a model or batch too large for the machine
/// stops with an error naming the op rather than an abort or the OOM killer. `None` where
/// neither is known.
pub fn host_memory_budget() -> Result<Option<usize>> {
    if let Ok(v) = std::env::var(HOST_MEMORY_ENV) {
        return match v.trim().parse::<usize>() {
            Ok(mib) if mib > 0 => Ok(Some(mib.saturating_mul(1 << 20))),
            _ => Err(Error::invalid(
                "genzoo",
                format!("{HOST_MEMORY_ENV}={v:?}: expected a whole number of MiB > 0"),
            )),
        };
    }
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return Ok(None);
    };
    let available_kib = meminfo.lines().find_map(|l| {
        l.strip_prefix("MemAvailable:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<usize>()
            .ok()
    });
    Ok(available_kib.map(|kib| kib.saturating_mul(1024) / 10 * 9))
}

/// `config` with `--lr` and `--set` applied. Errors when the config is not a JSON object or
/// has no `lr` to set.
pub fn patch_config(
    model: &str,
    mut config: Value,
    lr: Option<f64>,
    set: &[(String, Value)],
) -> Result<Value> {
    let obj = config
        .as_object_mut()
        .ok_or_else(|| invalid(format!("the {model} config is not a JSON object")))?;
    if lr.is_some() && set.iter().any(|(k, _)| k == "lr") {
        return Err(invalid(
            "--lr and --set lr=... both set the learning rate: give one of them",
        ));
    }
    if let Some(lr) = lr {
        if !obj.contains_key("lr") {
            return Err(invalid(format!(
                "the {model} model has no learning rate to set"
            )));
        }
        obj.insert("lr".into(), json!(lr));
    }
    for (k, v) in set {
        // a learning rate set by key obeys --lr's rule
        let is_rate = k == "lr" || k.starts_with("lr_") || k.ends_with("_lr");
        if is_rate && !v.as_f64().is_some_and(|x| x.is_finite() && x > 0.0) {
            return Err(invalid(format!(
                "--set {k}={v}: a learning rate must be a finite number > 0"
            )));
        }
        obj.insert(k.clone(), v.clone());
    }
    Ok(config)
}

/// `config` with the keys of `preset` set (as `--set` would set them).
pub fn with_preset(entry: &Entry, config: Value, preset: &Preset) -> Result<Value> {
    let keys: serde_json::Map<String, Value> =
        serde_json::from_str(preset.config).map_err(|e| {
            invalid(format!(
                "the {} preset {:?} is not a JSON object: {e}",
                entry.name, preset.name
            ))
        })?;
    let keys: Vec<(String, Value)> = keys.into_iter().collect();
    patch_config(entry.name, config, None, &keys)
}

/// Reads `KEY=VALUE` (VALUE as JSON, or as a plain string when it is not JSON).
pub fn parse_set(s: &str) -> std::result::Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if k.is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), v))
}

/// Refuses a batch size that gives `model` a step on fewer digits than it takes: the batch
/// itself, or an epoch's last, short batch of the `train_count` digits (reached unless
/// `limit_batches` stops the epoch before it).
fn check_last_batch(
    model: &dyn GenerativeModel,
    train_count: usize,
    batch_size: usize,
    limit_batches: Option<usize>,
) -> Result<()> {
    let least = model.min_batch();
    let last = train_count % batch_size;
    let last_reached = limit_batches.is_none_or(|l| l >= train_count.div_ceil(batch_size));
    let short = |b: usize| b < least || (!train_count.is_multiple_of(b) && train_count % b < least);
    let problem = if batch_size < least {
        "is fewer".to_string()
    } else if last_reached && short(batch_size) {
        format!("leaves each epoch of the {train_count} training digits a last batch of {last}")
    } else {
        return Ok(());
    };
    let fits = (batch_size.max(least)..=train_count).find(|&b| !short(b));
    Err(invalid(format!(
        "{} trains on at least {least} digits a step, and --batch-size {batch_size} {problem}{}",
        model.name(),
        fits.map(|b| format!(": try --batch-size {b}"))
            .unwrap_or_default()
    )))
}

/// The order of epoch `epoch` (0-based): a shuffle seeded by the run's seed and the epoch.
fn epoch_batches(seed: u64, epoch: u64, n: usize, batch_size: usize) -> Batches {
    let s = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    Batches::shuffled(n, batch_size, s)
}

/// metrics.jsonl, appended line by line.
struct Log {
    path: PathBuf,
}

impl Log {
    fn append(&self, v: &Value) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, format!("cannot open: {e}")))?;
        writeln!(f, "{v}").map_err(|e| io(&self.path, format!("cannot write: {e}")))
    }
}

/// The per-step losses of the history in `metrics.jsonl`: (step, losses).
type History = Vec<(u64, Losses)>;

/// The validation losses of the epochs so far: (epoch, step at its end, loss).
type Validation = Vec<(u64, u64, f64)>;

/// The epoch with the lowest validation loss, and that loss (the first of equals; a NaN or
/// infinite loss is never the best).
fn best_of(validation: &Validation) -> Option<(u64, f64)> {
    validation.iter().filter(|(_, _, v)| v.is_finite()).fold(
        None,
        |best: Option<(u64, f64)>, &(e, _, v)| match best {
            Some((_, b)) if b <= v => best,
            _ => Some((e, v)),
        },
    )
}

fn losses_json(l: &Losses) -> Value {
    Value::Object(l.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn metrics_json(m: &[Metric]) -> Value {
    Value::Object(m.iter().map(|m| (m.name.clone(), json!(m.value))).collect())
}

/// Keeps the lines of `metrics.jsonl` up to the checkpoint (a resumed run rewrites what came
/// after it) and returns the step history and the epochs' validation losses.
fn rewind_log(path: &Path, step: u64, epoch: u64) -> Result<(History, Validation)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(path, format!("cannot read: {e}"))),
    };
    let mut keep = String::new();
    let mut history = Vec::new();
    let mut validation = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue; // a line cut by a crash
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let keep_it = match kind {
            "step" => v
                .get("step")
                .and_then(Value::as_u64)
                .is_some_and(|s| s <= step),
            "epoch" => v
                .get("epoch")
                .and_then(Value::as_u64)
                .is_some_and(|e| e <= epoch),
            _ => false,
        };
        if !keep_it {
            continue;
        }
        if kind == "step" {
            let s = v.get("step").and_then(Value::as_u64).unwrap_or(0);
            let losses = v
                .get("losses")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, x)| (k.clone(), x.as_f64().unwrap_or(f64::NAN)))
                        .collect()
                })
                .unwrap_or_default();
            history.push((s, losses));
        }
        if let (true, Some(e), Some(s), Some(val)) = (
            kind == "epoch",
            v["epoch"].as_u64(),
            v["step"].as_u64(),
            v["validation"].as_f64(),
        ) {
            validation.push((e, s, val));
        }
        keep.push_str(line);
        keep.push('\n');
    }
    write_atomic(path, keep.as_bytes())?;
    Ok((history, validation))
}

/// `loss.png`: every step's losses, and the validation loss at each epoch's end.
fn plot(history: &History, validation: &Validation, path: &Path) -> Result<()> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (step, losses) in history {
        for (name, v) in losses {
            let i = match series.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    series.push((name.clone(), Vec::new()));
                    series.len() - 1
                }
            };
            series[i].1.push((*step as f64, *v));
        }
    }
    if !validation.is_empty() {
        let points = validation.iter().map(|&(_, s, v)| (s as f64, v)).collect();
        series.push(("validation".into(), points));
    }
    write_atomic(path, &image::loss_plot_png(&series, 800, 480)?)
}

/// `fcd.png`: the FCD of every epoch so far (read back from metrics.jsonl, so a resumed run
/// draws its earlier epochs too) above the epoch means of the losses, each curve scaled to its
/// own range (a WGAN's Wasserstein estimate and the FCD fall together, on very different
/// scales). Nothing when the epochs report no FCD.
fn plot_epochs(log: &Path, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(log).map_err(|e| io(log, format!("cannot read: {e}")))?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut push = |name: String, x: f64, y: f64| match series.iter_mut().find(|(n, _)| *n == name)
    {
        Some((_, p)) => p.push((x, y)),
        None => series.push((name, vec![(x, y)])),
    };
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if v["type"] != "epoch" {
            continue;
        }
        let (Some(e), Some(fcd)) = (v["epoch"].as_f64(), v["metrics"]["fcd"].as_f64()) else {
            continue;
        };
        push("fcd".into(), e, fcd);
        for (k, y) in v["train"].as_object().into_iter().flatten() {
            if let Some(y) = y.as_f64() {
                push(format!("{k} (epoch mean)"), e, y);
            }
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    // each curve on [0, 1] of its own range, its range in the legend
    let scaled: Vec<(String, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(name, p)| {
            let (lo, hi) = p
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), q| (a.min(q.1), b.max(q.1)));
            let span = if hi > lo { hi - lo } else { 1.0 };
            let label = format!("{name} {lo:.3} .. {hi:.3}");
            (
                label,
                p.iter().map(|&(x, y)| (x, (y - lo) / span)).collect(),
            )
        })
        .collect();
    let style = image::PlotStyle {
        x_label: "epoch",
        smooth: false,
        log_y_allowed: false,
    };
    write_atomic(path, &image::plot_png(&scaled, 800, 480, &style)?)
}

fn fmt_losses(l: &[(String, f64)]) -> String {
    l.iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Running means of the losses of one epoch, each over the steps that reported it (a WGAN's
/// generator loss comes every fifth step).
#[derive(Default)]
struct Means {
    /// name, sum, count
    sums: Vec<(String, f64, usize)>,
}

impl Means {
    fn add(&mut self, l: &Losses) {
        for (k, v) in l {
            match self.sums.iter_mut().find(|(n, _, _)| n == k) {
                Some(s) => {
                    s.1 += v;
                    s.2 += 1;
                }
                None => self.sums.push((k.clone(), *v, 1)),
            }
        }
    }
    fn get(&self) -> Losses {
        self.sums
            .iter()
            .map(|(k, s, n)| (k.clone(), s / (*n).max(1) as f64))
            .collect()
    }
}

/// Everything a run needs at its start.
struct Start {
    entry: &'static Entry,
    model: Box<dyn GenerativeModel>,
    rng: Rng,
    settings: Settings,
    step: u64,
    epoch: u64,
    batch: u64,
}

/// Holds a run folder's lock: an OS advisory lock on its [`LOCK`] file, which the OS releases
/// however the process ends (SIGKILL included), so a lock is never left stale.
pub struct RunLock {
    _file: std::fs::File,
}

/// Locks `dir` (created if need be) for this process, or says which process holds it.
pub fn lock_run_folder(dir: &Path) -> Result<RunLock> {
    std::fs::create_dir_all(dir)
        .map_err(|e| io(dir, format!("cannot create the run folder: {e}")))?;
    let path = dir.join(LOCK);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(&path, format!("cannot open the run folder's lock: {e}")))?;
    match file.try_lock() {
        Ok(()) => {
            // the holder's pid, for the error another process will give
            let _ = file.set_len(0);
            let _ = write!(file, "{}", std::process::id());
            let _ = file.flush();
            Ok(RunLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            Err(io(
                dir,
                format!(
                    "this run folder is in use by another genzoo run ({holder}); wait for it \
                     to finish or stop it, or choose another --out"
                ),
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(io(&path, format!("cannot lock the run folder: {e}")))
        }
    }
}

/// Whether `dir` holds the run lock's file and nothing else.
fn holds_only_the_lock(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .map(|e| e.map(|e| e.file_name() == LOCK))
            .all(|only_lock| matches!(only_lock, Ok(true)))
    })
}

/// A run folder that did not exist before this command: removed when dropped unless kept.
struct MadeFolder(Option<PathBuf>);

impl MadeFolder {
    /// Training begins: the folder is the run's.
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for MadeFolder {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn start(entry: &'static Entry, req: &TrainRequest, dir: &Path) -> Result<Start> {
    let ckpt_path = dir.join(CHECKPOINT);
    if req.resume {
        if !ckpt_path.exists() {
            return Err(io(
                &ckpt_path,
                "--resume: there is no checkpoint here to continue from",
            ));
        }
        let ck = checkpoint::load(&ckpt_path)?;
        let name = ckpt_path.display().to_string();
        if ck.meta.model != entry.name {
            return Err(io(
                &ckpt_path,
                format!(
                    "this checkpoint is of a {:?} run, not {:?}: resume it with `genzoo train {} --resume --out {}`",
                    ck.meta.model,
                    entry.name,
                    ck.meta.model,
                    dir.display()
                ),
            ));
        }
        let settings: Settings = serde_json::from_value(ck.meta.train.clone()).map_err(|e| {
            io(
                &ckpt_path,
                format!("corrupt training settings in the checkpoint: {e}"),
            )
        })?;
        let keep = |what: &str, asked: String, had: String| -> Result<()> {
            if asked != had {
                return Err(invalid(format!(
                    "--resume keeps the run's settings: {what} was {had}, not {asked} (start a new run with another --out to change it)"
                )));
            }
            Ok(())
        };
        if let Some(b) = req.batch_size {
            keep(
                "--batch-size",
                b.to_string(),
                settings.batch_size.to_string(),
            )?;
        }
        if let Some(s) = req.seed {
            keep("--seed", s.to_string(), settings.seed.to_string())?;
        }
        if let Some(d) = &req.data {
            // the same folder however it is written (the run keeps it as an absolute path)
            let canonical = |p: &Path| std::fs::canonicalize(p).ok();
            let same = settings.data.as_deref().is_some_and(|kept| {
                canonical(d).is_some() && canonical(d) == canonical(Path::new(kept))
            });
            if !same {
                keep(
                    "--data",
                    d.display().to_string(),
                    settings
                        .data
                        .clone()
                        .unwrap_or_else(|| "the embedded data".into()),
                )?;
            }
        }
        if req.limit_batches.is_some() {
            keep(
                "--limit-batches",
                format!("{:?}", req.limit_batches),
                format!("{:?}", settings.limit_batches),
            )?;
        }
        if let Some(v) = req.val {
            keep("--val", v.to_string(), settings.val.to_string())?;
        }
        if let Some(p) = &req.preset {
            keep(
                "--preset",
                p.clone(),
                settings.preset.clone().unwrap_or_else(|| "none".into()),
            )?;
        }
        let patched = patch_config(entry.name, ck.meta.config.clone(), req.lr, &req.set)?;
        if patched != ck.meta.config {
            return Err(invalid(format!(
                "--resume keeps the run's config {}; --lr / --set would change it",
                ck.meta.config
            )));
        }
        // --epochs is the new total: fewer than are done would undo nothing and only rewrite
        // the run's config
        if let Some(e) = req.epochs.filter(|&e| (e as u64) < ck.meta.epoch) {
            return Err(invalid(format!(
                "--epochs {e}: this run has already trained {} epochs (--epochs is the new total)",
                ck.meta.epoch
            )));
        }
        let mut model = (entry.build)(&ck.meta.config, &mut Rng::new(settings.seed))?;
        // a weights file (model.safetensors, best.safetensors) copied over the checkpoint would
        // resume with the optimizers' state silently reset: refuse a file that holds none (one
        // optimizer may rightly have none yet, as WGAN's generator before its first step)
        let prefixes: Vec<String> = model
            .optimizers()
            .iter()
            .map(|(p, _)| format!("{p}."))
            .collect();
        let holds_state = ck
            .tensors
            .iter()
            .any(|(n, _)| prefixes.iter().any(|p| n.starts_with(p.as_str())));
        if ck.meta.step > 0 && !prefixes.is_empty() && !holds_state {
            return Err(io(
                &ckpt_path,
                format!(
                    "--resume: this file holds no optimizer state (a weights file such as \
                     {WEIGHTS}?); resuming needs the run's own {CHECKPOINT}"
                ),
            ));
        }
        model.load_state_dict(&ck.tensors, &name)?;
        let rng = Rng::from_state(&ck.meta.rng)
            .map_err(|e| io(&ckpt_path, format!("corrupt generator state: {e}")))?;
        Ok(Start {
            entry,
            model,
            rng,
            settings,
            step: ck.meta.step,
            epoch: ck.meta.epoch,
            batch: ck.meta.batch,
        })
    } else {
        if ckpt_path.exists() {
            return Err(io(
                &ckpt_path,
                "a run is already here: pass --resume to continue it, or choose another --out",
            ));
        }
        let preset = req.preset.as_deref().map(|n| entry.preset(n)).transpose()?;
        let mut config = (entry.default_config)();
        if let Some(p) = preset {
            config = with_preset(entry, config, p)?;
        }
        let config = patch_config(entry.name, config, req.lr, &req.set)?;
        let val = match (req.val, entry.family) {
            (Some(v), Family::Adversarial) if v > 0 => {
                return Err(invalid(format!(
                    "--val {v}: the {} model has no validation loss (the GANs are judged by their samples), so there is nothing to hold digits out for",
                    entry.name
                )))
            }
            (Some(v), _) => v,
            (None, Family::Likelihood | Family::LatentVariable) => DEFAULT_VAL,
            (None, _) => 0,
        };
        let settings = Settings {
            batch_size: req
                .batch_size
                .or(preset.map(|p| p.batch_size))
                .unwrap_or(entry.default_batch_size),
            seed: req.seed.unwrap_or(0),
            // the folder as an absolute path, so a resume from another directory finds it
            data: req
                .data
                .as_ref()
                .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
                .map(|d| d.display().to_string()),
            limit_batches: req.limit_batches,
            val,
            preset: preset.map(|p| p.name.to_string()),
            data_digest: None,
        };
        if settings.batch_size == 0 {
            return Err(invalid("--batch-size must be at least 1"));
        }
        let mut rng = Rng::new(settings.seed);
        let model = (entry.build)(&config, &mut rng)?;
        Ok(Start {
            entry,
            model,
            rng,
            settings,
            step: 0,
            epoch: 0,
            batch: 0,
        })
    }
}

fn meta_of(
    model: &dyn GenerativeModel,
    settings: &Settings,
    rng: &Rng,
    (step, epoch, batch): (u64, u64, u64),
) -> Meta {
    Meta {
        model: model.name().to_string(),
        config: model.config(),
        train: serde_json::to_value(settings).unwrap_or_default(),
        step,
        epoch,
        batch,
        rng: rng.state(),
    }
}

/// `best.safetensors`: the weights as they are at the end of `epoch`.
fn save_best(
    dir: &Path,
    model: &dyn GenerativeModel,
    settings: &Settings,
    rng: &Rng,
    (step, epoch): (u64, u64),
) -> Result<()> {
    checkpoint::save(
        &dir.join(BEST),
        &Checkpoint {
            meta: meta_of(model, settings, rng, (step, epoch, 0)),
            tensors: model.weights(),
        },
    )
}

/// What a run that stops on an error keeps: its last good checkpoint, named with its step.
fn kept_checkpoint(dir: &Path) -> String {
    let ck = dir.join(CHECKPOINT);
    match checkpoint::load(&ck) {
        Ok(c) => format!(
            "the last good checkpoint {} (step {}) is kept",
            ck.display(),
            c.meta.step
        ),
        Err(_) => "no checkpoint had been written yet".to_string(),
    }
}

fn save_checkpoint(
    dir: &Path,
    model: &dyn GenerativeModel,
    settings: &Settings,
    rng: &Rng,
    position: (u64, u64, u64),
) -> Result<()> {
    let meta = meta_of(model, settings, rng, position);
    checkpoint::save(
        &dir.join(CHECKPOINT),
        &Checkpoint {
            meta: meta.clone(),
            tensors: model.state_dict(),
        },
    )?;
    checkpoint::save(
        &dir.join(WEIGHTS),
        &Checkpoint {
            meta,
            tensors: model.weights(),
        },
    )
}

/// Trains as `req` says until the epochs are done, Ctrl-C sets `stop`, or a step fails.
/// A non-finite loss stops with an error naming the step; the last good checkpoint stays.
pub fn train(req: &TrainRequest, stop: &AtomicBool) -> Result<Outcome> {
    train_entry(registry::find(&req.model)?, req, stop)
}

/// [`train`] for a model given by its entry (`req.model` only names the default run folder),
/// e.g. a model that is not in the registry.
pub fn train_entry(
    entry: &'static Entry,
    req: &TrainRequest,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let dir = req
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(entry.name));
    let absent = !dir.exists();
    // one training process per run folder, a new run or a resumed one
    let _lock = lock_run_folder(&dir)?;
    // a folder this command made is removed again if the command fails before training begins
    // (a mistyped option leaves nothing behind); only while it holds nothing but our lock, so
    // that a run another process started there first is never touched
    let mut made = MadeFolder((absent && holds_only_the_lock(&dir)).then(|| dir.clone()));
    let Start {
        entry,
        mut model,
        mut rng,
        mut settings,
        mut step,
        mut epoch,
        mut batch,
    } = start(entry, req, &dir)?;
    let data = data::load(settings.data.as_deref().map(Path::new))?;
    // a resumed run trains on the data it started on, or not at all
    let digest = data.digest();
    match &settings.data_digest {
        Some(kept) if *kept != digest => {
            return Err(invalid(format!(
                "--resume: the data in {} is not the data this run trained on (digest {digest}, \
                 the run's {kept}); give the run's own data with --data",
                data.source
            )))
        }
        Some(_) => {}
        None => settings.data_digest = Some(digest),
    }
    std::fs::create_dir_all(dir.join("samples"))
        .map_err(|e| io(&dir, format!("cannot create the run folder: {e}")))?;
    let preset = settings
        .preset
        .as_deref()
        .map(|n| entry.preset(n))
        .transpose()?;
    let epochs = req
        .epochs
        .or(preset.map(|p| p.epochs))
        .unwrap_or(entry.default_epochs) as u64;
    if epochs == 0 {
        return Err(invalid("--epochs must be at least 1"));
    }
    if settings.val >= data.train.len() {
        return Err(invalid(format!(
            "--val {} leaves no digits to train on: {} has {} training digits",
            settings.val,
            data.source,
            data.train.len()
        )));
    }
    // a batch larger than the training set would only waste memory (and a huge one exhaust it)
    let train_count = data.train.len() - settings.val;
    if settings.batch_size > train_count {
        return Err(invalid(format!(
            "--batch-size {} is larger than the {train_count} training digits of {}",
            settings.batch_size, data.source
        )));
    }
    check_last_batch(
        &*model,
        train_count,
        settings.batch_size,
        settings.limit_batches,
    )?;
    if req.patience.is_some() && settings.val == 0 {
        return Err(invalid(
            "--patience stops on the validation loss, and this run holds out no validation digits (--val 0, or a GAN)",
        ));
    }
    // a preset's patience applies where there is something to validate on
    let patience = req
        .patience
        .or(preset.and_then(|p| p.patience).filter(|_| settings.val > 0));
    let deadline = match req.max_minutes {
        Some(m) if !(m > 0.0 && m.is_finite()) => {
            return Err(invalid(format!(
                "--max-minutes must be a finite number > 0, got {m}"
            )))
        }
        // a budget too long for the clock is no budget
        Some(m) => std::time::Duration::try_from_secs_f64(m * 60.0)
            .ok()
            .and_then(|d| Instant::now().checked_add(d)),
        None => None,
    };
    let (train_split, val_split) = data.train.split_at(data.train.len() - settings.val);
    let about = json!({
        "model": entry.name,
        "paper": entry.paper,
        "config": model.config(),
        "settings": settings,
        "epochs": epochs,
        "data": data.source,
    });
    write_atomic(
        &dir.join(CONFIG),
        serde_json::to_string_pretty(&about)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let log = Log {
        path: dir.join(METRICS),
    };
    let (mut history, mut validation) = if req.resume {
        rewind_log(&log.path, step, epoch)?
    } else {
        write_atomic(&log.path, b"")?;
        (Vec::new(), Vec::new())
    };
    if req.verbose {
        eprintln!(
            "{} {}: {} train / {}{} test images from {}; {} parameters; run folder {}",
            if req.resume { "resuming" } else { "training" },
            entry.name,
            train_split.len(),
            if val_split.is_empty() {
                String::new()
            } else {
                format!("{} validation / ", val_split.len())
            },
            data.test.len(),
            data.source,
            model
                .weights()
                .iter()
                .map(|(_, t)| t.numel())
                .sum::<usize>(),
            dir.display()
        );
        if req.resume {
            eprintln!("  from step {step} (epoch {}, batch {batch})", epoch + 1);
        }
    }
    let n = train_split.len();
    // one evaluation context for the run, so that the classifier and the real images' features
    // are computed once; its generator restarts every epoch (the same draws each time)
    let mut ctx = EvalContext::new(&data, EVAL_SEED, 0);
    made.keep();
    while epoch < epochs {
        let t0 = Instant::now();
        model.set_training(true);
        model.begin_epoch(epoch)?;
        let mut order: Vec<Vec<usize>> =
            epoch_batches(settings.seed, epoch, n, settings.batch_size).collect();
        if let Some(limit) = settings.limit_batches {
            order.truncate(limit);
        }
        let total = order.len() as u64;
        let bar = if req.progress {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        bar.set_position(batch);
        // the losses of this epoch before a Ctrl-C, for the epoch's means
        let mut means = Means::default();
        let first_step_of_epoch = step - batch;
        for (s, l) in &history {
            if *s > first_step_of_epoch {
                means.add(l);
            }
        }
        for idx in order.iter().skip(batch as usize) {
            let b = train_split.batch(idx);
            let losses = match model.train_step(&b, &mut rng) {
                Ok(losses) => losses,
                Err(e) => {
                    bar.abandon();
                    return Err(invalid(format!(
                        "step {} (epoch {}, batch {}) failed: {e}; training stopped, {}",
                        step + 1,
                        epoch + 1,
                        batch + 1,
                        kept_checkpoint(&dir)
                    )));
                }
            };
            step += 1;
            batch += 1;
            if let Some((name, v)) = losses.iter().find(|(_, v)| !v.is_finite()) {
                bar.abandon();
                let kept = kept_checkpoint(&dir);
                return Err(invalid(format!(
                    "loss {name:?} is {v} at step {step} (epoch {}, batch {batch}); training stopped, {kept}. Try a lower --lr.",
                    epoch + 1
                )));
            }
            log.append(&json!({
                "type": "step", "step": step, "epoch": epoch + 1, "batch": batch,
                "losses": losses_json(&losses),
            }))?;
            means.add(&losses);
            history.push((step, losses));
            bar.set_message(fmt_losses(&means.get()));
            bar.inc(1);
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            if stop.load(Ordering::SeqCst) || out_of_time {
                bar.abandon();
                save_checkpoint(&dir, model.as_ref(), &settings, &rng, (step, epoch, batch))?;
                plot(&history, &validation, &dir.join(LOSS_PLOT))?;
                return Ok(if out_of_time {
                    Outcome::OutOfTime { dir, step }
                } else {
                    Outcome::Interrupted { dir, step }
                });
            }
        }
        bar.finish_and_clear();
        // the epoch's end: metrics, sample grid, plot, log, checkpoint
        model.set_training(false);
        ctx.rng = Rng::new(EVAL_SEED);
        let metrics = model.epoch_metrics(&mut ctx)?;
        let val_loss = if settings.val > 0 {
            let v = model.validation_loss(&val_split, &mut Rng::new(VAL_SEED))?;
            Some(v.ok_or_else(|| {
                invalid(format!(
                    "the {} model has no validation loss: train it with --val 0",
                    entry.name
                ))
            })?)
        } else {
            None
        };
        if entry.family != Family::Classifier {
            let grid = no_grad(|| model.sample_given(0, GRID, &data, &mut Rng::new(GRID_SEED)))?;
            crate::program::eval::check_samples(entry.name, &grid, GRID)?;
            let png = image::grid_png(&grid, Some(8), 2)?;
            write_atomic(
                &dir.join("samples")
                    .join(format!("epoch-{:03}.png", epoch + 1)),
                &png,
            )?;
            write_atomic(&dir.join(SAMPLES), &png)?;
        }
        model.set_training(true);
        epoch += 1;
        batch = 0;
        if let Some(v) = val_loss {
            validation.push((epoch, step, v));
        }
        let best = best_of(&validation);
        plot(&history, &validation, &dir.join(LOSS_PLOT))?;
        let secs = t0.elapsed().as_secs_f64();
        let mean = means.get();
        let warnings = match entry.family {
            Family::Adversarial => adversarial::warnings(&metrics),
            _ => Vec::new(),
        };
        let mut record = json!({
            "type": "epoch", "epoch": epoch, "step": step, "seconds": secs,
            "train": losses_json(&mean), "metrics": metrics_json(&metrics),
        });
        let baselines: serde_json::Map<String, Value> = metrics
            .iter()
            .filter_map(|m| Some((m.name.clone(), json!(m.baseline?))))
            .collect();
        if !baselines.is_empty() {
            record["baseline"] = Value::Object(baselines);
        }
        if !warnings.is_empty() {
            record["warnings"] = json!(warnings);
        }
        if let (Some(v), Some((best_epoch, _))) = (val_loss, best) {
            record["validation"] = json!(v);
            record["best_epoch"] = json!(best_epoch);
        }
        log.append(&record)?;
        // this epoch is the best only when it beat every earlier one (a tie keeps the earlier)
        if val_loss.is_some() && best.is_some_and(|(e, _)| e == epoch) {
            save_best(&dir, model.as_ref(), &settings, &rng, (step, epoch))?;
        }
        if metrics.iter().any(|m| m.name == "fcd") {
            plot_epochs(&log.path, &dir.join(FCD_PLOT))?;
        }
        save_checkpoint(&dir, model.as_ref(), &settings, &rng, (step, epoch, 0))?;
        if req.verbose {
            let m: Vec<(String, f64)> = metrics.iter().map(|m| (m.name.clone(), m.value)).collect();
            let val = match (val_loss, best) {
                (Some(v), Some((b, _))) => format!("  validation {v:.4} (best: epoch {b})"),
                _ => String::new(),
            };
            // on a CUDA device, what its allocator holds
            let memory = match autograd::device_memory(autograd::default_device()) {
                Some(d) => format!(
                    "  device memory {:.1} MiB, peak {:.1} MiB",
                    d.current_bytes as f64 / MIB,
                    d.peak_bytes as f64 / MIB
                ),
                None => {
                    let h = autograd::host_memory();
                    format!(
                        "  tensors {:.1} MiB, peak {:.1} MiB",
                        h.current_bytes as f64 / MIB,
                        h.peak_bytes as f64 / MIB
                    )
                }
            };
            eprintln!(
                "epoch {epoch}/{epochs}  step {step}  {}  {}{val}{memory}  ({secs:.1} s)",
                fmt_losses(&mean),
                fmt_losses(&m)
            );
        }
        // warnings are printed even when quiet: they say the run is going wrong
        for w in &warnings {
            eprintln!("warning, epoch {epoch}: {w}");
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(Outcome::Interrupted { dir, step });
        }
        if let (Some(p), Some((best_epoch, _))) = (patience, best) {
            if epoch - best_epoch >= p as u64 && epoch < epochs {
                end_of_training(&dir, model.as_mut(), &data)?;
                return Ok(Outcome::EarlyStopped {
                    dir,
                    epochs: epoch,
                    step,
                    best_epoch,
                });
            }
        }
    }
    // models with an encoder: reconstructions, interpolations, the scatter of 2-d codes
    end_of_training(&dir, model.as_mut(), &data)?;
    Ok(Outcome::Finished {
        dir,
        epochs: epoch,
        step,
    })
}

/// [`latent::write_pictures`] for any model that has an encoder ([`GenerativeModel::latent`]); nothing
/// for the others. Switches the model to evaluation behaviour first.
pub fn end_of_training(dir: &Path, model: &mut dyn GenerativeModel, data: &Mnist) -> Result<()> {
    model.set_training(false);
    if let Some(m) = model.latent() {
        latent::write_pictures(dir, m, data)?;
    }
    model.end_of_training(dir, data)
}

/// Which weights of a run folder to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The best epoch's (`best.safetensors`) where the run has a validation loss, else the last.
    Best,
    /// The last checkpoint's, whatever the validation said.
    Last,
}

/// The checkpoint file of `path`: the file itself, or from a run folder its best epoch's
/// weights (with [`Pick::Best`], where there are some), else its checkpoint, else its weights
/// file.
pub fn resolve(path: &Path, pick: Pick) -> Result<PathBuf> {
    if path.is_dir() {
        let files: &[&str] = match pick {
            Pick::Best => &[BEST, CHECKPOINT, WEIGHTS],
            Pick::Last => &[CHECKPOINT, WEIGHTS],
        };
        for f in files {
            let p = path.join(f);
            if p.exists() {
                return Ok(p);
            }
        }
        return Err(io(
            path,
            format!("a folder without {CHECKPOINT} or {WEIGHTS}: not a genzoo run"),
        ));
    }
    if !path.exists() {
        return Err(io(path, "no such file or run folder"));
    }
    Ok(path.to_path_buf())
}

/// A trained model loaded from a run folder or checkpoint file, with its checkpoint metadata.
pub struct Loaded {
    pub path: PathBuf,
    pub meta: Meta,
    pub entry: &'static Entry,
    pub model: Box<dyn GenerativeModel>,
}

/// Loads the model of a run folder ([`resolve`]) or checkpoint: the model named in the file,
/// built from the file's config, with the file's weights (and optimizer state).
pub fn load(path: &Path, pick: Pick) -> Result<Loaded> {
    load_with(path, pick, |name| registry::find(name).ok())
}

/// [`load`] with the entry of a model that may not be in the registry.
pub fn load_as(path: &Path, pick: Pick, entry: &'static Entry) -> Result<Loaded> {
    load_with(path, pick, |name| (name == entry.name).then_some(entry))
}

fn load_with(
    path: &Path,
    pick: Pick,
    find: impl Fn(&str) -> Option<&'static Entry>,
) -> Result<Loaded> {
    let path = resolve(path, pick)?;
    let ck = checkpoint::load(&path)?;
    let name = path.display().to_string();
    let entry = find(&ck.meta.model).ok_or_else(|| {
        io(
            &path,
            format!(
                "holds a {:?} model, which this genzoo does not know (known: {})",
                ck.meta.model,
                registry::names().join(", ")
            ),
        )
    })?;
    let mut model = (entry.build)(&ck.meta.config, &mut Rng::new(0)).map_err(|e| {
        io(
            &path,
            format!("cannot build the model from its config: {e}"),
        )
    })?;
    model.load_state_dict(&ck.tensors, &name)?;
    model.set_training(false);
    Ok(Loaded {
        path,
        meta: ck.meta,
        entry,
        model,
    })
}

/// The data a loaded run was trained on (unless `data` names another folder).
pub fn data_of(meta: &Meta, data: Option<&Path>) -> Result<Mnist> {
    if let Some(d) = data {
        return data::load(Some(d));
    }
    let settings: Option<Settings> = serde_json::from_value(meta.train.clone()).ok();
    data::load(settings.and_then(|s| s.data).as_deref().map(Path::new))
}

#[cfg(test)]
mod tests {
    use super::{holds_only_the_lock, lock_run_folder, patch_config};

    /// What a failed command may remove: a folder with our lock's file alone, not one where
    /// anything else was written (another process's run), nor a missing one.
    #[test]
    fn only_a_folder_holding_the_lock_alone_counts_as_unused() {
        let dir = std::env::temp_dir().join(format!("genzoo-lock-only-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!holds_only_the_lock(&dir));
        let lock = lock_run_folder(&dir).unwrap();
        assert!(holds_only_the_lock(&dir));
        std::fs::write(dir.join("metrics.jsonl"), b"").unwrap();
        assert!(!holds_only_the_lock(&dir));
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn learning_rates_set_by_key_obey_the_lr_rule_and_may_not_conflict() {
        let cfg = serde_json::json!({"lr": 1e-3, "lr_d": 2e-4});
        let set = |k: &str, v: serde_json::Value| vec![(k.to_string(), v)];
        for (k, v) in [
            ("lr", serde_json::json!(0)),
            ("lr", serde_json::json!(-1)),
            ("lr_d", serde_json::json!("fast")),
        ] {
            let e = patch_config("gan", cfg.clone(), None, &set(k, v)).unwrap_err();
            assert!(e.to_string().contains("finite number > 0"), "{e}");
        }
        let e = patch_config(
            "gan",
            cfg.clone(),
            Some(0.1),
            &set("lr", serde_json::json!(0.2)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("give one"), "{e}");
        let ok = patch_config("gan", cfg, None, &set("lr_d", serde_json::json!(1e-4))).unwrap();
        assert_eq!(ok["lr_d"], serde_json::json!(1e-4));
    }

    use super::*;

    #[test]
    fn the_best_epoch_is_the_first_lowest_finite_loss() {
        let v = |losses: &[f64]| -> Validation {
            losses
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u64 + 1, 10 * (i as u64 + 1), l))
                .collect()
        };
        assert_eq!(best_of(&v(&[])), None);
        assert_eq!(best_of(&v(&[3.0, 2.0, 2.0, 2.5])), Some((2, 2.0)));
        assert_eq!(best_of(&v(&[3.0, f64::NAN, 2.5])), Some((3, 2.5)));
        assert_eq!(best_of(&v(&[f64::NAN, f64::INFINITY])), None);
        assert_eq!(best_of(&v(&[f64::NAN, 4.0])), Some((2, 4.0)));
    }
}
