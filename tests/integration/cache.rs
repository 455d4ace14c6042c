//! The response cache, exercised the way a user meets it: real requests through running proxies
//! to a recording mock upstream, and the admin API. The mock stamps its answers with a sequence
//! number (`x-mock-stamp`), so a replay from the cache is told apart from a fresh upstream answer,
//! and `mock.requests().len()` says how many requests reached the upstream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::proxied::{self, Answer, Call};
use super::support::{TestApp, accepts_connections, id_of, port_of};
use super::upstream::MockUpstream;

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"temperature":0}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"stream":true}"#;
const AZURE_CHAT: &str = "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21";
const BEDROCK_STREAM: &str =
    "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream";
const GEMINI: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Say hello"}]}]}"#;
/// How long the cache's background writer may take to store an entry.
const WRITE_WAIT: Duration = Duration::from_secs(5);

static NAMES: AtomicUsize = AtomicUsize::new(1);

pub(super) struct Proxy {
    pub(super) id: i64,
    pub(super) port: u16,
    pub(super) base: String,
}

/// Creates and starts a proxy on the mock (`cache` is sent at creation unless null).
pub(super) async fn proxy(
    app: &TestApp,
    provider: &str,
    mock: &MockUpstream,
    cache: Value,
) -> Proxy {
    let upstream = if provider == "openai" {
        format!("{}/v1", mock.url)
    } else {
        mock.url.clone()
    };
    let name = format!("cache-{provider}-{}", NAMES.fetch_add(1, Ordering::Relaxed));
    let mut body = json!({"name": name, "provider": provider, "upstream_url": upstream});
    if !cache.is_null() {
        body["cache"] = cache;
    }
    let created = app.create(body).await;
    assert_eq!(created["status"], "running", "{created}");
    Proxy {
        id: id_of(&created),
        port: port_of(&created),
        base: format!("http://127.0.0.1:{}", port_of(&created)),
    }
}

/// PATCHes the proxy's cache settings and returns the proxy JSON, waiting until it listens again.
pub(super) async fn patch_cache(app: &TestApp, proxy: &Proxy, cache: Value) -> Value {
    let (status, patched) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"cache": cache}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !accepts_connections(proxy.port) {
        assert!(Instant::now() < deadline, "the proxy stopped listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    patched
}

impl Call {
    /// Bedrock credentials the proxy signs with.
    pub(super) fn aws(self) -> Self {
        self.header("X-AWS-Access-Key", "AKIDCACHETEST")
            .header("X-AWS-Secret-Key", "cache-secret")
            .header("X-AWS-Region", "us-east-1")
    }
}

/// What the cache tests read of an answer.
impl Answer {
    pub(super) fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("<no X-Cache header>")
    }

    /// The X-Cache-Key, checked to be a lowercase hex SHA-256.
    pub(super) fn key(&self) -> String {
        let key = self
            .header("x-cache-key")
            .unwrap_or_else(|| panic!("no X-Cache-Key (X-Cache: {})", self.cache()));
        assert!(
            key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "X-Cache-Key {key:?} is not 64 lowercase hex digits"
        );
        key.to_owned()
    }

    pub(super) fn assert_miss(&self, what: &str) {
        assert_eq!(self.cache(), "MISS", "{what}: {}", self.text());
        self.key();
    }

    pub(super) fn assert_hit(&self, what: &str) {
        assert_eq!(self.cache(), "HIT", "{what}: {}", self.text());
        self.key();
    }
}

pub(super) async fn send(proxy: &Proxy, call: &Call) -> Answer {
    proxied::send(&proxy.base, call).await
}

pub(super) async fn stats(app: &TestApp, proxy: &Proxy) -> Value {
    let (status, stats) = app.get(&format!("/api/proxies/{}/cache", proxy.id)).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats
}

