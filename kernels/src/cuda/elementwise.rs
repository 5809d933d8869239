//! Elementwise kernels on the GPU: the CUDA twins of `cpu::elementwise` (same kinds, same
//! formulas), from `elementwise.cu`.

use super::{grid_for, Gpu, GpuBuffer, GpuError};
use crate::desc::{BinaryKind, UnaryKind};
use crate::float::Float;
use cudarc::driver::{DeviceRepr, ValidAsZeroBits};

pub(crate) const MODULE: &str = "elementwise";
pub(crate) const SOURCE: &str = concat!(include_str!("bf16.cuh"), include_str!("elementwise.cu"));

/// The most axes a broadcasting view may have on the GPU (`MAX_RANK` in the .cu file).
pub const MAX_RANK: usize = 6;

/// An element type a device buffer holds: the suffix of its kernels' names. f32 and f64 have
/// every kernel ([`GpuFloat`]); bf16 is storage, with copies, casts, fills, matmul and the
/// convolutions (computing in f32).
pub trait GpuElement:
    DeviceRepr + ValidAsZeroBits + Default + Copy + Send + Sync + 'static
{
    /// Appended to a kernel's name to pick this type's instance.
    const SUFFIX: &'static str;
    /// What the kernels sum this type's products in, and keep partial sums in: itself, f32
    /// for bf16.
    type Sum: GpuElement;
    /// `v` in this type, rounded to nearest (ties to even).
    fn element_from_f64(v: f64) -> Self;
}

/// An element type with arithmetic kernels (every op family).
pub trait GpuFloat: GpuElement + Float {}

impl GpuElement for f32 {
    const SUFFIX: &'static str = "f32";
    type Sum = f32;
    fn element_from_f64(v: f64) -> f32 {
        v as f32
    }
}

impl GpuElement for f64 {
    const SUFFIX: &'static str = "f64";
    type Sum = f64;
    fn element_from_f64(v: f64) -> f64 {
        v
    }
}

/// Rounds through f32, as the kernels' `bf16(double)` does (`bf16.cuh`).
impl GpuElement for half::bf16 {
    const SUFFIX: &'static str = "bf16";
    type Sum = f32;
    fn element_from_f64(v: f64) -> half::bf16 {
        half::bf16::from_f32(v as f32)
    }
}

impl GpuFloat for f32 {}

impl GpuFloat for f64 {}

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
    /// The device buffer.
    pub data: &'a GpuBuffer<T>,
    /// The step along each axis, in elements (0 for a broadcast axis).
    pub strides: &'a [usize],
    /// Where element [0, 0, ...] lies, in elements.
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

/// One past the furthest element a view of `shape` through `strides` from `offset` reads.
fn reach(shape: &[usize], strides: &[usize], offset: usize) -> usize {
    offset
        + shape
            .iter()
            .zip(strides)
            .map(|(&d, &s)| d.saturating_sub(1) * s)
            .sum::<usize>()
}

