//! Scratch memory kept between kernel calls.
//!
//! Allocating and zeroing a megabyte for every product or convolution chunk costs about as
//! much as the packing or im2col that fills it, so buffers are kept in a small per-thread cache
//! and reused. Their stale contents are never read: every user writes each element it later
//! reads. Buffers are handed out 64-byte aligned, so packed slivers line up with cache lines
//! and vector loads never straddle two lines.

use crate::float::Float;
use std::any::Any;
use std::cell::RefCell;

/// A buffer of at least the asked length, taken from this thread's cache and returned to it on
/// drop.
pub struct Scratch<T: 'static> {
    storage: Vec<T>,
    len: usize,
}

thread_local! {
    /// Spare buffers of any element type (each a `Vec<T>`), found by downcasting.
    static SPARE_BUFFERS: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// At most this many spare buffers are kept per thread: the matmul's A and B buffers and a
/// convolution's column and output buffers, for f32 and f64.
const MAX_SPARE_BUFFERS: usize = 8;

impl<T: Float> Scratch<T> {
    /// Elements of slack so the slice can start on a 64-byte boundary.
    const PAD: usize = 64 / std::mem::size_of::<T>();

    /// A buffer with room for `len` aligned elements, reusing a spare one if possible (the
    /// largest, so that a small request does not take the buffer a large one needs next).
    /// Its contents are unspecified.
    pub fn take(len: usize) -> Self {
        let spare = SPARE_BUFFERS.with(|spare| {
            let mut spare = spare.borrow_mut();
            let i = spare
                .iter()
                .enumerate()
                .filter_map(|(i, b)| b.downcast_ref::<Vec<T>>().map(|v| (v.len(), i)))
                .max()?
                .1;
            spare.swap_remove(i).downcast::<Vec<T>>().ok()
        });
        let mut storage = spare.map(|b| *b).unwrap_or_default();
        if storage.len() < len + Self::PAD {
            storage.resize(len + Self::PAD, T::ZERO);
        }
        Scratch { storage, len }
    }

    /// The `len` elements asked for, starting on a 64-byte boundary.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let start = self.storage.as_ptr().align_offset(64).min(Self::PAD);
        &mut self.storage[start..start + self.len]
    }

    /// The `len` elements asked for, read-only.
    pub fn as_slice(&self) -> &[T] {
        let start = self.storage.as_ptr().align_offset(64).min(Self::PAD);
        &self.storage[start..start + self.len]
    }
}

impl<T: 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        let storage = std::mem::take(&mut self.storage);
        // `try_with` fails only while the thread is shutting down; the buffer is then freed.
        let _ = SPARE_BUFFERS.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < MAX_SPARE_BUFFERS {
                spare.push(Box::new(storage));
            }
        });
    }
}
