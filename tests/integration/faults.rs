//! Failure simulation, exercised the way a user meets it: the failure config through the admin
//! API (`GET|PUT /api/proxies/{id}/failure-config`) and real requests through running proxies to
//! a recording mock upstream. `mock.requests().len()` says what reached the upstream: injected
//! failures never do. Timing checks are lower bounds with generous upper bounds only.
//!
//! Proxy ports: these tests take small blocks (`port_block_of(n)` for n proxies), since the
//! whole integration binary shares 9000–9999.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::proxied::{self, Answer, Call};
use super::support::{self, TestApp, id_of, port_block_of, port_of};
use super::upstream::MockUpstream;

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"temperature":0}"#;
const ANTHROPIC_CHAT: &str = r#"{"model":"claude-3-haiku-20240307","max_tokens":8,"messages":[{"role":"user","content":"Say hello"}]}"#;
const AZURE_CHAT: &str = "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21";
const BEDROCK_INVOKE: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke";
const GEMINI: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Say hello"}]}]}"#;
const GEMINI_PATH: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const INJECTED: &str = "x-rubberduck-injected";
/// Every status the failure config may inject.
const INJECTABLE: [u16; 11] = [400, 401, 403, 404, 408, 429, 500, 502, 503, 504, 529];
/// How long the cache's background writer may take to store an entry.
const WRITE_WAIT: Duration = Duration::from_secs(5);

static NAMES: AtomicUsize = AtomicUsize::new(1);

// --- proxies and the failure config ------------------------------------------------------------

struct Proxy {
    id: i64,
    port: u16,
    base: String,
    provider: &'static str,
}

/// Creates and starts a proxy on the mock. Its cache is off unless `cache` (most tests count what
/// reached the upstream, so no answer may come from the cache).
async fn proxy(app: &TestApp, provider: &'static str, mock: &MockUpstream, cache: bool) -> Proxy {
    let upstream = if matches!(provider, "openai" | "deepseek") {
        format!("{}/v1", mock.url)
    } else {
        mock.url.clone()
    };
    let name = format!(
        "faults-{provider}-{}",
        NAMES.fetch_add(1, Ordering::Relaxed)
    );
    let created = app
        .create(json!({
            "name": name, "provider": provider, "upstream_url": upstream,
            "cache": {"enabled": cache},
        }))
        .await;
    assert_eq!(created["status"], "running", "{created}");
    assert_eq!(created["cache"]["enabled"], cache, "{created}");
    Proxy {
        id: id_of(&created),
        port: port_of(&created),
        base: format!("http://127.0.0.1:{}", port_of(&created)),
        provider,
    }
}

fn config_path(proxy: &Proxy) -> String {
    format!("/api/proxies/{}/failure-config", proxy.id)
}

/// The documented defaults.
fn defaults() -> Value {
    json!({
        "timeout":        {"enabled": false, "rate": 0.0, "mode": "delay", "seconds": 5.0},
        "errors":         {"enabled": false, "rates": {}, "retry_after_seconds": 1},
        "ip_filter":      {"enabled": false, "allow": [], "block": [], "trusted_proxies": []},
        "rate_limit":     {"enabled": false, "requests_per_minute": 60},
        "response_delay": {"enabled": false, "min_ms": 500, "max_ms": 2000, "cache_hits_only": true},
        "stream":         {"enabled": false, "rate": 0.0, "kind": "disconnect", "after_events": 3,
                           "stall_seconds": 5.0, "stall_hang": false, "drip_ms": 200},
        "connection":     {"enabled": false, "rate": 0.0, "kind": "reset", "truncate_after_bytes": 100,
                           "bandwidth_bytes_per_second": null},
        "script": [],
        "script_end": "pass",
        "fail_first": null,
        "every_nth": null,
        "seed": null,
        "allow_request_faults": false
    })
}

/// A whole config: `overrides` laid over the defaults section by section, field by field (so
/// every PUT of these tests sends every field).
fn config(overrides: Value) -> Value {
    let mut whole = defaults();
    for (section, value) in overrides.as_object().expect("an object of sections") {
        match (whole.get_mut(section), value) {
            (Some(Value::Object(fields)), Value::Object(changed)) => {
                for (field, v) in changed {
                    fields.insert(field.clone(), v.clone());
                }
            }
            _ => {
                whole[section] = value.clone();
            }
        }
    }
    whole
}

/// Errors switched on with these rates (`{"429": 0.3}`), nothing else.
fn errors(rates: Value) -> Value {
    config(json!({"errors": {"enabled": true, "rates": rates}}))
}

/// `PUT` with any body; the status and the JSON answer.
async fn put_raw(app: &TestApp, path: &str, body: &Value) -> (StatusCode, Value) {
    let mut response = awc::Client::new()
        .put(app.url(path))
        .insert_header((
            "Authorization",
            format!("Bearer {}", super::support::TEST_TOKEN),
        ))
        .send_json(body)
        .await
        .expect("PUT sent");
    let bytes = response.body().limit(1 << 20).await.expect("body read");
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (response.status(), json)
}

/// Saves a config, asserting a 200 that returns it as saved; returns the answer.
async fn put_config(app: &TestApp, proxy: &Proxy, body: &Value) -> Value {
    let (status, saved) = put_raw(app, &config_path(proxy), body).await;
    assert_eq!(status, StatusCode::OK, "PUT {body}: {saved}");
    assert_same(&saved, body, "PUT answers the saved config");
    saved
}

async fn get_config(app: &TestApp, proxy: &Proxy) -> Value {
    let (status, saved) = app.get(&config_path(proxy)).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    saved
}

/// JSON with every number as an f64, so `1` and `1.0` compare equal.
fn numeric(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().expect("a finite number")),
        Value::Array(items) => Value::Array(items.iter().map(numeric).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), numeric(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn assert_same(actual: &Value, expected: &Value, what: &str) {
    assert_eq!(
        numeric(actual),
        numeric(expected),
        "{what}:\n  got      {actual}\n  expected {expected}"
    );
}

async fn in_flight(app: &TestApp, proxy: &Proxy) -> u64 {
    support::in_flight(app, proxy.id).await
}

async fn wait_for_in_flight(app: &TestApp, proxy: &Proxy, wanted: u64, within: Duration) {
    support::wait_for_in_flight(app, proxy.id, wanted, within).await;
}

async fn cache_entries(app: &TestApp, proxy: &Proxy) -> u64 {
    let (status, stats) = app.get(&format!("/api/proxies/{}/cache", proxy.id)).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats["entries"].as_u64().expect("entries")
}

// --- requests through a proxy ------------------------------------------------------------------

/// The requests the failure tests send.
impl Call {
    /// A typical chat request of the provider.
    fn chat(provider: &str) -> Self {
        match provider {
            "openai" => Call::post("/v1/chat/completions", CHAT),
            "deepseek" => Call::post("/chat/completions", CHAT),
            "azure_openai" => Call::post(AZURE_CHAT, CHAT).header("api-key", "azure-key"),
            "anthropic" => {
                Call::post("/v1/messages", ANTHROPIC_CHAT).header("x-api-key", "sk-ant-test")
            }
            "bedrock" => Call::post(BEDROCK_INVOKE, ANTHROPIC_CHAT)
                .header("X-AWS-Access-Key", "AKIDFAULTSTEST")
                .header("X-AWS-Secret-Key", "faults-secret")
                .header("X-AWS-Region", "us-east-1"),
            "vertex_ai" => Call::post(GEMINI_PATH, GEMINI).header("x-goog-api-key", "g-key"),
            other => panic!("no chat call for {other}"),
        }
        .stamp("json")
    }
}

/// What the failure tests read of an answer.
impl Answer {
    fn injected(&self) -> Option<&str> {
        self.header(INJECTED)
    }

    /// A whole-seconds `retry-after` header.
    fn retry_after(&self) -> u64 {
        let value = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("no retry-after on a {}: {:?}", self.status, self.headers));
        value
            .parse()
            .unwrap_or_else(|_| panic!("retry-after {value:?} is not whole seconds"))
    }

    /// An answer that came from the upstream (a fresh one: not injected).
    fn assert_upstream(&self, what: &str) {
        assert_eq!(self.status, StatusCode::OK, "{what}: {}", self.text());
        assert_eq!(self.injected(), None, "{what}: not injected");
    }

    /// An injected failure of this status and kind.
    fn assert_injected(&self, status: u16, kind: &str, what: &str) {
        assert_eq!(self.status.as_u16(), status, "{what}: {}", self.text());
        assert_eq!(
            self.injected(),
            Some(kind),
            "{what}: X-Rubberduck-Injected (headers {:?})",
            self.headers
        );
    }
}

