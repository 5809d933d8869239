//! Elementwise kernels on the GPU: the CUDA twins of `cpu::elementwise` (same kinds, same
//! formulas), from `elementwise.cu`.

use super::{grid_for, Gpu, GpuBuffer, GpuError};
use crate::desc::{BinaryKind, UnaryKind};
use crate::float::Float;
use cudarc::driver::{DeviceRepr, ValidAsZeroBits};

pub(crate) const MODULE: &str = "elementwise";
pub(crate) const SOURCE: &str = include_str!("elementwise.cu");

/// The most axes a broadcasting view may have on the GPU (`MAX_RANK` in the .cu file).
pub const MAX_RANK: usize = 6;

/// An element type with GPU kernels: the suffix of its kernels' names.
pub trait GpuFloat: Float + DeviceRepr + ValidAsZeroBits + Default {
    const SUFFIX: &'static str;
}

impl GpuFloat for f32 {
    const SUFFIX: &'static str = "f32";
}

impl GpuFloat for f64 {
    const SUFFIX: &'static str = "f64";
}

/// The kind's code in `unary_op` and its two parameters.
fn unary_code(kind: UnaryKind) -> (i32, f64, f64) {
    match kind {
        UnaryKind::Neg => (0, 0.0, 0.0),
        UnaryKind::Exp => (1, 0.0, 0.0),
        UnaryKind::Log => (2, 0.0, 0.0),
        UnaryKind::Sqrt => (3, 0.0, 0.0),
        UnaryKind::Abs => (4, 0.0, 0.0),
        UnaryKind::Sigmoid => (5, 0.0, 0.0),
        UnaryKind::Tanh => (6, 0.0, 0.0),
        UnaryKind::Relu => (7, 0.0, 0.0),
        UnaryKind::LeakyRelu(s) => (8, s, 0.0),
        UnaryKind::Softplus => (9, 0.0, 0.0),
        UnaryKind::Elu(a) => (10, a, 0.0),
        UnaryKind::Powf(p) => (11, p, 0.0),
        UnaryKind::Clamp(lo, hi) => (12, lo, hi),
        UnaryKind::AddScalar(c) => (13, c, 0.0),
        UnaryKind::MulScalar(c) => (14, c, 0.0),
        UnaryKind::Sign => (15, 0.0, 0.0),
        UnaryKind::GtScalar(c) => (16, c, 0.0),
        UnaryKind::InRange(lo, hi) => (17, lo, hi),
    }
}

/// The kind's code in `binary_op` and its parameter.
fn binary_code(kind: BinaryKind) -> (i32, f64) {
    match kind {
        BinaryKind::Add => (0, 0.0),
        BinaryKind::Sub => (1, 0.0),
        BinaryKind::Mul => (2, 0.0),
        BinaryKind::Div => (3, 0.0),
        BinaryKind::Maximum => (4, 0.0),
        BinaryKind::Minimum => (5, 0.0),
        BinaryKind::Eq => (6, 0.0),
        BinaryKind::Gt => (7, 0.0),
        BinaryKind::Ge => (8, 0.0),
        BinaryKind::Lt => (9, 0.0),
        BinaryKind::LeakyReluGrad(slope) => (10, slope),
    }
}

/// `out[i] = kind(x[i])` for the first `n` elements (both buffers hold at least `n`).
pub fn unary_into<T: GpuFloat>(
    gpu: &Gpu,
    x: &GpuBuffer<T>,
    out: &mut GpuBuffer<T>,
    n: usize,
    kind: UnaryKind,
) -> Result<(), GpuError> {
    if x.len() < n || out.len() < n {
        return Err(GpuError::Driver(format!(
            "unary {}: buffers of {} and {} elements for {n}",
            kind.name(),
            x.len(),
            out.len()
        )));
    }
    if n == 0 {
        return Ok(());
    }
    let f = gpu.kernel(MODULE, SOURCE, &format!("unary_{}", T::SUFFIX))?;
    let (code, p0, p1) = unary_code(kind);
    let (n64, p0, p1) = (n as u64, T::from_f64(p0), T::from_f64(p1));
    let mut launch = gpu.launch(&f);
    launch
        .buf(x)
        .buf_mut(out)
        .arg(&n64)
        .arg(&code)
        .arg(&p0)
        .arg(&p1);
    // SAFETY: the kernel reads n elements of x and writes n of out, both checked above.
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}

/// A strided view of a device buffer: its shape, strides and offset, in elements.
#[derive(Clone, Debug)]
pub struct GpuView<'a, T> {
    pub data: &'a GpuBuffer<T>,
    pub strides: &'a [usize],
    pub offset: usize,
}

/// The launch argument describing a broadcast (`Broadcast` in the .cu file).
#[repr(C)]
#[derive(Clone, Copy)]
struct Broadcast {
    shape: [i64; MAX_RANK],
    a: [i64; MAX_RANK],
    b: [i64; MAX_RANK],
    offset_a: i64,
    offset_b: i64,
    rank: i32,
}

// SAFETY: a plain #[repr(C)] struct of integers, laid out as the kernel's `Broadcast`.
unsafe impl DeviceRepr for Broadcast {}

/// `out = kind(a, b)` over `shape`, where both views already have `shape` (stride 0 along
/// broadcast axes); `out` is contiguous.
pub fn binary_into<T: GpuFloat>(
    gpu: &Gpu,
    a: GpuView<T>,
    b: GpuView<T>,
    shape: &[usize],
    out: &mut GpuBuffer<T>,
    kind: BinaryKind,
) -> Result<(), GpuError> {
    let n: usize = shape.iter().product();
    if shape.len() > MAX_RANK || a.strides.len() != shape.len() || b.strides.len() != shape.len() {
        return Err(GpuError::Driver(format!(
            "binary {}: shape {shape:?} with strides {:?} and {:?} (at most {MAX_RANK} axes)",
            kind.name(),
            a.strides,
            b.strides
        )));
    }
    let reach = |v: &GpuView<T>| {
        v.offset
            + shape
                .iter()
                .zip(v.strides)
                .map(|(&d, &s)| d.saturating_sub(1) * s)
                .sum::<usize>()
    };
    if n > 0 && (reach(&a) >= a.data.len() || reach(&b) >= b.data.len() || out.len() < n) {
        return Err(GpuError::Driver(format!(
            "binary {}: a view of shape {shape:?} reaches past its buffer",
            kind.name()
        )));
    }
    if n == 0 {
        return Ok(());
    }
    let mut s = Broadcast {
        shape: [1; MAX_RANK],
        a: [0; MAX_RANK],
        b: [0; MAX_RANK],
        offset_a: a.offset as i64,
        offset_b: b.offset as i64,
        rank: shape.len() as i32,
    };
    for (d, &len) in shape.iter().enumerate() {
        s.shape[d] = len as i64;
        s.a[d] = a.strides[d] as i64;
        s.b[d] = b.strides[d] as i64;
    }
    let f = gpu.kernel(MODULE, SOURCE, &format!("binary_{}", T::SUFFIX))?;
    let (code, p0) = binary_code(kind);
    let (n64, p0) = (n as u64, T::from_f64(p0));
    let mut launch = gpu.launch(&f);
    launch
        .buf(a.data)
        .buf(b.data)
        .buf_mut(out)
        .arg(&n64)
        .arg(&code)
        .arg(&p0)
        .arg(&s);
    // SAFETY: every index the kernel forms lies inside its buffer (checked above).
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}
