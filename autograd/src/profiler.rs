//! A per-op profiler: which ops a program runs, on what shapes, for how long, forward and
//! backward, and how many bytes their outputs take (PyTorch's `torch.profiler` and
//! `key_averages()`, in small).
//!
//! It is off by default. While it is off, each kernel call pays one relaxed load of a global
//! flag and two not-taken branches, and nothing else: the kernel's code is called from one
//! place and inlines as if the profiler were not there (measured against a build with the
//! hooks compiled out in BENCHMARKS.md; it needs the workspace's whole-program LTO).
//! [`enable`] (or [`Profiling::start`], a guard) turns it on for every thread; from then on
//! each op records a [`Span`] into one shared list, which [`take`] returns and clears. [`key_averages`] groups spans by op and input shapes into [`Row`]s,
//! [`format_table`] prints them.
//!
//! # What is timed
//!
//! - **Forward**: every kernel call through the backend seam (the `Storage` methods of
//!   `backend/`, one per op family: `matmul`, `conv2d`, each unary and binary kind, `sum`,
//!   `softmax`, `copy`, the optimizers' `adam_step`...) is one span, named by the kernel, with
//!   the shapes of its operands and the bytes of the storage it made. Where the kernel's name
//!   or operand shapes differ from the op's (a broadcast binary op's operands are expanded,
//!   `matmul_t` runs the `matmul` kernel on a transposed weight, `contiguous` runs `copy`), the
//!   op names its span with its own name and input shapes, so that its forward and backward
//!   spans fall in the same row of the table. Views (reshape, permute,
//!   narrow, expand) run no kernel and record nothing; a composite op (a layer, a loss) shows
//!   as the kernels it runs. Kernel calls outside a backward walk are in the forward phase,
//!   the optimizers' steps included.
//! - **Backward**: the walk (`Tensor::backward`, [`crate::grad`]) runs one rule per recorded
//!   node; each rule is one span named by the node's op ([`crate::Op::name`]), with the shapes
//!   of the op's inputs, in the backward phase. Its bytes are those its kernels made.
//!
//! # Ops run inside a backward rule
//!
//! A rule is written with Tensor ops, so its kernels are timed too. They are recorded as
//! *nested* spans (`depth` 1 and more, phase backward), inside their rule's span on the same
//! thread, and they add their bytes to it. [`key_averages`] counts only top-level spans
//! (`depth` 0), so a rule's time counts once, in the backward column of the op that recorded
//! the node; a trace ([`Span`]s written as Chrome trace events) shows both levels nested.
//! Kernels the walk runs between rules (summing the gradients of a tensor used twice, adding
//! into `.grad()`) are top-level backward spans named by their kernel (`add`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static SPANS: Mutex<Vec<Span>> = Mutex::new(Vec::new());
static EPOCH: OnceLock<Instant> = OnceLock::new();
static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// This thread's small id in spans (1, 2, ... in the order threads first record).
    static THREAD: u32 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    /// How many backward walks this thread is inside (a walk may run another: `grad` in a rule).
    static IN_BACKWARD: Cell<u32> = const { Cell::new(0) };
    /// How many spans this thread is inside (a backward rule's span holds its kernels').
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Bytes made by the kernels of the span now open at each depth, summed into it.
    static CHILD_BYTES: Cell<usize> = const { Cell::new(0) };
    /// The op name and input shapes the next kernel span takes instead of its own ([`label`]).
    static LABEL: Cell<Option<Label>> = const { Cell::new(None) };
    /// The spans this thread has open, innermost last. (Ops return errors rather than panic;
    /// a kernel that did panic would leave its span here, closed by the next close instead.)
    static OPEN: RefCell<Vec<Open>> = const { RefCell::new(Vec::new()) };
}

type Label = (&'static str, Vec<Vec<usize>>);

/// Whether an op ran in the forward pass or in a backward walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Outside any backward walk (the optimizers' steps too).
    Forward,
    /// Inside a backward walk: a rule, a kernel a rule ran, or the walk's gradient sums.
    Backward,
}

