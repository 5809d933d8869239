//! The index ops on the GPU (`index.cu`), twins of `cpu::index`: the host turns its indices
//! into a plan (where each output element comes from, or which source elements each output
//! element sums, in the CPU's order) and two kernels carry it out.

use super::elementwise::GpuFloat;
use super::{grid_for, Gpu, GpuBuffer, GpuError};

pub(crate) const MODULE: &str = "index";
pub(crate) const SOURCE: &str = include_str!("index.cu");

fn out_of_range(op: &str, i: usize, n: usize) -> GpuError {
    GpuError::Driver(format!(
        "{op}: index {i} is out of range for an axis of {n}"
    ))
}

/// For index_select over [outer, n, inner] with `idx` (m entries): the flat source of each
/// element of the [outer, m, inner] output.
pub fn select_sources(
    (outer, n, inner): (usize, usize, usize),
    idx: &[usize],
) -> Result<Vec<i64>, GpuError> {
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(out_of_range("index_select", bad, n));
    }
    let mut sources = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let start = ((o * n + i) * inner) as i64;
            sources.extend((0..inner as i64).map(|k| start + k));
        }
    }
    Ok(sources)
}

/// For gather over [outer, n, inner] with `index` [outer, m, inner]: the flat source of each
/// output element.
pub fn gather_sources(
    (outer, n, inner): (usize, usize, usize),
    index: &[usize],
    m: usize,
) -> Result<Vec<i64>, GpuError> {
    if index.len() != outer * m * inner {
        return Err(GpuError::Driver(format!(
            "gather: {} indices for [{outer}, {m}, {inner}]",
            index.len()
        )));
    }
    let mut sources = Vec::with_capacity(index.len());
    for (p, &i) in index.iter().enumerate() {
        if i >= n {
            return Err(out_of_range("gather", i, n));
        }
        let (o, k) = (p / (m * inner), p % inner);
        sources.push(((o * n + i) * inner + k) as i64);
    }
    Ok(sources)
}

/// Which source elements each output element sums: `offsets` (one more than the outputs) and
/// the source positions, each output's in ascending order.
pub struct SumLists {
    /// Output i sums `positions[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<i64>,
    /// Source positions, grouped by output.
    pub positions: Vec<i64>,
}

/// The lists for sources adding into `outputs` elements, `targets[p]` being the element source
/// p adds into (`usize::MAX`: into none); a counting sort by target, so each list is in
/// source order.
pub fn sum_lists(targets: &[usize], outputs: usize) -> SumLists {
    let into = |t: &usize| *t != usize::MAX;
    let mut offsets = vec![0i64; outputs + 1];
    for &t in targets.iter().filter(|t| into(t)) {
        offsets[t + 1] += 1;
    }
    for k in 0..outputs {
        offsets[k + 1] += offsets[k];
    }
    let mut next: Vec<i64> = offsets[..outputs].to_vec();
    let mut positions = vec![0i64; offsets[outputs] as usize];
    for (p, &t) in targets.iter().enumerate().filter(|(_, t)| into(t)) {
        positions[next[t] as usize] = p as i64;
        next[t] += 1;
    }
    SumLists { offsets, positions }
}

/// For index_add: src [outer, m, inner] added at `idx` into zeros of [outer, n, inner].
pub fn index_add_lists(
    (outer, n, inner): (usize, usize, usize),
    idx: &[usize],
) -> Result<SumLists, GpuError> {
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(out_of_range("index_add", bad, n));
    }
    let m = idx.len();
    let mut targets = Vec::with_capacity(outer * m * inner);
    for o in 0..outer {
        for &t in idx {
            targets.extend((0..inner).map(|k| (o * n + t) * inner + k));
        }
    }
    Ok(sum_lists(&targets, outer * n * inner))
}

/// For scatter_add: src [outer, m, inner] added at `index` [outer, m, inner] into zeros of
/// [outer, n, inner].
pub fn scatter_add_lists(
    (outer, n, inner): (usize, usize, usize),
    index: &[usize],
    m: usize,
) -> Result<SumLists, GpuError> {
    if index.len() != outer * m * inner {
        return Err(GpuError::Driver(format!(
            "scatter_add: {} indices for [{outer}, {m}, {inner}]",
            index.len()
        )));
    }
    let mut targets = Vec::with_capacity(index.len());
    for (p, &i) in index.iter().enumerate() {
        if i >= n {
            return Err(out_of_range("scatter_add", i, n));
        }
        let (o, k) = (p / (m * inner), p % inner);
        targets.push((o * n + i) * inner + k);
    }
    Ok(sum_lists(&targets, outer * n * inner))
}

/// `out[k] = x[sources[k]]` (0 where the source is negative) for the first `sources.len()`
/// elements of `out`; the plan is uploaded here.
pub fn take_into<T: GpuFloat>(
    gpu: &Gpu,
    x: &GpuBuffer<T>,
    sources: &[i64],
    out: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let n = sources.len();
    if out.len() < n || sources.iter().any(|&s| s >= 0 && s as usize >= x.len()) {
        return Err(GpuError::Driver(format!(
            "take: {n} sources into an output of {} from {} elements",
            out.len(),
            x.len()
        )));
    }
    if n == 0 {
        return Ok(());
    }
    let sources = gpu.upload(sources)?;
    let f = gpu.kernel(MODULE, SOURCE, &format!("take_{}", T::SUFFIX))?;
    let n64 = n as u64;
    let mut launch = gpu.launch(&f);
    launch.buf(x).buf(&sources).buf_mut(out).arg(&n64);
    // SAFETY: every source lies inside x and out holds n (checked above).
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}

/// `out[k]` = the sum of src at the positions of list k of `plan` (uploaded here).
pub fn sum_lists_into<T: GpuFloat>(
    gpu: &Gpu,
    src: &GpuBuffer<T>,
    plan: &SumLists,
    out: &mut GpuBuffer<T>,
) -> Result<(), GpuError> {
    let n = plan.offsets.len().saturating_sub(1);
    let ordered = plan.offsets.windows(2).all(|w| w[0] <= w[1])
        && plan.offsets.first().is_none_or(|&o| o == 0)
        && plan
            .offsets
            .last()
            .is_none_or(|&o| o as usize == plan.positions.len());
    if out.len() < n
        || !ordered
        || plan
            .positions
            .iter()
            .any(|&p| p < 0 || p as usize >= src.len())
    {
        return Err(GpuError::Driver(format!(
            "sum_lists: a plan for {n} outputs does not fit its buffers"
        )));
    }
    if n == 0 {
        return Ok(());
    }
    if plan.positions.is_empty() {
        return super::elementwise::fill_into(gpu, out, n, 0.0);
    }
    let (offsets, positions) = (gpu.upload(&plan.offsets)?, gpu.upload(&plan.positions)?);
    let f = gpu.kernel(MODULE, SOURCE, &format!("sum_lists_{}", T::SUFFIX))?;
    let n64 = n as u64;
    let mut launch = gpu.launch(&f);
    launch
        .buf(src)
        .buf(&offsets)
        .buf(&positions)
        .buf_mut(out)
        .arg(&n64);
    // SAFETY: the positions lie inside src and the offsets run in order over them (checked).
    unsafe { launch.run(grid_for(n)) }?;
    Ok(())
}
