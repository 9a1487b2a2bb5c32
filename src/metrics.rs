//! Metric names and the registry. TF Serving's `:tensorflow:serving:*` names keep existing
//! dashboards working; the `candle_serving_*` family adds what autoscaling and debugging need
//! (in-flight requests, queue vs compute time) in seconds, as Prometheus conventions ask.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
    exponential_buckets,
};

use crate::error::ErrorKind;

/// Which front door a request came through (TF's `entrypoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entrypoint {
    Grpc,
    Rest,
}

impl Entrypoint {
    pub fn label(self) -> &'static str {
        match self {
            Entrypoint::Grpc => "GRPC",
            Entrypoint::Rest => "REST",
        }
    }
}

/// One finished request, as the transports report it.
pub struct RequestRecord<'a> {
    pub model: &'a str,
    /// The served version, when one was resolved.
    pub version: Option<i64>,
    /// TF's `API` label: `Predict`/`GetModelMetadata`/`GetModelStatus` for gRPC, the URL verb
    /// (`predict`, `metadata`, `status`) for REST.
    pub api: &'static str,
    pub entrypoint: Entrypoint,
    pub outcome: Result<(), ErrorKind>,
    pub elapsed: Duration,
    /// (queued, computed) when the request reached the model.
    pub execution: Option<(Duration, Duration)>,
}

/// The series one successful request of a (model, version, API, entrypoint) updates, looked
/// up once: label lookups hash every label value under a lock, seven times per request.
struct OkSeries {
    tf_count: prometheus::IntCounter,
    requests: prometheus::IntCounter,
    seconds: Histogram,
    tf_latency: Histogram,
    queue: Histogram,
    compute: Histogram,
    runtime: Histogram,
}

type SeriesKey = (Option<i64>, &'static str, Entrypoint);

/// Per model (looked up by `&str`, so a hit allocates nothing), a short list of its keys.
type SeriesCache = std::sync::RwLock<std::collections::HashMap<String, Vec<(SeriesKey, std::sync::Arc<OkSeries>)>>>;

pub struct Metrics {
    registry: Registry,
    tf_request_count: IntCounterVec,
    tf_request_latency: HistogramVec,
    tf_runtime_latency: HistogramVec,
    tf_load_attempts: IntCounterVec,
    tf_load_latency: IntCounterVec,
    requests_total: IntCounterVec,
    request_seconds: HistogramVec,
    queue_seconds: HistogramVec,
    compute_seconds: HistogramVec,
    inflight: IntGaugeVec,
    load_seconds: HistogramVec,
    version_state: IntGaugeVec,
    connections: IntCounterVec,
    connections_refused: IntCounterVec,
    connections_closed: IntCounterVec,
    connections_open: IntGaugeVec,
    batch_size: HistogramVec,
    tf_input_batch_size: HistogramVec,
    tf_processed_batch_size: HistogramVec,
    tf_queuing_latency: HistogramVec,
    rejected: IntCounterVec,
    dropped: IntCounterVec,
    tf_example_counts: HistogramVec,
    tf_example_count_total: IntCounterVec,
    ok_series: SeriesCache,
}

/// Per-transport connection counters: accepted (shows max-age recycling), refused at the
/// connection cap, open now, and closed by the server for each hardening reason.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub accepted: prometheus::IntCounter,
    pub refused: prometheus::IntCounter,
    pub open: prometheus::IntGauge,
    pub handshake_timeout: prometheus::IntCounter,
    pub idle_timeout: prometheus::IntCounter,
    pub tls_error: prometheus::IntCounter,
}