/// Polls the cache stats until the proxy holds at least `count` entries (they are written by a
/// background writer); returns those stats.
pub(super) async fn wait_for_entries(app: &TestApp, proxy: &Proxy, count: u64) -> Value {
    let deadline = Instant::now() + WRITE_WAIT;
    loop {
        let stats = stats(app, proxy).await;
        if stats["entries"].as_u64().is_some_and(|n| n >= count) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never held {count} entries: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `first` is a miss then a hit; `second` is then a hit on the same entry, with no new upstream
/// request.
async fn assert_same_entry(
    app: &TestApp,
    mock: &MockUpstream,
    proxy: &Proxy,
    first: Call,
    second: Call,
) {
    let before = mock.requests().len();
    let recorded = send(proxy, &first).await;
    assert_eq!(recorded.status, StatusCode::OK, "{}", recorded.text());
    recorded.assert_miss("the first request");
    assert_eq!(mock.requests().len(), before + 1);
    wait_for_entries(app, proxy, 1).await;

    let replayed = send(proxy, &second).await;
    replayed.assert_hit("the equivalent request");
    assert_eq!(replayed.key(), recorded.key());
    assert_eq!(
        replayed.body, recorded.body,
        "the recorded answer comes back"
    );
    assert_eq!(
        mock.requests().len(),
        before + 1,
        "a hit never reaches the upstream"
    );
}

/// `first` is cached (miss, then hit); `second` is still a miss with its own key and goes upstream.
async fn assert_separate_entries(
    app: &TestApp,
    mock: &MockUpstream,
    proxy: &Proxy,
    case: &str,
    first: Call,
    second: Call,
) {
    let before = mock.requests().len();
    let recorded = send(proxy, &first).await;
    assert_eq!(
        recorded.status,
        StatusCode::OK,
        "{case}: {}",
        recorded.text()
    );
    recorded.assert_miss(case);
    wait_for_entries(app, proxy, 1).await;
    send(proxy, &first).await.assert_hit(case);
    assert_eq!(mock.requests().len(), before + 1, "{case}");

    let other = send(proxy, &second).await;
    assert_eq!(other.status, StatusCode::OK, "{case}: {}", other.text());
    other.assert_miss(case);
    assert_ne!(other.key(), recorded.key(), "{case}: the keys must differ");
    assert_ne!(other.body, recorded.body, "{case}: a fresh upstream answer");
    assert_eq!(mock.requests().len(), before + 2, "{case}: went upstream");
}

#[actix_web::test]
async fn a_repeated_request_is_served_from_the_cache() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", CHAT).stamp("json");

    let first = send(&proxy, &call).await;
    assert_eq!(first.status, StatusCode::OK);
    first.assert_miss("first request");
    assert_eq!(first.json()["n"], 1, "{}", first.text());
    assert_eq!(first.header("x-request-id"), Some("req-1"));
    wait_for_entries(&app, &proxy, 1).await;

    let second = send(&proxy, &call).await;
    assert_eq!(second.status, StatusCode::OK);
    second.assert_hit("identical request");
    assert_eq!(second.key(), first.key(), "same request, same key");
    assert_eq!(second.body, first.body, "the stored bytes are replayed");
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(
        mock.requests().len(),
        1,
        "the hit never reached the upstream"
    );
    assert_ne!(
        second.header("x-request-id"),
        Some("req-1"),
        "the upstream's request id is not replayed"
    );
    for per_request in ["x-ratelimit-remaining-requests", "retry-after"] {
        assert!(
            first.header(per_request).is_some(),
            "{per_request} passes through on a miss"
        );
        assert_eq!(
            second.header(per_request),
            None,
            "{per_request} is not replayed"
        );
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_hit_replays_the_stored_status_and_content_encoding() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", CHAT)
        .stamp("gzip")
        .header("x-mock-status", "201")
        .header("accept-encoding", "gzip");

    let first = send(&proxy, &call).await;
    assert_eq!(first.status, StatusCode::CREATED);
    first.assert_miss("first request");
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    wait_for_entries(&app, &proxy, 1).await;

    let second = send(&proxy, &call).await;
    second.assert_hit("identical request");
    assert_eq!(second.status, StatusCode::CREATED, "the stored status");
    assert_eq!(second.header("content-encoding"), Some("gzip"));
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(
        second.body, first.body,
        "compressed bytes replayed as stored"
    );
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&second.body[..]),
        &mut plain,
    )
    .expect("a valid gzip body");
    assert!(plain.starts_with("{\"n\":1,"), "{plain}");
    assert_eq!(mock.requests().len(), 1);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn json_key_order_and_whitespace_do_not_change_the_key() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let reordered = "{ \"temperature\" : 0,\n  \"messages\" : [ { \"content\" : \"Say hello\", \"role\" : \"user\" } ],\n  \"model\" : \"gpt-4o-mini\" }\n";
    assert_same_entry(
        &app,
        &mock,
        &proxy,
        Call::post("/v1/chat/completions", CHAT).stamp("json"),
        Call::post("/v1/chat/completions", reordered).stamp("json"),
    )
    .await;
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn openai_style_paths_with_and_without_v1_share_a_key() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    for provider in ["openai", "deepseek"] {
        let proxy = proxy(&app, provider, &mock, Value::Null).await;
        assert_same_entry(
            &app,
            &mock,
            &proxy,
            Call::post("/v1/chat/completions", CHAT).stamp("json"),
            Call::post("/chat/completions", CHAT).stamp("json"),
        )
        .await;
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn credentials_are_not_part_of_the_key_by_default() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", CHAT).stamp("json");
    assert_same_entry(
        &app,
        &mock,
        &proxy,
        call.clone().header("Authorization", "Bearer sk-alice"),
        call.header("Authorization", "Bearer sk-bob"),
    )
    .await;
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn requests_that_change_the_answer_get_their_own_entry() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let vertex = "/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent";
    let cases = [
        (
            "embeddings of another input",
            "openai",
            Call::post(
                "/v1/embeddings",
                r#"{"model":"text-embedding-3-small","input":"duck"}"#,
            ),
            Call::post(
                "/v1/embeddings",
                r#"{"model":"text-embedding-3-small","input":"goose"}"#,
            ),
        ),
        (
            "another model in a Vertex path",
            "vertex_ai",
            Call::post("/v1beta/models/gemini-a:generateContent", GEMINI),
            Call::post("/v1beta/models/gemini-b:generateContent", GEMINI),
        ),
        (
            "Vertex alt=sse",
            "vertex_ai",
            Call::post(&format!("{vertex}?alt=sse"), GEMINI),
            Call::post(vertex, GEMINI),
        ),
        (
            "another Azure deployment",
            "azure_openai",
            Call::post(
                "/openai/deployments/a/chat/completions?api-version=2024-10-21",
                CHAT,
            ),
            Call::post(
                "/openai/deployments/b/chat/completions?api-version=2024-10-21",
                CHAT,
            ),
        ),
        (
            "another api-version",
            "azure_openai",
            Call::post(AZURE_CHAT, CHAT),
            Call::post(
                "/openai/deployments/gpt4o/chat/completions?api-version=2025-01-01-preview",
                CHAT,
            ),
        ),
        (
            "chat completions vs completions",
            "openai",
            Call::post("/v1/chat/completions", CHAT),
            Call::post("/v1/completions", CHAT),
        ),
        (
            "another method",
            "openai",
            Call::post("/v1/models", ""),
            Call::get("/v1/models"),
        ),
    ];
    for (case, provider, first, second) in cases {
        let proxy = proxy(&app, provider, &mock, Value::Null).await;
        let first = first.header("x-goog-api-key", "g-key").stamp("json");
        let second = second.header("x-goog-api-key", "g-key").stamp("json");
        assert_separate_entries(&app, &mock, &proxy, case, first, second).await;
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn each_proxy_has_its_own_cache() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let one = proxy(&app, "openai", &mock, Value::Null).await;
    let two = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", CHAT).stamp("json");

    send(&one, &call).await.assert_miss("first proxy");
    wait_for_entries(&app, &one, 1).await;
    send(&one, &call).await.assert_hit("first proxy, again");
    let elsewhere = send(&two, &call).await;
    elsewhere.assert_miss("the same request on another proxy");
    assert_eq!(elsewhere.json()["n"], 2, "{}", elsewhere.text());
    assert_eq!(mock.requests().len(), 2);
    wait_for_entries(&app, &two, 1).await;
    send(&two, &call).await.assert_hit("second proxy, again");
    assert_eq!(stats(&app, &one).await["entries"], 1);
    assert_eq!(stats(&app, &two).await["entries"], 1);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn partition_by_credential_gives_each_credential_its_own_entry() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let cases = [
        (
            "openai",
            "/v1/chat/completions",
            "Authorization",
            "Bearer sk-alice",
            "Bearer sk-bob",
        ),
        (
            "anthropic",
            "/v1/messages",
            "x-api-key",
            "sk-ant-alice",
            "sk-ant-bob",
        ),
        ("azure_openai", AZURE_CHAT, "api-key", "az-alice", "az-bob"),
        (
            "vertex_ai",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            "x-goog-api-key",
            "g-alice",
            "g-bob",
        ),
    ];
    for (provider, path, credential, alice, bob) in cases {
        let proxy = proxy(&app, provider, &mock, Value::Null).await;
        let patched = patch_cache(&app, &proxy, json!({"partition_by_credential": true})).await;
        assert_eq!(
            patched["cache"]["partition_by_credential"], true,
            "{patched}"
        );
        assert_eq!(
            patched["cache"]["enabled"], true,
            "a partial edit keeps the rest"
        );
        let call = Call::post(path, CHAT).stamp("json");
        let as_alice = call.clone().header(credential, alice);
        let as_bob = call.header(credential, bob);
        assert_separate_entries(
            &app,
            &mock,
            &proxy,
            provider,
            as_alice.clone(),
            as_bob.clone(),
        )
        .await;

        wait_for_entries(&app, &proxy, 2).await;
        let served = mock.requests().len();
        let alice_again = send(&proxy, &as_alice).await;
        let bob_again = send(&proxy, &as_bob).await;
        alice_again.assert_hit(provider);
        bob_again.assert_hit(provider);
        assert_ne!(
            alice_again.body, bob_again.body,
            "{provider}: each their own answer"
        );
        assert_eq!(mock.requests().len(), served, "{provider}");
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn cache_settings_have_defaults_and_accept_partial_updates() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let plain = proxy(&app, "openai", &mock, Value::Null).await;
    let (_, json) = app.get(&format!("/api/proxies/{}", plain.id)).await;
    let cache = &json["cache"];
    assert_eq!(cache["enabled"], true, "{json}");
    assert_eq!(cache["mode"], "read_write", "{json}");
    assert_eq!(cache["ttl_seconds"], Value::Null, "{json}");
    assert_eq!(cache["partition_by_credential"], false, "{json}");

    let set = proxy(
        &app,
        "anthropic",
        &mock,
        json!({"mode": "replay_only", "ttl_seconds": 60, "partition_by_credential": true}),
    )
    .await;
    let (_, json) = app.get(&format!("/api/proxies/{}", set.id)).await;
    assert_eq!(
        json["cache"],
        json!({"enabled": true, "mode": "replay_only", "ttl_seconds": 60, "partition_by_credential": true, "fixtures_dir": null, "ignore_fields": [], "stream_replay": "instant"}),
        "settings given at creation"
    );

    let patched = patch_cache(&app, &set, json!({"ttl_seconds": null})).await;
    assert_eq!(patched["cache"]["ttl_seconds"], Value::Null, "{patched}");
    assert_eq!(patched["cache"]["mode"], "replay_only", "{patched}");
    let patched = patch_cache(&app, &set, json!({"enabled": false})).await;
    assert_eq!(
        patched["cache"],
        json!({"enabled": false, "mode": "replay_only", "ttl_seconds": null, "partition_by_credential": true, "fixtures_dir": null, "ignore_fields": [], "stream_replay": "instant"})
    );
    let (_, json) = app.get(&format!("/api/proxies/{}", set.id)).await;
    assert_eq!(json["cache"], patched["cache"], "the edits are stored");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_disabled_cache_is_bypassed() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, json!({"enabled": false})).await;
    let call = Call::post("/v1/chat/completions", CHAT).stamp("json");

    for n in 1..=2 {
        let reply = send(&proxy, &call).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.cache(), "BYPASS");
        assert_eq!(reply.header("x-cache-key"), None, "no key on a bypass");
        assert_eq!(reply.json()["n"], n, "every request goes upstream");
    }
    assert_eq!(stats(&app, &proxy).await["entries"], 0);

    patch_cache(&app, &proxy, json!({"enabled": true})).await;
    send(&proxy, &call).await.assert_miss("once enabled");
    wait_for_entries(&app, &proxy, 1).await;
    send(&proxy, &call).await.assert_hit("once enabled, again");
    assert_eq!(mock.requests().len(), 3);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn only_successful_answers_are_cached() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", CHAT).stamp("json");

    for (n, status) in [(1, "429"), (2, "500")] {
        let failed = send(&proxy, &call.clone().header("x-mock-status", status)).await;
        assert_eq!(failed.status.as_str(), status, "{}", failed.text());
        failed.assert_miss("an upstream failure");
        assert_eq!(
            failed.json()["error"]["message"],
            format!("mock failure {n}")
        );
        assert_eq!(mock.requests().len(), n, "the request went upstream again");
    }
    let success = send(&proxy, &call).await;
    assert_eq!(success.status, StatusCode::OK, "no failure was replayed");
    success.assert_miss("after failures");
    assert_eq!(success.json()["n"], 3);
    wait_for_entries(&app, &proxy, 1).await;
    let hit = send(&proxy, &call).await;
    hit.assert_hit("after the success");
    assert_eq!(hit.body, success.body);
    assert_eq!(
        stats(&app, &proxy).await["entries"],
        1,
        "failures left no entry"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn sse_streams_are_replayed_as_the_same_bytes() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", CHAT_STREAM)
        .stamp("sse")
        .header("x-mock-pause-ms", "30");

    let first = send(&proxy, &call).await;
    first.assert_miss("first stream");
    assert_eq!(first.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        first.text().matches("data: ").count(),
        5,
        "{}",
        first.text()
    );
    assert!(
        first.text().ends_with("data: [DONE]\n\n"),
        "{}",
        first.text()
    );
    wait_for_entries(&app, &proxy, 1).await;

    let second = send(&proxy, &call).await;
    second.assert_hit("same stream request");
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("content-type"), Some("text/event-stream"));
    assert_eq!(second.body, first.body, "the same event bytes");
    assert_eq!(mock.requests().len(), 1);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn aws_event_streams_are_replayed_as_the_same_bytes() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "bedrock", &mock, Value::Null).await;
    let call = Call::post(BEDROCK_STREAM, r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"Say hello"}]}"#)
        .aws()
        .stamp("eventstream");

    let first = send(&proxy, &call).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    first.assert_miss("first stream");
    let event_stream = Some("application/vnd.amazon.eventstream");
    assert_eq!(first.header("content-type"), event_stream);
    assert!(first.body.len() > 100, "four frames arrived");
    wait_for_entries(&app, &proxy, 1).await;

    let second = send(&proxy, &call).await;
    second.assert_hit("same stream request");
    assert_eq!(second.header("content-type"), event_stream);
    assert_eq!(second.body, first.body, "the same frames, byte for byte");
    assert_eq!(mock.requests().len(), 1);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_stream_the_client_abandons_is_not_cached() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let mut response = awc::Client::new()
        .post(format!("{}/v1/chat/completions", proxy.base))
        .insert_header(("x-mock-stamp", "sse"))
        .insert_header(("x-mock-pause-ms", "300"))
        .send_body(CHAT_STREAM)
        .await
        .expect("sent");
    let first = response.next().await.expect("a first event").expect("ok");
    assert!(first.starts_with(b"data: {\"n\":1"), "{first:?}");
    drop(response);
    // Long enough for the whole upstream stream (4 pauses of 300 ms) to have ended, had the
    // proxy kept reading it.
    tokio::time::sleep(Duration::from_millis(1800)).await;

    let call = Call::post("/v1/chat/completions", CHAT_STREAM).stamp("sse");
    let again = send(&proxy, &call).await;
    again.assert_miss("after an abandoned stream");
    assert!(
        again.text().starts_with("data: {\"n\":2"),
        "{}",
        again.text()
    );
    assert_eq!(mock.requests().len(), 2, "the request went upstream again");
    wait_for_entries(&app, &proxy, 1).await;
    let replayed = send(&proxy, &call).await;
    replayed.assert_hit("the completed stream");
    assert_eq!(replayed.body, again.body);
    assert_eq!(stats(&app, &proxy).await["entries"], 1);
    app.shutdown().await;
    mock.stop().await;
}

