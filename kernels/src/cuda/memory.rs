//! Device memory: [`GpuBuffer`] and the caching allocator behind it (PyTorch's idea, kept
//! simple). A freed buffer's block goes back to its device's pool under its size class and the
//! next request of that class and element type reuses it, so a training loop that makes the
//! same tensors every step stops calling the driver after its first step, and the memory it
//! holds stays flat. Size classes are 2^k and 3·2^(k-1) elements (at least 128): a request is
//! rounded up by less than half. Blocks are kept until [`super::Gpu::empty_cache`]. The
//! emulated device runs the same pool over host memory, so CI exercises it.

use cudarc::driver::CudaSlice;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// What a device's allocator holds, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// In live buffers (their whole blocks, size classes included).
    pub current_bytes: usize,
    /// The most `current_bytes` has been since the device was opened.
    pub peak_bytes: usize,
    /// In freed blocks kept for reuse.
    pub cached_bytes: usize,
    /// Blocks obtained from the driver (or the host, emulated) so far.
    pub allocations: u64,
}

/// The block behind a buffer.
pub(super) enum Memory<T> {
    Driver(CudaSlice<T>),
    Emulated(Vec<T>),
}

impl<T> Memory<T> {
    /// Elements in the block (its size class).
    fn capacity(&self) -> usize {
        match self {
            Memory::Driver(s) => s.len(),
            Memory::Emulated(v) => v.len(),
        }
    }
}

/// Freed blocks by (element type, size class), and the statistics.
#[derive(Default)]
pub(super) struct Pool {
    free: HashMap<(TypeId, usize), Vec<Box<dyn Any + Send>>>,
    stats: MemoryStats,
}

pub(super) type SharedPool = Arc<Mutex<Pool>>;

fn lock(pool: &SharedPool) -> std::sync::MutexGuard<'_, Pool> {
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

/// The size class of a request of `len` elements.
pub(super) fn size_class(len: usize) -> usize {
    if len <= 128 {
        return 128;
    }
    let p = len.next_power_of_two();
    if len <= p / 4 * 3 {
        p / 4 * 3
    } else {
        p
    }
}

impl Pool {
    /// A freed block of this type and class, if one is cached.
    pub(super) fn reuse<T: Send + 'static>(pool: &SharedPool, class: usize) -> Option<Memory<T>> {
        let mut p = lock(pool);
        let block = p.free.get_mut(&(TypeId::of::<T>(), class))?.pop()?;
        let memory = *block.downcast::<Memory<T>>().ok()?;
        let bytes = class * std::mem::size_of::<T>();
        p.stats.cached_bytes -= bytes;
        p.stats.current_bytes += bytes;
        p.stats.peak_bytes = p.stats.peak_bytes.max(p.stats.current_bytes);
        Some(memory)
    }

    /// Counts a block just obtained from the driver.
    pub(super) fn allocated<T>(pool: &SharedPool, class: usize) {
        let mut p = lock(pool);
        p.stats.current_bytes += class * std::mem::size_of::<T>();
        p.stats.peak_bytes = p.stats.peak_bytes.max(p.stats.current_bytes);
        p.stats.allocations += 1;
    }

    fn give_back<T: Send + 'static>(pool: &SharedPool, memory: Memory<T>) {
        let class = memory.capacity();
        let bytes = class * std::mem::size_of::<T>();
        let mut p = lock(pool);
        p.stats.current_bytes -= bytes;
        p.stats.cached_bytes += bytes;
        p.free
            .entry((TypeId::of::<T>(), class))
            .or_default()
            .push(Box::new(memory));
    }

    pub(super) fn stats(pool: &SharedPool) -> MemoryStats {
        lock(pool).stats
    }

    /// Drops every cached block (the driver frees them).
    pub(super) fn empty(pool: &SharedPool) {
        let mut p = lock(pool);
        p.free.clear();
        p.stats.cached_bytes = 0;
    }
}

/// Elements in a device's memory: `len` of them at the start of a pooled block.
pub struct GpuBuffer<T> {
    memory: Option<Memory<T>>,
    len: usize,
    pool: SharedPool,
    /// `Pool::give_back` for T, fixed where T is known to be a poolable type
    give_back: fn(&SharedPool, Memory<T>),
}

impl<T: Send + 'static> GpuBuffer<T> {
    pub(super) fn new(memory: Memory<T>, len: usize, pool: SharedPool) -> GpuBuffer<T> {
        GpuBuffer {
            memory: Some(memory),
            len,
            pool,
            give_back: Pool::give_back::<T>,
        }
    }
}

impl<T> GpuBuffer<T> {
    pub(super) fn memory(&self) -> &Memory<T> {
        self.memory.as_ref().expect("a live buffer holds its block")
    }

    pub(super) fn memory_mut(&mut self) -> &mut Memory<T> {
        self.memory.as_mut().expect("a live buffer holds its block")
    }

    /// Elements in the buffer (its block may be larger).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T> Drop for GpuBuffer<T> {
    fn drop(&mut self) {
        if let Some(memory) = self.memory.take() {
            (self.give_back)(&self.pool, memory);
        }
    }
}

impl<T> fmt::Debug for GpuBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.memory() {
            Memory::Driver(_) => "device",
            Memory::Emulated(_) => "emulated",
        };
        write!(f, "GpuBuffer({} elements, {place})", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_less_than_half() {
        for len in [
            1,
            127,
            128,
            129,
            191,
            192,
            193,
            256,
            257,
            1000,
            1 << 20,
            (1 << 20) + 1,
        ] {
            let c = size_class(len);
            assert!(c >= len && c >= 128, "{len} -> {c}");
            assert!(len <= 128 || c * 2 < len * 3, "{len} -> {c}");
        }
        assert_eq!(size_class(192), 192);
        assert_eq!(size_class(193), 256);
    }
}
