//! The admin JSON API: contract shapes, validation and error codes.

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::support::{TestApp, id_of, port_of};

#[actix_web::test]
async fn healthz_reports_database_and_running_proxies() {
    let mut app = TestApp::start().await;
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["running_proxies"], 0);

    app.create(json!({"name": "one", "provider": "openai"}))
        .await;
    app.create(json!({"name": "two", "provider": "anthropic", "start": false}))
        .await;
    assert_eq!(app.get("/healthz").await.1["running_proxies"], 1);
    app.shutdown().await;
}

#[actix_web::test]
async fn providers_lists_the_six_ids() {
    let mut app = TestApp::start().await;
    let (status, providers) = app.get("/api/providers").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = providers
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(
        ids,
        [
            "openai",
            "anthropic",
            "azure_openai",
            "bedrock",
            "vertex_ai",
            "deepseek"
        ]
    );
    assert_eq!(providers[0]["name"], "OpenAI");
    app.shutdown().await;
}

#[actix_web::test]
async fn created_proxy_has_the_contract_shape() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({
            "name": "  Contract  ", "provider": "anthropic", "description": "d",
            "tags": ["ci", "ci", " prod "], "upstream_url": "http://127.0.0.1:1/",
        }))
        .await;
    assert_eq!(proxy["name"], "Contract");
    assert_eq!(proxy["provider"], "anthropic");
    assert_eq!(proxy["description"], "d");
    assert_eq!(proxy["tags"], json!(["ci", "prod"]));
    assert_eq!(proxy["upstream_url"], "http://127.0.0.1:1");
    assert_eq!(proxy["status"], "running");
    assert_eq!(proxy["last_error"], Value::Null);
    assert_eq!(proxy["port"], *app.ports.start());
    assert_eq!(
        proxy["url"],
        format!("http://127.0.0.1:{}", app.ports.start())
    );
    assert_eq!(
        proxy["cache"],
        json!({"enabled": true, "mode": "read_write", "ttl_seconds": null, "partition_by_credential": false, "fixtures_dir": null, "ignore_fields": [], "stream_replay": "instant"})
    );
    assert_eq!(proxy["vertex_service_account_file"], Value::Null);
    assert_eq!(proxy["aws_region"], Value::Null);
    assert!(proxy.get("warning").is_none());
    let created_at = proxy["created_at"].as_str().expect("created_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{created_at}"
    );

    let (status, fetched) = app.get(&format!("/api/proxies/{}", id_of(&proxy))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["name"], "Contract");
    let (_, list) = app.get("/api/proxies").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    app.shutdown().await;
}