fn message_mentions_the_cache(message: &Value, body: &Value) {
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains("cache")),
        "the message should say the request is not in the cache: {body}"
    );
}

#[actix_web::test]
async fn replay_only_misses_are_provider_shaped_errors_without_upstream_calls() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let replay_only = json!({"mode": "replay_only"});
    let cases = [
        ("openai", Call::post("/v1/chat/completions", CHAT)),
        ("deepseek", Call::post("/chat/completions", CHAT)),
        ("azure_openai", Call::post(AZURE_CHAT, CHAT)),
        ("anthropic", Call::post("/v1/messages", CHAT)),
        ("bedrock", Call::post(BEDROCK_STREAM, CHAT).aws()),
        (
            "vertex_ai",
            Call::post("/v1beta/models/gemini-2.0-flash:generateContent", GEMINI),
        ),
    ];
    for (provider, call) in cases {
        let proxy = proxy(&app, provider, &mock, replay_only.clone()).await;
        let started = Instant::now();
        let reply = send(&proxy, &call.stamp("json")).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{provider}: quick"
        );
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{provider}: {}",
            reply.text()
        );
        assert_eq!(reply.cache(), "MISS", "{provider}");
        let body = reply.json();
        match provider {
            "anthropic" => {
                assert_eq!(body["type"], "error", "{body}");
                assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
                message_mentions_the_cache(&body["error"]["message"], &body);
            }
            "bedrock" => {
                let kind = reply.header("x-amzn-errortype").unwrap_or_default();
                assert!(kind.starts_with("ValidationException"), "{kind:?}");
                message_mentions_the_cache(&body["message"], &body);
            }
            "vertex_ai" => {
                assert_eq!(body["error"]["code"], 400, "{body}");
                assert_eq!(body["error"]["status"], "FAILED_PRECONDITION", "{body}");
                message_mentions_the_cache(&body["error"]["message"], &body);
            }
            _ => {
                assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
                assert_eq!(body["error"]["code"], "not_cached", "{body}");
                assert_eq!(body["error"]["param"], Value::Null, "{body}");
                message_mentions_the_cache(&body["error"]["message"], &body);
            }
        }
        assert_eq!(
            mock.requests().len(),
            0,
            "{provider}: nothing went upstream"
        );
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn replay_only_serves_what_was_recorded() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let recorded_call = Call::post("/v1/chat/completions", CHAT).stamp("json");
    let recorded = send(&proxy, &recorded_call).await;
    recorded.assert_miss("recording");
    wait_for_entries(&app, &proxy, 1).await;

    let patched = patch_cache(&app, &proxy, json!({"mode": "replay_only"})).await;
    assert_eq!(patched["cache"]["mode"], "replay_only");
    let replayed = send(&proxy, &recorded_call).await;
    assert_eq!(replayed.status, StatusCode::OK);
    replayed.assert_hit("replaying");
    assert_eq!(replayed.body, recorded.body);
    let unknown = send(
        &proxy,
        &Call::post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
        )
        .stamp("json"),
    )
    .await;
    assert_eq!(
        unknown.status,
        StatusCode::BAD_REQUEST,
        "{}",
        unknown.text()
    );
    assert_eq!(unknown.json()["error"]["code"], "not_cached");
    assert_eq!(mock.requests().len(), 1, "only the recording went upstream");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn entries_older_than_the_ttl_are_fetched_again() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, json!({"ttl_seconds": 2})).await;
    let call = Call::post("/v1/chat/completions", CHAT).stamp("json");

    send(&proxy, &call).await.assert_miss("first request");
    let written = wait_for_entries(&app, &proxy, 1).await;
    send(&proxy, &call).await.assert_hit("within the TTL");
    assert_eq!(mock.requests().len(), 1);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let refreshed = send(&proxy, &call).await;
    refreshed.assert_miss("after the TTL");
    assert_eq!(refreshed.json()["n"], 2, "a fresh upstream answer");
    assert_eq!(mock.requests().len(), 2);

    // The fresh answer replaces the expired entry.
    let deadline = Instant::now() + WRITE_WAIT;
    loop {
        let now = stats(&app, &proxy).await;
        if now["entries"] == 1 && now["newest"] != written["newest"] {
            break;
        }
        assert!(Instant::now() < deadline, "never re-cached: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hit = send(&proxy, &call).await;
    hit.assert_hit("the refreshed entry");
    assert_eq!(hit.body, refreshed.body);
    assert_eq!(mock.requests().len(), 2);
    app.shutdown().await;
    mock.stop().await;
}

fn timestamp(stats: &Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    stats[field]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("{field} is not RFC 3339: {stats}"))
}

