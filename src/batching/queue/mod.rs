//! The per-version batch queue. One task owns the pending requests; a batch is formed when a
//! batch slot (one of `num_batch_threads`) frees up, from whatever compatible requests are
//! waiting, skipping those whose client left or whose deadline passed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::Instant;

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::engine::{ComputeError, ComputePool, EngineError, Session, Timing};
use crate::metrics::Metrics;
use crate::tensor::HostTensor;

use super::BatchingOptions;

#[derive(Debug, Clone, Error)]
pub enum BatchError {
    #[error("The batch scheduling queue to which this task was submitted is full (limit {capacity} queued rows)")]
    QueueFull { capacity: usize },
    #[error("Task size {rows} is larger than maximum input batch size {max}")]
    TooLarge { rows: usize, max: usize },
    /// The batch this request rode in failed in the engine; every member gets the error.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Compute(#[from] ComputeError),
    #[error("Deadline exceeded: the request's deadline passed while it waited in the batch queue")]
    DeadlineExceeded,
}

type Reply = Result<(Vec<HostTensor>, Timing), BatchError>;

struct Task {
    inputs: Vec<HostTensor>,
    rows: usize,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
}

impl Task {
    fn compatible(&self, other: &Task) -> bool {
        self.inputs.len() == other.inputs.len() && self.inputs.iter().zip(&other.inputs).all(|(a, b)| a.row_compatible(b))
    }
}

/// Handle to one version's queue; dropping every handle stops the queue task.
pub struct Batcher {
    tx: mpsc::Sender<Task>,
    /// Rows admitted and not yet taken into a batch: the queue bound that admission enforces.
    queued: Arc<AtomicUsize>,
    options: BatchingOptions,
    metrics: Arc<Metrics>,
    model: String,
}

impl Batcher {
    pub fn spawn(
        session: Arc<dyn Session>,
        compute: ComputePool,
        options: BatchingOptions,
        metrics: Arc<Metrics>,
        model: String,
    ) -> Self {
        let (tx, rx) = mpsc::channel(options.queue_capacity());
        let queued = Arc::new(AtomicUsize::new(0));
        let owner = QueueOwner {
            rx,
            queued: Arc::clone(&queued),
            pending: VecDeque::new(),
            slots: Arc::new(Semaphore::new(options.num_batch_threads)),
            session,
            compute,
            options: options.clone(),
            metrics: Arc::clone(&metrics),
            model: model.clone(),
            recent_peak: 0,
        };
        tokio::spawn(owner.run());
        Self { tx, queued, options, metrics, model }
    }

    /// Whether these inputs can be batched: every input has the same leading dimension.
    pub fn accepts(inputs: &[HostTensor]) -> bool {
        let rows = inputs.first().map(HostTensor::rows);
        !inputs.is_empty() && inputs.iter().all(|t| !t.shape().is_empty() && Some(t.rows()) == rows)
    }

    pub async fn submit(&self, inputs: Vec<HostTensor>, deadline: Option<Instant>) -> Reply {
        let rows = inputs.first().map_or(0, HostTensor::rows);
        if rows > self.options.max_batch_size {
            self.metrics.count_rejection(&self.model, "too_large");
            return Err(BatchError::TooLarge { rows, max: self.options.max_batch_size });
        }
        let capacity = self.options.queue_capacity();
        let full = || {
            self.metrics.count_rejection(&self.model, "queue_full");
            Err(BatchError::QueueFull { capacity })
        };
        if self.queued.fetch_add(rows, Ordering::SeqCst) + rows > capacity {
            self.queued.fetch_sub(rows, Ordering::SeqCst);
            return full();
        }
        let (reply, answer) = oneshot::channel();
        let task = Task { inputs, rows, deadline, enqueued: Instant::now(), reply };
        if self.tx.try_send(task).is_err() {
            self.queued.fetch_sub(rows, Ordering::SeqCst);
            return full();
        }
        answer.await.map_err(|_| BatchError::Compute(ComputeError::ShutDown))?
    }
}

