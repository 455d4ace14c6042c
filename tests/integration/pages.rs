//! Pages over plain HTTP: every fragment URL also renders a full page, and forms work without
//! scripts (POST then redirect).

use awc::http::StatusCode;
use serde_json::json;

use super::support::{TestApp, id_of};

#[actix_web::test]
async fn every_page_renders() {
    let mut app = TestApp::start().await;
    app.create(
        json!({"name": "Shown <b>escaped</b>", "provider": "openai", "description": "about"}),
    )
    .await;
    for (path, expected) in [
        ("/", "Dashboard"),
        ("/proxies", "Create Proxy"),
        ("/logs", "Logs"),
        ("/settings", "Data directory"),
    ] {
        let (status, html) = app.get_text(path, false).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(html.contains(expected), "{path} lacks {expected}");
        assert!(html.contains("htmx-2.0.11.min.js"), "{path} loads htmx");
    }
    let (_, html) = app.get_text("/proxies", false).await;
    assert!(
        html.contains("Shown &#60;b&#62;escaped&#60;/b&#62;")
            || html.contains("Shown &lt;b&gt;escaped&lt;/b&gt;"),
        "names are escaped"
    );
    assert!(!html.contains("<b>escaped</b>"));

    let (status, html) = app.get_text("/no-such-page", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no page at /no-such-page"));

    let (status, js) = app
        .get_text("/static/vendor/htmx-2.0.11.min.js", false)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("htmx"));
    let (status, _) = app.get_text("/static/app.css", false).await;
    assert_eq!(status, StatusCode::OK);
    app.shutdown().await;
}

#[actix_web::test]
async fn fragments_answer_htmx_and_full_pages_answer_browsers() {
    let mut app = TestApp::start().await;
    let (_, modal) = app.get_text("/proxies/new", true).await;
    assert!(modal.contains("Create New Proxy"));
    assert!(!modal.contains("<html"), "HTMX gets the fragment alone");
    let (_, page) = app.get_text("/proxies/new", false).await;
    assert!(
        page.contains("<html") && page.contains("Create New Proxy"),
        "a reload shows the page with the modal open"
    );

    let proxy = app
        .create(json!({"name": "Alpha", "provider": "openai"}))
        .await;
    app.create(json!({"name": "Beta", "provider": "anthropic", "start": false}))
        .await;
    let (_, grid) = app.get_text("/proxies?q=alp", true).await;
    assert!(
        grid.contains("Alpha") && !grid.contains("Beta"),
        "search filters server-side"
    );
    assert!(!grid.contains("<html"));
    let (_, grid) = app.get_text("/proxies?status=stopped", true).await;
    assert!(grid.contains("Beta") && !grid.contains("Alpha"));
    let (_, grid) = app.get_text("/proxies?provider=anthropic", true).await;
    assert!(grid.contains("Beta") && !grid.contains("Alpha"));
    let (_, grid) = app.get_text("/proxies?q=zzz", true).await;
    assert!(grid.contains("No proxy matches"));

    let id = id_of(&proxy);
    let (_, edit) = app.get_text(&format!("/proxies/{id}/edit"), true).await;
    assert!(edit.contains("Configure Alpha") && edit.contains("applies when the proxy restarts"));
    let (_, edit_page) = app.get_text(&format!("/proxies/{id}/edit"), false).await;
    assert!(edit_page.contains("<html") && edit_page.contains("Configure Alpha"));
    let (status, _) = app.get_text("/proxies/999/edit", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

#[actix_web::test]
async fn the_create_form_validates_inline_and_works_without_scripts() {
    let mut app = TestApp::start().await;

    let response = app
        .post_form(
            "/proxies",
            &[("name", ""), ("provider", "openai"), ("port", "80")],
            false,
        )
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.html;
    assert!(
        html.contains("Proxy name is required."),
        "inline name error"
    );
    assert!(
        html.contains("Port must be a whole number"),
        "inline port error"
    );
    assert!(
        html.contains("<html"),
        "a plain POST gets the whole page back"
    );

    let response = app
        .post_form(
            "/proxies",
            &[
                ("name", ""),
                ("provider", "openai"),
                ("description", "kept"),
            ],
            true,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "htmx swaps 2xx only");
    let html = response.html;
    assert!(
        html.contains("Proxy name is required.") && html.contains("kept"),
        "the form keeps what was typed"
    );
    assert!(!html.contains("<html"));

    let response = app
        .post_form(
            "/proxies",
            &[
                ("name", "From a form"),
                ("provider", "deepseek"),
                ("port", ""),
                ("description", ""),
            ],
            false,
        )
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.header("location"), Some("/proxies"));

    let response = app
        .post_form(
            "/proxies",
            &[
                ("name", "Via htmx"),
                ("provider", "anthropic"),
                ("tags", "a, b"),
            ],
            true,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.header("HX-Trigger"),
        Some("proxies-changed"),
        "the grid is told to reload"
    );

    let (_, list) = app.get("/api/proxies").await;
    assert_eq!(list[0]["name"], "From a form");
    assert_eq!(list[0]["status"], "running");
    assert_eq!(list[1]["tags"], json!(["a", "b"]));

    let id = id_of(&list[0]);
    let response = app
        .post_form(&format!("/proxies/{id}/stop"), &[], false)
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&format!("/api/proxies/{id}")).await.1["status"],
        "stopped"
    );

    let (status, confirm) = app.get_text(&format!("/proxies/{id}/delete"), false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Delete proxy"));
    let response = app
        .post_form(&format!("/proxies/{id}/delete"), &[], false)
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&format!("/api/proxies/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn the_port_check_explains_busy_and_taken_ports() {
    let mut app = TestApp::start().await;
    let taken = app
        .create(json!({"name": "Holder", "provider": "openai"}))
        .await;
    let port = taken["port"].to_string();
    let (_, html) = app
        .get_text(&format!("/proxies/port-check?port={port}"), true)
        .await;
    assert!(
        html.contains("already used by proxy") && html.contains("field-error"),
        "{html}"
    );
    let (_, html) = app
        .get_text(
            &format!("/proxies/port-check?port={port}&id={}", id_of(&taken)),
            true,
        )
        .await;
    assert!(
        !html.contains("field-"),
        "a proxy's own port is fine: {html}"
    );

    let busy = *app.ports.end();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", busy)).expect("bind");
    let (_, html) = app
        .get_text(&format!("/proxies/port-check?port={busy}"), true)
        .await;
    assert!(
        html.contains("in use by another program") && html.contains("field-warning"),
        "{html}"
    );
    let (_, html) = app.get_text("/proxies/port-check?port=12", true).await;
    assert!(html.contains("field-error"), "{html}");
    app.shutdown().await;
}

#[actix_web::test]
async fn sdk_urls_use_the_host_the_browser_reached() {
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
    let client = awc::Client::new();
    let mut response = super::support::authorized(client.post(format!("{base}/api/proxies")))
        .insert_header(("Host", "devbox.corp:8000"))
        .send_json(&json!({"name": "Shared", "provider": "openai", "start": false}))
        .await
        .expect("sent");
    let proxy: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        proxy["url"],
        format!("http://devbox.corp:{}", proxy["port"])
    );
    let mut response = super::support::authorized(client.get(format!("{base}/proxies")))
        .insert_header(("Host", "devbox.corp:8000"))
        .send()
        .await
        .expect("sent");
    let html = String::from_utf8_lossy(&response.body().await.expect("body")).into_owned();
    assert!(
        html.contains(&format!("http://devbox.corp:{}/v1", proxy["port"])),
        "OpenAI SDK URL includes /v1"
    );
    running.shutdown().await;
}
