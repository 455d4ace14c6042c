//! `rubberduck loadtest` and `rubberduck bench`, run as the real binary against local mocks.
//! Nothing here asserts on speed: only on counts, shapes and exit codes.

use std::collections::HashSet;
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::support::{TestApp, port_block_of, port_of};
use super::upstream::MockUpstream;

/// Runs the binary off the test's runtime, which keeps serving the mocks meanwhile.
async fn rubberduck(args: Vec<String>) -> Output {
    actix_web::rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rubberduck"))
            .args(&args)
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("the run finishes")
}

async fn loadtest(args: &[&str]) -> Value {
    let mut all = vec!["loadtest".to_owned(), "--json".to_owned()];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    let output = rubberduck(all).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[actix_web::test]
async fn every_request_is_counted_and_unique_bodies_differ() {
    let mock = MockUpstream::start().await;
    let report = loadtest(&[&mock.url, "-n", "20", "-c", "4", "--unique"]).await;

    assert_eq!(report["requests"], 20, "{report}");
    assert_eq!(report["status_counts"], json!({"200": 20}), "{report}");
    assert_eq!(report["errors"]["connection"], 0, "{report}");
    assert!(report["latency_ms"]["p50"].is_number(), "{report}");
    assert!(report["ttfb_ms"].is_null(), "TTFB only with --stream");
    let received = mock.requests();
    assert_eq!(received.len(), 20);
    assert!(
        received
            .iter()
            .all(|r| r.method == "POST" && r.target == "/v1/chat/completions")
    );
    let bodies: HashSet<_> = received.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), 20, "--unique makes every body distinct");
    mock.stop().await;
}

#[actix_web::test]
async fn status_counts_match_what_the_upstream_answered() {
    let mock = MockUpstream::start().await;
    let report = loadtest(&[
        &mock.url,
        "-n",
        "7",
        "-c",
        "2",
        "--provider",
        "anthropic",
        "--header",
        "x-mock-stamp: json",
        "-H",
        "x-mock-status: 503",
    ])
    .await;
    assert_eq!(report["requests"], 7, "{report}");
    assert_eq!(report["status_counts"], json!({"503": 7}), "{report}");
    let received = mock.requests();
    assert_eq!(received.len(), 7);
    let last = mock.last();
    assert_eq!(last.target, "/v1/messages");
    assert_eq!(last.header("anthropic-version"), Some("2023-06-01"));
    let bodies: HashSet<_> = received.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), 1, "without --unique every body is the same");
    mock.stop().await;
}

#[actix_web::test]
async fn through_a_caching_proxy_only_the_first_request_reaches_the_upstream() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Loaded", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let url = format!("http://127.0.0.1:{}", port_of(&proxy));
    let report = loadtest(&[&url, "-n", "10", "-c", "1"]).await;

    assert_eq!(report["status_counts"], json!({"200": 10}), "{report}");
    assert_eq!(mock.requests().len(), 1, "the other nine were cache hits");
    mock.stop().await;
}

#[actix_web::test]
async fn streams_report_time_to_first_byte() {
    let mock = MockUpstream::start().await;
    let report = loadtest(&[
        &mock.url,
        "-n",
        "3",
        "-c",
        "1",
        "--stream",
        "--provider",
        "vertex_ai",
        "--header",
        "x-mock-stamp: sse",
        "--header",
        "x-mock-pause-ms: 1",
    ])
    .await;
    assert_eq!(report["status_counts"], json!({"200": 3}), "{report}");
    let ttfb = &report["ttfb_ms"];
    assert_eq!(ttfb["count"], 3, "{report}");
    let first = ttfb["max"].as_f64().expect("a number");
    let whole = report["latency_ms"]["max"].as_f64().expect("a number");
    assert!(first <= whole, "{report}");
    assert!(
        mock.last()
            .target
            .ends_with(":streamGenerateContent?alt=sse")
    );
    mock.stop().await;
}

