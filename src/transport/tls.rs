//! TLS for the gRPC and REST ports, on rustls with the ring provider.
//!
//! A port's certificate comes either from TF Serving's `--ssl_config_file` (a text SSLConfig
//! holding the PEM texts themselves) or from PEM files (our `--*_ssl_*_file` flags, which is
//! what a mounted Kubernetes Secret gives). Either way the files are re-read every reload
//! interval; a changed, valid set replaces the configuration that new handshakes use, so a
//! rotated certificate is picked up with no restart and no dropped connection. A changed set
//! that does not load is logged and ignored: the old certificate keeps serving.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use thiserror::Error;
use tokio::sync::watch;

use crate::config::{TlsSource, text_proto};
use crate::proto::tensorflow::serving::SslConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Config(#[from] text_proto::TextProtoError),
    /// `file` names the file, and for an SSLConfig the field, that holds the bad part.
    #[error("{file}: {what}: {reason}")]
    Invalid { file: String, what: &'static str, reason: String },
}

impl TlsError {
    fn invalid(file: &str, what: &'static str, reason: impl std::fmt::Display) -> Self {
        TlsError::Invalid { file: file.to_string(), what, reason: reason.to_string() }
    }
}

/// The PEM texts of one source, read in one go so a reload compares and builds the same bytes.
#[derive(PartialEq, Eq)]
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    /// Where each part came from, for error messages.
    cert_path: String,
    key_path: String,
    ca_path: String,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

impl TlsSource {
    fn read(&self) -> Result<Material, TlsError> {
        match self {
            TlsSource::SslConfigFile(path) => {
                let config: SslConfig = text_proto::parse_file("tensorflow.serving.SSLConfig", path)?;
                let field = |name: &str| format!("{} (field {name})", path.display());
                if config.server_cert.trim().is_empty() {
                    return Err(TlsError::invalid(&field("server_cert"), "server certificate", "is empty; it must hold the PEM text of the server certificate"));
                }
                if config.server_key.trim().is_empty() {
                    return Err(TlsError::invalid(&field("server_key"), "private key", "is empty; it must hold the PEM text of the private key"));
                }
                let client_ca = match (config.client_verify, config.custom_ca.trim().is_empty()) {
                    (true, true) => {
                        return Err(TlsError::invalid(&field("client_verify"), "client verification", "is true but custom_ca is empty: no CA to verify client certificates with"));
                    }
                    (true, false) => Some(config.custom_ca.into_bytes()),
                    (false, _) => None,
                };
                Ok(Material {
                    cert: config.server_cert.into_bytes(),
                    key: config.server_key.into_bytes(),
                    client_ca,
                    cert_path: field("server_cert"),
                    key_path: field("server_key"),
                    ca_path: field("custom_ca"),
                })
            }
            TlsSource::PemFiles { cert, key, client_ca } => Ok(Material {
                cert: read(cert)?,
                key: read(key)?,
                client_ca: client_ca.as_deref().map(read).transpose()?,
                cert_path: cert.display().to_string(),
                key_path: key.display().to_string(),
                ca_path: client_ca.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            }),
        }
    }
}

fn certificates(pem: &[u8], path: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::invalid(path, what, e))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(path, what, "no PEM CERTIFICATE block found"));
    }
    Ok(certs)
}

fn build(m: &Material) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&m.cert, &m.cert_path, "server certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&m.key).map_err(|e| TlsError::invalid(&m.key_path, "private key", e))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::invalid(&m.key_path, "private key", e))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| TlsError::invalid(&m.key_path, "private key", format!("does not belong to the certificate in {}: {e}", m.cert_path)))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::invalid(&m.cert_path, "TLS versions", e))?;
    let builder = match &m.client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => builder.with_client_cert_verifier(client_verifier(pem, &m.ca_path, provider)?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    // gRPC clients insist on negotiating h2; REST clients may speak either.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(pem: &[u8], path: &str, provider: Arc<CryptoProvider>) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(pem, path, "client CA")? {
        roots.add(ca).map_err(|e| TlsError::invalid(path, "client CA", e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::invalid(path, "client CA", e))
}

/// The live TLS configuration of one port: read at start-up (errors stop the server) and
/// re-read every `interval` by [`TlsConfig::watch`].
pub struct TlsConfig {
    source: TlsSource,
    current: Material,
    tx: watch::Sender<Arc<rustls::ServerConfig>>,
}

impl TlsConfig {
    pub fn load(source: TlsSource) -> Result<Self, TlsError> {
        let current = source.read()?;
        let config = build(&current)?;
        let (tx, _) = watch::channel(config);
        Ok(Self { source, current, tx })
    }

    /// What the accept loop hands each new connection's handshake.
    pub fn acceptor(&self) -> watch::Receiver<Arc<rustls::ServerConfig>> {
        self.tx.subscribe()
    }

    /// Re-reads the source every `interval` until `stop`; a changed set that loads replaces the
    /// configuration for new handshakes, one that fails is logged once and the old one stays.
    pub async fn watch(mut self, name: &'static str, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut rejected: Option<Material> = None;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let material = match self.source.read() {
                Ok(m) => m,
                Err(err) => {
                    tracing::warn!(transport = name, %err, "TLS files unreadable; keeping the current certificate");
                    continue;
                }
            };
            if material == self.current || rejected.as_ref() == Some(&material) {
                continue;
            }
            match build(&material) {
                Ok(config) => {
                    self.tx.send_replace(config);
                    self.current = material;
                    rejected = None;
                    tracing::info!(transport = name, "TLS certificate reloaded; new connections use it");
                }
                Err(err) => {
                    tracing::warn!(transport = name, %err, "changed TLS files do not load; keeping the current certificate");
                    rejected = Some(material);
                }
            }
        }
    }
}
