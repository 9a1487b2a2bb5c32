//! Intra-op parallelism: how many threads one kernel call may split across.
//!
//! Set once at startup from `--tensorflow_intra_op_parallelism`; the threads themselves are
//! rayon's global pool, sized to the same number, so kernels running for concurrent requests
//! share it instead of oversubscribing the cores.

use std::sync::atomic::{AtomicUsize, Ordering};

static INTRA_OP: AtomicUsize = AtomicUsize::new(1);

/// Sizes the kernel thread pool. The first call wins for the pool (rayon's global pool is
/// process-wide); the split count always follows the latest call.
pub fn set_intra_op_threads(threads: usize) {
    let threads = threads.max(1);
    INTRA_OP.store(threads, Ordering::Relaxed);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("intra-op-{i}"))
        .build_global();
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
