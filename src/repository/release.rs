//! Gives freed memory back to the operating system once a load is done.
//!
//! A load frees about as much as it keeps: the file's buffer, and each weight's exported form
//! once it is packed. The server's allocator (mimalloc, chosen in main.rs) keeps freed pages for
//! reuse, so without this the pod's resident memory would stay at the load's peak, and a
//! Kubernetes memory limit sized to the model would be sized to the peak instead. The binary
//! registers how its allocator returns pages; the library calls it after every load. With none
//! registered (tests, embedders on the system allocator) nothing happens.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers the allocator's "return free pages" call; the first registration wins.
pub fn set_release_hook(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Calls the registered hook when dropped: held for the whole of a load, so it runs after
/// everything the load freed, whichever way the load returns.
pub(crate) struct ReleaseAfterLoad;

impl Drop for ReleaseAfterLoad {
    fn drop(&mut self) {
        if let Some(release) = RELEASE.get() {
            release();
        }
    }
}