#[actix_web::test]
async fn prompt_files_are_used_round_robin() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (one, two) = (dir.path().join("one.txt"), dir.path().join("two.txt"));
    std::fs::write(&one, "alpha\n\nbeta\n").expect("write");
    std::fs::write(&two, "gamma\n").expect("write");
    let report = loadtest(&[
        &mock.url,
        "-n",
        "6",
        "-c",
        "1",
        "--prompt-file",
        one.to_str().expect("utf-8 path"),
        "--prompt-file",
        two.to_str().expect("utf-8 path"),
    ])
    .await;
    assert_eq!(report["requests"], 6);
    let prompts: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
            body["messages"][0]["content"]
                .as_str()
                .expect("a prompt")
                .to_owned()
        })
        .collect();
    assert_eq!(
        prompts,
        ["alpha", "beta", "gamma", "alpha", "beta", "gamma"]
    );
    mock.stop().await;
}

#[actix_web::test]
async fn refused_connections_are_counted_not_fatal() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let report = loadtest(&[&format!("http://127.0.0.1:{port}"), "-n", "5", "-c", "1"]).await;
    assert_eq!(report["requests"], 5, "{report}");
    assert_eq!(report["errors"]["connection"], 5, "{report}");
    assert_eq!(report["status_counts"], json!({}), "{report}");
}

#[actix_web::test]
async fn bad_input_is_reported_plainly() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["http://127.0.0.1:1", "--provider", "cohere"],
            "unknown provider",
        ),
        (&["ftp://127.0.0.1:1"], "only http://"),
        (&["not a url"], "is not a URL"),
        (
            &["http://127.0.0.1:1", "--duration", "soon"],
            "not a duration",
        ),
        (&["http://127.0.0.1:1", "-c", "0"], "--concurrency"),
        (
            &[
                "http://127.0.0.1:1",
                "--prompt-file",
                "/nonexistent/prompts",
            ],
            "cannot read the prompt file",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["loadtest".to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let output = rubberduck(all).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Runs `bench --quick` on ports of its own and returns its stdout.
async fn quick_bench(extra: &[&str]) -> String {
    let ports = port_block_of(12);
    let mut args = vec![
        "bench".to_owned(),
        "--quick".to_owned(),
        "--proxy-ports".to_owned(),
        format!("{}-{}", ports.start(), ports.end()),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let output = rubberduck(args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

const SECTIONS: [&str; 13] = [
    "Added latency at 1 connection",
    "Throughput at 32 connections",
    "Streaming TTFB at 1 connection",
    "Memory of the server process",
    "Targets",
    "idle RSS with 10 proxies",
    "throughput, cache hits, vs direct",
    "streaming TTFB overhead",
    "no request log",
    "request log cost, cache off",
    "Request log cost at 32 connections",
    "writes dropped over the run (issue 16)",
    "writes dropped",
];

#[actix_web::test]
async fn a_quick_bench_reports_every_section() {
    let stdout = quick_bench(&[]).await;
    for section in SECTIONS {
        assert!(stdout.contains(section), "no “{section}” in:\n{stdout}");
    }
    // Each target is judged, whatever this (loaded, debug-built) machine measured.
    let judged = stdout
        .lines()
        .filter(|l| l.ends_with("PASS") || l.ends_with("MISS"))
        .count();
    assert_eq!(judged, 8, "{stdout}");

    let markdown = quick_bench(&["--markdown"]).await;
    for section in SECTIONS {
        assert!(markdown.contains(section), "no “{section}” in:\n{markdown}");
    }
    assert!(markdown.starts_with("## Results\n"), "{markdown}");
    assert!(markdown.contains("\n### Targets\n"), "{markdown}");
    let judged = markdown
        .lines()
        .filter(|l| l.ends_with("| PASS |") || l.ends_with("| MISS |"))
        .count();
    assert_eq!(judged, 8, "{markdown}");
}
