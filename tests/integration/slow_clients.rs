//! One client cannot stall everyone: slow request bodies are cut off, bodies being received
//! share one memory budget, and one proxy port cannot take every open file of the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::support::{
    TEST_TOKEN, TestApp, authorized, id_of, port_block, port_of, wait_for_in_flight,
};
use super::upstream::MockUpstream;

/// A request head for a chat completion whose body will be `length` bytes.
fn head(length: usize) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// A chat body of exactly `length` bytes (padded inside the prompt).
fn body_of(length: usize) -> String {
    let empty = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""}]}"#;
    let pad = "a".repeat(length.saturating_sub(empty.len()));
    format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{pad}"}}]}}"#)
}

/// Everything the server sends until it closes or `within` passes.
fn read_answer(stream: &mut TcpStream, within: Duration) -> String {
    stream
        .set_read_timeout(Some(within))
        .expect("a read timeout");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if String::from_utf8_lossy(&answer).contains("}}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn openai_proxy(app: &TestApp, mock: &MockUpstream) -> Value {
    app.create(
        json!({"name": "slow", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}),
    )
    .await
}

#[actix_web::test]
async fn a_request_body_that_does_not_arrive_in_time_gets_a_provider_shaped_408() {
    let mock = MockUpstream::start().await;
    let mut app =
        TestApp::start_configured(port_block(), |args| args.request_body_timeout = 1).await;
    let proxy = openai_proxy(&app, &mock).await;
    let port = port_of(&proxy);

    let answer = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream
            .write_all(format!("{}{{\"model\"", head(500)).as_bytes())
            .expect("a head and a little of the body");
        read_answer(&mut stream, Duration::from_secs(15))
    })
    .await
    .expect("the client thread");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
    assert!(mock.requests().is_empty());
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn request_bodies_being_received_share_one_memory_budget() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_configured(port_block(), |args| {
        args.request_bodies_mb = 1;
        args.request_body_timeout = 30;
    })
    .await;
    let proxy = openai_proxy(&app, &mock).await;
    let (id, port) = (id_of(&proxy), port_of(&proxy));
    let large = body_of(800_000);

    // A large upload under way holds most of the budget…
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    slow.write_all(head(large.len()).as_bytes())
        .expect("a head");
    slow.write_all(&large.as_bytes()[..1000])
        .expect("the start of the body");
    wait_for_in_flight(&app, id, 1, Duration::from_secs(10)).await;

    // … so another that does not fit is answered 503 at once, in the provider's shape.
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let mut refused = awc::Client::new()
        .post(&url)
        .insert_header(("content-type", "application/json"))
        .send_body(body_of(400_000))
        .await
        .expect("answered");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8_lossy(&refused.body().await.expect("a body")).into_owned();
    assert!(text.contains("\"code\":\"overloaded\""), "{text}");
    assert!(text.contains("1 MiB"), "{text}");
    let small = awc::Client::new()
        .post(&url)
        .send_json(
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "small"}]}),
        )
        .await
        .expect("answered");
    assert_eq!(small.status(), StatusCode::OK, "small bodies still fit");

    // Once the large one is in, its share comes back.
    let answer = actix_web::rt::task::spawn_blocking(move || {
        slow.write_all(&large.as_bytes()[1000..]).expect("the rest");
        read_answer(&mut slow, Duration::from_secs(15))
    })
    .await
    .expect("the client thread");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    let again = awc::Client::new()
        .post(&url)
        .insert_header(("content-type", "application/json"))
        .send_body(body_of(400_000))
        .await
        .expect("answered");
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(mock.requests().len(), 3);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn slow_clients_of_one_proxy_cannot_take_every_open_file() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().expect("a data dir");
    let ports = port_block();
    // The usual soft and hard limit of many machines, lowered further so the test needs few
    // connections: 128 open files, of which one proxy port may use a quarter.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_rubberduck"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args([
            "--proxy-ports",
            &format!("{}-{}", ports.start(), ports.end()),
        ])
        .args(["--proxy-workers", "1"])
        .env("RUBBERDUCK_BOOTSTRAP_TOKEN", TEST_TOKEN)
        .env("RUBBERDUCK_REQUEST_BODY_TIMEOUT", "60")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let mut startup = Vec::new();
    let dashboard = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no startup line: {startup:?}"));
        if let Some(rest) = line.split("dashboard on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
        }
        startup.push(line);
    };
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        startup
            .iter()
            .any(|line| line.contains("up to 32 connections")),
        "{startup:?}"
    );

    let created = authorized(awc::Client::new().post(format!("{dashboard}/api/proxies")))
        .send_json(&json!({"name": "flooded", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await
        .expect("created")
        .json::<Value>()
        .await
        .expect("json");
    let port = port_of(&created);

    // 150 clients that never finish their bodies: more than the process has files for.
    let mut slow = Vec::new();
    for _ in 0..150 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream.write_all(head(100).as_bytes()).expect("a head");
        slow.push(stream);
    }
    // The dashboard still answers.
    let health = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish()
        .get(format!("{dashboard}/healthz"))
        .send()
        .await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status() == StatusCode::OK),
        "the dashboard stopped answering: {health:?}"
    );
    drop(slow);
    // And the proxy serves again once they are gone.
    let mut served = false;
    for _ in 0..50 {
        let answer = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish()
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .send_json(
                &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        if answer.is_ok_and(|r| r.status() == StatusCode::OK) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the proxy serves again");
    let _ = child.kill();
    let _ = child.wait();
    mock.stop().await;
}
