//! Flags for what the ports accept: TLS (TF Serving's `--ssl_config_file`, plus PEM-file flags
//! of our own that a mounted Kubernetes Secret can feed), and the limits that keep slow, stalled
//! or abusive clients from holding the server's connections and memory.

use std::path::PathBuf;
use std::time::Duration;

use super::flags::{FlagError, parse_num};

/// Where one port's certificate, key and (for mTLS) client CA come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `--ssl_config_file`: TF Serving's text SSLConfig, holding the PEM texts; `client_verify`
    /// asks for client certificates signed by `custom_ca`.
    SslConfigFile(PathBuf),
    /// PEM files; a client CA turns on mTLS (client certificates required).
    PemFiles { cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf> },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PemFlags {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

impl PemFlags {
    fn source(self, prefix: &str) -> Result<Option<TlsSource>, FlagError> {
        let bad = |reason: &str| FlagError::BadValue { flag: format!("{prefix}_ssl_cert_file"), value: String::new(), reason: reason.into() };
        match self {
            PemFlags { cert: None, key: None, client_ca: None } => Ok(None),
            PemFlags { cert: Some(cert), key: Some(key), client_ca } => Ok(Some(TlsSource::PemFiles { cert, key, client_ca })),
            PemFlags { cert: Some(_), key: None, .. } => Err(bad(&format!("--{prefix}_ssl_key_file is needed with it"))),
            PemFlags { cert: None, .. } => Err(bad(&format!("is needed with --{prefix}_ssl_key_file / --{prefix}_ssl_client_ca_file"))),
        }
    }
}

/// What both ports accept, and how they turn clients away.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkOptions {
    pub grpc_tls: Option<TlsSource>,
    pub rest_tls: Option<TlsSource>,
    /// How often certificate files are re-read; `None` = never.
    pub tls_reload_interval: Option<Duration>,
    /// From accept to a complete first request; then HTTP/1's header-read timeout.
    pub handshake_timeout: Duration,
    /// Close a connection with no open request for this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    pub http2_keepalive_interval: Option<Duration>,
    pub http2_keepalive_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    /// Open connections over both ports; 0 = derived from the open-file limit.
    pub max_connections: usize,
    /// TF Serving accepts gRPC messages up to INT32_MAX; clients rely on sending large batches.
    pub grpc_max_message_bytes: usize,
    /// JSON costs far more memory once parsed than its bytes, so REST stays at 1 GiB.
    pub rest_max_body_bytes: usize,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        Self {
            grpc_tls: None,
            rest_tls: None,
            tls_reload_interval: Some(Duration::from_secs(10)),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            http2_keepalive_interval: Some(Duration::from_secs(60)),
            http2_keepalive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: 256,
            max_connections: 0,
            grpc_max_message_bytes: i32::MAX as usize,
            rest_max_body_bytes: 1 << 30,
        }
    }
}

/// (flag, default shown in --help, description); every one takes a value.
pub(super) const FLAGS: &[(&str, &str, &str)] = &[
    ("ssl_config_file", "", "text SSLConfig (PEM texts of server_key, server_cert, custom_ca; client_verify) for TLS on the gRPC port"),
    ("grpc_ssl_cert_file", "", "PEM certificate chain for TLS on the gRPC port (instead of --ssl_config_file)"),
    ("grpc_ssl_key_file", "", "PEM private key for --grpc_ssl_cert_file"),
    ("grpc_ssl_client_ca_file", "", "PEM CA: gRPC clients must present a certificate it signed (mTLS)"),
    ("rest_api_ssl_cert_file", "", "PEM certificate chain for TLS (HTTPS) on the REST port"),
    ("rest_api_ssl_key_file", "", "PEM private key for --rest_api_ssl_cert_file"),
    ("rest_api_ssl_client_ca_file", "", "PEM CA: REST clients must present a certificate it signed (mTLS)"),
    ("ssl_reload_interval_seconds", "10", "re-read certificate files this often; changes apply to new connections (0 = never)"),
    ("connection_handshake_timeout_ms", "10000", "close a connection that has not sent a complete first request (TLS, HTTP/2 preface, headers) by then; also the HTTP/1 header-read timeout"),
    ("connection_idle_timeout_ms", "300000", "close a connection with no request open for this long (0 = never)"),
    ("http2_keepalive_interval_ms", "60000", "ping HTTP/2 clients this often (0 = off)"),
    ("http2_keepalive_timeout_ms", "20000", "close an HTTP/2 connection whose ping is not answered within this"),
    ("http2_max_concurrent_streams", "256", "concurrent requests per HTTP/2 connection"),
    ("max_connections", "0", "open connections over both ports; more are refused with 503 / GOAWAY (0 = open-file limit minus 64)"),
    ("grpc_max_message_bytes", "2147483647", "largest gRPC request or response message"),
    ("rest_api_max_body_bytes", "1073741824", "largest REST request body"),
];

/// Flag values until `finish` checks how they combine.
#[derive(Debug, Default)]
pub(super) struct NetworkFlags {
    options: NetworkOptions,
    ssl_config_file: Option<PathBuf>,
    grpc: PemFlags,
    rest: PemFlags,
}

fn path(value: String) -> Option<PathBuf> {
    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
}

