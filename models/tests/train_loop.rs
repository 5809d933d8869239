//! The training loop through the library: resume is bit-identical (after an epoch and after a
//! Ctrl-C in the middle of one), a NaN loss stops training naming the step and keeps the last
//! good checkpoint, and a generative model's run folder gets its sample grids and plots.

mod common;

use common::{tensor_bits, TempDir, PIXELWISE};
use models::program::run::{self, Outcome, TrainRequest};
use std::sync::atomic::AtomicBool;

fn request(model: &str, dir: &std::path::Path, epochs: usize) -> TrainRequest {
    TrainRequest {
        model: model.into(),
        epochs: Some(epochs),
        batch_size: Some(32),
        seed: Some(11),
        out: Some(dir.to_path_buf()),
        limit_batches: Some(3),
        ..Default::default()
    }
}

/// Runs `f` with the engine on two threads: the reductions (the conv2d weight gradient's sum
/// over samples included) add their partial sums in a fixed order, so multi-threaded runs are
/// repeatable bit for bit; two threads make the test mean the same on any machine.
fn two_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn resumed_runs_end_bit_for_bit_where_uninterrupted_ones_do() {
    two_threads(resume_is_bit_identical)
}

/// A GAN's checkpoint holds both networks (BatchNorm buffers included), both optimizers and the
/// WGAN's critic-step count: a run resumed after an epoch ends where the straight run does,
/// generator steps (every fifth critic step, 3 batches an epoch) included.
#[test]
fn a_resumed_gan_run_is_bit_identical() {
    two_threads(|| {
        let never = AtomicBool::new(false);
        for model in ["wgan-gp", "dcgan"] {
            let straight = TempDir::new(&format!("gan-straight-{model}"));
            run::train(&request(model, straight.path(), 2), &never).unwrap();
            let split = TempDir::new(&format!("gan-split-{model}"));
            run::train(&request(model, split.path(), 1), &never).unwrap();
            let mut again = request(model, split.path(), 2);
            again.resume = true;
            run::train(&again, &never).unwrap();
            let reference = tensor_bits(&straight.join(run::CHECKPOINT));
            for name in [
                "generator.bn0.running_var",
                "optimizer_d.discriminator.fc.weight.exp_avg",
            ] {
                assert!(reference.iter().any(|(n, _)| n == name), "{model}: {name}");
            }
            assert_eq!(
                tensor_bits(&split.join(run::CHECKPOINT)),
                reference,
                "{model}"
            );
        }
    })
}

fn resume_is_bit_identical() {
    let never = AtomicBool::new(false);
    // 2 epochs straight
    let straight = TempDir::new("resume-straight");
    let out = run::train(&request("classifier", straight.path(), 2), &never).unwrap();
    assert!(
        matches!(
            out,
            Outcome::Finished {
                epochs: 2,
                step: 6,
                ..
            }
        ),
        "{out:?}"
    );
    // 1 epoch, then resume to 2
    let split = TempDir::new("resume-split");
    run::train(&request("classifier", split.path(), 1), &never).unwrap();
    let mut again = request("classifier", split.path(), 2);
    again.resume = true;
    run::train(&again, &never).unwrap();
    // Ctrl-C after the first step, then resume: the stop flag is checked after every step
    let stopped = TempDir::new("resume-ctrlc");
    let stop = AtomicBool::new(true);
    let out = run::train(&request("classifier", stopped.path(), 2), &stop).unwrap();
    assert!(
        matches!(out, Outcome::Interrupted { step: 1, .. }),
        "{out:?}"
    );
    let ck = models::program::checkpoint::load(&stopped.join(run::CHECKPOINT)).unwrap();
    assert_eq!((ck.meta.step, ck.meta.epoch, ck.meta.batch), (1, 0, 1));
    let mut cont = request("classifier", stopped.path(), 2);
    cont.resume = true;
    run::train(&cont, &never).unwrap();

    let reference = tensor_bits(&straight.join(run::CHECKPOINT));
    assert!(reference
        .iter()
        .any(|(n, _)| n == "optimizer.fc3.weight.exp_avg_sq"));
    assert_eq!(
        tensor_bits(&split.join(run::CHECKPOINT)),
        reference,
        "resumed after epoch 1"
    );
    assert_eq!(
        tensor_bits(&stopped.join(run::CHECKPOINT)),
        reference,
        "resumed after a Ctrl-C"
    );
    // the whole weights file, metadata (step, generator state) included
    let weights = std::fs::read(straight.join(run::WEIGHTS)).unwrap();
    assert_eq!(std::fs::read(split.join(run::WEIGHTS)).unwrap(), weights);
    assert_eq!(std::fs::read(stopped.join(run::WEIGHTS)).unwrap(), weights);
    // the metrics log of a resumed run holds each step once
    let log = std::fs::read_to_string(stopped.join(run::METRICS)).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "step")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
    // a different seed is a different run
    let other = TempDir::new("resume-other");
    let mut r = request("classifier", other.path(), 1);
    r.seed = Some(12);
    run::train(&r, &never).unwrap();
    assert_ne!(
        tensor_bits(&other.join(run::CHECKPOINT)),
        tensor_bits(&split.join(run::CHECKPOINT))
    );
}

