//! Element types of tensors and the bridge from a dtype tag to a typed buffer.

use crate::storage::Storage;
use kernels::Float;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust element type that a tensor can hold.
pub trait Element: Float {
    const DTYPE: DType;
    /// The typed buffer inside `storage`; `None` when the storage holds another dtype.
    fn slice(storage: &Storage) -> Option<&[Self]>;
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]>;
    fn into_storage(data: Vec<Self>) -> Storage;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn slice(storage: &Storage) -> Option<&[Self]> {
        match storage {
            Storage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
        match storage {
            Storage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(data: Vec<Self>) -> Storage {
        Storage::F32(data)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn slice(storage: &Storage) -> Option<&[Self]> {
        match storage {
            Storage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
        match storage {
            Storage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(data: Vec<Self>) -> Storage {
        Storage::F64(data)
    }
}
