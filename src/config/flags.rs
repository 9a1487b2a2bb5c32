//! TF Serving's flag names and defaults, accepting both `--flag=value` and `--flag value`, so
//! existing manifests start this binary unchanged.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::network::{self, NetworkFlags, NetworkOptions};
use crate::engine::DeviceSpec;

/// Where the models to serve come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `--model_name` + `--model_base_path`.
    Single { name: String, base_path: PathBuf },
    /// Every `<root>/<name>/<version>/` directory; the default with no flags at all.
    Discover { root: PathBuf },
    /// `--model_config_file`: TF Serving's text-format ModelServerConfig.
    ConfigFile(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub port: u16,
    /// 0 = REST off.
    pub rest_api_port: u16,
    pub models: ModelSource,
    pub enable_serialization_as_tensor_content: bool,
    /// Requests that execute at once (`--tensorflow_inter_op_parallelism`); 0 = the cores
    /// available to the process.
    pub compute_threads: usize,
    /// Threads one kernel call may split across (`--tensorflow_intra_op_parallelism`); 0 = the
    /// cores available to the process (cgroup-aware).
    pub intra_op_threads: usize,
    /// `--device`: cpu or cuda:N.
    pub device: DeviceSpec,
    /// `--saved_model_tags`: the tag set that picks a SavedModel's meta graph.
    pub saved_model_tags: Vec<String>,
    /// Largest request tensor we materialise (TF Serving's gRPC limit is INT32_MAX bytes).
    pub max_tensor_bytes: usize,
    pub rest_api_timeout: Duration,
    /// `--monitoring_config_file`: a text-format `tensorflow.serving.MonitoringConfig`.
    pub monitoring_config_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// `--otlp_endpoint`: where OpenTelemetry traces go (OTLP/gRPC); `None` leaves the choice to
    /// the standard OTEL_EXPORTER_OTLP_* variables, and tracing is off when they are unset too.
    pub otlp_endpoint: Option<String>,
    /// How long to keep serving after SIGTERM with health NOT_SERVING (the preStop window).
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish once the server stops accepting.
    pub drain_timeout: Duration,
    pub grpc_max_connection_age: Option<Duration>,
    pub grpc_max_connection_age_grace: Option<Duration>,
    pub lifecycle: LifecycleOptions,
    pub enable_batching: bool,
    /// `--batching_parameters_file`: a text-format `tensorflow.serving.BatchingParameters`.
    pub batching_parameters_file: Option<PathBuf>,
    /// `--max_inflight_requests`: Predict requests admitted at once (0 = unlimited).
    pub max_inflight_requests: usize,
    /// TLS, connection limits and message sizes for both ports.
    pub network: NetworkOptions,
    /// TF Serving flags accepted so existing manifests start unchanged, but with no effect here;
    /// start-up logs each one as a warning.
    pub ignored_flags: Vec<String>,
}

/// Model lifecycle knobs, with TF Serving's flag names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleOptions {
    /// How often version directories are re-scanned; `None` = only at start-up.
    pub file_system_poll: Option<Duration>,
    /// How often `--model_config_file` is re-read; `None` = only at start-up.
    pub config_file_poll: Option<Duration>,
    pub max_load_retries: u32,
    pub load_retry_interval: Duration,
    pub allow_labels_for_unavailable: bool,
    pub enable_warmup: bool,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            file_system_poll: Some(Duration::from_secs(1)),
            config_file_poll: None,
            max_load_retries: 5,
            load_retry_interval: Duration::from_secs(60),
            allow_labels_for_unavailable: false,
            enable_warmup: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            port: 8500,
            rest_api_port: 0,
            models: ModelSource::Discover { root: PathBuf::from("models") },
            enable_serialization_as_tensor_content: false,
            compute_threads: 0,
            intra_op_threads: 0,
            device: DeviceSpec::Cpu,
            saved_model_tags: vec!["serve".to_string()],
            max_tensor_bytes: i32::MAX as usize,
            rest_api_timeout: Duration::from_millis(30_000),
            monitoring_config_file: None,
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            shutdown_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(30),
            grpc_max_connection_age: None,
            grpc_max_connection_age_grace: None,
            lifecycle: LifecycleOptions::default(),
            enable_batching: false,
            batching_parameters_file: None,
            max_inflight_requests: 0,
            network: NetworkOptions::default(),
            ignored_flags: Vec::new(),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("unknown flag --{0} (run with --help for the list of flags)")]
    Unknown(String),
    #[error("flag --{0} needs a value")]
    MissingValue(String),
    #[error("flag --{flag}: invalid value '{value}': {reason}")]
    BadValue { flag: String, value: String, reason: String },
    #[error("unexpected argument '{0}'; flags start with --")]
    Positional(String),
    #[error("--model_name was given without --model_base_path")]
    NameWithoutPath,
    #[error("--batching_parameters_file was given without --enable_batching")]
    BatchingFileWithoutBatching,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum ParseOutcome {
    Serve(Box<ServerConfig>),
    Help,
    Version,
}

