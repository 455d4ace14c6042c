//! Pages over plain HTTP: every fragment URL also renders a full page, and forms work without
//! scripts (POST then redirect).

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::accounts::{Session, add_user};
use super::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Reply, TestApp, id_of, no_redirects};
use super::upstream::MockUpstream;

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

/// A multipart body as a browser's upload form sends it: `(name, file name, content)` fields.
pub(super) fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "----rubberduck-test-7f3a91c2";
    let mut body = Vec::new();
    for (name, file_name, content) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file_name {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// A proxy of the mock upstream that recorded two different answers.
pub(super) async fn proxy_with_two_answers(app: &TestApp, upstream: &str, name: &str) -> Value {
    let proxy = app
        .create(
            json!({"name": name, "provider": "openai", "upstream_url": format!("{upstream}/v1")}),
        )
        .await;
    let port = super::support::port_of(&proxy);
    for prompt in ["first", "second"] {
        let response = awc::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .send_json(
                &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}),
            )
            .await
            .expect("proxied");
        assert!(response.status().is_success());
    }
    let entries = app
        .get(&format!("/api/proxies/{}/cache", id_of(&proxy)))
        .await
        .1["entries"]
        .clone();
    assert_eq!(entries, 2, "both answers are in the cache");
    proxy
}

/// The files of a `.tar.gz` export: (path, contents).
pub(super) fn unpacked(archive: &[u8]) -> Vec<(String, String)> {
    use std::io::Read;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .expect("a tar archive")
        .map(|entry| {
            let mut entry = entry.expect("an entry");
            let path = entry.path().expect("a path").display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("text");
            (path, text)
        })
        .filter(|(path, _)| path.ends_with(".json"))
        .collect()
}

/// A page answer read whole, with the test app's API token.
async fn page_get(app: &TestApp, path: &str) -> Reply {
    Reply::read(
        super::support::authorized(no_redirects().get(app.url(path)))
            .send()
            .await
            .expect("sent"),
    )
    .await
}

/// Posts an upload form with the test app's API token (as HTMX when `htmx`).
async fn upload(app: &TestApp, id: i64, file_name: &str, content: &[u8], htmx: bool) -> Reply {
    let (content_type, body) = multipart(&[("file", Some(file_name), content)]);
    let mut request = super::support::authorized(
        no_redirects().post(app.url(&format!("/proxies/{id}/cache/import"))),
    )
    .insert_header(("Content-Type", content_type));
    if htmx {
        request = request.insert_header(("HX-Request", "true"));
    }
    Reply::read(request.send_body(body).await.expect("sent")).await
}