async fn send(proxy: &Proxy, call: &Call) -> Answer {
    proxied::send(&proxy.base, call).await
}

/// Sends the provider's chat request `n` times one after the other; the statuses.
async fn statuses(proxy: &Proxy, n: usize) -> Vec<u16> {
    let call = Call::chat(proxy.provider);
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        seen.push(send(proxy, &call).await.status.as_u16());
    }
    seen
}

fn share(seen: &[u16], status: u16) -> f64 {
    seen.iter().filter(|s| **s == status).count() as f64 / seen.len() as f64
}

/// A chat request over a raw TCP connection, left open: the caller decides when to hang up.
fn open_request(proxy: &Proxy) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{CHAT}",
        proxy.port,
        CHAT.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    stream
}

/// Reads from the connection for at most `wait` (off the test's runtime); `None` when nothing at
/// all happened in that time, else what the read gave (bytes, end of stream, or an error).
async fn read_for(
    stream: std::net::TcpStream,
    wait: Duration,
) -> (std::net::TcpStream, Option<std::io::Result<Vec<u8>>>) {
    actix_web::rt::task::spawn_blocking(move || {
        let mut stream = stream;
        stream.set_read_timeout(Some(wait)).expect("read timeout");
        let mut buffer = [0u8; 4096];
        let outcome = match stream.read(&mut buffer) {
            Ok(n) => Some(Ok(buffer[..n].to_vec())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => Some(Err(e)),
        };
        (stream, outcome)
    })
    .await
    .expect("reader thread")
}

// --- the config API ----------------------------------------------------------------------------

#[actix_web::test]
async fn failure_config_has_defaults_and_put_replaces_it_whole() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(2)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;

    assert_same(&get_config(&app, &proxy).await, &defaults(), "a new proxy");

    let everything = json!({
        "timeout":        {"enabled": true, "rate": 0.25, "mode": "gateway_timeout", "seconds": 2.5},
        "errors":         {"enabled": true, "rates": {"429": 0.2, "500": 0.05, "529": 0.01}, "retry_after_seconds": 7},
        "ip_filter":      {"enabled": true, "allow": ["127.0.0.1", "10.0.0.0/8", "192.168.*.*", "::1/128"],
                           "block": ["10.9.9.9"], "trusted_proxies": ["127.0.0.1"]},
        "rate_limit":     {"enabled": true, "requests_per_minute": 120},
        "response_delay": {"enabled": true, "min_ms": 10, "max_ms": 20, "cache_hits_only": false},
        "stream":         {"enabled": true, "rate": 0.1, "kind": "stall", "after_events": 2,
                           "stall_seconds": 1.5, "stall_hang": true, "drip_ms": 50},
        "connection":     {"enabled": true, "rate": 0.05, "kind": "truncate", "truncate_after_bytes": 64,
                           "bandwidth_bytes_per_second": 100000},
        "script": [{"status": 429, "times": 2}, "pass", {"stream_disconnect_after": 3}],
        "script_end": "repeat",
        "fail_first": null,
        "every_nth": null,
        "seed": 1234,
        "allow_request_faults": true
    });
    put_config(&app, &proxy, &everything).await;
    assert_same(
        &get_config(&app, &proxy).await,
        &everything,
        "GET after PUT",
    );

    // Missing sections take their defaults: a PUT replaces, it does not merge.
    let only_errors =
        json!({"errors": {"enabled": true, "rates": {"503": 0.5}, "retry_after_seconds": 2}});
    let (status, saved) = put_raw(&app, &config_path(&proxy), &only_errors).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let expected = config(only_errors);
    assert_same(&saved, &expected, "a PUT with one section");
    assert_same(&get_config(&app, &proxy).await, &expected, "GET after it");

    let (status, saved) = put_raw(&app, &config_path(&proxy), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_same(&saved, &defaults(), "an empty PUT restores the defaults");
    assert_same(&get_config(&app, &proxy).await, &defaults(), "GET after it");

    // Each proxy has its own config.
    let other = self::proxy(&app, "anthropic", &mock, false).await;
    put_config(&app, &other, &errors(json!({"529": 1.0}))).await;
    assert_same(&get_config(&app, &proxy).await, &defaults(), "untouched");

    let (status, _) = app.get("/api/proxies/999999/failure-config").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = put_raw(&app, "/api/proxies/999999/failure-config", &defaults()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.shutdown().await;
    mock.stop().await;
}

enum Field {
    Is(&'static str),
    StartsWith(&'static str),
    OneOf(&'static [&'static str]),
    /// Any field: only the 422 and the message are checked.
    Any,
}

#[actix_web::test]
async fn invalid_configs_are_422_naming_the_field_and_change_nothing() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    let before = errors(json!({"429": 0.5}));
    put_config(&app, &proxy, &before).await;

    let cases: Vec<(&str, Value, Field)> = vec![
        (
            "timeout rate above 1",
            config(json!({"timeout": {"rate": 1.5}})),
            Field::Is("timeout.rate"),
        ),
        (
            "negative timeout rate",
            config(json!({"timeout": {"rate": -0.1}})),
            Field::Is("timeout.rate"),
        ),
        (
            "timeout rate not a number",
            config(json!({"timeout": {"rate": "high"}})),
            Field::Is("timeout.rate"),
        ),
        (
            "unknown timeout mode",
            config(json!({"timeout": {"mode": "explode"}})),
            Field::Is("timeout.mode"),
        ),
        (
            "timeout seconds above 30",
            config(json!({"timeout": {"seconds": 30.5}})),
            Field::Is("timeout.seconds"),
        ),
        (
            "negative timeout seconds",
            config(json!({"timeout": {"seconds": -1.0}})),
            Field::Is("timeout.seconds"),
        ),
        (
            "an error rate above 1",
            errors(json!({"429": 1.2})),
            Field::Is("errors.rates.429"),
        ),
        (
            "a negative error rate",
            errors(json!({"500": -0.1})),
            Field::Is("errors.rates.500"),
        ),
        (
            "error rates summing above 1",
            errors(json!({"429": 0.6, "500": 0.5})),
            Field::Is("errors.rates"),
        ),
        (
            "a status that is not injectable",
            errors(json!({"418": 0.1})),
            Field::StartsWith("errors.rates"),
        ),
        (
            "a 2xx status",
            errors(json!({"200": 0.1})),
            Field::StartsWith("errors.rates"),
        ),
        (
            "a status that is not a number",
            errors(json!({"abc": 0.1})),
            Field::StartsWith("errors.rates"),
        ),
        (
            "negative min_ms",
            config(json!({"response_delay": {"min_ms": -1}})),
            Field::Is("response_delay.min_ms"),
        ),
        (
            "min_ms above max_ms",
            config(json!({"response_delay": {"min_ms": 3000, "max_ms": 2000}})),
            Field::OneOf(&["response_delay.min_ms", "response_delay.max_ms"]),
        ),
        (
            "max_ms above 30000",
            config(json!({"response_delay": {"min_ms": 0, "max_ms": 30001}})),
            Field::Is("response_delay.max_ms"),
        ),
        (
            "zero requests per minute",
            config(json!({"rate_limit": {"requests_per_minute": 0}})),
            Field::Is("rate_limit.requests_per_minute"),
        ),
        (
            "negative requests per minute",
            config(json!({"rate_limit": {"requests_per_minute": -5}})),
            Field::Is("rate_limit.requests_per_minute"),
        ),
        (
            "an IPv4 octet above 255",
            config(json!({"ip_filter": {"allow": ["999.1.1.1"]}})),
            Field::StartsWith("ip_filter.allow"),
        ),
        (
            "a prefix longer than 32",
            config(json!({"ip_filter": {"allow": ["10.0.0.0/33"]}})),
            Field::StartsWith("ip_filter.allow"),
        ),
        (
            "a word in allow",
            config(json!({"ip_filter": {"allow": ["127.0.0.1", "abc"]}})),
            Field::StartsWith("ip_filter.allow"),
        ),
        (
            "a word in block",
            config(json!({"ip_filter": {"block": ["abc"]}})),
            Field::StartsWith("ip_filter.block"),
        ),
        (
            "an IPv6 prefix longer than 128",
            config(json!({"ip_filter": {"block": ["::1/129"]}})),
            Field::StartsWith("ip_filter.block"),
        ),
        (
            "a half wildcard",
            config(json!({"ip_filter": {"block": ["192.168.*"]}})),
            Field::StartsWith("ip_filter.block"),
        ),
        (
            "a negative seed",
            config(json!({"seed": -1})),
            Field::Is("seed"),
        ),
        (
            "a fractional seed",
            config(json!({"seed": 1.5})),
            Field::Is("seed"),
        ),
        (
            "a text seed",
            config(json!({"seed": "abc"})),
            Field::Is("seed"),
        ),
        (
            "an unknown section",
            config(json!({"chaos": {"enabled": true}})),
            Field::Any,
        ),
        (
            "an unknown field",
            config(json!({"timeout": {"probability": 0.5}})),
            Field::Any,
        ),
        ("not an object", json!([1, 2, 3]), Field::Any),
    ];
    for (case, body, expected) in cases {
        let (status, answer) = put_raw(&app, &config_path(&proxy), &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: {body} → {answer}"
        );
        let message = &answer["error"]["message"];
        assert!(
            message.as_str().is_some_and(|m| !m.is_empty()),
            "{case}: a message: {answer}"
        );
        let field = answer["error"]["field"].as_str().unwrap_or_default();
        let named = match expected {
            Field::Is(wanted) => field == wanted,
            Field::StartsWith(prefix) => field.starts_with(prefix),
            Field::OneOf(options) => options.contains(&field),
            Field::Any => true,
        };
        assert!(named, "{case}: the field named is {field:?}: {answer}");
        assert_same(
            &get_config(&app, &proxy).await,
            &before,
            &format!("{case}: a rejected PUT changes nothing"),
        );
    }
    // The rejected PUTs did not reach the running proxy either.
    let seen = statuses(&proxy, 20).await;
    assert!(
        seen.iter().all(|s| matches!(s, 200 | 429)) && seen.contains(&429),
        "still the saved config (429 at 0.5): {seen:?}"
    );

    // The edges of every rule are accepted.
    let edges = [
        config(json!({"timeout": {"enabled": true, "rate": 0.0, "seconds": 0.0}})),
        config(json!({"timeout": {"rate": 1.0, "mode": "hang", "seconds": 30.0}})),
        config(json!({"timeout": {"mode": "gateway_timeout"}})),
        errors(json!({"429": 0.5, "500": 0.5})),
        errors(json!({"429": 1.0})),
        errors(
            json!({"400": 0.05, "401": 0.05, "403": 0.05, "404": 0.05, "408": 0.05, "429": 0.05,
                      "500": 0.05, "502": 0.05, "503": 0.05, "504": 0.05, "529": 0.05}),
        ),
        config(json!({"response_delay": {"min_ms": 0, "max_ms": 0}})),
        config(json!({"response_delay": {"min_ms": 30000, "max_ms": 30000}})),
        config(json!({"rate_limit": {"requests_per_minute": 1}})),
        config(
            json!({"ip_filter": {"allow": ["127.0.0.1", "::1", "2001:db8::1", "10.0.0.0/8", "::1/128",
                                              "2001:db8::/32", "192.168.*.*", "127.*.*.*", "0.0.0.0/0"]}}),
        ),
        config(json!({"seed": 0})),
        config(json!({"seed": 18_446_744_073_709_551_615_u64})),
    ];
    for body in edges {
        put_config(&app, &proxy, &body).await;
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_config_survives_an_app_restart() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "anthropic", &mock, false).await;
    let saved = config(json!({
        "errors": {"enabled": true, "rates": {"529": 1.0}, "retry_after_seconds": 4},
        "ip_filter": {"allow": ["10.0.0.0/8"], "block": ["192.168.*.*"]},
        "rate_limit": {"requests_per_minute": 99},
        "seed": 77
    }));
    put_config(&app, &proxy, &saved).await;

    app.restart().await;
    assert_same(&get_config(&app, &proxy).await, &saved, "after the restart");
    let reply = send(&proxy, &Call::chat("anthropic")).await;
    reply.assert_injected(
        529,
        "error_injection",
        "the saved config applies after a restart",
    );
    assert_eq!(reply.retry_after(), 4);
    assert!(mock.requests().is_empty());
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_saved_config_applies_to_the_very_next_request() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    let call = Call::chat("openai");

    send(&proxy, &call)
        .await
        .assert_upstream("before any failure config");
    assert_eq!(mock.requests().len(), 1);

    put_config(&app, &proxy, &errors(json!({"500": 1.0}))).await;
    send(&proxy, &call)
        .await
        .assert_injected(500, "error_injection", "right after the PUT");
    assert_eq!(
        mock.requests().len(),
        1,
        "the injected error stayed in the proxy"
    );

    put_config(&app, &proxy, &errors(json!({"503": 1.0}))).await;
    send(&proxy, &call)
        .await
        .assert_injected(503, "error_injection", "right after the second PUT");

    // Disabled errors inject nothing, whatever their rates.
    let mut off = errors(json!({"503": 1.0}));
    off["errors"]["enabled"] = json!(false);
    put_config(&app, &proxy, &off).await;
    send(&proxy, &call).await.assert_upstream("errors disabled");
    assert_eq!(mock.requests().len(), 2);

    put_config(&app, &proxy, &defaults()).await;
    send(&proxy, &call)
        .await
        .assert_upstream("back to the defaults");
    assert_eq!(mock.requests().len(), 3, "the request reached the upstream");
    app.shutdown().await;
    mock.stop().await;
}

// --- injected errors ---------------------------------------------------------------------------

#[actix_web::test]
async fn an_error_rate_is_met_statistically() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    put_config(&app, &proxy, &errors(json!({"429": 0.3}))).await;

    let seen = statuses(&proxy, 400).await;
    let limited = share(&seen, 429);
    assert!(
        (limited - 0.3).abs() <= 0.08,
        "429 share {limited} over 400 requests, expected 0.3 ± 0.08"
    );
    assert!(seen.iter().all(|s| matches!(s, 200 | 429)), "{seen:?}");
    let passed = seen.iter().filter(|s| **s == 200).count();
    assert_eq!(
        mock.requests().len(),
        passed,
        "only the clean requests went upstream"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn an_error_mix_is_met_statistically() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "anthropic", &mock, false).await;
    put_config(&app, &proxy, &errors(json!({"429": 0.2, "500": 0.05}))).await;

    let seen = statuses(&proxy, 600).await;
    let (limited, failed, ok) = (share(&seen, 429), share(&seen, 500), share(&seen, 200));
    assert!(
        (limited - 0.2).abs() <= 0.07,
        "429 share {limited}, expected 0.2 ± 0.07"
    );
    assert!(
        (failed - 0.05).abs() <= 0.04,
        "500 share {failed}, expected 0.05 ± 0.04"
    );
    assert!(
        (ok - 0.75).abs() <= 0.08,
        "200 share {ok}, expected 0.75 ± 0.08"
    );
    assert!(
        (limited + failed + ok - 1.0).abs() < 1e-9,
        "nothing else: {seen:?}"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn every_injectable_status_is_injected_with_the_marker_header() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    for status in INJECTABLE {
        put_config(&app, &proxy, &errors(json!({ status.to_string(): 1.0 }))).await;
        let reply = send(&proxy, &Call::chat("openai")).await;
        reply.assert_injected(status, "error_injection", &format!("rate 1.0 of {status}"));
        let body = reply.json();
        assert!(body["error"]["message"].is_string(), "{status}: {body}");
    }
    assert!(
        mock.requests().is_empty(),
        "no injected error reached the upstream"
    );
    app.shutdown().await;
    mock.stop().await;
}

fn assert_json_content(reply: &Answer, what: &str) {
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.contains("json"),
        "{what}: content-type {content_type:?}"
    );
}

/// OpenAI, DeepSeek and Azure OpenAI: `{"error":{"message","type","param","code"}}`.
fn assert_openai_shape(reply: &Answer, what: &str) -> Value {
    let body = reply.json();
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert!(error["type"].is_string(), "{what}: {body}");
    for key in ["param", "code"] {
        assert!(
            error.get(key).is_some(),
            "{what}: error.{key} present: {body}"
        );
    }
    body
}

#[actix_web::test]
async fn injected_errors_have_each_providers_real_shape() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(6)).await;
    let retry = 3;
    let with = |status: u16| {
        config(
            json!({"errors": {"enabled": true, "rates": { status.to_string(): 1.0 }, "retry_after_seconds": retry}}),
        )
    };

    for provider in ["openai", "deepseek", "azure_openai"] {
        let proxy = proxy(&app, provider, &mock, false).await;
        let call = Call::chat(provider);
        put_config(&app, &proxy, &with(429)).await;
        let reply = send(&proxy, &call).await;
        let what = format!("{provider} 429");
        reply.assert_injected(429, "error_injection", &what);
        assert_json_content(&reply, &what);
        if provider == "azure_openai" {
            // Azure's rate limiter answers in its own short shape, not OpenAI's, and names the
            // wait in milliseconds too.
            let body = reply.json();
            assert_eq!(body["error"]["code"], "429", "{what}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("retry after {retry} seconds")),
                "{what}: {body}"
            );
            assert_eq!(
                reply.header("retry-after-ms"),
                Some(format!("{}", retry * 1000).as_str()),
                "{what}"
            );
        } else {
            let body = assert_openai_shape(&reply, &what);
            assert_eq!(body["error"]["type"], "requests", "{what}: {body}");
            assert_eq!(
                body["error"]["code"], "rate_limit_exceeded",
                "{what}: {body}"
            );
        }
        assert_eq!(reply.retry_after(), retry, "{what}");
        assert!(
            reply.header("x-ratelimit-limit-requests").is_some(),
            "{what}: {:?}",
            reply.headers
        );
        assert_eq!(
            reply.header("x-ratelimit-remaining-requests"),
            Some("0"),
            "{what}"
        );
        assert!(
            reply.header("x-ratelimit-reset-requests").is_some(),
            "{what}: {:?}",
            reply.headers
        );

        for status in [500, 503] {
            put_config(&app, &proxy, &with(status)).await;
            let reply = send(&proxy, &call).await;
            let what = format!("{provider} {status}");
            reply.assert_injected(status, "error_injection", &what);
            assert_openai_shape(&reply, &what);
            if status == 503 {
                assert_eq!(reply.retry_after(), retry, "{what}");
            }
        }
    }

    let anthropic = proxy(&app, "anthropic", &mock, false).await;
    for (status, kind) in [
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (500, "api_error"),
    ] {
        put_config(&app, &anthropic, &with(status)).await;
        let reply = send(&anthropic, &Call::chat("anthropic")).await;
        let what = format!("anthropic {status}");
        reply.assert_injected(status, "error_injection", &what);
        assert_json_content(&reply, &what);
        let body = reply.json();
        assert_eq!(body["type"], "error", "{what}: {body}");
        assert_eq!(body["error"]["type"], kind, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        if matches!(status, 429 | 529) {
            assert_eq!(reply.retry_after(), retry, "{what}");
        }
        if status == 429 {
            for header in [
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ] {
                assert!(
                    reply.header(header).is_some(),
                    "{what}: {header}: {:?}",
                    reply.headers
                );
            }
        }
    }

    let bedrock = proxy(&app, "bedrock", &mock, false).await;
    for (status, kind) in [
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
    ] {
        put_config(&app, &bedrock, &with(status)).await;
        let reply = send(&bedrock, &Call::chat("bedrock")).await;
        let what = format!("bedrock {status}");
        reply.assert_injected(status, "error_injection", &what);
        let error_type = reply.header("x-amzn-errortype").unwrap_or_default();
        assert!(
            error_type.starts_with(kind),
            "{what}: x-amzn-ErrorType {error_type:?}"
        );
        let body = reply.json();
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        if matches!(status, 429 | 503) {
            assert_eq!(reply.retry_after(), retry, "{what}");
        }
    }

    let vertex = proxy(&app, "vertex_ai", &mock, false).await;
    for (status, kind) in [
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ] {
        put_config(&app, &vertex, &with(status)).await;
        let reply = send(&vertex, &Call::chat("vertex_ai")).await;
        let what = format!("vertex_ai {status}");
        reply.assert_injected(status, "error_injection", &what);
        assert_json_content(&reply, &what);
        let body = reply.json();
        assert_eq!(body["error"]["code"], status, "{what}: {body}");
        assert_eq!(body["error"]["status"], kind, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        if matches!(status, 429 | 503) {
            assert_eq!(reply.retry_after(), retry, "{what}");
        }
    }
    assert!(
        mock.requests().is_empty(),
        "no injected error reached the upstream"
    );
    app.shutdown().await;
    mock.stop().await;
}

/// What each provider answers for each injectable status, after its own documentation (the
/// table on each provider's `injected_error` in `src/providers/`): the field or header that
/// names the error, per status in [`INJECTABLE`] order.
const ERROR_TABLE: [(&str, [&str; 11]); 6] = [
    (
        "openai",
        [
            "invalid_request_error",
            "invalid_request_error",
            "request_forbidden",
            "invalid_request_error",
            "server_error",
            "requests",
            "server_error",
            "server_error",
            "service_unavailable_error",
            "server_error",
            "server_error",
        ],
    ),
    (
        "azure_openai",
        [
            "invalid_request_error",
            "401",
            "request_forbidden",
            "DeploymentNotFound",
            "server_error",
            "429",
            "server_error",
            "server_error",
            "service_unavailable_error",
            "server_error",
            "server_error",
        ],
    ),
    (
        "deepseek",
        [
            "invalid_request_error",
            "authentication_error",
            "invalid_request_error",
            "invalid_request_error",
            "invalid_request_error",
            "requests",
            "server_error",
            "server_error",
            "server_error",
            "server_error",
            "server_error",
        ],
    ),
    (
        "anthropic",
        [
            "invalid_request_error",
            "authentication_error",
            "permission_error",
            "not_found_error",
            "invalid_request_error",
            "rate_limit_error",
            "api_error",
            "api_error",
            "api_error",
            "timeout_error",
            "overloaded_error",
        ],
    ),
    (
        "bedrock",
        [
            "ValidationException",
            "UnrecognizedClientException",
            "AccessDeniedException",
            "ResourceNotFoundException",
            "ModelTimeoutException",
            "ThrottlingException",
            "InternalServerException",
            "InternalServerException",
            "ServiceUnavailableException",
            "ModelTimeoutException",
            "ServiceUnavailableException",
        ],
    ),
    (
        "vertex_ai",
        [
            "INVALID_ARGUMENT",
            "UNAUTHENTICATED",
            "PERMISSION_DENIED",
            "NOT_FOUND",
            "DEADLINE_EXCEEDED",
            "RESOURCE_EXHAUSTED",
            "INTERNAL",
            "UNAVAILABLE",
            "UNAVAILABLE",
            "DEADLINE_EXCEEDED",
            "UNAVAILABLE",
        ],
    ),
];

/// The name the provider gives the error: the header or body field its SDK reads.
fn error_name(provider: &str, reply: &Answer) -> String {
    let body = reply.json();
    let name = match provider {
        // botocore and the AWS JS SDK read the code from the header, before any `:`.
        "bedrock" => reply
            .header("x-amzn-errortype")
            .map(|t| t.split(':').next().unwrap_or(t).to_owned()),
        "anthropic" => body["error"]["type"].as_str().map(str::to_owned),
        "vertex_ai" => body["error"]["status"].as_str().map(str::to_owned),
        // Azure's own front end sets only `code`; errors in OpenAI's shape have a `type`.
        "azure_openai" if body["error"].get("type").is_none() => {
            body["error"]["code"].as_str().map(str::to_owned)
        }
        _ => body["error"]["type"].as_str().map(str::to_owned),
    };
    name.unwrap_or_else(|| panic!("{provider}: no error name in {body} / {:?}", reply.headers))
}

#[actix_web::test]
async fn every_injectable_status_is_named_as_the_provider_documents_it() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(6)).await;
    let retry = 4;
    for (provider, names) in ERROR_TABLE {
        let proxy = proxy(&app, provider, &mock, false).await;
        let call = Call::chat(provider);
        for (status, expected) in INJECTABLE.into_iter().zip(names) {
            put_config(
                &app,
                &proxy,
                &config(json!({"errors": {
                    "enabled": true, "rates": { status.to_string(): 1.0 }, "retry_after_seconds": retry
                }})),
            )
            .await;
            let reply = send(&proxy, &call).await;
            let what = format!("{provider} {status}");
            reply.assert_injected(status, "error_injection", &what);
            assert_json_content(&reply, &what);
            assert_eq!(
                error_name(provider, &reply),
                expected,
                "{what}: {}",
                reply.text()
            );
            let retryable = matches!(status, 429 | 503 | 529);
            assert_eq!(
                reply.header("retry-after").is_some(),
                retryable,
                "{what}: retry-after only where a retry is due ({:?})",
                reply.headers
            );
            let request_id = match provider {
                "openai" | "azure_openai" => reply.header("x-request-id"),
                "anthropic" => reply.header("request-id"),
                "bedrock" => reply.header("x-amzn-requestid"),
                _ => Some("none sent"),
            };
            assert!(
                request_id.is_some_and(|id| !id.is_empty()),
                "{what}: the SDK's request id ({:?})",
                reply.headers
            );
        }
    }
    assert!(
        mock.requests().is_empty(),
        "no injected error reached the upstream"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn injected_errors_carry_the_details_sdks_read() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(4)).await;
    let retry = 5;
    let with = |status: u16| {
        config(json!({"errors": {
            "enabled": true, "rates": { status.to_string(): 1.0 }, "retry_after_seconds": retry
        }}))
    };

    // OpenAI: the code beside the type, and the SDK's request id.
    let openai = proxy(&app, "openai", &mock, false).await;
    for (status, code) in [
        (401, json!("invalid_api_key")),
        (403, json!("unsupported_country_region_territory")),
        (404, json!("model_not_found")),
        (503, json!("server_is_overloaded")),
        (500, Value::Null),
    ] {
        put_config(&app, &openai, &with(status)).await;
        let reply = send(&openai, &Call::chat("openai")).await;
        let body = assert_openai_shape(&reply, &format!("openai {status}"));
        assert_eq!(body["error"]["code"], code, "openai {status}: {body}");
    }
    let id = send(&openai, &Call::chat("openai")).await;
    let id = id.header("x-request-id").unwrap_or_default();
    assert!(
        id.starts_with("req_") && id.len() == 36,
        "OpenAI request ids are req_ and 32 hex digits: {id:?}"
    );

    // Anthropic: one request id in header and body; the reset as a time.
    let anthropic = proxy(&app, "anthropic", &mock, false).await;
    put_config(&app, &anthropic, &with(429)).await;
    let before = chrono::Utc::now();
    let reply = send(&anthropic, &Call::chat("anthropic")).await;
    let body = reply.json();
    let id = reply.header("request-id").unwrap_or_default();
    assert!(id.starts_with("req_"), "anthropic request-id {id:?}");
    assert_eq!(body["request_id"], id, "{body}");
    assert_eq!(
        reply.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    let reset = reply
        .header("anthropic-ratelimit-requests-reset")
        .unwrap_or_default();
    let reset = chrono::DateTime::parse_from_rfc3339(reset)
        .unwrap_or_else(|e| panic!("anthropic reset {reset:?} is not RFC 3339: {e}"));
    let away = reset.signed_duration_since(before).num_seconds();
    assert!(
        (retry as i64 - 1..=retry as i64 + 2).contains(&away),
        "reset {reset} is {away} s away, not {retry}"
    );

    // Bedrock: the 404 of the issue, with the request id botocore reports.
    let bedrock = proxy(&app, "bedrock", &mock, false).await;
    put_config(&app, &bedrock, &with(404)).await;
    let reply = send(&bedrock, &Call::chat("bedrock")).await;
    assert_eq!(
        reply.header("x-amzn-errortype"),
        Some("ResourceNotFoundException"),
        "{:?}",
        reply.headers
    );
    let id = reply.header("x-amzn-requestid").unwrap_or_default();
    assert_eq!(id.len(), 36, "a UUID: {id:?}");
    assert!(reply.json()["message"].is_string(), "{}", reply.text());

    // Google: the wait in RetryInfo, the way Google says it.
    let vertex = proxy(&app, "vertex_ai", &mock, false).await;
    put_config(&app, &vertex, &with(429)).await;
    let reply = send(&vertex, &Call::chat("vertex_ai")).await;
    let body = reply.json();
    assert_eq!(
        body["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.RetryInfo",
        "{body}"
    );
    assert_eq!(
        body["error"]["details"][0]["retryDelay"],
        format!("{retry}s"),
        "{body}"
    );
    assert!(mock.requests().is_empty());
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn real_upstream_errors_are_not_marked_injected() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    // Failure simulation switched on, but at rate 0: every answer is the upstream's own.
    put_config(&app, &proxy, &errors(json!({"429": 0.0, "500": 0.0}))).await;
    for status in ["429", "500", "503"] {
        let reply = send(
            &proxy,
            &Call::chat("openai").header("x-mock-status", status),
        )
        .await;
        assert_eq!(reply.status.as_str(), status, "{}", reply.text());
        assert_eq!(reply.injected(), None, "a real {status} is not injected");
    }
    assert_eq!(mock.requests().len(), 3);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn injected_failures_are_never_cached_and_never_reach_the_upstream() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, true).await;
    let call = Call::chat("openai");

    put_config(&app, &proxy, &errors(json!({"500": 1.0}))).await;
    send(&proxy, &call)
        .await
        .assert_injected(500, "error_injection", "first");
    put_config(&app, &proxy, &config(json!({"timeout": {"enabled": true, "rate": 1.0, "mode": "gateway_timeout", "seconds": 0.0}}))).await;
    send(&proxy, &call)
        .await
        .assert_injected(504, "timeout", "second");
    assert!(mock.requests().is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cache_entries(&app, &proxy).await,
        0,
        "nothing injected was stored"
    );

    put_config(&app, &proxy, &defaults()).await;
    let clean = send(&proxy, &call).await;
    clean.assert_upstream("the clean request");
    assert_eq!(
        clean.header("x-cache"),
        Some("MISS"),
        "not a replay of an injected failure"
    );
    assert_eq!(
        mock.requests().len(),
        1,
        "the clean request reached the upstream"
    );
    let deadline = Instant::now() + WRITE_WAIT;
    while cache_entries(&app, &proxy).await < 1 {
        assert!(
            Instant::now() < deadline,
            "the clean answer was never cached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A cached answer can still get an injected error: errors come before the cache lookup.
    put_config(&app, &proxy, &errors(json!({"429": 1.0}))).await;
    let injected = send(&proxy, &call).await;
    injected.assert_injected(429, "error_injection", "over a cached answer");
    assert_ne!(injected.body, clean.body);

    put_config(&app, &proxy, &defaults()).await;
    let hit = send(&proxy, &call).await;
    hit.assert_upstream("the cached answer");
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(
        hit.body, clean.body,
        "the clean answer, not the injected one"
    );
    assert_eq!(mock.requests().len(), 1);
    assert_eq!(cache_entries(&app, &proxy).await, 1);
    app.shutdown().await;
    mock.stop().await;
}

// --- seeds -------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_seed_makes_the_outcomes_reproducible() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    let seeded = |seed: Value| {
        config(json!({
            "errors": {"enabled": true, "rates": {"429": 0.3, "500": 0.2}},
            "seed": seed
        }))
    };

    put_config(&app, &proxy, &seeded(json!(42))).await;
    let first = statuses(&proxy, 40).await;
    // The same config saved again, unchanged: the sequence starts over.
    put_config(&app, &proxy, &seeded(json!(42))).await;
    let second = statuses(&proxy, 40).await;
    assert_eq!(first, second, "the same seed gives the same outcomes");
    for status in [200, 429, 500] {
        assert!(first.contains(&status), "a mixed sequence: {first:?}");
    }

    put_config(&app, &proxy, &seeded(json!(43))).await;
    let other = statuses(&proxy, 40).await;
    assert_ne!(first, other, "another seed, other outcomes");

    put_config(&app, &proxy, &seeded(json!(42))).await;
    let back = statuses(&proxy, 40).await;
    assert_eq!(first, back, "seed 42 again");

    put_config(&app, &proxy, &seeded(Value::Null)).await;
    let random_one = statuses(&proxy, 40).await;
    put_config(&app, &proxy, &seeded(Value::Null)).await;
    let random_two = statuses(&proxy, 40).await;
    assert_ne!(
        random_one, random_two,
        "without a seed the outcomes are random"
    );
    app.shutdown().await;
    mock.stop().await;
}

