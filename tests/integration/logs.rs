//! The Logs page over plain HTTP: rows after real proxied requests, filters, pages, export
//! links, purge (with and without confirmation) and the live stream of new rows.

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use futures_util::StreamExt;
use serde_json::json;

use super::support::{TestApp, id_of, port_of};
use super::upstream::MockUpstream;

const WAIT: Duration = Duration::from_secs(10);

/// An OpenAI proxy in front of the mock (no `/v1` in the base, so `/status/404` reaches the
/// mock's error route as is).
async fn proxy(app: &TestApp, mock: &MockUpstream, name: &str) -> (i64, u16) {
    let proxy = app
        .create(json!({"name": name, "provider": "openai", "upstream_url": mock.url}))
        .await;
    (id_of(&proxy), port_of(&proxy))
}

async fn send(port: u16, path: &str, body: &str) -> StatusCode {
    let mut response = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .content_type("application/json")
        .send_body(body.to_owned())
        .await
        .expect("proxied");
    response.body().await.expect("body");
    response.status()
}

/// Log entries are written in the background: waits until the API counts `n`.
async fn wait_for_logs(app: &TestApp, n: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = app.get("/api/logs?limit=1").await;
        if body["total"].as_i64() == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} log entries: {body}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn rows(html: &str) -> usize {
    html.matches("<tr class=\"log-row\"").count()
}

/// Attribute values as a browser reads them (`&` may be escaped in the HTML).
fn unescape(html: &str) -> String {
    html.replace("&#38;", "&").replace("&amp;", "&")
}

