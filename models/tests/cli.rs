//! The `genzoo` program itself, run as a user would.

mod common;

use common::TempDir;
use std::path::Path;
use std::process::{Command, Output};

fn genzoo(args: &[&str]) -> Output {
    genzoo_env(args, &[])
}

fn genzoo_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_genzoo"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("genzoo runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "genzoo {args:?} panicked:\n{err}"
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn help_everywhere_and_the_model_list() {
    for args in [
        &["--help"][..],
        &["list", "--help"],
        &["train", "--help"],
        &["sample", "--help"],
        &["eval", "--help"],
        &["--version"],
    ] {
        let o = genzoo(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(!stdout(&o).is_empty());
    }
    let train_help = stdout(&genzoo(&["train", "--help"]));
    for flag in [
        "--epochs",
        "--batch-size",
        "--lr",
        "--device",
        "--seed",
        "--data",
        "--out",
        "--resume",
    ] {
        assert!(train_help.contains(flag), "{flag} in train --help");
    }
    let list = genzoo(&["list"]);
    assert!(list.status.success());
    let text = stdout(&list);
    assert!(
        text.lines()
            .any(|l| l.starts_with("classifier") && l.contains("LeCun")),
        "{text}"
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = TempDir::new("cli-bad");
    let out = dir.join("run");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["train", "classifier", "--batch-size", "0"],
            2,
            "--batch-size",
        ),
        (vec!["train", "classifier", "--epochs", "0"], 2, "--epochs"),
        (vec!["train", "classifier", "--lr", "-1"], 2, "--lr"),
        (vec!["train", "classifier", "--lr", "nan"], 2, "--lr"),
        (vec!["train", "nosuchmodel"], 2, "classifier"),
        (
            vec!["train", "classifier", "--device", "gpu"],
            2,
            "--device",
        ),
        (
            vec![
                "train",
                "classifier",
                "--batch-size",
                "65536",
                "--out",
                p(&out),
            ],
            1,
            "is larger than the",
        ),
        // 9,001 digits in batches of 8 leave a last batch of one, which StarGAN cannot train on:
        // refused before the first step, with a batch size that works
        (
            vec!["train", "stargan", "--batch-size", "8", "--out", p(&out)],
            1,
            "leaves each epoch of the 9001 training digits a last batch of 1: try --batch-size 11",
        ),
        (
            vec!["train", "stargan", "--batch-size", "1", "--out", p(&out)],
            1,
            "--batch-size 1 is fewer",
        ),
        (
            vec!["train", "classifier", "--set", "lr=0", "--out", p(&out)],
            1,
            "finite number > 0",
        ),
        (
            vec!["train", "classifier", "--device", "cuda", "--out", p(&out)],
            1,
            "cannot use cuda:0",
        ),
        (
            vec!["train", "classifier", "--set", "nokey", "--out", p(&out)],
            2,
            "KEY=VALUE",
        ),
        (
            vec!["train", "classifier", "--set", "width=3", "--out", p(&out)],
            1,
            "unknown field `width`",
        ),
        (
            vec!["train", "classifier", "--set", "conv1=0", "--out", p(&out)],
            1,
            "conv1 must be",
        ),
        (
            vec![
                "train",
                "classifier",
                "--data",
                "/nonexistent/mnist",
                "--out",
                p(&out),
            ],
            1,
            "/nonexistent/mnist",
        ),
        (
            vec!["train", "classifier", "--resume", "--out", p(&out)],
            1,
            "no checkpoint",
        ),
        (vec!["sample", "/nonexistent/run"], 1, "/nonexistent/run"),
        (vec!["eval", "/nonexistent/run"], 1, "/nonexistent/run"),
        (vec!["sample", p(dir.path())], 1, "not a genzoo run"),
        (vec!["sample", p(dir.path()), "--n", "0"], 2, "--n"),
    ];
    for (args, code, needle) in cases {
        let o = genzoo(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: wanted {needle:?} in:\n{}",
            stderr(&o)
        );
    }
}

