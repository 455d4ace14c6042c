//! The server under test: the real `rubberduck serve` binary in a child process, driven through
//! its admin JSON API.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::BenchError;

/// Lines of the server's log kept for error messages.
const KEPT_LOG_LINES: usize = 30;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Server {
    child: Child,
    pub admin: SocketAddr,
    token: String,
    log: Arc<Mutex<VecDeque<String>>>,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    /// Starts `binary serve` on an ephemeral dashboard port and waits for its startup line.
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        ports: &RangeInclusive<u16>,
        token: &str,
    ) -> Result<Server, BenchError> {
        let mut child = Command::new(binary)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0", "--proxy-host", "127.0.0.1"])
            .arg("--proxy-ports")
            .arg(format!("{}-{}", ports.start(), ports.end()))
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUBBERDUCK_BOOTSTRAP_TOKEN", token)
            // Only the startup line is needed; per-request logging would cost the server time.
            .env("RUST_LOG", "warn,rubberduck::app=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (lines, received) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let kept = Arc::clone(&log);
            // Drains stderr for the server's whole life, or it would block once the pipe fills.
            std::thread::Builder::new()
                .name("bench-server-log".to_owned())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        if let Ok(mut kept) = kept.lock() {
                            if kept.len() == KEPT_LOG_LINES {
                                kept.pop_front();
                            }
                            kept.push_back(line.clone());
                        }
                        let _ = lines.send(line);
                    }
                })
                .map_err(BenchError::Threads)?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BenchError::Threads)?;
        let mut server = Server {
            child,
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: token.to_owned(),
            log,
            runtime,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(left)
                .map_err(|_| server.failure("did not print its dashboard address"))?;
            let address = line
                .split("dashboard on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok());
            if let Some(address) = address {
                server.admin = address;
                return Ok(server);
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Calls the admin API as the bootstrap token's admin; any answer but 2xx is an error.
    pub fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BenchError> {
        let bytes = self.call(method.clone(), path, body)?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| BenchError::Api(format!("{method} {path} answered no JSON: {e}")))
    }

    /// Writes the server lost so far (`/metrics`): every `rubberduck_dropped_writes_total`
    /// series, or, from a server that predates them, its dropped log entries.
    pub fn dropped_writes(&self) -> Result<u64, BenchError> {
        Ok(self.dropped_writes_by_series()?.0)
    }

    /// The total, and the non-zero series as `what/why=count` for the progress line.
    pub fn dropped_writes_by_series(&self) -> Result<(u64, String), BenchError> {
        let bytes = self.call(Method::GET, "/metrics", None)?;
        let text = String::from_utf8_lossy(&bytes);
        let detail: Vec<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix("rubberduck_dropped_writes_total{"))
            .filter_map(|rest| rest.split_once("} "))
            .filter(|(_, count)| *count != "0")
            .map(|(labels, count)| format!("{labels}: {count}"))
            .collect();
        let total = self.sum_dropped(&text)?;
        Ok((total, detail.join(", ")))
    }

    fn sum_dropped(&self, text: &str) -> Result<u64, BenchError> {
        let sum = |prefix: &str| -> Option<u64> {
            let values: Vec<u64> = text
                .lines()
                .filter(|line| line.starts_with(prefix))
                .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
                .collect();
            (!values.is_empty()).then(|| values.iter().sum())
        };
        sum("rubberduck_dropped_writes_total{")
            .or_else(|| sum("rubberduck_log_entries_dropped_total "))
            .ok_or_else(|| BenchError::Api("/metrics has no dropped-writes counter".to_owned()))
    }

    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Bytes, BenchError> {
        let mut request = Request::new(Full::new(Bytes::from(
            body.as_ref().map(Value::to_string).unwrap_or_default(),
        )));
        *request.method_mut() = method.clone();
        *request.uri_mut() = path
            .parse()
            .map_err(|_| BenchError::Api(format!("bad API path {path}")))?;
        let headers = request.headers_mut();
        let host = HeaderValue::from_str(&self.admin.to_string())
            .map_err(|e| BenchError::Api(e.to_string()))?;
        headers.insert(HOST, host);
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|e| BenchError::Api(e.to_string()))?;
        headers.insert(AUTHORIZATION, bearer);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let admin = self.admin;
        let (status, bytes) = self
            .runtime
            .block_on(async move {
                let stream = tokio::net::TcpStream::connect(admin).await?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(std::io::Error::other)?;
                tokio::spawn(connection);
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(std::io::Error::other)?;
                let status = response.status();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(std::io::Error::other)?
                    .to_bytes();
                Ok::<_, std::io::Error>((status, bytes))
            })
            .map_err(|e| BenchError::Api(format!("{method} {path}: {e}")))?;
        if !status.is_success() {
            return Err(BenchError::Api(format!(
                "{method} {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        Ok(bytes)
    }

    /// Waits until a proxy's port accepts connections.
    pub fn wait_for_port(&self, port: u16) -> Result<(), BenchError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(BenchError::Api(format!(
                    "proxy port {port} does not accept connections"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// An error that quotes the end of the server's log.
    fn failure(&mut self, what: &str) -> BenchError {
        let exited = self.child.try_wait().ok().flatten();
        let log = self
            .log
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        BenchError::Server(format!(
            "the server {what}{}; its last output:\n{log}",
            exited.map_or(String::new(), |status| format!(" (it exited: {status})"))
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The data directory is temporary, so nothing is lost by not stopping gracefully.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