// --- rate limit --------------------------------------------------------------------------------

fn rpm(limit: u32) -> Value {
    config(json!({"rate_limit": {"enabled": true, "requests_per_minute": limit}}))
}

fn assert_rate_limited(reply: &Answer, what: &str) {
    reply.assert_injected(429, "rate_limited", what);
    let retry = reply.retry_after();
    assert!((1..=60).contains(&retry), "{what}: retry-after {retry}");
    assert!(
        reply.json()["error"]["message"].is_string(),
        "{what}: {}",
        reply.text()
    );
}

#[actix_web::test]
async fn a_rate_limit_lets_exactly_rpm_through_a_burst() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(2)).await;

    // One after the other, identical requests through a cache: the hits count too, once each.
    let sequential = proxy(&app, "openai", &mock, true).await;
    put_config(&app, &sequential, &rpm(10)).await;
    let call = Call::chat("openai");
    let mut replies = Vec::new();
    for _ in 0..15 {
        replies.push(send(&sequential, &call).await);
    }
    let passed: Vec<&Answer> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(
        passed.len(),
        10,
        "exactly rpm pass: {:?}",
        replies
            .iter()
            .map(|r| r.status.as_u16())
            .collect::<Vec<_>>()
    );
    for reply in &replies[10..] {
        assert_rate_limited(reply, "beyond the limit");
    }
    assert!(
        replies[..10].iter().all(|r| r.status == StatusCode::OK),
        "the first ten pass"
    );

    // All at once, on another proxy with its own limit.
    let concurrent = proxy(&app, "anthropic", &mock, false).await;
    put_config(&app, &concurrent, &rpm(10)).await;
    let before = mock.requests().len();
    let call = Call::chat("anthropic");
    let replies = futures_util::future::join_all((0..15).map(|_| send(&concurrent, &call))).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 10, "exactly rpm of a concurrent burst pass");
    for reply in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_rate_limited(reply, "concurrent, beyond the limit");
        assert_eq!(
            reply.json()["type"],
            "error",
            "anthropic-shaped: {}",
            reply.text()
        );
    }
    assert_eq!(
        mock.requests().len() - before,
        10,
        "only the admitted reached the upstream"
    );

    // The sequential proxy is still limited: the burst's admissions are within the minute.
    assert_rate_limited(
        &send(&sequential, &Call::chat("openai")).await,
        "still within the minute",
    );
    app.shutdown().await;
    mock.stop().await;
}

