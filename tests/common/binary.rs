//! The real `candle-serving` process, for what only a process shows: signals, exit codes, the
//! CLI, its log output, and its /proc entries (descriptors, memory).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, ChildLogs, Grpc, Waited, repo_root, wait_model};

/// Start-ups that lost their REST port to another process before giving up.
const BIND_ATTEMPTS: usize = 5;
const STARTUP: Duration = Duration::from_secs(60);

/// A running server process, killed when dropped.
///
/// Ports: the binary gets `--port=0` and reports the gRPC port the kernel gave it in its
/// "listening; loading models" log line, which the harness reads from a stderr pipe (every
/// line is still forwarded to the test's stderr). REST cannot work that way: in TF Serving's
/// flags `--rest_api_port=0` turns REST off. So for REST the harness picks a port nothing
/// listens on and, because another process may take it before the binary binds it, starts the
/// binary again on a new port when it exits with "cannot bind REST port". Nothing waits on a
/// port that someone else holds, and no test sees the other process.
pub struct BinaryServer {
    child: Child,
    pub port: u16,
    pub rest: Option<u16>,
    logs: ChildLogs,
}

impl Grpc for BinaryServer {
    fn grpc_port(&self) -> u16 {
        self.port
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl BinaryServer {
    /// The binary with `args`, run from the repository root (relative paths resolve there).
    pub fn command(args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(repo_root());
        cmd
    }

    /// Starts the binary with `args` (no ports) and waits until `model` is AVAILABLE.
    pub async fn start(args: &[&str], model: &str) -> BinaryServer {
        let mut server = BinaryServer::spawn(|| BinaryServer::command(args), false);
        server.wait_available(model).await;
        server
    }

    /// [`BinaryServer::start`] with the REST API on, returning its port too.
    pub async fn start_with_rest(args: &[&str], model: &str) -> (BinaryServer, u16) {
        let mut server = BinaryServer::spawn(|| BinaryServer::command(args), true);
        server.wait_available(model).await;
        let rest = server.rest.expect("REST port");
        (server, rest)
    }

    /// Runs what `command` builds (the binary, or a script that execs it) with the ports
    /// appended, and returns once the server listens (models may still be loading). `command`
    /// is called again for each start-up attempt.
    pub fn spawn(command: impl Fn() -> Command, rest: bool) -> BinaryServer {
        for attempt in 1..=BIND_ATTEMPTS {
            let rest_port = rest.then(unused_port);
            let mut cmd = command();
            cmd.arg("--port=0");
            if let Some(port) = rest_port {
                cmd.arg(format!("--rest_api_port={port}"));
            }
            let program = format!("{:?}", cmd.get_program());
            let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawn {program}: {e}"));
            let logs = ChildLogs::capture(&mut child);
            // Built before waiting, so that a panic below still kills the process.
            let mut server = BinaryServer { child, port: 0, rest: rest_port, logs };
            match server.logs.wait_for(&mut server.child, STARTUP, listening_port) {
                Waited::Found(port) => {
                    server.port = port;
                    return server;
                }
                Waited::Exited(status) => {
                    let logs = server.logs.text();
                    if rest && attempt < BIND_ATTEMPTS && logs.contains("cannot bind REST port") {
                        eprintln!("{program}: the REST port was taken before it was bound; starting again on another");
                        continue;
                    }
                    panic!("{program} exited during start-up with {status}:\n{logs}");
                }
                Waited::TimedOut => panic!(
                    "{program} logged no 'listening; loading models' line within {STARTUP:?} (does RUST_LOG let candle_serving's info through?)"
                ),
            }
        }
        unreachable!("every attempt returns, continues or panics")
    }

    /// Waits until `model` has an AVAILABLE version; panics if the process exits first.
    pub async fn wait_available(&mut self, model: &str) {
        let url = self.url();
        wait_model(&url, model, || self.try_wait().map(|status| format!("the server exited with {status}"))).await;
    }

    /// SIGKILL, and waits for the process to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id, to read its descriptors and memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What Kubernetes sends to stop a pod.
    pub fn sigterm(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the server")
    }

    /// Waits (without blocking the test's runtime) for the process to exit, then for the rest
    /// of its log.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "the server did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.logs.finish();
        status
    }

    /// Everything the process wrote to stderr so far (all of it once [`Self::exited`] returned).
    pub fn logs(&self) -> String {
        self.logs.text()
    }
}

/// Runs the binary to completion (for start-up failures) and returns (exit code, stderr).
/// Callers pass `--port=0`: a start-up that is meant to fail needs no port of its own.
pub fn run_to_exit(args: &[&str], cwd: &Path) -> (i32, String) {
    let out = Command::new(BIN).args(args).current_dir(cwd).output().expect("run candle-serving");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The gRPC port in start-up's "listening; loading models" line, in the text or the JSON log
/// format (`grpc=0.0.0.0:41234` or `"grpc":"0.0.0.0:41234"`).
fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("listening; loading models") {
        return None;
    }
    let value = ["grpc=", "\"grpc\":\""].iter().find_map(|key| line.split_once(key).map(|(_, v)| v));
    let address: String =
        value.unwrap_or_default().chars().take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')).collect();
    let address: SocketAddr = address.parse().unwrap_or_else(|_| panic!("no gRPC address in the listening line: {line}"));
    Some(address.port())
}

/// A loopback port nothing listens on right now. Only for ports a child process must be told
/// in advance (REST, which port 0 would turn off); callers retry when it was taken meanwhile.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("an unused port")
}