impl Phase {
    /// `"forward"` or `"backward"`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
        }
    }
}

/// One timed op.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// The op's short name: a kernel's (`matmul`, `relu`, `add`) or, for a backward rule, the
    /// recorded op's ([`crate::Op::name`]).
    pub name: &'static str,
    /// The shapes of the op's inputs (a kernel's operands, a rule's op inputs).
    pub shapes: Vec<Vec<usize>>,
    /// Forward or backward.
    pub phase: Phase,
    /// 0 for a top-level span; 1 and more for a kernel run inside a backward rule's span.
    pub depth: u32,
    /// A small id of the OS thread that ran it.
    pub thread: u32,
    /// Start, in nanoseconds since the profiler's epoch (its first [`enable`] in the process).
    pub start_ns: u64,
    /// How long it ran, in nanoseconds.
    pub duration_ns: u64,
    /// Bytes of the storage it made (for a rule, made by its kernels); 0 for a step in place.
    pub bytes: usize,
}

/// Turns the profiler on, on every thread.
pub fn enable() {
    EPOCH.get_or_init(Instant::now);
    ENABLED.store(true, Ordering::Relaxed);
}

/// Turns the profiler off; spans already recorded stay until [`take`].
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether the profiler is on.
#[inline(always)]
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The spans recorded so far, in order of start, and clears them.
pub fn take() -> Vec<Span> {
    let mut spans = std::mem::take(&mut *SPANS.lock().unwrap_or_else(|e| e.into_inner()));
    spans.sort_by_key(|s| (s.start_ns, s.depth));
    spans
}

/// The profiler on while this guard lives: [`enable`] at [`Profiling::start`], [`disable`]
/// when dropped.
#[must_use = "the profiler is disabled when the guard is dropped"]
pub struct Profiling(());

impl Profiling {
    /// Enables the profiler until the guard is dropped.
    pub fn start() -> Profiling {
        enable();
        Profiling(())
    }
}

impl Drop for Profiling {
    fn drop(&mut self) {
        disable();
    }
}

fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64
}

/// An open span: made when an op starts, recorded by [`Open::close`].
pub(crate) struct Open {
    name: &'static str,
    shapes: Vec<Vec<usize>>,
    phase: Phase,
    depth: u32,
    start_ns: u64,
    /// The parent's children's bytes, saved while this span sums its own.
    saved_child_bytes: usize,
}

impl Open {
    fn start(name: &'static str, shapes: Vec<Vec<usize>>, phase: Phase) -> Open {
        let depth = DEPTH.with(|d| {
            let depth = d.get();
            d.set(depth + 1);
            depth
        });
        let saved_child_bytes = CHILD_BYTES.with(|b| b.replace(0));
        Open {
            name,
            shapes,
            phase,
            depth,
            start_ns: now_ns(),
            saved_child_bytes,
        }
    }

    /// Records the span with `bytes` of its own output (added to its children's).
    fn close(self, bytes: usize) {
        let end = now_ns();
        DEPTH.with(|d| d.set(self.depth));
        let bytes = bytes + CHILD_BYTES.with(|b| b.replace(self.saved_child_bytes));
        if self.depth > 0 {
            CHILD_BYTES.with(|b| b.set(b.get() + bytes));
        }
        let span = Span {
            name: self.name,
            shapes: self.shapes,
            phase: self.phase,
            depth: self.depth,
            thread: THREAD.with(|t| *t),
            start_ns: self.start_ns,
            duration_ns: end.saturating_sub(self.start_ns),
            bytes,
        };
        SPANS.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    }
}

fn current_phase() -> Phase {
    if IN_BACKWARD.with(|b| b.get()) > 0 {
        Phase::Backward
    } else {
        Phase::Forward
    }
}