/// About 65 s: a fixed window (or a refilling token bucket) would let requests through before the
/// first admissions are a minute old.
#[actix_web::test]
async fn the_rate_limit_window_slides() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    put_config(&app, &proxy, &rpm(5)).await;
    let call = Call::chat("openai");

    let started = Instant::now();
    for i in 0..5 {
        send(&proxy, &call)
            .await
            .assert_upstream(&format!("admission {i}"));
    }
    let admitted = started.elapsed();
    assert_rate_limited(&send(&proxy, &call).await, "the sixth at once");
    // Probes every 5 s up to 55 s after the burst: all still within the burst's minute.
    for probe in 1..=11u64 {
        let at = Duration::from_secs(probe * 5);
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        if started.elapsed() >= Duration::from_secs(59) {
            break;
        }
        assert_rate_limited(
            &send(&proxy, &call).await,
            &format!("{:?} after the burst", started.elapsed()),
        );
    }
    // Once the admissions are more than a minute old, requests pass again.
    tokio::time::sleep(
        (admitted + Duration::from_millis(61_500)).saturating_sub(started.elapsed()),
    )
    .await;
    send(&proxy, &call)
        .await
        .assert_upstream("a minute after the burst");
    assert_eq!(mock.requests().len(), 6);
    app.shutdown().await;
    mock.stop().await;
}

