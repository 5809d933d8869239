//! The fuzz entry points: the body of each cargo-fuzz target in `fuzz/fuzz_targets/`, one plain
//! function per target. The corpus replay test (`models/tests/fuzz_corpus.rs`) compiles this same
//! file as a module and runs every file of `fuzz/corpus/<target>/` through it, so that CI runs
//! exactly what the fuzzer ran. Each returns `Ok` or the reader's error as text; a panic, an abort
//! or an allocation over the fuzzer's limits is a finding (fuzz/RESULTS.md).
//!
//! - [`idx_raw`]: an IDX file as it is.
//! - [`idx_gzip`]: an IDX file through the gzip path (a gzip stream as it is; anything else is
//!   gzipped first, so that the bounded inflating reader sees valid streams of any content).
//! - [`checkpoint`]: a checkpoint, then what resuming it does (the model built from the file's
//!   config, its tensors loaded); the first byte chooses the bytes as they are or resealed
//!   ([`models::program::checkpoint::reseal`]: the checksum recomputed, so mutations reach the
//!   checks after it).
//! - [`config`]: `--set KEY=VALUE` lines over a model's default config, then the model built; the
//!   first byte chooses the model.
//!
//! The models are built under a host-memory budget ([`HOST_MEMORY_LIMIT`]): a valid config may
//! describe gigabytes of weights, which must be an error naming the op, not an allocation.

use autograd::{Error, Rng};
use models::program::{checkpoint as ckpt, data, run};
use models::registry;

/// The file name every reader is given, and that its errors must name.
pub const NAME: &str = "fuzz-input";

/// The host-memory budget the models are built under (256 MiB).
pub const HOST_MEMORY_LIMIT: usize = 256 << 20;

fn limit_host_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        autograd::set_host_memory_limit(Some(HOST_MEMORY_LIMIT));
    });
}

fn io(msg: String) -> String {
    Error::Io {
        path: NAME.into(),
        msg,
    }
    .to_string()
}

/// Target `idx_raw`: [`data::parse_idx`] on the bytes.
pub fn idx_raw(bytes: &[u8]) -> Result<(), String> {
    data::parse_idx(bytes, NAME)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Target `idx_gzip`: [`data::parse_idx`] on a gzip stream: the bytes when they start with the
/// gzip magic (1f 8b), else the bytes gzipped.
pub fn idx_gzip(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return idx_raw(bytes);
    }
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).map_err(|e| e.to_string())?;
    idx_raw(&gz.finish().map_err(|e| e.to_string())?)
}

/// Target `checkpoint`: the first byte even: [`ckpt::from_bytes`] on the rest; odd: on the rest
/// resealed ([`ckpt::reseal`]; as it is when it is no safetensors file). A checkpoint that reads
/// then goes where resuming it goes (`run::start`, `run::load`): its training settings, its
/// generator state, its model found in the registry, built from its config and given its tensors.
pub fn checkpoint(bytes: &[u8]) -> Result<(), String> {
    let Some((&mode, rest)) = bytes.split_first() else {
        return Ok(());
    };
    let resealed = if mode & 1 == 1 {
        ckpt::reseal(rest)
    } else {
        None
    };
    let ck =
        ckpt::from_bytes(resealed.as_deref().unwrap_or(rest), NAME).map_err(|e| e.to_string())?;
    let settings = serde_json::from_value::<run::Settings>(ck.meta.train.clone())
        .map_err(|e| io(format!("corrupt training settings in the checkpoint: {e}")));
    let rng =
        Rng::from_state(&ck.meta.rng).map_err(|e| io(format!("corrupt generator state: {e}")));
    let entry = registry::find(&ck.meta.model).map_err(|e| io(e.to_string()))?;
    limit_host_memory();
    let mut model = (entry.build)(&ck.meta.config, &mut Rng::new(0))
        .map_err(|e| io(format!("cannot build the model from its config: {e}")))?;
    model
        .load_state_dict(&ck.tensors, NAME)
        .map_err(|e| e.to_string())?;
    settings?;
    rng?;
    Ok(())
}

/// Target `config`: the first byte picks the model (`ENTRIES[byte % ENTRIES.len()]`); the rest,
/// UTF-8, is lines of `KEY=VALUE` ([`run::parse_set`]; empty lines skipped), set over the model's
/// default config ([`run::patch_config`]), from which the model is built.
pub fn config(bytes: &[u8]) -> Result<(), String> {
    let Some((&pick, rest)) = bytes.split_first() else {
        return Ok(());
    };
    let entry = registry::ENTRIES[usize::from(pick) % registry::ENTRIES.len()];
    let text = std::str::from_utf8(rest).map_err(|e| format!("not UTF-8: {e}"))?;
    let sets = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(run::parse_set)
        .collect::<Result<Vec<_>, String>>()?;
    let config = run::patch_config(entry.name, (entry.default_config)(), None, &sets)
        .map_err(|e| e.to_string())?;
    limit_host_memory();
    (entry.build)(&config, &mut Rng::new(0))
        .map(drop)
        .map_err(|e| e.to_string())
}