struct QueueOwner {
    rx: mpsc::Receiver<Task>,
    queued: Arc<AtomicUsize>,
    pending: VecDeque<Task>,
    slots: Arc<Semaphore>,
    session: Arc<dyn Session>,
    compute: ComputePool,
    options: BatchingOptions,
    metrics: Arc<Metrics>,
    model: String,
    /// The largest recent batch, decaying by one row per batch: how many requests the
    /// clients keep in flight, which `gather` waits for.
    recent_peak: usize,
}

/// `gather` stops once no request has come in for this long...
const GATHER_QUIET: std::time::Duration = std::time::Duration::from_micros(100);
/// ... or after this long in all, so a batch never waits much for stragglers.
const GATHER_MOST: std::time::Duration = std::time::Duration::from_millis(2);
/// `settle` yields at most this many times (each lets every ready I/O task run once).
const SETTLE_YIELDS: usize = 8;

impl QueueOwner {
    async fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.rx.recv().await {
                    Some(task) => self.pending.push_back(task),
                    None => return,
                }
            }
            let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else { return };
            self.wait_for_batch().await;
            self.receive_waiting();
            if self.options.gather {
                self.gather().await;
            } else if self.options.batch_timeout.is_zero() {
                self.settle().await;
            }
            let batch = self.take_batch();
            let rows: usize = batch.iter().map(|t| t.rows).sum();
            self.recent_peak = rows.max(self.recent_peak.saturating_sub(1));
            if !batch.is_empty() {
                let run = Execution {
                    session: Arc::clone(&self.session),
                    compute: self.compute.clone(),
                    padded: self.options.padded_size(rows),
                    metrics: Arc::clone(&self.metrics),
                    model: self.model.clone(),
                };
                tokio::spawn(run.execute(batch, permit));
            }
        }
    }

    fn receive_waiting(&mut self) {
        while let Ok(task) = self.rx.try_recv() {
            self.pending.push_back(task);
        }
    }

    fn pending_rows(&self) -> usize {
        self.pending.iter().map(|t| t.rows).sum()
    }

    /// Drain-the-queue without a timer, made to fill: when a batch slot frees up, the requests
    /// its last batch answered are often already back on the wire, and on a busy machine the
    /// I/O threads have not read them yet (they shared the cores with the batch just run). So
    /// while clients keep more requests in flight than are waiting (the recent peak says how
    /// many), yield to the I/O tasks and take the batch once it has that many rows, or once
    /// nothing new came for `GATHER_QUIET`. A lone client (peak 1) never waits.
    async fn gather(&mut self) {
        let started = Instant::now();
        let mut last_arrival = started;
        let mut rows = self.pending_rows();
        let target = self.recent_peak.min(self.options.max_batch_size);
        while rows < target {
            let now = Instant::now();
            if now - last_arrival >= GATHER_QUIET || now - started >= GATHER_MOST {
                break;
            }
            tokio::task::yield_now().await;
            self.receive_waiting();
            let now_rows = self.pending_rows();
            if now_rows > rows {
                rows = now_rows;
                last_arrival = Instant::now();
            }
        }
    }

    /// TF Serving's zero batch timeout: no waiting for requests still to come. Requests that
    /// have come, but sit in socket buffers because the I/O tasks shared the core with the
    /// batch just run, are not "to come": yield once at a time and take in what the I/O tasks
    /// enqueue, until a yield brings nothing new (a few yields, microseconds, never a timer).
    async fn settle(&mut self) {
        for _ in 0..SETTLE_YIELDS {
            let before = self.pending_rows();
            if before >= self.options.max_batch_size {
                return;
            }
            tokio::task::yield_now().await;
            self.receive_waiting();
            if self.pending_rows() == before {
                return;
            }
        }
    }

    /// With a batch timeout, hold the open batch until it is full or the oldest request has
    /// waited `batch_timeout`.
    async fn wait_for_batch(&mut self) {
        if self.options.batch_timeout.is_zero() {
            return;
        }
        let Some(oldest) = self.pending.front().map(|t| t.enqueued) else { return };
        let until = oldest + self.options.batch_timeout;
        while self.pending_rows() < self.options.max_batch_size {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                task = self.rx.recv() => match task {
                    Some(task) => self.pending.push_back(task),
                    None => return,
                },
            }
        }
    }

    /// The next batch: the oldest live request and every later compatible one that fits.
    /// Requests whose client is gone or whose deadline passed are dropped here, before compute.
    fn take_batch(&mut self) -> Vec<Task> {
        let now = Instant::now();
        let mut batch: Vec<Task> = Vec::new();
        let mut rows = 0;
        let mut index = 0;
        while index < self.pending.len() {
            let task = &self.pending[index];
            if task.reply.is_closed() {
                self.leave(index);
                self.metrics.count_dropped(&self.model, "cancelled");
                continue;
            }
            if task.deadline.is_some_and(|d| d <= now) {
                if let Some(task) = self.leave(index) {
                    let _ = task.reply.send(Err(BatchError::DeadlineExceeded));
                }
                self.metrics.count_dropped(&self.model, "deadline");
                continue;
            }
            let fits = rows + task.rows <= self.options.max_batch_size;
            if batch.is_empty() || (fits && batch[0].compatible(task)) {
                rows += task.rows;
                if let Some(task) = self.leave(index) {
                    batch.push(task);
                }
                continue;
            }
            if rows >= self.options.max_batch_size {
                break;
            }
            index += 1;
        }
        batch
    }

    /// Takes a task out of the queue and releases its rows from the admission bound.
    fn leave(&mut self, index: usize) -> Option<Task> {
        let task = self.pending.remove(index)?;
        self.queued.fetch_sub(task.rows, Ordering::SeqCst);
        Some(task)
    }
}