// --- IP filter ---------------------------------------------------------------------------------

/// Sends one request (with this `X-Forwarded-For`, if any) under this `ip_filter` section and
/// checks whether it was blocked.
async fn ip_case(
    app: &TestApp,
    mock: &MockUpstream,
    proxy: &Proxy,
    filter: Value,
    forwarded_for: Option<&str>,
    blocked: bool,
) {
    let mut section = json!({"enabled": true});
    for (k, v) in filter.as_object().expect("object") {
        section[k] = v.clone();
    }
    put_config(app, proxy, &config(json!({ "ip_filter": section }))).await;
    let mut call = Call::chat(proxy.provider);
    if let Some(xff) = forwarded_for {
        call = call.header("X-Forwarded-For", xff);
    }
    let before = mock.requests().len();
    let reply = send(proxy, &call).await;
    let what = format!("ip_filter {filter}, X-Forwarded-For {forwarded_for:?}");
    if blocked {
        reply.assert_injected(403, "ip_blocked", &what);
        assert!(
            reply.json()["error"]["message"].is_string(),
            "{what}: {}",
            reply.text()
        );
        assert_eq!(
            mock.requests().len(),
            before,
            "{what}: blocked before the upstream"
        );
    } else {
        reply.assert_upstream(&what);
        assert_eq!(mock.requests().len(), before + 1, "{what}: went upstream");
    }
}