fn epoch_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .collect()
}

#[test]
fn train_the_classifier_for_one_epoch_on_the_embedded_data_then_eval() {
    let dir = TempDir::new("cli-classifier");
    let run = dir.join("run");
    let o = genzoo(&[
        "train",
        "classifier",
        "--epochs",
        "1",
        "--out",
        p(&run),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("9001 train / 999 test images"),
        "{}",
        stderr(&o)
    );
    for f in [
        "checkpoint.safetensors",
        "model.safetensors",
        "metrics.jsonl",
        "loss.png",
        "config.json",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let epochs = epoch_lines(&run);
    assert_eq!(epochs.len(), 1);
    assert_eq!(epochs[0]["step"], 141); // ceil(9001 / 64)
    let acc = epochs[0]["metrics"]["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "one epoch reaches {acc}");

    let o = genzoo(&["eval", p(&run), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["model"], "classifier");
    assert_eq!(v["step"], 141);
    assert_eq!(v["metrics"]["test_accuracy"].as_f64().unwrap(), acc);
    let o = genzoo(&["eval", p(&run.join("model.safetensors"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("test_accuracy") && stdout(&o).contains("real-vs-real"));
    let o = genzoo(&["sample", p(&run)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a generative model"),
        "{}",
        stderr(&o)
    );
    // a second run into the same folder is refused rather than overwriting it
    let o = genzoo(&["train", "classifier", "--epochs", "1", "--out", p(&run)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

#[test]
fn data_reads_a_folder_of_standard_files() {
    let dir = TempDir::new("cli-data");
    let data = dir.join("fashion");
    std::fs::create_dir_all(&data).unwrap();
    let pixels = |n: usize| {
        (0..n * 784)
            .map(|i| (i * 37 % 256) as u8)
            .collect::<Vec<u8>>()
    };
    let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        idx(&[40, 28, 28], &pixels(40)),
    )
    .unwrap();
    std::fs::write(
        data.join("train-labels-idx1-ubyte"),
        idx(&[40], &labels(40)),
    )
    .unwrap();
    std::fs::write(
        data.join("t10k-images-idx3-ubyte"),
        idx(&[10, 28, 28], &pixels(10)),
    )
    .unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), idx(&[10], &labels(10))).unwrap();
    let run = dir.join("run");
    let o = genzoo(&[
        "train",
        "classifier",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--data",
        p(&data),
        "--out",
        p(&run),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("40 train / 10 test images from {}", p(&data))),
        "{}",
        stderr(&o)
    );
    assert_eq!(epoch_lines(&run)[0]["step"], 3);
    // eval reads the run's data again
    let o = genzoo(&["eval", p(&run), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(p(&data)), "{}", stdout(&o));
    // a run started with a relative --data resumes from any directory (the folder is kept as
    // an absolute path), and refuses once the data there has changed (its digest is kept)
    let in_dir = |cwd: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_genzoo"))
            .current_dir(cwd)
            .args(args)
            .output()
            .unwrap()
    };
    let run3 = dir.join("run3");
    let o = in_dir(
        dir.path(),
        &[
            "train",
            "classifier",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--data",
            "fashion",
            "--out",
            "run3",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let resume = [
        "train",
        "classifier",
        "--resume",
        "--epochs",
        "2",
        "--out",
        p(&run3),
        "--quiet",
    ];
    let o = in_dir(Path::new("/"), &resume);
    assert!(o.status.success(), "resume from /: {}", stderr(&o));
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        idx(&[40, 28, 28], &vec![3; 40 * 784]),
    )
    .unwrap();
    let resume3 = [
        "train",
        "classifier",
        "--resume",
        "--epochs",
        "3",
        "--out",
        p(&run3),
        "--quiet",
    ];
    let o = in_dir(Path::new("/"), &resume3);
    assert!(
        !o.status.success() && stderr(&o).contains("not the data this run trained on"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        idx(&[40, 28, 28], &pixels(40)),
    )
    .unwrap();
    // a damaged file in the folder is named
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), idx(&[10], &labels(9))).unwrap();
    let o = genzoo(&[
        "train",
        "classifier",
        "--data",
        p(&data),
        "--out",
        p(&dir.join("run2")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("t10k-labels-idx1-ubyte") && stderr(&o).contains("truncated"),
        "{}",
        stderr(&o)
    );
}

/// The engine's reductions are order-deterministic, so bit-for-bit comparisons hold with the
/// default (multi-threaded) pool; this pins two threads so the test means the same on any machine.
const TWO_THREADS: &[(&str, &str)] = &[("RAYON_NUM_THREADS", "2")];

fn train_small(run: &Path, epochs: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "classifier",
        "--epochs",
        epochs,
        "--batch-size",
        "32",
        "--limit-batches",
        "3",
        "--seed",
        "5",
        "--quiet",
        "--out",
        p(run),
    ];
    args.extend_from_slice(extra);
    let o = genzoo_env(&args, TWO_THREADS);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

#[test]
fn a_resumed_run_ends_identical_to_an_uninterrupted_one() {
    let dir = TempDir::new("cli-resume");
    let (straight, split) = (dir.join("straight"), dir.join("split"));
    train_small(&straight, "2", &[]);
    train_small(&split, "1", &[]);
    let o = train_small(&split, "2", &["--resume"]);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    for f in ["model.safetensors", "checkpoint.safetensors"] {
        let a = std::fs::read(straight.join(f)).unwrap();
        let b = std::fs::read(split.join(f)).unwrap();
        assert!(
            a == b,
            "{f} differs between the straight and the resumed run"
        );
    }
    assert_eq!(epoch_lines(&split).len(), 2);
}

#[test]
fn corrupt_and_foreign_checkpoints_get_clear_errors() {
    let dir = TempDir::new("cli-corrupt");
    let run = dir.join("run");
    train_small(&run, "1", &[]);
    let ck = run.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).unwrap();

    // a flipped bit in the weights
    let mut bad = good.clone();
    let i = bad.len() - 100;
    bad[i] ^= 0x04;
    std::fs::write(&ck, &bad).unwrap();
    for args in [
        vec![
            "train",
            "classifier",
            "--resume",
            "--epochs",
            "2",
            "--out",
            p(&run),
        ],
        vec!["eval", p(&ck)],
    ] {
        let o = genzoo(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains(p(&ck)) && e.contains("checksum"),
            "{args:?}: {e}"
        );
    }
    // cut short
    std::fs::write(&ck, &good[..good.len() / 2]).unwrap();
    let o = genzoo(&["eval", p(&run)]);
    assert!(
        stderr(&o).contains(p(&ck)) && stderr(&o).contains("corrupt"),
        "{}",
        stderr(&o)
    );
    // not a checkpoint at all
    std::fs::write(&ck, b"{\"hello\": 1}").unwrap();
    let o = genzoo(&["eval", p(&run)]);
    assert!(
        stderr(&o).contains("not a safetensors file"),
        "{}",
        stderr(&o)
    );

    // a checkpoint of another model
    let mut c = models::program::checkpoint::from_bytes(&good, "good").unwrap();
    c.meta.model = "pixelsnail".into();
    models::program::checkpoint::save(&ck, &c).unwrap();
    let o = genzoo(&[
        "train",
        "classifier",
        "--resume",
        "--epochs",
        "2",
        "--out",
        p(&run),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("\"pixelsnail\" run, not \"classifier\""),
        "{}",
        stderr(&o)
    );
    let o = genzoo(&["eval", p(&run)]);
    assert!(
        stderr(&o).contains("\"pixelsnail\"") && stderr(&o).contains("does not know"),
        "{}",
        stderr(&o)
    );
    // the classifier's name on other tensors
    let mut c = models::program::checkpoint::from_bytes(&good, "good").unwrap();
    c.tensors.retain(|(n, _)| !n.starts_with("fc3"));
    models::program::checkpoint::save(&ck, &c).unwrap();
    let o = genzoo(&["eval", p(&run)]);
    assert!(
        stderr(&o).contains("lacks 2 of its 10 weights") && stderr(&o).contains("fc3.bias"),
        "{}",
        stderr(&o)
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigterm_finish_the_step_write_a_checkpoint_and_exit() {
    // SIGINT (Ctrl-C) and SIGTERM (what `timeout` and job schedulers send) alike
    for signal in ["INT", "TERM"] {
        let dir = TempDir::new("cli-ctrlc");
        let run = dir.join("run");
        let child = Command::new(env!("CARGO_BIN_EXE_genzoo"))
            .args([
                "train",
                "classifier",
                "--epochs",
                "50",
                "--quiet",
                "--out",
                p(&run),
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // wait for a few steps to be logged
        let log = run.join("metrics.jsonl");
        let t0 = std::time::Instant::now();
        while std::fs::read_to_string(&log).map_or(0, |s| s.lines().count()) < 3 {
            assert!(
                t0.elapsed().as_secs() < 60,
                "no training steps within a minute"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "SIG{signal}: {err}");
        assert!(
            err.contains("interrupted at step") && err.contains("--resume"),
            "SIG{signal}: {err}"
        );
        let ck = models::program::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
        assert!(
            ck.meta.step >= 3 && ck.meta.batch == ck.meta.step && ck.meta.epoch == 0,
            "SIG{signal}: {:?}",
            ck.meta
        );
    }
}

/// `eval-samples` scores any .npy of images: real test digits score near the real-vs-real
/// baseline (and far better than noise); wrong shapes, ranges and files are errors that name
/// the file.
#[test]
fn eval_samples_scores_arrays_from_anywhere() {
    let dir = TempDir::new("eval-samples");
    let data = models::program::data::embedded().unwrap();
    let n = 300;
    let real = data.test.batch(&(0..n).collect::<Vec<_>>());
    let pixels: Vec<f32> = real.images.iter().map(|&b| f32::from(b) / 255.0).collect();
    let write = |name: &str, v: &[f32], shape: &[usize]| {
        let path = dir.join(name);
        std::fs::write(&path, models::program::image::npy_bytes(v, shape).unwrap()).unwrap();
        path
    };
    let digits = write("real.npy", &pixels, &[n, 1, 28, 28]);
    let noise: Vec<f32> = (0..pixels.len())
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let noise = write("noise.npy", &noise, &[n, 784]);
    let fcd = |path: &Path| -> (f64, f64) {
        let o = genzoo(&["eval-samples", p(path), "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        (
            v["metrics"]["fcd"].as_f64().unwrap(),
            v["baseline"]["fcd"].as_f64().unwrap(),
        )
    };
    let (real_fcd, base) = fcd(&digits);
    let (noise_fcd, _) = fcd(&noise);
    assert!(
        real_fcd < 3.0 * base,
        "real digits: FCD {real_fcd}, baseline {base}"
    );
    assert!(
        noise_fcd > 10.0 * real_fcd,
        "noise {noise_fcd} vs digits {real_fcd}"
    );
    // intended labels give the accuracy
    let labels: Vec<f32> = real.label_indices().iter().map(|&l| l as f32).collect();
    let lab = write("labels.npy", &labels, &[n]);
    let o = genzoo(&["eval-samples", p(&digits), "--labels", p(&lab)]);
    assert!(
        o.status.success() && stdout(&o).contains("accuracy"),
        "{}",
        stdout(&o)
    );
    // errors
    let symmetric: Vec<f32> = pixels.iter().map(|v| 2.0 * v - 1.0).collect();
    let sym = write("sym.npy", &symmetric, &[n, 1, 28, 28]);
    let wrong = write("wrong.npy", &pixels[..n * 700], &[n, 700]);
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"\x93NUMPY\x01\x00\xff\xffnot a header").unwrap();
    // a file larger than any array of images to score is refused before it is read (sparse)
    let huge = dir.join("huge.npy");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    for (path, says) in [
        (&sym, "(x + 1) / 2"),
        (&wrong, "N x 784"),
        (&garbage, "garbage.npy"),
        (&huge, "more than"),
        (&dir.join("missing.npy"), "cannot read"),
    ] {
        let o = genzoo(&["eval-samples", p(path)]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(says), "{path:?}: {}", stderr(&o));
    }
}

#[test]
fn gan_theory_draws_the_optimal_discriminator_and_the_loss_slopes() {
    let dir = TempDir::new("gan-theory");
    let o = genzoo(&["gan-theory", "--out", p(dir.path()), "--steps", "1500"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("V(D*)") && out.contains("JSD"), "{out}");
    for f in ["optimal_discriminator.png", "generator_loss_slopes.png"] {
        let png = std::fs::read(dir.join(f)).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{f}");
    }
}

/// A reader that goes away (`genzoo list | head -1`) is not a crash.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_genzoo"))
        .args(["list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before genzoo writes a line
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

#[test]
fn resume_refuses_a_weights_file_in_place_of_the_checkpoint() {
    let dir = TempDir::new("cli-weights-resume");
    let run = dir.join("run");
    let o = genzoo(&[
        "train",
        "vae",
        "--epochs",
        "2",
        "--limit-batches",
        "2",
        "--val",
        "16",
        "--quiet",
        "--out",
        p(&run),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // --epochs below what is done is refused, and the run's config is left alone
    let config = std::fs::read(run.join("config.json")).unwrap();
    let o = genzoo(&[
        "train",
        "vae",
        "--resume",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        p(&run),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("already trained 2 epochs"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(run.join("config.json")).unwrap(), config);
    std::fs::copy(
        run.join("model.safetensors"),
        run.join("checkpoint.safetensors"),
    )
    .unwrap();
    let o = genzoo(&[
        "train",
        "vae",
        "--resume",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        p(&run),
    ]);
    let err = stderr(&o);
    assert!(
        !o.status.success() && err.contains("holds no optimizer state"),
        "{err}"
    );
}

#[test]
fn an_unwritable_stdout_is_a_clear_error() {
    // a full disk (/dev/full): the output is lost, so the command says so and fails
    let Ok(full) = std::fs::File::create("/dev/full") else {
        return; // not Linux
    };
    for args in [vec!["list"], vec!["gan-theory", "--help"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_genzoo"))
            .args(&args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        let err = stderr(&o);
        if args[0] == "list" {
            assert!(
                !o.status.success() && err.contains("cannot write to standard output"),
                "{args:?}: {err}"
            );
        }
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A model and batch too large for the memory left is an error naming the op and the bytes,
/// before the allocation (issue 15, item 8: it was an abort at 19.5 GB); the budget is
/// `GENZOO_HOST_MEMORY_MIB` here, 90% of the machine's available memory by default.
#[test]
fn a_batch_too_large_for_the_memory_budget_is_an_error_naming_the_op() {
    let dir = TempDir::new("host-memory");
    let out = dir.path().join("run");
    let o = genzoo_env(
        &[
            "train",
            "pixelcnn",
            "--out",
            p(&out),
            "--batch-size",
            "5000",
            "--epochs",
            "1",
        ],
        &[("GENZOO_HOST_MEMORY_MIB", "200")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for part in [
        "step 1",
        "conv2d: out of memory",
        "MiB",
        "200.0 MiB host-memory limit",
    ] {
        assert!(err.contains(part), "{part:?} not in:\n{err}");
    }
    let o = genzoo_env(&["list"], &[("GENZOO_HOST_MEMORY_MIB", "lots")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("GENZOO_HOST_MEMORY_MIB"),
        "{}",
        stderr(&o)
    );
}

/// `genzoo domains` draws each attribute domain over the same test digits and says how many
/// of them its measurement puts in it.
#[test]
fn domains_draws_a_row_per_domain_and_measures_them() {
    let dir = TempDir::new("domains");
    let out = dir.path().join("d.png");
    let o = genzoo(&["domains", "--out", p(&out), "--n", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(&out).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let text = stdout(&o);
    for name in [
        "plain",
        "thin",
        "thick",
        "slanted-left",
        "slanted-right",
        "coloured",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(text.contains("% of them measured in it"), "{text}");
    let o = genzoo(&["domains", "--out", p(&dir.path().join("d.jpg"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(".png"), "{}", stderr(&o));
}

/// `sample --caption` draws what a caption says from a text-to-image run, names words outside
/// the vocabulary, and is refused by a model that reads no captions (and beside `--label`).
#[test]
fn sample_caption_draws_from_words_and_names_unknown_ones() {
    let dir = TempDir::new("cli-caption");
    let run = dir.join("t2i");
    let o = genzoo(&[
        "train",
        "text2image",
        "--epochs",
        "1",
        "--limit-batches",
        "2",
        "--batch-size",
        "16",
        "--set",
        "encoder_steps=50",
        "--out",
        p(&run),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("twos.npy");
    let o = genzoo(&[
        "sample",
        p(&run),
        "--caption",
        "a thin two leaning left",
        "--n",
        "3",
        "--out",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a thin two leaning left"),
        "{}",
        stderr(&o)
    );
    let bytes = std::fs::read(&out).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("(3, 1, 28, 28)"));
    let o = genzoo(&[
        "sample",
        p(&run),
        "--caption",
        "a bold two leaning sideways",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("\"bold\"") && e.contains("\"sideways\""), "{e}");
    assert!(e.contains("thick"), "the vocabulary is listed: {e}");
    let o = genzoo(&["sample", p(&run), "--caption", "a two", "--label", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // a model that reads no captions says so
    let gan = dir.join("gan");
    let o = genzoo(&[
        "train",
        "gan",
        "--epochs",
        "1",
        "--limit-batches",
        "1",
        "--out",
        p(&gan),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = genzoo(&["sample", p(&gan), "--caption", "a two"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not read captions"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn profile_prints_the_op_table_and_writes_a_chrome_trace() {
    let dir = TempDir::new("cli-profile");
    let trace = dir.path().join("vae.json");
    let o = genzoo(&["profile", "vae", "--steps", "2", "--out", p(&trace)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let table: Vec<&str> = out.lines().collect();
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("op ") && l.contains("calls")),
        "a table header:\n{out}"
    );
    assert!(
        table.iter().any(|l| l.starts_with("matmul")),
        "a matmul row:\n{out}"
    );
    assert!(table.iter().any(|l| l.starts_with("total ")), "{out}");
    assert!(out.contains("ms a step"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).expect("the trace is written"))
            .expect("the trace is JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents");
    for cat in ["forward", "backward"] {
        assert!(
            events.iter().any(|e| e["cat"] == cat && e["ph"] == "X"),
            "a {cat} event"
        );
    }
    assert!(events
        .iter()
        .all(|e| e["ts"].is_number() && e["dur"].as_f64().is_some_and(|d| d >= 0.0)));

    // a trace only goes to a .json file
    let png = dir.path().join("trace.png");
    let o = genzoo(&["profile", "vae", "--steps", "1", "--out", p(&png)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("must end in .json"), "{}", stderr(&o));
    assert!(!png.exists());

    // a batch larger than the training split is refused, not waited for
    let o = genzoo(&[
        "profile",
        "vae",
        "--batch-size",
        "65536",
        "--out",
        p(&trace),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("more than the"), "{}", stderr(&o));
}
