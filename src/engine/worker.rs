use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
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
    sender: SyncSender<Job>,
    capacity: usize,
}

impl ComputePool {
    pub fn new(threads: usize, capacity: usize) -> Self {
        let (sender, receiver) = mpsc::sync_channel::<Job>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            let spawned = thread::Builder::new().name(format!("compute-{index}")).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job, not while running it.
                    let job = match receiver.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
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