#[actix_web::test]
async fn the_ip_filter_matches_exact_addresses() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let p = proxy(&app, "openai", &mock, false).await;
    // The client is the TCP peer, 127.0.0.1.
    ip_case(&app, &mock, &p, json!({"block": ["127.0.0.1"]}), None, true).await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["127.0.0.2"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["127.0.0.1"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["10.0.0.1", "127.0.0.1"]}),
        None,
        false,
    )
    .await;
    ip_case(&app, &mock, &p, json!({"allow": ["10.0.0.1"]}), None, true).await;
    // A block wins over an allow of the same address.
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["127.0.0.1"], "block": ["127.0.0.1"]}),
        None,
        true,
    )
    .await;
    // Empty lists block nothing.
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": [], "block": []}),
        None,
        false,
    )
    .await;
    // A disabled filter blocks nothing.
    put_config(
        &app,
        &p,
        &config(json!({"ip_filter": {"enabled": false, "block": ["127.0.0.1"]}})),
    )
    .await;
    send(&p, &Call::chat("openai"))
        .await
        .assert_upstream("a disabled filter");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_ip_filter_matches_cidr_ranges() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let p = proxy(&app, "deepseek", &mock, false).await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["127.0.0.0/8"]}),
        None,
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["127.0.0.0/31"]}),
        None,
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["127.0.0.1/32"]}),
        None,
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["10.0.0.0/8"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["127.0.1.0/24"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["127.0.0.0/24"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["10.0.0.0/8", "192.168.0.0/16"]}),
        None,
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["0.0.0.0/0"]}),
        None,
        false,
    )
    .await;
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_ip_filter_matches_wildcard_octets() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let p = proxy(&app, "anthropic", &mock, false).await;
    ip_case(&app, &mock, &p, json!({"block": ["127.*.*.*"]}), None, true).await;
    ip_case(&app, &mock, &p, json!({"block": ["127.0.0.*"]}), None, true).await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["127.0.1.*"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["192.168.*.*"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["127.0.*.*"]}),
        None,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"allow": ["192.168.*.*"]}),
        None,
        true,
    )
    .await;
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_ip_filter_matches_ipv6_clients_named_by_a_trusted_proxy() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let p = proxy(&app, "openai", &mock, false).await;
    let trusted = json!(["127.0.0.1"]);
    let case = |list: &str, entries: Value| {
        let mut filter = json!({"trusted_proxies": trusted.clone()});
        filter[list] = entries;
        filter
    };
    let client = Some("2001:db8::5");
    ip_case(
        &app,
        &mock,
        &p,
        case("block", json!(["2001:db8::5"])),
        client,
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        case("block", json!(["2001:db8::/32"])),
        client,
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        case("block", json!(["2001:db9::/32"])),
        client,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        case("block", json!(["::1/128"])),
        client,
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        case("block", json!(["::1/128"])),
        Some("::1"),
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        case("allow", json!(["2001:db8::/48"])),
        client,
        false,
    )
    .await;
    ip_case(&app, &mock, &p, case("allow", json!(["::1"])), client, true).await;
    ip_case(
        &app,
        &mock,
        &p,
        case("allow", json!(["10.0.0.0/8"])),
        client,
        true,
    )
    .await;
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let p = proxy(&app, "openai", &mock, false).await;
    let block_ten = |trusted: Value| json!({"block": ["10.0.0.0/8"], "trusted_proxies": trusted});
    let allow_ten = |trusted: Value| json!({"allow": ["10.0.0.0/8"], "trusted_proxies": trusted});

    // The peer is not trusted: the header is the client's say-so and is ignored.
    ip_case(
        &app,
        &mock,
        &p,
        block_ten(json!([])),
        Some("10.1.2.3"),
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        block_ten(json!(["192.0.2.1"])),
        Some("10.1.2.3"),
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        allow_ten(json!([])),
        Some("10.1.2.3"),
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        json!({"block": ["127.0.0.1"]}),
        Some("10.1.2.3"),
        true,
    )
    .await;

    // The peer is trusted: the forwarded client counts.
    ip_case(
        &app,
        &mock,
        &p,
        block_ten(json!(["127.0.0.1"])),
        Some("10.1.2.3"),
        true,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        allow_ten(json!(["127.0.0.1"])),
        Some("10.1.2.3"),
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        allow_ten(json!(["127.0.0.1"])),
        Some("192.0.2.7"),
        true,
    )
    .await;
    // The rightmost address that is not a trusted proxy is the client...
    ip_case(
        &app,
        &mock,
        &p,
        block_ten(json!(["127.0.0.1"])),
        Some("10.1.2.3, 127.0.0.1"),
        true,
    )
    .await;
    // ... so a client cannot hide behind an address it writes further left.
    ip_case(
        &app,
        &mock,
        &p,
        block_ten(json!(["127.0.0.1"])),
        Some("10.1.2.3, 192.0.2.7"),
        false,
    )
    .await;
    ip_case(
        &app,
        &mock,
        &p,
        allow_ten(json!(["127.0.0.1"])),
        Some("10.1.2.3, 192.0.2.7"),
        true,
    )
    .await;
    app.shutdown().await;
    mock.stop().await;
}

