//! `genzoo` on a CUDA device, run as a user would: the same model code trains, samples and
//! evaluates there with the CPU's losses. On the emulated device on every machine (a few steps:
//! the emulation is slow), and on GPU 0 when there is one (REQUIRE_GPU=1 makes a missing GPU
//! fail).

mod common;

use common::{genzoo, TempDir};

/// The devices to check, as `--device` values.
fn devices() -> Vec<&'static str> {
    let mut devices = vec!["cuda-emulated"];
    let probe = autograd::Tensor::zeros(&[1], autograd::DType::F32);
    match probe.to_device(autograd::Device::Cuda(0)) {
        Ok(_) => devices.push("cuda"),
        Err(e) => assert!(
            std::env::var("REQUIRE_GPU").as_deref() != Ok("1"),
            "REQUIRE_GPU=1 but cuda:0 cannot be used: {e}"
        ),
    }
    devices
}

/// Every step record's losses in a run's metrics.jsonl.
fn step_losses(run: &std::path::Path) -> Vec<Vec<(String, f64)>> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "step")
        .map(|v| {
            let mut losses: Vec<(String, f64)> = v["losses"]
                .as_object()
                .expect("losses")
                .iter()
                .map(|(k, x)| (k.clone(), x.as_f64().expect("a number")))
                .collect();
            losses.sort_by(|a, b| a.0.cmp(&b.0));
            losses
        })
        .collect()
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
        let got = step_losses(&dir.join(device));
        assert_eq!(got.len(), want.len(), "{device}");
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert_eq!(g.0, w.0);
            assert!(
                (g.1 - w.1).abs() <= 1e-5 * w.1.abs().max(1.0),
                "{device}: {} {} vs the CPU's {}",
                g.0,
                g.1,
                w.1
            );
        }
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
