//! Request logs and metrics through the API: fields, filters, exports, purge, numbers that
//! agree with the traffic sent, and no credential anywhere on disk.

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::support::{TestApp, id_of, port_of};
use super::upstream::MockUpstream;

const CANARY: &str = "sk-canary-4f9d2b7e-do-not-store";

async fn send(port: u16, path: &str, body: &str) -> StatusCode {
    let mut response = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .insert_header(("Authorization", format!("Bearer {CANARY}")))
        .insert_header(("x-api-key", CANARY))
        .insert_header(("User-Agent", "telemetry-test/1.0"))
        .content_type("application/json")
        .send_body(body.to_owned())
        .await
        .expect("proxied");
    response.body().await.expect("body");
    response.status()
}

/// Logs are written in the background: wait until `total` entries are there.
async fn logs(app: &TestApp, query: &str, total: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.get(&format!("/api/logs?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["total"] == total || Instant::now() > deadline {
            assert_eq!(body["total"], total, "{query}: {body}");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A proxy with four kinds of traffic: a miss, a hit, an upstream 500 and an injected 429.
async fn traffic(app: &TestApp, mock: &MockUpstream) -> (i64, u16) {
    let proxy = app
        .create(json!({"name": "Logged", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let (id, port) = (id_of(&proxy), port_of(&proxy));
    let body = r#"{"model":"gpt-4o-mini","input":"hello"}"#;
    assert_eq!(send(port, "/v1/responses", body).await, StatusCode::OK);
    assert_eq!(send(port, "/v1/responses", body).await, StatusCode::OK);
    assert_eq!(
        send(port, "/status/500", "{}").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    app.put_json(
        &format!("/api/proxies/{id}/failure-config"),
        json!({"errors": {"enabled": true, "rates": {"429": 1.0}}}),
    )
    .await;
    assert_eq!(
        send(port, "/v1/responses", body).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.put_json(&format!("/api/proxies/{id}/failure-config"), json!({}))
        .await;
    (id, port)
}

#[actix_web::test]
async fn every_request_is_logged_with_tokens_cost_cache_and_failure() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let (id, _) = traffic(&app, &mock).await;
    let body = logs(&app, "limit=10", 4).await;
    let entries = body["logs"].as_array().expect("a list");
    // Newest first: injected, upstream error, hit, miss.
    let (injected, upstream, hit, miss) = (&entries[0], &entries[1], &entries[2], &entries[3]);

    assert_eq!(miss["proxy_id"], id);
    assert_eq!(miss["proxy_name"], "Logged");
    assert_eq!(miss["provider"], "openai");
    assert_eq!(miss["method"], "POST");
    assert_eq!(miss["path"], "/v1/responses");
    assert_eq!(miss["model"], "gpt-4o-mini");
    assert_eq!(miss["client_ip"], "127.0.0.1");
    assert_eq!(miss["status"], 200);
    assert_eq!(miss["cache"], "miss");
    assert_eq!(miss["failure"], Value::Null);
    assert_eq!(miss["stream"], false);
    assert_eq!(miss["input_tokens"], 11);
    assert_eq!(miss["output_tokens"], 7);
    let cost = miss["cost_usd"].as_f64().expect("a cost for a known model");
    assert!(
        (cost - (11.0 * 0.15 + 7.0 * 0.6) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(miss["request_bytes"], 39);
    assert!(miss["response_bytes"].as_u64().is_some_and(|b| b > 0));
    assert_eq!(miss["user_agent"], "telemetry-test/1.0");
    assert_eq!(miss["prompt_hash"].as_str().map(str::len), Some(64));
    assert!(miss["latency_ms"].as_f64().is_some_and(|l| l > 0.0));
    assert!(
        miss["upstream_latency_ms"]
            .as_f64()
            .is_some_and(|l| l > 0.0)
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(miss["timestamp"].as_str().unwrap_or_default())
            .is_ok()
    );

    assert_eq!(hit["cache"], "hit");
    assert_eq!(hit["prompt_hash"], miss["prompt_hash"]);
    assert_eq!(
        hit["cost_usd"], miss["cost_usd"],
        "a hit logs the cost it avoided"
    );
    assert_eq!(hit["upstream_latency_ms"], Value::Null);

    assert_eq!(upstream["status"], 500);
    assert_eq!(upstream["failure"], "upstream_error");

    assert_eq!(injected["status"], 429);
    assert_eq!(injected["failure"], "error_injection");
    assert_eq!(injected["cost_usd"], Value::Null);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn filters_and_pagination_narrow_the_logs() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let (id, _) = traffic(&app, &mock).await;
    logs(&app, "", 4).await;
    logs(&app, "cache=hit", 1).await;
    logs(&app, "cache=miss", 2).await;
    logs(&app, "status=4xx", 1).await;
    logs(&app, "status=500", 1).await;
    logs(&app, "status=2xx", 2).await;
    logs(&app, "failure=error_injection", 1).await;
    logs(&app, "failure=any", 2).await;
    logs(&app, "q=status", 1).await;
    logs(&app, "q=gpt-4o-mini", 3).await;
    logs(&app, &format!("proxy_id={id}"), 4).await;
    logs(&app, &format!("proxy_id={}", id + 1), 0).await;
    logs(&app, "since=2000-01-01T00:00:00Z", 4).await;
    logs(&app, "until=2000-01-01T00:00:00Z", 0).await;
    let page = logs(&app, "limit=3&offset=2", 4).await;
    assert_eq!(page["logs"].as_array().map(Vec::len), Some(2));
    for bad in ["since=yesterday", "cache=maybe", "status=abc"] {
        let (status, body) = app.get(&format!("/api/logs?{bad}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn exports_parse_and_honour_filters() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    traffic(&app, &mock).await;
    logs(&app, "", 4).await;
    let (status, csv) = app
        .get_text("/api/logs/export?format=csv&status=2xx", false)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().expect("a header row").clone();
    assert_eq!(headers.get(0), Some("id"));
    let status_column = headers
        .iter()
        .position(|h| h == "status")
        .expect("a status column");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a record")).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get(status_column) == Some("200")));

    let (_, json_export) = app
        .get_text("/api/logs/export?format=json&cache=hit", false)
        .await;
    let parsed: Value = serde_json::from_str(&json_export).expect("a JSON array");
    assert_eq!(parsed.as_array().map(Vec::len), Some(1));
    assert_eq!(parsed[0]["cache"], "hit");

    let (_, jsonl) = app.get_text("/api/logs/export?format=jsonl", false).await;
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    let (status, _) = app.get_text("/api/logs/export?format=xml", false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, empty) = app
        .get_text("/api/logs/export?format=json&proxy_id=999", false)
        .await;
    assert_eq!(serde_json::from_str::<Value>(&empty).ok(), Some(json!([])));
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn purging_needs_confirmation_and_a_date() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    traffic(&app, &mock).await;
    logs(&app, "", 4).await;
    let (status, _) = app.delete("/api/logs?before=2100-01-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no confirm");
    let (status, _) = app.delete("/api/logs?confirm=true").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no date");
    let (_, none) = app
        .delete("/api/logs?before=2000-01-01T00:00:00Z&confirm=true")
        .await;
    assert_eq!(none["deleted"], 0);
    let (status, purged) = app
        .delete("/api/logs?before=2100-01-01T00:00:00Z&confirm=true")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(purged["deleted"], 4);
    logs(&app, "", 0).await;
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn purging_a_range_keeps_what_lies_outside_it() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Ranged", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let port = port_of(&proxy);
    let request = |input: &str| format!(r#"{{"model":"gpt-4o-mini","input":"{input}"}}"#);
    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let pause = || tokio::time::sleep(Duration::from_millis(5));

    send(port, "/v1/responses", &request("before the range")).await;
    logs(&app, "", 1).await;
    pause().await;
    let from = now();
    pause().await;
    send(port, "/v1/responses", &request("in the range")).await;
    send(port, "/v1/responses", &request("also in it")).await;
    logs(&app, "", 3).await;
    pause().await;
    let to = now();
    pause().await;
    send(port, "/v1/responses", &request("after the range")).await;
    let all = logs(&app, "", 4).await;

    let (status, reversed) = app
        .delete(&format!("/api/logs?since={to}&before={from}&confirm=true"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reversed}");
    let (status, purged) = app
        .delete(&format!("/api/logs?since={from}&before={to}&confirm=true"))
        .await;
    assert_eq!(status, StatusCode::OK, "{purged}");
    assert_eq!(purged["deleted"], 2);

    let kept = logs(&app, "", 2).await;
    let ids = |page: &Value| -> Vec<i64> {
        page["logs"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|entry| entry["id"].as_i64())
            .collect()
    };
    let (all, kept) = (ids(&all), ids(&kept));
    assert_eq!(kept, [all[0], all[3]], "the newest and the oldest stay");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn metrics_agree_with_the_traffic() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    traffic(&app, &mock).await;
    let logged = logs(&app, "", 4).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (_, metrics) = app.get("/api/metrics").await;
        if metrics["requests_total"] == 4 || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(metrics["requests_total"], 4, "{metrics}");
    assert_eq!(metrics["cache_hits_total"], 1);
    assert_eq!(metrics["cache_hit_rate"], 0.25);
    assert_eq!(metrics["error_rate"], 0.5);
    assert_eq!(metrics["injected_failures_total"], 1);
    assert_eq!(metrics["upstream_failures_total"], 1);
    assert_eq!(metrics["in_flight"], 0);
    assert_eq!(
        metrics["proxies"],
        json!({"total": 1, "running": 1, "stopped": 0})
    );
    let spent = (11.0 * 0.15 + 7.0 * 0.6) / 1e6;
    let today = metrics["cost_today_usd"].as_f64().expect("cost today");
    assert!(
        (today - spent).abs() < 1e-12,
        "only the miss was paid for: {today}"
    );
    assert!(
        metrics["cost_month_usd"]
            .as_f64()
            .is_some_and(|m| m >= today)
    );
    let saved = metrics["saved_today_usd"].as_f64().expect("saved today");
    assert!(
        (saved - spent).abs() < 1e-12,
        "the hit saved what the miss cost: {saved}"
    );
    assert!(
        metrics["saved_month_usd"]
            .as_f64()
            .is_some_and(|m| (m - saved).abs() < 1e-12)
    );
    // Percentiles are estimates within histogram buckets whose bounds are at most 2.5 apart, so
    // each lies within that factor of the latencies actually logged.
    let mut latencies: Vec<f64> = logged["logs"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["latency_ms"].as_f64())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |name: &str| {
        metrics["latency_ms"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (p50, p95, p99) = (percentile("p50"), percentile("p95"), percentile("p99"));
    assert!(p50 <= p95 && p95 <= p99, "{metrics}");
    // The first bucket, up to 0.1 ms, starts at zero.
    let floor = if latencies[1] <= 0.1 {
        0.0
    } else {
        latencies[1] / 2.5
    };
    assert!(
        p50 >= floor && p50 <= latencies[1] * 2.5,
        "p50 {p50} against {latencies:?}"
    );
    assert!(p99 <= latencies[3] * 2.5, "p99 {p99} against {latencies:?}");
    assert!(
        metrics["requests_per_minute"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );

    // The dashboard shows the same numbers: requests, tokens, what was spent and what was saved.
    let (status, dashboard) = app.get_text("/dashboard/stats", true).await;
    assert_eq!(status, StatusCode::OK);
    let stat = |name: &str| -> String {
        let marker = format!("data-stat=\"{name}\"");
        let at = dashboard
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} on the dashboard: {dashboard}"));
        let rest = &dashboard[at..];
        let start = rest.find('>').map_or(0, |i| i + 1);
        let end = rest.find("</span>").unwrap_or(rest.len());
        rest[start..end].trim().to_owned()
    };
    assert_eq!(stat("requests"), "4");
    assert_eq!(stat("tokens"), "22 in / 14 out tokens");
    assert_eq!(stat("cost-today"), "$0.00000585");
    assert_eq!(stat("error-rate"), "50.0%");
    assert_eq!(stat("hit-rate"), "25.0%");
    assert_eq!(stat("saved-today"), "$0.00000585 saved by the cache today");

    let (status, text) = app.get_text("/metrics", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains(r#"rubberduck_requests_total{proxy="Logged",provider="openai",status="200",cache="miss"} 1"#), "{text}");
    assert!(text.contains(r#"rubberduck_requests_total{proxy="Logged",provider="openai",status="200",cache="hit"} 1"#), "{text}");
    assert!(
        text.contains(
            r#"rubberduck_injected_failures_total{proxy="Logged",kind="error_injection"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("rubberduck_request_duration_seconds_count 4"),
        "{text}"
    );
    assert!(text.contains("rubberduck_in_flight_requests 0"));
    let value_of = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    // Tokens of the miss and of the hit that repeated it; the failures carried no usage.
    assert_eq!(
        value_of(r#"rubberduck_tokens_total{proxy="Logged",direction="input"}"#),
        22.0
    );
    assert_eq!(
        value_of(r#"rubberduck_tokens_total{proxy="Logged",direction="output"}"#),
        14.0
    );
    assert!((value_of(r#"rubberduck_cost_usd_total{proxy="Logged"}"#) - spent).abs() < 1e-12);
    assert!((value_of(r#"rubberduck_cost_saved_usd_total{proxy="Logged"}"#) - spent).abs() < 1e-12);
    assert!(text.contains("rubberduck_log_entries_dropped_total 0"));

    app.restart().await;
    let (_, after) = app.get("/api/metrics").await;
    assert_eq!(after["requests_total"], 4, "roll-ups survive a restart");
    assert_eq!(after["saved_today_usd"], metrics["saved_today_usd"]);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn no_client_credential_reaches_the_disk() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    traffic(&app, &mock).await;
    logs(&app, "", 4).await;
    let data_dir = app.data_dir().to_path_buf();
    app.shutdown().await;
    mock.stop().await;
    let mut scanned = 0;
    for entry in std::fs::read_dir(&data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("readable");
        scanned += 1;
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "{} holds a client API key",
            path.display()
        );
    }
    assert!(scanned >= 1, "the database was scanned");
}

#[actix_web::test]
async fn cards_show_current_traffic_and_update_live() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Busy", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let (id, port) = (id_of(&proxy), port_of(&proxy));
    let mut events = awc::Client::new()
        .get(app.url("/proxies/events"))
        .insert_header((
            "Authorization",
            format!("Bearer {}", super::support::TEST_TOKEN),
        ))
        .send()
        .await
        .expect("the event stream opens");
    for n in 0..5 {
        send(
            port,
            "/v1/responses",
            &format!(r#"{{"model":"gpt-4o-mini","n":{n}}}"#),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    let wanted = format!("event: proxy-{id}");
    while !(seen.contains(&wanted) && seen.contains("5 requests")) {
        assert!(
            Instant::now() < deadline,
            "no card update with the new traffic: {seen}"
        );
        let chunk = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut events),
        )
        .await
        .expect("the stream keeps talking")
        .expect("a chunk")
        .expect("readable");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains("1.0 req/min"),
        "5 requests over 5 minutes: {seen}"
    );
    let (_, html) = app.get_text("/proxies", false).await;
    assert!(
        html.contains("1.0 req/min") && html.contains("0% errors (1 h)"),
        "the card on a fresh page"
    );
    drop(events);
    app.shutdown().await;
    mock.stop().await;
}