/// Decrements the in-flight gauge when the request finishes, however it finishes.
pub struct InflightGuard {
    gauge: prometheus::IntGauge,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

fn seconds_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, 2.0, 18).unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        // TF Serving's microsecond buckets: 10 * 1.8^k, 33 of them.
        let tf_us = exponential_buckets(10.0, 1.8, 33)?;
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let histogram = |name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        };
        let m = Self {
            tf_request_count: counter(":tensorflow:serving:request_count", "The total number of requests.", &["model_name", "status"])?,
            tf_request_latency: histogram(
                ":tensorflow:serving:request_latency",
                "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
                tf_us.clone(),
                &["model_name", "API", "entrypoint"],
            )?,
            tf_runtime_latency: histogram(
                ":tensorflow:serving:runtime_latency",
                "Distribution of wall time (in microseconds) for Tensorflow Serving runtime.",
                tf_us,
                &["model_name", "API", "runtime"],
            )?,
            tf_load_attempts: counter(":tensorflow:cc:saved_model:load_attempt_count", "The number of times a model was loaded.", &["model_path", "status"])?,
            tf_load_latency: counter(":tensorflow:cc:saved_model:load_latency", "Latency in microseconds for models that were successfully loaded.", &["model_path"])?,
            requests_total: counter("candle_serving_requests_total", "Requests by model, version, method and status code.", &["model", "version", "method", "code"])?,
            request_seconds: histogram("candle_serving_request_duration_seconds", "Request wall time in seconds.", seconds_buckets(), &["model", "method"])?,
            queue_seconds: histogram("candle_serving_queue_duration_seconds", "Time a request waited for a compute thread.", seconds_buckets(), &["model"])?,
            compute_seconds: histogram("candle_serving_compute_duration_seconds", "Model execution time in seconds.", seconds_buckets(), &["model"])?,
            inflight: IntGaugeVec::new(
                Opts::new("candle_serving_inflight_requests", "Inference requests being processed; the autoscaling signal."),
                &["model"],
            )?,
            load_seconds: histogram("candle_serving_model_load_seconds", "Model version load time in seconds.", exponential_buckets(0.001, 2.0, 18)?, &["model"])?,
            version_state: IntGaugeVec::new(
                Opts::new("candle_serving_model_version_state", "1 for the state each model version is in (START, LOADING, AVAILABLE, UNLOADING, END)."),
                &["model", "version", "state"],
            )?,
            connections: counter("candle_serving_connections_accepted_total", "Connections accepted, by transport.", &["transport"])?,
            connections_refused: counter(
                "candle_serving_connections_refused_total",
                "Connections turned away because --max_connections were open, by transport.",
                &["transport"],
            )?,
            connections_closed: counter(
                "candle_serving_connections_closed_total",
                "Connections the server closed on its own, by transport and reason (handshake_timeout, idle_timeout, tls_error).",
                &["transport", "reason"],
            )?,
            connections_open: IntGaugeVec::new(Opts::new("candle_serving_open_connections", "Connections open now, by transport."), &["transport"])?,
            batch_size: histogram("candle_serving_batch_size", "Rows per executed batch (before padding).", exponential_buckets(1.0, 2.0, 12)?, &["model"])?,
            // TF Serving's names and buckets, with a model label: one process serves several
            // models, and a batch size only means something per model.
            tf_input_batch_size: histogram(
                ":tensorflow:serving:batching_session:input_batch_size",
                "Batch sizes of the inputs.",
                exponential_buckets(1.0, 2.0, 14)?,
                &["model_name"],
            )?,
            tf_processed_batch_size: histogram(
                ":tensorflow:serving:batching_session:processed_batch_size",
                "Batch sizes after padding.",
                exponential_buckets(1.0, 2.0, 14)?,
                &["model_name"],
            )?,
            tf_queuing_latency: histogram(":tensorflow:serving:batching_session:queuing_latency", "Distribution of wall time spent (in microseconds) in queuing", exponential_buckets(100.0, 1.2, 52)?, &["thread_pool_name"])?,
            rejected: counter("candle_serving_rejected_requests_total", "Requests refused at admission, by reason (inflight_limit, queue_full, too_large).", &["model", "reason"])?,
            dropped: counter("candle_serving_dropped_requests_total", "Queued requests dropped before compute, by reason (cancelled, deadline).", &["model", "reason"])?,
            // TF Serving's names for the tf.Example APIs (Classify, Regress, MultiInference).
            tf_example_counts: histogram(
                ":tensorflow:serving:request_example_counts",
                "The number of tensorflow.Examples per request.",
                exponential_buckets(1.0, 2.0, 15)?,
                &["model"],
            )?,
            tf_example_count_total: counter(":tensorflow:serving:request_example_count_total", "The total number of tensorflow.Examples.", &["model"])?,
            ok_series: SeriesCache::default(),
            registry,
        };
        m.register()?;
        Ok(m)
    }

    fn register(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.tf_request_count.clone()))?;
        r.register(Box::new(self.tf_example_counts.clone()))?;
        r.register(Box::new(self.tf_example_count_total.clone()))?;
        r.register(Box::new(self.tf_request_latency.clone()))?;
        r.register(Box::new(self.tf_runtime_latency.clone()))?;
        r.register(Box::new(self.tf_load_attempts.clone()))?;
        r.register(Box::new(self.tf_load_latency.clone()))?;
        r.register(Box::new(self.requests_total.clone()))?;
        r.register(Box::new(self.request_seconds.clone()))?;
        r.register(Box::new(self.queue_seconds.clone()))?;
        r.register(Box::new(self.compute_seconds.clone()))?;
        r.register(Box::new(self.inflight.clone()))?;
        r.register(Box::new(self.load_seconds.clone()))?;
        r.register(Box::new(self.version_state.clone()))?;
        r.register(Box::new(self.connections.clone()))?;
        r.register(Box::new(self.connections_refused.clone()))?;
        r.register(Box::new(self.connections_closed.clone()))?;
        r.register(Box::new(self.connections_open.clone()))?;
        r.register(Box::new(self.batch_size.clone()))?;
        r.register(Box::new(self.tf_input_batch_size.clone()))?;
        r.register(Box::new(self.tf_processed_batch_size.clone()))?;
        r.register(Box::new(self.tf_queuing_latency.clone()))?;
        r.register(Box::new(self.rejected.clone()))?;
        r.register(Box::new(self.dropped.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(())
    }

    /// Creates the per-model series at 0 when a model starts serving, so an idle pod still
    /// exports the autoscaling signal (an HPA reading no sample would not scale it).
    pub fn register_model(&self, model: &str) {
        let _ = self.inflight.with_label_values(&[model]);
    }

    /// Counts an inference request as in flight until the guard drops.
    pub fn inflight(&self, model: &str) -> InflightGuard {
        let gauge = self.inflight.with_label_values(&[model]);
        gauge.inc();
        InflightGuard { gauge }
    }

    pub fn observe_request(&self, r: &RequestRecord<'_>) {
        let Err(kind) = r.outcome else {
            let series = self.ok_series(r);
            series.tf_count.inc();
            series.requests.inc();
            series.seconds.observe(r.elapsed.as_secs_f64());
            series.tf_latency.observe(r.elapsed.as_micros() as f64);
            if let Some((queued, computed)) = r.execution {
                series.queue.observe(queued.as_secs_f64());
                series.compute.observe(computed.as_secs_f64());
                series.runtime.observe(computed.as_micros() as f64);
            }
            return;
        };
        let code = kind.label();
        let version = r.version.map(|v| v.to_string()).unwrap_or_default();
        self.tf_request_count.with_label_values(&[r.model, code]).inc();
        self.requests_total.with_label_values(&[r.model, &version, r.api, code]).inc();
        self.request_seconds.with_label_values(&[r.model, r.api]).observe(r.elapsed.as_secs_f64());
        if let Some((queued, computed)) = r.execution {
            self.queue_seconds.with_label_values(&[r.model]).observe(queued.as_secs_f64());
            self.compute_seconds.with_label_values(&[r.model]).observe(computed.as_secs_f64());
            self.tf_runtime_latency.with_label_values(&[r.model, r.api, "candle"]).observe(computed.as_micros() as f64);
        }
    }

    fn ok_series(&self, r: &RequestRecord<'_>) -> std::sync::Arc<OkSeries> {
        let key = (r.version, r.api, r.entrypoint);
        let find = |list: &Vec<(SeriesKey, std::sync::Arc<OkSeries>)>| list.iter().find(|(k, _)| *k == key).map(|(_, s)| std::sync::Arc::clone(s));
        if let Some(series) = self.ok_series.read().unwrap_or_else(|p| p.into_inner()).get(r.model).and_then(find) {
            return series;
        }
        let version = r.version.map(|v| v.to_string()).unwrap_or_default();
        let series = std::sync::Arc::new(OkSeries {
            tf_count: self.tf_request_count.with_label_values(&[r.model, "OK"]),
            requests: self.requests_total.with_label_values(&[r.model, &version, r.api, "OK"]),
            seconds: self.request_seconds.with_label_values(&[r.model, r.api]),
            tf_latency: self.tf_request_latency.with_label_values(&[r.model, r.api, r.entrypoint.label()]),
            queue: self.queue_seconds.with_label_values(&[r.model]),
            compute: self.compute_seconds.with_label_values(&[r.model]),
            runtime: self.tf_runtime_latency.with_label_values(&[r.model, r.api, "candle"]),
        });
        let mut cache = self.ok_series.write().unwrap_or_else(|p| p.into_inner());
        let list = cache.entry(r.model.to_string()).or_default();
        if let Some(existing) = find(list) {
            return existing;
        }
        list.push((key, std::sync::Arc::clone(&series)));
        series
    }

    pub fn observe_load(&self, model: &str, path: &str, elapsed: Duration, ok: bool) {
        self.tf_load_attempts.with_label_values(&[path, if ok { "success" } else { "fail" }]).inc();
        if ok {
            self.tf_load_latency.with_label_values(&[path]).inc_by(elapsed.as_micros() as u64);
            self.load_seconds.with_label_values(&[model]).observe(elapsed.as_secs_f64());
        }
    }

    /// Marks `state` as the current state of a version (one-hot over the five states).
    pub fn set_version_state(&self, model: &str, version: i64, state: &str) {
        let v = version.to_string();
        for s in ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"] {
            self.version_state.with_label_values(&[model, &v, s]).set(i64::from(s == state));
        }
    }

    /// The handles one accept loop updates, resolved once so accepting costs no label lookups.
    pub fn connection_metrics(&self, transport: &str) -> ConnectionMetrics {
        let closed = |reason: &str| self.connections_closed.with_label_values(&[transport, reason]);
        ConnectionMetrics {
            accepted: self.connections.with_label_values(&[transport]),
            refused: self.connections_refused.with_label_values(&[transport]),
            open: self.connections_open.with_label_values(&[transport]),
            handshake_timeout: closed("handshake_timeout"),
            idle_timeout: closed("idle_timeout"),
            tls_error: closed("tls_error"),
        }
    }

    /// One executed batch: `rows` from requests, `padded` after padding to an allowed size.
    pub fn observe_batch(&self, model: &str, rows: usize, padded: usize) {
        self.batch_size.with_label_values(&[model]).observe(rows as f64);
        self.tf_input_batch_size.with_label_values(&[model]).observe(rows as f64);
        self.tf_processed_batch_size.with_label_values(&[model]).observe(padded as f64);
    }

    /// Time one request waited in a batch queue, under TF Serving's batching metric.
    pub fn observe_batch_queueing(&self, waited: Duration) {
        self.tf_queuing_latency.with_label_values(&["model_server_batch_threads"]).observe(waited.as_micros() as f64);
    }

    /// Examples in one Classify, Regress or MultiInference request.
    pub fn count_examples(&self, model: &str, examples: usize) {
        self.tf_example_counts.with_label_values(&[model]).observe(examples as f64);
        self.tf_example_count_total.with_label_values(&[model]).inc_by(examples as u64);
    }

    pub fn count_rejection(&self, model: &str, reason: &str) {
        self.rejected.with_label_values(&[model, reason]).inc();
    }

    pub fn count_dropped(&self, model: &str, reason: &str) {
        self.dropped.with_label_values(&[model, reason]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%err, "failed to encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_serving_names_render_with_their_labels() {
        let m = Metrics::new().expect("metrics");
        let guard = m.inflight("m");
        m.observe_request(&RequestRecord {
            model: "m",
            version: Some(3),
            api: "Predict",
            entrypoint: Entrypoint::Grpc,
            outcome: Ok(()),
            elapsed: Duration::from_micros(250),
            execution: Some((Duration::from_micros(20), Duration::from_micros(200))),
        });
        m.observe_request(&RequestRecord {
            model: "m",
            version: None,
            api: "Predict",
            entrypoint: Entrypoint::Grpc,
            outcome: Err(ErrorKind::NotFound),
            elapsed: Duration::from_micros(5),
            execution: None,
        });
        let text = m.render();
        assert!(text.contains(":tensorflow:serving:request_count{model_name=\"m\",status=\"OK\"} 1"), "{text}");
        assert!(text.contains(":tensorflow:serving:request_count{model_name=\"m\",status=\"NOT_FOUND\"} 1"), "{text}");
        assert!(text.contains("candle_serving_inflight_requests{model=\"m\"} 1"), "{text}");
        assert!(text.contains(":tensorflow:serving:request_latency_count{API=\"Predict\",entrypoint=\"GRPC\",model_name=\"m\"} 1"), "{text}");
        assert!(text.contains(":tensorflow:serving:runtime_latency_count{API=\"Predict\",model_name=\"m\",runtime=\"candle\"} 1"), "{text}");
        assert!(text.contains("candle_serving_requests_total{code=\"OK\",method=\"Predict\",model=\"m\",version=\"3\"} 1"), "{text}");
        drop(guard);
        assert!(m.render().contains("candle_serving_inflight_requests{model=\"m\"} 0"));
    }
}
