//! The host-memory budget: how many bytes the CPU tensors' storage holds, and an optional limit
//! on it that every op checks before it allocates its output, so that running out of memory is
//! an [`Error::OutOfMemory`] naming the op, the shape and the bytes, not an abort in the
//! allocator or a visit from the kernel's OOM killer.
//!
//! What is counted: every CPU storage a tensor holds (op outputs, parameters, gradients,
//! optimizer state), from the moment a tensor takes it until its last view drops. What is not:
//! a kernel's scratch inside one call (packed panels, column buffers), host copies on their way
//! to or from a CUDA device (whose own allocator reports [`crate::device_memory`]), and anything
//! outside tensors. The limit is process-wide, as the memory is; no limit unless a program sets
//! one (genzoo sets it from the memory the machine has free when it starts).

use crate::dtype::DType;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes the live CPU storages hold.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The limit in bytes; `usize::MAX` for none.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// What the CPU tensors hold, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostMemory {
    /// In live tensors' storage.
    pub current_bytes: usize,
    /// The most `current_bytes` has been.
    pub peak_bytes: usize,
    /// The budget ops are admitted under, when one is set.
    pub limit_bytes: Option<usize>,
}

/// Sets (or, with `None`, removes) the limit on the bytes CPU tensors may hold; returns the
/// previous limit. An op whose output would take the total over it fails instead of allocating.
pub fn set_host_memory_limit(limit: Option<usize>) -> Option<usize> {
    let old = LIMIT.swap(limit.unwrap_or(usize::MAX), Ordering::Relaxed);
    (old != usize::MAX).then_some(old)
}

/// The CPU tensors' memory now, at its peak, and the limit.
pub fn host_memory() -> HostMemory {
    let limit = LIMIT.load(Ordering::Relaxed);
    HostMemory {
        current_bytes: LIVE.load(Ordering::Relaxed),
        peak_bytes: PEAK.load(Ordering::Relaxed),
        limit_bytes: (limit != usize::MAX).then_some(limit),
    }
}

/// Starts the peak over from what is held now (e.g. between the phases of a benchmark).
pub fn reset_host_memory_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Checks, before `op` allocates an output of `elements` elements of `dtype` on the host, that
/// its bytes are a number at all and fit under the limit beside what tensors already hold.
pub(crate) fn admit(op: &'static str, elements: usize, dtype: DType) -> Result<()> {
    let Some(bytes) = elements.checked_mul(dtype.size_in_bytes()) else {
        return Err(Error::OutOfMemory {
            op,
            msg: format!("{elements} {dtype} elements do not fit in the address space"),
        });
    };
    let limit = LIMIT.load(Ordering::Relaxed);
    let live = LIVE.load(Ordering::Relaxed);
    if live.saturating_add(bytes) > limit {
        return Err(Error::OutOfMemory {
            op,
            msg: format!(
                "its output of {elements} {dtype} elements needs {:.1} MiB; tensors already \
                 hold {:.1} MiB of the {:.1} MiB host-memory limit",
                mib(bytes),
                mib(live),
                mib(limit)
            ),
        });
    }
    Ok(())
}

/// One storage's share of [`LIVE`], given back when it drops.
#[derive(Debug)]
pub(crate) struct Charge(usize);

impl Charge {
    pub(crate) fn new(bytes: usize) -> Charge {
        let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(live, Ordering::Relaxed);
        Charge(bytes)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        LIVE.fetch_sub(self.0, Ordering::Relaxed);
    }
}