fn millis(flag: &str, value: &str) -> Result<Duration, FlagError> {
    Ok(Duration::from_millis(parse_num(flag, value)?))
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl NetworkFlags {
    /// Takes `name` if it is one of [`FLAGS`].
    pub(super) fn apply(&mut self, name: &str, value: String) -> Result<(), FlagError> {
        let o = &mut self.options;
        match name {
            "ssl_config_file" => self.ssl_config_file = path(value),
            "grpc_ssl_cert_file" => self.grpc.cert = path(value),
            "grpc_ssl_key_file" => self.grpc.key = path(value),
            "grpc_ssl_client_ca_file" => self.grpc.client_ca = path(value),
            "rest_api_ssl_cert_file" => self.rest.cert = path(value),
            "rest_api_ssl_key_file" => self.rest.key = path(value),
            "rest_api_ssl_client_ca_file" => self.rest.client_ca = path(value),
            "ssl_reload_interval_seconds" => o.tls_reload_interval = nonzero(Duration::from_secs(parse_num(name, &value)?)),
            "connection_handshake_timeout_ms" => {
                o.handshake_timeout = nonzero(millis(name, &value)?)
                    .ok_or_else(|| FlagError::BadValue { flag: name.into(), value, reason: "must be positive".into() })?;
            }
            "connection_idle_timeout_ms" => o.idle_timeout = nonzero(millis(name, &value)?),
            "http2_keepalive_interval_ms" => o.http2_keepalive_interval = nonzero(millis(name, &value)?),
            "http2_keepalive_timeout_ms" => o.http2_keepalive_timeout = millis(name, &value)?,
            "http2_max_concurrent_streams" => o.http2_max_concurrent_streams = parse_num(name, &value)?,
            "max_connections" => o.max_connections = parse_num(name, &value)?,
            "grpc_max_message_bytes" => o.grpc_max_message_bytes = parse_num(name, &value)?,
            "rest_api_max_body_bytes" => o.rest_max_body_bytes = parse_num(name, &value)?,
            _ => return Err(FlagError::Unknown(name.to_string())),
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<NetworkOptions, FlagError> {
        let mut options = self.options;
        let grpc_files = self.grpc.source("grpc")?;
        options.grpc_tls = match (self.ssl_config_file, grpc_files) {
            (Some(_), Some(_)) => {
                return Err(FlagError::BadValue {
                    flag: "ssl_config_file".into(),
                    value: String::new(),
                    reason: "give either --ssl_config_file or --grpc_ssl_cert_file/--grpc_ssl_key_file, not both".into(),
                });
            }
            (Some(path), None) => Some(TlsSource::SslConfigFile(path)),
            (None, files) => files,
        };
        options.rest_tls = self.rest.source("rest_api")?;
        Ok(options)
    }
}

/// `--max_connections=0`: what the open-file limit leaves after descriptors for model files,
/// logs and the runtime. Read from /proc so no unsafe getrlimit call is needed.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<usize>().ok())
    });
    soft.map_or(4096, |n| n.saturating_sub(64).max(64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<NetworkOptions, FlagError> {
        let mut flags = NetworkFlags::default();
        for (name, value) in pairs {
            flags.apply(name, value.to_string())?;
        }
        flags.finish()
    }

    #[test]
    fn tls_sources_come_from_the_ssl_config_or_pem_files() {
        let o = parse(&[("ssl_config_file", "/etc/ssl.conf"), ("rest_api_ssl_cert_file", "c.pem"), ("rest_api_ssl_key_file", "k.pem")]).expect("valid");
        assert_eq!(o.grpc_tls, Some(TlsSource::SslConfigFile("/etc/ssl.conf".into())));
        assert_eq!(o.rest_tls, Some(TlsSource::PemFiles { cert: "c.pem".into(), key: "k.pem".into(), client_ca: None }));
        let o = parse(&[("grpc_ssl_cert_file", "c"), ("grpc_ssl_key_file", "k"), ("grpc_ssl_client_ca_file", "ca")]).expect("valid");
        assert_eq!(o.grpc_tls, Some(TlsSource::PemFiles { cert: "c".into(), key: "k".into(), client_ca: Some("ca".into()) }));
        assert_eq!(parse(&[]).expect("defaults").grpc_tls, None);
    }

    #[test]
    fn incomplete_or_conflicting_tls_flags_are_errors() {
        let err = parse(&[("rest_api_ssl_cert_file", "c")]).expect_err("no key");
        assert!(err.to_string().contains("--rest_api_ssl_key_file is needed"), "{err}");
        let err = parse(&[("grpc_ssl_client_ca_file", "ca")]).expect_err("no cert");
        assert!(err.to_string().contains("grpc_ssl_cert_file"), "{err}");
        let err = parse(&[("ssl_config_file", "s"), ("grpc_ssl_cert_file", "c"), ("grpc_ssl_key_file", "k")]).expect_err("both");
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn limits_parse_with_zero_meaning_off() {
        let o = parse(&[("connection_idle_timeout_ms", "0"), ("http2_keepalive_interval_ms", "0"), ("max_connections", "50")]).expect("valid");
        assert_eq!((o.idle_timeout, o.http2_keepalive_interval, o.max_connections), (None, None, 50));
        assert!(parse(&[("connection_handshake_timeout_ms", "0")]).is_err());
        assert_eq!(parse(&[]).expect("defaults").grpc_max_message_bytes, i32::MAX as usize);
    }

    #[test]
    fn the_default_connection_cap_leaves_descriptors_spare() {
        assert!(default_max_connections() >= 64);
    }
}
