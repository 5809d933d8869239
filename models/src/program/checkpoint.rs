//! Checkpoints: safetensors files holding a model's weights (PyTorch-style names, so
//! `safetensors.torch.load_file` reads them), its optimizer state, and in the file's metadata
//! what is needed to rebuild and resume it: the model's name, the config that built it, the
//! training options, the step, the epoch, the position inside the epoch and the generator's
//! state. A checksum over the tensors and the metadata catches damage (or an edit) the
//! safetensors header cannot see.
//!
//! Writes are atomic ([`write_atomic`]): a temporary file beside the target, synced, then renamed
//! over it, so a crash or Ctrl-C never leaves half a checkpoint.

use crate::program::fnv::Fnv1a;
use autograd::optim::Optimizer;
use autograd::{DType, Error, Result, Tensor};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;

/// The value of the `format` metadata key; files without it are not genzoo checkpoints.
pub const FORMAT: &str = "genzoo-checkpoint-2";
/// The earlier format, still read: its checksum covers the tensors only.
const FORMAT_1: &str = "genzoo-checkpoint-1";

/// What a checkpoint says about itself, besides its tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// The registry name of the model (`genzoo list`).
    pub model: String,
    /// The config that built the model (model-specific JSON).
    pub config: serde_json::Value,
    /// The training options of the run (batch size, seed, data, ...), as JSON.
    pub train: serde_json::Value,
    /// Optimizer steps taken (batches trained on).
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Batches done in the epoch after `epoch` (0 at an epoch boundary; more after a Ctrl-C).
    pub batch: u64,
    /// The training generator's state ([`autograd::Rng::state`]).
    pub rng: Vec<u64>,
}

/// A checkpoint: metadata and named tensors (weights, then optimizer state).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub meta: Meta,
    pub tensors: Vec<(String, Tensor)>,
}

fn io_err(path: &str, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// then renamed over `path`. Readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.display().to_string();
    let file_name = path
        .file_name()
        .ok_or_else(|| io_err(&name, "not a file path"))?
        .to_string_lossy()
        .to_string();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(&name, format!("cannot write: {e}"))
    })
}

/// FNV-1a (64-bit) over every tensor's name, dtype, shape and bytes, in name order, then (from
/// format 2 on) every metadata entry but the checksum itself, in key order: everything resume
/// reads, so an edited step or generator state is caught as surely as a flipped bit.
fn checksum(
    entries: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    meta: Option<&BTreeMap<String, String>>,
) -> u64 {
    let mut h = Fnv1a::new();
    let mut eat = |bytes: &[u8]| h.eat(bytes);
    let mut sorted: Vec<&(String, Dtype, Vec<usize>, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, dtype, shape, data) in sorted {
        eat(name.as_bytes());
        eat(&[0, if *dtype == Dtype::F64 { 64 } else { 32 }]);
        for d in shape {
            eat(&(*d as u64).to_le_bytes());
        }
        eat(data);
    }
    for (k, v) in meta.into_iter().flatten() {
        if k != "checksum" {
            eat(k.as_bytes());
            eat(&[0]);
            eat(v.as_bytes());
            eat(&[0]);
        }
    }
    h.finish()
}

