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

/// The conditional GAN's checkpoint holds the label embedding of its D, CycleGAN's its two
/// histories of generated images, text-to-image's its trained text encoder (and that it is
/// trained), StarGAN's its critic-step count and the average of G that translates (with its own
/// step count), Puzzle-GAN's its batch count (G trains on every second): resumed after an
/// epoch, each ends where the
/// straight run does.
#[test]
fn a_resumed_conditional_or_translating_gan_run_is_bit_identical() {
    two_threads(|| {
        let never = AtomicBool::new(false);
        for (model, held) in [
            ("cgan", "discriminator.embed.weight"),
            ("cycle-gan", "history_b.images"),
            ("text2image", "text_encoder.trained"),
            ("stargan", "generator_average_steps"),
            ("puzzle-gan", "steps"),
        ] {
            let straight = TempDir::new(&format!("gan-straight-{model}"));
            run::train(&request(model, straight.path(), 2), &never).unwrap();
            let split = TempDir::new(&format!("gan-split-{model}"));
            run::train(&request(model, split.path(), 1), &never).unwrap();
            let mut again = request(model, split.path(), 2);
            again.resume = true;
            run::train(&again, &never).unwrap();
            let reference = tensor_bits(&straight.join(run::CHECKPOINT));
            assert!(reference.iter().any(|(n, _)| n == held), "{model}: {held}");
            assert_eq!(
                tensor_bits(&split.join(run::CHECKPOINT)),
                reference,
                "{model}"
            );
        }
    })
}