// --- timeouts ----------------------------------------------------------------------------------

fn timeout(mode: &str, seconds: f64) -> Value {
    config(json!({"timeout": {"enabled": true, "rate": 1.0, "mode": mode, "seconds": seconds}}))
}

#[actix_web::test]
async fn a_delay_timeout_waits_then_answers_normally() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    put_config(&app, &proxy, &timeout("delay", 0.6)).await;
    let reply = send(&proxy, &Call::chat("openai")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        reply.elapsed >= Duration::from_millis(600),
        "waited only {:?}",
        reply.elapsed
    );
    assert!(
        reply.elapsed < Duration::from_secs(10),
        "{:?}",
        reply.elapsed
    );
    assert_eq!(reply.json()["n"], 1, "the upstream's answer");
    assert_eq!(mock.requests().len(), 1);

    // At rate 0 nothing waits (a generous bound: the wait would be 3 s).
    put_config(
        &app,
        &proxy,
        &config(
            json!({"timeout": {"enabled": true, "rate": 0.0, "mode": "delay", "seconds": 3.0}}),
        ),
    )
    .await;
    let reply = send(&proxy, &Call::chat("openai")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.elapsed < Duration::from_millis(2900),
        "rate 0 waited {:?}",
        reply.elapsed
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_gateway_timeout_waits_then_answers_504() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(2)).await;
    let openai = proxy(&app, "openai", &mock, false).await;
    put_config(&app, &openai, &timeout("gateway_timeout", 0.5)).await;
    let reply = send(&openai, &Call::chat("openai")).await;
    reply.assert_injected(504, "timeout", "openai gateway timeout");
    assert!(
        reply.elapsed >= Duration::from_millis(500),
        "answered after {:?}",
        reply.elapsed
    );
    assert!(
        reply.elapsed < Duration::from_secs(10),
        "{:?}",
        reply.elapsed
    );
    assert_openai_shape(&reply, "openai 504");

    let anthropic = proxy(&app, "anthropic", &mock, false).await;
    put_config(&app, &anthropic, &timeout("gateway_timeout", 0.3)).await;
    let reply = send(&anthropic, &Call::chat("anthropic")).await;
    reply.assert_injected(504, "timeout", "anthropic gateway timeout");
    assert!(
        reply.elapsed >= Duration::from_millis(300),
        "answered after {:?}",
        reply.elapsed
    );
    let body = reply.json();
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(
        mock.requests().is_empty(),
        "a gateway timeout never reaches the upstream"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_timeout_rate_is_met_statistically() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    put_config(&app, &proxy, &config(json!({"timeout": {"enabled": true, "rate": 0.5, "mode": "gateway_timeout", "seconds": 0.0}}))).await;
    let seen = statuses(&proxy, 200).await;
    let timed_out = share(&seen, 504);
    assert!(
        (timed_out - 0.5).abs() <= 0.12,
        "504 share {timed_out}, expected 0.5 ± 0.12"
    );
    assert!(seen.iter().all(|s| matches!(s, 200 | 504)), "{seen:?}");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_hang_ends_when_the_client_gives_up() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    // `seconds` is irrelevant to a hang: it never answers.
    put_config(&app, &proxy, &timeout("hang", 0.3)).await;

    let stream = open_request(&proxy);
    wait_for_in_flight(&app, &proxy, 1, Duration::from_secs(5)).await;
    let (stream, answer) = read_for(stream, Duration::from_millis(1500)).await;
    assert!(answer.is_none(), "a hang never answers: {answer:?}");
    assert_eq!(in_flight(&app, &proxy).await, 1, "still hanging");
    drop(stream);
    wait_for_in_flight(&app, &proxy, 0, Duration::from_secs(5)).await;
    assert!(
        mock.requests().is_empty(),
        "a hang never reaches the upstream"
    );

    // The same through an HTTP client with a short timeout.
    let gave_up = awc::Client::builder()
        .timeout(Duration::from_millis(700))
        .finish()
        .post(format!("{}/v1/chat/completions", proxy.base))
        .send_body(CHAT)
        .await;
    assert!(
        gave_up.is_err(),
        "the client timed out: {:?}",
        gave_up.map(|r| r.status())
    );
    wait_for_in_flight(&app, &proxy, 0, Duration::from_secs(5)).await;

    put_config(&app, &proxy, &defaults()).await;
    send(&proxy, &Call::chat("openai"))
        .await
        .assert_upstream("after the hangs");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_hang_ends_when_the_proxy_stops() {
    let mock = MockUpstream::start().await;
    // A graceful stop that waited for the hang would take the whole stop timeout.
    let mut app = TestApp::start_configured(port_block_of(1), |args| args.stop_timeout = 30).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    let hang = timeout("hang", 1.0);
    put_config(&app, &proxy, &hang).await;

    let stream = open_request(&proxy);
    wait_for_in_flight(&app, &proxy, 1, Duration::from_secs(5)).await;
    let started = Instant::now();
    let (status, stopped) = app
        .post_empty(&format!("/api/proxies/{}/stop", proxy.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the stop waited {:?} for the hang",
        started.elapsed()
    );
    let (_stream, ended) = read_for(stream, Duration::from_secs(5)).await;
    assert!(ended.is_some(), "the hung connection ended with the proxy");
    assert!(mock.requests().is_empty());

    let (_, started_again) = app
        .post_empty(&format!("/api/proxies/{}/start", proxy.id))
        .await;
    assert_eq!(started_again["status"], "running", "{started_again}");
    assert_same(
        &get_config(&app, &proxy).await,
        &hang,
        "the config is kept over a stop",
    );
    assert_eq!(in_flight(&app, &proxy).await, 0);
    put_config(&app, &proxy, &defaults()).await;
    send(&proxy, &Call::chat("openai"))
        .await
        .assert_upstream("after stop and start");
    assert_eq!(mock.requests().len(), 1);
    app.shutdown().await;
    mock.stop().await;
}

// --- response delay ----------------------------------------------------------------------------

fn response_delay(min_ms: u64, max_ms: u64, cache_hits_only: bool) -> Value {
    config(json!({"response_delay": {
        "enabled": true, "min_ms": min_ms, "max_ms": max_ms, "cache_hits_only": cache_hits_only
    }}))
}

async fn wait_for_entries(app: &TestApp, proxy: &Proxy, count: u64) {
    let deadline = Instant::now() + WRITE_WAIT;
    while cache_entries(app, proxy).await < count {
        assert!(
            Instant::now() < deadline,
            "the cache never held {count} entries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_response_delay_applies_to_cache_hits_only_by_default() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, true).await;
    // min = max: the delay is known, so a delay applied twice would show.
    put_config(&app, &proxy, &response_delay(1500, 1500, true)).await;
    let call = Call::chat("openai");

    let miss = send(&proxy, &call).await;
    miss.assert_upstream("the miss");
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert!(
        miss.elapsed < Duration::from_millis(1400),
        "a miss is not delayed: {:?}",
        miss.elapsed
    );
    wait_for_entries(&app, &proxy, 1).await;

    let hit = send(&proxy, &call).await;
    hit.assert_upstream("the hit");
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert!(
        hit.elapsed >= Duration::from_millis(1500),
        "a hit is delayed: {:?}",
        hit.elapsed
    );
    assert!(
        hit.elapsed < Duration::from_millis(2900),
        "the delay ran once, not twice: {:?}",
        hit.elapsed
    );
    assert_eq!(mock.requests().len(), 1);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_response_delay_applies_to_every_request_when_not_hits_only() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "anthropic", &mock, false).await;
    put_config(&app, &proxy, &response_delay(200, 1200, false)).await;

    let mut delays = Vec::new();
    for _ in 0..8 {
        let reply = send(&proxy, &Call::chat("anthropic")).await;
        reply.assert_upstream("a delayed answer");
        assert!(
            reply.elapsed >= Duration::from_millis(200),
            "below min_ms: {:?}",
            reply.elapsed
        );
        assert!(
            reply.elapsed < Duration::from_secs(6),
            "{:?}",
            reply.elapsed
        );
        delays.push(reply.elapsed);
    }
    let (shortest, longest) = (
        delays.iter().min().copied().unwrap_or_default(),
        delays.iter().max().copied().unwrap_or_default(),
    );
    assert!(
        longest - shortest > Duration::from_millis(100),
        "delays are drawn from [min_ms, max_ms], not fixed: {delays:?}"
    );
    assert_eq!(mock.requests().len(), 8, "misses went upstream");
    app.shutdown().await;
    mock.stop().await;
}

// --- pipeline order ----------------------------------------------------------------------------

#[actix_web::test]
async fn pipeline_stages_run_in_order() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_with_ports(port_block_of(1)).await;
    let proxy = proxy(&app, "openai", &mock, false).await;
    let call = Call::chat("openai");
    let all_errors = json!({"enabled": true, "rates": {"500": 1.0}});

    // The IP filter comes first.
    put_config(
        &app,
        &proxy,
        &config(json!({
            "ip_filter": {"enabled": true, "block": ["127.0.0.1"]},
            "rate_limit": {"enabled": true, "requests_per_minute": 1},
            "timeout": {"enabled": true, "rate": 1.0, "mode": "gateway_timeout", "seconds": 0.0},
            "errors": all_errors.clone(),
        })),
    )
    .await;
    for _ in 0..3 {
        send(&proxy, &call)
            .await
            .assert_injected(403, "ip_blocked", "blocked before all else");
    }

    // Then the rate limit (blocked requests did not count against it).
    put_config(
        &app,
        &proxy,
        &config(json!({
            "rate_limit": {"enabled": true, "requests_per_minute": 2},
            "timeout": {"enabled": true, "rate": 1.0, "mode": "gateway_timeout", "seconds": 0.0},
            "errors": all_errors.clone(),
        })),
    )
    .await;
    send(&proxy, &call)
        .await
        .assert_injected(504, "timeout", "admitted, then timed out");
    send(&proxy, &call)
        .await
        .assert_injected(504, "timeout", "admitted, then timed out");
    assert_rate_limited(&send(&proxy, &call).await, "the third within the minute");

    // Then the timeout, then the injected error.
    put_config(
        &app,
        &proxy,
        &config(json!({
            "timeout": {"enabled": true, "rate": 1.0, "mode": "gateway_timeout", "seconds": 0.0},
            "errors": all_errors.clone(),
        })),
    )
    .await;
    send(&proxy, &call)
        .await
        .assert_injected(504, "timeout", "timeout before errors");
    put_config(
        &app,
        &proxy,
        &config(json!({
            "timeout": {"enabled": true, "rate": 1.0, "mode": "delay", "seconds": 0.3},
            "errors": all_errors,
        })),
    )
    .await;
    let reply = send(&proxy, &call).await;
    reply.assert_injected(500, "error_injection", "a delay timeout, then the error");
    assert!(
        reply.elapsed >= Duration::from_millis(300),
        "{:?}",
        reply.elapsed
    );
    assert!(mock.requests().is_empty());
    app.shutdown().await;
    mock.stop().await;
}
