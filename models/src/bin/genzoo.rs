//! genzoo: train, sample and evaluate the lecture's generative models on MNIST.

use autograd::{set_default_device, DType, Device, Tensor};
use clap::{builder::PossibleValuesParser, value_parser, Args, Parser, Subcommand, ValueEnum};
use models::program::run::{self, Outcome, TrainRequest};
use models::program::{eval::EvalContext, image};
use models::registry;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser)]
#[command(
    name = "genzoo",
    version,
    about = "Train, sample and evaluate the lecture's generative models on MNIST, with our own autodiff engine.",
    after_help = "Without --data every command uses the 10,000-digit MNIST subset compiled into the program."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every model, one line each, with its paper (and its presets below it).
    List,
    /// Train a model; writes samples, a loss plot, metrics and checkpoints to its run folder.
    Train(TrainArgs),
    /// Draw samples from a trained model, as a PNG grid or a .npy array.
    Sample(SampleArgs),
    /// Evaluate a trained model with its family's metrics (and real-vs-real baselines).
    Eval(EvalArgs),
    /// Complete test digits from a part of them, writing a PNG of originals beside completions:
    /// the autoregressive models draw the bottom half given the top half, pixel by pixel;
    /// Puzzle-GAN draws the whole digit and its mask from three patches.
    Complete(CompleteArgs),
    /// Score any array of images with the evaluation harness (FCD, KID, label histogram), e.g.
    /// samples from another framework: a .npy of N x 1 x 28 x 28 (or N x 28 x 28, N x 784)
    /// values in [0, 1] (float) or 0..255 (uint8).
    EvalSamples(EvalSamplesArgs),
    /// The GAN theory on a 1-D toy: trains a discriminator against a fixed generator, compares
    /// it with D* = p_data / (p_data + p_g), checks V(D*) = -log 4 + 2 JSD, and draws that and
    /// the two generator losses' slopes.
    GanTheory(GanTheoryArgs),
    /// The attribute domains made from the digits (plain, thin, thick, slanted left and right,
    /// coloured): a PNG with a row per domain over the same test digits, and each domain's
    /// share of digits its measurement puts in it.
    Domains(DomainsArgs),
    /// One self-contained HTML page over every run folder under RUNS_DIR: a table of the runs,
    /// then per run its model, settings, wall time, sample grids, loss curves, final metrics
    /// beside their baselines and every other picture (images inline, no script).
    Report(ReportArgs),
    /// Profile a few training steps of a model with the engine's per-op profiler: prints a
    /// table of ops (calls, forward and backward time, share, bytes made) and writes a Chrome
    /// trace (open it in Perfetto or chrome://tracing).
    Profile(ProfileArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// The folder whose run folders (at any depth) the page shows.
    #[arg(value_name = "RUNS_DIR", default_value = "runs")]
    runs: PathBuf,
    /// The page, FILE.html (an existing file is overwritten only if it is an HTML page).
    #[arg(long, value_name = "FILE", default_value = "report.html")]
    out: PathBuf,
}

#[derive(Args)]
struct ProfileArgs {
    /// The model to profile (see `genzoo list`), with its default config unless --preset or
    /// --set say otherwise.
    #[arg(value_parser = model_names())]
    model: String,
    /// Start from a named size of the model (as `genzoo train --preset`); its batch size too
    /// unless --batch-size says.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Set a key of the model's config, e.g. --set levels=256 (as `genzoo train --set`).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = run::parse_set)]
    set: Vec<(String, Value)>,
    /// Profiled training steps.
    #[arg(long, default_value_t = 10, value_parser = value_parser!(u64).range(1..=100_000))]
    steps: u64,
    /// Unprofiled training steps first.
    #[arg(long, default_value_t = 2, value_parser = value_parser!(u64).range(0..=1000))]
    warmup: u64,
    /// Batch size [default: the model's].
    #[arg(long, value_parser = value_parser!(u64).range(1..=65_536))]
    batch_size: Option<u64>,
    /// Seed of the weights, the batches and the steps' draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The trace, FILE.json (Chrome trace events).
    #[arg(long, value_name = "FILE", default_value = "profile.json")]
    out: PathBuf,
    /// Rows of the table (the ops with the most time).
    #[arg(long, default_value_t = 25, value_parser = value_parser!(u64).range(1..=10_000))]
    top: u64,
    /// A folder with the standard MNIST files instead of the embedded subset.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
}