impl Broadcast {
    /// Views `a` and `b` (either may be a's again) seen with the output's `shape`; an error
    /// naming `op` when the rank is too high, a view's strides do not match the shape or a view
    /// reaches past its buffer.
    fn of<A, B>(
        op: &str,
        shape: &[usize],
        a: &GpuView<A>,
        b: &GpuView<B>,
    ) -> Result<Broadcast, GpuError> {
        if shape.len() > MAX_RANK
            || a.strides.len() != shape.len()
            || b.strides.len() != shape.len()
        {
            return Err(GpuError::Driver(format!(
                "{op}: shape {shape:?} with strides {:?} and {:?} (at most {MAX_RANK} axes)",
                a.strides, b.strides
            )));
        }
        let n: usize = shape.iter().product();
        if n > 0
            && (reach(shape, a.strides, a.offset) >= a.data.len()
                || reach(shape, b.strides, b.offset) >= b.data.len())
        {
            return Err(GpuError::Driver(format!(
                "{op}: a view of shape {shape:?} reaches past its buffer"
            )));
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
        Ok(s)
    }
}

fn output_fits<T>(op: &str, out: &GpuBuffer<T>, n: usize) -> Result<(), GpuError> {
    if out.len() < n {
        return Err(GpuError::Driver(format!(
            "{op}: an output of {} elements for {n}",
            out.len()
        )));
    }
    Ok(())
}

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
    let s = Broadcast::of(&format!("binary {}", kind.name()), shape, &a, &b)?;
    output_fits("binary", out, n)?;
    if n == 0 {
        return Ok(());
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

/// `out` = the view `x` of `shape` in row-major order, converted to `D`: a strided copy made
/// contiguous (S = D) or a cast.
pub fn copy_into<S: GpuElement, D: GpuElement>(
    gpu: &Gpu,
    x: GpuView<S>,
    shape: &[usize],
    out: &mut GpuBuffer<D>,
) -> Result<(), GpuError> {
    let strides = crate::strided::contiguous_strides(shape);
    copy_to_view(gpu, x, shape, out, &strides, 0)
}

/// The view `x` of `shape` written into `out` through `out_strides` from `out_offset`
/// (converted to `D`): [`copy_into`] with a strided destination, such as one part's slab of a
/// concatenation. The destination positions must be distinct.
pub fn copy_to_view<S: GpuElement, D: GpuElement>(
    gpu: &Gpu,
    x: GpuView<S>,
    shape: &[usize],
    out: &mut GpuBuffer<D>,
    out_strides: &[usize],
    out_offset: usize,
) -> Result<(), GpuError> {
    let n: usize = shape.iter().product();
    let mut s = Broadcast::of("copy", shape, &x, &x)?;
    if out_strides.len() != shape.len()
        || (n > 0 && reach(shape, out_strides, out_offset) >= out.len())
    {
        return Err(GpuError::Driver(format!(
            "copy: a destination of shape {shape:?}, strides {out_strides:?} and offset \
             {out_offset} does not fit {} elements",
            out.len()
        )));
    }
    if n == 0 {
        return Ok(());
    }
    for (d, &st) in out_strides.iter().enumerate() {
        s.b[d] = st as i64;
    }
    s.offset_b = out_offset as i64;
    let f = gpu.kernel(MODULE, SOURCE, &format!("copy_{}_{}", S::SUFFIX, D::SUFFIX))?;
    let n64 = n as u64;
    let mut launch = gpu.launch(&f);
    launch.buf(x.data).buf_mut(out).arg(&n64).arg(&s);
    // SAFETY: the view and the destination lie inside their buffers (checked above).
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}

/// `out = mask != 0 ? a : b` over `shape`, the three views already of `shape`.
pub fn select_into<T: GpuFloat>(
    gpu: &Gpu,
    mask: GpuView<T>,
    a: GpuView<T>,
    b: GpuView<T>,
    shape: &[usize],
    out: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let n: usize = shape.iter().product();
    let s = Broadcast::of("select", shape, &a, &b)?;
    let m = Broadcast::of("select", shape, &mask, &mask)?;
    output_fits("select", out, n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.kernel(MODULE, SOURCE, &format!("select_{}", T::SUFFIX))?;
    let n64 = n as u64;
    let mut launch = gpu.launch(&f);
    launch
        .buf(mask.data)
        .buf(a.data)
        .buf(b.data)
        .buf_mut(out)
        .arg(&n64)
        .arg(&s)
        .arg(&m);
    // SAFETY: the views lie inside their buffers and out holds n (checked above).
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}

/// The first `n` elements of `out` set to `value`.
pub fn fill_into<T: GpuElement>(
    gpu: &Gpu,
    out: &mut GpuBuffer<T>,
    n: usize,
    value: f64,
) -> Result<(), GpuError> {
    output_fits("fill", out, n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.kernel(MODULE, SOURCE, &format!("fill_{}", T::SUFFIX))?;
    let (n64, value) = (n as u64, T::element_from_f64(value));
    let mut launch = gpu.launch(&f);
    launch.buf_mut(out).arg(&n64).arg(&value);
    // SAFETY: out holds n (checked above).
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}
