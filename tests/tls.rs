//! TLS and mTLS on both ports: TF Serving's `--ssl_config_file` with the official Python client
//! (grpc.ssl_channel_credentials), our PEM-file flags with curl on the REST port, certificate
//! rotation on disk without a failed request, and start-up errors that name the bad file.
//! Certificates are made per test with the openssl command line.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn key(dir: &Path, name: &str) {
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &format!("{name}.key")]);
}

/// A self-signed CA `<name>.pem` / `<name>.key`.
fn ca(dir: &Path, name: &str) {
    key(dir, name);
    let (k, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(dir, &["req", "-x509", "-new", "-key", &k, "-subj", &format!("/CN={name}"), "-days", "2", "-out", &pem]);
}

/// `<name>.pem` / `<name>.key` signed by `ca`, for `usage` (serverAuth or clientAuth).
fn leaf(dir: &Path, name: &str, ca: &str, usage: &str) {
    key(dir, name);
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), format!("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n")).expect("write ext");
    let (k, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(dir, &["req", "-new", "-key", &k, "-subj", "/CN=localhost", "-out", &csr]);
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial", "-days", "2", "-extfile", &ext, "-out", &pem]);
}

/// The test PKI: a CA, two server certificates (the second for rotation), a client
/// certificate, and a client certificate from a CA the server does not trust.
fn pki(dir: &Path) {
    ca(dir, "ca");
    ca(dir, "rogue-ca");
    leaf(dir, "server", "ca", "serverAuth");
    leaf(dir, "server2", "ca", "serverAuth");
    leaf(dir, "client", "ca", "clientAuth");
    leaf(dir, "rogue-client", "rogue-ca", "clientAuth");
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).expect("read PEM")
}

/// TF Serving's text SSLConfig, PEM texts inline.
fn ssl_config(dir: &Path, server: &str, client_verify: bool) -> String {
    let quote = |s: String| s.replace('\n', "\\n");
    format!(
        "server_key: \"{}\"\nserver_cert: \"{}\"\ncustom_ca: \"{}\"\nclient_verify: {client_verify}\n",
        quote(read(dir, &format!("{server}.key"))),
        quote(read(dir, &format!("{server}.pem"))),
        quote(read(dir, "ca.pem")),
    )
}

/// A TLS server (in-process) on both ports. The harness's plaintext probe cannot talk to it,
/// so readiness is asked over HTTPS with curl, as a client with `curl_auth` would.
struct TlsServer {
    _server: Server,
    grpc: u16,
    rest: u16,
}