async fn assert_invalid(app: &TestApp, body: Value, field: &str) {
    let (status, error) = app.post("/api/proxies", body.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {error}");
    assert_eq!(error["error"]["field"], field, "{body} → {error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{error}");
}

#[actix_web::test]
async fn bad_input_is_a_422_naming_the_field() {
    // The default port range, as users get it.
    let mut app = TestApp::start_with_ports(8001..=9999).await;
    assert_invalid(&app, json!({"name": "", "provider": "openai"}), "name").await;
    assert_invalid(&app, json!({"name": "   ", "provider": "openai"}), "name").await;
    assert_invalid(&app, json!({"provider": "openai"}), "name").await;
    assert_invalid(
        &app,
        json!({"name": "x".repeat(81), "provider": "openai"}),
        "name",
    )
    .await;
    assert_invalid(&app, json!({"name": "a", "provider": "cohere"}), "provider").await;
    assert_invalid(&app, json!({"name": "a"}), "provider").await;
    for port in [
        json!(8000),
        json!(10000),
        json!(80),
        json!(-1),
        json!(8001.5),
        json!("abc"),
        json!(true),
    ] {
        assert_invalid(
            &app,
            json!({"name": "a", "provider": "openai", "port": port}),
            "port",
        )
        .await;
    }
    assert_invalid(
        &app,
        json!({"name": "a", "provider": "openai", "upstream_url": "ftp://x"}),
        "upstream_url",
    )
    .await;
    assert_invalid(
        &app,
        json!({"name": "a", "provider": "azure_openai"}),
        "upstream_url",
    )
    .await;
    assert_invalid(
        &app,
        json!({"name": "a", "provider": "openai", "tags": [1]}),
        "tags",
    )
    .await;
    assert_invalid(
        &app,
        json!({"name": "a", "provider": "openai", "aws_region": "Mars 1"}),
        "aws_region",
    )
    .await;
    assert_invalid(&app, json!({"name": "a", "provider": "vertex_ai", "vertex_service_account_file": "/nonexistent/key.json"}), "vertex_service_account_file").await;
    assert_invalid(
        &app,
        json!({"name": "a", "provider": "openai", "cache": {"mode": "sometimes"}}),
        "cache.mode",
    )
    .await;
    assert_invalid(
        &app,
        json!({"name": "a", "provider": "openai", "cache": {"ttl_seconds": 0}}),
        "cache.ttl_seconds",
    )
    .await;
    assert_invalid(
        &app,
        json!({"name": "a", "provider": "openai", "colour": "red"}),
        "body",
    )
    .await;
    assert_invalid(&app, json!(["not", "an", "object"]), "body").await;

    let (status, error) = app.post("/api/proxies", json!("x")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");

    let mut response = awc::Client::new()
        .post(app.url("/api/proxies"))
        .insert_header((
            "Authorization",
            format!("Bearer {}", super::support::TEST_TOKEN),
        ))
        .content_type("application/json")
        .send_body("{not json")
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("a JSON error");
    assert!(body["error"]["message"].as_str().is_some(), "{body}");

    let (_, list) = app.get("/api/proxies").await;
    assert_eq!(list, json!([]), "nothing was created by bad input");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    app.shutdown().await;
}

#[actix_web::test]
async fn a_port_taken_by_another_proxy_is_refused() {
    let mut app = TestApp::start().await;
    let first = app
        .create(json!({"name": "First", "provider": "openai", "start": false}))
        .await;
    let port = port_of(&first);
    let (status, error) = app
        .post(
            "/api/proxies",
            json!({"name": "Second", "provider": "openai", "port": port}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"]["field"], "port");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&port.to_string()), "{message}");

    let second = app
        .create(json!({"name": "Second", "provider": "openai", "start": false}))
        .await;
    let (status, error) = app
        .patch(
            &format!("/api/proxies/{}", id_of(&second)),
            json!({"port": port}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "port");
    app.shutdown().await;
}

#[actix_web::test]
async fn unknown_ids_are_404_everywhere() {
    let mut app = TestApp::start().await;
    assert_eq!(app.get("/api/proxies/999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.patch("/api/proxies/999", json!({"name": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/api/proxies/999").await.0,
        StatusCode::NOT_FOUND
    );
    for action in ["start", "stop", "restart"] {
        let (status, body) = app.post_empty(&format!("/api/proxies/999/{action}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    assert_eq!(app.get("/api/proxies/abc").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/nothing-here").await.0, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

#[actix_web::test]
async fn delete_is_refused_while_running() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Busy", "provider": "deepseek"}))
        .await;
    let path = format!("/api/proxies/{}", id_of(&proxy));
    let (status, error) = app.delete(&path).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stop it")),
        "{error}"
    );
    assert_eq!(app.get(&path).await.0, StatusCode::OK);

    app.post_empty(&format!("{path}/stop")).await;
    let (status, _) = app.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

#[actix_web::test]
async fn patch_edits_settings_and_keeps_the_rest() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Before", "provider": "openai", "description": "keep me", "tags": ["a"]}))
        .await;
    let path = format!("/api/proxies/{}", id_of(&proxy));

    let (status, edited) = app
        .patch(&path, json!({"name": "After", "upstream_url": "http://127.0.0.1:9/v1", "cache": {"ttl_seconds": 60, "mode": "replay_only"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["name"], "After");
    assert_eq!(edited["description"], "keep me");
    assert_eq!(edited["tags"], json!(["a"]));
    assert_eq!(edited["upstream_url"], "http://127.0.0.1:9/v1");
    assert_eq!(
        edited["cache"],
        json!({"enabled": true, "mode": "replay_only", "ttl_seconds": 60, "partition_by_credential": false, "fixtures_dir": null, "ignore_fields": [], "stream_replay": "instant"})
    );
    assert_eq!(
        edited["status"], "running",
        "an edit does not stop the proxy"
    );

    let (status, cleared) = app
        .patch(&path, json!({"upstream_url": "", "tags": []}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["upstream_url"], Value::Null);
    assert_eq!(cleared["tags"], json!([]));

    let (status, error) = app.patch(&path, json!({"provider": "anthropic"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"]["field"], "provider");
    let (status, error) = app.patch(&path, json!({"name": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"]["field"], "name");
    assert_eq!(
        app.get(&path).await.1["name"],
        "After",
        "a rejected edit changes nothing"
    );
    app.shutdown().await;
}

/// The snippets a proxy's card shows, for the address the caller reached the server by.
async fn snippets_of(base: &str, id: i64, host: Option<&str>) -> (StatusCode, Value) {
    let mut request = super::support::authorized(
        awc::Client::new().get(format!("{base}/api/proxies/{id}/snippets")),
    );
    if let Some(host) = host {
        request = request.insert_header(("Host", host));
    }
    let mut response = request.send().await.expect("sent");
    let body = response.json().await.unwrap_or(Value::Null);
    (response.status(), body)
}

#[actix_web::test]
async fn snippets_are_the_providers_programs_for_the_proxy_url() {
    let mut app = TestApp::start().await;
    for kind in rubberduck::providers::ProviderKind::ALL {
        let proxy = app
            .create(json!({
                "name": kind.id(), "provider": kind.id(), "start": false,
                "upstream_url": "http://127.0.0.1:1",
            }))
            .await;
        let (status, snippets) = snippets_of(&app.base, id_of(&proxy), None).await;
        assert_eq!(status, StatusCode::OK, "{snippets}");
        let url = proxy["url"].as_str().expect("a url");
        let expected = kind.provider().snippets(url);
        assert_eq!(
            snippets,
            json!({"python": expected.python, "typescript": expected.typescript, "curl": expected.curl}),
            "{kind}"
        );
        for language in ["python", "typescript", "curl"] {
            let code = snippets[language].as_str().unwrap_or_default();
            assert!(code.contains(url), "{kind} {language}: {code}");
        }
    }

    // A port change waits for a restart: until then the programs call the port in use.
    let running = app
        .create(json!({"name": "moving", "provider": "openai"}))
        .await;
    let id = id_of(&running);
    let old_url = format!("{}/v1", running["url"].as_str().expect("a url"));
    let new_port = app.ports.end();
    let (status, _) = app
        .patch(&format!("/api/proxies/{id}"), json!({"port": new_port}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, snippets) = snippets_of(&app.base, id, None).await;
    let python = snippets["python"].as_str().unwrap_or_default();
    assert!(python.contains(&old_url), "{python}");
    app.post_empty(&format!("/api/proxies/{id}/restart")).await;
    let (_, snippets) = snippets_of(&app.base, id, None).await;
    let python = snippets["python"].as_str().unwrap_or_default();
    assert!(
        python.contains(&format!("http://127.0.0.1:{new_port}/v1")),
        "{python}"
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn snippets_need_a_credential_and_an_existing_proxy() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "one", "provider": "anthropic", "start": false}))
        .await;
    let mut response = awc::Client::new()
        .get(app.url(&format!("/api/proxies/{}/snippets", id_of(&proxy))))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = response.body().await.expect("body");
    assert!(!String::from_utf8_lossy(&body).contains("anthropic"));
    let (status, error) = snippets_of(&app.base, id_of(&proxy) + 1000, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert!(error["error"]["message"].is_string(), "{error}");
    app.shutdown().await;
}

#[actix_web::test]
async fn snippets_use_the_host_the_caller_reached() {
    let data = tempfile::tempdir().expect("tmp");
    let args = rubberduck::config::ServeArgs {
        bind: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data.path().to_owned(),
        proxy_host: "0.0.0.0".parse().expect("ip"),
        proxy_ports: super::support::port_block(),
        stop_timeout: 5,
        bootstrap_token: Some(rubberduck::config::Secret(
            super::support::TEST_TOKEN.to_owned(),
        )),
        ..rubberduck::config::ServeArgs::default()
    };
    let running = rubberduck::app::start(&args).await.expect("starts");
    let base = format!("http://{}", running.admin_addr);
    let mut response =
        super::support::authorized(awc::Client::new().post(format!("{base}/api/proxies")))
            .send_json(&json!({"name": "Shared", "provider": "bedrock", "start": false}))
            .await
            .expect("sent");
    let proxy: Value = response.json().await.expect("json");
    let (status, snippets) = snippets_of(&base, id_of(&proxy), Some("devbox.corp:8000")).await;
    assert_eq!(status, StatusCode::OK, "{snippets}");
    let endpoint = format!("http://devbox.corp:{}", port_of(&proxy));
    for language in ["python", "typescript", "curl"] {
        let code = snippets[language].as_str().unwrap_or_default();
        assert!(code.contains(&endpoint), "{language}: {code}");
        assert!(!code.contains("0.0.0.0"), "{language}: {code}");
    }
    running.shutdown().await;
}