/// Runs a kernel call `f` named `name` on operands of `shapes`, recording a span when the
/// profiler is on; `bytes` gives the size of what it made. Off, one relaxed load and a branch
/// before `f` and a test after it; `f` is called from this one place, so it inlines here as it
/// would without the profiler. The profiled work is out of line, the open span on a
/// thread-local stack, so nothing with a destructor lives across `f`.
#[inline(always)]
pub(crate) fn kernel<R>(
    name: &'static str,
    shapes: impl FnOnce() -> Vec<Vec<usize>>,
    bytes: impl FnOnce(&R) -> usize,
    f: impl FnOnce() -> R,
) -> R {
    let profiled = is_enabled();
    if profiled {
        open_kernel(name, shapes);
    }
    let out = f();
    if profiled {
        close_kernel(bytes, &out);
    }
    out
}

#[cold]
#[inline(never)]
fn open_kernel(name: &'static str, shapes: impl FnOnce() -> Vec<Vec<usize>>) {
    let open = match LABEL.with(Cell::take) {
        Some((name, shapes)) => Open::start(name, shapes, current_phase()),
        None => Open::start(name, shapes(), current_phase()),
    };
    OPEN.with(|stack| stack.borrow_mut().push(open));
}

#[cold]
#[inline(never)]
fn close_kernel<R>(bytes: impl FnOnce(&R) -> usize, out: &R) {
    close_innermost(bytes(out));
}

/// Records the span most recently opened on this thread.
fn close_innermost(bytes: usize) {
    if let Some(open) = OPEN.with(|stack| stack.borrow_mut().pop()) {
        open.close(bytes);
    }
}

/// Names the next kernel span of this thread: the op `name` on inputs of `shapes`, rather than
/// the kernel's own name and operand shapes (the kernel sees broadcast operands expanded,
/// `matmul_t`'s weight transposed), so that an op's forward and backward spans share a row of
/// [`key_averages`]. Called just before the op's one `Storage` call, which takes the label.
#[inline(always)]
pub(crate) fn label(name: &'static str, shapes: impl FnOnce() -> Vec<Vec<usize>>) {
    if is_enabled() {
        set_label(name, shapes);
    }
}

#[cold]
#[inline(never)]
fn set_label(name: &'static str, shapes: impl FnOnce() -> Vec<Vec<usize>>) {
    LABEL.with(|l| l.set(Some((name, shapes()))));
}

/// Runs the backward rule `f` of an op named `name` (inputs of `shapes`), as a backward span
/// holding the spans of the kernels it runs.
#[inline(always)]
pub(crate) fn backward_rule<R>(
    name: &'static str,
    shapes: impl FnOnce() -> Vec<Vec<usize>>,
    f: impl FnOnce() -> R,
) -> R {
    let profiled = is_enabled();
    if profiled {
        open_rule(name, shapes);
    }
    let out = f();
    if profiled {
        close_rule();
    }
    out
}

#[cold]
#[inline(never)]
fn open_rule(name: &'static str, shapes: impl FnOnce() -> Vec<Vec<usize>>) {
    let open = Open::start(name, shapes(), Phase::Backward);
    OPEN.with(|stack| stack.borrow_mut().push(open));
}

#[cold]
#[inline(never)]
fn close_rule() {
    close_innermost(0);
}

/// Marks this thread as inside a backward walk while it lives: kernels run then are in the
/// backward phase.
pub(crate) struct BackwardWalk(());

impl BackwardWalk {
    pub(crate) fn enter() -> BackwardWalk {
        IN_BACKWARD.with(|b| b.set(b.get() + 1));
        BackwardWalk(())
    }
}

impl Drop for BackwardWalk {
    fn drop(&mut self) {
        IN_BACKWARD.with(|b| b.set(b.get() - 1));
    }
}

/// One line of [`key_averages`]: the top-level spans of one op on one list of input shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The op's name.
    pub name: &'static str,
    /// Its input shapes.
    pub shapes: Vec<Vec<usize>>,
    /// How many spans, forward and backward.
    pub calls: usize,
    /// How many of them were forward.
    pub forward_calls: usize,
    /// Total forward time.
    pub forward: Duration,
    /// Total backward time (the rules' spans, the kernels they ran included).
    pub backward: Duration,
    /// (forward + backward) / the profiled wall time, in percent.
    pub share: f64,
    /// Total bytes made.
    pub bytes: usize,
}

