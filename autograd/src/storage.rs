//! Where a tensor's elements live. Views (reshape, permute, narrow, expand) share one storage and
//! differ only in their layout. Only the CPU exists so far; a CUDA variant slots in beside it.

use crate::dtype::{DType, Element};

#[derive(Clone, Debug)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The typed buffer. Callers have checked the dtype, so a mismatch is a bug in the engine.
    pub fn as_slice<T: Element>(&self) -> &[T] {
        T::slice(self).unwrap_or_else(|| {
            panic!(
                "engine bug: storage holds {}, asked for {}",
                self.dtype(),
                T::DTYPE
            )
        })
    }

    pub fn as_mut_slice<T: Element>(&mut self) -> &mut [T] {
        let dtype = self.dtype();
        T::slice_mut(self)
            .unwrap_or_else(|| panic!("engine bug: storage holds {dtype}, asked for {}", T::DTYPE))
    }

    pub fn filled(dtype: DType, len: usize, value: f64) -> Storage {
        match dtype {
            DType::F32 => Storage::F32(vec![value as f32; len]),
            DType::F64 => Storage::F64(vec![value; len]),
        }
    }
}
