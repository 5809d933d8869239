//! `genzoo profile`: a few training steps of a model under the engine's profiler
//! ([`autograd::profiler`]), as a table of ops and a Chrome trace.
//!
//! The model is built from the registry with its default config, as `genzoo train` builds a
//! new run, and trained on batches of the (embedded or given) MNIST training split drawn in a
//! shuffled order: a few warm-up steps unprofiled, then the profiled steps.

use crate::program::{data, run};
use crate::registry;
use autograd::profiler::{self, Span};
use autograd::rng::Rng;
use autograd::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to profile.
#[derive(Clone, Debug)]
pub struct ProfileRequest {
    /// The model's registry name.
    pub model: String,
    /// Profiled training steps.
    pub steps: usize,
    /// Unprofiled steps first (allocator, caches).
    pub warmup: usize,
    /// Batch size; the model's default when `None`.
    pub batch_size: Option<usize>,
    /// Seed of the weights, the batch order and the step's draws.
    pub seed: u64,
    /// A folder with the standard MNIST files instead of the embedded subset.
    pub data: Option<PathBuf>,
    /// A named size of the model (`--preset`), applied before `set`; its batch size too
    /// unless `batch_size` says.
    pub preset: Option<String>,
    /// Config keys set as `genzoo train --set` sets them.
    pub set: Vec<(String, Value)>,
}

/// What the profiled steps recorded.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Every span, in order of start.
    pub spans: Vec<Span>,
    /// The wall time of the profiled steps together.
    pub wall: Duration,
    /// How many steps were profiled.
    pub steps: usize,
    /// The batch size used.
    pub batch_size: usize,
}

impl Profile {
    /// The mean wall time of one profiled step.
    pub fn mean_step(&self) -> Duration {
        self.wall / self.steps.max(1) as u32
    }

    /// The table's rows ([`profiler::key_averages`]).
    pub fn rows(&self) -> Vec<profiler::Row> {
        profiler::key_averages(&self.spans, self.wall)
    }
}

/// Builds the model and runs `warmup` then `steps` training steps, the latter profiled.
pub fn profile(req: &ProfileRequest) -> Result<Profile> {
    let entry = registry::find(&req.model)?;
    if req.steps == 0 {
        return Err(Error::invalid("profile", "--steps must be at least 1"));
    }
    let preset = req.preset.as_deref().map(|p| entry.preset(p)).transpose()?;
    let batch_size = req
        .batch_size
        .or(preset.map(|p| p.batch_size))
        .unwrap_or(entry.default_batch_size);
    if batch_size == 0 {
        return Err(Error::invalid("profile", "--batch-size must be at least 1"));
    }
    let mut config = (entry.default_config)();
    if let Some(p) = preset {
        config = run::with_preset(entry, config, p)?;
    }
    let config = run::patch_config(entry.name, config, None, &req.set)?;
    let mut rng = Rng::new(req.seed);
    let mut model = (entry.build)(&config, &mut rng)?;
    let data = data::load(req.data.as_deref())?;
    let train = &data.train;
    // a batch larger than the split would leave the endless passes below without a full batch
    if batch_size > train.len() {
        return Err(Error::invalid(
            "profile",
            format!(
                "--batch-size {batch_size} is more than the {} training images",
                train.len()
            ),
        ));
    }
    let total = req.warmup + req.steps;
    // enough shuffled passes over the training split for every step
    let mut batches = (0u64..)
        .flat_map(|pass| data::Batches::shuffled(train.len(), batch_size, req.seed ^ pass))
        .filter(|b| b.len() == batch_size)
        .take(total);
    model.set_training(true);
    model.begin_epoch(0)?;
    for b in batches.by_ref().take(req.warmup) {
        model.train_step(&train.batch(&b), &mut rng)?;
    }
    // the profiler's spans from before (another caller in this process) are not ours
    profiler::take();
    let guard = profiler::Profiling::start();
    let start = Instant::now();
    let mut run = 0;
    for b in batches {
        if let Err(e) = model.train_step(&train.batch(&b), &mut rng) {
            drop(guard);
            profiler::take();
            return Err(e);
        }
        run += 1;
    }
    let wall = start.elapsed();
    drop(guard);
    Ok(Profile {
        spans: profiler::take(),
        wall,
        steps: run,
        batch_size,
    })
}

/// The spans as Chrome trace events (the JSON that Perfetto and chrome://tracing open): one
/// complete event ("ph": "X") per span, microseconds since the profiler's epoch, category
/// forward or backward, one track per thread; a backward rule's kernels nest inside it.
pub fn trace_json(spans: &[Span]) -> Value {
    let events: Vec<Value> = spans
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "cat": s.phase.name(),
                "ph": "X",
                "ts": s.start_ns as f64 / 1e3,
                "dur": s.duration_ns as f64 / 1e3,
                "pid": 1,
                "tid": s.thread,
                "args": {"shapes": s.shapes, "bytes": s.bytes, "depth": s.depth},
            })
        })
        .collect();
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// Writes [`trace_json`] of `spans` to `path`.
pub fn write_trace(path: &Path, spans: &[Span]) -> Result<()> {
    let text = serde_json::to_string(&trace_json(spans))
        .map_err(|e| Error::invalid("profile", format!("cannot encode the trace: {e}")))?;
    std::fs::write(path, text)
        .map_err(|e| Error::invalid("profile", format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use autograd::profiler::Phase;

    #[test]
    fn trace_events_carry_each_span() {
        let span = |name, phase, depth| Span {
            name,
            shapes: vec![vec![2, 3]],
            phase,
            depth,
            thread: 1,
            start_ns: 1500,
            duration_ns: 2500,
            bytes: 24,
        };
        let v = trace_json(&[
            span("matmul", Phase::Forward, 0),
            span("matmul", Phase::Backward, 0),
        ]);
        let events = v["traceEvents"].as_array().expect("an array");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["cat"], "forward");
        assert_eq!(events[1]["cat"], "backward");
        assert_eq!(events[0]["ph"], "X");
        assert_eq!(events[0]["ts"], 1.5);
        assert_eq!(events[0]["dur"], 2.5);
        assert_eq!(events[0]["args"]["shapes"], json!([[2, 3]]));
    }
}
