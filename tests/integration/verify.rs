//! `rubberduck fixtures verify`, the drift check, run as the real binary against an in-process
//! Rubberduck whose proxy records from the mock upstream. Stamped answers (`x-mock-stamp`, sent
//! on the replays with `--header`) carry the mock's request number, so a replay answers
//! differently; unstamped answers are the same every time.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::cache::{Proxy, patch_cache, send, stats, wait_for_entries};
use super::proxied::Call;
use super::support::{TEST_TOKEN, TestApp, authorized, id_of, port_of};
use super::upstream::MockUpstream;

fn chat(prompt: &str, stream: bool) -> String {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "stream": stream})
        .to_string()
}

/// An OpenAI proxy named `name` on the mock.
async fn named_proxy(app: &TestApp, mock: &MockUpstream, name: &str, cache: Value) -> Proxy {
    let mut body =
        json!({"name": name, "provider": "openai", "upstream_url": format!("{}/v1", mock.url)});
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

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `rubberduck fixtures verify --server <app> --token <token> --proxy <name> ARGS`, off the
/// test's runtime (which keeps serving the app and the mock meanwhile), with no terminal on
/// standard input.
async fn verify(app: &TestApp, name: &str, args: &[&str]) -> Run {
    let mut all = vec!["--server", app.base.as_str(), "--token", TEST_TOKEN];
    all.extend(args);
    run_binary(name, &all, &[]).await
}

/// The same with the server and token named by the environment instead.
async fn verify_with_env(app: &TestApp, token: &str, name: &str, args: &[&str]) -> Run {
    let env = [
        ("RUBBERDUCK_SERVER", app.base.as_str()),
        ("RUBBERDUCK_TOKEN", token),
    ];
    run_binary(name, args, &env).await
}

async fn run_binary(name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let all: Vec<String> = ["fixtures", "verify", "--proxy", name]
        .iter()
        .chain(args)
        .map(|arg| (*arg).to_owned())
        .collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let output: Output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rubberduck"))
            .args(&all)
            .env_remove("RUBBERDUCK_SERVER")
            .env_remove("RUBBERDUCK_TOKEN")
            .envs(env)
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("the run finishes");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The proxy's entries as the export gives them, one fixture a line, in a stable order.
async fn export(app: &TestApp, proxy: &Proxy) -> BTreeSet<String> {
    let mut reply = authorized(awc::Client::default().get(app.url(&format!(
        "/api/proxies/{}/cache/export?format=jsonl",
        proxy.id
    ))))
    .send()
    .await
    .expect("export");
    assert_eq!(reply.status(), StatusCode::OK);
    let body = reply.body().limit(16 << 20).await.expect("body");
    String::from_utf8_lossy(&body)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[actix_web::test]
async fn unchanged_answers_exit_0_and_leave_the_cache_as_it_was() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = named_proxy(&app, &mock, "verify steady", Value::Null).await;
    let calls = [
        Call::post("/v1/chat/completions", &chat("steady plain", false)),
        Call::post("/v1/chat/completions", &chat("steady stream", true)),
        Call::post("/v1/chat/completions", &chat("steady cassette", false))
            .header("x-rubberduck-cassette", "suite/test_one"),
    ];
    for call in &calls {
        send(&proxy, call).await.assert_miss("recording");
    }
    wait_for_entries(&app, &proxy, 3).await;
    let before = export(&app, &proxy).await;
    assert_eq!(before.len(), 3);

    let run = verify(&app, "verify steady", &["--yes"]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        run.stdout
            .contains("proxy “verify steady”: 3 replayed: 0 changed, 3 unchanged, 0 failed"),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("3 recorded requests"), "{}", run.stderr);
    let received = mock.requests();
    assert_eq!(
        received.len(),
        6,
        "each recorded request went upstream once"
    );
    assert!(
        received
            .iter()
            .all(|r| !r.has_header("x-rubberduck-cache") && !r.has_header("x-rubberduck-cassette")),
        "the proxy strips its own headers"
    );
    assert_eq!(
        received[3..]
            .iter()
            .map(|r| r.body.clone())
            .collect::<BTreeSet<_>>(),
        received[..3]
            .iter()
            .map(|r| r.body.clone())
            .collect::<BTreeSet<_>>(),
        "the recorded bodies are sent as they were"
    );
    assert_eq!(stats(&app, &proxy).await["entries"], 3);
    assert_eq!(
        export(&app, &proxy).await,
        before,
        "nothing was recorded over"
    );
    for call in &calls {
        send(&proxy, call).await.assert_hit("still recorded");
    }

    let run = verify(&app, "verify steady", &["--yes", "--json", "--limit", "1"]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    let report: Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(report["changed"], 0, "{report}");
    assert_eq!(report["fixtures"][0]["result"], "unchanged", "{report}");
    assert!(
        report["ignored_fields"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("created"))),
        "{report}"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_changed_answer_exits_1_naming_the_fixture_and_overwrites_nothing() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = named_proxy(&app, &mock, "verify drift", Value::Null).await;
    let plain = Call::post("/v1/chat/completions", &chat("drifting plain", false)).stamp("json");
    let streamed = Call::post("/v1/chat/completions", &chat("drifting stream", true)).stamp("sse");
    let recorded_plain = send(&proxy, &plain).await;
    recorded_plain.assert_miss("recording");
    let recorded_stream = send(&proxy, &streamed).await;
    recorded_stream.assert_miss("recording");
    wait_for_entries(&app, &proxy, 2).await;
    let before = export(&app, &proxy).await;

    // The mock stamps every replay as JSON: the plain answer changed its content, the stream
    // is no stream any more.
    let run = verify(
        &app,
        "verify drift",
        &["--yes", "--header", "x-mock-stamp: json"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stdout
            .contains("proxy “verify drift”: 2 replayed: 2 changed, 0 unchanged, 0 failed"),
        "{}",
        run.all()
    );
    let changed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("changed chat-gpt-4o-mini-"))
        .collect();
    assert_eq!(changed.len(), 2, "{}", run.stdout);
    assert!(
        changed
            .iter()
            .any(|line| line.ends_with(".json (POST /v1/chat/completions): content")),
        "{}",
        run.stdout
    );
    assert!(
        changed
            .iter()
            .any(|line| line.ends_with(".json (POST /v1/chat/completions): shape, content")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("-  \"n\": 1") && run.stdout.contains("+  \"n\": "),
        "a diff of the text: {}",
        run.stdout
    );

    let run = verify(
        &app,
        "verify drift",
        &["--yes", "--json", "-H", "x-mock-stamp: sse"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    let report: Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    assert_eq!(report["changed"], 2, "{report}");
    let outcomes = report["fixtures"].as_array().expect("fixtures");
    let plain_now = outcomes
        .iter()
        .find(|o| o["diff"].as_str().is_some_and(|d| d.contains("\"n\": 1")))
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        plain_now["changes"],
        json!(["shape", "content"]),
        "a stream where a JSON body was: {report}"
    );
    let stream_now = outcomes
        .iter()
        .find(|o| o != &plain_now)
        .expect("the stream");
    assert_eq!(stream_now["changes"], json!(["content"]), "{report}");
    assert!(
        stream_now["diff"]
            .as_str()
            .is_some_and(|d| d.contains("-{\"i\":0,\"n\":2}") && d.contains("+{\"i\":0,\"n\":")),
        "the stream's events are compared: {report}"
    );

    assert_eq!(export(&app, &proxy).await, before, "nothing recorded over");
    let replayed = send(&proxy, &plain).await;
    replayed.assert_hit("the old answer");
    assert_eq!(replayed.body, recorded_plain.body);
    let replayed = send(&proxy, &streamed).await;
    replayed.assert_hit("the old stream");
    assert_eq!(replayed.body, recorded_stream.body);
    assert_eq!(mock.requests().len(), 6);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn update_records_the_new_answer_and_rewrites_its_fixture_file() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("fixtures dir");
    let mut app = TestApp::start().await;
    let proxy = named_proxy(
        &app,
        &mock,
        "verify update",
        json!({"mode": "read_write", "fixtures_dir": dir.path().display().to_string()}),
    )
    .await;
    let call = Call::post("/v1/chat/completions", &chat("to update", false)).stamp("json");
    let recorded = send(&proxy, &call).await;
    recorded.assert_miss("recording");
    assert_eq!(recorded.json()["n"], 1);
    wait_for_entries(&app, &proxy, 1).await;
    let file = wait_for_file(dir.path(), "\"n\": 1").await;

    let run = verify(
        &app,
        "verify update",
        &["--update", "--yes", "--header", "x-mock-stamp: json"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stdout.contains("recorded over the old answer"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr
            .contains("recording the new answers over the old ones"),
        "{}",
        run.stderr
    );
    let replayed = send(&proxy, &call).await;
    replayed.assert_hit("the new answer");
    assert_eq!(replayed.json()["n"], 2, "{}", replayed.text());
    assert_eq!(
        stats(&app, &proxy).await["entries"],
        1,
        "replaced, not added"
    );
    let rewritten = wait_for_file(dir.path(), "\"n\": 2").await;
    assert_eq!(rewritten, file, "the same file, rewritten");

    let run = verify_with_env(&app, TEST_TOKEN, "verify update", &["--yes"]).await;
    assert_eq!(
        run.code,
        Some(1),
        "the unstamped mock answers otherwise: {}",
        run.all()
    );
    assert_eq!(mock.requests().len(), 3);
    app.shutdown().await;
    mock.stop().await;
}

/// Waits until a fixture file under `dir` holds `text`; returns its path.
async fn wait_for_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = std::fs::read_dir(dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|path| {
                std::fs::read_to_string(path).is_ok_and(|content| content.contains(text))
            })
        });
        if let Some(path) = found {
            return path;
        }
        assert!(Instant::now() < deadline, "no fixture file holds {text}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[actix_web::test]
async fn the_estimate_comes_first_and_nothing_is_sent_without_yes_off_a_terminal() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = named_proxy(&app, &mock, "verify estimate", Value::Null).await;
    let priced = Call::post(
        "/v1/responses",
        &json!({"model": "gpt-4o-mini", "input": "estimate me"}).to_string(),
    );
    let unpriced = Call::post(
        "/v1/chat/completions",
        &json!({"model": "my-local-llama", "messages": []}).to_string(),
    );
    send(&proxy, &priced).await.assert_miss("recording");
    send(&proxy, &unpriced).await.assert_miss("recording");
    wait_for_entries(&app, &proxy, 2).await;

    let run = verify(&app, "verify estimate", &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(
        run.stderr.contains("2 recorded requests to replay"),
        "{}",
        run.stderr
    );
    // 11 input and 7 output tokens of gpt-4o-mini at $0.15 and $0.60 a million.
    assert!(
        run.stderr.contains(
            "estimated spend: $0.000006 for 1 priced from their recorded usage, plus 1 of unknown cost (my-local-llama)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("pass --yes"),
        "refused without a terminal to ask on: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(mock.requests().len(), 2, "nothing was sent");

    let run = verify(&app, "nobody here", &["--yes"]).await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(
        run.stderr.contains("no proxy named “nobody here”"),
        "{}",
        run.stderr
    );
    let wrong_token = verify_with_env(&app, "rd_wrong", "verify estimate", &["--yes"]).await;
    assert_eq!(wrong_token.code, Some(2), "{}", wrong_token.all());
    assert!(
        wrong_token.stderr.contains("refused the API token"),
        "{}",
        wrong_token.stderr
    );

    patch_cache(&app, &proxy, json!({"mode": "replay_only"})).await;
    let run = verify(&app, "verify estimate", &["--yes"]).await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert!(run.stderr.contains("replays only"), "{}", run.stderr);
    assert_eq!(mock.requests().len(), 2, "still nothing sent");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn credentials_given_with_header_reach_the_upstream_and_no_output() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = named_proxy(&app, &mock, "verify secrets", Value::Null).await;
    let call = Call::post("/v1/chat/completions", &chat("secret keeping", false))
        .stamp("json")
        .header("authorization", "Bearer sk-recording-canary");
    send(&proxy, &call).await.assert_miss("recording");
    wait_for_entries(&app, &proxy, 1).await;

    let credentials = [
        "--header",
        "Authorization: Bearer sk-verify-canary",
        "-H",
        "x-api-key: sk-verify-key-canary",
        "-H",
        "x-mock-stamp: json",
    ];
    let mut runs = Vec::new();
    for json in [false, true] {
        let mut args = vec!["--yes"];
        if json {
            args.push("--json");
        }
        args.extend(credentials);
        let run = verify(&app, "verify secrets", &args).await;
        assert_eq!(run.code, Some(1), "{}", run.all());
        runs.push(run);
        let last = mock.last();
        assert_eq!(
            last.header("authorization"),
            Some("Bearer sk-verify-canary")
        );
        assert_eq!(last.header("x-api-key"), Some("sk-verify-key-canary"));
    }
    for run in &runs {
        let all = run.all();
        assert!(!all.contains("canary"), "a credential in the output: {all}");
        assert!(
            !all.contains(TEST_TOKEN),
            "the API token in the output: {all}"
        );
    }
    app.shutdown().await;
    mock.stop().await;
}