enum Kind {
    Value,
    Bool,
}

/// (flag, kind, default shown in --help, description). Only flags this server acts on are
/// accepted: silently ignoring a TF Serving flag would hide a behaviour the user asked for.
const FLAGS: &[(&str, Kind, &str, &str)] = &[
    ("port", Kind::Value, "8500", "gRPC port"),
    ("rest_api_port", Kind::Value, "0 (8501 with no flags)", "HTTP/REST port for the REST API, metrics and health (0 = off)"),
    ("rest_api_timeout_in_ms", Kind::Value, "30000", "REST request timeout"),
    ("monitoring_config_file", Kind::Value, "", "text MonitoringConfig; prometheus_config.path adds a metrics path"),
    ("log_format", Kind::Value, "text", "text or json"),
    ("otlp_endpoint", Kind::Value, "", "send OpenTelemetry traces over OTLP/gRPC to this http://host:port (else OTEL_EXPORTER_OTLP_ENDPOINT; unset = off)"),
    ("shutdown_delay_seconds", Kind::Value, "0", "after SIGTERM, report NOT_SERVING but keep serving this long"),
    ("drain_timeout_seconds", Kind::Value, "30", "then wait this long for in-flight requests"),
    ("grpc_max_connection_age_ms", Kind::Value, "0", "close gRPC connections after this age, +-10% jitter (0 = never)"),
    ("grpc_max_connection_age_grace_ms", Kind::Value, "0", "time a closing connection gets to finish (0 = unbounded)"),
    ("model_name", Kind::Value, "default", "name of the single model to serve"),
    ("model_base_path", Kind::Value, "", "directory holding <version>/model.onnx of that model"),
    ("enable_serialization_as_tensor_content", Kind::Bool, "false", "answer Predict in tensor_content bytes"),
    ("tensorflow_intra_op_parallelism", Kind::Value, "0", "threads one model execution may use (0 = available cores, cgroup-aware)"),
    ("tensorflow_inter_op_parallelism", Kind::Value, "0", "model executions that run at once (0 = available cores)"),
    ("device", Kind::Value, "cpu", "cpu, or cuda:N with a CUDA build"),
    ("model_config_file", Kind::Value, "", "text ModelServerConfig listing the models (overrides --model_name/--model_base_path)"),
    ("model_config_file_poll_wait_seconds", Kind::Value, "0", "re-read --model_config_file this often (0 = once)"),
    ("file_system_poll_wait_seconds", Kind::Value, "1", "re-scan version directories this often (0 = once; fractions allowed)"),
    ("max_num_load_retries", Kind::Value, "5", "retries after a failed version load"),
    ("load_retry_interval_micros", Kind::Value, "60000000", "delay between load retries"),
    ("allow_version_labels_for_unavailable_models", Kind::Bool, "false", "allow labels on versions not yet available"),
    ("enable_model_warmup", Kind::Bool, "true", "replay assets.extra/tf_serving_warmup_requests (or one synthetic request) before AVAILABLE"),
    ("enable_batching", Kind::Bool, "false", "batch concurrent Predict requests per model version"),
    ("batching_parameters_file", Kind::Value, "", "text BatchingParameters (needs --enable_batching; without it: adaptive batching, no timer)"),
    ("max_inflight_requests", Kind::Value, "0", "Predict requests admitted at once; more get RESOURCE_EXHAUSTED (0 = unlimited)"),
    ("grpc_channel_arguments", Kind::Value, "", "TF's k=v list; grpc.max_connection_age_ms and grpc.max_connection_age_grace_ms are honoured"),
    ("tensorflow_session_parallelism", Kind::Value, "0", "sets both parallelism flags where they are unset"),
    ("enable_grpc_healthcheck_service", Kind::Bool, "true", "accepted; grpc.health.v1 is always served"),
    ("rest_api_num_threads", Kind::Value, "0", "accepted, no effect (logged): tokio sizes its own pool"),
    ("grpc_max_threads", Kind::Value, "0", "accepted, no effect (logged): tokio sizes its own pool"),
    ("num_load_threads", Kind::Value, "0", "accepted, no effect (logged): versions load one at a time"),
    ("num_unload_threads", Kind::Value, "0", "accepted, no effect (logged)"),
    ("enable_profiler", Kind::Bool, "true", "accepted, no effect (logged)"),
    ("flush_filesystem_caches", Kind::Bool, "true", "accepted, no effect (logged)"),
    ("saved_model_tags", Kind::Value, "serve", "comma-separated tag set that picks a SavedModel's meta graph"),
    ("help", Kind::Bool, "", "print this help"),
    ("version", Kind::Bool, "", "print the version"),
];

