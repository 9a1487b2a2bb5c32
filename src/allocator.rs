//! The process allocator's settings: how long freed memory stays with the process, and giving
//! it back during and after a model load.
//!
//! The server (`main.rs`) and the unit tests (so `profile_plan` times what a pod runs) both use
//! mimalloc; these are its C calls, linked in with it.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long};
use std::sync::Mutex;

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
/// 10 s later, and memory a model load frees goes back at once ([`load_started`]).
const KEEP_FREED_MS: c_long = 10_000;

/// Call once, early in `main`.
pub fn keep_freed_memory_warm() {
    set_purge_delay(KEEP_FREED_MS);
}

/// `mi_option_arena_eager_commit` (the same place in mimalloc's v2 and v3 enums).
const ARENA_EAGER_COMMIT: c_int = 4;

/// Makes mimalloc commit an arena's memory as it hands it out, instead of all of it when it
/// reserves the arena (its default on Linux).
///
/// With the arena committed up front, memory a model load freed stayed resident: Keras
/// MobileNetV2 (13 MiB of weights) peaked at 61 MiB resident during its load and kept 57 MiB
/// after it, against 42 and 37 MiB with arenas committed on demand; Keras ResNet50 219 / 209
/// against 198 / 183 MiB. Request times did not move beyond this machine's noise (MobileNetV2
/// and SqueezeNet at batch 1 and 16, best of 30-60 runs, alternating).
///
/// mimalloc reserves its first arena at the process's first allocation, before `main` runs,
/// with the option's value at that moment: the binary runs this from the ELF's `.init_array`,
/// ahead of any Rust code.
pub extern "C" fn commit_arenas_on_demand() {
    // SAFETY: as in set_purge_delay
    unsafe { mi_option_set(ARENA_EAGER_COMMIT, 0) }
}

/// Model loads in progress; memory freed while any runs goes back to the OS at once.
static LOADS: Mutex<usize> = Mutex::new(0);

/// Run when a model load starts (`repository::set_load_hooks`).
///
/// A load frees about as much as it keeps (each weight's exported form once it is packed, the
/// passes' intermediate copies), in blocks of every size. Kept for reuse, that memory piled up:
/// Keras MobileNetV2's load (13 MiB of weights, read whole into one buffer at the time) peaked
/// at 91 MiB of resident memory with freed memory kept 10 s, 63 MiB with it returned at once.
/// The manager holds a load open through its warm-up request too. So while any load runs, freed memory is
/// returned immediately; requests to other models running meanwhile pay for faulting their
/// pages back in, for the length of the load only.
pub fn load_started() {
    let mut loads = LOADS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if *loads == 0 {
        set_purge_delay(0);
    }
    *loads += 1;
}

/// Run when a model load ends, loaded or not: frees this thread's empty pages, returns all
/// freed memory to the OS now, and once no load is left keeps freed memory warm again.
pub fn load_finished() {
    let mut loads = LOADS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    *loads = loads.saturating_sub(1);
    // SAFETY: mi_collect takes no pointers; it only walks mimalloc's own heap.
    unsafe { mi_collect(true) }
    if *loads == 0 {
        set_purge_delay(KEEP_FREED_MS);
    }
}

fn set_purge_delay(ms: c_long) {
    // SAFETY: mi_option_set takes two integers and only stores the value in mimalloc's option
    // table; an option index it does not know is ignored.
    unsafe { mi_option_set(PURGE_DELAY, ms) }
}
