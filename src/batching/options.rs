use std::time::Duration;

use crate::proto::tensorflow::serving::BatchingParameters;

/// Batching parameters with TF Serving's meaning (session_bundle_config.proto).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchingOptions {
    /// Largest batch, and largest single request, in rows.
    pub max_batch_size: usize,
    /// How long an open batch may wait for more requests; zero = run as soon as a batch slot
    /// is free with whatever is queued.
    pub batch_timeout: Duration,
    /// Queue bound, in batches of `max_batch_size` rows.
    pub max_enqueued_batches: usize,
    /// Batches that may execute at once.
    pub num_batch_threads: usize,
    /// Adaptive mode: before taking a batch, let requests already on their way in join it
    /// (see `QueueOwner::gather`). TF Serving's parameters keep their exact semantics.
    pub gather: bool,
    /// Batches are padded up to the next of these sizes (empty = no padding).
    pub allowed_batch_sizes: Vec<usize>,
}

impl BatchingOptions {
    /// `--enable_batching` without a parameters file: no timer at all. The queue task takes
    /// whatever is waiting the moment the engine frees up, so a lone request never waits and
    /// a crowd is served in batches as large as the crowd.
    pub fn adaptive(threads: usize) -> Self {
        Self {
            max_batch_size: 64,
            batch_timeout: Duration::ZERO,
            max_enqueued_batches: 16,
            num_batch_threads: threads.max(1),
            allowed_batch_sizes: Vec::new(),
            gather: true,
        }
    }

    /// From `--batching_parameters_file`, with TF Serving's defaults for unset fields.
    pub fn from_params(p: &BatchingParameters, threads: usize) -> Result<Self, String> {
        let positive = |v: Option<i64>, default: usize, name: &str| -> Result<usize, String> {
            match v {
                None => Ok(default),
                Some(n) if n > 0 => usize::try_from(n).map_err(|_| format!("{name} {n} is too large")),
                Some(n) => Err(format!("{name} must be positive, got {n}")),
            }
        };
        let max_batch_size = positive(p.max_batch_size, 1000, "max_batch_size")?;
        let timeout = p.batch_timeout_micros.unwrap_or(0);
        if timeout < 0 {
            return Err(format!("batch_timeout_micros must not be negative, got {timeout}"));
        }
        let mut allowed = Vec::with_capacity(p.allowed_batch_sizes.len());
        for &size in &p.allowed_batch_sizes {
            let size = usize::try_from(size).ok().filter(|&s| s > 0).ok_or(format!("allowed_batch_sizes entry {size} must be positive"))?;
            if allowed.last().is_some_and(|&last| size <= last) {
                return Err("allowed_batch_sizes must be strictly increasing".to_string());
            }
            allowed.push(size);
        }
        if allowed.last().is_some_and(|&last| last != max_batch_size) {
            return Err(format!("the last allowed_batch_sizes entry must equal max_batch_size ({max_batch_size})"));
        }
        Ok(Self {
            max_batch_size,
            batch_timeout: Duration::from_micros(timeout as u64),
            max_enqueued_batches: positive(p.max_enqueued_batches, 10, "max_enqueued_batches")?,
            num_batch_threads: positive(p.num_batch_threads, threads.max(1), "num_batch_threads")?,
            allowed_batch_sizes: allowed,
            gather: false,
        })
    }

    /// Rows a batch of `rows` is padded to.
    pub fn padded_size(&self, rows: usize) -> usize {
        self.allowed_batch_sizes.iter().copied().find(|&s| s >= rows).unwrap_or(rows)
    }

    pub fn queue_capacity(&self) -> usize {
        self.max_enqueued_batches.saturating_mul(self.max_batch_size).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_defaults_and_validation() {
        let o = BatchingOptions::from_params(&BatchingParameters::default(), 4).expect("defaults");
        assert_eq!((o.max_batch_size, o.batch_timeout, o.max_enqueued_batches, o.num_batch_threads), (1000, Duration::ZERO, 10, 4));
        let p = BatchingParameters { max_batch_size: Some(8), allowed_batch_sizes: vec![2, 4, 8], ..Default::default() };
        let o = BatchingOptions::from_params(&p, 2).expect("sizes");
        assert_eq!((o.padded_size(3), o.padded_size(8), o.padded_size(1)), (4, 8, 2));
        let bad = BatchingParameters { max_batch_size: Some(8), allowed_batch_sizes: vec![2, 4], ..Default::default() };
        assert!(BatchingOptions::from_params(&bad, 2).is_err());
        let bad = BatchingParameters { max_batch_size: Some(-1), ..Default::default() };
        assert!(BatchingOptions::from_params(&bad, 2).is_err());
    }
}