#[actix_web::test]
async fn cache_stats_count_and_clearing_empties_the_cache() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    assert_eq!(
        stats(&app, &proxy).await,
        json!({"entries": 0, "bytes": 0, "hits": 0, "misses": 0, "evictions": 0, "oldest": null, "newest": null})
    );
    let one = Call::post("/v1/chat/completions", CHAT).stamp("json");
    let two = Call::post("/v1/embeddings", r#"{"model":"e","input":"duck"}"#).stamp("json");

    let first = send(&proxy, &one).await;
    first.assert_miss("one");
    wait_for_entries(&app, &proxy, 1).await;
    send(&proxy, &one).await.assert_hit("one again");
    let second = send(&proxy, &two).await;
    second.assert_miss("two");
    let counted = wait_for_entries(&app, &proxy, 2).await;
    assert_eq!(counted["entries"], 2, "{counted}");
    assert_eq!(counted["hits"], 1, "{counted}");
    assert_eq!(counted["misses"], 2, "{counted}");
    let bytes = counted["bytes"].as_u64().expect("bytes");
    assert!(
        bytes >= (first.body.len() + second.body.len()) as u64,
        "{counted}"
    );
    assert!(timestamp(&counted, "oldest") <= timestamp(&counted, "newest"));

    let (status, cleared) = app
        .delete(&format!("/api/proxies/{}/cache", proxy.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared, json!({"entries_removed": 2}));
    let after = stats(&app, &proxy).await;
    assert_eq!(after["entries"], 0, "{after}");
    assert_eq!(after["bytes"], 0, "{after}");
    assert_eq!(after["oldest"], Value::Null, "{after}");
    let again = send(&proxy, &one).await;
    again.assert_miss("after clearing");
    assert_eq!(again.json()["n"], 3, "went upstream");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn entries_survive_a_restart_of_the_app() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "anthropic", &mock, Value::Null).await;
    let call = Call::post("/v1/messages", CHAT)
        .header("x-api-key", "sk-ant")
        .stamp("json");
    let recorded = send(&proxy, &call).await;
    recorded.assert_miss("before the restart");
    wait_for_entries(&app, &proxy, 1).await;

    app.restart().await;
    assert!(accepts_connections(proxy.port), "the proxy runs again");
    let replayed = send(&proxy, &call).await;
    replayed.assert_hit("after the restart");
    assert_eq!(replayed.body, recorded.body);
    assert_eq!(mock.requests().len(), 1, "the upstream was not asked again");
    let after = stats(&app, &proxy).await;
    assert_eq!(after["entries"], 1, "{after}");
    assert_eq!(after["hits"], 1, "counted since the restart: {after}");
    assert_eq!(after["misses"], 0, "counted since the restart: {after}");
    app.shutdown().await;
    mock.stop().await;
}

