//! The daily spend cap: a proxy counts what its live answers (from the upstream or the emulator,
//! never cache hits) cost in the current UTC day; once that reaches its cap, misses are refused
//! with the provider's own 429 and nothing more goes upstream, while recorded answers are still
//! served. Driven through running proxies against the recording mock upstream and the emulator,
//! and read back through the API, the request log and the Proxies page.

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::cache::{Proxy, proxy, send, wait_for_entries};
use super::proxied::{Answer, Call};
use super::support::{TestApp, id_of, port_of};
use super::upstream::MockUpstream;

/// How long the background writer and the end of a streamed answer may take to show.
const WAIT: Duration = Duration::from_secs(10);

/// What one streamed chat answer of the mock costs: its last event reports 5 prompt and 4
/// completion tokens of gpt-4o-mini, at $0.15 and $0.60 per million.
const MOCK_STREAM_COST: f64 = (5.0 * 0.15 + 4.0 * 0.6) / 1_000_000.0;

/// A chat request the mock answers as a stream with usage; `n` tells requests apart.
fn streamed_chat(n: usize) -> Call {
    let body = json!({"model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": format!("question {n}")}]});
    Call::post("/v1/chat/completions", &body.to_string())
}

/// A request each provider's emulator answers (with usage of a priced model); `n` tells
/// requests apart.
fn emulated_call(provider: &str, n: usize) -> Call {
    let prompt = format!("Say something about the number {n}");
    match provider {
        "openai" => Call::post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
                .to_string(),
        ),
        "anthropic" => Call::post(
            "/v1/messages",
            &json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 64,
                "messages": [{"role": "user", "content": prompt}]})
            .to_string(),
        ),
        "bedrock" => Call::post(
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            &json!({"messages": [{"role": "user", "content": [{"text": prompt}]}]}).to_string(),
        ),
        "vertex_ai" => Call::post(
            "/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent",
            &json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}]}).to_string(),
        ),
        other => panic!("no emulated call for {other}"),
    }
}

/// A running proxy answered by the emulator, as fast as it goes, with this cap.
async fn emulated(app: &TestApp, provider: &str, cap: Value) -> Proxy {
    let created = app
        .create(json!({
            "name": format!("capped {provider} {}", rand_suffix()),
            "provider": provider,
            "upstream_url": "emulator",
            "emulator": {"ttft_ms": 0, "tokens_per_second": 100_000},
            "daily_spend_cap_usd": cap,
        }))
        .await;
    assert_eq!(created["status"], "running", "{created}");
    assert_eq!(created["daily_spend_cap_usd"], cap, "{created}");
    Proxy {
        id: id_of(&created),
        port: port_of(&created),
        base: format!("http://127.0.0.1:{}", port_of(&created)),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn proxy_json(app: &TestApp, proxy: &Proxy) -> Value {
    let (status, json) = app.get(&format!("/api/proxies/{}", proxy.id)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

/// Waits until the proxy's spend today is above `floor` (an answer's cost is counted when its
/// last byte has gone out, which may be just after the client has read it); returns it.
async fn wait_for_spend_above(app: &TestApp, proxy: &Proxy, floor: f64) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let json = proxy_json(app, proxy).await;
        let spent = json["spent_today_usd"]
            .as_f64()
            .unwrap_or_else(|| panic!("no spent_today_usd: {json}"));
        if spent > floor {
            return spent;
        }
        assert!(
            Instant::now() < deadline,
            "the spend never passed {floor}: {json}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn set_cap(app: &TestApp, proxy: &Proxy, cap: Value) -> Value {
    let (status, json) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"daily_spend_cap_usd": cap}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["daily_spend_cap_usd"], cap, "the new cap is in force");
    json
}

/// The message a client shows, wherever the provider's shape keeps it.
fn message(provider: &str, answer: &Answer) -> String {
    let json = answer.json();
    let message = match provider {
        "bedrock" => &json["message"],
        _ => &json["error"]["message"],
    };
    message
        .as_str()
        .unwrap_or_else(|| panic!("{provider}: no message in {json}"))
        .to_owned()
}

/// A refusal of the cap: a 429 in the provider's shape naming the cap, sent as a miss, and
/// telling the SDKs not to retry.
fn assert_refused(provider: &str, answer: &Answer, cap_text: &str) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{provider}: {}",
        answer.text()
    );
    let message = message(provider, answer);
    assert!(
        message.starts_with("Rubberduck: the daily spend cap of ")
            && message.contains(&format!("cap of {cap_text} for this proxy is reached ("))
            && message.contains(" spent today, UTC); cached answers are still served"),
        "{provider}: {message}"
    );
    assert_eq!(answer.header("x-should-retry"), Some("false"), "{provider}");
    assert_eq!(answer.header("x-cache"), Some("MISS"), "{provider}");
    assert_eq!(
        answer.header("x-rubberduck-injected"),
        None,
        "{provider}: not an injected failure"
    );
    let json = answer.json();
    match provider {
        "openai" | "deepseek" | "azure_openai" => {
            assert_eq!(json["error"]["type"], "insufficient_quota", "{json}");
            assert_eq!(json["error"]["code"], "insufficient_quota", "{json}");
            assert!(json["error"].get("param").is_some(), "{json}");
        }
        "anthropic" => {
            assert_eq!(json["type"], "error", "{json}");
            assert_eq!(json["error"]["type"], "rate_limit_error", "{json}");
        }
        "bedrock" => {
            assert_eq!(
                answer.header("x-amzn-errortype"),
                Some("ThrottlingException"),
                "{json}"
            );
        }
        "vertex_ai" => {
            assert_eq!(json["error"]["code"], 429, "{json}");
            assert_eq!(json["error"]["status"], "RESOURCE_EXHAUSTED", "{json}");
        }
        other => panic!("no shape for {other}"),
    }
}