fn tensor_bytes(t: &Tensor) -> (Dtype, Vec<u8>) {
    match t.dtype() {
        DType::F32 => (
            Dtype::F32,
            t.to_vec_f32()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::F64 => (
            Dtype::F64,
            t.to_vec_f64()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        // no model keeps bf16 state; a bf16 tensor is saved widened to f32, exactly
        DType::BF16 => (
            Dtype::F32,
            t.to_vec_f32()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
    }
}

/// The checkpoint as the bytes of a safetensors file. Errors on a repeated tensor name.
pub fn to_bytes(ckpt: &Checkpoint) -> Result<Vec<u8>> {
    let mut entries = Vec::with_capacity(ckpt.tensors.len());
    let mut seen = std::collections::HashSet::new();
    for (name, t) in &ckpt.tensors {
        if name.is_empty() || name.starts_with("__") {
            return Err(Error::invalid(
                "checkpoint",
                format!("tensor name {name:?} is reserved or empty"),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(
                "checkpoint",
                format!("tensor name {name:?} appears twice"),
            ));
        }
        let (dtype, data) = tensor_bytes(t);
        entries.push((name.clone(), dtype, t.shape().to_vec(), data));
    }
    let m = &ckpt.meta;
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("model".to_string(), m.model.clone());
    meta.insert("config".to_string(), m.config.to_string());
    meta.insert("train".to_string(), m.train.to_string());
    meta.insert("step".to_string(), m.step.to_string());
    meta.insert("epoch".to_string(), m.epoch.to_string());
    meta.insert("batch".to_string(), m.batch.to_string());
    meta.insert(
        "rng".to_string(),
        m.rng
            .iter()
            .map(|w| format!("{w:016x}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let sum = checksum(&entries, Some(&meta));
    meta.insert("checksum".to_string(), format!("{sum:016x}"));
    Ok(serialize(&mut entries, &meta))
}

/// The safetensors layout, written here so that the same checkpoint always gives the same bytes
/// (the crate's writer orders the metadata by a randomly seeded hash map): 8 bytes of header
/// length (little-endian), the JSON header with sorted keys padded with spaces to a multiple of
/// 8 bytes, then the tensors' bytes in name order.
fn serialize(
    entries: &mut [(String, Dtype, Vec<usize>, Vec<u8>)],
    meta: &BTreeMap<String, String>,
) -> Vec<u8> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0usize;
    for (name, dtype, shape, data) in entries.iter() {
        let dtype = if *dtype == Dtype::F64 { "F64" } else { "F32" };
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, _, data) in entries.iter() {
        out.extend_from_slice(data);
    }
    out
}

/// Writes the checkpoint to `path` atomically.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    write_atomic(path, &to_bytes(ckpt)?)
}

/// Reads the checkpoint at `path`.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| io_err(&name, format!("cannot read: {e}")))?;
    from_bytes(&bytes, &name)
}

/// Parses checkpoint bytes; `name` (the file) is named in every error.
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        io_err(
            name,
            format!(
                "corrupt or not a safetensors file ({} bytes): {e}",
                bytes.len()
            ),
        )
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| io_err(name, format!("corrupt safetensors header: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |key: &str| -> Result<&String> {
        meta.get(key).ok_or_else(|| {
            io_err(
                name,
                format!(
                    "a safetensors file but not a genzoo checkpoint: no {key:?} in its metadata"
                ),
            )
        })
    };
    let format = get("format")?;
    if format != FORMAT && format != FORMAT_1 {
        return Err(io_err(
            name,
            format!("checkpoint format {format:?} is not {FORMAT:?} (written by another genzoo version?)"),
        ));
    }
    let json = |key: &str| -> Result<serde_json::Value> {
        serde_json::from_str(get(key)?).map_err(|e| {
            io_err(
                name,
                format!("corrupt checkpoint: metadata {key:?} is not JSON: {e}"),
            )
        })
    };
    let int = |key: &str| -> Result<u64> {
        let v = get(key)?;
        v.parse().map_err(|_| {
            io_err(
                name,
                format!("corrupt checkpoint: metadata {key:?} = {v:?} is not a whole number"),
            )
        })
    };
    let rng_text = get("rng")?;
    let rng = rng_text
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| u64::from_str_radix(w, 16))
        .collect::<std::result::Result<Vec<u64>, _>>()
        .map_err(|_| {
            io_err(
                name,
                format!("corrupt checkpoint: metadata \"rng\" = {rng_text:?}"),
            )
        })?;
    let meta_out = Meta {
        model: get("model")?.clone(),
        config: json("config")?,
        train: json("train")?,
        step: int("step")?,
        epoch: int("epoch")?,
        batch: int("batch")?,
        rng,
    };
    let mut entries = Vec::new();
    for (tname, view) in st.tensors() {
        let dtype = view.dtype();
        if !matches!(dtype, Dtype::F32 | Dtype::F64) {
            return Err(io_err(
                name,
                format!(
                    "tensor {tname} has dtype {dtype:?}; genzoo checkpoints hold F32 and F64 only"
                ),
            ));
        }
        entries.push((tname, dtype, view.shape().to_vec(), view.data().to_vec()));
    }
    let stored = get("checksum")?;
    let covered: BTreeMap<String, String> =
        meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let with_meta = (format == FORMAT).then_some(&covered);
    let actual = format!("{:016x}", checksum(&entries, with_meta));
    if *stored != actual {
        return Err(io_err(
            name,
            format!("corrupt checkpoint: the checksum of its tensors and settings is {actual}, the file says {stored} (the file was damaged or edited)"),
        ));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tensors = Vec::with_capacity(entries.len());
    for (tname, dtype, shape, data) in entries {
        let t = if dtype == Dtype::F64 {
            let v: Vec<f64> = data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            Tensor::from_vec(v, &shape)
        } else {
            let v: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                .collect();
            Tensor::from_vec(v, &shape)
        }
        .map_err(|e| io_err(name, format!("tensor {tname}: {e}")))?;
        tensors.push((tname, t));
    }
    Ok(Checkpoint {
        meta: meta_out,
        tensors,
    })
}

/// For the `checkpoint` fuzz target (fuzz/) only: `bytes` (a safetensors file) with its
/// metadata's "checksum" set to what [`from_bytes`] computes for it, so that mutated inputs get
/// past the checksum to the checks after it. The header is laid out again (sorted keys, padded
/// to 8 bytes) with nothing else changed; the tensors' bytes are kept as they are. `None` when
/// `bytes` is not a safetensors file. A resealed file no longer shows damage: never call this
/// on a real checkpoint.
pub fn reseal(bytes: &[u8]) -> Option<Vec<u8>> {
    let st = SafeTensors::deserialize(bytes).ok()?;
    let (n, header) = SafeTensors::read_metadata(bytes).ok()?;
    let meta: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let entries: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let format_2 = meta.get("format").map(String::as_str) != Some(FORMAT_1);
    let sum = checksum(&entries, format_2.then_some(&meta));
    let mut json: serde_json::Value = serde_json::from_slice(bytes.get(8..8 + n)?).ok()?;
    json.as_object_mut()?
        .entry("__metadata__")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()?
        .insert("checksum".into(), format!("{sum:016x}").into());
    let mut h = json.to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(bytes.get(8 + n..)?);
    Some(out)
}

/// A model's whole state as a checkpoint holds it: its weights, then each optimizer's state
/// under "{prefix}.{param}.{key}".
pub fn state_dict(
    weights: Vec<(String, Tensor)>,
    optimizers: Vec<(&'static str, &dyn Optimizer)>,
) -> Vec<(String, Tensor)> {
    let mut all = weights;
    for (prefix, opt) in optimizers {
        all.extend(
            opt.state_tensors()
                .into_iter()
                .map(|(n, t)| (format!("{prefix}.{n}"), t)),
        );
    }
    all
}

/// Loads what [`state_dict`] saved into the `weights` and `optimizers` of the `model` model.
/// Every weight must be present with its shape and dtype and no unknown name may be left over;
/// optimizer state may be absent (a weights-only file), then the optimizers start fresh.
/// `source` (the file) is named in errors. The names and shapes of the weights are checked
/// before anything is loaded; an optimizer whose state does not fit keeps its own (and the
/// weights stay as they were).
pub fn load_state_dict(
    model: &str,
    weights: Vec<(String, Tensor)>,
    optimizers: Vec<(&'static str, &mut dyn Optimizer)>,
    state: &[(String, Tensor)],
    source: &str,
) -> Result<()> {
    let err = |msg: String| Error::Io {
        path: source.to_string(),
        msg,
    };
    let mut by_name: HashMap<&str, &Tensor> = HashMap::new();
    for (n, t) in state {
        by_name.insert(n.as_str(), t);
    }
    let mut missing = Vec::new();
    for (n, w) in &weights {
        match by_name.get(n.as_str()) {
            None => missing.push(n.clone()),
            Some(t) if t.shape() != w.shape() || t.dtype() != w.dtype() => {
                return Err(err(format!(
                    "{n} is {:?} {} in the file but {:?} {} in the {model} model (a checkpoint of another config or model?)",
                    t.shape(),
                    t.dtype(),
                    w.shape(),
                    w.dtype()
                )))
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(err(format!(
            "not a checkpoint of this {model} model: it lacks {} of its {} weights ({}{})",
            missing.len(),
            weights.len(),
            missing
                .iter()
                .take(4)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() > 4 { ", ..." } else { "" }
        )));
    }
    let mut used: HashSet<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
    let prefixes: Vec<&'static str> = optimizers.iter().map(|(p, _)| *p).collect();
    let mut opt_states: Vec<Vec<(String, Tensor)>> = vec![Vec::new(); prefixes.len()];
    for (n, t) in state {
        if used.contains(n.as_str()) {
            continue;
        }
        let hit = prefixes
            .iter()
            .position(|p| n.strip_prefix(p).is_some_and(|rest| rest.starts_with('.')));
        match hit {
            Some(k) => {
                opt_states[k].push((n[prefixes[k].len() + 1..].to_string(), t.clone()));
                used.insert(n.as_str());
            }
            None => {
                return Err(err(format!(
                    "{n} is not a weight or optimizer state of the {model} model (a checkpoint of another model?)"
                )))
            }
        }
    }
    for ((prefix, opt), st) in optimizers.into_iter().zip(&opt_states) {
        opt.load_state(st)
            .map_err(|e| err(format!("{prefix}: {e}")))?;
    }
    for (n, w) in &weights {
        if let Some(t) = by_name.get(n.as_str()) {
            w.copy_from(t).map_err(|e| err(format!("{n}: {e}")))?;
        }
    }
    Ok(())
}

/// Reads a model's config from JSON (a checkpoint's [`Meta::config`], or the command line's),
/// with the error naming the model and the problem (an unknown key, a value of the wrong type).
pub fn parse_config<T: serde::de::DeserializeOwned>(
    model: &str,
    config: &serde_json::Value,
) -> Result<T> {
    serde_json::from_value(config.clone())
        .map_err(|e| Error::invalid("config", format!("{model}: {e} (config {config})")))
}

#[cfg(test)]
mod tests {

    /// `bytes` (a safetensors file) with metadata `key` set to `value`, re-laid out.
    fn edit_metadata(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        header["__metadata__"][key] = serde_json::Value::String(value.into());
        let mut h = header.to_string().into_bytes();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&bytes[8 + n..]);
        out
    }
    use super::*;
    use autograd::Rng;

    fn sample() -> Checkpoint {
        let mut rng = Rng::new(1);
        rng.normal();
        Checkpoint {
            meta: Meta {
                model: "classifier".into(),
                config: serde_json::json!({"lr": 0.001, "width": [20, 50]}),
                train: serde_json::json!({"batch_size": 64, "seed": 0}),
                step: 141,
                epoch: 1,
                batch: 0,
                rng: rng.state(),
            },
            tensors: vec![
                (
                    "conv1.weight".into(),
                    Tensor::randn(&[4, 1, 3, 3], DType::F32, &mut rng),
                ),
                (
                    "fc.bias".into(),
                    Tensor::from_vec(vec![f32::MIN_POSITIVE, -0.0, 1e-45, 3.5], &[4]).unwrap(),
                ),
                (
                    "optimizer.fc.bias.step".into(),
                    Tensor::scalar(141.0, DType::F64),
                ),
            ],
        }
    }

    #[test]
    fn round_trip_is_bit_for_bit() {
        let c = sample();
        let bytes = to_bytes(&c).unwrap();
        let back = from_bytes(&bytes, "x.safetensors").unwrap();
        assert_eq!(back.meta, c.meta);
        assert_eq!(back.tensors.len(), 3);
        for (name, t) in &c.tensors {
            let (_, u) = back.tensors.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!(u.shape(), t.shape());
            assert_eq!(u.dtype(), t.dtype());
            let bits =
                |t: &Tensor| -> Vec<u64> { t.to_vec_f64().iter().map(|v| v.to_bits()).collect() };
            assert_eq!(bits(u), bits(t), "{name}");
        }
        assert_eq!(to_bytes(&back).unwrap(), bytes);
        // the same file through the filesystem, written atomically
        let dir = std::env::temp_dir().join(format!("genzoo-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        save(&path, &c).unwrap();
        save(&path, &c).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_gets_clear_errors() {
        let bytes = to_bytes(&sample()).unwrap();
        // a flipped bit in the tensor data: only the checksum sees it
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x10;
        let e = from_bytes(&flipped, "run/checkpoint.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("run/checkpoint.safetensors") && e.contains("checksum"),
            "{e}"
        );
        // an edited setting (the step, or the generator's state) in the metadata: the checksum
        // covers it too (format 2)
        for (key, value) in [("step", "142"), ("rng", "0000000000000001")] {
            let e = from_bytes(&edit_metadata(&bytes, key, value), "ck")
                .unwrap_err()
                .to_string();
            assert!(e.contains("checksum") && e.contains("edited"), "{key}: {e}");
        }
        // a format-1 file (its checksum over the tensors alone) still loads
        let entries: Vec<_> = sample()
            .tensors
            .iter()
            .map(|(n, t)| {
                let (dtype, data) = tensor_bytes(t);
                (n.clone(), dtype, t.shape().to_vec(), data)
            })
            .collect();
        let v1_sum = format!("{:016x}", checksum(&entries, None));
        let v1 = edit_metadata(
            &edit_metadata(&bytes, "format", FORMAT_1),
            "checksum",
            &v1_sum,
        );
        assert_eq!(from_bytes(&v1, "ck").unwrap().meta.step, sample().meta.step);
        // truncated
        let e = from_bytes(&bytes[..bytes.len() - 10], "ck")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ck") && e.contains("corrupt"), "{e}");
        // garbage, and empty
        for junk in [&b"hello world, not a checkpoint"[..], &[][..]] {
            let e = from_bytes(junk, "ck").unwrap_err().to_string();
            assert!(e.contains("not a safetensors file"), "{e}");
        }
        // a valid safetensors file without our metadata
        let plain = safetensors::serialize(
            [(
                "w",
                safetensors::tensor::TensorView::new(Dtype::F32, vec![1], &[0, 0, 0, 0]).unwrap(),
            )],
            None,
        )
        .unwrap();
        let e = from_bytes(&plain, "torch.safetensors")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a genzoo checkpoint"), "{e}");
        let missing = std::path::Path::new("/nonexistent/genzoo/ck.safetensors");
        let e = load(missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/genzoo/ck.safetensors"), "{e}");
    }
}