pub fn usage() -> String {
    let mut out = String::from("candle-serving: a TensorFlow Serving-compatible model server\n\nFlags:\n");
    for (name, _, default, help) in FLAGS {
        out.push_str(&format!("  --{name:<42} {help} (default: {default})\n"));
    }
    for (name, default, help) in network::FLAGS {
        out.push_str(&format!("  --{name:<42} {help} (default: {default})\n"));
    }
    out.push_str("\nWith no flags, every <name>/<version>/model.onnx under ./models is served: gRPC on 8500, REST on 8501.\n");
    out
}

fn parse_bool(flag: &str, value: &str) -> Result<bool, FlagError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(FlagError::BadValue { flag: flag.into(), value: value.into(), reason: "expected true or false".into() }),
    }
}

pub(super) fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, FlagError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| FlagError::BadValue { flag: flag.into(), value: value.into(), reason: e.to_string() })
}

/// `--grpc_channel_arguments=k=v,k=v`: the connection-age keys map onto our flags; other gRPC
/// core arguments have no equivalent in this server and are logged as ignored.
fn apply_channel_arguments(config: &mut ServerConfig, list: &str) -> Result<(), FlagError> {
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| FlagError::BadValue {
            flag: "grpc_channel_arguments".into(),
            value: pair.into(),
            reason: "expected key=value".into(),
        })?;
        match key {
            "grpc.max_connection_age_ms" => config.grpc_max_connection_age = millis(parse_num("grpc_channel_arguments", value)?),
            "grpc.max_connection_age_grace_ms" => {
                config.grpc_max_connection_age_grace = millis(parse_num("grpc_channel_arguments", value)?);
            }
            _ => config.ignored_flags.push(format!("--grpc_channel_arguments {key}={value}")),
        }
    }
    Ok(())
}

/// Poll periods: 0 = once (None), negative = never (None), fractions allowed for tests.
fn seconds(flag: &str, value: &str) -> Result<Option<Duration>, FlagError> {
    let s: f64 = parse_num(flag, value)?;
    if !s.is_finite() {
        return Err(FlagError::BadValue { flag: flag.into(), value: value.into(), reason: "not a finite number".into() });
    }
    Ok((s > 0.0).then(|| Duration::from_secs_f64(s)))
}

