//! The server run inside the test process through `candle_serving::serve`, on listeners the
//! harness binds to port 0: the kernel picks the ports and nobody else can take them between
//! choosing and binding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use candle_serving::config::{ModelSource, ParseOutcome, ServerConfig, TlsSource, parse_args};
use candle_serving::{Listeners, serve};
use tokio::sync::watch;

use super::{Grpc, repo_root, wait_model};

/// How long Drop waits for `serve` to return before leaving its thread behind.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A server running `serve` on its own OS thread and multi-thread runtime, so that it outlives
/// the test's runtime and a current-thread `#[tokio::test]` cannot starve it. Dropping it sends
/// the shutdown and waits (bounded) for `serve` to return.
pub struct Server {
    pub port: u16,
    /// The REST port, when the server was started with one.
    pub rest: Option<u16>,
    shutdown: watch::Sender<bool>,
    done: mpsc::Receiver<Result<(), String>>,
    /// Set once `serve` has returned (or its thread died).
    outcome: Option<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
}

impl Grpc for Server {
    fn grpc_port(&self) -> u16 {
        self.port
    }
}

impl Server {
    /// Starts a server with `args` (TF Serving flags, no ports) and waits until `model` is
    /// AVAILABLE.
    pub async fn start(args: &[&str], model: &str) -> Server {
        let mut server = Server::launch(args, false);
        server.wait_available(model).await;
        server
    }

    /// [`Server::start`] with the REST API on a port of its own, which it returns with the
    /// server.
    pub async fn start_with_rest(args: &[&str], model: &str) -> (Server, u16) {
        let mut server = Server::launch(args, true);
        server.wait_available(model).await;
        let rest = server.rest.expect("REST port");
        (server, rest)
    }

    /// Binds the ports and starts `serve` without waiting for any model, for tests that watch
    /// start-up or that cannot probe readiness over plaintext gRPC (TLS).
    ///
    /// Relative paths in `args` resolve against the repository root, as they did for the binary
    /// run from there. `--drain_timeout_seconds` defaults to 0: at the end of a test its clients
    /// still hold connections that cannot answer the server's GOAWAY while Drop blocks their
    /// runtime, so a drain would only wait out its timeout (draining is tested on the binary).
    pub fn launch(args: &[&str], rest: bool) -> Server {
        init_logging();
        for arg in args {
            let flag = arg.trim_start_matches('-').split('=').next().unwrap_or_default();
            assert!(!matches!(flag, "port" | "rest_api_port"), "{arg}: the harness binds the ports (use start_with_rest for REST)");
        }
        let mut config = match parse_args(args.iter().map(|a| a.to_string())) {
            Ok(ParseOutcome::Serve(config)) => *config,
            other => panic!("{args:?} do not start a server: {other:?}"),
        };
        if !args.iter().any(|a| a.contains("drain_timeout_seconds")) {
            config.drain_timeout = Duration::ZERO;
        }
        resolve_paths(&mut config);

        let bind = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener.set_nonblocking(true).expect("non-blocking listener");
            listener
        };
        let grpc = bind();
        let rest_listener = rest.then(bind);
        let port_of = |l: &std::net::TcpListener| l.local_addr().map(|a: SocketAddr| a.port()).expect("local address");
        let port = port_of(&grpc);
        let rest = rest_listener.as_ref().map(port_of);

        let (shutdown, mut stop) = watch::channel(false);
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("server-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("server runtime");
                let result = runtime.block_on(async move {
                    let listeners = Listeners {
                        grpc: tokio::net::TcpListener::from_std(grpc).map_err(|e| e.to_string())?,
                        rest: rest_listener.map(tokio::net::TcpListener::from_std).transpose().map_err(|e| e.to_string())?,
                    };
                    // A dropped sender (the test panicked) stops the server too.
                    let shutdown = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    serve(config, listeners, shutdown).await.map_err(|e| e.to_string())
                });
                // Tasks still running (a model load, a blocking read) must not keep the thread.
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = done_tx.send(result);
            })
            .expect("spawn the server thread");
        Server { port, rest, shutdown, done, outcome: None, thread: Some(thread) }
    }

    /// Waits until `model` has an AVAILABLE version (models load one after another, so a test
    /// that uses several waits for each). Panics with `serve`'s error if it returned.
    pub async fn wait_available(&mut self, model: &str) {
        let url = self.url();
        wait_model(&url, model, || self.stopped()).await;
    }

    /// Why the server is no longer running, if it is not.
    pub fn stopped(&mut self) -> Option<String> {
        if self.outcome.is_none() {
            self.outcome = match self.done.try_recv() {
                Ok(result) => Some(result),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => Some(Err("the server thread panicked".into())),
            };
        }
        match self.outcome.as_ref()? {
            Ok(()) => Some("serve returned Ok before it was asked to stop".into()),
            Err(e) => Some(format!("serve failed: {e}")),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        let finished = self.outcome.is_some() || self.done.recv_timeout(STOP_WAIT).is_ok();
        match self.thread.take() {
            Some(thread) if finished || thread.is_finished() => {
                let _ = thread.join();
            }
            Some(_) => eprintln!("in-process server on port {} did not stop within {STOP_WAIT:?}; leaving its thread", self.port),
            None => {}
        }
    }
}

/// Relative paths in the flags, resolved as the binary resolved them from the repository root
/// (where `cargo test` runs tests from, but not necessarily whoever runs the test binary).
fn resolve_paths(config: &mut ServerConfig) {
    let base = repo_root();
    let fix = |p: &mut PathBuf| *p = base.join(&*p);
    match &mut config.models {
        ModelSource::Single { base_path, .. } => fix(base_path),
        ModelSource::Discover { root } => fix(root),
        ModelSource::ConfigFile(path) => fix(path),
    }
    config.monitoring_config_file.iter_mut().for_each(fix);
    config.batching_parameters_file.iter_mut().for_each(fix);
    for tls in [&mut config.network.grpc_tls, &mut config.network.rest_tls].into_iter().flatten() {
        match tls {
            TlsSource::SslConfigFile(path) => fix(path),
            TlsSource::PemFiles { cert, key, client_ca } => {
                fix(cert);
                fix(key);
                client_ca.iter_mut().for_each(fix);
            }
        }
    }
}

/// Server logs go to the test's captured output (shown when it fails, or with --nocapture),
/// as the binary's stderr used to; RUST_LOG filters them as it does the binary's.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_test_writer().try_init();
}
