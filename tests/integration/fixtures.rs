//! Recorded answers as fixture files, cassettes and per-request cache control, and the cache's
//! read-your-writes guarantees, through running proxies and the admin API. The SDK suite
//! (tests/sdk/test_fixtures.py) records and replays through the official clients.

use std::path::Path;
use std::time::Duration;

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::cache::{Proxy, patch_cache, proxy, send, stats, wait_for_entries};
use super::proxied::Call;
use super::scenarios::raw;
use super::support::{TestApp, authorized};
use super::upstream::MockUpstream;

/// A chat request no other test sends, so that its answer is a miss first.
fn chat(prompt: &str, stream: bool) -> String {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "stream": stream})
        .to_string()
}

/// Every `*.json` file under `dir`, with its bytes, sorted by path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let name = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string();
                found.push((name, std::fs::read(&path).expect("readable")));
            }
        }
    }
    found.sort();
    found
}

/// Waits until `dir` holds `count` fixture files (they are written in the background).
async fn wait_for_files(dir: &Path, count: usize) -> Vec<(String, Vec<u8>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = files(dir);
        if found.len() >= count {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} fixture files in {}, wanted {count}",
            found.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn bound(dir: &Path, mode: &str) -> Value {
    json!({"mode": mode, "fixtures_dir": dir.display().to_string()})
}

#[actix_web::test]
async fn a_fixtures_directory_records_and_a_fresh_data_dir_replays_it_offline() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("fixtures dir");
    let mut recording_app = TestApp::start().await;
    let recorder = proxy(
        &recording_app,
        "openai",
        &mock,
        bound(dir.path(), "read_write"),
    )
    .await;
    let plain = Call::post("/v1/chat/completions", &chat("fixture plain", false)).stamp("json");
    let streamed = Call::post("/v1/chat/completions", &chat("fixture stream", true)).stamp("sse");
    let recorded_plain = send(
        &recorder,
        &plain
            .clone()
            .header("authorization", "Bearer sk-canary-fixtures"),
    )
    .await;
    recorded_plain.assert_miss("recording the plain answer");
    let recorded_stream = send(&recorder, &streamed).await;
    recorded_stream.assert_miss("recording the stream");
    let written = wait_for_files(dir.path(), 2).await;
    assert_eq!(
        written.len(),
        2,
        "{:?}",
        written.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, bytes) in &written {
        assert!(name.starts_with("chat-gpt-4o-mini-"), "{name}");
        let text = String::from_utf8(bytes.clone()).expect("text");
        assert!(!text.contains("sk-canary"), "{name} holds the credential");
        assert!(!text.to_lowercase().contains("authorization"), "{name}");
        assert!(
            !text.contains("x-mock-stamp"),
            "{name}: request headers are not recorded"
        );
        let fixture: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(fixture["provider"], "openai");
        assert_eq!(fixture["request"]["path"], "/v1/chat/completions");
        assert!(
            text.starts_with("{\n  \"key\": "),
            "pretty, key first: {text}"
        );
    }
    let stream_file: Value = written
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).expect("JSON"))
        .find(|f| f["response"]["chunks"].is_array())
        .expect("the stream's file");
    let chunks = stream_file["response"]["chunks"]
        .as_array()
        .expect("chunks");
    assert_eq!(chunks.len(), 5, "{stream_file}");
    assert!(
        chunks[0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("data: "))
    );
    assert!(chunks.iter().all(|c| c["after_ms"].is_u64()));
    recording_app.shutdown().await;
    let upstream_before = mock.requests().len();

    let mut replaying_app = TestApp::start().await;
    let replayer = proxy(
        &replaying_app,
        "openai",
        &mock,
        bound(dir.path(), "replay_only"),
    )
    .await;
    let (_, info) = replaying_app
        .get(&format!("/api/proxies/{}/cache", replayer.id))
        .await;
    assert_eq!(info["entries"], 2, "{info}");
    assert_eq!(info["fixtures"]["loaded"], 2, "{info}");
    let replayed_plain = send(&replayer, &plain).await;
    replayed_plain.assert_hit("replaying the plain answer");
    assert_eq!(replayed_plain.json(), recorded_plain.json());
    let replayed_stream = send(&replayer, &streamed).await;
    replayed_stream.assert_hit("replaying the stream");
    assert_eq!(replayed_stream.body, recorded_stream.body, "the same bytes");
    let changed = send(
        &replayer,
        &Call::post(
            "/v1/chat/completions",
            &chat("fixture plain, changed", false),
        ),
    )
    .await;
    assert_eq!(
        changed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        changed.text()
    );
    assert_eq!(changed.json()["error"]["code"], "not_cached");
    assert_eq!(
        mock.requests().len(),
        upstream_before,
        "nothing went upstream"
    );
    replaying_app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn recording_an_unchanged_answer_again_leaves_the_file_as_it_was_and_reload_reads_edits() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("fixtures dir");
    let mut app = TestApp::start().await;
    let recorder = proxy(&app, "openai", &mock, bound(dir.path(), "refresh")).await;
    // Not stamped: the mock answers this request the same every time.
    let call = Call::post("/v1/chat/completions", &chat("the same every time", false))
        .header("x-mock-delay-ms", "30");
    send(&recorder, &call).await.assert_miss("first recording");
    let first = wait_for_files(dir.path(), 1).await;
    let modified = std::fs::metadata(dir.path().join(&first[0].0))
        .and_then(|m| m.modified())
        .expect("mtime");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = send(&recorder, &call).await;
    again.assert_miss("refresh always asks the upstream");
    assert_eq!(mock.requests().len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(files(dir.path()), first, "byte for byte");
    let unchanged = std::fs::metadata(dir.path().join(&first[0].0))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(unchanged, modified, "not even rewritten");

    // A reviewer edits the answer in the file; a reload serves the edit.
    let path = dir.path().join(&first[0].0);
    let mut fixture: Value = serde_json::from_slice(&first[0].1).expect("JSON");
    fixture["response"]["body"] = json!({"edited": true});
    std::fs::write(&path, serde_json::to_vec_pretty(&fixture).expect("JSON")).expect("write");
    std::fs::write(dir.path().join("notes.json"), b"{\"not\": \"a fixture\"}").expect("write");
    patch_cache(&app, &recorder, json!({"mode": "read_write"})).await;
    let (status, report) = app
        .post_empty(&format!("/api/proxies/{}/cache/reload", recorder.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["loaded"], 1, "{report}");
    assert_eq!(report["files"], 2, "{report}");
    assert_eq!(report["rejected"][0]["file"], "notes.json", "{report}");
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a fixture")),
        "{report}"
    );
    let replayed = send(&recorder, &call).await;
    replayed.assert_hit("the edited fixture");
    assert_eq!(replayed.json(), json!({"edited": true}));
    assert_eq!(mock.requests().len(), 2);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn cassettes_keep_their_own_answers_and_rubberduck_headers_never_reach_the_upstream() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("fixtures dir");
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, bound(dir.path(), "read_write")).await;
    let call = Call::post(
        "/v1/chat/completions",
        &chat("one prompt, two tests", false),
    )
    .stamp("json");
    let first = send(
        &proxy,
        &call
            .clone()
            .header("x-rubberduck-cassette", "tests/test_a.py::test_one"),
    )
    .await;
    let second = send(
        &proxy,
        &call.clone().header("x-rubberduck-cassette", "test_two"),
    )
    .await;
    first.assert_miss("cassette one");
    second.assert_miss("cassette two: its own partition");
    assert_ne!(first.key(), second.key());
    assert_ne!(first.body, second.body, "two upstream answers");
    let again = send(
        &proxy,
        &call
            .clone()
            .header("x-rubberduck-cassette", "tests/test_a.py::test_one"),
    )
    .await;
    again.assert_hit("cassette one again");
    assert_eq!(again.body, first.body);
    let written = wait_for_files(dir.path(), 2).await;
    let folders: Vec<&str> = written
        .iter()
        .map(|(name, _)| name.rsplit_once('/').map_or("", |(folder, _)| folder))
        .collect();
    assert!(
        folders.contains(&"tests/test_a.py__test_one"),
        "{folders:?}"
    );
    assert!(folders.contains(&"test_two"), "{folders:?}");
    for recorded in mock.requests() {
        assert!(
            recorded
                .headers
                .iter()
                .all(|(name, _)| !name.starts_with("x-rubberduck-")),
            "{:?}",
            recorded.headers
        );
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_request_may_bypass_refresh_or_replay_only_and_bad_values_are_refused() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call =
        Call::post("/v1/chat/completions", &chat("per-request control", false)).stamp("json");
    let missing = send(
        &proxy,
        &call.clone().header("x-rubberduck-cache", "replay-only"),
    )
    .await;
    assert_eq!(
        missing.status,
        StatusCode::BAD_REQUEST,
        "{}",
        missing.text()
    );
    assert_eq!(missing.json()["error"]["code"], "not_cached");
    assert_eq!(mock.requests().len(), 0, "replay-only never goes upstream");

    let bypassed = send(&proxy, &call.clone().header("x-rubberduck-cache", "bypass")).await;
    assert_eq!(bypassed.cache(), "BYPASS");
    let recorded = send(&proxy, &call).await;
    recorded.assert_miss("bypass stored nothing");
    wait_for_entries(&app, &proxy, 1).await;
    send(&proxy, &call).await.assert_hit("recorded");
    let refreshed = send(
        &proxy,
        &call.clone().header("x-rubberduck-cache", "refresh"),
    )
    .await;
    refreshed.assert_miss("refresh asks the upstream");
    assert_ne!(refreshed.body, recorded.body);
    let after = send(&proxy, &call).await;
    after.assert_hit("the refreshed answer");
    assert_eq!(after.body, refreshed.body, "refresh overwrote the entry");
    assert_eq!(mock.requests().len(), 3);

    let bad = send(
        &proxy,
        &call.clone().header("x-rubberduck-cache", "sometimes"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("x-rubberduck-cache")),
        "{}",
        bad.text()
    );
    patch_cache(&app, &proxy, json!({"mode": "replay_only"})).await;
    let refused = send(
        &proxy,
        &call.clone().header("x-rubberduck-cache", "refresh"),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.text()
    );
    assert!(
        refused.text().contains("replays only"),
        "{}",
        refused.text()
    );
    assert_eq!(mock.requests().len(), 3);
    app.shutdown().await;
    mock.stop().await;
}