fn millis(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Parses the arguments after the program name.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<ParseOutcome, FlagError> {
    let mut config = ServerConfig::default();
    let mut model_name: Option<String> = None;
    let mut config_file: Option<PathBuf> = None;
    let mut session_parallelism: Option<usize> = None;
    let mut base_path: Option<String> = None;
    let mut network = NetworkFlags::default();
    let mut args = args.into_iter().peekable();
    if args.peek().is_none() {
        // No flags at all: serve ./models with REST on, as the README's first command promises.
        config.rest_api_port = 8501;
    }
    while let Some(arg) = args.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-').filter(|b| b.len() > 1)) else {
            return Err(FlagError::Positional(arg));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let is_network = network::FLAGS.iter().any(|(n, ..)| *n == name);
        let kind = match FLAGS.iter().find(|(n, ..)| *n == name) {
            Some((_, kind, ..)) => kind,
            None if is_network => &Kind::Value,
            None => return Err(FlagError::Unknown(name)),
        };
        let value = match (kind, inline) {
            (_, Some(v)) => v,
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Value, None) => args.next().ok_or_else(|| FlagError::MissingValue(name.clone()))?,
        };
        if is_network {
            network.apply(&name, value)?;
            continue;
        }
        match name.as_str() {
            "port" => config.port = parse_num(&name, &value)?,
            "rest_api_port" => config.rest_api_port = parse_num(&name, &value)?,
            "model_name" => model_name = Some(value),
            "model_base_path" => base_path = Some(value),
            "enable_serialization_as_tensor_content" => {
                config.enable_serialization_as_tensor_content = parse_bool(&name, &value)?;
            }
            "tensorflow_intra_op_parallelism" => config.intra_op_threads = parse_num(&name, &value)?,
            "tensorflow_inter_op_parallelism" => config.compute_threads = parse_num(&name, &value)?,
            "device" => {
                config.device = value.parse().map_err(|reason| FlagError::BadValue { flag: name.clone(), value: value.clone(), reason })?;
            }
            "model_config_file" => config_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty()),
            "model_config_file_poll_wait_seconds" => config.lifecycle.config_file_poll = seconds(&name, &value)?,
            "file_system_poll_wait_seconds" => config.lifecycle.file_system_poll = seconds(&name, &value)?,
            "max_num_load_retries" => config.lifecycle.max_load_retries = parse_num(&name, &value)?,
            "load_retry_interval_micros" => {
                config.lifecycle.load_retry_interval = Duration::from_micros(parse_num(&name, &value)?);
            }
            "allow_version_labels_for_unavailable_models" => {
                config.lifecycle.allow_labels_for_unavailable = parse_bool(&name, &value)?;
            }
            "enable_model_warmup" => config.lifecycle.enable_warmup = parse_bool(&name, &value)?,
            "enable_batching" => config.enable_batching = parse_bool(&name, &value)?,
            "batching_parameters_file" => config.batching_parameters_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty()),
            "max_inflight_requests" => config.max_inflight_requests = parse_num(&name, &value)?,
            "rest_api_timeout_in_ms" => config.rest_api_timeout = Duration::from_millis(parse_num(&name, &value)?),
            "monitoring_config_file" => config.monitoring_config_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty()),
            "log_format" => {
                config.log_format = match value.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(FlagError::BadValue { flag: name, value, reason: "expected text or json".into() }),
                }
            }
            "otlp_endpoint" => config.otlp_endpoint = Some(value).filter(|v| !v.is_empty()),
            "shutdown_delay_seconds" => config.shutdown_delay = Duration::from_secs(parse_num(&name, &value)?),
            "drain_timeout_seconds" => config.drain_timeout = Duration::from_secs(parse_num(&name, &value)?),
            "grpc_max_connection_age_ms" => config.grpc_max_connection_age = millis(parse_num(&name, &value)?),
            "grpc_max_connection_age_grace_ms" => config.grpc_max_connection_age_grace = millis(parse_num(&name, &value)?),
            "grpc_channel_arguments" => apply_channel_arguments(&mut config, &value)?,
            "tensorflow_session_parallelism" => session_parallelism = Some(parse_num::<usize>(&name, &value)?),
            "enable_grpc_healthcheck_service" => {
                parse_bool(&name, &value)?;
            }
            "rest_api_num_threads" | "grpc_max_threads" | "num_load_threads"
            | "num_unload_threads" => config.ignored_flags.push(format!("--{name}={value}")),
            "saved_model_tags" => config.saved_model_tags = value.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect(),
            "enable_profiler" | "flush_filesystem_caches" => {
                parse_bool(&name, &value)?;
                config.ignored_flags.push(format!("--{name}={value}"));
            }
            "help" if parse_bool(&name, &value)? => return Ok(ParseOutcome::Help),
            "version" if parse_bool(&name, &value)? => return Ok(ParseOutcome::Version),
            _ => {}
        }
    }
    if let Some(n) = session_parallelism {
        if config.compute_threads == 0 {
            config.compute_threads = n;
        }
        if config.intra_op_threads == 0 {
            config.intra_op_threads = n;
        }
    }
    if config.batching_parameters_file.is_some() && !config.enable_batching {
        return Err(FlagError::BatchingFileWithoutBatching);
    }
    config.network = network.finish()?;
    if let Some(path) = config_file {
        // As in TF Serving, the config file wins over --model_name/--model_base_path.
        config.models = ModelSource::ConfigFile(path);
        return Ok(ParseOutcome::Serve(Box::new(config)));
    }
    match (model_name, base_path) {
        (name, Some(path)) if !path.is_empty() => {
            config.models = ModelSource::Single {
                name: name.unwrap_or_else(|| "default".to_string()),
                base_path: PathBuf::from(path),
            };
        }
        (Some(_), _) => return Err(FlagError::NameWithoutPath),
        (None, _) => {}
    }
    Ok(ParseOutcome::Serve(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ParseOutcome, FlagError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn serve(args: &[&str]) -> ServerConfig {
        match parse(args) {
            Ok(ParseOutcome::Serve(c)) => *c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn no_flags_serves_the_models_folder_on_8500() {
        let c = serve(&[]);
        assert_eq!((c.port, c.rest_api_port), (8500, 8501));
        assert_eq!(c.models, ModelSource::Discover { root: PathBuf::from("models") });
    }

    #[test]
    fn both_flag_syntaxes_work() {
        let c = serve(&["--port=9000", "--rest_api_port", "9001", "--model_name=m", "--model_base_path", "/x/m"]);
        assert_eq!((c.port, c.rest_api_port), (9000, 9001));
        assert_eq!(c.models, ModelSource::Single { name: "m".into(), base_path: PathBuf::from("/x/m") });
        let c = serve(&["--model_base_path=/x/m", "--enable_serialization_as_tensor_content"]);
        assert_eq!(c.models, ModelSource::Single { name: "default".into(), base_path: PathBuf::from("/x/m") });
        assert!(c.enable_serialization_as_tensor_content);
        assert!(!serve(&["--enable_serialization_as_tensor_content=false"]).enable_serialization_as_tensor_content);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert_eq!(parse(&["--bogus=1"]), Err(FlagError::Unknown("bogus".into())));
        assert_eq!(parse(&["--port"]), Err(FlagError::MissingValue("port".into())));
        assert!(matches!(parse(&["--port=abc"]), Err(FlagError::BadValue { .. })));
        assert!(matches!(parse(&["--port=70000"]), Err(FlagError::BadValue { .. })));
        assert_eq!(parse(&["--model_name=x"]), Err(FlagError::NameWithoutPath));
        assert_eq!(parse(&["stray"]), Err(FlagError::Positional("stray".into())));
        assert_eq!(parse(&["--help"]), Ok(ParseOutcome::Help));
    }

    #[test]
    fn tf_serving_flags_from_existing_manifests_are_accepted() {
        let c = serve(&[
            "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
            "--tensorflow_session_parallelism=3",
            "--enable_grpc_healthcheck_service=true",
            "--rest_api_num_threads=8",
        ]);
        assert_eq!(c.grpc_max_connection_age, Some(Duration::from_millis(2000)));
        assert_eq!((c.compute_threads, c.intra_op_threads), (3, 3));
        let d = serve(&["--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=4", "--device=cuda:1"]);
        assert_eq!((d.compute_threads, d.intra_op_threads, d.device), (4, 2, DeviceSpec::Cuda(1)));
        assert!(matches!(parse(&["--device=tpu"]), Err(FlagError::BadValue { .. })));
        assert_eq!(c.ignored_flags, vec!["--grpc_channel_arguments grpc.lb_policy_name=grpclb", "--rest_api_num_threads=8"]);
        assert!(matches!(parse(&["--grpc_channel_arguments=oops"]), Err(FlagError::BadValue { .. })));
    }

    #[test]
    fn otlp_endpoint_is_off_unless_given() {
        assert_eq!(serve(&["--port=9000"]).otlp_endpoint, None);
        assert_eq!(serve(&["--otlp_endpoint=http://collector:4317"]).otlp_endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(serve(&["--otlp_endpoint", "http://127.0.0.1:4317"]).otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(serve(&["--otlp_endpoint="]).otlp_endpoint, None);
        assert!(usage().contains("--otlp_endpoint"));
    }
}
