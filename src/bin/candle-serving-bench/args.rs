//! Command-line flags of the load generator. Hand-rolled (the crate has no clap) and strict: an
//! unknown or malformed flag is an error with exit code 2, because a benchmark that silently
//! ignored `--rate` would measure something other than what was asked.

use std::path::PathBuf;
use std::time::Duration;

/// Wire protocol under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Grpc,
    /// The KServe v2 protocol's `inference.GRPCInferenceService/ModelInfer`, raw contents.
    GrpcV2,
    Rest,
}

/// Closed loop (fixed number of requests in flight) or open loop (fixed send timetable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Load {
    Closed { concurrency: usize },
    Open { rate: f64, max_outstanding: usize },
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stop {
    After(Duration),
    Requests(u64),
}

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub target: String,
    pub protocol: Protocol,
    pub model: String,
    pub signature: Option<String>,
    pub input_npy: Option<PathBuf>,
    pub input_name: Option<String>,
    /// `None`: 1 for random inputs, every row of the file for `--input-npy`.
    pub batch: Option<usize>,
    pub dynamic_dim: usize,
    pub load: Load,
    pub stop: Stop,
    pub warmup: Duration,
    pub connections: usize,
    pub timeout: Duration,
    pub server_pid: Option<u32>,
    pub threads: Option<usize>,
    pub json: bool,
}

pub(crate) enum Parsed {
    Run(Box<Args>),
    Help,
}

pub(crate) const USAGE: &str = "\
candle-serving-bench: load generator for TensorFlow Serving-compatible Predict endpoints

Usage: candle-serving-bench --target HOST:PORT [flags]

Target:
  --target HOST:PORT      server address (required): the gRPC port, or the REST port with --protocol=rest
  --protocol grpc|grpc-v2|rest
                          gRPC PredictionService/Predict (default), the v2 protocol's gRPC
                          ModelInfer with raw contents, or POST /v1/models/{m}:predict
  --model NAME            model name (default: default)
  --signature NAME        signature_name to send (default: the server's default signature)
Inputs:
  --input-npy PATH        float32 .npy ('<f4', C order); its first dimension is the batch
  --input-name NAME       signature input the .npy feeds (default: the signature's only input)
  --batch N               rows per request: taken from the .npy cycling through its rows (default: all
                          rows), or the batch size of random inputs shaped by GetModelMetadata (default 1)
  --dynamic-dim N         size for dynamic dimensions other than the first (default 1)
Load (closed loop by default):
  --concurrency N         closed loop: N workers, each with one request in flight (default 1)
  --rate R                open loop: R requests/s on a fixed timetable regardless of responses;
                          latency counts from the scheduled send time (no coordinated omission)
  --max-outstanding N     open loop: requests in flight at most; later slots are dropped (default 10000)
  --duration SECS         measured phase length (default 10)
  --requests N            or: measure exactly N requests
  --warmup SECS           load sent first and not counted (default 1)
  --connections K         gRPC channels (HTTP/2 connections) to spread requests over (default 1);
                          REST opens one keep-alive connection per request in flight
  --timeout SECS          per-request deadline (default 30)
  --threads N             client runtime worker threads (default: all cores)
Report:
  --server-pid PID        report the server's CPU time per request (from /proc/PID/stat)
  --json                  print one JSON object instead of the table
  --help                  print this help

Exit status: 0 when the run happened (even if requests failed), 1 when setup failed (cannot connect,
no metadata), 2 on bad flags.
";

/// Flags that take no value.
const SWITCHES: &[&str] = &["json", "help"];

/// Parses the arguments after the program name; errors are messages for stderr.
pub(crate) fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Parsed, String> {
    let mut target = None;
    let mut protocol = Protocol::Grpc;
    let mut model = "default".to_string();
    let (mut signature, mut input_npy, mut input_name, mut batch) = (None, None, None, None);
    let mut dynamic_dim = 1;
    let (mut concurrency, mut rate, mut max_outstanding) = (None, None, 10_000);
    let (mut duration, mut requests) = (None, None);
    let mut warmup = Duration::from_secs(1);
    let mut connections = 1;
    let mut timeout = Duration::from_secs(30);
    let (mut server_pid, mut threads, mut json) = (None, None, false);

    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        let body = arg.strip_prefix("--").ok_or_else(|| format!("unexpected argument '{arg}' (flags start with --)"))?;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let value = match inline {
            Some(v) => v,
            None if SWITCHES.contains(&name.as_str()) => "true".to_string(),
            None => argv.next().ok_or_else(|| format!("--{name} needs a value"))?,
        };
        let v = value.as_str();
        match name.as_str() {
            "target" => target = Some(value.clone()),
            "protocol" => {
                protocol = match v {
                    "grpc" => Protocol::Grpc,
                    "grpc-v2" => Protocol::GrpcV2,
                    "rest" => Protocol::Rest,
                    _ => return Err(format!("--protocol: expected grpc, grpc-v2 or rest, got '{v}'")),
                }
            }
            "model" => model = value.clone(),
            "signature" => signature = Some(value.clone()),
            "input-npy" => input_npy = Some(PathBuf::from(v)),
            "input-name" => input_name = Some(value.clone()),
            "batch" => batch = Some(positive(&name, v)?),
            "dynamic-dim" => dynamic_dim = positive(&name, v)?,
            "concurrency" => concurrency = Some(positive(&name, v)?),
            "rate" => rate = Some(seconds_like(&name, v, false)?),
            "max-outstanding" => max_outstanding = positive(&name, v)?,
            "duration" => duration = Some(Duration::from_secs_f64(seconds_like(&name, v, false)?)),
            "requests" => requests = Some(positive(&name, v)? as u64),
            "warmup" => warmup = Duration::from_secs_f64(seconds_like(&name, v, true)?),
            "connections" => connections = positive(&name, v)?,
            "timeout" => timeout = Duration::from_secs_f64(seconds_like(&name, v, false)?),
            "server-pid" => server_pid = Some(v.parse().map_err(|e| format!("--server-pid '{v}': {e}"))?),
            "threads" => threads = Some(positive(&name, v)?),
            "json" => json = boolean(&name, v)?,
            "help" if boolean(&name, v)? => return Ok(Parsed::Help),
            "help" => {}
            _ => return Err(format!("unknown flag --{name} (see --help)")),
        }
    }

    let target = target.ok_or("--target HOST:PORT is required")?;
    if !target.contains(':') || target.contains('/') {
        return Err(format!("--target '{target}': expected HOST:PORT"));
    }
    let load = match (concurrency, rate) {
        (Some(_), Some(_)) => return Err("--concurrency and --rate are exclusive (closed vs open loop)".into()),
        (_, Some(rate)) => Load::Open { rate, max_outstanding },
        (c, None) => Load::Closed { concurrency: c.unwrap_or(1) },
    };
    let stop = match (duration, requests) {
        (Some(_), Some(_)) => return Err("--duration and --requests are exclusive".into()),
        (_, Some(n)) => Stop::Requests(n),
        (d, None) => Stop::After(d.unwrap_or(Duration::from_secs(10))),
    };
    if input_name.is_some() && input_npy.is_none() {
        return Err("--input-name only applies with --input-npy".into());
    }
    Ok(Parsed::Run(Box::new(Args {
        target,
        protocol,
        model,
        signature,
        input_npy,
        input_name,
        batch,
        dynamic_dim,
        load,
        stop,
        warmup,
        connections,
        timeout,
        server_pid,
        threads,
        json,
    })))
}

fn positive(flag: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(format!("--{flag} must be at least 1")),
        Err(e) => Err(format!("--{flag} '{v}': {e}")),
    }
}

