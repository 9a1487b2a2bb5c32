//! A real OTLP/gRPC trace receiver for tests: the collector's TraceService on 127.0.0.1:0,
//! handing every export request to the test. Include it with
//! `#[path = "otlp/receiver.rs"] mod otlp_receiver;`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::{mpsc, oneshot};

pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`, ready for `Tracer::otlp` or `--otlp_endpoint`.
    pub endpoint: String,
    /// Every export request received so far by [`OtlpReceiver::spans`], for resource checks.
    pub requests: Vec<ExportTraceServiceRequest>,
    incoming: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    _stop: oneshot::Sender<()>,
}

struct Collector {
    sink: mpsc::UnboundedSender<ExportTraceServiceRequest>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        // The test may have stopped listening; the exporter must still see a success.
        let _ = self.sink.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl OtlpReceiver {
    /// Starts the receiver on the current runtime; it stops when this value is dropped.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let endpoint = format!("http://{}", listener.local_addr().expect("receiver address"));
        let (sink, incoming) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector { sink }))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        tokio::spawn(async move {
            if let Err(err) = server.await {
                eprintln!("OTLP receiver stopped: {err}");
            }
        });
        Self { endpoint, requests: Vec::new(), incoming, _stop: stop }
    }

    /// Waits until at least `count` spans have arrived in all, or `timeout` has passed, and
    /// returns every span received so far (in arrival order), so a test can also check that
    /// no more than it expected came.
    pub async fn spans(&mut self, count: usize, timeout: Duration) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.all_spans().len() < count {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(request)) => self.requests.push(request),
                Ok(None) | Err(_) => break,
            }
        }
        while let Ok(request) = self.incoming.try_recv() {
            self.requests.push(request);
        }
        self.all_spans()
    }

    fn all_spans(&self) -> Vec<Span> {
        self.requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }
}
