//! Flags -> config, logging, sockets, then `candle_serving::serve`.

use std::process::ExitCode;

use candle_serving::config::{LogFormat, ParseOutcome, ServerConfig, parse_args, usage};
use candle_serving::{Listeners, serve};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs before the first allocation, which reserves mimalloc's first arena (see the function).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ARENAS_ON_DEMAND: extern "C" fn() = candle_serving::allocator::commit_arenas_on_demand;

#[allow(unsafe_code)]
fn main() -> ExitCode {
    // SAFETY: first thing in main, before the runtime, the pools or logging start a thread
    unsafe { candle_serving::engine::keep_candle_on_the_calling_thread() };
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(ParseOutcome::Serve(config)) => *config,
        Ok(ParseOutcome::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Ok(ParseOutcome::Version) => {
            println!("candle-serving {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("candle-serving: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    candle_serving::allocator::keep_freed_memory_warm();
    candle_serving::repository::set_load_hooks(candle_serving::repository::LoadHooks {
        started: candle_serving::allocator::load_started,
        finished: candle_serving::allocator::load_finished,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("candle-serving: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("candle-serving: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // No colour codes when stderr is a file or a pipe (kubectl logs, CI logs).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

async fn run(config: ServerConfig) -> Result<(), String> {
    if config.rest_api_port != 0 && config.rest_api_port == config.port {
        return Err(format!("--rest_api_port and --port must differ (both are {})", config.port));
    }
    let grpc = TcpListener::bind(("0.0.0.0", config.port))
        .await
        .map_err(|e| format!("cannot bind gRPC port {}: {e}", config.port))?;
    let rest = match config.rest_api_port {
        0 => None,
        port => Some(
            TcpListener::bind(("0.0.0.0", port)).await.map_err(|e| format!("cannot bind REST port {port}: {e}"))?,
        ),
    };
    serve(config, Listeners { grpc, rest }, shutdown_signal()).await.map_err(|e| e.to_string())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
