use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use thiserror::Error;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Where a job's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub queued: Duration,
    pub computed: Duration,
}

#[derive(Debug, Clone, Error)]
pub enum ComputeError {
    #[error("compute queue is full ({capacity} requests waiting); retry later")]
    QueueFull { capacity: usize },
    #[error("compute pool is shutting down")]
    ShutDown,
    #[error("model execution panicked: {0}")]
    Panicked(String),
}

/// Dedicated OS threads for model execution. Tokio workers only await the reply, so a slow
/// model never stalls the transports, health checks or other models' I/O.
#[derive(Clone)]
pub struct ComputePool {
    sender: Sender<Job>,
    capacity: usize,
    threads: usize,
    /// Jobs queued or running, inline ones included: when it is below `threads`, some compute
    /// thread is idle, and a short job may as well run where it is.
    busy: Arc<AtomicUsize>,
}

/// A compute slot taken for a job that runs on the caller's thread; released on drop.
pub struct InlineSlot {
    busy: Arc<AtomicUsize>,
}

impl Drop for InlineSlot {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InlineSlot {
    /// Runs `f` here, with the same panic isolation and timing as a pooled job.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> Result<(T, Timing), ComputeError> {
        let started = Instant::now();
        let value = catch_unwind(AssertUnwindSafe(f)).map_err(panic_message)?;
        Ok((value, Timing { queued: Duration::ZERO, computed: started.elapsed() }))
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> ComputeError {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    ComputeError::Panicked(msg)
}

impl ComputePool {
    pub fn new(threads: usize, capacity: usize) -> Self {
        // A multi-consumer channel: a job wakes exactly one idle thread (a mutex around a
        // single-consumer receiver would wake a second one just to park it again).
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(capacity);
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            let spawned = thread::Builder::new().name(format!("compute-{index}")).spawn(move || {
                while let Ok(job) = receiver.recv() {
                    job();
                }
            });
            if let Err(err) = spawned {
                tracing::error!(%err, "failed to spawn compute thread");
            }
        }
        Self { sender, capacity, threads: threads.max(1), busy: Arc::new(AtomicUsize::new(0)) }
    }

    /// Claims a compute slot for a job to run on the calling thread, if a compute thread is
    /// idle. A hand-off to the pool costs a wake-up and two context switches, more than a
    /// tiny model's whole run; running it inline while the pool has room keeps the
    /// `--tensorflow_inter_op_parallelism` bound and skips that cost.
    pub fn claim_inline(&self) -> Option<InlineSlot> {
        let mut busy = self.busy.load(Ordering::Acquire);
        while busy < self.threads {
            match self.busy.compare_exchange_weak(busy, busy + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(InlineSlot { busy: Arc::clone(&self.busy) }),
                Err(now) => busy = now,
            }
        }
        None
    }

    /// Runs `f` on a compute thread. A panic inside `f` becomes an error for this request only.
    /// Also reports how long the job waited for a thread and how long it ran.
    pub async fn run<T, F>(&self, f: F) -> Result<(T, Timing), ComputeError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let submitted = Instant::now();
        let busy = Arc::clone(&self.busy);
        let job: Job = Box::new(move || {
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(f))
                .map(|value| (value, Timing { queued: started - submitted, computed: started.elapsed() }))
                .map_err(panic_message);
            busy.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(result);
        });
        self.busy.fetch_add(1, Ordering::AcqRel);
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.busy.fetch_sub(1, Ordering::AcqRel);
                return Err(ComputeError::QueueFull { capacity: self.capacity });
            }
            Err(TrySendError::Disconnected(_)) => {
                self.busy.fetch_sub(1, Ordering::AcqRel);
                return Err(ComputeError::ShutDown);
            }
        }
        rx.await.map_err(|_| ComputeError::ShutDown)?
    }
}
