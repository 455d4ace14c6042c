//! HTTP/2 cleartext on proxy ports (prior knowledge, as the AWS SDK for JavaScript v3 sends it):
//! the same pipeline as HTTP/1.1 on the same port, and a reset stream cancels its request only.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use awc::http::StatusCode;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use serde_json::{Value, json};

use super::support::{self, TestApp, id_of, port_block_of, port_of};
use super::upstream::MockUpstream;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const WAIT: Duration = Duration::from_secs(10);

/// One HTTP/2 connection to a proxy port.
struct Connection {
    port: u16,
    requests: SendRequest<Bytes>,
    /// Ends when the server closes the connection (GOAWAY drained, or cut).
    closed: tokio::sync::oneshot::Receiver<()>,
}

/// A request whose body has been sent; its answer is still to come.
struct Pending {
    response: ResponseFuture,
    stream: SendStream<Bytes>,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Connection {
    async fn open(port: u16) -> Self {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("the proxy port accepts connections");
        let (requests, connection) = h2::client::handshake(tcp)
            .await
            .expect("the proxy port speaks HTTP/2 by prior knowledge");
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        actix_web::rt::spawn(async move {
            let _ = connection.await;
            let _ = closed_tx.send(());
        });
        Connection {
            port,
            requests,
            closed,
        }
    }

    async fn start(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> Pending {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("a valid request");
        let mut ready = self
            .requests
            .clone()
            .ready()
            .await
            .expect("room for a stream");
        let (response, mut stream) = ready
            .send_request(request, false)
            .expect("the request is sent");
        stream
            .send_data(Bytes::copy_from_slice(body.as_bytes()), true)
            .expect("the body is sent");
        Pending { response, stream }
    }

    async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let pending = self.start(path, headers, body).await;
        pending.answer().await
    }
}

impl Pending {
    async fn head(self) -> (http::Response<RecvStream>, SendStream<Bytes>) {
        let response = tokio::time::timeout(WAIT, self.response)
            .await
            .expect("an answer in time")
            .expect("an HTTP/2 answer");
        (response, self.stream)
    }

    async fn answer(self) -> Answer {
        let (response, _stream) = self.head().await;
        let (parts, mut body) = response.into_parts();
        let mut bytes = Vec::new();
        while let Some(chunk) = tokio::time::timeout(WAIT, body.data())
            .await
            .expect("the body in time")
        {
            let chunk = chunk.expect("a body chunk");
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        Answer {
            status: StatusCode::from_u16(parts.status.as_u16()).expect("a status"),
            headers: parts.headers,
            body: bytes,
        }
    }

    /// The client gives up on this stream only (RST_STREAM CANCEL).
    fn reset(mut self) {
        self.stream.send_reset(Reason::CANCEL);
    }
}

struct Proxy {
    id: i64,
    port: u16,
}

async fn proxy(app: &TestApp, name: &str, provider: &str, upstream: &str, cache: bool) -> Proxy {
    let created = app
        .create(json!({
            "name": name, "provider": provider, "upstream_url": upstream,
            "cache": {"enabled": cache},
        }))
        .await;
    assert_eq!(created["status"], "running", "{created}");
    Proxy {
        id: id_of(&created),
        port: port_of(&created),
    }
}

async fn in_flight(app: &TestApp, proxy: &Proxy) -> u64 {
    support::in_flight(app, proxy.id).await
}

async fn wait_for_in_flight(app: &TestApp, proxy: &Proxy, wanted: u64) {
    support::wait_for_in_flight(app, proxy.id, wanted, WAIT).await;
}

async fn put_failures(app: &TestApp, proxy: &Proxy, config: Value) {
    let (status, body) = app
        .put_json(&format!("/api/proxies/{}/failure-config", proxy.id), config)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The logged requests of a proxy, oldest first, once `count` of them are written.
async fn logs(app: &TestApp, proxy: &Proxy, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, json) = app
            .get(&format!("/api/logs?proxy_id={}&limit=100", proxy.id))
            .await;
        let mut logs = json["logs"].as_array().cloned().unwrap_or_default();
        if logs.len() >= count {
            logs.reverse();
            return logs;
        }
        assert!(Instant::now() < deadline, "only {} log entries", logs.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn http2_and_http1_share_a_port_with_forwarding_cache_streams_and_logs() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(2)).await;
    let openai = proxy(
        &app,
        "h2-openai",
        "openai",
        &format!("{}/v1", mock.url),
        true,
    )
    .await;
    let mut h2 = Connection::open(openai.port).await;

    let first = h2
        .post("/v1/chat/completions", &[("x-mock-stamp", "json")], CHAT)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(
        first.header("content-length"),
        Some(&*first.body.len().to_string())
    );
    assert!(first.header("date").is_some(), "a date, as over HTTP/1.1");
    let recorded = mock.last();
    assert_eq!(recorded.target, "/v1/chat/completions");
    assert_eq!(recorded.body, CHAT.as_bytes(), "the body crosses unchanged");
    assert_eq!(recorded.header("authorization"), Some("Bearer sk-test"));

    let again = h2
        .post("/v1/chat/completions", &[("x-mock-stamp", "json")], CHAT)
        .await;
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(again.body, first.body, "the cached answer");
    assert_eq!(mock.requests().len(), 1, "a hit never reaches the upstream");

    // The same entry over HTTP/1.1 on the same port.
    let mut h1 = awc::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/chat/completions",
            openai.port
        ))
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-mock-stamp", "json"))
        .send_body(CHAT)
        .await
        .expect("HTTP/1.1 on the same port");
    assert_eq!(
        h1.headers().get("x-cache").map(|v| v.as_bytes()),
        Some(&b"HIT"[..])
    );
    assert_eq!(h1.body().await.expect("body"), first.body);

