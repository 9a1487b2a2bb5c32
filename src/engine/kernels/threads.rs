//! Intra-op parallelism: how many threads one kernel call may split across.
//!
//! Set once at startup from `--tensorflow_intra_op_parallelism`; the threads themselves are
//! one rayon pool of the same size, so kernels running for concurrent requests share it instead
//! of oversubscribing the cores.
//!
//! A whole model run goes onto that pool ([`on_pool`]), not only its kernels: a kernel that
//! forks from a thread outside the pool queues its halves, sleeps on a latch and is woken when
//! both are done, two futex round trips per op, which on a 2-core VM cost as much as a small
//! conv (ShuffleNet at batch 1 gained nothing from a second thread). Run on a pool thread, the
//! op runs its own first half and the other thread, usually still spinning from the previous
//! op, steals the second.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static INTRA_OP: AtomicUsize = AtomicUsize::new(1);

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

/// Sizes the kernel thread pool. The first call wins for the pool (rayon's global pool, which
/// code outside [`on_pool`] forks onto, is process-wide and sized the same); the split count
/// always follows the latest call.
pub fn set_intra_op_threads(threads: usize) {
    let threads = threads.max(1);
    INTRA_OP.store(threads, Ordering::Relaxed);
    let pool = |name: &'static str| rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(move |i| format!("{name}-{i}"));
    let _ = rayon::ThreadPoolBuilder::build_global(pool("intra-op-global"));
    let _ = POOL.get_or_init(|| pool("intra-op").build().expect("the intra-op thread pool starts"));
}

/// Runs `f` (a whole model run) on a thread of the intra-op pool when kernels may split, so
/// their forks start on a pool thread (see the module comment). Already on the pool, or on one
/// thread, `f` runs where it is.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match POOL.get() {
        Some(pool) if intra_op_threads() > 1 && pool.current_thread_index().is_none() => pool.install(f),
        _ => f(),
    }
}

pub(crate) fn intra_op_threads() -> usize {
    INTRA_OP.load(Ordering::Relaxed)
}

/// Cores this process may use: the cgroup CPU quota when one is set (a pod with `limits.cpu: 2`
/// on a 64-core node gets 2), else the affinity mask. Rust's `available_parallelism` reads both
/// cgroup v1 and v2 quotas on Linux.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
