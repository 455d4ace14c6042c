//! Looking into a proxy's cache through the admin API and its pages: the entries listed (kind,
//! model, start of the prompt, size, hits, times), paged and searched; one entry as its fixture;
//! deleting one, so that the same request misses again, even right after it was stored.

use std::time::Duration;

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::cache::{Proxy, proxy, send, stats, wait_for_entries};
use super::proxied::Call;
use super::support::TestApp;
use super::upstream::MockUpstream;

fn chat(model: &str, prompt: &str) -> Call {
    let body = json!({"model": model, "messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": prompt}
    ]});
    Call::post("/v1/chat/completions", &body.to_string()).stamp("json")
}

async fn entries(app: &TestApp, proxy: &Proxy, query: &str) -> Value {
    let (status, page) = app
        .get(&format!("/api/proxies/{}/cache/entries{query}", proxy.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

fn prompts(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["prompt"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[actix_web::test]
async fn entries_are_listed_newest_first_paged_and_searched_by_model_or_prompt() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    for n in 0..25 {
        let model = if n % 5 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
        send(&proxy, &chat(model, &format!("Say hello number {n}")))
            .await
            .assert_miss("a new prompt");
        // Distinct recording times, so that newest first is one order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_for_entries(&app, &proxy, 25).await;

    let first = entries(&app, &proxy, "?limit=20").await;
    assert_eq!(first["total"], 25, "{first}");
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(20));
    assert_eq!(prompts(&first)[0], "Say hello number 24", "newest first");
    let entry = &first["entries"][0];
    assert_eq!(entry["kind"], "chat", "{entry}");
    assert_eq!(entry["model"], "gpt-4o-mini");
    assert_eq!(entry["stream"], false);
    assert_eq!(entry["hits"], 0);
    assert!(entry["last_hit_at"].is_null(), "{entry}");
    assert!(
        entry["size_bytes"].as_u64().is_some_and(|n| n > 0),
        "{entry}"
    );
    assert!(
        entry["recorded_at"]
            .as_str()
            .is_some_and(|t| t.contains('T')),
        "{entry}"
    );
    assert_eq!(entry["key"].as_str().map(str::len), Some(64));
    assert!(
        entry.get("body").is_none(),
        "no bodies in the list: {entry}"
    );

    let rest = entries(&app, &proxy, "?limit=20&offset=20").await;
    assert_eq!(rest["total"], 25);
    assert_eq!(
        prompts(&rest),
        (0..5)
            .rev()
            .map(|n| format!("Say hello number {n}"))
            .collect::<Vec<_>>()
    );
    let default = entries(&app, &proxy, "").await;
    assert_eq!(
        default["entries"].as_array().map(Vec::len),
        Some(25),
        "50 by default"
    );

    // By model (the mini ones do not match a search for the exact big model's JSON)…
    let mini = entries(&app, &proxy, "?q=gpt-4o-mini&limit=100").await;
    assert_eq!(mini["total"], 20, "{mini}");
    // …and by words of a prompt, case-insensitively.
    let seven = entries(&app, &proxy, "?q=HELLO%20NUMBER%207").await;
    assert_eq!(prompts(&seven), ["Say hello number 7"], "{seven}");
    let none = entries(&app, &proxy, "?q=goodbye").await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["entries"], json!([]));

    // A hit shows in the list.
    send(&proxy, &chat("gpt-4o-mini", "Say hello number 7"))
        .await
        .assert_hit("the same prompt");
    let seven = entries(&app, &proxy, "?q=number%207").await;
    assert_eq!(seven["entries"][0]["hits"], 1, "{seven}");
    assert!(seven["entries"][0]["last_hit_at"].is_string(), "{seven}");

    let (status, _) = app.get("/api/proxies/999/cache/entries").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn each_provider_shape_has_its_kind_model_and_prompt() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let cases = [
        (
            "anthropic",
            Call::post(
                "/v1/messages",
                r#"{"model":"claude-3-5-haiku","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":"Hi Claude"}]}]}"#,
            ),
            "messages",
            "claude-3-5-haiku",
            "Hi Claude",
        ),
        (
            "vertex_ai",
            Call::post(
                "/v1beta/models/gemini-2.0-flash:generateContent",
                r#"{"contents":[{"role":"user","parts":[{"text":"Hi Gemini"}]}]}"#,
            ),
            "generate-content",
            "gemini-2.0-flash",
            "Hi Gemini",
        ),
        (
            "bedrock",
            Call::post(
                "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                r#"{"messages":[{"role":"user","content":[{"text":"Hi Bedrock"}]}]}"#,
            )
            .aws(),
            "converse",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "Hi Bedrock",
        ),
    ];
    for (provider, call, kind, model, prompt) in cases {
        let proxy = proxy(&app, provider, &mock, Value::Null).await;
        let answer = send(&proxy, &call.stamp("json")).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{provider}: {}",
            answer.text()
        );
        let page = entries(&app, &proxy, "").await;
        let entry = &page["entries"][0];
        assert_eq!(entry["kind"], kind, "{provider}: {entry}");
        assert_eq!(entry["model"], model, "{provider}: {entry}");
        assert_eq!(entry["prompt"], prompt, "{provider}: {entry}");
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn one_entry_comes_back_as_its_fixture_with_a_stream_as_its_chunks() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let plain = send(&proxy, &chat("gpt-4o-mini", "Say hello")).await;
    let streamed = send(
        &proxy,
        &Call::post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Stream it"}],"stream":true}"#,
        )
        .stamp("sse"),
    )
    .await;
    streamed.assert_miss("a stream");
    wait_for_entries(&app, &proxy, 2).await;

    let base = format!("/api/proxies/{}/cache/entries", proxy.id);
    let (status, fixture) = app.get(&format!("{base}/{}", plain.key())).await;
    assert_eq!(status, StatusCode::OK, "{fixture}");
    assert_eq!(fixture["key"], plain.key().as_str());
    assert_eq!(fixture["provider"], "openai");
    assert_eq!(fixture["model"], "gpt-4o-mini");
    assert_eq!(fixture["request"]["method"], "POST");
    assert_eq!(fixture["request"]["path"], "/v1/chat/completions");
    assert_eq!(
        fixture["request"]["body"]["messages"][1]["content"],
        "Say hello"
    );
    assert_eq!(fixture["response"]["status"], 200);
    assert_eq!(fixture["response"]["body"], plain.json(), "{fixture}");

    let (status, fixture) = app.get(&format!("{base}/{}", streamed.key())).await;
    assert_eq!(status, StatusCode::OK, "{fixture}");
    let chunks = fixture["response"]["chunks"].as_array().expect("chunks");
    let joined: String = chunks
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(joined, streamed.text(), "the chunks are the stream");
    assert!(chunks.len() >= 2, "{fixture}");
    let page = entries(&app, &proxy, "?q=Stream%20it").await;
    assert_eq!(page["entries"][0]["stream"], true, "{page}");

    for missing in ["0".repeat(64), "not-a-key".to_owned()] {
        let (status, error) = app.get(&format!("{base}/{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {error}");
        assert!(error["error"]["message"].is_string(), "{error}");
    }
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_deleted_entry_is_a_miss_again_and_the_others_stay() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let kept = chat("gpt-4o-mini", "Keep me");
    let dropped = chat("gpt-4o-mini", "Drop me");
    send(&proxy, &kept).await.assert_miss("kept");
    let first = send(&proxy, &dropped).await;
    first.assert_miss("dropped");
    wait_for_entries(&app, &proxy, 2).await;
    send(&proxy, &dropped).await.assert_hit("stored");
    let upstream_calls = mock.requests().len();

    let path = format!("/api/proxies/{}/cache/entries/{}", proxy.id, first.key());
    let (status, deleted) = app.delete(&path).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted, json!({"deleted": true}));
    let (status, again) = app.delete(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{again}");
    let (status, _) = app.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone from the detail");

    let page = entries(&app, &proxy, "").await;
    assert_eq!(prompts(&page), ["Keep me"], "{page}");
    assert_eq!(stats(&app, &proxy).await["entries"], 1);
    let after = send(&proxy, &dropped).await;
    after.assert_miss("the deleted entry's request");
    assert_eq!(after.key(), first.key());
    assert_ne!(after.body, first.body, "a fresh upstream answer");
    assert_eq!(mock.requests().len(), upstream_calls + 1);
    send(&proxy, &kept)
        .await
        .assert_hit("the other entry stays");

    let (status, _) = app
        .delete(&format!(
            "/api/proxies/{}/cache/entries/{}",
            proxy.id + 1000,
            first.key()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such proxy");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn deleting_an_entry_right_after_it_was_stored_really_removes_it() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    for round in 0..10 {
        let call = chat("gpt-4o-mini", &format!("Round {round}"));
        let answer = send(&proxy, &call).await;
        answer.assert_miss("a new prompt");
        // Stored (in memory and queued for SQLite; the writer gathers for a while first).
        wait_for_entries(&app, &proxy, 1).await;
        let (status, deleted) = app
            .delete(&format!(
                "/api/proxies/{}/cache/entries/{}",
                proxy.id,
                answer.key()
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "round {round}: {deleted}");

        assert_eq!(stats(&app, &proxy).await["entries"], 0, "round {round}");
        assert_eq!(entries(&app, &proxy, "").await["total"], 0, "round {round}");
        // Later writes never bring it back.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(entries(&app, &proxy, "").await["total"], 0, "round {round}");
        let again = send(&proxy, &call).await;
        again.assert_miss(&format!("round {round}: the deleted request"));
        wait_for_entries(&app, &proxy, 1).await;
        let (status, _) = app
            .delete(&format!(
                "/api/proxies/{}/cache/entries/{}",
                proxy.id,
                again.key()
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "round {round}: the fresh entry");
    }
    assert_eq!(
        mock.requests().len(),
        20,
        "every request after a delete went upstream"
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_entries_fragment_lists_searches_opens_and_deletes() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let answer = send(&proxy, &chat("gpt-4o-mini", "Fragment <b>me</b>")).await;
    send(&proxy, &chat("gpt-4o", "Another one")).await;
    wait_for_entries(&app, &proxy, 2).await;
    let base = format!("/proxies/{}/cache/entries", proxy.id);

    let (status, fragment) = app.get_text(&base, true).await;
    assert_eq!(status, StatusCode::OK, "{fragment}");
    assert!(!fragment.contains("<html"), "a fragment: {fragment}");
    assert_eq!(
        fragment.matches("class=\"entry-row\"").count(),
        2,
        "{fragment}"
    );
    assert!(
        fragment.contains("Fragment &#60;b&#62;me&#60;/b&#62;")
            || fragment.contains("Fragment &lt;b&gt;me&lt;/b&gt;"),
        "escaped: {fragment}"
    );

    let (_, searched) = app.get_text(&format!("{base}?q=another"), true).await;
    assert_eq!(
        searched.matches("class=\"entry-row\"").count(),
        1,
        "{searched}"
    );
    assert!(searched.contains("Another one"), "{searched}");

    let (status, opened) = app
        .get_text(&format!("{base}/{}", answer.key()), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    assert!(opened.contains("id=\"cache-entry\""), "{opened}");
    assert!(opened.contains("POST /v1/chat/completions"), "{opened}");

    // Without HTMX: the Proxies page with the cache modal open on that entry.
    let (status, page) = app
        .get_text(&format!("{base}/{}", answer.key()), false)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<html") && page.contains("id=\"cache-entry\""),
        "{page}"
    );

    let deleted = app
        .post_form(
            &format!("{base}/{}/delete", answer.key()),
            &[("q", ""), ("offset", "0")],
            true,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.html);
    assert!(
        deleted.html.contains("id=\"entries-notice\""),
        "{}",
        deleted.html
    );
    assert_eq!(
        deleted.html.matches("class=\"entry-row\"").count(),
        1,
        "{}",
        deleted.html
    );
    assert!(
        deleted.html.contains("hx-swap-oob=\"true\">1</dd>"),
        "the modal's count follows: {}",
        deleted.html
    );
    let plain = app
        .post_form(&format!("{base}/{}/delete", answer.key()), &[], false)
        .await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND, "deleted already");

    let (status, _) = app
        .get_text(&format!("{base}/{}", "0".repeat(64)), true)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn an_entry_stored_before_requests_were_recorded_says_so() {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = proxy(&app, "openai", &mock, Value::Null).await;
    let answer = send(&proxy, &chat("gpt-4o-mini", "From long ago")).await;
    wait_for_entries(&app, &proxy, 1).await;
    entries(&app, &proxy, "").await;
    // As an entry from before the fixtures migration: no recording.
    let path = app.data_dir().join("rubberduck.sqlite3");
    let mut conn =
        SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("open the database");
    diesel::sql_query("UPDATE cache_entries SET recording = NULL")
        .execute(&mut conn)
        .expect("recording dropped");

    let page = entries(&app, &proxy, "").await;
    let entry = &page["entries"][0];
    assert_eq!(entry["key"], answer.key().as_str(), "{page}");
    assert!(
        entry["kind"].is_null() && entry["model"].is_null() && entry["prompt"].is_null(),
        "{entry}"
    );
    assert_eq!(
        entries(&app, &proxy, "?q=long%20ago").await["total"],
        0,
        "nothing to search"
    );
    let (status, fixture) = app
        .get(&format!(
            "/api/proxies/{}/cache/entries/{}",
            proxy.id,
            answer.key()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{fixture}");
    assert_eq!(fixture["response"]["body"], answer.json(), "{fixture}");

    let base = format!("/proxies/{}/cache/entries", proxy.id);
    let (_, fragment) = app.get_text(&base, true).await;
    assert!(fragment.contains("request not recorded"), "{fragment}");
    let (_, opened) = app
        .get_text(&format!("{base}/{}", answer.key()), true)
        .await;
    assert!(opened.contains("Request not recorded"), "{opened}");
    let (status, _) = app
        .delete(&format!(
            "/api/proxies/{}/cache/entries/{}",
            proxy.id,
            answer.key()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "deleted like any other");
    app.shutdown().await;
    mock.stop().await;
}
