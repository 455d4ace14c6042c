//! The real `rubberduck` binary: flags and environment, the startup line, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use super::support::{TEST_TOKEN, accepts_connections, authorized, port_block, port_of};

pub(super) struct Server {
    pub(super) child: Child,
    pub(super) dashboard: String,
    /// What the binary printed up to its startup line.
    pub(super) startup: Vec<String>,
    pub(super) output: mpsc::Receiver<String>,
}

/// Starts the binary through `serve` with flags for some settings and environment for others,
/// and reads the dashboard address from its startup line.
fn start(data_dir: &std::path::Path, ports: &str) -> Server {
    start_with(&[], data_dir, ports)
}

/// `serve` with `args` besides, on a data directory, up to its startup line.
pub(super) fn start_with(
    args: &[&std::ffi::OsStr],
    data_dir: &std::path::Path,
    ports: &str,
) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rubberduck"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUBBERDUCK_PROXY_PORTS", ports)
        .env("RUBBERDUCK_BOOTSTRAP_TOKEN", TEST_TOKEN)
        .env_remove("RUBBERDUCK_ADMIN_PASSWORD")
        .env_remove("RUBBERDUCK_CONFIG")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, output) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut startup = Vec::new();
    let dashboard = loop {
        let line = output
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no startup line within 30 s: {startup:?}"));
        if let Some(rest) = line.split("dashboard on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
        }
        startup.push(line);
    };
    Server {
        child,
        dashboard,
        startup,
        output,
    }
}

pub(super) fn terminate(mut server: Server) -> Vec<String> {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = server.child.wait().expect("the binary exits");
    assert!(exit.success(), "SIGTERM is a clean exit, got {exit}");
    server.output.try_iter().collect()
}

#[actix_web::test]
async fn the_binary_serves_and_survives_sigterm() {
    let data = tempfile::tempdir().expect("tmp");
    let block = port_block();
    let ports = format!("{}-{}", block.start(), block.end());

    let server = start(data.path(), &ports);
    assert!(
        server.dashboard.starts_with("http://127.0.0.1:"),
        "{}",
        server.dashboard
    );
    let client = awc::Client::new();
    let health: Value = client
        .get(format!("{}/healthz", server.dashboard))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");

    // A fresh start says how to sign in, with a generated password (never a fixed default).
    let password = server
        .startup
        .iter()
        .find_map(|line| {
            line.split("sign in as admin@localhost with the password ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sign-in line in {:?}", server.startup))
        .to_owned();
    assert!(password.len() >= 16, "{password}");
    let anonymous = client
        .get(format!("{}/api/proxies", server.dashboard))
        .send()
        .await
        .expect("list");
    assert_eq!(anonymous.status(), awc::http::StatusCode::UNAUTHORIZED);
    let signed_in = awc::Client::builder()
        .disable_redirects()
        .finish()
        .post(format!("{}/login", server.dashboard))
        .send_form(&[
            ("email", "admin@localhost"),
            ("password", password.as_str()),
        ])
        .await
        .expect("login");
    assert_eq!(signed_in.status(), awc::http::StatusCode::SEE_OTHER);
    let set_cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        set_cookie.starts_with("rubberduck_session="),
        "{set_cookie}"
    );

    let proxy: Value = authorized(client.post(format!("{}/api/proxies", server.dashboard)))
        .send_json(&json!({"name": "Durable", "provider": "openai", "upstream_url": "http://127.0.0.1:1/v1"}))
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let port = port_of(&proxy);
    assert_eq!(
        port,
        *block.start(),
        "ports come from RUBBERDUCK_PROXY_PORTS"
    );
    assert!(accepts_connections(port));

    let canary = "sk-canary-process-output-7c1e";
    let response = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .insert_header(("Authorization", format!("Bearer {canary}")))
        .send_body("{}")
        .await
        .expect("proxied");
    assert_eq!(response.status(), awc::http::StatusCode::BAD_GATEWAY);

    let output = terminate(server);
    assert!(!accepts_connections(port));
    assert!(
        output.iter().all(|line| !line.contains(canary)),
        "a client API key was printed: {output:?}"
    );
    assert!(
        output.iter().any(|l| l.contains("shutting down")),
        "{output:?}"
    );
    assert!(data.path().join("rubberduck.sqlite3").is_file());

    let server = start(data.path(), &ports);
    assert!(
        server.startup.iter().all(|line| !line.contains(&password)),
        "the generated password is printed once only: {:?}",
        server.startup
    );
    let list: Value = authorized(client.get(format!("{}/api/proxies", server.dashboard)))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        list[0]["status"], "running",
        "SIGTERM kept the desired state"
    );
    assert!(accepts_connections(port));
    terminate(server);
}

#[test]
fn bad_flags_are_reported_plainly() {
    let output = Command::new(env!("CARGO_BIN_EXE_rubberduck"))
        .args(["serve", "--proxy-ports", "9000"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a port range"), "{stderr}");
}
