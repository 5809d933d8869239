//! Replays the fuzz corpora: every file of `fuzz/corpus/<target>/` (kept small by `cargo fuzz
//! cmin`, with the minimised input of every finding) goes through the fuzz target's own body,
//! `fuzz/src/lib.rs`, compiled here as a module, so that CI runs exactly what the fuzzer ran.
//! Each input must give Ok or an error (for the readers: one naming the file), never a panic,
//! and must not allocate 1 GiB or more at once on the thread that reads it (the fuzzer's
//! `-malloc_limit_mb=1024`; this test binary's allocator keeps the largest request per thread).
//! fuzz/RESULTS.md has the fuzzing runs; scripts/fuzz.sh runs them again.
//!
//! The seeds the corpora started from are written by the ignored test `write_seeds`
//! (`cargo test --release -p models --test fuzz_corpus -- --ignored write_seeds`).

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_entry;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// libFuzzer's `-malloc_limit_mb=1024`: a single allocation of this many bytes or more is a
/// finding.
const MALLOC_LIMIT: usize = 1 << 30;

/// The system allocator, keeping the largest request made on each thread.
struct Largest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

// SAFETY: every call is passed on to `System` unchanged; `note` only records the size.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs every corpus file of `target` through `body`; fails naming each file that panicked or
/// (with `names_file`) gave an error that does not name the file, or allocated [`MALLOC_LIMIT`]
/// bytes or more at once.
fn replay(target: &str, body: fn(&[u8]) -> Result<(), String>, names_file: bool) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable corpus folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: an empty corpus", dir.display());
    let mut failures = Vec::new();
    let (mut ok, mut err) = (0, 0);
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        LARGEST.with(|m| m.set(0));
        let result = std::panic::catch_unwind(|| body(&bytes));
        let largest = LARGEST.with(Cell::get);
        if largest >= MALLOC_LIMIT {
            failures.push(format!(
                "{}: allocated {largest} bytes at once (the limit is {MALLOC_LIMIT})",
                path.display()
            ));
        }
        match result {
            Err(_) => failures.push(format!("{}: panicked", path.display())),
            Ok(Err(e)) if names_file && !e.contains(fuzz_entry::NAME) => failures.push(format!(
                "{}: the error does not name the file: {e}",
                path.display()
            )),
            Ok(Err(_)) => err += 1,
            Ok(Ok(())) => ok += 1,
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} corpus inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("{target}: {} inputs, {ok} ok, {err} errors", files.len());
}

#[test]
fn idx_raw_corpus() {
    replay("idx_raw", fuzz_entry::idx_raw, true);
}

#[test]
fn idx_gzip_corpus() {
    replay("idx_gzip", fuzz_entry::idx_gzip, true);
}

#[test]
fn checkpoint_corpus() {
    replay("checkpoint", fuzz_entry::checkpoint, true);
}

#[test]
fn config_corpus() {
    replay("config", fuzz_entry::config, false);
}

/// Writes the seeds the corpora started from into `fuzz/corpus/<target>/seed-*`: small IDX files
/// (raw and gzipped), small real checkpoints (after one training step, so with optimizer state;
/// each as it is and resealed), and every model's default config as `--set` lines.
#[test]
#[ignore = "writes the fuzz seeds; run by hand"]
fn write_seeds() {
    use autograd::Rng;
    use models::program::checkpoint::{self, Checkpoint, Meta};
    use models::program::data::Batch;
    use models::program::run::Settings;
    use models::registry::ENTRIES;
    use std::io::Write;

    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let idx = |dims: &[u32], data: &[u8]| -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    };
    let gzip = |bytes: &[u8]| -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let images: Vec<u8> = (0..3 * 28 * 28).map(|i| (i * 37 % 256) as u8).collect();
    let files = [
        ("images-3x28x28", idx(&[3, 28, 28], &images)),
        ("labels-3", idx(&[3], &[7, 2, 1])),
        ("images-2x4x4", idx(&[2, 4, 4], &images[..32])),
    ];
    for (name, bytes) in &files {
        write("idx_raw", name, bytes);
        write("idx_gzip", &format!("{name}.gz"), &gzip(bytes));
        write("idx_gzip", name, bytes);
    }

    let small: [(&str, serde_json::Value); 2] = [
        ("fvsbn", serde_json::json!({"image_size": 4})),
        ("nade", serde_json::json!({"image_size": 4, "hidden": 2})),
    ];
    for (model, keys) in small {
        let entry = models::registry::find(model).unwrap();
        let mut config = (entry.default_config)();
        for (k, v) in keys.as_object().unwrap() {
            config[k] = v.clone();
        }
        let mut rng = Rng::new(0);
        let mut m = (entry.build)(&config, &mut rng).unwrap();
        let batch = Batch {
            images: (0..32).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect(),
            labels: vec![1, 2],
            rows: 4,
            cols: 4,
        };
        m.set_training(true);
        m.train_step(&batch, &mut rng).unwrap();
        let settings = Settings {
            batch_size: 2,
            seed: 0,
            data: None,
            limit_batches: Some(1),
            val: 0,
            preset: None,
            data_digest: Some("0123456789abcdef".into()),
        };
        let ck = Checkpoint {
            meta: Meta {
                model: model.into(),
                config: m.config(),
                train: serde_json::to_value(settings).unwrap(),
                step: 1,
                epoch: 0,
                batch: 1,
                rng: rng.state(),
            },
            tensors: m.state_dict(),
        };
        let bytes = checkpoint::to_bytes(&ck).unwrap();
        assert!(fuzz_entry::checkpoint(&[&[0][..], &bytes].concat()).is_ok());
        write(
            "checkpoint",
            &format!("{model}-raw"),
            &[&[0][..], &bytes].concat(),
        );
        write(
            "checkpoint",
            &format!("{model}-resealed"),
            &[&[1][..], &bytes].concat(),
        );
    }

    for (i, entry) in ENTRIES.iter().enumerate() {
        let config = (entry.default_config)();
        let lines: String = config
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        write(
            "config",
            &format!("{}-default", entry.name),
            &[&[i as u8][..], lines.as_bytes()].concat(),
        );
        write(
            "config",
            &format!("{}-lr", entry.name),
            &[i as u8, b'l', b'r', b'=', b'0', b'.', b'1'],
        );
    }
}