    // A stream arrives event by event, not in one piece at the end.
    let streamed = r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let started = Instant::now();
    let pending = h2
        .start(
            "/v1/chat/completions",
            &[("x-mock-stamp", "sse"), ("x-mock-pause-ms", "300")],
            streamed,
        )
        .await;
    let (response, _stream) = pending.head().await;
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = response.into_body();
    let first_event = body.data().await.expect("a first event").expect("data");
    let first_at = started.elapsed();
    assert!(first_event.starts_with(b"data: "), "{first_event:?}");
    let mut rest = first_event.to_vec();
    while let Some(chunk) = body.data().await {
        rest.extend_from_slice(&chunk.expect("data"));
    }
    let whole_at = started.elapsed();
    assert!(
        whole_at - first_at > Duration::from_millis(800),
        "the first event came {first_at:?} in, the last {whole_at:?}: buffered"
    );
    assert!(
        rest.ends_with(b"data: [DONE]\n\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );

    // An AWS event stream through a Bedrock proxy.
    let bedrock = proxy(&app, "h2-bedrock", "bedrock", &mock.url, false).await;
    let mut h2_bedrock = Connection::open(bedrock.port).await;
    let frames = h2_bedrock
        .post(
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
            &[
                ("x-mock-stamp", "eventstream"),
                ("x-aws-access-key", "AKIDHTTP2TEST"),
                ("x-aws-secret-key", "http2-secret"),
                ("x-aws-region", "us-east-1"),
            ],
            r#"{"messages":[]}"#,
        )
        .await;
    assert_eq!(
        frames.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&frames.body)
    );
    assert!(
        mock.last()
            .header("authorization")
            .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDHTTP2TEST/")),
        "re-signed with the client's key"
    );
    assert_eq!(
        frames.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let chunk_frames = frames.body.windows(5).filter(|w| w == b"chunk").count();
    assert!(
        chunk_frames >= 4,
        "four event frames, saw {chunk_frames} markers"
    );

    let logged = logs(&app, &openai, 4).await;
    let seen: Vec<(&str, bool)> = logged
        .iter()
        .map(|l| {
            (
                l["cache"].as_str().unwrap_or(""),
                l["stream"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("miss", false),
            ("hit", false),
            ("hit", false),
            ("miss", true)
        ],
        "{logged:?}"
    );
    let (_, prometheus) = app.get_text("/metrics", false).await;
    assert!(
        prometheus
            .lines()
            .any(|l| l.starts_with("rubberduck_requests_total")
                && l.contains("proxy=\"h2-openai\"")
                && l.contains("cache=\"hit\"")
                && l.ends_with(" 2")),
        "the hits are counted:\n{prometheus}"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn resetting_one_http2_stream_cancels_only_that_request() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let openai = proxy(
        &app,
        "h2-hangs",
        "openai",
        &format!("{}/v1", mock.url),
        false,
    )
    .await;
    put_failures(
        &app,
        &openai,
        json!({"timeout": {"enabled": true, "rate": 1.0, "mode": "hang", "seconds": 1.0}}),
    )
    .await;
    let mut h2 = Connection::open(openai.port).await;
    let first = h2.start("/v1/chat/completions", &[], CHAT).await;
    let second = h2.start("/v1/chat/completions", &[], CHAT).await;
    wait_for_in_flight(&app, &openai, 2).await;

    first.reset();
    wait_for_in_flight(&app, &openai, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        in_flight(&app, &openai).await,
        1,
        "the other stream of the connection still hangs"
    );
    second.reset();
    wait_for_in_flight(&app, &openai, 0).await;
    assert!(
        mock.requests().is_empty(),
        "a hang never reaches the upstream"
    );

    // The connection itself lives on.
    put_failures(&app, &openai, json!({})).await;
    let answer = h2.post("/v1/chat/completions", &[], CHAT).await;
    assert_eq!(answer.status, StatusCode::OK);

    // A reset live stream cancels its upstream request.
    let endless = h2.start("/v1/endless", &[], "{}").await;
    let (response, mut stream) = endless.head().await;
    let mut body = response.into_body();
    let tick = body.data().await.expect("a first event").expect("data");
    assert!(tick.starts_with(b"data: tick"), "{tick:?}");
    assert_eq!(in_flight(&app, &openai).await, 1);
    stream.send_reset(Reason::CANCEL);
    let deadline = Instant::now() + WAIT;
    while !mock.journal.stream_dropped.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the upstream stream was never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wait_for_in_flight(&app, &openai, 0).await;
    let after = h2.post("/v1/chat/completions", &[], CHAT).await;
    assert_eq!(after.status, StatusCode::OK, "the connection still serves");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn injected_failures_look_the_same_over_http2() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let openai = proxy(
        &app,
        "h2-faults",
        "openai",
        &format!("{}/v1", mock.url),
        false,
    )
    .await;
    let mut h2 = Connection::open(openai.port).await;

    put_failures(
        &app,
        &openai,
        json!({"errors": {"enabled": true, "rates": {"429": 1.0}}}),
    )
    .await;
    let limited = h2.post("/v1/chat/completions", &[], CHAT).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited.header("retry-after").is_some(),
        "{:?}",
        limited.headers
    );
    let body: Value = serde_json::from_slice(&limited.body).expect("JSON");
    assert_eq!(body["error"]["type"], "requests", "{body}");

    put_failures(
        &app,
        &openai,
        json!({"timeout": {"enabled": true, "rate": 1.0, "mode": "delay", "seconds": 0.4}}),
    )
    .await;
    let started = Instant::now();
    let delayed = h2.post("/v1/chat/completions", &[], CHAT).await;
    assert_eq!(delayed.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        mock.requests().len(),
        1,
        "only the delayed request went upstream"
    );

    let logged = logs(&app, &openai, 2).await;
    assert_eq!(logged[0]["status"], 429);
    assert_eq!(logged[0]["failure"], "error_injection");
    assert_eq!(logged[1]["status"], 200);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn graceful_and_forced_stops_serve_http2_clients_like_http1_ones() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_configured(port_block_of(1), |args| args.stop_timeout = 30).await;
    let openai = proxy(
        &app,
        "h2-stops",
        "openai",
        &format!("{}/v1", mock.url),
        false,
    )
    .await;

    // A graceful stop lets the request in flight finish, closes the idle connection at once,
    // and does not wait out its timeout for either.
    let idle = Connection::open(openai.port).await;
    let mut busy = Connection::open(openai.port).await;
    let slow = busy
        .start("/v1/chat/completions", &[("x-mock-delay-ms", "1500")], CHAT)
        .await;
    wait_for_in_flight(&app, &openai, 1).await;
    let started = Instant::now();
    let (status, stopped) = app
        .post_empty(&format!("/api/proxies/{}/stop", openai.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the stop took {:?}",
        started.elapsed()
    );
    let answer = slow.answer().await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the request in flight was answered"
    );
    tokio::time::timeout(WAIT, idle.closed)
        .await
        .expect("the idle connection is closed by the stop")
        .expect("closed");

    // A forced stop cuts the request in flight.
    let (_, restarted) = app
        .post_empty(&format!("/api/proxies/{}/start", openai.id))
        .await;
    assert_eq!(restarted["status"], "running", "{restarted}");
    let mut busy = Connection::open(openai.port).await;
    let slow = busy
        .start("/v1/chat/completions", &[("x-mock-delay-ms", "5000")], CHAT)
        .await;
    wait_for_in_flight(&app, &openai, 1).await;
    let started = Instant::now();
    let (_, forced) = app
        .post_empty(&format!("/api/proxies/{}/stop?force=true", openai.id))
        .await;
    assert_eq!(forced["status"], "stopped", "{forced}");
    let cut = tokio::time::timeout(WAIT, slow.response)
        .await
        .expect("the cut request ends");
    assert!(cut.is_err(), "a forced stop drops the request: {cut:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the forced stop took {:?}",
        started.elapsed()
    );
    app.shutdown().await;
    mock.stop().await;
}