async fn export(app: &TestApp, proxy: &Proxy, format: &str) -> Vec<u8> {
    let mut reply = authorized(awc::Client::default().get(app.url(&format!(
        "/api/proxies/{}/cache/export?format={format}",
        proxy.id
    ))))
    .send()
    .await
    .expect("export");
    assert_eq!(reply.status(), StatusCode::OK);
    reply.body().limit(64 << 20).await.expect("body").to_vec()
}

async fn import(app: &TestApp, proxy: &Proxy, body: Vec<u8>) -> (StatusCode, Value) {
    let mut reply = authorized(
        awc::Client::default().post(app.url(&format!("/api/proxies/{}/cache/import", proxy.id))),
    )
    .send_body(body)
    .await
    .expect("import");
    let status = reply.status();
    (status, reply.json().await.expect("JSON"))
}

#[actix_web::test]
async fn export_and_import_carry_entries_between_data_dirs_and_report_what_they_did() {
    let mock = MockUpstream::start().await;
    let mut source = TestApp::start().await;
    let recorder = proxy(&source, "openai", &mock, Value::Null).await;
    let calls = [
        Call::post("/v1/chat/completions", &chat("export one", false)).stamp("json"),
        Call::post("/v1/chat/completions", &chat("export two", true)).stamp("sse"),
    ];
    let mut answers = Vec::new();
    for call in &calls {
        answers.push(send(&recorder, call).await.body);
    }
    // Right after the traffic: the export includes what the writer has not stored yet.
    let packed = export(&source, &recorder, "tar.gz").await;
    assert_eq!(&packed[..2], &[0x1f, 0x8b], "gzip");
    let jsonl = export(&source, &recorder, "jsonl").await;
    assert_eq!(
        jsonl
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        2
    );
    source.shutdown().await;

    let mut target = TestApp::start().await;
    let replayer = proxy(&target, "openai", &mock, json!({"mode": "replay_only"})).await;
    let (status, report) = import(&target, &replayer, packed).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["added"].as_u64(), report["replaced"].as_u64()),
        (Some(2), Some(0)),
        "{report}"
    );
    let upstream_before = mock.requests().len();
    for (call, answer) in calls.iter().zip(&answers) {
        let replayed = send(&replayer, call).await;
        replayed.assert_hit("imported");
        assert_eq!(&replayed.body, answer);
    }
    assert_eq!(mock.requests().len(), upstream_before);

    let mut again = jsonl.clone();
    again.extend_from_slice(b"not json\n");
    let foreign = String::from_utf8(jsonl)
        .expect("text")
        .lines()
        .next()
        .expect("a line")
        .replace("\"provider\":\"openai\"", "\"provider\":\"anthropic\"");
    again.extend_from_slice(foreign.as_bytes());
    let (status, report) = import(&target, &replayer, again).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["added"].as_u64(), report["replaced"].as_u64()),
        (Some(0), Some(2)),
        "{report}"
    );
    let rejected = report["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 2, "{report}");
    assert_eq!(rejected[0]["file"], "line 3");
    assert!(
        rejected[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("anthropic")),
        "{report}"
    );
    let (status, error) = import(&target, &replayer, b"\x1f\x8bnot really".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    target.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn only_admins_bind_a_fixtures_directory_and_it_must_be_absolute() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let (status, error) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"cache": {"fixtures_dir": "fixtures"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "cache.fixtures_dir", "{error}");
    let (status, error) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"cache": {"fixtures_dir": "/nonexistent/rubberduck-fixtures", "mode": "replay_only"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no directory")),
        "{error}"
    );
    let (status, reload) = app
        .post_empty(&format!("/api/proxies/{}/cache/reload", proxy.id))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reload}");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn an_answer_is_a_hit_for_the_very_next_identical_request_streams_included() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    for round in 0..40 {
        let stream = round % 2 == 0;
        let call = Call::post(
            "/v1/chat/completions",
            &chat(&format!("read your writes {round}"), stream),
        )
        .stamp(if stream { "sse" } else { "json" })
        .header("x-mock-pause-ms", "1");
        let first = send(&proxy, &call).await;
        first.assert_miss("the first");
        let next = send(&proxy, &call).await;
        next.assert_hit(&format!("round {round}: right after the answer ended"));
        assert_eq!(next.body, first.body);
    }
    assert_eq!(mock.requests().len(), 40);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn counts_include_entries_not_yet_written() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    for round in 1..=20u64 {
        let call = Call::post(
            "/v1/chat/completions",
            &chat(&format!("counted {round}"), false),
        )
        .stamp("json");
        send(&proxy, &call).await.assert_miss("new");
        let counted = stats(&app, &proxy).await;
        assert_eq!(
            counted["entries"].as_u64(),
            Some(round),
            "right after the answer: {counted}"
        );
        assert!(
            counted["bytes"].as_u64().is_some_and(|b| b > 0),
            "{counted}"
        );
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_clear_right_after_a_store_removes_the_pending_entry_too() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    for round in 0..12 {
        let call = Call::post(
            "/v1/chat/completions",
            &chat(&format!("cleared {round}"), round % 2 == 1),
        )
        .stamp(if round % 2 == 1 { "sse" } else { "json" })
        .header("x-mock-pause-ms", "1");
        send(&proxy, &call).await.assert_miss("stored");
        let (status, cleared) = app
            .delete(&format!("/api/proxies/{}/cache", proxy.id))
            .await;
        assert_eq!(status, StatusCode::OK, "{cleared}");
        assert_eq!(cleared["entries_removed"], 1, "round {round}: {cleared}");
        assert_eq!(stats(&app, &proxy).await["entries"], 0, "round {round}");
        // Past the writer's gathering pause: a store it still held would be written by now.
        tokio::time::sleep(Duration::from_millis(120)).await;
        send(&proxy, &call)
            .await
            .assert_miss(&format!("round {round}: cleared"));
        let (status, _) = app
            .delete(&format!("/api/proxies/{}/cache", proxy.id))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    app.shutdown().await;
    mock.stop().await;
}

fn cli(args: &[&str], data_dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rubberduck"))
        .arg("fixtures")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

#[actix_web::test]
async fn the_command_line_exports_and_imports_on_a_data_dir() {
    let mock = MockUpstream::start().await;
    let mut source = TestApp::start().await;
    let recorder = proxy(&source, "openai", &mock, Value::Null).await;
    let call =
        Call::post("/v1/chat/completions", &chat("from the command line", true)).stamp("sse");
    let recorded = send(&recorder, &call).await;
    recorded.assert_miss("recorded");
    let (_, described) = source.get(&format!("/api/proxies/{}", recorder.id)).await;
    let name = described["name"].as_str().expect("a name").to_owned();
    source.shutdown().await;

    let out = tempfile::tempdir().expect("out dir");
    let archive = out.path().join("fixtures.tar.gz");
    let exported = cli(
        &[
            "export",
            "--proxy",
            &name,
            "--out",
            archive.to_str().expect("utf-8"),
        ],
        source.data_dir(),
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(String::from_utf8_lossy(&exported.stderr).contains("1 fixtures"));
    let missing = cli(&["export", "--proxy", "nobody"], source.data_dir());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no proxy named “nobody”"));

    let mut target = TestApp::start().await;
    let (status, created) = target
        .post(
            "/api/proxies",
            json!({"name": name, "provider": "openai", "upstream_url": format!("{}/v1", mock.url),
                   "cache": {"mode": "replay_only"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    target.shutdown().await;
    let imported = cli(
        &["import", "--proxy", &name, archive.to_str().expect("utf-8")],
        target.data_dir(),
    );
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("1 added, 0 replaced, 0 rejected"),
        "{}",
        String::from_utf8_lossy(&imported.stdout)
    );
    target.restart().await;
    let (_, listed) = target.get("/api/proxies").await;
    let replayer = listed
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name.as_str()))
        .expect("the proxy")
        .clone();
    let base = format!("http://127.0.0.1:{}", super::support::port_of(&replayer));
    let before = mock.requests().len();
    let replayed = super::proxied::send(&base, &call).await;
    replayed.assert_hit("imported from the command line");
    assert_eq!(replayed.body, recorded.body);
    assert_eq!(mock.requests().len(), before);
    target.shutdown().await;
    mock.stop().await;
}

fn chat_with(content: &str, temperature: f64, user: &str) -> String {
    json!({"model": "gpt-4o-mini", "temperature": temperature, "user": user,
           "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]})
    .to_string()
}

#[actix_web::test]
async fn a_replay_only_miss_names_the_nearest_entry_and_the_fields_that_changed() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    for (content, temperature) in [("explain me", 0.0), ("something else entirely", 1.0)] {
        let call = Call::post(
            "/v1/chat/completions",
            &chat_with(content, temperature, "u1"),
        )
        .stamp("json");
        send(&proxy, &call).await.assert_miss("recording");
    }
    patch_cache(&app, &proxy, json!({"mode": "replay_only"})).await;
    let changed = Call::post("/v1/chat/completions", &chat_with("explain me!", 0.0, "u1"));
    let refused = send(&proxy, &changed).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.text()
    );
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("differs in messages[1].content"),
        "{message}"
    );
    assert!(
        !message.contains("temperature"),
        "only what changed: {message}"
    );

    let (status, explained) = app
        .post(
            &format!("/api/proxies/{}/cache/explain", proxy.id),
            json!({"method": "POST", "path": "/v1/chat/completions",
                   "body": serde_json::from_str::<Value>(&chat_with("explain me", 0.5, "u2")).unwrap()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{explained}");
    assert_eq!(explained["cached"], false, "{explained}");
    assert_eq!(
        explained["nearest"][0]["differs"],
        json!(["temperature", "user"]),
        "{explained}"
    );
    let (_, recorded) = app
        .post(
            &format!("/api/proxies/{}/cache/explain", proxy.id),
            json!({"path": "/v1/chat/completions",
                   "body": serde_json::from_str::<Value>(&chat_with("explain me", 0.0, "u1")).unwrap()}),
        )
        .await;
    assert_eq!(recorded["cached"], true, "{recorded}");
    assert_eq!(recorded["nearest"][0]["differs"], json!([]), "{recorded}");

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, logs) = app
            .get(&format!("/api/logs?proxy_id={}&status=400", proxy.id))
            .await;
        if let Some(entry) = logs["logs"].as_array().and_then(|l| l.first()) {
            let logged = entry["error_message"].as_str().unwrap_or_default();
            assert!(logged.contains("messages[1].content"), "{entry}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log entry of the miss: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mock.requests().len(), 2);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn ignored_fields_are_left_out_of_the_key() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(
        &app,
        "openai",
        &mock,
        json!({"ignore_fields": ["user", "metadata.run_id"]}),
    )
    .await;
    let (_, described) = app.get(&format!("/api/proxies/{}", proxy.id)).await;
    assert_eq!(
        described["cache"]["ignore_fields"],
        json!(["user", "metadata.run_id"])
    );
    let first = send(
        &proxy,
        &Call::post("/v1/chat/completions", &chat_with("ignore", 0.0, "run-1")).stamp("json"),
    )
    .await;
    first.assert_miss("first");
    let again = send(
        &proxy,
        &Call::post("/v1/chat/completions", &chat_with("ignore", 0.0, "run-2")).stamp("json"),
    )
    .await;
    again.assert_hit("another user is ignored");
    assert_eq!(again.body, first.body);
    send(
        &proxy,
        &Call::post("/v1/chat/completions", &chat_with("ignore", 0.7, "run-3")).stamp("json"),
    )
    .await
    .assert_miss("temperature still counts");
    let (status, error) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"cache": {"ignore_fields": ["bad path!"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "cache.ignore_fields");
    assert_eq!(mock.requests().len(), 2);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_cached_stream_replays_with_its_recorded_gaps_or_scaled_by_a_speed_factor() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", &chat("paced replay", true))
        .stamp("sse")
        .header("x-mock-pause-ms", "100");
    let recorded = send(&proxy, &call).await;
    recorded.assert_miss("recording");
    // Five events 100 ms apart: about 400 ms of gaps after the first.
    assert!(
        recorded.elapsed >= Duration::from_millis(380),
        "{:?}",
        recorded.elapsed
    );

    let instant = send(&proxy, &call).await;
    instant.assert_hit("instant");
    assert!(
        instant.elapsed < Duration::from_millis(200),
        "instant: {:?}",
        instant.elapsed
    );
    for (replay, low, high) in [("recorded", 380, 1500), ("4", 90, 350), ("0.5", 760, 2500)] {
        let patched = patch_cache(&app, &proxy, json!({"stream_replay": replay})).await;
        assert_eq!(patched["cache"]["stream_replay"], replay, "{patched}");
        let paced = send(&proxy, &call).await;
        paced.assert_hit(replay);
        assert_eq!(paced.body, recorded.body, "{replay}: the same bytes");
        assert!(
            paced.elapsed >= Duration::from_millis(low)
                && paced.elapsed <= Duration::from_millis(high),
            "{replay}: {:?} outside {low}–{high} ms",
            paced.elapsed
        );
    }
    let (status, error) = app
        .patch(
            &format!("/api/proxies/{}", proxy.id),
            json!({"cache": {"stream_replay": "fast"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "cache.stream_replay");
    assert_eq!(mock.requests().len(), 1);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn twenty_concurrent_identical_stream_misses_make_one_upstream_call() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", &chat("twenty at once", true))
        .stamp("sse")
        .header("x-mock-pause-ms", "40");
    let replies = futures_util::future::join_all((0..20).map(|_| send(&proxy, &call))).await;
    assert_eq!(mock.requests().len(), 1, "one upstream call for all twenty");
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.body, replies[0].body, "the same stream for everyone");
    }
    assert_eq!(replies.iter().filter(|r| r.cache() == "MISS").count(), 1);
    app.shutdown().await;
    mock.stop().await;
}

/// Sends `call` and reads its stream, noting when the first chunk came.
async fn first_chunk_and_all(proxy: &Proxy, call: &Call) -> (Duration, Duration, String, Vec<u8>) {
    use futures_util::StreamExt;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut request = client.request(call.method.clone(), format!("{}{}", proxy.base, call.path));
    for (name, value) in &call.headers {
        request = request.insert_header((name.as_str(), value.as_str()));
    }
    let started = std::time::Instant::now();
    let mut response = request.send_body(call.body.clone()).await.expect("proxied");
    assert_eq!(response.status(), StatusCode::OK);
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut body = Vec::new();
    let mut first = None;
    while let Some(chunk) = response.next().await {
        first.get_or_insert_with(|| started.elapsed());
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    (
        first.expect("at least one chunk"),
        started.elapsed(),
        cache,
        body,
    )
}

#[actix_web::test]
async fn a_request_following_an_identical_stream_gets_its_chunks_as_they_arrive() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    for round in 0..3 {
        let call = Call::post(
            "/v1/chat/completions",
            &chat(&format!("followed live {round}"), true),
        )
        .stamp("sse")
        .header("x-mock-pause-ms", "200");
        let leading = first_chunk_and_all(&proxy, &call);
        let following = async {
            // The leader's head and first event are back by now; four more come 200 ms apart.
            tokio::time::sleep(Duration::from_millis(150)).await;
            first_chunk_and_all(&proxy, &call).await
        };
        let ((_, leader_took, leader_cache, leader_body), (first, took, cache, body)) =
            futures_util::future::join(leading, following).await;
        assert_eq!(leader_cache, "MISS");
        assert_eq!(cache, "HIT", "round {round}: the follower does not pay");
        assert_eq!(body, leader_body, "round {round}: the same stream");
        assert!(
            leader_took >= Duration::from_millis(780),
            "round {round}: {leader_took:?}"
        );
        assert!(
            first < Duration::from_millis(300),
            "round {round}: the follower's first chunk waited {first:?}"
        );
        assert!(
            took >= Duration::from_millis(450),
            "round {round}: the follower's stream ended after {took:?}, before the leader's"
        );
        assert_eq!(mock.requests().len(), round + 1, "round {round}");
    }
    app.shutdown().await;
    mock.stop().await;
}

/// `call`'s `X-Cache` and whether its body arrived whole, read over a plain connection.
async fn raw_exchange(proxy: &Proxy, call: &Call) -> (String, bool) {
    let answer = raw(proxy, call).await;
    let cache = answer
        .head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-cache")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (cache, answer.complete)
}

#[actix_web::test]
async fn followers_of_a_stream_cut_upstream_see_it_cut_and_the_next_request_fetches_again() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", &chat("cut while followed", true))
        .stamp("sse")
        .header("x-mock-pause-ms", "150")
        .header("x-mock-cut-after", "2");
    let replies = futures_util::future::join_all((0..5).map(|i| {
        let (call, proxy) = (&call, &proxy);
        async move {
            tokio::time::sleep(Duration::from_millis(40 * i)).await;
            raw_exchange(proxy, call).await
        }
    }))
    .await;
    for (cache, complete) in &replies {
        assert!(
            !complete,
            "{cache}: every stream is cut, as the leader's was: {replies:?}"
        );
    }
    assert_eq!(
        replies.iter().filter(|(cache, _)| cache == "HIT").count(),
        4,
        "{replies:?}"
    );
    assert_eq!(mock.requests().len(), 1);
    // Nothing was stored: the next identical request goes upstream again.
    let again = send(&proxy, &call.clone().header("x-mock-cut-after", "99")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    again.assert_miss("nothing was stored");
    assert_eq!(mock.requests().len(), 2);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_stream_that_ends_before_its_closing_event_is_not_kept() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let call = Call::post("/v1/chat/completions", &chat("ends early", true))
        .stamp("chunks")
        .header("x-mock-pause-ms", "5");
    for round in 0..3 {
        let early = send(&proxy, &call.clone().header("x-mock-stop-after", "2")).await;
        assert_eq!(early.status, StatusCode::OK);
        assert_eq!(
            early.text().matches("data: ").count(),
            2,
            "{}",
            early.text()
        );
        early.assert_miss(&format!(
            "round {round}: a stream without [DONE] was never kept"
        ));
    }
    assert_eq!(mock.requests().len(), 3);
    let whole = send(&proxy, &call).await;
    whole.assert_miss("the first whole answer");
    assert!(
        whole.text().ends_with("data: [DONE]\n\n"),
        "{}",
        whole.text()
    );
    let again = send(&proxy, &call).await;
    again.assert_hit("a whole stream is kept");
    assert_eq!(again.text(), whole.text());
    assert_eq!(mock.requests().len(), 4);
    app.shutdown().await;
    mock.stop().await;
}
