//! Forwarding through a proxy to a recording mock upstream: bytes, headers, streams, errors.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::support::{TestApp, port_block, port_of};
use super::upstream::MockUpstream;

/// One request over a fresh TCP connection; returns the response head and whatever body came.
fn raw_http(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut buffer = [0u8; 4096];
    let read = stream.read(&mut buffer).expect("read");
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

async fn proxy_for(app: &TestApp, provider: &str, upstream_url: &str) -> String {
    let proxy = app
        .create(json!({"name": provider, "provider": provider, "upstream_url": upstream_url}))
        .await;
    format!("http://127.0.0.1:{}", port_of(&proxy))
}

#[actix_web::test]
async fn bytes_query_and_headers_pass_through_unchanged() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy_for(&app, "openai", &format!("{}/v1", mock.url)).await;

    let body = "{ \"model\" : \"gpt-4o\",\n  \"messages\":[ ] }";
    let mut response = awc::Client::new()
        .post(format!("{proxy}/v1/chat/completions?x=1&model=a%3Ab"))
        .insert_header(("Authorization", "Bearer sk-test"))
        .insert_header(("OpenAI-Organization", "org-1"))
        .insert_header(("Idempotency-Key", "idem-1"))
        .insert_header(("traceparent", "00-abc-def-01"))
        .insert_header(("Proxy-Authorization", "Basic secret"))
        .content_type("application/json")
        .send_body(body)
        .await
        .expect("proxied");
    assert_eq!(response.status(), StatusCode::OK);
    let repeated: Vec<&str> = response
        .headers()
        .get_all("x-repeated")
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(repeated, ["one", "two"], "repeated headers stay repeated");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-123")
    );
    let answer = response.body().await.expect("body");
    assert_eq!(answer, format!("{{\"echo\":{}}}", body.len()).as_bytes());

    let got = mock.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.target, "/v1/chat/completions?x=1&model=a%3Ab");
    assert_eq!(got.body, body.as_bytes(), "body bytes unchanged");
    assert_eq!(got.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(got.header("openai-organization"), Some("org-1"));
    assert_eq!(got.header("idempotency-key"), Some("idem-1"));
    assert_eq!(got.header("traceparent"), Some("00-abc-def-01"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.header("host"),
        mock.url.strip_prefix("http://"),
        "Host is the upstream's"
    );
    assert!(
        !got.has_header("proxy-authorization"),
        "hop-by-hop headers are not forwarded"
    );

    // awc manages `Connection` itself, so this part speaks raw HTTP/1.1.
    let port = proxy
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("proxy port");
    let reply = raw_http(
        port,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nx-kept: 1\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let got = mock.last();
    assert_eq!(got.header("x-kept"), Some("1"));
    for hop in ["x-hop", "keep-alive"] {
        assert!(!got.has_header(hop), "{hop} must not be forwarded");
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn openai_paths_with_and_without_v1_reach_the_same_upstream_path() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy_for(&app, "openai", &format!("{}/v1", mock.url)).await;
    let client = awc::Client::new();
    client
        .post(format!("{proxy}/chat/completions"))
        .send_body("{}")
        .await
        .expect("sent");
    assert_eq!(mock.last().target, "/v1/chat/completions");
    client
        .post(format!("{proxy}/v1/embeddings"))
        .send_body("{}")
        .await
        .expect("sent");
    assert_eq!(mock.last().target, "/v1/embeddings");
    let response = client
        .get(format!("{proxy}/v1/models"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let got = mock.last();
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("GET", "/v1/models"),
        "GET stays GET"
    );

    let deepseek = proxy_for(&app, "deepseek", &mock.url).await;
    client
        .post(format!("{deepseek}/v1/chat/completions"))
        .send_body("{}")
        .await
        .expect("sent");
    assert_eq!(mock.last().target, "/chat/completions");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn other_providers_append_the_path_as_is() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let client = awc::Client::new();

    let anthropic = proxy_for(&app, "anthropic", &mock.url).await;
    client
        .post(format!("{anthropic}/v1/messages"))
        .insert_header(("x-api-key", "sk-ant"))
        .insert_header(("anthropic-version", "2023-06-01"))
        .insert_header(("anthropic-beta", "tools-2024"))
        .send_body("{}")
        .await
        .expect("sent");
    let got = mock.last();
    assert_eq!(got.target, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some("sk-ant"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.header("anthropic-beta"), Some("tools-2024"));

    let azure = proxy_for(&app, "azure_openai", &mock.url).await;
    client
        .post(format!(
            "{azure}/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        ))
        .insert_header(("api-key", "az-key"))
        .send_body("{}")
        .await
        .expect("sent");
    let got = mock.last();
    assert_eq!(
        got.target,
        "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(got.header("api-key"), Some("az-key"));

    let vertex = proxy_for(&app, "vertex_ai", &mock.url).await;
    let path = "/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse";
    client
        .post(format!("{vertex}{path}"))
        .insert_header(("Authorization", "Bearer ya29.client"))
        .send_body("{}")
        .await
        .expect("sent");
    let got = mock.last();
    assert_eq!(got.target, path);
    assert_eq!(
        got.header("authorization"),
        Some("Bearer ya29.client"),
        "Bearer passthrough"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn bedrock_requests_are_re_signed_for_the_upstream() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy_for(&app, "bedrock", &mock.url).await;
    let path = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.anthropic.claude/invoke";
    let response = awc::Client::new()
        .post(format!("{proxy}{path}"))
        .insert_header(("X-AWS-Access-Key", "AKIDTESTKEY"))
        .insert_header(("X-AWS-Secret-Key", "test-secret"))
        .insert_header(("X-AWS-Session-Token", "session-tok"))
        .insert_header(("X-AWS-Region", "eu-west-1"))
        .content_type("application/json")
        .send_body("{\"prompt\":\"hi\"}")
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let got = mock.last();
    assert_eq!(
        got.target, path,
        "the path is sent exactly as received, never double-encoded"
    );
    let authorization = got.header("authorization").expect("signed");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTESTKEY/")
            && authorization.contains("/eu-west-1/bedrock/aws4_request"),
        "{authorization}"
    );
    assert!(
        authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
        "{authorization}"
    );
    assert_eq!(got.header("x-amz-security-token"), Some("session-tok"));
    assert!(got.has_header("x-amz-date"));
    for secret in [
        "x-aws-access-key",
        "x-aws-secret-key",
        "x-aws-session-token",
        "x-aws-region",
    ] {
        assert!(!got.has_header(secret), "{secret} must never reach AWS");
    }

    let response = awc::Client::new()
        .post(format!("{proxy}/model/m/invoke"))
        .insert_header(("X-AWS-Access-Key", "AKIDTESTKEY"))
        .insert_header(("X-AWS-Region", "eu-west-1"))
        .send_body("{}")
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "half the credentials"
    );
    assert!(response.headers().contains_key("x-amzn-errortype"));
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn upstream_errors_and_gzip_bodies_pass_through() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy_for(&app, "openai", &mock.url).await;
    let client = awc::Client::new();

    let mut response = client
        .post(format!("{proxy}/status/429"))
        .send_body("{}")
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");

    let mut response = client
        .get(format!("{proxy}/gzip"))
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let bytes = response.body().await.expect("body");
    assert_eq!(
        &bytes[..],
        b"\x1f\x8b\x08\x00not-really-gzip",
        "compressed bytes untouched"
    );
    assert_eq!(mock.last().header("accept-encoding"), Some("gzip"));
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn proxy_made_errors_use_the_provider_shape() {
    let mut app = TestApp::start_configured(port_block(), |args| {
        args.upstream_timeout = 1;
        args.max_request_mb = 1;
    })
    .await;
    let mock = MockUpstream::start().await;
    let client = awc::Client::new();

    let openai = proxy_for(&app, "openai", "http://127.0.0.1:1").await;
    let mut response = client
        .post(format!("{openai}/v1/chat/completions"))
        .send_body("{}")
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1:1")),
        "{body}"
    );

    let anthropic = proxy_for(&app, "anthropic", &mock.url).await;
    let mut response = client
        .post(format!("{anthropic}/slow"))
        .send_body("{}")
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "timeout_error", "{body}");

    let vertex = proxy_for(&app, "vertex_ai", &mock.url).await;
    let mut response = client
        .post(format!("{vertex}/v1/models/g:generateContent"))
        .send_body(vec![b'x'; 2 << 20])
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], 413, "{body}");
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{body}");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn streams_arrive_chunk_by_chunk() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy_for(&app, "openai", &format!("{}/v1", mock.url)).await;
    let started = Instant::now();
    let mut response = awc::Client::new()
        .post(format!("{proxy}/v1/chat/completions"))
        .send_body("{\"stream\":true}")
        .await
        .expect("sent");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = response.next().await {
        let chunk = chunk.expect("chunk");
        arrivals.push(started.elapsed());
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(text.matches("data: ").count(), 5, "{text}");
    // The mock spaces its five events 300 ms apart: a buffering proxy would deliver everything
    // at once after ~1.2 s.
    let (first, last) = (arrivals[0], arrivals[arrivals.len() - 1]);
    assert!(arrivals.len() >= 3, "arrived in {} chunks", arrivals.len());
    assert!(
        last - first >= Duration::from_millis(600),
        "first {first:?}, last {last:?}"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy_for(&app, "anthropic", &mock.url).await;
    let mut response = awc::Client::new()
        .post(format!("{proxy}/endless"))
        .send_body("{}")
        .await
        .expect("sent");
    let first = response.next().await.expect("a first chunk").expect("ok");
    assert!(first.starts_with(b"data: tick"));
    let (_, proxy_json) = app.get("/api/proxies").await;
    assert_eq!(
        proxy_json[0]["in_flight"], 1,
        "the stream counts as in flight"
    );
    drop(response);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !mock.journal.stream_dropped.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the upstream stream was never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, proxy_json) = app.get("/api/proxies").await;
    assert_eq!(proxy_json[0]["in_flight"], 0);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn token_usage_is_read_from_json_and_streams() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy_for(&app, "openai", &format!("{}/v1", mock.url)).await;
    let client = awc::Client::new();
    let mut response = client
        .post(format!("{proxy}/v1/responses"))
        .send_body("{}")
        .await
        .expect("sent");
    response.body().await.expect("body");
    let mut response = client
        .post(format!("{proxy}/v1/chat/completions"))
        .send_body("{\"stream\":true}")
        .await
        .expect("sent");
    response.body().await.expect("stream read to the end");

    let (_, proxies) = app.get("/api/proxies").await;
    assert_eq!(
        proxies[0]["traffic"],
        json!({"requests": 2, "input_tokens": 16, "output_tokens": 11}),
        "11 + 5 in, 7 + 4 out"
    );
    app.shutdown().await;
    mock.stop().await;
}
