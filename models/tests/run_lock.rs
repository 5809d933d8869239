//! One training process per run folder (issue 15, item 1): a second `genzoo train` into a
//! folder another one is training in, new or resumed, is refused with the holder's pid, and the
//! lock dies with its process (SIGKILL included), so it is never left stale. Real processes.

mod common;

use common::{genzoo, genzoo_program, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_run_in_a_busy_folder_is_refused_and_the_lock_dies_with_its_process() {
    let dir = TempDir::new("run-lock");
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    // a run long enough to be caught in the middle
    let mut first = KillOnDrop(
        Command::new(genzoo_program())
            .args([
                "train", "fvsbn", "--epochs", "200", "--quiet", "--out", run_s,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("genzoo starts"),
    );
    let lock = run.join(".genzoo.lock");
    let started = Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |s| s.trim().is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first run never locked its folder"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = first.0.id().to_string();
    for args in [
        // short runs, so that without the lock the test fails at once rather than training
        vec![
            "train",
            "fvsbn",
            "--seed",
            "1",
            "--epochs",
            "1",
            "--limit-batches",
            "1",
            "--quiet",
            "--out",
            run_s,
        ],
        vec![
            "train", "fvsbn", "--resume", "--epochs", "1", "--quiet", "--out", run_s,
        ],
    ] {
        let o = genzoo(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} ran beside the first run");
        assert!(
            err.contains("in use by another genzoo run") && err.contains(&pid),
            "{args:?}: {err}"
        );
    }
    // SIGKILL: the OS drops the lock with the process
    first.0.kill().expect("the first run can be killed");
    first.0.wait().unwrap();
    let o = genzoo(&[
        "train", "fvsbn", "--resume", "--epochs", "1", "--quiet", "--out", run_s,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("in use"),
        "a dead process's lock still held: {err}"
    );
}
