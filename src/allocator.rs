//! The process allocator's two settings: how long freed memory stays with the process, and
//! giving it back after a model load.
//!
//! The server (`main.rs`) and the unit tests (so `profile_plan` times what a pod runs) both use
//! mimalloc; these are its C calls, linked in with it.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long};

// links mimalloc's C library into every binary of the crate, whichever allocator it uses
use mimalloc as _;

unsafe extern "C" {
    fn mi_collect(force: bool);
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc's option enum (the same place in its v2 and v3).
const PURGE_DELAY: c_int = 15;

/// How long memory freed by a request stays committed, ready for the next one, before mimalloc
/// returns it to the OS.
///
/// mimalloc's default is 1 s. A model run frees its outputs and scratch op by op, and pages
/// that a run's allocation pattern left unused for a second (another batch size, another
/// model) were returned and then faulted back in by a later run, each fault zeroing a 2 MiB
/// transparent huge page in the kernel: 3.4 faults per batch-1 SqueezeNet run on two threads,
/// about 5% of its time, and none at 10 s. A pod that goes idle still gives the memory back,
/// 10 s later, and every model load forces it back at once ([`release_to_os`]).
const KEEP_FREED_MS: c_long = 10_000;

/// Call once, early in `main`.
pub fn keep_freed_memory_warm() {
    // SAFETY: mi_option_set takes two integers and only stores the value in mimalloc's option
    // table; an option index it does not know is ignored.
    unsafe { mi_option_set(PURGE_DELAY, KEEP_FREED_MS) }
}

/// Frees this thread's empty pages and returns all freed memory to the OS now: run after each
/// model load (`repository::set_release_hook`), whose transient copies of the exported
/// weights would otherwise stay resident until the purge delay passes.
pub fn release_to_os() {
    // SAFETY: mi_collect takes no pointers; it only walks mimalloc's own heap.
    unsafe { mi_collect(true) }
}