/// Three requests: a miss and a hit on `/v1/responses` (tokens and cost known) and a 404.
async fn three_requests(port: u16) {
    let body = "{\"model\":\"gpt-4o\",\"input\":\"hi\"}";
    assert_eq!(send(port, "/v1/responses", body).await, StatusCode::OK);
    assert_eq!(send(port, "/v1/responses", body).await, StatusCode::OK);
    assert_eq!(
        send(port, "/status/404", "{\"model\":\"gpt-4o-mini\"}").await,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn logs_page_shows_rows_and_filters_narrow_them() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;

    let (status, empty) = app.get_text("/logs", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(empty.contains("No requests logged yet"), "empty state");

    let (_, port) = proxy(&app, &mock, "Logged").await;
    three_requests(port).await;
    wait_for_logs(&app, 3).await;

    let (status, page) = app.get_text("/logs", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<html"), "a full page without HX-Request");
    assert_eq!(rows(&page), 3, "{page}");
    for expected in [
        "gpt-4o-mini",
        "/v1/responses",
        "/status/404",
        "Logged",
        "status-2xx",
        "status-4xx",
        "cache-hit",
        "cache-miss",
        "upstream_error",
        "11 / 7",
        "<time datetime=\"",
        " UTC</time>",
        "/static/local-time.js",
        "/static/live.js",
    ] {
        assert!(page.contains(expected), "the page lacks {expected}");
    }
    assert!(
        page.contains("<strong>1–3</strong> of <strong>3</strong> entries"),
        "count"
    );
    assert!(!page.contains("No requests logged yet"));

    // Filters narrow the table server-side; HTMX gets the results part alone.
    let (_, hits) = app.get_text("/logs?cache=hit", true).await;
    assert!(!hits.contains("<html"), "HTMX gets the fragment");
    assert_eq!(rows(&hits), 1);
    assert!(hits.contains("data-cache=\"hit\""));
    assert!(
        hits.contains("<span class=\"cost-saved\"") && hits.contains(" saved</span>"),
        "a hit's cost shows as saved: {hits}"
    );
    let (_, client_errors) = app.get_text("/logs?status=4xx", true).await;
    assert_eq!(rows(&client_errors), 1);
    assert!(client_errors.contains("data-status=\"404\""));
    let (_, code) = app.get_text("/logs?status=200&cache=miss", true).await;
    assert_eq!(rows(&code), 1);
    let (_, searched) = app.get_text("/logs?q=status", false).await;
    assert_eq!(rows(&searched), 1);
    assert!(searched.contains("/status/404"));
    assert!(
        searched.contains("value=\"status\""),
        "the form keeps the search"
    );
    let (_, failed) = app.get_text("/logs?failure=any", true).await;
    assert_eq!(rows(&failed), 1);
    let (_, none) = app.get_text("/logs?q=nothing-like-this", true).await;
    assert_eq!(rows(&none), 0);
    assert!(none.contains("No log entry matches these filters"));
    let (_, future) = app.get_text("/logs?since=2999-01-01T00:00", true).await;
    assert_eq!(rows(&future), 0, "since is honoured");
    let (_, past) = app.get_text("/logs?until=2999-01-01T00:00", true).await;
    assert_eq!(rows(&past), 3, "until is honoured");

    // A bad filter is explained, never a 500.
    let (status, bad) = app.get_text("/logs?status=abc", false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("status is a code such as 429"), "{bad}");
    let (status, bad) = app.get_text("/logs?since=yesterday", true).await;
    assert_eq!(status, StatusCode::OK, "HTMX swaps 2xx only");
    assert!(bad.contains("is not a date and time"));

    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn export_links_carry_the_filters() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let (id, port) = proxy(&app, &mock, "Exported").await;
    three_requests(port).await;
    wait_for_logs(&app, 3).await;

    let (_, page) = app
        .get_text(
            &format!("/logs?proxy_id={id}&cache=hit&since=2000-01-01T00:00&q=responses"),
            false,
        )
        .await;
    let page = unescape(&page);
    let expected = format!(
        "/api/logs/export?format=csv&proxy_id={id}&cache=hit&since=2000-01-01T00%3A00%3A00Z&q=responses"
    );
    assert!(page.contains(&expected), "{expected} in {page}");
    for format in ["json", "jsonl"] {
        assert!(page.contains(&format!("/api/logs/export?format={format}&proxy_id={id}")));
    }
    assert!(
        page.contains(&format!(
            "<option value=\"{id}\" selected>Exported</option>"
        )),
        "the proxy select keeps the choice"
    );

    let (status, csv) = app.get_text(&expected, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv.lines().count(), 2, "header and the one hit: {csv}");
    assert!(csv.contains(",hit,"));

    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn pages_of_fifty_with_newer_and_older_links() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let (_, port) = proxy(&app, &mock, "Busy").await;
    for i in 0..55 {
        send(port, "/v1/responses", &format!("{{\"model\":\"m{i}\"}}")).await;
    }
    wait_for_logs(&app, 55).await;

    let (_, first) = app.get_text("/logs?q=responses", false).await;
    assert_eq!(rows(&first), 50);
    assert!(first.contains("<strong>1–50</strong> of <strong>55</strong> entries"));
    let first = unescape(&first);
    assert!(
        first.contains("href=\"/logs?q=responses&offset=50\""),
        "an Older link that keeps the filter"
    );
    assert!(
        !first.contains("id=\"newer\""),
        "nothing newer than the first page"
    );
    assert!(first.contains("data-id=\"55\""), "newest first");
    assert!(first.contains("sse-connect=\"/logs/events?q=responses\""));

    let (_, second) = app.get_text("/logs?q=responses&offset=50", true).await;
    assert_eq!(rows(&second), 5);
    assert!(second.contains("<strong>51–55</strong> of <strong>55</strong>"));
    let second = unescape(&second);
    assert!(
        second.contains("href=\"/logs?q=responses\""),
        "a Newer link"
    );
    assert!(!second.contains("id=\"older\""));
    assert!(second.contains("data-id=\"1\""));
    assert!(
        !second.contains("sse-connect"),
        "live rows only join the newest page"
    );

    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn purge_needs_confirmation_and_reports_what_it_deleted() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let (first, first_port) = proxy(&app, &mock, "First").await;
    let (_, second_port) = proxy(&app, &mock, "Second").await;
    three_requests(first_port).await;
    send(second_port, "/v1/responses", "{\"model\":\"kept\"}").await;
    wait_for_logs(&app, 4).await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();

    // A plain form without the checkbox deletes nothing.
    let reply = app
        .post_form("/logs/purge", &[("purge_before", &tomorrow)], false)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.html.contains("Nothing was deleted"), "{}", reply.html);
    assert!(reply.html.contains("<html"));
    assert_eq!(rows(&reply.html), 4);
    let reply = app
        .post_form("/logs/purge", &[("confirm", "yes")], false)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.html.contains("choose the date"));
    wait_for_logs(&app, 4).await;

    // A range that ends before it starts.
    let reply = app
        .post_form(
            "/logs/purge",
            &[
                ("purge_since", tomorrow.as_str()),
                ("purge_before", "2000-01-01T00:00"),
                ("confirm", "yes"),
            ],
            false,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .html
            .contains("the start of the range must come before its end"),
        "{}",
        reply.html
    );

    // Confirmed, a range from tomorrow on: nothing matches.
    let next_year = (chrono::Utc::now() + chrono::Duration::days(365))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let reply = app
        .post_form(
            "/logs/purge",
            &[
                ("purge_since", tomorrow.as_str()),
                ("purge_before", next_year.as_str()),
                ("confirm", "yes"),
            ],
            false,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.html.contains("Deleted 0 entries."), "{}", reply.html);

    // Confirmed, older than a date long past: nothing matches.
    let reply = app
        .post_form(
            "/logs/purge",
            &[("purge_before", "2000-01-01T00:00"), ("confirm", "yes")],
            false,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.html.contains("Deleted 0 entries."));

    // One proxy's entries only, through HTMX (hx-confirm asked), keeping the filters shown.
    let first = first.to_string();
    let reply = app
        .post_form(
            "/logs/purge",
            &[
                ("purge_before", &tomorrow),
                ("purge_proxy_id", &first),
                ("q", "responses"),
            ],
            true,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.html.contains("<html"), "HTMX gets the results part");
    assert!(reply.html.contains("Deleted 3 entries."), "{}", reply.html);
    assert_eq!(rows(&reply.html), 1);
    assert!(reply.html.contains("kept"));
    wait_for_logs(&app, 1).await;

    let reply = app
        .post_form(
            "/logs/purge",
            &[("purge_before", &tomorrow), ("confirm", "yes")],
            false,
        )
        .await;
    assert!(reply.html.contains("Deleted 1 entry."));
    assert!(reply.html.contains("No requests logged yet"));
    wait_for_logs(&app, 0).await;

    let (status, _) = app.get_text("/logs/purge", false).await;
    assert_eq!(status, StatusCode::OK, "GET follows the redirect to /logs");

    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn live_and_paused_pages() {
    let mut app = TestApp::start().await;
    let (_, live) = app.get_text("/logs?cache=hit", false).await;
    assert!(live.contains("sse-connect=\"/logs/events?cache=hit\""));
    assert!(live.contains("sse-swap=\"log\" hx-swap=\"afterbegin\""));
    assert!(unescape(&live).contains("href=\"/logs?cache=hit&live=0\""));
    let (_, paused) = app.get_text("/logs?cache=hit&live=0", false).await;
    assert!(!paused.contains("sse-connect"));
    assert!(paused.contains("Resume live"));
    assert!(
        paused.contains("name=\"live\" value=\"0\""),
        "filters keep it paused"
    );
    assert!(unescape(&paused).contains("href=\"/logs?cache=hit\""));
    app.shutdown().await;
}

/// Reads an SSE response until a `log` event arrives; returns that event.
async fn next_log_event<S>(response: &mut awc::ClientResponse<S>) -> String
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut buffer = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(start) = buffer.find("event: log\n")
            && let Some(end) = buffer[start..].find("\n\n")
        {
            return buffer[start..start + end].to_owned();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.next())
            .await
            .unwrap_or_else(|_| panic!("no log event within 5 s; got {buffer:?}"))
            .expect("the stream stays open")
            .expect("a chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[actix_web::test]
async fn the_event_stream_delivers_new_rows_that_match() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let (id, port) = proxy(&app, &mock, "Streamed").await;

    let mut all = awc::Client::new()
        .get(app.url("/logs/events"))
        .insert_header((
            "Authorization",
            format!("Bearer {}", super::support::TEST_TOKEN),
        ))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(all.status(), StatusCode::OK);
    assert_eq!(
        all.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut errors_only = awc::Client::new()
        .get(app.url(&format!("/logs/events?proxy_id={id}&status=4xx")))
        .insert_header((
            "Authorization",
            format!("Bearer {}", super::support::TEST_TOKEN),
        ))
        .send()
        .await
        .expect("stream opens");

    send(port, "/v1/responses/live-path", "{\"model\":\"gpt-4o\"}").await;
    let event = next_log_event(&mut all).await;
    assert!(event.contains("data: <tr class=\"log-row\""), "{event}");
    assert!(event.contains("/v1/responses/live-path"), "{event}");
    assert!(event.contains("gpt-4o"));
    assert!(event.contains("<time datetime=\""));

    send(port, "/status/404", "{}").await;
    let event = next_log_event(&mut errors_only).await;
    assert!(
        event.contains("/status/404") && !event.contains("live-path"),
        "the filtered stream skipped the 200: {event}"
    );
    let (status, _) = app.get_text("/logs/events?status=abc", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    drop(all);
    drop(errors_only);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_proxy_with_logging_off_is_counted_but_not_logged() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    let quiet = app
        .create(json!({"name": "Load test", "provider": "openai", "upstream_url": mock.url, "log_requests": false}))
        .await;
    assert_eq!(quiet["log_requests"], false);
    let (quiet_id, quiet_port) = (id_of(&quiet), port_of(&quiet));
    let (_, logged_port) = proxy(&app, &mock, "Logged").await;
    let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    for _ in 0..3 {
        assert!(
            send(quiet_port, "/v1/chat/completions", body)
                .await
                .is_success()
        );
    }
    // The writer keeps order: once the later request is logged, the earlier ones would be too.
    assert!(
        send(logged_port, "/v1/chat/completions", body)
            .await
            .is_success()
    );
    wait_for_logs(&app, 1).await;
    let (_, quiet_logs) = app.get(&format!("/api/logs?proxy_id={quiet_id}")).await;
    assert_eq!(quiet_logs["total"], 0, "{quiet_logs}");
    let (_, metrics) = app.get("/api/metrics").await;
    assert_eq!(
        metrics["requests_total"], 4,
        "metrics count every request: {metrics}"
    );
    let (_, cards) = app.get_text("/proxies", false).await;
    assert!(cards.contains("logs off"), "the card says so");

    // Configure without the box ticked keeps it off; ticking it turns logging back on.
    let form = |log: bool| {
        let mut fields = vec![
            ("name", "Load test"),
            ("port", ""),
            ("description", ""),
            ("tags", ""),
            ("upstream_url", mock.url.as_str()),
            ("cache_fields", "1"),
            ("cache_enabled", "on"),
            ("cache_mode", "read_write"),
            ("cache_ttl_seconds", ""),
        ];
        if log {
            fields.push(("log_requests", "on"));
        }
        fields
    };
    let saved = app
        .post_form(&format!("/proxies/{quiet_id}"), &form(true), false)
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    let (_, reloaded) = app.get(&format!("/api/proxies/{quiet_id}")).await;
    assert_eq!(reloaded["log_requests"], true);
    assert!(
        send(quiet_port, "/v1/chat/completions", body)
            .await
            .is_success()
    );
    wait_for_logs(&app, 2).await;
    let (_, switched_off) = app
        .patch(
            &format!("/api/proxies/{quiet_id}"),
            json!({"log_requests": "no"}),
        )
        .await;
    assert_eq!(switched_off["error"]["field"], "log_requests");
}