impl TlsServer {
    async fn start(dir: &Path, args: &[String], curl_auth: &[&str]) -> TlsServer {
        let mut all = vec!["--model_name=mnist_cnn", "--model_base_path=models/mnist_cnn", "--ssl_reload_interval_seconds=1"];
        all.extend(args.iter().map(String::as_str));
        let mut server = Server::launch(&all, true);
        let (grpc, rest) = (server.port, server.rest.expect("REST port"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(why) = server.stopped() {
                panic!("the TLS server stopped during start-up: {why}");
            }
            let (code, body) = curl(rest, dir, "/v1/health/ready", &[&["--fail"], curl_auth].concat());
            if code == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "not ready over HTTPS within 60 s: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        TlsServer { _server: server, grpc, rest }
    }
}

fn python(mode: &str, server: &TlsServer, dir: &Path, extra: &[String]) -> Output {
    let out = Command::new(venv_python())
        .arg(repo_root().join("tests/python/tls_client.py"))
        .arg(mode)
        .arg(format!("--target=localhost:{}", server.grpc))
        .arg(format!("--ca={}", dir.join("ca.pem").display()))
        .arg(format!("--fixtures={}", fixture("mnist_cnn").display()))
        .args(extra)
        .output()
        .expect("run tls_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains(" passed, 0 failed"), "tls_client.py {mode} failed:\n{stdout}");
    out
}

/// curl over HTTPS to REST port `rest`; returns (exit code, body).
fn curl(rest: u16, dir: &Path, path: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(dir.join("ca.pem"))
        .args(extra)
        .arg(format!("https://localhost:{rest}{path}"))
        .current_dir(dir)
        .output()
        .expect("run curl");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn flag(name: &str, dir: &Path, file: &str) -> String {
    format!("--{name}={}", dir.join(file).display())
}

#[tokio::test]
async fn official_client_over_tls_rest_over_https_and_rotation_without_a_failed_request() {
    let dir = temp_dir("tls");
    pki(&dir);
    std::fs::write(dir.join("ssl.conf"), ssl_config(&dir, "server", false)).expect("write ssl.conf");
    std::fs::write(dir.join("ssl2.conf"), ssl_config(&dir, "server2", false)).expect("write ssl2.conf");
    for f in ["server.pem", "server.key"] {
        std::fs::copy(dir.join(f), dir.join(format!("rest-{f}"))).expect("copy");
    }
    let server = TlsServer::start(
        &dir,
        &[
            flag("ssl_config_file", &dir, "ssl.conf"),
            flag("rest_api_ssl_cert_file", &dir, "rest-server.pem"),
            flag("rest_api_ssl_key_file", &dir, "rest-server.key"),
        ],
        &[],
    )
    .await;

    python("serve", &server, &dir, &[]);

    let (code, body) = curl(server.rest, &dir, "/v1/models/mnist_cnn", &[]);
    assert_eq!(code, 0, "curl over HTTPS failed: {body}");
    assert!(body.contains("\"AVAILABLE\""), "{body}");
    let zeros = serde_json::json!({ "instances": [vec![vec![[0.0f32]; 28]; 28]] }).to_string();
    let (code, body) = curl(server.rest, &dir, "/v1/models/mnist_cnn:predict", &["-d", &zeros]);
    assert_eq!(code, 0, "{body}");
    assert!(body.starts_with("{\"predictions\":[["), "{body}");
    let plain = reqwest::get(format!("http://127.0.0.1:{}/v1/models/mnist_cnn", server.rest)).await;
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port: {plain:?}");

    // Rotate both ports' certificates while requests run on an open channel: the ports must
    // present server2 to new connections, and nothing may fail.
    let swap = |src: &str, dst: &str| format!("--swap={}={}", dir.join(src).display(), dir.join(dst).display());
    python(
        "rotate",
        &server,
        &dir,
        &[
            swap("ssl2.conf", "ssl.conf"),
            swap("server2.key", "rest-server.key"),
            swap("server2.pem", "rest-server.pem"),
            flag("new-cert", &dir, "server2.pem"),
            format!("--rest=localhost:{}", server.rest),
        ],
    );
}

#[tokio::test]
async fn client_verify_refuses_clients_without_a_certificate_from_the_ca() {
    let dir = temp_dir("mtls");
    pki(&dir);
    std::fs::write(dir.join("ssl.conf"), ssl_config(&dir, "server", true)).expect("write ssl.conf");
    let server = TlsServer::start(
        &dir,
        &[
            flag("ssl_config_file", &dir, "ssl.conf"),
            flag("rest_api_ssl_cert_file", &dir, "server.pem"),
            flag("rest_api_ssl_key_file", &dir, "server.key"),
            flag("rest_api_ssl_client_ca_file", &dir, "ca.pem"),
        ],
        &["--cert", "client.pem", "--key", "client.key"],
    )
    .await;
    python("refused", &server, &dir, &[]);
    python("refused", &server, &dir, &[flag("cert", &dir, "rogue-client.pem"), flag("key", &dir, "rogue-client.key")]);
    python("serve", &server, &dir, &[flag("cert", &dir, "client.pem"), flag("key", &dir, "client.key")]);

    let (code, body) = curl(server.rest, &dir, "/v1/models/mnist_cnn", &[]);
    assert_ne!(code, 0, "REST without a client certificate was served: {body}");
    let (code, body) = curl(server.rest, &dir, "/v1/models/mnist_cnn", &["--cert", "rogue-client.pem", "--key", "rogue-client.key"]);
    assert_ne!(code, 0, "REST with a rogue client certificate was served: {body}");
    let (code, body) = curl(server.rest, &dir, "/v1/models/mnist_cnn", &["--cert", "client.pem", "--key", "client.key"]);
    assert_eq!(code, 0, "{body}");
    assert!(body.contains("\"AVAILABLE\""), "{body}");
}

/// The binary: the exit code is part of what is tested.
#[test]
fn a_bad_key_or_certificate_stops_start_up_naming_the_file_and_the_problem() {
    let dir = temp_dir("bad");
    pki(&dir);
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").expect("write");
    std::fs::write(dir.join("verify-no-ca.conf"), "server_key: \"k\"\nserver_cert: \"c\"\nclient_verify: true\n").expect("write");
    let root = repo_root();
    let run = |args: Vec<String>| {
        let mut all = vec!["--model_name=mnist_cnn".to_string(), "--model_base_path=models/mnist_cnn".into(), "--port=0".into()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run_to_exit(&refs, &root)
    };
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec![flag("grpc_ssl_cert_file", &dir, "missing.pem"), flag("grpc_ssl_key_file", &dir, "server.key")],
            vec![dir.join("missing.pem").display().to_string(), "cannot read".into()],
        ),
        (
            vec![flag("grpc_ssl_cert_file", &dir, "garbage.pem"), flag("grpc_ssl_key_file", &dir, "server.key")],
            vec![dir.join("garbage.pem").display().to_string(), "no PEM CERTIFICATE block".into()],
        ),
        (
            vec![flag("rest_api_ssl_cert_file", &dir, "server.pem"), flag("rest_api_ssl_key_file", &dir, "server.pem")],
            vec![dir.join("server.pem").display().to_string(), "private key".into()],
        ),
        (
            vec![flag("rest_api_ssl_cert_file", &dir, "server.pem"), flag("rest_api_ssl_key_file", &dir, "client.key")],
            vec![dir.join("client.key").display().to_string(), "does not belong to the certificate".into()],
        ),
        (
            vec![flag("ssl_config_file", &dir, "verify-no-ca.conf")],
            vec!["verify-no-ca.conf (field client_verify)".into(), "custom_ca is empty".into()],
        ),
        (
            vec![flag("grpc_ssl_cert_file", &dir, "server.pem"), flag("grpc_ssl_key_file", &dir, "server.key"), flag("grpc_ssl_client_ca_file", &dir, "garbage.pem")],
            vec![dir.join("garbage.pem").display().to_string(), "client CA".into()],
        ),
    ];
    for (args, needles) in cases {
        let (code, stderr) = run(args.clone());
        assert_eq!(code, 1, "{args:?} should exit 1:\n{stderr}");
        for needle in &needles {
            assert!(stderr.contains(needle.as_str()), "{args:?}: stderr lacks {needle:?}:\n{stderr}");
        }
    }
}