/// A finite, non-negative number; zero only where `zero_ok` (a warm-up can be skipped, a rate or
/// duration of zero would never finish).
fn seconds_like(flag: &str, v: &str, zero_ok: bool) -> Result<f64, String> {
    let x: f64 = v.parse().map_err(|e| format!("--{flag} '{v}': {e}"))?;
    if !x.is_finite() || x < 0.0 || (x == 0.0 && !zero_ok) || x > 1e9 {
        return Err(format!("--{flag} '{v}': expected a {} number", if zero_ok { "non-negative" } else { "positive" }));
    }
    Ok(x)
}

fn boolean(flag: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("--{flag}: expected true or false, got '{v}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(a) => Ok(*a),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_and_both_value_styles() {
        let a = run(&["--target", "h:1", "--rate=50", "--requests", "7"]).expect("parse");
        assert_eq!(a.load, Load::Open { rate: 50.0, max_outstanding: 10_000 });
        assert_eq!(a.stop, Stop::Requests(7));
        assert_eq!(a.protocol, Protocol::Grpc);
        assert_eq!(a.warmup, Duration::from_secs(1));
        let a = run(&["--target=h:1"]).expect("parse");
        assert_eq!(a.load, Load::Closed { concurrency: 1 });
        assert_eq!(a.stop, Stop::After(Duration::from_secs(10)));
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(run(&[]).is_err());
        assert!(run(&["--target=h:1", "--nope=1"]).is_err());
        assert!(run(&["--target=h:1", "--rate=1", "--concurrency=2"]).is_err());
        assert!(run(&["--target=h:1", "--batch=0"]).is_err());
        assert!(run(&["--target=h:1", "--protocol=http"]).is_err());
        assert!(run(&["--target=h:1", "--duration"]).is_err());
    }
}
