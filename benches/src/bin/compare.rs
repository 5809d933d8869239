//! Times every case of the benchmark contract and writes one JSON object per line
//! (see ../shared/bench/README.md), so two engines' files join on (group, name):
//!
//!     cargo run --release -p benches --bin compare -- --device cpu --out ours.jsonl \
//!         [--filter SUBSTR] [--reps N] [--include-gpu-only]

use benches::{all_cases, cpu_name, median_ms};
use std::io::Write;

struct Args {
    device: String,
    out: Option<String>,
    filter: Option<String>,
    reps: usize,
    include_gpu_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: "cpu".into(),
        out: None,
        filter: None,
        reps: 10,
        include_gpu_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--device" => args.device = value("--device")?,
            "--out" => args.out = Some(value("--out")?),
            "--filter" => args.filter = Some(value("--filter")?),
            "--reps" => args.reps = value("--reps")?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--include-gpu-only" => args.include_gpu_only = true,
            "-h" | "--help" => {
                return Err("usage: compare --device cpu|cuda|cuda-emulated [--out FILE.jsonl] [--filter SUBSTR] [--reps N] [--include-gpu-only]".into())
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    Ok(args)
}

fn main() {
    // the engine's work runs on its own thread pool, as in genzoo (see kernels::cpu::on_pool)
    if let Err(e) = kernels::cpu::on_pool(run) {
        eprintln!("compare: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let threads = rayon::current_num_threads();
    // the engine on the CPU; on CUDA, our kernels on device buffers (the operator cases,
    // gpu_only ones included) and the model steps through the engine, every tensor made on
    // GPU 0 (the step ends by reading its losses, which waits for the GPU)
    let (cases, suite, device_name, include_gpu_only) = match args.device.as_str() {
        "cpu" => (
            all_cases(20261127).map_err(|e| e.to_string())?,
            "genzoo-autograd",
            cpu_name(),
            args.include_gpu_only,
        ),
        "cuda" => {
            let gpu = kernels::cuda::Gpu::open(0).map_err(|e| format!("--device cuda: {e}"))?;
            let name = gpu.name();
            let mut cases = benches::gpu::gpu_cases(gpu).map_err(|e| e.to_string())?;
            autograd::set_default_device(autograd::Device::Cuda(0));
            let mut rng = autograd::Rng::new(20261127);
            cases.extend(
                benches::model_steps::model_step_cases(&mut rng).map_err(|e| e.to_string())?,
            );
            (cases, "genzoo-cuda", name, true)
        }
        // the model steps on the emulated device: slow, for checking that they run there
        "cuda-emulated" => {
            autograd::set_default_device(autograd::Device::EmulatedCuda);
            let mut rng = autograd::Rng::new(20261127);
            let cases =
                benches::model_steps::model_step_cases(&mut rng).map_err(|e| e.to_string())?;
            (
                cases,
                "genzoo-cuda-emulated",
                "emulated CUDA device".into(),
                true,
            )
        }
        other => return Err(format!("--device {other:?}: cpu, cuda or cuda-emulated")),
    };
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?),
        None => Box::new(std::io::stdout()),
    };
    for mut case in cases {
        let key = format!("{}/{}", case.group, case.name);
        if args
            .filter
            .as_ref()
            .is_some_and(|f| !key.contains(f.as_str()))
            || (case.gpu_only && !include_gpu_only)
        {
            continue;
        }
        let warmup = 3;
        let fwd_ms = match case.fwd.as_mut() {
            Some(f) => {
                Some(median_ms(f.as_mut(), warmup, args.reps).map_err(|e| format!("{key}: {e}"))?)
            }
            None => None,
        };
        let fwdbwd_ms = median_ms(case.fwdbwd.as_mut(), warmup, args.reps)
            .map_err(|e| format!("{key}: {e}"))?;
        let line = serde_json::json!({
            "suite": suite,
            "device": args.device,
            "device_name": device_name,
            "threads": threads,
            "group": case.group,
            "name": case.name,
            "fwd_ms": fwd_ms,
            "fwdbwd_ms": fwdbwd_ms,
            "flops": case.flops,
        });
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
        eprintln!("{key}: fwd {fwd_ms:?} ms, fwd+bwd {fwdbwd_ms:.4} ms");
    }
    Ok(())
}
