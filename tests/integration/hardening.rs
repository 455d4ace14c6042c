//! Small holes a hostile client or a curious local user could use: every `X-Forwarded-For` line
//! counts, dot segments stay out of upstream paths, exported CSV runs no formulas, the access
//! log keeps single sign-on secrets out, the data is private to its user, and cards say when a
//! cache is shared by every caller.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::support::{TEST_TOKEN, TestApp, port_of};
use super::upstream::MockUpstream;

async fn openai_proxy(app: &TestApp, mock: &MockUpstream, extra: Value) -> Value {
    let mut body = json!({"name": "hardened", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    app.create(body).await
}

/// A POST written byte for byte (no client library normalises its path or merges its headers),
/// and everything the server answers before it closes.
async fn raw_post(
    port: u16,
    path: &'static str,
    extra_headers: &'static str,
    body: &'static str,
) -> String {
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("sent");
        let mut answer = String::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("the client thread")
}

#[actix_web::test]
async fn every_forwarded_for_line_counts() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    let proxy = openai_proxy(&app, &mock, json!({})).await;
    let id = proxy["id"].as_i64().expect("an id");
    let (status, body) = app
        .put_json(
            &format!("/api/proxies/{id}/failure-config"),
            json!({"ip_filter": {"enabled": true, "block": ["203.0.113.9"], "trusted_proxies": ["127.0.0.1"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A second reverse proxy added its own line: the nearest client is on the last one.
    let port = port_of(&proxy);
    let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    let answer = raw_post(
        port,
        "/v1/chat/completions",
        "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.9\r\n",
        body,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(mock.requests().is_empty());
}

#[actix_web::test]
async fn dot_segments_never_reach_the_upstream() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    let port = port_of(&openai_proxy(&app, &mock, json!({})).await);
    for path in ["/v1/../admin", "/v1/%2e%2e/admin", "/v1/./chat/completions"] {
        let answer = raw_post(port, path, "", "{}").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid_request_error"), "{path}: {answer}");
    }
    assert!(mock.requests().is_empty());
}

#[actix_web::test]
async fn exported_csv_cells_run_no_formulas() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    let port = port_of(&openai_proxy(&app, &mock, json!({})).await);
    let sent = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .insert_header(("user-agent", "=HYPERLINK(\"http://evil.example\",\"x\")"))
        .send_json(&json!({"model": "@SUM(A1:A9)", "messages": []}))
        .await
        .expect("proxied");
    assert_eq!(sent.status(), StatusCode::OK);
    let mut csv = String::new();
    for _ in 0..100 {
        csv = app.get_text("/api/logs/export?format=csv", false).await.1;
        if csv.lines().count() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    assert!(csv.contains("'@SUM(A1:A9)"), "{csv}");
    assert!(
        !csv.contains(",=HYPERLINK") && !csv.contains(",@SUM"),
        "{csv}"
    );
}

#[actix_web::test]
async fn the_data_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::start().await;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(app.data_dir()), 0o700);
    assert_eq!(mode(&app.data_dir().join("rubberduck.sqlite3")), 0o600);
}

#[actix_web::test]
async fn cards_say_when_every_caller_shares_the_cache() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    openai_proxy(&app, &mock, json!({"name": "shared"})).await;
    openai_proxy(
        &app,
        &mock,
        json!({"name": "per key", "cache": {"partition_by_credential": true}}),
    )
    .await;
    let (status, page) = app.get_text("/proxies", false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("shared by all callers").count(), 1, "{page}");
}

#[test]
fn single_sign_on_secrets_stay_out_of_the_access_log() {
    let data = tempfile::tempdir().expect("a data dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rubberduck"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--proxy-ports",
            "39900-39910",
            "--data-dir",
        ])
        .arg(data.path())
        .env("RUBBERDUCK_BOOTSTRAP_TOKEN", TEST_TOKEN)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let dashboard = lines
        .by_ref()
        .find_map(|line| {
            line.split("dashboard on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
        .expect("a startup line");
    let address = dashboard.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(address.as_str()).expect("connects");
    write!(
        stream,
        "GET /login/oidc/callback?code=SECRETCODE123&state=SECRETSTATE456&x=1 HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let logged = lines
        .find(|line| line.contains("/login/oidc/callback"))
        .expect("the request is logged");
    let _ = child.kill();
    let _ = child.wait();
    assert!(!logged.contains("SECRETCODE123"), "{logged}");
    assert!(!logged.contains("SECRETSTATE456"), "{logged}");
    assert!(
        logged.contains("code=…") && logged.contains("x=1"),
        "{logged}"
    );
}