#[actix_web::test]
async fn the_cache_pages_export_import_and_report_inline() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let recorder = proxy_with_two_answers(&app, &mock.url, "Recorder").await;
    let id = id_of(&recorder);

    // The card's Actions → Cache and the cache modal link the downloads.
    let (_, grid) = app.get_text("/proxies", true).await;
    for link in [
        format!("href=\"/proxies/{id}/cache/export\""),
        format!("href=\"/proxies/{id}/cache/export?format=jsonl\""),
        format!("href=\"/proxies/{id}/cache#import-fixtures-form\""),
    ] {
        assert!(grid.contains(&link), "the card links {link}");
    }
    assert!(
        !grid.contains("Reload from directory"),
        "no reload without a directory"
    );
    let (_, modal) = app.get_text(&format!("/proxies/{id}/cache"), true).await;
    assert!(modal.contains("id=\"import-fixtures-form\""), "{modal}");
    assert!(modal.contains("enctype=\"multipart/form-data\""));
    assert!(!modal.contains("Fixtures directory"), "not bound");

    let export = page_get(&app, &format!("/proxies/{id}/cache/export")).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.body);
    assert_eq!(export.header("content-type"), "application/gzip");
    assert_eq!(
        export.header("content-disposition"),
        "attachment; filename=\"Recorder-fixtures.tar.gz\""
    );
    let mut response = super::support::authorized(
        awc::Client::new().get(app.url(&format!("/proxies/{id}/cache/export"))),
    )
    .send()
    .await
    .expect("sent");
    let archive = response.body().limit(16 << 20).await.expect("body");
    let files = unpacked(&archive);
    assert_eq!(files.len(), 2, "one file per entry: {files:?}");
    assert!(
        files.iter().all(|(_, text)| text.contains("\"request\"")),
        "{files:?}"
    );

    let jsonl = page_get(&app, &format!("/proxies/{id}/cache/export?format=jsonl")).await;
    assert_eq!(jsonl.status, StatusCode::OK);
    assert_eq!(jsonl.header("content-type"), "application/x-ndjson");
    assert_eq!(jsonl.body.lines().count(), 2, "{}", jsonl.body);
    let wrong = page_get(&app, &format!("/proxies/{id}/cache/export?format=zip")).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong.body.contains("expected tar.gz or jsonl"),
        "{}",
        wrong.body
    );

    // Importing into another proxy reports what it did, inline.
    let other = app
        .create(json!({"name": "Replayer", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let other_id = id_of(&other);
    let imported = upload(
        &app,
        other_id,
        "recorder.jsonl",
        jsonl.body.as_bytes(),
        true,
    )
    .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    assert_eq!(imported.header("HX-Trigger"), "proxies-changed");
    assert!(
        imported.body.contains("id=\"fixtures-report\""),
        "{}",
        imported.body
    );
    assert!(imported.body.contains("added 2") && imported.body.contains("replaced 0"));
    assert!(imported.body.contains("recorder.jsonl"));
    assert!(
        !imported.body.contains("<html"),
        "HTMX gets the modal alone"
    );
    assert!(
        imported.body.contains("data-stat=\"entries\">2<"),
        "the numbers are fresh: {}",
        imported.body
    );
    let again = upload(&app, other_id, "recorder.tar.gz", &archive, true).await;
    assert!(
        again.body.contains("added 0") && again.body.contains("replaced 2"),
        "{}",
        again.body
    );

    // Bad files: a clear message inline, never a 500.
    let text = upload(&app, other_id, "notes.txt", b"just some notes\n", true).await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(
        text.body.contains("Nothing was imported from"),
        "{}",
        text.body
    );
    assert!(
        text.body.contains("line 1") && text.body.contains("not a fixture"),
        "{}",
        text.body
    );
    let broken = upload(
        &app,
        other_id,
        "broken.tar.gz",
        b"\x1f\x8b\x08\x00garbage",
        true,
    )
    .await;
    assert_eq!(broken.status, StatusCode::OK, "htmx swaps 2xx only");
    assert!(
        broken.body.contains("id=\"fixtures-error\""),
        "{}",
        broken.body
    );
    assert!(
        broken.body.contains("not a readable .tar.gz"),
        "{}",
        broken.body
    );
    let plain = upload(
        &app,
        other_id,
        "broken.tar.gz",
        b"\x1f\x8b\x08\x00garbage",
        false,
    )
    .await;
    assert_eq!(plain.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(plain.body.contains("<html") && plain.body.contains("not a readable .tar.gz"));
    let empty = upload(&app, other_id, "", b"", true).await;
    assert!(
        empty.body.contains("Choose a file to import first"),
        "{}",
        empty.body
    );
    let empty_file = upload(&app, other_id, "empty.jsonl", b"", true).await;
    assert!(
        empty_file.body.contains("“empty.jsonl” is empty"),
        "{}",
        empty_file.body
    );
    let not_multipart = app
        .post_form(
            &format!("/proxies/{other_id}/cache/import"),
            &[("file", "x")],
            true,
        )
        .await;
    assert_eq!(not_multipart.status, StatusCode::OK);
    assert!(
        not_multipart.html.contains("The upload could not be read"),
        "{}",
        not_multipart.html
    );
    let (_, cache) = app.get(&format!("/api/proxies/{other_id}/cache")).await;
    assert_eq!(cache["entries"], 2, "bad files changed nothing");

    // Reloading a proxy without a directory says so inline.
    let reload = app
        .post_form(&format!("/proxies/{other_id}/cache/reload"), &[], true)
        .await;
    assert_eq!(reload.status, StatusCode::OK);
    assert!(
        reload.html.contains("not bound to a fixtures directory"),
        "{}",
        reload.html
    );
    let missing = page_get(&app, "/proxies/999/cache/export").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn a_bound_proxy_reloads_from_its_directory_and_shows_the_last_load() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let recorder = proxy_with_two_answers(&app, &mock.url, "Recorder").await;
    let jsonl = page_get(
        &app,
        &format!("/proxies/{}/cache/export?format=jsonl", id_of(&recorder)),
    )
    .await;
    let fixtures = tempfile::tempdir().expect("tmp");
    let dir = fixtures.path().join("fixtures");
    let bound = app
        .create(json!({
            "name": "Bound", "provider": "openai", "upstream_url": format!("{}/v1", mock.url),
            "cache": {"fixtures_dir": dir.display().to_string()}
        }))
        .await;
    let id = id_of(&bound);
    // An import into a recording proxy with a directory writes the files there too.
    let imported = upload(&app, id, "recorder.jsonl", jsonl.body.as_bytes(), true).await;
    assert!(imported.body.contains("added 2"), "{}", imported.body);
    let (status, _) = app.delete(&format!("/api/proxies/{id}/cache")).await;
    assert_eq!(status, StatusCode::OK);

    let (_, grid) = app.get_text("/proxies", true).await;
    assert!(
        grid.contains(&format!("action=\"/proxies/{id}/cache/reload\"")),
        "{grid}"
    );
    let reload = app
        .post_form(&format!("/proxies/{id}/cache/reload"), &[], true)
        .await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.html);
    assert_eq!(reload.header("HX-Trigger"), Some("proxies-changed"));
    let html = reload.html;
    assert!(html.contains("id=\"fixtures-report\""), "{html}");
    assert!(
        html.contains("loaded 2") && html.contains("from 2 files"),
        "{html}"
    );
    assert!(html.contains("rejected 0"), "{html}");
    assert!(
        html.contains(&dir.display().to_string()),
        "the directory is named: {html}"
    );
    assert!(
        html.contains("id=\"fixtures-last-load\">2 entries from 2 files in"),
        "{html}"
    );
    let (_, cache) = app.get(&format!("/api/proxies/{id}/cache")).await;
    assert_eq!(cache["entries"], 2);
    assert_eq!(cache["fixtures"]["loaded"], 2);

    // A file that is not a fixture is reported with its reason.
    std::fs::write(dir.join("stray.json"), "{\"not\": \"a fixture\"}").expect("write");
    let reload = app
        .post_form(&format!("/proxies/{id}/cache/reload"), &[], false)
        .await;
    assert_eq!(
        reload.status,
        StatusCode::OK,
        "a plain form gets the page with the modal"
    );
    assert!(
        reload.html.contains("<html") && reload.html.contains("rejected 1"),
        "{}",
        reload.html
    );
    assert!(reload.html.contains("stray.json"), "{}", reload.html);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn upload_forms_need_the_csrf_token_too() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let recorder = proxy_with_two_answers(&app, &mock.url, "Recorder").await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let export = admin
        .get(&format!(
            "/proxies/{}/cache/export?format=jsonl",
            id_of(&recorder)
        ))
        .await;
    assert_eq!(
        export.status,
        StatusCode::OK,
        "a signed-in browser downloads"
    );
    assert_eq!(export.body.lines().count(), 2);
    let target = id_of(
        &app.create(json!({"name": "Target", "provider": "openai"}))
            .await,
    );
    let path = format!("/proxies/{target}/cache/import");
    let send = |fields: Vec<(&'static str, Option<&'static str>, Vec<u8>)>, header: bool| {
        let fields: Vec<(&str, Option<&str>, &[u8])> = fields
            .iter()
            .map(|(name, file, content)| (*name, *file, content.as_slice()))
            .collect();
        let (content_type, body) = multipart(&fields);
        let mut request = admin
            .request(awc::http::Method::POST, &path)
            .insert_header(("Content-Type", content_type));
        if header {
            request = request
                .insert_header(("X-CSRF-Token", admin.csrf.as_str()))
                .insert_header(("HX-Request", "true"));
        }
        async move { Reply::read(request.send_body(body).await.expect("sent")).await }
    };
    let file = export.body.clone().into_bytes();

    let forged = send(vec![("file", Some("a.jsonl"), file.clone())], false).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let wrong = send(
        vec![
            ("csrf_token", None, b"not-the-token".to_vec()),
            ("file", Some("a.jsonl"), file.clone()),
        ],
        false,
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    assert_eq!(
        app.get(&format!("/api/proxies/{target}/cache")).await.1["entries"],
        0
    );

    // A browser without scripts: the token is a field of the form (after the file, even).
    let plain = send(
        vec![
            ("file", Some("a.jsonl"), file.clone()),
            ("csrf_token", None, admin.csrf.clone().into_bytes()),
        ],
        false,
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    assert!(
        plain.body.contains("<html") && plain.body.contains("added 2"),
        "{}",
        plain.body
    );
    let htmx = send(vec![("file", Some("a.jsonl"), file)], true).await;
    assert_eq!(htmx.status, StatusCode::OK, "{}", htmx.body);
    assert!(htmx.body.contains("replaced 2"), "{}", htmx.body);
    let cross_site = Reply::read(
        admin
            .request(
                awc::http::Method::POST,
                &format!("/proxies/{target}/cache/reload"),
            )
            .insert_header(("X-CSRF-Token", admin.csrf.as_str()))
            .insert_header(("Sec-Fetch-Site", "cross-site"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_edit_form_offers_refresh_and_keeps_an_admins_directory_from_members() {
    let mut app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, "ada@example.com", "ada's long password", "member").await;
    let ada = Session::sign_in(&app, "ada@example.com", "ada's long password").await;
    let created = ada
        .send_json(
            awc::http::Method::POST,
            "/api/proxies",
            json!({"name": "Ada's", "provider": "openai", "start": false}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = id_of(&created.json());
    let fixtures = tempfile::tempdir().expect("tmp");
    let dir = fixtures.path().display().to_string();
    let (status, bound) = app
        .patch(
            &format!("/api/proxies/{id}"),
            json!({"cache": {"fixtures_dir": dir}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bound}");

    let edit = ada.get(&format!("/proxies/{id}/edit")).await;
    assert!(
        edit.body.contains("value=\"refresh\""),
        "the refresh mode is offered"
    );
    assert!(edit.body.contains("every request goes upstream"));
    assert!(
        !edit.body.contains("cache_fixtures_dir"),
        "members do not see the directory"
    );
    let form = [
        ("name", "Ada's"),
        ("port", ""),
        ("description", ""),
        ("tags", ""),
        ("upstream_url", ""),
        ("cache_fields", "1"),
        ("cache_enabled", "on"),
        ("cache_mode", "refresh"),
        ("cache_ttl_seconds", ""),
    ];
    let saved = ada.post_form(&format!("/proxies/{id}"), &form).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, proxy) = app.get(&format!("/api/proxies/{id}")).await;
    assert_eq!(proxy["cache"]["mode"], "refresh");
    assert_eq!(
        proxy["cache"]["fixtures_dir"], dir,
        "a member's save keeps the directory"
    );
    let (_, card) = app.get_text(&format!("/proxies/{id}"), true).await;
    assert!(card.contains("<strong>refresh</strong>"), "{card}");

    // A member who sends the field anyway is told why not, at the top of the form.
    let mut forged = form.to_vec();
    forged.push(("cache_fixtures_dir", "/tmp"));
    let refused = ada.post_form(&format!("/proxies/{id}"), &forged).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("class=\"form-error\" role=\"alert\">Only an admin can bind"),
        "{}",
        refused.body
    );

    // Admins see the field, get inline errors and can unbind.
    let edit = admin.get(&format!("/proxies/{id}/edit")).await;
    assert!(
        edit.body
            .contains(&format!("name=\"cache_fixtures_dir\" value=\"{dir}\"")),
        "{}",
        edit.body
    );
    let mut relative = form.to_vec();
    relative.push(("cache_fixtures_dir", "fixtures"));
    let refused = admin.post_form(&format!("/proxies/{id}"), &relative).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("id=\"edit-fixtures-dir-error\" class=\"field-error\">The fixtures directory must be an absolute path"), "{}", refused.body);
    assert!(
        !refused
            .body
            .contains("class=\"form-error\" role=\"alert\">The fixtures"),
        "shown once, at its field"
    );
    let mut ttl = form.to_vec();
    ttl[8] = ("cache_ttl_seconds", "-5");
    let refused = admin.post_form(&format!("/proxies/{id}"), &ttl).await;
    assert_eq!(
        refused
            .body
            .matches("Cache TTL must be a positive number")
            .count(),
        1,
        "a field's error shows once"
    );
    let mut unbind = form.to_vec();
    unbind.push(("cache_fixtures_dir", ""));
    let saved = admin.post_form(&format!("/proxies/{id}"), &unbind).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, proxy) = app.get(&format!("/api/proxies/{id}")).await;
    assert_eq!(
        proxy["cache"]["fixtures_dir"],
        Value::Null,
        "an admin's empty field unbinds"
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn cards_of_declared_proxies_say_the_file_wins() {
    let mut app = TestApp::start().await;
    let declared = app
        .create(json!({"name": "Declared", "provider": "openai", "start": false}))
        .await;
    app.create(json!({"name": "Made here", "provider": "openai", "start": false}))
        .await;
    app.shutdown().await;
    let db = rubberduck::db::open(app.data_dir()).expect("the database opens");
    let mut conn = db.get().expect("a connection");
    let id = i32::try_from(id_of(&declared)).expect("an id");
    rubberduck::db::proxies::set_declared_in(&mut conn, id, Some("/srv/ci/rubberduck.toml"))
        .expect("marked as declared");
    drop(conn);
    drop(db);
    app.restart().await;

    let (_, card) = app.get_text(&format!("/proxies/{id}"), true).await;
    assert!(
        card.contains("class=\"tag tag-declared\" title=\"Declared in /srv/ci/rubberduck.toml: edits made here are replaced by the file at the next start.\">from rubberduck.toml</span>"),
        "{card}"
    );
    let (_, grid) = app.get_text("/proxies", true).await;
    assert_eq!(
        grid.matches("tag-declared").count(),
        1,
        "only the declared one"
    );
    let (_, edit) = app.get_text(&format!("/proxies/{id}/edit"), true).await;
    assert!(edit.contains("id=\"declared-warning\""), "{edit}");
    app.shutdown().await;
}