struct Execution {
    session: Arc<dyn Session>,
    compute: ComputePool,
    padded: usize,
    metrics: Arc<Metrics>,
    model: String,
}

impl Execution {
    async fn execute(self, batch: Vec<Task>, permit: OwnedSemaphorePermit) {
        let sizes: Vec<usize> = batch.iter().map(|t| t.rows).collect();
        let started = Instant::now();
        self.metrics.observe_batch(&self.model, sizes.iter().sum(), self.padded);
        let inputs = match stack(&batch, self.padded) {
            Ok(inputs) => inputs,
            Err(message) => {
                for task in batch {
                    let _ = task.reply.send(Err(EngineError::Internal(message.clone()).into()));
                }
                return;
            }
        };
        let session = Arc::clone(&self.session);
        let result = self.compute.run(move || session.run(inputs)).await;
        drop(permit);
        let outputs = match result {
            Ok((Ok(outputs), timing)) => split(outputs, &sizes).map(|per_task| (per_task, timing)),
            Ok((Err(err), _)) => Err(BatchError::Engine(err)),
            Err(err) => Err(BatchError::Compute(err)),
        };
        match outputs {
            Ok((per_task, timing)) => {
                for (task, outputs) in batch.into_iter().zip(per_task) {
                    let waited = started - task.enqueued;
                    self.metrics.observe_batch_queueing(waited);
                    let queued = waited + timing.queued;
                    let _ = task.reply.send(Ok((outputs, Timing { queued, computed: timing.computed })));
                }
            }
            Err(err) => {
                for task in batch {
                    let _ = task.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Concatenates each input across the batch and pads to the allowed size.
fn stack(batch: &[Task], padded: usize) -> Result<Vec<HostTensor>, String> {
    let inputs = batch.first().map_or(0, |t| t.inputs.len());
    (0..inputs)
        .map(|i| {
            let parts: Vec<&HostTensor> = batch.iter().map(|t| &t.inputs[i]).collect();
            HostTensor::concat_rows(&parts)?.pad_rows(padded)
        })
        .collect()
}

/// Splits every output back into per-request pieces: `result[task][output]`.
fn split(outputs: Vec<HostTensor>, sizes: &[usize]) -> Result<Vec<Vec<HostTensor>>, BatchError> {
    let mut per_task: Vec<Vec<HostTensor>> = sizes.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        let pieces = output.split_rows(sizes).map_err(|e| {
            BatchError::Engine(EngineError::Internal(format!("batched output is not batch-major: {e}")))
        })?;
        for (slot, piece) in per_task.iter_mut().zip(pieces) {
            slot.push(piece);
        }
    }
    Ok(per_task)
}

#[cfg(test)]
mod tests;