/// The proxy's log entries refused by the cap, once the writer has stored `count` of them.
async fn wait_for_refusals_logged(app: &TestApp, proxy: &Proxy, count: u64) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, json) = app
            .get(&format!(
                "/api/logs?proxy_id={}&failure=spend_cap",
                proxy.id
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        if json["total"].as_u64().is_some_and(|n| n >= count) {
            return json["logs"].as_array().cloned().unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "never {count} spend_cap log entries: {json}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn misses_go_upstream_until_the_spend_passes_the_cap_then_only_hits_answer() {
    let app = TestApp::start().await;
    let mock = MockUpstream::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    // Room for one answer and part of a second: the second is sent (the spend is still under
    // the cap) and passes it.
    let cap = MOCK_STREAM_COST * 1.5;
    let json = set_cap(&app, &proxy, json!(cap)).await;
    assert_eq!(json["spent_today_usd"], 0.0, "{json}");
    assert_eq!(json["spend_cap_reached"], false, "{json}");

    let first = send(&proxy, &streamed_chat(1)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    first.assert_miss("the first request");
    let spent = wait_for_spend_above(&app, &proxy, 0.0).await;
    assert!(
        (spent - MOCK_STREAM_COST).abs() < 1e-9,
        "one answer's cost: {spent}"
    );
    wait_for_entries(&app, &proxy, 1).await;
    send(&proxy, &streamed_chat(1))
        .await
        .assert_hit("the recorded request");
    assert!(
        (wait_for_spend_above(&app, &proxy, 0.0).await - spent).abs() < 1e-12,
        "a hit costs nothing"
    );

    let second = send(&proxy, &streamed_chat(2)).await;
    assert_eq!(
        second.status,
        StatusCode::OK,
        "under the cap: {}",
        second.text()
    );
    second.assert_miss("the second request");
    let spent = wait_for_spend_above(&app, &proxy, spent).await;
    assert!(spent >= cap, "{spent} passed {cap}");
    assert_eq!(proxy_json(&app, &proxy).await["spend_cap_reached"], true);
    assert_eq!(mock.requests().len(), 2);

    let refused = send(&proxy, &streamed_chat(3)).await;
    assert_refused("openai", &refused, &format!("${cap}"));
    let refused_again = send(&proxy, &streamed_chat(3)).await;
    assert_refused("openai", &refused_again, &format!("${cap}"));
    assert_eq!(
        mock.requests().len(),
        2,
        "nothing more reached the upstream"
    );

    let replayed = send(&proxy, &streamed_chat(1)).await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.text());
    replayed.assert_hit("a request recorded before the cap was reached");
    assert_eq!(replayed.body, first.body);
    assert_eq!(mock.requests().len(), 2);

    let logged = wait_for_refusals_logged(&app, &proxy, 2).await;
    let entry = &logged[0];
    assert_eq!(entry["status"], 429, "{entry}");
    assert_eq!(entry["cache"], "miss", "{entry}");
    assert!(
        entry["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("daily spend cap")),
        "{entry}"
    );
    assert_eq!(entry["cost_usd"], Value::Null, "a refusal costs nothing");
    let (_, metrics) = app.get("/api/metrics").await;
    assert_eq!(
        metrics["injected_failures_total"], 0,
        "a refusal of the cap is no injected failure: {metrics}"
    );
    mock.stop().await;
}

#[actix_web::test]
async fn each_provider_refuses_in_its_own_shape_and_still_serves_hits() {
    let app = TestApp::start().await;
    // Far less than any answer: the first miss is sent, and it reaches the cap.
    let cap = 0.000_000_1;
    for provider in ["anthropic", "vertex_ai", "bedrock", "deepseek"] {
        let proxy = emulated(&app, provider, json!(cap)).await;
        let call = |n| match provider {
            "deepseek" => {
                let body = json!({"model": "deepseek-chat",
                    "messages": [{"role": "user", "content": format!("number {n}")}]});
                Call::post("/chat/completions", &body.to_string())
            }
            _ => emulated_call(provider, n),
        };
        let first = send(&proxy, &call(1)).await;
        assert_eq!(first.status, StatusCode::OK, "{provider}: {}", first.text());
        first.assert_miss(provider);
        wait_for_spend_above(&app, &proxy, 0.0).await;
        wait_for_entries(&app, &proxy, 1).await;

        let refused = send(&proxy, &call(2)).await;
        assert_refused(provider, &refused, "$0.0000001");

        let replayed = send(&proxy, &call(1)).await;
        assert_eq!(
            replayed.status,
            StatusCode::OK,
            "{provider}: {}",
            replayed.text()
        );
        replayed.assert_hit(provider);
        assert_eq!(replayed.body, first.body, "{provider}");
    }
}

#[actix_web::test]
async fn without_a_cap_misses_are_never_refused() {
    let app = TestApp::start().await;
    let proxy = emulated(&app, "openai", Value::Null).await;
    for n in 0..6 {
        let answer = send(&proxy, &emulated_call("openai", n)).await;
        assert_eq!(answer.status, StatusCode::OK, "{n}: {}", answer.text());
        answer.assert_miss("no cap");
        wait_for_spend_above(&app, &proxy, 0.0).await;
    }
    let json = proxy_json(&app, &proxy).await;
    assert_eq!(json["daily_spend_cap_usd"], Value::Null);
    assert_eq!(json["spend_cap_reached"], false, "{json}");
}

#[actix_web::test]
async fn a_cap_raised_or_cleared_lets_misses_through_and_a_lowered_one_refuses_at_once() {
    let app = TestApp::start().await;
    let proxy = emulated(&app, "openai", json!(0.000_000_1)).await;
    let first = send(&proxy, &emulated_call("openai", 1)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let spent = wait_for_spend_above(&app, &proxy, 0.0).await;
    assert_refused(
        "openai",
        &send(&proxy, &emulated_call("openai", 2)).await,
        "$0.0000001",
    );

    let raised = set_cap(&app, &proxy, json!(1.0)).await;
    assert_eq!(raised["spend_cap_reached"], false, "{raised}");
    let through = send(&proxy, &emulated_call("openai", 2)).await;
    assert_eq!(through.status, StatusCode::OK, "raised: {}", through.text());
    through.assert_miss("raised cap");
    let spent = wait_for_spend_above(&app, &proxy, spent).await;

    let lowered = set_cap(&app, &proxy, json!(spent / 2.0)).await;
    assert_eq!(lowered["spend_cap_reached"], true, "{lowered}");
    let refused = send(&proxy, &emulated_call("openai", 3)).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text()
    );

    let cleared = set_cap(&app, &proxy, Value::Null).await;
    assert_eq!(cleared["spend_cap_reached"], false, "{cleared}");
    assert!(
        cleared["spent_today_usd"]
            .as_f64()
            .is_some_and(|s| s >= spent),
        "clearing the cap keeps counting: {cleared}"
    );
    let through = send(&proxy, &emulated_call("openai", 3)).await;
    assert_eq!(
        through.status,
        StatusCode::OK,
        "cleared: {}",
        through.text()
    );
}

#[actix_web::test]
async fn the_days_spend_survives_a_restart() {
    let mut app = TestApp::start().await;
    let proxy = emulated(&app, "anthropic", json!(0.000_000_1)).await;
    let first = send(&proxy, &emulated_call("anthropic", 1)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let spent = wait_for_spend_above(&app, &proxy, 0.0).await;
    wait_for_entries(&app, &proxy, 1).await;
    assert_refused(
        "anthropic",
        &send(&proxy, &emulated_call("anthropic", 2)).await,
        "$0.0000001",
    );

    app.restart().await;
    let json = proxy_json(&app, &proxy).await;
    assert_eq!(json["status"], "running", "{json}");
    let restored = json["spent_today_usd"].as_f64().unwrap_or_default();
    assert!(
        (restored - spent).abs() < 1e-9,
        "spent {spent} before the restart, {restored} after: {json}"
    );
    assert_eq!(json["spend_cap_reached"], true, "{json}");
    assert_refused(
        "anthropic",
        &send(&proxy, &emulated_call("anthropic", 2)).await,
        "$0.0000001",
    );
    let replayed = send(&proxy, &emulated_call("anthropic", 1)).await;
    replayed.assert_hit("recorded before the restart");
    assert_eq!(replayed.body, first.body);
}

/// The fields of the Configure form as the page renders them for an emulated proxy, with the
/// cap field set to `cap`.
fn configure_form<'a>(json: &'a Value, port: &'a str, cap: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", json["name"].as_str().unwrap_or_default()),
        ("port", port),
        ("description", ""),
        ("tags", ""),
        ("use_emulator", "on"),
        ("emulator_ttft_ms", "0"),
        ("emulator_tokens_per_second", "100000"),
        ("upstream_url", ""),
        ("cache_fields", "1"),
        ("cache_enabled", "on"),
        ("cache_mode", "read_write"),
        ("cache_ttl_seconds", ""),
        ("log_requests", "on"),
        ("daily_spend_cap_usd", cap),
    ]
}

/// The card of `proxy` in the Proxies page.
async fn card(app: &TestApp, proxy: &Proxy) -> String {
    let (status, page) = app.get_text("/proxies", false).await;
    assert_eq!(status, StatusCode::OK);
    let start = page
        .find(&format!("id=\"proxy-{}\"", proxy.id))
        .unwrap_or_else(|| panic!("no card of proxy {}", proxy.id));
    let end = page[start..]
        .find("</article>")
        .map_or(page.len(), |end| start + end);
    page[start..end].to_owned()
}

#[actix_web::test]
async fn the_configure_form_sets_the_cap_and_the_card_shows_it_and_the_badge() {
    let app = TestApp::start().await;
    let proxy = emulated(&app, "openai", Value::Null).await;
    let card_text = card(&app, &proxy).await;
    assert!(
        !card_text.contains("spend-facts"),
        "no cap, no spend line: {card_text}"
    );

    let (status, form) = app
        .get_text(&format!("/proxies/{}/edit", proxy.id), true)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("Daily spend cap (USD)"), "{form}");
    assert!(
        form.contains(r#"name="daily_spend_cap_usd" value="""#),
        "empty without a cap: {form}"
    );

    let json = proxy_json(&app, &proxy).await;
    let port = proxy.port.to_string();
    let path = format!("/proxies/{}", proxy.id);
    for (typed, why) in [
        ("a lot", "not a number"),
        ("-1", "negative"),
        ("2000000", "over a million"),
    ] {
        let reply = app
            .post_form(&path, &configure_form(&json, &port, typed), true)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{why}");
        assert!(
            reply.html.contains("id=\"edit-spend-cap-error\"")
                && reply
                    .html
                    .contains("The daily spend cap must be between 0 and 1,000,000"),
            "{why}: the error is shown at the field: {}",
            reply.html
        );
        assert!(
            reply.html.contains(&format!("value=\"{typed}\"")),
            "{why}: what was typed comes back"
        );
        assert_eq!(
            proxy_json(&app, &proxy).await["daily_spend_cap_usd"],
            Value::Null
        );
    }

    let reply = app
        .post_form(&path, &configure_form(&json, &port, "$0.0000001"), false)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.html);
    let saved = proxy_json(&app, &proxy).await;
    assert_eq!(saved["daily_spend_cap_usd"], 0.000_000_1, "{saved}");
    assert_eq!(saved["upstream_url"], "emulator", "the rest is as it was");
    let (_, form) = app
        .get_text(&format!("/proxies/{}/edit", proxy.id), true)
        .await;
    assert!(
        form.contains(r#"name="daily_spend_cap_usd" value="0.0000001""#),
        "{form}"
    );
    let card_text = card(&app, &proxy).await;
    assert!(
        card_text.contains("cap $0.0000001 · $0.00 today"),
        "{card_text}"
    );
    assert!(!card_text.contains("spend cap reached"), "{card_text}");

    let answer = send(&proxy, &emulated_call("openai", 1)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let spent = wait_for_spend_above(&app, &proxy, 0.0).await;
    let card_text = card(&app, &proxy).await;
    let spent_text = if spent >= 1.0 {
        format!("{spent:.2}")
    } else {
        let decimals = (-spent.log10()).ceil() as usize + 2;
        format!("{spent:.decimals$}")
    };
    assert!(
        card_text.contains(&format!("cap $0.0000001 · ${spent_text} today")),
        "{card_text}"
    );
    assert!(
        card_text.contains("class=\"badge badge-capped spend-cap-reached\"")
            && card_text.contains(">spend cap reached</span>"),
        "{card_text}"
    );

    let reply = app
        .post_form(&path, &configure_form(&json, &port, ""), false)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.html);
    assert_eq!(
        proxy_json(&app, &proxy).await["daily_spend_cap_usd"],
        Value::Null,
        "empty removes the cap"
    );
    let card_text = card(&app, &proxy).await;
    assert!(!card_text.contains("spend cap reached"), "{card_text}");
}
