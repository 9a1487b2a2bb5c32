//! Result accounting. Every latency is kept (microseconds as `u32`: 4 bytes a request, 40 MB for
//! 10M requests) and sorted once at the end, so percentiles are exact rather than bucketed.
//! Latency percentiles cover successful requests only, as perf_analyzer reports them: a fast
//! failure would otherwise make a broken server look quick.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Why one request failed: `key` groups failures (gRPC code name, `HTTP 503`, `timeout`,
/// `io`...), `message` is the server's or the transport's text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub key: String,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(key: &str, message: &str) -> Failure {
        /// Example messages are for humans; a whole HTML error page is not.
        const MAX: usize = 300;
        let mut message = message.to_string();
        if message.len() > MAX {
            let cut = (0..=MAX).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
            message.truncate(cut);
            message.push_str("...");
        }
        Failure { key: key.to_string(), message }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorGroup {
    pub count: u64,
    pub example: String,
}

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub latencies_us: Vec<u32>,
    pub failed: u64,
    /// Open loop only: timetable slots not sent because `--max-outstanding` were in flight.
    pub dropped: u64,
    pub errors: BTreeMap<String, ErrorGroup>,
    /// When the last counted request completed (the end of the throughput window).
    pub last_done: Option<Instant>,
}

/// Latency percentiles in milliseconds (nearest-rank).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Recorder {
    pub(crate) fn record(&mut self, outcome: Result<(), Failure>, latency: Duration, done: Instant) {
        match outcome {
            Ok(()) => self.latencies_us.push(latency.as_micros().min(u32::MAX as u128) as u32),
            Err(f) => {
                self.failed += 1;
                self.errors.entry(f.key).or_insert(ErrorGroup { count: 0, example: f.message }).count += 1;
            }
        }
        self.last_done = self.last_done.max(Some(done));
    }

    pub(crate) fn merge(&mut self, other: Recorder) {
        self.latencies_us.extend(other.latencies_us);
        self.failed += other.failed;
        self.dropped += other.dropped;
        for (key, group) in other.errors {
            self.errors.entry(key).or_insert(ErrorGroup { count: 0, example: group.example }).count += group.count;
        }
        self.last_done = self.last_done.max(other.last_done);
    }

    pub(crate) fn succeeded(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    /// Requests sent and answered (successfully or not) in the measured phase.
    pub(crate) fn sent(&self) -> u64 {
        self.succeeded() + self.failed
    }

    /// Sorts the latencies and summarises them; `None` when nothing succeeded.
    pub(crate) fn latency(&mut self) -> Option<Latency> {
        let v = &mut self.latencies_us;
        v.sort_unstable();
        let n = v.len();
        if n == 0 {
            return None;
        }
        let at = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64 / 1000.0;
        Some(Latency { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: v[n - 1] as f64 / 1000.0, mean })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut r = Recorder::default();
        let now = Instant::now();
        for us in (1..=100).rev() {
            r.record(Ok(()), Duration::from_micros(us * 1000), now);
        }
        r.record(Err(Failure::new("Unavailable", "first")), Duration::ZERO, now);
        r.record(Err(Failure::new("Unavailable", "second")), Duration::ZERO, now);
        let l = r.latency().expect("latency");
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!((r.sent(), r.succeeded(), r.failed), (102, 100, 2));
        assert_eq!(r.errors["Unavailable"], ErrorGroup { count: 2, example: "first".into() });
    }

    #[test]
    fn merges_and_truncates() {
        let mut a = Recorder::default();
        let mut b = Recorder { dropped: 3, ..Default::default() };
        b.record(Err(Failure::new("io", &"x".repeat(1000))), Duration::ZERO, Instant::now());
        a.merge(b);
        assert_eq!((a.failed, a.dropped), (1, 3));
        assert!(a.errors["io"].example.len() <= 303);
        assert!(Recorder::default().latency().is_none());
    }
}
