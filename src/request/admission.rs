//! The in-flight limit (`--max_inflight_requests`). A permit is taken at the transport and held
//! until the response is written; without one the request is refused at once, so overload shows
//! up as fast RESOURCE_EXHAUSTED answers instead of a growing queue.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Error)]
pub enum AdmissionError {
    #[error("Too many requests in flight: the limit is {limit} (--max_inflight_requests); retry later")]
    InflightLimit { limit: usize },
}

#[derive(Clone)]
pub struct Admission {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
}

impl Admission {
    /// `limit` 0 = unlimited.
    pub fn new(limit: usize) -> Self {
        Self { permits: (limit > 0).then(|| Arc::new(Semaphore::new(limit))), limit }
    }

    /// A permit to hold for the whole request, or the refusal.
    pub fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, AdmissionError> {
        match &self.permits {
            None => Ok(None),
            Some(permits) => Arc::clone(permits)
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| AdmissionError::InflightLimit { limit: self.limit }),
        }
    }
}
