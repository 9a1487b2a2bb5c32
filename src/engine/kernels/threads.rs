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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
///
/// While `f` runs, the pool's other threads stay awake looking for its forked halves instead
/// of going to sleep between ops: a rayon worker that finds no work sleeps within tens of
/// microseconds, and each op's fork then waits for a wake-up before its second half starts.
/// onnxruntime's pool spins between ops for the same reason. Measured on the 2-vCPU VM, batch 1
/// on 2 threads: MobileNetV2 (about 60 small ops) 10.0 -> 8.2 ms, ResNet50 within the noise.
/// The spinning lasts one model run and uses cores the run was given anyway;
/// `CANDLE_SERVING_SPIN=0` turns it off (onnxruntime's `allow_spinning`), for pods that share
/// their cores with other work.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let threads = configured_threads();
    let Some(pool) = POOL.get().filter(|pool| threads > 1 && pool.current_thread_index().is_none()) else { return f() };
    if !spinning() {
        return pool.install(f);
    }
    pool.install(|| {
        let runner = rayon::current_thread_index();
        let done = AtomicBool::new(false);
        rayon::scope(|scope| {
            for _ in 1..threads.min(pool.current_num_threads()) {
                scope.spawn(|_| {
                    // The runner may pick a helper up itself (while it waits in a join);
                    // spinning there would wait for its own caller, so it returns at once.
                    if rayon::current_thread_index() == runner {
                        return;
                    }
                    while !done.load(Ordering::Acquire) {
                        if let Some(rayon::Yield::Idle) = rayon::yield_now() {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
            // set on return and on unwind alike: the scope waits for the helpers before it
            // passes a panic on, and a helper only stops once this is set
            let _stop = Stop(&done);
            f()
        })
    })
}

/// Runs shorter than this stay on the caller's thread next time (see [`RunLengths`]).
const SHORT_RUN: Duration = Duration::from_millis(1);

/// How long a session's last run took at each batch size, so that short runs skip the pool.
/// Handing a run to the pool and back costs two thread wake-ups: 30 µs measured on the
/// 2-vCPU VM, which made the 210 µs batch-1 Conv1D + GRU slower on two threads than on one. A
/// run that short has no kernel large enough to split, so it loses nothing by staying where it
/// is; a run that grows past [`SHORT_RUN`] (longer sequences at the same batch) goes back to
/// the pool on the next call.
pub(crate) struct RunLengths([AtomicU64; 65]);

impl Default for RunLengths {
    fn default() -> Self {
        Self([const { AtomicU64::new(0) }; 65])
    }
}

impl RunLengths {
    /// [`on_pool`], unless the last run at this batch size (batches over 64 share one slot)
    /// was short.
    pub(crate) fn run<R: Send>(&self, batch: usize, f: impl FnOnce() -> R + Send) -> R {
        let slot = &self.0[batch.min(64)];
        let last = slot.load(Ordering::Relaxed);
        let started = Instant::now();
        let result = if last != 0 && last < SHORT_RUN.as_nanos() as u64 { f() } else { on_pool(f) };
        slot.store((started.elapsed().as_nanos() as u64).max(1), Ordering::Relaxed);
        result
    }
}

struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn spinning() -> bool {
    static SPIN: OnceLock<bool> = OnceLock::new();
    *SPIN.get_or_init(|| std::env::var("CANDLE_SERVING_SPIN").map_or(true, |v| v != "0"))
}

/// Keeps candle's own CPU thread pools out of the way of the intra-op pool: call at the top of
/// `main`, before the process starts any thread.
///
/// candle 0.11 splits its elementwise ops over 64K elements (the few ops of a plan that still
/// run on candle: LRN, a lone Relu, Pad) across a "barrier pool" of its own, one spinning
/// thread per physical core, beside the intra-op pool's threads that spin between ops. On a
/// 2-vCPU pod the two sets of spinners take turns on the cores in scheduler time slices:
/// measured at batch 1 on 2 threads, Inception v1 ran 41 ms with candle's pool and 27 ms
/// without, DenseNet121 70 ms and 41 ms, and every conv between those ops slowed down with
/// them. `CANDLE_NUM_THREADS=1` leaves candle's pool without workers, so those ops run inline
/// on the op's thread; a value the operator set is kept.
///
/// # Safety
/// Sets an environment variable, which races with any other thread reading the environment.
#[allow(unsafe_code)]
pub unsafe fn keep_candle_on_the_calling_thread() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the caller runs this before any other thread exists
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// How many threads a kernel called here may split across: the configured count on a thread
/// of the intra-op pool, 1 anywhere else. Off the pool (a short run that stayed on the caller's
/// thread, see [`RunLengths`]) a fork would queue its halves for sleeping workers and wait for
/// their wake-ups, which costs more than the small convs of a short run save by splitting.
pub(crate) fn intra_op_threads() -> usize {
    let threads = configured_threads();
    if threads > 1 && POOL.get().is_some_and(|pool| pool.current_thread_index().is_some()) { threads } else { 1 }
}

fn configured_threads() -> usize {
    INTRA_OP.load(Ordering::Relaxed)
}

/// Cores this process may use: the cgroup CPU quota when one is set (a pod with `limits.cpu: 2`
/// on a 64-core node gets 2), else the affinity mask. Rust's `available_parallelism` reads both
/// cgroup v1 and v2 quotas on Linux.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first run at a batch size goes onto the pool; once a run was short, the next one
    /// at that size stays on the caller's thread, and other sizes still start on the pool.
    #[test]
    fn short_runs_stay_on_the_calling_thread() {
        set_intra_op_threads(2);
        let lengths = RunLengths::default();
        let on_pool_thread = |batch: usize| lengths.run(batch, || rayon::current_thread_index().is_some());
        assert!(on_pool_thread(1));
        // a busy test machine can hold up a pool hand-off past SHORT_RUN; some run soon is short
        assert!((0..20).any(|_| !on_pool_thread(1)), "batch-1 runs never left the pool");
        assert!(on_pool_thread(2));
        assert_eq!(lengths.run(4, intra_op_threads), 2, "kernels on the pool split");
        assert_eq!(intra_op_threads(), 1, "kernels off the pool stay on their thread");
        // a long run at batch 3 keeps the next one on the pool
        lengths.run(3, || std::thread::sleep(SHORT_RUN * 2));
        assert!(on_pool_thread(3));
    }

    /// A model run that panics (the compute pool catches it and answers with an error) must
    /// release the helpers spinning beside it, or the pool would hang on the next request.
    #[test]
    fn a_panicking_run_releases_the_spinning_helpers() {
        set_intra_op_threads(2);
        let split = configured_threads();
        let caught = std::panic::catch_unwind(|| on_pool(|| -> usize { panic!("a kernel bug") }));
        assert!(caught.is_err());
        let (a, b) = on_pool(|| rayon::join(|| 20, || 22));
        assert_eq!((a + b, split > 1), (42, true));
    }
}
