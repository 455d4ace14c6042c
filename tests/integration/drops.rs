//! Writes that never reach the database: each is counted in `/metrics`, `/api/metrics` and on
//! the dashboard, and a row SQLite refuses is lost alone, not with the batch it came in.

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::support::{TestApp, id_of, port_block, port_of};
use super::upstream::MockUpstream;

/// How long the background writer gets to land what the test sent.
const WRITE_WAIT: Duration = Duration::from_secs(15);

async fn chat(port: u16, prompt: &str) -> StatusCode {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]});
    let mut response = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .insert_header(("Authorization", "Bearer sk-test"))
        .send_json(&body)
        .await
        .expect("proxied");
    response.body().await.expect("body");
    response.status()
}

/// The value of one series of the Prometheus text, or `None` without that series.
fn series(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn prometheus(app: &TestApp) -> String {
    let (status, text) = app.get_text("/metrics", false).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

async fn logged(app: &TestApp, proxy_id: i64) -> u64 {
    let (status, body) = app
        .get(&format!("/api/logs?proxy_id={proxy_id}&limit=1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total"].as_u64().expect("a total")
}

async fn cache_entries(app: &TestApp, proxy_id: i64) -> u64 {
    let (status, body) = app.get(&format!("/api/proxies/{proxy_id}/cache")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"].as_u64().expect("entries")
}

/// The sum of every `rubberduck_dropped_writes_total` series of one `what`.
fn dropped_of(text: &str, what: &str) -> u64 {
    let prefix = format!(r#"rubberduck_dropped_writes_total{{what="{what}","#);
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn open_database(app: &TestApp) -> diesel::SqliteConnection {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let path = app.data_dir().join("rubberduck.sqlite3");
    let mut conn = diesel::SqliteConnection::establish(path.to_str().expect("utf-8 path"))
        .expect("open the database");
    conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
        .expect("pragmas");
    conn
}

/// Removes a proxy's row behind the app's back, as a delete does, while the proxy keeps
/// serving: every cache entry it stores from now on is refused by the foreign key, just like
/// one queued before its proxy was deleted.
fn delete_row_of(app: &TestApp, proxy_id: i64) {
    use diesel::connection::SimpleConnection;
    open_database(app)
        .batch_execute(&format!("DELETE FROM proxies WHERE id = {proxy_id};"))
        .expect("delete the proxy's row");
}

#[actix_web::test]
async fn writes_past_a_full_queue_are_counted_log_rows_and_cache_entries_alike() {
    use diesel::connection::SimpleConnection;
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start_configured(port_block(), |args| args.write_queue = 8).await;
    let proxy = app
        .create(json!({"name": "Busy", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let id = id_of(&proxy);
    // Holding SQLite's write lock stalls the writer on its first batch, so the queue of eight
    // fills up: each miss below submits a log row and a cache entry.
    let mut lock = open_database(&app);
    lock.batch_execute("BEGIN IMMEDIATE;")
        .expect("take the write lock");
    const SENT: u64 = 40;
    for n in 0..SENT {
        assert_eq!(
            chat(port_of(&proxy), &format!("prompt {n}")).await,
            StatusCode::OK
        );
    }
    lock.batch_execute("COMMIT;")
        .expect("release the write lock");

    // Every row either landed or was counted, whatever the writer managed meanwhile.
    let deadline = Instant::now() + WRITE_WAIT;
    let (logs, entries, text) = loop {
        let text = prometheus(&app).await;
        let (logs, entries) = (logged(&app, id).await, cache_entries(&app, id).await);
        let whole = logs + dropped_of(&text, "log") == SENT
            && entries + dropped_of(&text, "cache_entry") == SENT;
        if whole || Instant::now() > deadline {
            break (logs, entries, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        logs + dropped_of(&text, "log"),
        SENT,
        "{logs} logged: {text}"
    );
    assert_eq!(
        entries + dropped_of(&text, "cache_entry"),
        SENT,
        "{entries} stored: {text}"
    );
    let full = |what: &str| {
        series(
            &text,
            &format!(r#"rubberduck_dropped_writes_total{{what="{what}",why="queue_full"}}"#),
        )
        .unwrap_or(0)
    };
    assert!(full("log") > 0, "{text}");
    assert!(full("cache_entry") > 0, "{text}");
    assert_eq!(
        series(&text, "rubberduck_log_entries_dropped_total"),
        Some(dropped_of(&text, "log"))
    );
    let (_, metrics) = app.get("/api/metrics").await;
    let total = metrics["dropped_writes_total"].as_u64().expect("a total");
    assert!(
        total >= dropped_of(&text, "log") + dropped_of(&text, "cache_entry"),
        "{metrics}"
    );
    let (_, html) = app.get_text("/dashboard/stats", true).await;
    assert!(html.contains("writes dropped"), "{html}");
    drop(lock);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_refused_cache_entry_is_dropped_alone_and_counted() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let upstream = format!("{}/v1", mock.url);
    let doomed = app
        .create(json!({"name": "Doomed", "provider": "openai", "upstream_url": upstream}))
        .await;
    let other = app
        .create(json!({"name": "Other", "provider": "openai", "upstream_url": upstream}))
        .await;
    let (doomed_id, other_id) = (id_of(&doomed), id_of(&other));
    delete_row_of(&app, doomed_id);

    // The refused entry in the middle of the other proxy's traffic, so that its batch holds
    // log rows and cache entries of both proxies (a batch gathers for 50 ms).
    const EACH_SIDE: u64 = 38;
    for n in 0..EACH_SIDE {
        assert_eq!(
            chat(port_of(&other), &format!("before {n}")).await,
            StatusCode::OK
        );
    }
    assert_eq!(chat(port_of(&doomed), "orphan").await, StatusCode::OK);
    for n in 0..EACH_SIDE {
        assert_eq!(
            chat(port_of(&other), &format!("after {n}")).await,
            StatusCode::OK
        );
    }

    let rejected = r#"rubberduck_dropped_writes_total{what="cache_entry",why="rejected"}"#;
    let deadline = Instant::now() + WRITE_WAIT;
    let text = loop {
        let text = prometheus(&app).await;
        let counted = series(&text, rejected).unwrap_or(0) >= 1;
        if counted && logged(&app, other_id).await == 2 * EACH_SIDE || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        logged(&app, other_id).await,
        2 * EACH_SIDE,
        "every log row of the other proxy"
    );
    assert_eq!(logged(&app, doomed_id).await, 1, "the orphan's own log row");
    assert_eq!(
        cache_entries(&app, other_id).await,
        2 * EACH_SIDE,
        "every cache entry of the other proxy"
    );
    assert_eq!(series(&text, rejected), Some(1), "{text}");
    let dropped: u64 = text
        .lines()
        .filter(|line| line.starts_with("rubberduck_dropped_writes_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(dropped, 1, "nothing else was lost: {text}");
    assert_eq!(
        series(&text, "rubberduck_log_entries_dropped_total"),
        Some(0)
    );

    let (_, metrics) = app.get("/api/metrics").await;
    assert_eq!(metrics["dropped_writes_total"], 1, "{metrics}");
    assert_eq!(
        metrics["dropped_writes"],
        json!([{"what": "cache_entry", "why": "rejected", "count": 1}])
    );
    let (status, html) = app.get_text("/dashboard/stats", true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("1 write dropped"), "{html}");
    assert!(html.contains("1 cache_entry (rejected)"), "{html}");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn without_losses_nothing_shows_as_dropped() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Fine", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    assert_eq!(chat(port_of(&proxy), "hello").await, StatusCode::OK);
    let text = prometheus(&app).await;
    for what in ["log", "cache_entry", "cache_hit", "cache_delete", "rollup"] {
        for why in ["queue_full", "rejected", "unavailable"] {
            let name = format!(r#"rubberduck_dropped_writes_total{{what="{what}",why="{why}"}}"#);
            assert_eq!(series(&text, &name), Some(0), "{name} in {text}");
        }
    }
    let (_, metrics) = app.get("/api/metrics").await;
    assert_eq!(metrics["dropped_writes_total"], 0, "{metrics}");
    assert_eq!(metrics["dropped_writes"], Value::Array(Vec::new()));
    let (_, html) = app.get_text("/dashboard/stats", true).await;
    assert!(!html.contains("data-stat=\"dropped\""), "{html}");
    app.shutdown().await;
    mock.stop().await;
}
