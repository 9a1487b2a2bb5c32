use std::panic::{AssertUnwindSafe, catch_unwind};
use crossbeam_channel::{Sender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

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
        Self { sender, capacity }
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
        let job: Job = Box::new(move || {
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(f)).map(|value| {
                (value, Timing { queued: started - submitted, computed: started.elapsed() })
            });
            let result = result.map_err(|payload| {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                ComputeError::Panicked(msg)
            });
            let _ = tx.send(result);
        });
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ComputeError::QueueFull { capacity: self.capacity }),
            Err(TrySendError::Disconnected(_)) => return Err(ComputeError::ShutDown),
        }
        rx.await.map_err(|_| ComputeError::ShutDown)?
    }
}
