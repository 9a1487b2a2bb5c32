//! Tells the process's allocator when model loads start and end.
//!
//! A load frees about as much as it keeps: each weight's exported form once it is packed, and
//! the graph passes' intermediate copies. An allocator that keeps freed pages for reuse (the
//! server's mimalloc, chosen in main.rs) would hold the pod's resident memory at the load's
//! peak, or above it, and a Kubernetes memory limit sized to the model would have to be sized to
//! that instead. The binary registers how its allocator returns pages; the library calls it
//! around every load. With none registered (tests, embedders on the system allocator) nothing
//! happens.

use std::sync::OnceLock;

/// What the allocator does when a load starts and when it ends (loaded or not).
#[derive(Clone, Copy)]
pub struct LoadHooks {
    pub started: fn(),
    pub finished: fn(),
}

static HOOKS: OnceLock<LoadHooks> = OnceLock::new();

/// Registers the allocator's hooks; the first registration wins.
pub fn set_load_hooks(hooks: LoadHooks) {
    let _ = HOOKS.set(hooks);
}

/// Held for the whole of a load: runs `started` when made and `finished` when dropped, so it
/// runs after everything the load freed, whichever way the load returns.
pub(crate) struct LoadInProgress(());

impl LoadInProgress {
    pub(crate) fn begin() -> Self {
        if let Some(hooks) = HOOKS.get() {
            (hooks.started)();
        }
        Self(())
    }
}

impl Drop for LoadInProgress {
    fn drop(&mut self) {
        if let Some(hooks) = HOOKS.get() {
            (hooks.finished)();
        }
    }
}
