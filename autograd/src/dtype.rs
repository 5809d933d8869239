//! Element types of tensors and the bridge from a dtype tag to a typed buffer.

use crate::backend::CpuStorage;
use kernels::Float;

/// A tensor's element type, a run-time value (ops check that their operands agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit floats, what models train in.
    F32,
    /// 64-bit floats, what the gradient checks use.
    F64,
    /// bfloat16 (the `half` crate's `bf16`: f32's exponent, 8 significant bits), a storage
    /// type: [`Tensor::to_dtype`](crate::Tensor::to_dtype) to and from it, and matmul and the
    /// convolutions (conv2d, conv_transpose2d, masked, with their gradients) on it, which sum
    /// in f32 and round their result once. Every other op refuses it with an error naming the
    /// op; cast to f32 for those.
    BF16,
}

impl DType {
    /// "f32", "f64" or "bf16".
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
        }
    }
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::BF16 => 2,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust element type that a tensor can hold.
pub trait Element: Float + cpu_buffer::CpuElement {
    /// The dtype tag of this element type.
    const DTYPE: DType;
}

/// How an element type finds its buffer inside a CPU storage: sealed (the trait is not
/// nameable outside the crate), since storage is the engine's own business.
pub(crate) mod cpu_buffer {
    use crate::backend::CpuStorage;

    pub trait CpuElement: Sized {
        /// The typed buffer inside a CPU `storage`; `None` when the storage holds another dtype.
        fn slice(storage: &CpuStorage) -> Option<&[Self]>;
        fn slice_mut(storage: &mut CpuStorage) -> Option<&mut [Self]>;
        fn into_storage(data: Vec<Self>) -> CpuStorage;
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

impl cpu_buffer::CpuElement for f32 {
    fn slice(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(storage: &mut CpuStorage) -> Option<&mut [Self]> {
        match storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(data: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(data)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
}

impl cpu_buffer::CpuElement for f64 {
    fn slice(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(storage: &mut CpuStorage) -> Option<&mut [Self]> {
        match storage {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(data: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(data)
    }
}
