//! Failures a test can name: scripts, scenarios per test id, the per-request fault header and
//! faults inside streams, through running proxies and raw HTTP.

use std::time::Duration;

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::cache::{Proxy, proxy, send};
use super::proxied::Call;
use super::support::TestApp;
use super::upstream::MockUpstream;

fn chat(prompt: &str, stream: bool) -> Call {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "stream": stream});
    Call::post("/v1/chat/completions", &body.to_string()).stamp(if stream { "sse" } else { "json" })
}

async fn put_failures(app: &TestApp, proxy: &Proxy, config: Value) -> (StatusCode, Value) {
    app.put_json(&format!("/api/proxies/{}/failure-config", proxy.id), config)
        .await
}

async fn failure_config(app: &TestApp, proxy: &Proxy) -> Value {
    app.get(&format!("/api/proxies/{}/failure-config", proxy.id))
        .await
        .1
}

/// A proxy that does not cache, so every request meets the script.
async fn uncached(app: &TestApp, mock: &MockUpstream) -> Proxy {
    proxy(app, "openai", mock, json!({"enabled": false})).await
}

#[actix_web::test]
async fn a_script_runs_exactly_over_a_hundred_requests_and_repeats() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = uncached(&app, &mock).await;
    let (status, saved) = put_failures(
        &app,
        &proxy,
        json!({"script": [{"status": 429, "times": 2}, "pass", {"status": 500}], "script_end": "repeat"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let mut seen = Vec::new();
    for n in 0..100 {
        seen.push(
            send(&proxy, &chat(&format!("scripted {n}"), false))
                .await
                .status
                .as_u16(),
        );
    }
    let expected: Vec<u16> = (0..100).map(|n| [429, 429, 200, 500][n % 4]).collect();
    assert_eq!(seen, expected);
    assert_eq!(
        mock.requests().len(),
        25,
        "only the passing ones go upstream"
    );

    put_failures(&app, &proxy, json!({"fail_first": 2})).await;
    let mut after = Vec::new();
    for n in 0..4 {
        after.push(
            send(&proxy, &chat(&format!("first {n}"), false))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(after, [429, 429, 200, 200], "fail_first: 2, then passes");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn eight_parallel_tests_each_see_their_own_sequence() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = uncached(&app, &mock).await;
    put_failures(
        &app,
        &proxy,
        json!({"script": [{"status": 429, "times": 2}, "pass", {"status": 503}]}),
    )
    .await;
    let runs = futures_util::future::join_all((0..8).map(|test| {
        let proxy = &proxy;
        async move {
            let mut seen = Vec::new();
            for n in 0..6 {
                let call = chat(&format!("test {test} call {n}"), false)
                    .header("x-rubberduck-scenario", &format!("test-{test}"));
                seen.push(send(proxy, &call).await.status.as_u16());
            }
            seen
        }
    }))
    .await;
    for (test, seen) in runs.iter().enumerate() {
        assert_eq!(seen, &[429, 429, 200, 503, 200, 200], "test-{test}");
    }
    let (status, reset) = app
        .post_empty(&format!("/api/proxies/{}/scenarios/test-3/reset", proxy.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(reset["existed"], true);
    let again = send(
        &proxy,
        &chat("after reset", false).header("x-rubberduck-scenario", "test-3"),
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the script starts afresh"
    );
    let (_, shown) = app.get(&format!("/api/proxies/{}", proxy.id)).await;
    assert_eq!(
        shown["scenarios"].as_array().map(Vec::len),
        Some(8),
        "{shown}"
    );
    let (_, page) = app.get_text("/proxies", false).await;
    let card = page
        .split(&format!(r#"id="proxy-{}""#, proxy.id))
        .nth(1)
        .expect("the proxy's card");
    assert!(
        card.contains(r#"<code class="scenario">test-3</code> <span class="muted">(1 req)</span>"#),
        "the card names the most recent scenarios: {card}"
    );
    assert!(card.contains("and 3 more"), "{card}");
    // Log rows are written in the background.
    let mut marked = 0;
    for _ in 0..50 {
        let (_, logs) = app
            .get(&format!("/api/logs?proxy_id={}&limit=200", proxy.id))
            .await;
        marked = logs["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .filter(|row| row["scenario"] == "test-5" && row["failure"] == "error_injection")
            .count();
        if marked == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(marked, 3, "the log names the test of each injected failure");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_fault_header_works_only_where_allowed_and_never_reaches_the_upstream() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = uncached(&app, &mock).await;
    let asked = chat("asks for a fault", false).header("x-rubberduck-fault", "503");
    let ignored = send(&proxy, &asked).await;
    assert_eq!(ignored.status, StatusCode::OK, "off by default");
    let card_says_allowed = |page: &str| page.contains("request faults allowed");
    assert!(!card_says_allowed(&app.get_text("/proxies", false).await.1));
    let (status, _) = put_failures(&app, &proxy, json!({"allow_request_faults": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(card_says_allowed(&app.get_text("/proxies", false).await.1));
    assert_eq!(
        send(&proxy, &asked).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let bad = send(
        &proxy,
        &chat("bad fault", false).header("x-rubberduck-fault", "explode"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    assert!(bad.text().contains("explode"), "{}", bad.text());
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0]
            .headers
            .iter()
            .all(|(name, _)| !name.starts_with("x-rubberduck")),
        "stripped"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn stream_faults_cut_or_end_the_stream_after_whole_events() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = uncached(&app, &mock).await;
    put_failures(&app, &proxy, json!({"allow_request_faults": true})).await;
    let whole = send(&proxy, &chat("whole stream", true)).await;
    let events: Vec<&str> = std::str::from_utf8(&whole.body)
        .expect("text")
        .split_inclusive("\n\n")
        .collect();
    assert_eq!(events.len(), 5, "{}", whole.text());

    let cut = raw(
        &proxy,
        &chat("cut stream", true).header("x-rubberduck-fault", "disconnect-after=2"),
    )
    .await;
    assert!(!cut.complete, "the connection is cut: {}", cut.body);
    assert_eq!(cut.events(), 2, "{}", cut.body);

    let ended = send(
        &proxy,
        &chat("error event", true).header("x-rubberduck-fault", "error-event-after=3"),
    )
    .await;
    let text = ended.text();
    let got: Vec<&str> = text.split_inclusive("\n\n").collect();
    assert_eq!(got.len(), 4, "{text}");
    assert!(got[3].starts_with("data: {\"error\""), "{text}");

    let stalled = send(
        &proxy,
        &chat("stalled", true).header("x-rubberduck-fault", "stall-after=1;seconds=0.6"),
    )
    .await;
    assert!(
        stalled.elapsed >= Duration::from_millis(600),
        "{:?}",
        stalled.elapsed
    );
    assert_eq!(stalled.text().split_inclusive("\n\n").count(), 5);

    let mut failures: Vec<String> = Vec::new();
    for _ in 0..50 {
        let (_, logs) = app
            .get(&format!("/api/logs?proxy_id={}&limit=50", proxy.id))
            .await;
        failures = logs["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .filter_map(|row| row["failure"].as_str().map(str::to_owned))
            .collect();
        if failures.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for kind in ["stream_disconnect", "stream_error", "stream_stall"] {
        assert!(failures.iter().any(|f| f == kind), "{kind} in {failures:?}");
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_reset_sends_nothing_and_a_truncation_cuts_the_body() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = uncached(&app, &mock).await;
    put_failures(&app, &proxy, json!({"allow_request_faults": true})).await;
    let reset = raw(
        &proxy,
        &chat("reset", false).header("x-rubberduck-fault", "reset"),
    )
    .await;
    assert!(
        reset.head.is_empty(),
        "nothing before the reset: {}",
        reset.head
    );
    let truncated = raw(
        &proxy,
        &chat("truncated", false).header("x-rubberduck-fault", "truncate-after=5"),
    )
    .await;
    assert!(
        truncated.head.starts_with("HTTP/1.1 200"),
        "{}",
        truncated.head
    );
    assert!(!truncated.complete);
    assert_eq!(truncated.body.len(), 5, "{}", truncated.body);
    let closed = raw(
        &proxy,
        &chat("closed", false).header("x-rubberduck-fault", "close-after-head"),
    )
    .await;
    assert!(closed.head.starts_with("HTTP/1.1 200"), "{}", closed.head);
    assert!(
        closed.body.is_empty() && !closed.complete,
        "the head, then the connection closes: {}",
        closed.body
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_bandwidth_limit_holds_within_ten_percent() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = uncached(&app, &mock).await;
    put_failures(&app, &proxy, json!({"allow_request_faults": true})).await;
    let padded = || chat("bandwidth", false).header("x-mock-pad", "3000");
    let free = send(&proxy, &padded()).await;
    let length = free.body.len();
    assert!(length > 3000, "a body worth limiting: {length} bytes");
    // About 1.5 s at the limit.
    let bytes_per_second = length * 2 / 3;
    for call in 0..2 {
        let limited = send(
            &proxy,
            &padded().header(
                "x-rubberduck-fault",
                &format!("bandwidth={bytes_per_second}"),
            ),
        )
        .await;
        assert_eq!(
            limited.body.len(),
            length,
            "the whole body (its stamp aside), only slower"
        );
        let measured = length as f64 / limited.elapsed.as_secs_f64();
        let ratio = measured / bytes_per_second as f64;
        eprintln!("bandwidth: {measured:.0} B/s measured for a limit of {bytes_per_second} B/s");
        assert!(
            (0.9..=1.1).contains(&ratio),
            "call {call}: {measured:.0} B/s for a limit of {bytes_per_second} B/s \
             ({length} bytes in {:?})",
            limited.elapsed
        );
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn answers_under_a_bandwidth_limit_are_still_cached() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    put_failures(
        &app,
        &proxy,
        json!({"connection": {"bandwidth_bytes_per_second": 1_000_000}}),
    )
    .await;
    for stream in [false, true] {
        let call = chat(&format!("limited, stream {stream}"), stream);
        let first = send(&proxy, &call).await;
        assert_eq!(first.status, StatusCode::OK);
        let second = send(&proxy, &call).await;
        second.assert_hit("a limited answer is kept like any other");
        assert_eq!(second.body, first.body);
    }
    assert_eq!(mock.requests().len(), 2);
    app.shutdown().await;
    mock.stop().await;
}

pub(super) struct Raw {
    pub head: String,
    pub body: String,
    pub complete: bool,
}

impl Raw {
    fn events(&self) -> usize {
        self.body.matches("data: ").count()
    }
}

/// Sends `call` over a plain connection and reads everything until it closes, de-chunking the
/// body; `complete` says whether the body ended properly.
pub(super) async fn raw(proxy: &Proxy, call: &Call) -> Raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = proxy.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-length: {}\r\n",
        call.method,
        call.path,
        call.body.len()
    );
    for (name, value) in &call.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.expect("sends");
    tcp.write_all(&call.body).await.expect("sends");
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes))
        .await
        .expect("the answer ends");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return Raw {
            head: text,
            body: String::new(),
            complete: false,
        };
    };
    let lower = head.to_ascii_lowercase();
    if let Some(length) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return Raw {
            head: head.to_owned(),
            body: rest.to_owned(),
            complete: rest.len() == length,
        };
    }
    let mut body = String::new();
    let mut remaining = rest;
    let mut complete = false;
    while let Some((size, after)) = remaining.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 {
            complete = true;
            break;
        }
        if after.len() < size {
            body.push_str(after);
            break;
        }
        body.push_str(&after[..size]);
        remaining = after[size..].strip_prefix("\r\n").unwrap_or("");
    }
    Raw {
        head: head.to_owned(),
        body,
        complete,
    }
}

#[actix_web::test]
async fn the_failure_modal_shows_edits_and_saves_the_script_and_a_reset_clears_it() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = uncached(&app, &mock).await;
    put_failures(
        &app,
        &proxy,
        json!({"script": [{"status": 429}, {"stream_stall_after": 2, "seconds": 0.5}],
               "script_end": "repeat", "allow_request_faults": true,
               "stream": {"enabled": true, "rate": 0.25, "kind": "error", "after_events": 4},
               "connection": {"bandwidth_bytes_per_second": 2048}}),
    )
    .await;
    let (status, modal) = app
        .get_text(&format!("/proxies/{}/failures", proxy.id), true)
        .await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        r#"<option value="status" selected>"#,
        r#"name="script_0_value" value="429""#,
        r#"<option value="stream_stall_after" selected>"#,
        r#"name="script_1_value" value="2""#,
        r#"name="script_1_seconds" value="0.5""#,
        r#"<option value="repeat" selected>"#,
        r#"name="allow_request_faults" id="allow_request_faults" checked"#,
        r#"name="stream_rate" value="25""#,
        r#"<option value="error" selected>"#,
        r#"name="connection_bandwidth" value="2048""#,
    ] {
        assert!(modal.contains(shown), "the modal shows {shown}: {modal}");
    }

    let base: Vec<(&str, &str)> = vec![
        ("errors_retry_after", "1"),
        ("timeout_seconds", "5"),
        ("timeout_mode", "delay"),
        ("rate_limit_rpm", "60"),
        ("delay_min_ms", "500"),
        ("delay_max_ms", "2000"),
        ("stream_drip_ms", "200"),
        ("allow_request_faults", "on"),
        ("script_end", "pass"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut fields = base.clone();
        fields.extend_from_slice(extra);
        fields
    };
    let saved = app
        .post_form(
            &format!("/proxies/{}/failures", proxy.id),
            &with(&[
                ("script_0_outcome", "status"),
                ("script_0_value", "503"),
                ("script_0_times", "2"),
                ("script_1_outcome", "stream_disconnect_after"),
                ("script_1_value", "3"),
                ("script_1_seconds", "9"),
                ("script_2_outcome", "pass"),
            ]),
            true,
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.html);
    let config = failure_config(&app, &proxy).await;
    assert_eq!(
        config["script"],
        json!([{"status": 503, "times": 2}, {"stream_disconnect_after": 3}, "pass"]),
        "a value left in a box the outcome does not use is not saved: {config}"
    );
    assert_eq!(config["script_end"], "pass");
    assert_eq!(config["allow_request_faults"], true);
    assert_eq!(config["stream"]["enabled"], false, "{config}");

    let added = app
        .post_form(
            &format!("/proxies/{}/failures/rows", proxy.id),
            &with(&[
                ("script_0_outcome", "status"),
                ("script_0_value", "503"),
                ("script_action", "add"),
            ]),
            true,
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.html);
    assert!(added.html.contains(r#"name="script_1_value" value="429""#));
    assert!(added.html.contains("Not saved yet"));
    assert_eq!(
        failure_config(&app, &proxy).await["script"],
        config["script"],
        "adding a row saves nothing"
    );

    let refused = app
        .post_form(
            &format!("/proxies/{}/failures", proxy.id),
            &with(&[
                ("script_0_outcome", "pass"),
                ("script_1_outcome", "status"),
                ("script_1_value", "418"),
            ]),
            true,
        )
        .await;
    assert_eq!(refused.status, StatusCode::OK);
    assert!(
        refused
            .html
            .contains("Row 2: 418 is not a status that can be injected"),
        "{}",
        refused.html
    );
    assert!(
        refused
            .html
            .contains(r#"name="script_1_value" value="418" aria-label="Row 2 value" inputmode="numeric" aria-invalid="true""#),
        "{}",
        refused.html
    );
    assert_eq!(
        failure_config(&app, &proxy).await["script"],
        config["script"]
    );

    let reset = app
        .post_form(&format!("/proxies/{}/failures/reset", proxy.id), &[], true)
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.html);
    let config = failure_config(&app, &proxy).await;
    assert_eq!(config["script"], json!([]), "{config}");
    assert_eq!(config["allow_request_faults"], false);
    app.shutdown().await;
    mock.stop().await;
}