#[derive(Args)]
struct DomainsArgs {
    /// The picture, FILE.png.
    #[arg(long, value_name = "FILE", default_value = "domains.png")]
    out: PathBuf,
    /// Test digits per row.
    #[arg(long, default_value_t = 12, value_parser = value_parser!(u64).range(1..=100))]
    n: u64,
    /// Seed of the coloured domain's tints and textures.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A folder with the standard MNIST files instead of the embedded subset.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct EvalSamplesArgs {
    /// The images, a .npy file.
    #[arg(value_name = "FILE.npy")]
    file: PathBuf,
    /// The intended class of each image (conditional models), a .npy of N integers in 0..9.
    #[arg(long, value_name = "L.npy")]
    labels: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Compare with the test split of this data folder instead of the embedded subset.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct GanTheoryArgs {
    /// The folder for optimal_discriminator.png and generator_loss_slopes.png.
    #[arg(long, value_name = "DIR", default_value = "runs/gan-theory")]
    out: PathBuf,
    /// Discriminator training steps.
    #[arg(long, default_value_t = 3000, value_parser = value_parser!(u64).range(1..=1_000_000))]
    steps: u64,
    /// Seed of the draws and the initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceArg {
    /// The CPU backend.
    Cpu,
    /// GPU 0 through our CUDA kernels.
    Cuda,
    /// The emulated CUDA device: our CUDA kernels run on the host (slow; for checking the CUDA
    /// path where there is no GPU).
    CudaEmulated,
    /// GPU 0 when one can be used (a CUDA driver, NVRTC and a device), else the CPU.
    Auto,
}

/// Makes the chosen device the default for every tensor the command makes (parameters, data,
/// noise), so the same model code runs there.
fn use_device(d: DeviceArg) -> Result<Device, String> {
    let usable = |device| Tensor::zeros(&[1], DType::F32).to_device(device).is_ok();
    let device = match d {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::Cuda(0),
        DeviceArg::CudaEmulated => Device::EmulatedCuda,
        DeviceArg::Auto if usable(Device::Cuda(0)) => {
            eprintln!(
                "--device auto: a GPU is here, running on {}",
                Device::Cuda(0)
            );
            Device::Cuda(0)
        }
        DeviceArg::Auto => Device::Cpu,
    };
    // a GPU that cannot be used is an error here, before anything is built
    Tensor::zeros(&[1], DType::F32)
        .to_device(device)
        .map_err(|e| format!("--device {}: {e}", device))?;
    set_default_device(device);
    Ok(device)
}

fn model_names() -> PossibleValuesParser {
    PossibleValuesParser::new(registry::names())
}

fn positive_finite(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be a finite number > 0, got {s}"))
    }
}

#[derive(Args)]
struct TrainArgs {
    /// The model to train (see `genzoo list`).
    #[arg(value_parser = model_names())]
    model: String,
    /// Epochs to train (in all, counting those of a resumed run) [default: the model's].
    #[arg(long, value_parser = value_parser!(u64).range(1..=1_000_000))]
    epochs: Option<u64>,
    /// Images per batch [default: the model's].
    #[arg(long, value_parser = value_parser!(u64).range(1..=65_536))]
    batch_size: Option<u64>,
    /// Learning rate [default: the model's].
    #[arg(long, value_parser = positive_finite, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Seed of the run: weights, data order, noise. Same seed, same run (on the CPU) [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// A folder with the standard MNIST / Fashion-MNIST files (gzip or not) instead of the embedded subset.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The run folder [default: runs/MODEL].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, with its settings.
    #[arg(long)]
    resume: bool,
    /// Set a key of the model's config, e.g. --set hidden=512 (the value is read as JSON, else as text).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = run::parse_set)]
    set: Vec<(String, Value)>,
    /// Print no progress bars.
    #[arg(long)]
    quiet: bool,
    /// Hold out the last N training digits to validate on after every epoch; the best epoch's
    /// weights go to best.safetensors [default: 1000 for likelihood and latent-variable models, 0
    /// for the others].
    #[arg(long, value_name = "N", value_parser = value_parser!(u64).range(0..=10_000_000))]
    val: Option<u64>,
    /// Start from a named size and schedule of the model, e.g. `paper` (its paper's network);
    /// `genzoo list` shows them. --epochs, --batch-size, --lr and --set still apply.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Stop when P epochs in a row have not lowered the validation loss.
    #[arg(long, value_name = "P", value_parser = value_parser!(u64).range(1..=1_000_000))]
    patience: Option<u64>,
    /// End the run after the step that passes M minutes, with a checkpoint to --resume from.
    #[arg(long, value_name = "M", value_parser = positive_finite)]
    max_minutes: Option<f64>,
    /// Train on at most N batches per epoch (tests and quick looks).
    #[arg(long, hide = true, value_name = "N", value_parser = value_parser!(u64).range(1..))]
    limit_batches: Option<u64>,
}