/// Rows of `cache_entries` stored for a proxy, read straight from the app's SQLite file.
fn stored_rows(app: &TestApp, proxy_id: i64) -> i64 {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    let path = app.data_dir().join("rubberduck.sqlite3");
    let mut conn =
        SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("open the database");
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT COUNT(*) FROM cache_entries WHERE proxy_id = {proxy_id})"
    )))
    .get_result(&mut conn)
    .expect("count cache rows")
}

#[actix_web::test]
async fn deleting_a_proxy_removes_its_entries() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let doomed = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", CHAT).stamp("json");
    send(&doomed, &call).await.assert_miss("recording");
    wait_for_entries(&app, &doomed, 1).await;
    let deadline = Instant::now() + WRITE_WAIT;
    while stored_rows(&app, doomed.id) == 0 {
        assert!(Instant::now() < deadline, "the entry never reached SQLite");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, stopped) = app
        .post_empty(&format!("/api/proxies/{}/stop", doomed.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    let (status, deleted) = app.delete(&format!("/api/proxies/{}", doomed.id)).await;
    assert!(status.is_success(), "{status} {deleted}");
    assert_eq!(stored_rows(&app, doomed.id), 0, "its entries are gone");

    let fresh = proxy(&app, "openai", &mock, Value::Null).await;
    let reply = send(&fresh, &call).await;
    reply.assert_miss("a new proxy on the same upstream");
    assert_eq!(mock.requests().len(), 2);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn concurrent_identical_misses_all_succeed_and_leave_one_entry() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    // Not stamped: every upstream answer to this request is the same, so all 20 bodies must be.
    let call = Call::post("/v1/chat/completions", CHAT).header("x-mock-delay-ms", "300");

    let replies = futures_util::future::join_all((0..20).map(|_| send(&proxy, &call))).await;
    let first = &replies[0];
    assert_eq!(first.text(), format!("{{\"echo\":{}}}", CHAT.len()));
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(
            matches!(reply.cache(), "HIT" | "MISS"),
            "X-Cache: {}",
            reply.cache()
        );
        assert_eq!(reply.key(), first.key());
        assert_eq!(reply.body, first.body);
    }
    let upstream_calls = mock.requests().len();
    assert_eq!(
        upstream_calls, 1,
        "identical misses wait for the one fetching the answer"
    );

    wait_for_entries(&app, &proxy, 1).await;
    let after = send(&proxy, &call).await;
    after.assert_hit("after the burst");
    assert_eq!(after.body, first.body);
    assert_eq!(mock.requests().len(), upstream_calls);
    let counted = stats(&app, &proxy).await;
    assert_eq!(counted["entries"], 1, "{counted}");
    assert_eq!(
        counted["hits"].as_u64().unwrap_or_default()
            + counted["misses"].as_u64().unwrap_or_default(),
        21,
        "every request is counted once: {counted}"
    );
    app.shutdown().await;
    mock.stop().await;
}
