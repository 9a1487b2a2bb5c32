//! A real Prometheus server for metric tests (Debian's `prometheus` package; tests/run.sh
//! installs it): it scrapes the server like a cluster's would, and tests ask its query API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ChildLogs, Waited};

/// Prometheus on a port of its choosing (`127.0.0.1:0`), which it logs; killed when dropped.
pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    /// Scrapes every `(job, metrics path, port)` on loopback each second, storing under `dir`.
    pub fn scraping(dir: &Path, targets: &[(&str, &str, u16)]) -> Prometheus {
        let binary = which("prometheus").expect("the prometheus binary is required: bash tests/run.sh installs it");
        let mut config = "global:\n  scrape_interval: 1s\nscrape_configs:\n".to_string();
        for (job, path, port) in targets {
            config += &format!("  - job_name: {job}\n    metrics_path: {path}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n");
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()));
        Prometheus::start(command)
    }

    fn start(mut command: Command) -> Prometheus {
        command.arg("--web.listen-address=127.0.0.1:0").stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start prometheus");
        let mut logs = ChildLogs::capture(&mut child);
        // `msg="Listening on" address=127.0.0.1:41234`, once the port is bound.
        let bound = |line: &str| {
            let address = line.split_once("msg=\"Listening on\"")?.1.split_once("address=")?.1;
            address.split_whitespace().next()?.rsplit_once(':')?.1.parse::<u16>().ok()
        };
        match logs.wait_for(&mut child, Duration::from_secs(60), bound) {
            Waited::Found(port) => Prometheus { child, port },
            Waited::Exited(status) => panic!("prometheus exited with {status}:\n{}", logs.text()),
            Waited::TimedOut => {
                let _ = child.kill();
                panic!("prometheus logged no listening address within 60 s")
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Runs an instant query and returns the single sample's value, if any.
    pub async fn query(&self, promql: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let body: serde_json::Value = reqwest::Client::new().get(url).query(&[("query", promql)]).send().await.ok()?.json().await.ok()?;
        let value = body["data"]["result"].get(0)?["value"].get(1)?.as_str()?.to_string();
        value.parse().ok()
    }

    /// Waits (60 s at most) until every query returns its value; scrapes are a second apart.
    pub async fn expect<Q: AsRef<str>>(&self, checks: &[(Q, f64)]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (promql, want) in checks {
            let promql = promql.as_ref();
            loop {
                let got = self.query(promql).await;
                if got == Some(*want) {
                    break;
                }
                assert!(Instant::now() < deadline, "{promql}: got {got:?}, want {want}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}
