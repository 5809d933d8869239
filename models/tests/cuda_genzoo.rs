//! `genzoo` on a CUDA device, run as a user would: the same model code trains, samples and
//! evaluates there with the CPU's losses. On the emulated device on every machine (a few steps:
//! the emulation is slow), and on GPU 0 when there is one (REQUIRE_GPU=1 makes a missing GPU
//! fail).

mod common;

use common::{genzoo, TempDir};

/// The devices to check, as `--device` values (a line once when there is no GPU).
fn devices() -> Vec<&'static str> {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    let mut devices = vec!["cuda-emulated"];
    let probe = autograd::Tensor::zeros(&[1], autograd::DType::F32);
    match probe.to_device(autograd::Device::Cuda(0)) {
        Ok(_) => devices.push("cuda"),
        Err(e) => {
            assert!(
                std::env::var("REQUIRE_GPU").as_deref() != Ok("1"),
                "REQUIRE_GPU=1 but cuda:0 cannot be used: {e}"
            );
            SKIPPED.call_once(|| eprintln!("no GPU ({e}): the emulated device only"));
        }
    }
    devices
}

/// Every record of `kind` ("step" or "epoch") in a run's metrics.jsonl, as its `field`
/// ("losses" or "metrics") sorted by name.
fn records(run: &std::path::Path, kind: &str, field: &str) -> Vec<Vec<(String, f64)>> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == kind)
        .map(|v| {
            let mut values: Vec<(String, f64)> = v[field]
                .as_object()
                .expect(field)
                .iter()
                .map(|(k, x)| (k.clone(), x.as_f64().expect("a number")))
                .collect();
            values.sort_by(|a, b| a.0.cmp(&b.0));
            values
        })
        .collect()
}

/// Every step record's losses in a run's metrics.jsonl.
fn step_losses(run: &std::path::Path) -> Vec<Vec<(String, f64)>> {
    records(run, "step", "losses")
}

/// `got` and `want` name the same values, each within `tol` relative (absolute below 1).
fn assert_agree(got: &[Vec<(String, f64)>], want: &[Vec<(String, f64)>], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: records");
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        assert_eq!(g.0, w.0, "{what}");
        assert!(
            (g.1 - w.1).abs() <= tol * w.1.abs().max(1.0),
            "{what}: {} {} vs the CPU's {}",
            g.0,
            g.1,
            w.1
        );
    }
}

fn train(dir: &TempDir, name: &str, model: &str, device: &str, extra: &[&str]) {
    let out = dir.join(name);
    let mut args = vec![
        "train",
        model,
        "--device",
        device,
        "--epochs",
        "1",
        "--limit-batches",
        "2",
        "--quiet",
        "--out",
    ];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    let o = genzoo(&args);
    assert!(
        o.status.success(),
        "genzoo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_vae_trains_samples_and_evaluates_on_the_device_with_the_cpus_losses() {
    let dir = TempDir::new("cuda-genzoo-vae");
    let small = ["--batch-size", "16", "--val", "32"];
    train(&dir, "cpu", "vae", "cpu", &small);
    let want = step_losses(&dir.join("cpu"));
    assert_eq!(want.len(), 2);
    for device in devices() {
        train(&dir, device, "vae", device, &small);
        assert_agree(&step_losses(&dir.join(device)), &want, 1e-5, device);
        // sampling from the run on the device writes a grid
        let png = dir.join(&format!("{device}.png"));
        let run = dir.join(device);
        let o = genzoo(&[
            "sample",
            run.to_str().unwrap(),
            "--device",
            device,
            "--n",
            "4",
            "--out",
            png.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(png.exists());
    }
}

/// A model of the two other families (autoregressive: FVSBN; adversarial: the MLP GAN, whose
/// epoch samples are scored by the harness's classifier on the device) trains there with the
/// CPU's step losses and epoch metrics.
#[test]
fn an_autoregressive_model_and_a_gan_train_on_the_device_with_the_cpus_figures() {
    let dir = TempDir::new("cuda-genzoo-families");
    let small = ["--batch-size", "16"];
    for model in ["fvsbn", "gan"] {
        let cpu = format!("{model}-cpu");
        train(&dir, &cpu, model, "cpu", &small);
        let (losses, metrics) = (
            step_losses(&dir.join(&cpu)),
            records(&dir.join(&cpu), "epoch", "metrics"),
        );
        assert_eq!((losses.len(), metrics.len()), (2, 1), "{model}");
        for device in devices() {
            let run = dir.join(&format!("{model}-{device}"));
            train(&dir, &format!("{model}-{device}"), model, device, &small);
            let what = format!("{model} on {device}");
            assert_agree(&step_losses(&run), &losses, 1e-5, &what);
            assert_agree(&records(&run, "epoch", "metrics"), &metrics, 1e-4, &what);
        }
    }
}

#[test]
fn a_missing_gpu_is_a_clear_error() {
    if devices().contains(&"cuda") {
        return; // there is one
    }
    let dir = TempDir::new("cuda-genzoo-missing");
    let out = dir.join("run");
    let o = genzoo(&[
        "train",
        "vae",
        "--device",
        "cuda",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot use cuda:0"), "{err}");
}