/// Which weights of a run folder a command reads.
#[derive(Args)]
struct PickArgs {
    /// Read the run's last checkpoint instead of its best epoch (best.safetensors, where the
    /// run has a validation loss).
    #[arg(long)]
    last: bool,
}

impl PickArgs {
    fn pick(&self) -> run::Pick {
        if self.last {
            run::Pick::Last
        } else {
            run::Pick::Best
        }
    }
}

#[derive(Args)]
struct SampleArgs {
    /// A run folder or a checkpoint file.
    #[arg(value_name = "RUN_OR_CHECKPOINT")]
    path: PathBuf,
    #[command(flatten)]
    pick: PickArgs,
    /// How many samples.
    #[arg(long, default_value_t = 64, value_parser = value_parser!(u64).range(1..=100_000))]
    n: u64,
    /// The output: FILE.png (a grid) or FILE.npy (N x C x H x W f32 in [0, 1]) [default: samples-N.png in the run folder].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The digit to draw (conditional models: cgan).
    #[arg(long, value_parser = value_parser!(u64).range(0..=9))]
    label: Option<u64>,
    /// What to draw, in words (text2image), e.g. "a thin two leaning left".
    #[arg(long, conflicts_with = "label")]
    caption: Option<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
}

#[derive(Args)]
struct EvalArgs {
    /// A run folder or a checkpoint file.
    #[arg(value_name = "RUN_OR_CHECKPOINT")]
    path: PathBuf,
    #[command(flatten)]
    pick: PickArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Samples drawn for the sample-quality metrics.
    #[arg(long, default_value_t = 1000, value_parser = value_parser!(u64).range(2..=50_000))]
    samples: u64,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Importance samples of the IWAE bound (latent-variable models) [default: the model's config]
    #[arg(long, value_name = "K", value_parser = value_parser!(u64).range(1..=100_000))]
    iwae_k: Option<u64>,
    /// Evaluate on the test split of this data folder instead of the run's data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
}

#[derive(Args)]
struct CompleteArgs {
    /// A run folder or a checkpoint file (of fvsbn, nade, pixelcnn, ..., puzzle-gan).
    #[arg(value_name = "RUN_OR_CHECKPOINT")]
    path: PathBuf,
    #[command(flatten)]
    pick: PickArgs,
    /// The PNG to write [default: completions.png in the run folder].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Test images to complete (the first of each class in turn), one per row.
    #[arg(long, default_value_t = 10, value_parser = value_parser!(u64).range(1..=1000))]
    n: u64,
    /// Completions drawn per image, side by side.
    #[arg(long, default_value_t = 5, value_parser = value_parser!(u64).range(1..=64))]
    per_image: u64,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Take the test images from this data folder instead of the run's data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// The first error writing to standard output other than a closed pipe (a full disk, say),
/// reported when the command ends.
static STDOUT_ERROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `println!` that never panics: a reader that has gone away (`genzoo list | head`) is not an
/// error of ours, so the line is dropped; any other failure (`> /dev/full`) is kept in
/// [`STDOUT_ERROR`] and makes the command fail with it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                let _ = STDOUT_ERROR.set(e.to_string());
            }
        }
    }};
}

fn list() {
    let width = registry::ENTRIES
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0);
    for e in registry::ENTRIES {
        say!(
            "{:width$}  {:15}  {}  [{}]",
            e.name,
            e.family.as_str(),
            e.title,
            e.paper
        );
        for p in e.presets {
            say!(
                "{:width$}    --preset {}: {} ({} epochs, batch {})",
                "",
                p.name,
                p.about,
                p.epochs,
                p.batch_size
            );
        }
    }
}