impl Row {
    /// Forward and backward time together.
    pub fn total(&self) -> Duration {
        self.forward + self.backward
    }
}

/// The top-level spans (depth 0) grouped by (name, input shapes), with their calls, times and
/// bytes, sorted by total time, longest first; `wall` (the time profiled) gives each its share.
pub fn key_averages(spans: &[Span], wall: Duration) -> Vec<Row> {
    let mut rows: HashMap<(&'static str, &[Vec<usize>]), Row> = HashMap::new();
    for s in spans.iter().filter(|s| s.depth == 0) {
        let row = rows.entry((s.name, &s.shapes)).or_insert_with(|| Row {
            name: s.name,
            shapes: s.shapes.clone(),
            calls: 0,
            forward_calls: 0,
            forward: Duration::ZERO,
            backward: Duration::ZERO,
            share: 0.0,
            bytes: 0,
        });
        row.calls += 1;
        row.bytes += s.bytes;
        let d = Duration::from_nanos(s.duration_ns);
        match s.phase {
            Phase::Forward => {
                row.forward_calls += 1;
                row.forward += d;
            }
            Phase::Backward => row.backward += d,
        }
    }
    let wall = wall.as_secs_f64();
    let mut rows: Vec<Row> = rows
        .into_values()
        .map(|mut r| {
            r.share = if wall > 0.0 {
                100.0 * r.total().as_secs_f64() / wall
            } else {
                0.0
            };
            r
        })
        .collect();
    rows.sort_by(|a, b| {
        b.total()
            .cmp(&a.total())
            .then_with(|| a.name.cmp(b.name))
            .then_with(|| a.shapes.cmp(&b.shapes))
    });
    rows
}

fn shapes_text(shapes: &[Vec<usize>]) -> String {
    let parts: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
    parts.join(" ")
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn mib(bytes: usize) -> String {
    format!("{:.2}", bytes as f64 / (1024.0 * 1024.0))
}

/// `rows` as a text table (the first `limit` of them), with a total line over all of them.
pub fn format_table(rows: &[Row], limit: usize) -> String {
    let shown = &rows[..rows.len().min(limit)];
    let shape_width = shown
        .iter()
        .map(|r| shapes_text(&r.shapes).len())
        .max()
        .unwrap_or(0)
        .clamp(12, 60);
    let mut out = format!(
        "{:<20} {:<shape_width$} {:>7} {:>11} {:>11} {:>11} {:>6} {:>9}\n",
        "op", "input shapes", "calls", "fwd ms", "bwd ms", "total ms", "%", "MiB",
    );
    let line = |name: &str, shapes: &str, r: &Row| {
        format!(
            "{:<20} {:<shape_width$} {:>7} {:>11} {:>11} {:>11} {:>6.1} {:>9}\n",
            name,
            shapes,
            r.calls,
            ms(r.forward),
            ms(r.backward),
            ms(r.total()),
            r.share,
            mib(r.bytes),
        )
    };
    for r in shown {
        let mut shapes = shapes_text(&r.shapes);
        if shapes.len() > shape_width {
            shapes.truncate(shape_width - 3);
            shapes.push_str("...");
        }
        out.push_str(&line(r.name, &shapes, r));
    }
    if rows.len() > shown.len() {
        out.push_str(&format!("... {} more rows\n", rows.len() - shown.len()));
    }
    let total = rows.iter().fold(
        Row {
            name: "total",
            shapes: Vec::new(),
            calls: 0,
            forward_calls: 0,
            forward: Duration::ZERO,
            backward: Duration::ZERO,
            share: 0.0,
            bytes: 0,
        },
        |mut t, r| {
            t.calls += r.calls;
            t.forward_calls += r.forward_calls;
            t.forward += r.forward;
            t.backward += r.backward;
            t.share += r.share;
            t.bytes += r.bytes;
            t
        },
    );
    out.push_str(&line("total", "", &total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    /// The profiler is global: the tests that turn it on run one at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn matmul_relu_sum() -> (Tensor, Tensor) {
        let a = Tensor::from_vec(vec![1.0f32, -2.0, 3.0, 4.0, 0.5, -1.0], &[2, 3])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::from_vec(vec![0.5f32; 12], &[3, 4])
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let loss = a.matmul(&b).unwrap().relu().unwrap().sum_all().unwrap();
        loss.backward().unwrap();
        (a, b)
    }

    #[test]
    fn records_forward_and_backward_spans_only_when_on() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        // other tests' threads may close spans they opened while another test had it on
        let this_thread = THREAD.with(|t| *t);
        let ours = || {
            take()
                .into_iter()
                .filter(|s| s.thread == this_thread)
                .count()
        };
        ours();
        matmul_relu_sum();
        assert_eq!(ours(), 0, "off by default: nothing recorded");

        let guard = Profiling::start();
        matmul_relu_sum();
        drop(guard);
        let spans = take();
        let spans: Vec<&Span> = spans.iter().filter(|s| s.thread == this_thread).collect();
        let find = |name: &str, phase: Phase, depth: u32| {
            spans
                .iter()
                .find(|s| s.name == name && s.phase == phase && s.depth == depth)
                .unwrap_or_else(|| panic!("no {name} {phase:?} span at depth {depth}"))
        };
        let mm = find("matmul", Phase::Forward, 0);
        assert_eq!(mm.shapes, vec![vec![2, 3], vec![3, 4]]);
        assert_eq!(mm.bytes, 2 * 4 * 4, "a [2, 4] f32 output");
        find("relu", Phase::Forward, 0);
        find("sum", Phase::Forward, 0);
        let mm_back = find("matmul", Phase::Backward, 0);
        assert_eq!(mm_back.shapes, vec![vec![2, 3], vec![3, 4]]);
        assert!(mm_back.bytes >= (2 * 3 + 3 * 4) * 4, "both input gradients");
        find("relu", Phase::Backward, 0);
        find("sum", Phase::Backward, 0);
        // the rule's own matmuls are nested inside its span
        let inner = find("matmul", Phase::Backward, 1);
        assert!(inner.start_ns >= mm_back.start_ns);
        assert!(
            inner.start_ns + inner.duration_ns <= mm_back.start_ns + mm_back.duration_ns,
            "a rule's kernels end within it"
        );
        assert!(
            !spans
                .iter()
                .any(|s| s.phase == Phase::Forward && s.depth > 0),
            "forward kernels are top-level"
        );

        matmul_relu_sum();
        assert_eq!(ours(), 0, "off again after the guard");
    }

    #[test]
    fn the_table_counts_every_top_level_span_once() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let guard = Profiling::start();
        let start = Instant::now();
        for _ in 0..3 {
            matmul_relu_sum();
        }
        let wall = start.elapsed();
        drop(guard);
        let this_thread = THREAD.with(|t| *t);
        let spans: Vec<Span> = take()
            .into_iter()
            .filter(|s| s.thread == this_thread)
            .collect();
        let rows = key_averages(&spans, wall);
        let top: Vec<&Span> = spans.iter().filter(|s| s.depth == 0).collect();
        assert_eq!(rows.iter().map(|r| r.calls).sum::<usize>(), top.len());
        let fwd = top.iter().filter(|s| s.phase == Phase::Forward).count();
        assert_eq!(rows.iter().map(|r| r.forward_calls).sum::<usize>(), fwd);
        let mm = rows
            .iter()
            .find(|r| r.name == "matmul" && r.shapes == [vec![2, 3], vec![3, 4]])
            .expect("a matmul row");
        assert_eq!(mm.calls, 6, "3 forward, 3 backward");
        assert_eq!(mm.forward_calls, 3);
        let total_share: f64 = rows.iter().map(|r| r.share).sum();
        assert!(
            total_share <= 100.0 + 1e-9,
            "top-level spans do not overlap"
        );
        assert!(rows.windows(2).all(|w| w[0].total() >= w[1].total()));
        let table = format_table(&rows, 25);
        assert!(table.contains("matmul") && table.lines().last().unwrap().starts_with("total"));
    }
}