/// The Progressive GAN's checkpoint holds its step count (from which the stage and alpha
/// follow, and are written beside it), the generator's moving average and the stage grids: with
/// stages of 1, 2, 1, 1 and 1 steps, a run resumed after its first epoch (3 steps, at the start
/// of the 14x14 stable stage) ends where the
/// straight run does, through the 28x28 fade and stable stage.
#[test]
fn a_resumed_progan_run_is_bit_identical() {
    two_threads(|| {
        let never = AtomicBool::new(false);
        let small = |dir: &std::path::Path, epochs| {
            let mut r = request("progan", dir, epochs);
            r.set = vec![
                ("stage_steps".into(), serde_json::json!([1, 2, 1, 1, 1])),
                ("channels".into(), serde_json::json!([8, 8, 4])),
            ];
            r
        };
        let straight = TempDir::new("gan-straight-progan");
        run::train(&small(straight.path(), 2), &never).unwrap();
        let split = TempDir::new("gan-split-progan");
        run::train(&small(split.path(), 1), &never).unwrap();
        // after 3 steps: the 14x14 stable stage, which the checkpoint names
        let value = |name: &str| {
            let bits = tensor_bits(&split.join(run::CHECKPOINT));
            let (_, v) = bits.iter().find(|(n, _)| n == name).unwrap().clone();
            f64::from_bits(v[0])
        };
        assert_eq!(
            (value("steps"), value("resolution"), value("alpha")),
            (3.0, 14.0, 1.0)
        );
        let mut again = small(split.path(), 2);
        again.resume = true;
        run::train(&again, &never).unwrap();
        let reference = tensor_bits(&straight.join(run::CHECKPOINT));
        for name in ["steps", "generator_average.to_rgb28.weight", "stage_grids"] {
            assert!(reference.iter().any(|(n, _)| n == name), "{name}");
        }
        assert_eq!(tensor_bits(&split.join(run::CHECKPOINT)), reference);
        for grid in ["stage_7.png", "stage_14_fade.png", "stage_28.png"] {
            assert_eq!(
                std::fs::read(split.join(grid)).unwrap(),
                std::fs::read(straight.join(grid)).unwrap(),
                "{grid}"
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
    let mut loaded = run::load_as(dir.path(), run::Pick::Best, &PIXELWISE).unwrap();
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
    let e = run::load(dir.path(), run::Pick::Best)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("pixelwise") && e.contains("does not know"),
        "{e}"
    );
}

/// The epoch records of a run's metrics.jsonl.
fn epoch_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(run::METRICS))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .collect()
}

fn scripted(dir: &std::path::Path, epochs: usize, script: &[f64]) -> TrainRequest {
    let mut r = request("pixelwise", dir, epochs);
    r.limit_batches = Some(2);
    r.set = vec![("validation_script".into(), serde_json::json!(script))];
    r
}

/// The validation loss of every epoch is logged, best.safetensors holds the weights of the
/// epoch with the lowest one, `--patience` stops after that many epochs without a better one,
/// and `eval` / `sample` read the best epoch unless told `--last`.
#[test]
fn validation_keeps_the_best_epoch_and_patience_stops() {
    let never = AtomicBool::new(false);
    let dir = TempDir::new("validation");
    // epoch 2 is the best; 3 and 4 do not beat it, so patience 2 stops after epoch 4 (and
    // epoch 5, after the resume, does not beat it either)
    let mut r = scripted(dir.path(), 8, &[3.0, 2.0, 2.5, 2.0, 2.2, 0.5, 0.4, 0.3]);
    r.patience = Some(2);
    let out = run::train_entry(&PIXELWISE, &r, &never).unwrap();
    assert!(
        matches!(
            out,
            Outcome::EarlyStopped {
                epochs: 4,
                best_epoch: 2,
                step: 8,
                ..
            }
        ),
        "{out:?}"
    );
    let epochs = epoch_records(dir.path());
    let vals: Vec<f64> = epochs
        .iter()
        .map(|e| e["validation"].as_f64().unwrap())
        .collect();
    assert_eq!(vals, [3.0, 2.0, 2.5, 2.0]);
    let bests: Vec<u64> = epochs
        .iter()
        .map(|e| e["best_epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(bests, [1, 2, 2, 2], "a tie does not replace the best");
    let best = models::program::checkpoint::load(&dir.join(run::BEST)).unwrap();
    assert_eq!((best.meta.epoch, best.meta.step), (2, 4));
    // best.safetensors holds epoch 2's weights, the checkpoint epoch 4's
    let last = run::load_as(dir.path(), run::Pick::Last, &PIXELWISE).unwrap();
    let picked = run::load_as(dir.path(), run::Pick::Best, &PIXELWISE).unwrap();
    assert_eq!((last.meta.epoch, picked.meta.epoch), (4, 2));
    assert!(picked.path.ends_with(run::BEST));
    assert_ne!(
        last.model.weights()[0].1.to_vec_f64(),
        picked.model.weights()[0].1.to_vec_f64()
    );
    // the held-out digits are the last 1,000 of the training split, by default
    let data = run::data_of(&last.meta, None).unwrap();
    let settings = &last.meta.train;
    assert_eq!(settings["val"], run::DEFAULT_VAL as u64);
    assert!(data.train.len() > run::DEFAULT_VAL);

    // resumed without --patience, the run goes on; the best so far comes back from the log
    let mut more = scripted(dir.path(), 6, &[3.0, 2.0, 2.5, 2.0, 2.2, 0.5, 0.4, 0.3]);
    more.resume = true;
    run::train_entry(&PIXELWISE, &more, &never).unwrap();
    let bests: Vec<u64> = epoch_records(dir.path())
        .iter()
        .map(|e| e["best_epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(bests, [1, 2, 2, 2, 2, 6]);
    let best = models::program::checkpoint::load(&dir.join(run::BEST)).unwrap();
    assert_eq!(best.meta.epoch, 6);
}

/// A preset's patience stops a run as `--patience` does, the command line's overrides it, and a
/// run with nothing held out trains on without it.
#[test]
fn a_preset_brings_its_patience() {
    let never = AtomicBool::new(false);
    let script = [3.0, 2.0, 2.5, 2.0, 2.2, 0.5, 0.4, 0.3];
    // the test preset "patient" (patience 2) over the scripted validation losses above
    let outcome = |name: &str, patience: Option<usize>, val: Option<usize>, epochs: usize| {
        let dir = TempDir::new(name);
        let mut r = scripted(dir.path(), epochs, &script);
        r.preset = Some("patient".into());
        r.patience = patience;
        r.val = val;
        run::train_entry(&PIXELWISE, &r, &never).unwrap()
    };
    let out = outcome("preset-patience", None, None, 8);
    assert!(
        matches!(
            out,
            Outcome::EarlyStopped {
                epochs: 4,
                best_epoch: 2,
                ..
            }
        ),
        "{out:?}"
    );
    let out = outcome("preset-patience-3", Some(3), None, 8);
    assert!(
        matches!(
            out,
            Outcome::EarlyStopped {
                epochs: 5,
                best_epoch: 2,
                ..
            }
        ),
        "{out:?}"
    );
    let out = outcome("preset-no-val", None, Some(0), 5);
    assert!(
        matches!(out, Outcome::Finished { epochs: 5, .. }),
        "{out:?}"
    );
}

/// The real validation loss: the held-out digits' NLL falls as the model learns, a run with
/// `--val 0` holds out nothing and writes no best.safetensors, and the settings that make no
/// sense are refused.
#[test]
fn the_validation_split_is_held_out_and_checked() {
    let never = AtomicBool::new(false);
    let dir = TempDir::new("validation-real");
    let mut r = request("pixelwise", dir.path(), 2);
    r.limit_batches = Some(10);
    r.val = Some(500);
    run::train_entry(&PIXELWISE, &r, &never).unwrap();
    let vals: Vec<f64> = epoch_records(dir.path())
        .iter()
        .map(|e| e["validation"].as_f64().unwrap())
        .collect();
    assert!(vals[1] < vals[0] && vals[0] < 543.0, "{vals:?}");
    // the resumed run keeps its split
    let mut other = r.clone();
    other.resume = true;
    other.epochs = Some(3);
    other.val = Some(100);
    let e = run::train_entry(&PIXELWISE, &other, &never)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--val") && e.contains("500"), "{e}");

    let none = TempDir::new("validation-none");
    let mut r = request("pixelwise", none.path(), 1);
    r.val = Some(0);
    run::train_entry(&PIXELWISE, &r, &never).unwrap();
    assert!(!none.join(run::BEST).exists());
    assert!(epoch_records(none.path())[0].get("validation").is_none());
    let refused = TempDir::new("validation-refused");
    let mut p = request("pixelwise", &refused.join("patience"), 1);
    p.val = Some(0);
    p.patience = Some(1);
    let e = run::train_entry(&PIXELWISE, &p, &never)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--patience"), "{e}");
    assert!(
        !refused.join("patience").exists(),
        "a refused run's folder stayed"
    );
    let big = TempDir::new("validation-big");
    let mut b = request("pixelwise", big.path(), 1);
    b.val = Some(1_000_000);
    let e = run::train_entry(&PIXELWISE, &b, &never)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--val 1000000") && e.contains("training digits"),
        "{e}"
    );
    // a GAN has nothing to validate
    let gan = TempDir::new("validation-gan");
    let mut g = request("dcgan", gan.path(), 1);
    g.val = Some(100);
    let e = run::train(&g, &never).unwrap_err().to_string();
    assert!(e.contains("no validation loss"), "{e}");
    for m in [0.0, -1.0, f64::NAN] {
        let mut t = request("pixelwise", &refused.join("minutes"), 1);
        t.max_minutes = Some(m);
        let e = run::train_entry(&PIXELWISE, &t, &never)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-minutes"), "{e}");
    }
}

/// `--max-minutes`: the run ends after the step that passes the budget, with a checkpoint that
/// resumes to the same end as a run without a budget.
#[test]
fn a_time_budget_ends_the_run_with_a_checkpoint_to_resume() {
    let never = AtomicBool::new(false);
    let straight = TempDir::new("budget-straight");
    run::train_entry(
        &PIXELWISE,
        &request("pixelwise", straight.path(), 2),
        &never,
    )
    .unwrap();
    let dir = TempDir::new("budget");
    let mut r = request("pixelwise", dir.path(), 2);
    r.max_minutes = Some(1e-9);
    let out = run::train_entry(&PIXELWISE, &r, &never).unwrap();
    assert!(matches!(out, Outcome::OutOfTime { step: 1, .. }), "{out:?}");
    let mut again = request("pixelwise", dir.path(), 2);
    again.resume = true;
    // a budget beyond what the clock can hold is no budget
    again.max_minutes = Some(1e300);
    run::train_entry(&PIXELWISE, &again, &never).unwrap();
    assert_eq!(
        tensor_bits(&dir.join(run::CHECKPOINT)),
        tensor_bits(&straight.join(run::CHECKPOINT))
    );
    assert_eq!(
        std::fs::read(dir.join(run::BEST)).unwrap(),
        std::fs::read(straight.join(run::BEST)).unwrap()
    );
}

/// Every preset of every model is JSON its model accepts, builds, and trains a step.
#[test]
fn every_preset_builds_and_trains_a_step() {
    let data = models::program::data::embedded().unwrap();
    let batch = data.train.batch(&[0, 1, 2, 3]);
    let mut seen = 0;
    for entry in models::registry::ENTRIES {
        for preset in entry.presets {
            let config = run::with_preset(entry, (entry.default_config)(), preset).unwrap();
            let mut rng = autograd::Rng::new(1);
            let mut model = (entry.build)(&config, &mut rng)
                .unwrap_or_else(|e| panic!("{} --preset {}: {e}", entry.name, preset.name));
            let losses = model.train_step(&batch, &mut rng).unwrap();
            assert!(losses.iter().all(|(_, v)| v.is_finite()), "{losses:?}");
            assert!(!preset.about.contains("PRESET_"), "{}", preset.about);
            seen += 1;
        }
    }
    assert!(seen >= 5, "{seen} presets");
}

/// `--preset` sets the config keys, epochs and batch size it names (the command line still
/// overrides them), is kept by a resumed run, and an unknown name lists the known ones.
#[test]
fn a_preset_sets_config_and_schedule_and_is_kept_on_resume() {
    let never = AtomicBool::new(false);
    let dir = TempDir::new("preset");
    let mut r = request("vae", dir.path(), 1);
    r.batch_size = None;
    r.preset = Some("paper".into());
    r.limit_batches = Some(1);
    run::train(&r, &never).unwrap();
    let about: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(run::CONFIG)).unwrap()).unwrap();
    assert_eq!(about["config"]["hidden"], 500, "{about}");
    assert_eq!(about["settings"]["batch_size"], 100, "{about}");
    assert_eq!(about["settings"]["preset"], "paper", "{about}");
    let mut other = request("vae", dir.path(), 2);
    other.batch_size = None;
    other.resume = true;
    other.limit_batches = Some(1);
    other.preset = Some("quick".into());
    let e = run::train(&other, &never).unwrap_err().to_string();
    assert!(e.contains("--preset") && e.contains("paper"), "{e}");
    assert!(
        dir.join(run::CONFIG).exists(),
        "a refused resume keeps the run's folder"
    );
    // refused before training begins, a new run folder is not left behind
    let tmp = TempDir::new("preset-x");
    let mut unknown = request("vae", &tmp.join("run"), 1);
    unknown.preset = Some("huge".into());
    let e = run::train(&unknown, &never).unwrap_err().to_string();
    assert!(e.contains("huge") && e.contains("paper"), "{e}");
    assert!(!tmp.join("run").exists(), "the refused run's folder stayed");
    let mut none = request("dcgan", &tmp.join("run"), 1);
    none.preset = Some("paper".into());
    let e = run::train(&none, &never).unwrap_err().to_string();
    assert!(e.contains("no presets"), "{e}");
    assert!(!tmp.join("run").exists());
}