fn train(a: TrainArgs) -> Result<ExitCode, String> {
    use_device(a.device)?;
    // Ctrl-C or SIGTERM: finish the step, checkpoint, exit; a second one exits at once.
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted (Ctrl-C or SIGTERM): finishing this step and writing a checkpoint \
             (again to quit now)"
        );
    });
    let req = TrainRequest {
        model: a.model,
        epochs: a.epochs.map(|v| v as usize),
        batch_size: a.batch_size.map(|v| v as usize),
        lr: a.lr,
        seed: a.seed,
        data: a.data,
        out: a.out,
        resume: a.resume,
        set: a.set,
        limit_batches: a.limit_batches.map(|v| v as usize),
        val: a.val.map(|v| v as usize),
        preset: a.preset,
        patience: a.patience.map(|v| v as usize),
        max_minutes: a.max_minutes,
        progress: !a.quiet,
        verbose: true,
    };
    let t0 = std::time::Instant::now();
    match run::train(&req, &STOP).map_err(|e| e.to_string())? {
        Outcome::Finished { dir, epochs, step } => {
            eprintln!(
                "done: {epochs} epochs, {step} steps in {:.1} s; run folder {}",
                t0.elapsed().as_secs_f64(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::EarlyStopped {
            dir,
            epochs,
            step,
            best_epoch,
        } => {
            eprintln!(
                "stopped early: {epochs} epochs, {step} steps in {:.1} s, the validation loss has not improved since epoch {best_epoch} (its weights: {}); run folder {}",
                t0.elapsed().as_secs_f64(),
                dir.join(run::BEST).display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted { dir, step } => {
            eprintln!(
                "interrupted at step {step}: checkpoint written to {}; continue with --resume --out {}",
                dir.join(run::CHECKPOINT).display(),
                dir.display()
            );
            Ok(ExitCode::from(130))
        }
        Outcome::OutOfTime { dir, step } => {
            eprintln!(
                "--max-minutes reached at step {step}: checkpoint written to {}; continue with --resume --out {}",
                dir.join(run::CHECKPOINT).display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The extension of an output file (one of `allowed`, lower case), refused with `what` named
/// otherwise, so a picture never lands in a file named as something else. With the run's own
/// files (.safetensors, .json, .jsonl) never allowed, no command writes over a checkpoint,
/// weights, config or metrics.
fn output_kind(out: &Path, allowed: &[&str], what: &str) -> Result<String, String> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if !allowed.contains(&ext.as_str()) {
        return Err(format!(
            "--out {}: the file name must end in {what}",
            out.display()
        ));
    }
    Ok(ext)
}

fn sample(a: SampleArgs) -> Result<ExitCode, String> {
    use_device(a.device)?;
    let mut loaded = run::load(&a.path, a.pick.pick()).map_err(|e| e.to_string())?;
    let n = a.n as usize;
    let out = a.out.unwrap_or_else(|| {
        loaded
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("samples-{n}.png"))
    });
    let ext = output_kind(&out, &["png", "npy"], ".png (a grid) or .npy (an array)")?;
    let mut rng = autograd::Rng::new(a.seed);
    // a model that translates digits (cycle-gan) samples from the run's test digits; the
    // others do not need them, so a run whose data folder has gone still samples
    let data = run::data_of(&loaded.meta, None).ok();
    let model = loaded.model.as_mut();
    let mut parts = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(100);
        let s = autograd::no_grad(|| match (a.label, &a.caption) {
            (Some(label), _) => model.sample_label(k, label as usize, &mut rng),
            (None, Some(caption)) => model.sample_caption(k, caption, &mut rng),
            (None, None) => match &data {
                Some(d) => model.sample_given(n - left, k, d, &mut rng),
                None => model.sample(k, &mut rng),
            },
        })
        .map_err(|e| e.to_string())?;
        models::program::eval::check_samples(model.name(), &s, k).map_err(|e| e.to_string())?;
        parts.push(s);
        left -= k;
    }
    let s = autograd::Tensor::concat(&parts, 0).map_err(|e| e.to_string())?;
    let bytes = if ext == "png" {
        image::grid_png(&s, None, 2)
    } else {
        image::npy_bytes(&s.to_vec_f32(), s.shape())
    }
    .map_err(|e| e.to_string())?;
    models::program::checkpoint::write_atomic(&out, &bytes).map_err(|e| e.to_string())?;
    let of_digit = match (a.label, &a.caption) {
        (Some(l), _) => format!(" (digit {l})"),
        (None, Some(c)) => format!(" ({c:?})"),
        (None, None) => String::new(),
    };
    eprintln!(
        "{n} samples of {}{of_digit} -> {}",
        loaded.entry.name,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn eval(a: EvalArgs) -> Result<ExitCode, String> {
    use_device(a.device)?;
    let mut loaded = run::load(&a.path, a.pick.pick()).map_err(|e| e.to_string())?;
    let data = run::data_of(&loaded.meta, a.data.as_deref()).map_err(|e| e.to_string())?;
    let mut ctx = EvalContext::new(&data, a.seed, a.samples as usize);
    ctx.iwae_k = a.iwae_k.map(|k| k as usize);
    let metrics = loaded.model.eval(&mut ctx).map_err(|e| e.to_string())?;
    let m = &loaded.meta;
    let about = json!({
        "model": m.model,
        "checkpoint": loaded.path.display().to_string(),
        "step": m.step,
        "epoch": m.epoch,
        "data": data.source,
    });
    let title = format!(
        "{} ({}), step {}, epoch {}, on {} ({} test images)",
        m.model,
        loaded.path.display(),
        m.step,
        m.epoch,
        data.source,
        data.test.len()
    );
    print_metrics(&metrics, about, &title, a.json);
    Ok(ExitCode::SUCCESS)
}

/// `metrics` as one JSON object (`about` plus metrics, baselines, details) or as a table
/// under `title`.
fn print_metrics(
    metrics: &[models::program::eval::Metric],
    mut about: Value,
    title: &str,
    as_json: bool,
) {
    if as_json {
        let obj = |f: &dyn Fn(&models::program::eval::Metric) -> Option<Value>| -> Value {
            Value::Object(
                metrics
                    .iter()
                    .filter_map(|x| f(x).map(|v| (x.name.clone(), v)))
                    .collect(),
            )
        };
        about["metrics"] = obj(&|x| Some(json!(x.value)));
        about["baseline"] = obj(&|x| x.baseline.map(|b| json!(b)));
        about["details"] = obj(&|x| x.detail.clone().map(Value::String));
        say!("{about}");
        return;
    }
    say!("{title}");
    let w = metrics
        .iter()
        .map(|x| x.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    say!("{:w$}  {:>12}  {:>12}", "metric", "value", "real-vs-real");
    for x in metrics {
        let base = x.baseline.map_or("-".to_string(), |b| format!("{b:.6}"));
        say!("{:w$}  {:>12.6}  {:>12}", x.name, x.value, base);
    }
    for x in metrics {
        if let Some(d) = &x.detail {
            say!("{}: {d}", x.name);
        }
    }
}

/// The largest .npy `eval-samples` reads: 100,000 images of 784 f64 values, with room to spare.
const NPY_LIMIT: u64 = 1 << 30;

fn read_npy(path: &Path) -> Result<image::NpyArray, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let len = std::fs::metadata(path).map_err(cannot)?.len();
    if len > NPY_LIMIT {
        return Err(format!(
            "{}: {len} bytes is more than the {NPY_LIMIT} an array of images to score needs",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    image::npy_read(&bytes, &path.display().to_string()).map_err(|e| e.to_string())
}

fn eval_samples(a: EvalSamplesArgs) -> Result<ExitCode, String> {
    let arr = read_npy(&a.file)?;
    let name = a.file.display().to_string();
    let n = match arr.shape.as_slice() {
        [n, 1, 28, 28] | [n, 28, 28] | [n, 784] => *n,
        s => {
            return Err(format!(
                "{name}: shape {s:?}; expected N x 1 x 28 x 28, N x 28 x 28 or N x 784"
            ))
        }
    };
    let (lo, hi) = arr
        .values
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    if arr.values.iter().any(|v| !v.is_finite()) {
        return Err(format!("{name}: holds values that are not finite"));
    }
    // uint8-like 0..255 images are scaled to [0, 1]; anything else must already be there
    let scale = if hi > 1.0 && lo >= 0.0 && hi <= 255.0 {
        1.0 / 255.0
    } else {
        1.0
    };
    if lo < 0.0 || hi * scale > 1.0 {
        return Err(format!(
            "{name}: values span [{lo}, {hi}]; images must be in [0, 1] (or 0..255); a tanh generator's [-1, 1] output is (x + 1) / 2"
        ));
    }
    let images: Vec<f32> = arr.values.iter().map(|&v| (v * scale) as f32).collect();
    let x = autograd::Tensor::from_vec(images, &[n, 1, 28, 28]).map_err(|e| e.to_string())?;
    let labels = match &a.labels {
        None => None,
        Some(p) => {
            let l = read_npy(p)?;
            if l.shape != [n] {
                return Err(format!(
                    "{}: shape {:?}, expected ({n},): one label per image",
                    p.display(),
                    l.shape
                ));
            }
            if l.values
                .iter()
                .any(|&v| v.fract() != 0.0 || !(0.0..=9.0).contains(&v))
            {
                return Err(format!("{}: labels must be integers in 0..9", p.display()));
            }
            Some(l.values.iter().map(|&v| v as usize).collect::<Vec<usize>>())
        }
    };
    let data = models::program::data::load(a.data.as_deref()).map_err(|e| e.to_string())?;
    let mut ctx = EvalContext::new(&data, 0, 0);
    let metrics = ctx
        .sample_metrics(&x, models::program::data::Pixels::Unit, labels.as_deref())
        .map_err(|e| e.to_string())?;
    let about = json!({"file": name, "images": n, "data": data.source});
    let title = format!(
        "{name}: {n} images, against {} ({} test images)",
        data.source,
        data.test.len()
    );
    print_metrics(&metrics, about, &title, a.json);
    Ok(ExitCode::SUCCESS)
}

fn domains(a: DomainsArgs) -> Result<ExitCode, String> {
    use models::domains::sets::{Domain, DomainSet};
    output_kind(&a.out, &["png"], ".png")?;
    let data = models::program::data::load(a.data.as_deref()).map_err(|e| e.to_string())?;
    let test = &data.test;
    if (test.rows, test.cols) != (28, 28) {
        return Err(format!(
            "the domains are made from 28 x 28 digits, the data has {} x {}",
            test.rows, test.cols
        ));
    }
    let n = (a.n as usize).min(test.len());
    let (images, labels) = (&test.images[..n * 784], &test.labels[..n]);
    let mut rgb = Vec::with_capacity(Domain::ALL.len() * n * 3 * 784);
    for domain in Domain::ALL {
        let set = DomainSet::make(domain, images, labels, a.seed);
        for x in set.images.chunks(domain.channels() * 784) {
            // grey digits on three equal planes, beside the coloured ones
            for ch in 0..3 {
                let plane = if domain.channels() == 3 { ch } else { 0 };
                rgb.extend_from_slice(&x[plane * 784..(plane + 1) * 784]);
            }
        }
        let reached = set
            .in_domain()
            .map(|f| format!("{:.1}% of them measured in it", 100.0 * f))
            .unwrap_or_else(|| "not measured".into());
        say!("{:<14} {reached}", domain.name());
    }
    let grid = Tensor::from_vec(rgb, &[Domain::ALL.len() * n, 3, 28, 28])
        .and_then(|t| image::grid_png(&t, Some(n), 2))
        .map_err(|e| e.to_string())?;
    models::program::checkpoint::write_atomic(&a.out, &grid).map_err(|e| e.to_string())?;
    eprintln!(
        "{} domains of {n} test digits, a row each -> {}",
        Domain::ALL.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn gan_theory(a: GanTheoryArgs) -> Result<ExitCode, String> {
    use models::adversarial::toy;
    let err = |e: autograd::Error| e.to_string();
    let t = toy::Toy::default();
    let d = toy::train_discriminator(&t, a.steps as usize, &mut autograd::Rng::new(a.seed))
        .map_err(err)?;
    let gap = toy::max_gap(&t, &d).map_err(err)?;
    let (v, jsd) = (t.value_at_optimum(), t.jsd());
    std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    let write = |file: &str, bytes: Vec<u8>| -> Result<(), String> {
        models::program::checkpoint::write_atomic(&a.out.join(file), &bytes).map_err(err)
    };
    write(
        "optimal_discriminator.png",
        toy::optimal_discriminator_png(&t, &d).map_err(err)?,
    )?;
    write(
        "generator_loss_slopes.png",
        toy::generator_loss_slopes_png().map_err(err)?,
    )?;
    say!(
        "p_data = (N(-2, 0.5^2) + N(2, 0.5^2)) / 2, p_g = N(0.5, 1), D trained {} steps",
        a.steps
    );
    say!(
        "max |D - D*| where p_data + p_g >= {}: {gap:.4}",
        toy::SUPPORT_DENSITY
    );
    say!(
        "V(D*) = {v:.6} nats; -log 4 + 2 JSD = {:.6} (JSD = {jsd:.6} nats)",
        -(4.0f64).ln() + 2.0 * jsd
    );
    say!("pictures in {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn complete(a: CompleteArgs) -> Result<ExitCode, String> {
    use_device(a.device)?;
    let mut loaded = run::load(&a.path, a.pick.pick()).map_err(|e| e.to_string())?;
    let data = run::data_of(&loaded.meta, a.data.as_deref()).map_err(|e| e.to_string())?;
    let out = a.out.unwrap_or_else(|| {
        loaded
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("completions.png")
    });
    output_kind(&out, &["png"], ".png")?;
    let (n, per_image) = (a.n as usize, a.per_image as usize);
    let model = loaded.model.as_mut();
    let (grid, cols, columns) = match model
        .completion_picture(&data, n, per_image, a.seed)
        .map_err(|e| e.to_string())?
    {
        Some(picture) => picture,
        None => (
            models::autoregressive::completion_grid(model, &data, n, per_image, a.seed)
                .map_err(|e| e.to_string())?,
            2 + per_image,
            format!("original, top half, {per_image} completions"),
        ),
    };
    let png = image::grid_png(&grid, Some(cols), 2).map_err(|e| e.to_string())?;
    models::program::checkpoint::write_atomic(&out, &png).map_err(|e| e.to_string())?;
    eprintln!(
        "{} test images of {}: {columns} per row -> {}",
        grid.shape()[0] / cols,
        loaded.entry.name,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn report(a: ReportArgs) -> Result<ExitCode, String> {
    use models::program::report;
    report::check_output(&a.out).map_err(|e| e.to_string())?;
    let html = report::report(&a.runs).map_err(|e| e.to_string())?;
    let runs = html.matches("<section").count();
    models::program::checkpoint::write_atomic(&a.out, html.as_bytes())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} ({runs} runs, {:.1} MB)",
        a.out.display(),
        html.len() as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

fn profile(a: ProfileArgs) -> Result<ExitCode, String> {
    use models::program::profile::{self, ProfileRequest};
    output_kind(&a.out, &["json"], ".json")?;
    // a run's own config is never overwritten by a trace
    if a.out.file_name().is_some_and(|n| n == run::CONFIG) && a.out.exists() {
        return Err(format!(
            "--out {}: a run's config is there; choose another file name",
            a.out.display()
        ));
    }
    let device = use_device(a.device)?;
    let req = ProfileRequest {
        model: a.model,
        steps: a.steps as usize,
        warmup: a.warmup as usize,
        batch_size: a.batch_size.map(|b| b as usize),
        seed: a.seed,
        data: a.data,
        preset: a.preset,
        set: a.set,
    };
    let p = profile::profile(&req).map_err(|e| e.to_string())?;
    let rows = p.rows();
    say!(
        "{} on {device}: {} profiled steps of batch {} after {} warm-up, {:.1} ms a step",
        req.model,
        p.steps,
        p.batch_size,
        req.warmup,
        p.mean_step().as_secs_f64() * 1e3
    );
    say!(
        "{}",
        autograd::profiler::format_table(&rows, a.top as usize)
    );
    profile::write_trace(&a.out, &p.spans).map_err(|e| e.to_string())?;
    say!(
        "trace of {} spans: {} (open it in https://ui.perfetto.dev or chrome://tracing)",
        p.spans.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run::host_memory_budget() {
        Ok(limit) => {
            autograd::set_host_memory_limit(limit);
        }
        Err(e) => {
            eprintln!("genzoo: error: {e}");
            return ExitCode::FAILURE;
        }
    }
    // all the engine's work runs on its thread pool, so that parallel kernels do not pay a
    // hand-over from this thread to the pool on every op
    let result = autograd::on_pool(|| match cli.cmd {
        Cmd::List => {
            list();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Train(a) => train(a),
        Cmd::Sample(a) => sample(a),
        Cmd::Eval(a) => eval(a),
        Cmd::Complete(a) => complete(a),
        Cmd::EvalSamples(a) => eval_samples(a),
        Cmd::GanTheory(a) => gan_theory(a),
        Cmd::Domains(a) => domains(a),
        Cmd::Report(a) => report(a),
        Cmd::Profile(a) => profile(a),
    });
    let result = match STDOUT_ERROR.get() {
        Some(e) => Err(format!("cannot write to standard output: {e}")),
        None => result,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("genzoo: error: {e}");
            ExitCode::FAILURE
        }
    }
}
