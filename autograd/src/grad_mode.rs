//! Whether ops record the graph. Recording is on by default; a no-grad scope turns it off for the
//! current thread (evaluation, optimizer updates, and backward passes without `create_graph`).

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record the graph (see [`crate::no_grad`]).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous mode when dropped.
pub struct GradModeGuard {
    previous: bool,
}

impl GradModeGuard {
    /// Sets this thread's grad mode to `enabled` until the guard is dropped.
    pub fn set(enabled: bool) -> GradModeGuard {
        let previous = GRAD_ENABLED.with(|g| g.replace(enabled));
        GradModeGuard { previous }
    }
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Runs `f` without recording any graph.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = GradModeGuard::set(false);
    f()
}