#[test]
fn resume_refuses_changed_settings_and_missing_checkpoints() {
    let never = AtomicBool::new(false);
    let dir = TempDir::new("resume-settings");
    let mut r = request("classifier", dir.path(), 1);
    r.resume = true;
    let e = run::train(&r, &never).unwrap_err().to_string();
    assert!(
        e.contains("checkpoint.safetensors") && e.contains("--resume"),
        "{e}"
    );
    run::train(&request("classifier", dir.path(), 1), &never).unwrap();
    // starting over in a folder that holds a run
    let e = run::train(&request("classifier", dir.path(), 1), &never)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already") && e.contains("--resume"), "{e}");
    let mut lr = request("classifier", dir.path(), 2);
    lr.resume = true;
    lr.lr = Some(0.5);
    let e = run::train(&lr, &never).unwrap_err().to_string();
    assert!(e.contains("--resume keeps"), "{e}");
    let mut bs = request("classifier", dir.path(), 2);
    bs.resume = true;
    bs.batch_size = Some(7);
    let e = run::train(&bs, &never).unwrap_err().to_string();
    assert!(e.contains("--batch-size") && e.contains("32"), "{e}");
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let never = AtomicBool::new(false);
    let dir = TempDir::new("nan");
    let mut r = request("pixelwise", dir.path(), 3);
    r.limit_batches = Some(2);
    r.set = vec![("nan_at_step".into(), serde_json::json!(3))];
    let e = run::train_entry(&PIXELWISE, &r, &never)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("NaN") && e.contains("step 3") && e.contains("epoch 2"),
        "{e}"
    );
    assert!(
        e.contains("last good checkpoint") && e.contains("(step 2)"),
        "{e}"
    );
    let ck = models::program::checkpoint::load(&dir.join(run::CHECKPOINT)).unwrap();
    assert_eq!((ck.meta.step, ck.meta.epoch), (2, 1));
    // a NaN before any checkpoint says so
    let early = TempDir::new("nan-early");
    let mut r = request("pixelwise", early.path(), 1);
    r.set = vec![("nan_at_step".into(), serde_json::json!(1))];
    let e = run::train_entry(&PIXELWISE, &r, &never)
        .unwrap_err()
        .to_string();
    assert!(e.contains("step 1") && e.contains("no checkpoint"), "{e}");
}

#[test]
fn a_generative_run_writes_grids_plots_metrics_and_evaluates() {
    let never = AtomicBool::new(false);
    let dir = TempDir::new("pixelwise");
    let mut r = request("pixelwise", dir.path(), 2);
    r.limit_batches = Some(20);
    run::train_entry(&PIXELWISE, &r, &never).unwrap();
    for f in [
        run::CHECKPOINT,
        run::WEIGHTS,
        run::METRICS,
        run::LOSS_PLOT,
        run::SAMPLES,
        run::CONFIG,
        "samples/epoch-001.png",
        "samples/epoch-002.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let png = std::fs::read(dir.join(run::SAMPLES)).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let log = std::fs::read_to_string(dir.join(run::METRICS)).unwrap();
    let epochs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 2);
    let first = epochs[0]["train"]["nll"].as_f64().unwrap();
    let second = epochs[1]["train"]["nll"].as_f64().unwrap();
    assert!(second < first, "the loss went down: {first} -> {second}");

    // evaluation: its NLL and the sample metrics with their real-vs-real baselines
    let mut loaded = run::load_as(dir.path(), &PIXELWISE).unwrap();
    assert_eq!(loaded.meta.step, 40);
    let data = run::data_of(&loaded.meta, None).unwrap();
    let mut ctx = models::program::eval::EvalContext::new(&data, 0, 300);
    let metrics = loaded.model.eval(&mut ctx).unwrap();
    let get = |n: &str| {
        metrics
            .iter()
            .find(|m| m.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let nll = get("nll_nats").value;
    assert!(nll > 50.0 && nll < 543.0, "{nll}"); // below 784 ln 2 = 543, the uniform model
    let fcd = get("fcd");
    assert!(
        fcd.value > 5.0 * fcd.baseline.unwrap(),
        "independent pixels are far from digits: {fcd:?}"
    );
    for m in [
        "kid",
        "label_kl_to_uniform",
        "classes_covered",
        "classifier_score",
    ] {
        assert!(get(m).baseline.is_some(), "{m}");
    }
    assert_eq!(get("classes_covered").baseline, Some(10.0));
    // the registry does not know this model
    let e = run::load(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("pixelwise") && e.contains("does not know"),
        "{e}"
    );
}
