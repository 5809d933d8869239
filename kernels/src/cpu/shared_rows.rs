//! One row-major buffer that several threads fill at once, each its own rows or rectangles.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// A row-major matrix (rows `width` apart) shared between threads that write disjoint parts
/// of it: rows (an LSTM sequence's blocks of batch rows) or rectangles (a matmul's tiles of C,
/// whose rows interleave in memory with their neighbours', which `&mut [T]` — one contiguous
/// range per borrower — cannot express). It is only a way to reach the `&mut [T]` it was made
/// from; the code that shares it keeps the parts disjoint.
pub struct SharedRows<'a, T> {
    ptr: *mut T,
    len: usize,
    width: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: threads only reach disjoint parts through it (the callers' contract).
unsafe impl<T: Send> Sync for SharedRows<'_, T> {}

impl<'a, T> SharedRows<'a, T> {
    /// Shares `buf`, whose rows are `width` elements apart.
    pub fn new(buf: &'a mut [T], width: usize) -> Self {
        SharedRows {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            width,
            _borrow: PhantomData,
        }
    }

    /// A buffer not yet initialised: the callers write every element before they read it.
    pub fn new_uninit(buf: &'a mut [MaybeUninit<T>], width: usize) -> Self {
        SharedRows {
            ptr: buf.as_mut_ptr().cast::<T>(),
            len: buf.len(),
            width,
            _borrow: PhantomData,
        }
    }

    /// The distance between rows.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows `first..first + count`, writable.
    ///
    /// # Safety
    /// No other reference to these rows may be live while the slice is.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn rows_mut(&self, first: usize, count: usize) -> &mut [T] {
        let (start, len) = self.range(first, count);
        // SAFETY: in bounds (checked); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// Rows `first..first + count`, read-only.
    ///
    /// # Safety
    /// No writable reference to these rows may be live while the slice is.
    pub unsafe fn rows(&self, first: usize, count: usize) -> &[T] {
        let (start, len) = self.range(first, count);
        // SAFETY: in bounds (checked); not written meanwhile by the caller's contract.
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }

    fn range(&self, first: usize, count: usize) -> (usize, usize) {
        assert!(
            (first + count) * self.width <= self.len,
            "SharedRows: rows {first}..{} out of range",
            first + count
        );
        (first * self.width, count * self.width)
    }

    /// The address of element (i, j) for a `rows x cols` rectangle there, checked to lie
    /// inside the buffer (writing through it is the caller's business).
    pub fn tile(&self, i: usize, j: usize, rows: usize, cols: usize) -> *mut T {
        assert!(rows > 0 && cols > 0 && j + cols <= self.width);
        assert!((i + rows - 1) * self.width + j + cols <= self.len);
        // SAFETY: in bounds by the checks above.
        unsafe { self.ptr.add(i * self.width + j) }
    }
}
