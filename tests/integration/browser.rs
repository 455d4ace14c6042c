//! The pages in headless Chromium: create a proxy from the modal, see it run, stop it, see a
//! change made elsewhere arrive live; configure failures and the cache; watch log rows and the
//! dashboard's numbers arrive without a reload; disable and delete an account.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::support::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, id_of};

const WAIT: Duration = Duration::from_secs(15);

/// chromedriver in a process group of its own, with the Chromium it starts: a test that fails
/// before closing its session would otherwise leave Chromium running after chromedriver is gone.
struct ChromeDriver(Child);

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts chromedriver and a headless Chromium session. Fails loudly when Chromium is missing:
/// `.ci/run` installs it (`apt-get install chromium chromium-driver`).
async fn browser() -> (ChromeDriver, Client, tempfile::TempDir) {
    browser_in_zone("UTC").await
}

/// A browser whose local time is `time_zone` (an IANA name), as a user's elsewhere would be.
async fn browser_in_zone(time_zone: &str) -> (ChromeDriver, Client, tempfile::TempDir) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .process_group(0)
        .arg(format!("--port={port}"))
        .env("TZ", time_zone)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
    let driver = ChromeDriver(driver);
    let profile = tempfile::tempdir().expect("profile dir");
    let capabilities = json!({
        "goog:chromeOptions": {
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let capabilities = match capabilities {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut last_error = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return (driver, client, profile),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("cannot start a Chromium session: {last_error:?}");
}

fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir.join(name)
}

async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(artifact(name), png).expect("screenshot saved");
}

/// The page updates itself live, so an element found a moment ago may have been replaced by a
/// fresh copy; these look the element up again instead of failing on a stale reference.
async fn text_of(client: &Client, css: &str) -> String {
    let mut last_error = None;
    for _ in 0..20 {
        match client.find(Locator::Css(css)).await {
            Ok(element) => match element.text().await {
                Ok(text) => return text,
                Err(e) => last_error = Some(e),
            },
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot read {css}: {last_error:?}");
}

/// A Responses API request the mock answers with usage (11 input, 7 output tokens).
const RESPONSES_BODY: &str = "{\"model\":\"gpt-4o\",\"input\":\"hi\"}";

/// Sends `body` to a proxy as an SDK would and reads the whole answer.
async fn proxy_request(port: u16, path: &str, body: &'static str) {
    let mut response = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .content_type("application/json")
        .send_body(body)
        .await
        .expect("proxied");
    response.body().await.expect("body");
}

/// Opens `path` as a signed-out browser does: the login page comes first and leads back.
async fn sign_in_at(client: &Client, app: &TestApp, path: &str) {
    client.goto(&app.url(path)).await.expect("page opens");
    wait_for(client, "input[name=password]", "the login page").await;
    set_field(client, "#email", ADMIN_EMAIL).await;
    set_field(client, "#password", ADMIN_PASSWORD).await;
    click(client, "form[action='/login'] button[type=submit]").await;
    for _ in 0..50 {
        if client.current_url().await.expect("url").path() == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("signing in did not lead back to {path}");
}

async fn click(client: &Client, css: &str) {
    let mut last_error = None;
    for _ in 0..20 {
        match client.find(Locator::Css(css)).await {
            Ok(element) => match element.click().await {
                Ok(()) => return,
                Err(e) => last_error = Some(e),
            },
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot click {css}: {last_error:?}");
}

async fn wait_for(client: &Client, css: &str, what: &str) {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

async fn background_colour(client: &Client, selector: &str) -> String {
    client
        .execute(
            "return getComputedStyle(document.querySelector(arguments[0])).backgroundColor;",
            vec![json!(selector)],
        )
        .await
        .expect("script runs")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[actix_web::test]
async fn create_a_proxy_from_the_modal_then_stop_it() {
    let mut app = TestApp::start().await;
    let (_driver, client, _profile) = browser().await;

    sign_in_at(&client, &app, "/proxies").await;
    wait_for(&client, ".empty-state", "an empty Proxies page").await;

    click(&client, "#create-proxy").await;
    wait_for(&client, "#create-proxy-form", "the modal opens").await;
    assert_eq!(
        client.current_url().await.expect("url").path(),
        "/proxies",
        "the modal opened in place, without navigating"
    );

    click(&client, "#create-proxy-form button[type=submit]").await;
    wait_for(&client, "#name-error", "an inline error for the empty form").await;
    assert_eq!(
        text_of(&client, "#name-error").await,
        "Proxy name is required."
    );

    client
        .find(Locator::Id("name"))
        .await
        .expect("name field")
        .send_keys("Browser Proxy")
        .await
        .expect("type");
    client
        .find(Locator::Id("description"))
        .await
        .expect("description field")
        .send_keys("Made in Chromium")
        .await
        .expect("type");
    click(&client, "#create-proxy-form button[type=submit]").await;

    wait_for(
        &client,
        "article.card[data-status='running']",
        "the new card appears, running",
    )
    .await;
    let text = text_of(&client, "article.card").await;
    assert!(
        text.contains("Browser Proxy") && text.contains("Made in Chromium"),
        "{text}"
    );
    assert!(
        text.contains(&format!("http://127.0.0.1:{}/v1", app.ports.start())),
        "{text}"
    );
    assert!(
        client
            .find_all(Locator::Css("#modal .modal"))
            .await
            .expect("query")
            .is_empty(),
        "the modal closed"
    );
    assert_eq!(
        background_colour(&client, "article.card .dot").await,
        "rgb(22, 163, 74)",
        "the dot is green"
    );
    save_screenshot(&client, "proxies-running.png").await;

    click(&client, "article.card .btn-stop").await;
    wait_for(
        &client,
        "article.card[data-status='stopped']",
        "the card shows stopped",
    )
    .await;
    assert_eq!(
        background_colour(&client, "article.card .dot").await,
        "rgb(156, 163, 175)",
        "the dot turned gray"
    );
    save_screenshot(&client, "proxies-stopped.png").await;

    // A start made elsewhere (the API) reaches the open page live, totals included.
    let (_, list) = app.get("/api/proxies").await;
    let id = id_of(&list[0]);
    app.post_empty(&format!("/api/proxies/{id}/start")).await;
    wait_for(
        &client,
        "article.card[data-status='running']",
        "the card turns running without a reload",
    )
    .await;
    assert_eq!(text_of(&client, "#totals [data-stat='running']").await, "1");

    // Signing out ends the session: the pages lead to the login page again.
    assert!(
        text_of(&client, ".sidebar-user")
            .await
            .contains(super::support::ADMIN_EMAIL)
    );
    click(&client, ".sidebar-user button[type=submit]").await;
    wait_for(
        &client,
        "form[action='/login']",
        "the login page after signing out",
    )
    .await;
    client.goto(&app.url("/proxies")).await.expect("page opens");
    wait_for(&client, "form[action='/login']", "signed out for good").await;

    client.close().await.expect("browser closes");
    app.shutdown().await;
}

#[actix_web::test]
async fn inspect_and_clear_a_cache_then_switch_to_replay_only() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Cached", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let port = super::support::port_of(&proxy);
    for _ in 0..2 {
        proxy_request(port, "/v1/chat/completions", "{\"model\":\"m\"}").await;
    }
    // The entry is written in the background.
    let deadline = std::time::Instant::now() + WAIT;
    while app
        .get(&format!("/api/proxies/{}/cache", id_of(&proxy)))
        .await
        .1["entries"]
        != 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the entry was never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    wait_for(&client, "article.card", "the card").await;
    let card = text_of(&client, "article.card .cache-facts").await;
    assert_eq!(card, "1 entry · 50% hit rate", "one miss, one hit");

    click(&client, "article.card details.menu summary").await;
    click(&client, "article.card a[href$='/cache']").await;
    wait_for(&client, "#cache-facts", "the cache info modal").await;
    assert_eq!(
        text_of(&client, "#cache-facts [data-stat='entries']").await,
        "1"
    );
    assert_eq!(
        text_of(&client, "#cache-facts [data-stat='hits']").await,
        "1"
    );
    save_screenshot(&client, "cache-info.png").await;

    click(&client, ".modal-foot .btn-stop").await;
    client
        .accept_alert()
        .await
        .expect("the confirmation is accepted");
    wait_for(&client, ".modal .notice", "a notice after clearing").await;
    assert_eq!(
        text_of(&client, ".modal .notice").await,
        "Removed 1 cached answer."
    );
    assert_eq!(
        text_of(&client, "#cache-facts [data-stat='entries']").await,
        "0"
    );

    click(&client, ".modal-head .modal-close").await;
    click(&client, "article.card .btn-configure").await;
    wait_for(&client, "#edit-cache-mode", "the Configure modal").await;
    client
        .find(Locator::Css("#edit-cache-mode option[value='replay_only']"))
        .await
        .expect("replay option")
        .click()
        .await
        .expect("select replay_only");
    click(&client, "#edit-proxy-form button[type=submit]").await;
    let deadline = std::time::Instant::now() + WAIT;
    while !text_of(&client, "article.card .cache-facts")
        .await
        .contains("replay only")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the card never showed replay only"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, saved) = app.get(&format!("/api/proxies/{}", id_of(&proxy))).await;
    assert_eq!(saved["cache"]["mode"], "replay_only");
    assert_eq!(
        saved["cache"]["enabled"], true,
        "other cache settings are kept"
    );

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}

async fn set_field(client: &Client, css: &str, value: &str) {
    let field = client.find(Locator::Css(css)).await.expect("the field");
    field.clear().await.expect("cleared");
    field.send_keys(value).await.expect("typed");
}

/// Opens the first card's Actions → Failure settings.
async fn open_failure_settings(client: &Client) {
    click(client, "article.card details.menu summary").await;
    click(client, "article.card a[href$='/failures']").await;
    wait_for(client, "#failures-form", "the failure settings").await;
}

#[actix_web::test]
async fn configure_failures_from_the_browser() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Flaky", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let (id, port) = (id_of(&proxy), super::support::port_of(&proxy));
    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    wait_for(&client, "article.card", "the card").await;
    open_failure_settings(&client).await;

    click(&client, "#errors_enabled").await;
    set_field(&client, "#errors_rate_429", "80").await;
    set_field(&client, "#errors_rate_500", "30").await;
    click(&client, "#failures-form .btn-primary").await;
    wait_for(&client, "#failures-form .field-error", "an inline error").await;
    assert_eq!(
        text_of(&client, "#failures-form .field-error").await,
        "Together the error rates can be at most 100%."
    );

    set_field(&client, "#errors_rate_500", "20").await;
    click(&client, "#failures-form .btn-primary").await;
    wait_for(&client, ".modal .notice", "a saved notice").await;
    save_screenshot(&client, "failure-settings.png").await;
    let (_, saved) = app.get(&format!("/api/proxies/{id}/failure-config")).await;
    assert_eq!(saved["errors"]["enabled"], true);
    assert_eq!(saved["errors"]["rates"], json!({"429": 0.8, "500": 0.2}));

    let response = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .send_body("{}")
        .await
        .expect("proxied");
    assert!(
        response.status() == 429 || response.status() == 500,
        "every request fails now: {}",
        response.status()
    );
    assert_eq!(
        response
            .headers()
            .get("x-rubberduck-injected")
            .and_then(|v| v.to_str().ok()),
        Some("error_injection")
    );

    click(&client, ".modal-head .modal-close").await;
    wait_for(
        &client,
        "article.card .tag-warn",
        "the card names the active kind",
    )
    .await;
    assert_eq!(text_of(&client, "article.card .tag-warn").await, "⚠ errors");

    open_failure_settings(&client).await;
    click(&client, "#failures-form button[formaction$='/reset']").await;
    client.accept_alert().await.expect("the reset is confirmed");
    wait_for(&client, ".modal .notice", "a reset notice").await;
    let (_, reset) = app.get(&format!("/api/proxies/{id}/failure-config")).await;
    assert_eq!(reset["errors"]["enabled"], false);
    assert_eq!(reset["errors"]["rates"], json!({}));

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}

async fn choose(client: &Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .expect("the select")
        .select_by_value(value)
        .await
        .expect("the option is chosen");
}

async fn value_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .expect("the field")
        .prop("value")
        .await
        .expect("its value")
        .unwrap_or_default()
}

#[actix_web::test]
async fn write_a_script_in_the_failure_modal_row_by_row() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Scripted", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let (id, port) = (id_of(&proxy), super::support::port_of(&proxy));
    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    wait_for(&client, "article.card", "the card").await;
    open_failure_settings(&client).await;
    wait_for(&client, "#failures-form .script-empty", "an empty script").await;

    click(&client, "#failures-form .add-row").await;
    wait_for(&client, "tr.script-row[data-row='1']", "the first row").await;
    assert_eq!(value_of(&client, "[name=script_0_outcome]").await, "status");
    assert_eq!(value_of(&client, "[name=script_0_value]").await, "429");
    set_field(&client, "[name=script_0_times]", "2").await;
    click(&client, "#failures-form .add-row").await;
    wait_for(&client, "tr.script-row[data-row='2']", "the second row").await;
    assert_eq!(
        value_of(&client, "[name=script_0_times]").await,
        "2",
        "adding a row keeps what was typed"
    );
    choose(
        &client,
        "[name=script_1_outcome]",
        "stream_disconnect_after",
    )
    .await;
    set_field(&client, "[name=script_1_value]", "three").await;
    click(&client, "#failures-form .btn-primary").await;
    wait_for(&client, "tr.row-error .field-error", "the row's error").await;
    assert_eq!(
        text_of(&client, "tr.row-error .field-error").await,
        "Row 2, value: “three” is not a number of events."
    );
    let invalid = client
        .find(Locator::Css("[name=script_1_value]"))
        .await
        .expect("the value box")
        .attr("aria-invalid")
        .await
        .expect("its attribute");
    assert_eq!(invalid.as_deref(), Some("true"));
    let (_, unsaved) = app.get(&format!("/api/proxies/{id}/failure-config")).await;
    assert_eq!(
        unsaved["script"],
        json!([]),
        "nothing saved while a row is wrong"
    );

    set_field(&client, "[name=script_1_value]", "3").await;
    click(&client, "#failures-form .btn-primary").await;
    wait_for_text(
        &client,
        ".modal .notice",
        "Saved: in force from the next request.",
        "a saved notice",
    )
    .await;
    client
        .execute(
            "document.querySelector('#script-editor').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scrolled to the script");
    save_screenshot(&client, "failure-script.png").await;
    let (_, saved) = app.get(&format!("/api/proxies/{id}/failure-config")).await;
    assert_eq!(
        saved["script"],
        json!([{"status": 429, "times": 2}, {"stream_disconnect_after": 3}])
    );

    let statuses = {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let response = awc::Client::new()
                .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
                .insert_header(("content-type", "application/json"))
                .send_body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)
                .await
                .expect("proxied");
            seen.push(response.status().as_u16());
        }
        seen
    };
    assert_eq!(statuses, [429, 429, 200], "the script runs as written");

    click(&client, "button[value='up-1']").await;
    wait_for_text(
        &client,
        ".modal .notice",
        "Not saved yet: Save puts the script in force.",
        "the moved rows",
    )
    .await;
    assert_eq!(
        value_of(&client, "[name=script_0_outcome]").await,
        "stream_disconnect_after"
    );
    click(&client, "button[value='remove-0']").await;
    wait_for(&client, "tr.script-row[data-row='1']", "the rows again").await;
    let rows = client
        .find_all(Locator::Css("tr.script-row"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1, "one row is left");
    assert_eq!(value_of(&client, "[name=script_0_outcome]").await, "status");
    choose(&client, "#script_end", "repeat").await;
    click(&client, "#failures-form .btn-primary").await;
    wait_for_text(
        &client,
        ".modal .notice",
        "Saved: in force from the next request.",
        "a saved notice",
    )
    .await;
    let (_, saved) = app.get(&format!("/api/proxies/{id}/failure-config")).await;
    assert_eq!(saved["script"], json!([{"status": 429, "times": 2}]));
    assert_eq!(saved["script_end"], "repeat");

    click(&client, ".modal-head .modal-close").await;
    wait_for(&client, "article.card .tag-warn", "the card's failure tag").await;
    assert_eq!(text_of(&client, "article.card .tag-warn").await, "⚠ script");

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}

/// Types a local date and time into a `datetime-local` field, as picking it would.
async fn set_local_time(client: &Client, name: &str, value: &str) {
    client
        .execute(
            "const field = document.querySelector(`input[name='${arguments[0]}']`); \
             field.value = arguments[1]; \
             field.dispatchEvent(new Event('change', { bubbles: true })); return null;",
            vec![json!(name), json!(value)],
        )
        .await
        .expect("the field takes the value");
}

/// Leaves a mark on the page that a reload would wipe.
async fn mark_the_page(client: &Client) {
    client
        .execute("window.notReloaded = true; return null;", vec![])
        .await
        .expect("marker set");
}

/// The page still carries the mark: whatever changed came in without a reload.
async fn assert_not_reloaded(client: &Client) {
    assert_eq!(
        client
            .execute("return window.notReloaded === true;", vec![])
            .await
            .expect("script runs"),
        json!(true),
        "all of it without a reload"
    );
}

/// How many rows the log table shows.
async fn log_rows(client: &Client) -> usize {
    client
        .find_all(Locator::Css("#log-rows tr.log-row"))
        .await
        .expect("query")
        .len()
}

async fn wait_for_log_rows(client: &Client, n: usize, what: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while log_rows(client).await != n {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn new_log_rows_arrive_live_and_follow_the_filters() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Live", "provider": "openai", "upstream_url": mock.url}))
        .await;
    let port = super::support::port_of(&proxy);
    let send = |path: &'static str| proxy_request(port, path, RESPONSES_BODY);

    // Nine hours east of UTC, with no daylight saving time to make the test flaky.
    let (_driver, client, _profile) = browser_in_zone("Asia/Tokyo").await;
    sign_in_at(&client, &app, "/logs").await;
    wait_for(&client, "#log-rows .empty-state", "the empty state").await;
    wait_for(
        &client,
        ".log-live[data-live-state='open']",
        "the live stream opens",
    )
    .await;
    mark_the_page(&client).await;

    send("/v1/responses").await;
    wait_for_log_rows(&client, 1, "the first row arrives live").await;
    let row = text_of(&client, "#log-rows tr.log-row").await;
    assert!(
        row.contains("/v1/responses") && row.contains("gpt-4o") && row.contains("Live"),
        "{row}"
    );
    assert!(row.contains("miss") && row.contains("200"), "{row}");
    assert!(
        !client
            .find(Locator::Css("#log-rows .empty-row"))
            .await
            .expect("the empty row stays in the DOM")
            .is_displayed()
            .await
            .expect("visibility"),
        "the empty state hides once a row is there"
    );
    let time = client
        .find(Locator::Css("#log-rows tr.log-row time"))
        .await
        .expect("a time");
    assert!(
        time.attr("data-local").await.expect("attr").is_some(),
        "live rows get local times too"
    );
    assert!(
        !time.text().await.expect("text").contains("UTC"),
        "shown in local time"
    );

    send("/v1/responses").await;
    send("/v1/responses/second").await;
    wait_for_log_rows(&client, 3, "more rows arrive").await;
    assert_eq!(
        text_of(&client, "#log-new").await,
        "3 new since loaded",
        "the count says how many arrived live"
    );
    assert!(
        text_of(&client, "#log-rows tr.log-row:first-child")
            .await
            .contains("/v1/responses/second"),
        "newest on top"
    );
    assert!(
        text_of(&client, "#log-rows tr.log-row:nth-child(2)")
            .await
            .contains("hit"),
        "the repeat was a cache hit"
    );
    save_screenshot(&client, "logs-live.png").await;

    // Searching swaps the results and reconnects the stream with the filter.
    client
        .find(Locator::Id("log-q"))
        .await
        .expect("search box")
        .send_keys("second")
        .await
        .expect("typed");
    wait_for_log_rows(&client, 1, "the search narrows the table").await;
    wait_for(
        &client,
        ".log-live[sse-connect*='q=second'][data-live-state='open']",
        "the filtered stream opens",
    )
    .await;
    assert!(
        client
            .current_url()
            .await
            .expect("url")
            .query()
            .unwrap_or_default()
            .contains("q=second"),
        "the URL keeps the filter"
    );
    send("/v1/responses/other").await;
    send("/v1/responses/second").await;
    wait_for_log_rows(&client, 2, "a matching row arrives live").await;
    let table = text_of(&client, "#log-rows").await;
    assert!(!table.contains("/other"), "{table}");

    // The time range is typed in the browser's local time and sent as UTC: an hour ago in
    // Tokyo keeps both rows, which a server reading it as UTC would see as hours ahead.
    let hint = text_of(&client, ".time-hint").await;
    assert!(
        hint.contains("your time zone (Asia/Tokyo)"),
        "the hint names the zone the fields are in: {hint}"
    );
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).expect("an offset");
    let local_input = |time: chrono::DateTime<chrono::Utc>| {
        time.with_timezone(&tokyo)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    set_local_time(&client, "since", &local_input(hour_ago)).await;
    wait_for(
        &client,
        ".log-live[sse-connect*='since='][data-live-state='open']",
        "the stream reconnects with the time range",
    )
    .await;
    assert_eq!(log_rows(&client).await, 2, "rows of the last hour stay");
    let query = client
        .current_url()
        .await
        .expect("url")
        .query()
        .unwrap_or_default()
        .to_owned();
    let sent = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("since="))
        .expect("the URL keeps the time range");
    let sent = percent_encoding::percent_decode_str(sent)
        .decode_utf8()
        .expect("UTF-8");
    let sent = chrono::DateTime::parse_from_rfc3339(&sent).expect("sent as an RFC 3339 instant");
    assert!(
        (sent.timestamp() - hour_ago.timestamp()).abs() <= 1,
        "{sent} is the hour-ago instant {hour_ago}"
    );
    set_local_time(
        &client,
        "since",
        &local_input(chrono::Utc::now() + chrono::Duration::minutes(5)),
    )
    .await;
    wait_for_log_rows(&client, 0, "a range in the future holds none").await;
    assert_not_reloaded(&client).await;

    click(&client, "#live-toggle").await;
    wait_for(&client, ".live-state.paused", "paused").await;
    assert!(
        client
            .find_all(Locator::Css("[sse-connect]"))
            .await
            .expect("query")
            .is_empty(),
        "no stream while paused"
    );
    assert_eq!(
        client
            .find(Locator::Id("log-q"))
            .await
            .expect("search")
            .prop("value")
            .await
            .expect("value"),
        Some("second".to_owned()),
        "pausing keeps the filters"
    );

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}

/// Polls the text of `css` until it is `expected`: the page refreshes its numbers on its own.
async fn wait_for_text(client: &Client, css: &str, expected: &str, what: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = text_of(client, css).await;
        if text == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {css} reads “{text}”, not “{expected}”"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn the_dashboard_counts_new_traffic_without_a_reload() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Watched", "provider": "openai", "upstream_url": mock.url}))
        .await;
    let port = super::support::port_of(&proxy);

    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/").await;
    wait_for(&client, "[data-stat='requests']", "the dashboard's numbers").await;
    assert_eq!(text_of(&client, "[data-stat='requests']").await, "0");
    mark_the_page(&client).await;

    // The same request twice: the second is answered from the cache.
    for _ in 0..2 {
        proxy_request(port, "/v1/responses", RESPONSES_BODY).await;
    }

    wait_for_text(&client, "[data-stat='requests']", "2", "the count updates").await;
    assert_eq!(
        text_of(&client, "[data-stat='tokens']").await,
        "22 in / 14 out tokens"
    );
    assert_eq!(text_of(&client, "[data-stat='hit-rate']").await, "50.0%");
    let spent = text_of(&client, "[data-stat='cost-today']").await;
    assert!(
        spent.starts_with("$0.0000") && spent != "$0.00",
        "a real cost: {spent}"
    );
    assert!(
        text_of(&client, "[data-stat='saved-today']")
            .await
            .ends_with("saved by the cache today"),
        "what the hit saved"
    );
    assert!(
        text_of(&client, ".activity")
            .await
            .contains("/v1/responses"),
        "recent activity lists the requests"
    );
    assert_not_reloaded(&client).await;
    save_screenshot(&client, "dashboard-live.png").await;

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}

/// Whether the element `css` is shown (looked up afresh: live updates replace cards).
async fn displayed(client: &Client, css: &str) -> bool {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .is_displayed()
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

#[actix_web::test]
async fn the_card_switches_snippet_languages_without_losing_the_pick_to_live_updates() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Snippets", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let (id, port) = (id_of(&proxy), super::support::port_of(&proxy));
    let (_, snippets) = app.get(&format!("/api/proxies/{id}/snippets")).await;
    let code = |language: &str| snippets[language].as_str().unwrap_or_default().to_owned();

    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    wait_for(&client, "article.card .snippets", "the card's code box").await;
    let python = "article.card .snippet-python";
    let typescript = "article.card .snippet-typescript";
    let curl = "article.card .snippet-curl";
    assert!(displayed(&client, python).await, "Python is shown first");
    assert!(!displayed(&client, typescript).await);
    assert!(!displayed(&client, curl).await);
    assert_eq!(text_of(&client, python).await, code("python"));
    save_screenshot(&client, "proxies-snippet-python.png").await;

    click(&client, "article.card .snippets label[for$='-typescript']").await;
    assert!(
        displayed(&client, typescript).await,
        "TypeScript after its tab"
    );
    assert!(!displayed(&client, python).await, "Python hidden");
    assert_eq!(text_of(&client, typescript).await, code("typescript"));
    save_screenshot(&client, "proxies-snippet-typescript.png").await;

    // The tabs are radio buttons: the keyboard moves between them as in any radio group.
    let focused = client.active_element().await.expect("a focused element");
    assert_eq!(
        focused.attr("value").await.expect("attr"),
        Some("typescript".to_owned()),
        "the picked tab has the focus"
    );
    focused
        .send_keys(fantoccini::key::Key::Right.to_string().as_str())
        .await
        .expect("arrow key");
    assert!(displayed(&client, curl).await, "curl after the arrow key");
    assert_eq!(text_of(&client, curl).await, code("curl"));
    client
        .active_element()
        .await
        .expect("a focused element")
        .send_keys(fantoccini::key::Key::Left.to_string().as_str())
        .await
        .expect("arrow key");
    assert!(displayed(&client, typescript).await, "back to TypeScript");

    // Traffic re-renders the card live; the reader's pick stays.
    mark_the_page(&client).await;
    proxy_request(port, "/v1/chat/completions", "{\"model\":\"gpt-4o-mini\"}").await;
    let deadline = std::time::Instant::now() + WAIT;
    while !text_of(&client, "article.card .card-facts")
        .await
        .contains("1 requests")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the card never showed the request"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        displayed(&client, typescript).await,
        "still TypeScript after a live update"
    );
    assert!(!displayed(&client, python).await);
    assert_not_reloaded(&client).await;

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn an_admin_disables_then_deletes_an_account_from_the_users_list() {
    let app = TestApp::start().await;
    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/settings").await;
    let ticked = client
        .find(Locator::Css("#sign_out_everywhere"))
        .await
        .expect("the sign-out-everywhere box")
        .prop("checked")
        .await
        .expect("prop");
    assert_eq!(ticked.as_deref(), Some("true"), "ticked by default");

    set_field(&client, "#user_email", "ada@example.com").await;
    set_field(&client, "#user_password", "ada's long password").await;
    click(
        &client,
        "form[action='/settings/users'] button[type=submit]",
    )
    .await;
    wait_for(&client, "#revealed-secret", "the new account's password").await;
    let row = "#users tr:nth-child(2)";
    assert!(text_of(&client, row).await.contains("ada@example.com"));
    assert!(text_of(&client, row).await.contains("active"));

    click(&client, &format!("{row} form[action$='/disable'] button")).await;
    wait_for(
        &client,
        &format!("{row} .badge-stopped"),
        "the disabled badge",
    )
    .await;
    assert!(text_of(&client, ".notice").await.contains("is disabled"));
    save_screenshot(&client, "users-disabled.png").await;

    click(&client, &format!("{row} a[href$='/delete']")).await;
    wait_for(
        &client,
        "form[action$='/delete'] .btn-danger",
        "the confirmation",
    )
    .await;
    assert!(text_of(&client, "h1").await.contains("ada@example.com"));
    click(&client, "form[action$='/delete'] .btn-danger").await;
    wait_for(&client, "#users", "the users list").await;
    assert!(text_of(&client, ".notice").await.contains("is deleted"));
    assert!(
        !text_of(&client, "#users table")
            .await
            .contains("ada@example.com")
    );
    client.close().await.expect("session closed");
}

/// Fetches `url` with the page's session, as following the link would: status, content type
/// and the body's bytes.
async fn fetch_in_page(client: &Client, url: &str) -> (u64, String, Vec<u8>) {
    let reply = client
        .execute_async(
            "const [url, done] = arguments; \
             fetch(url).then(r => r.arrayBuffer().then(b => done({ \
               status: r.status, type: r.headers.get('content-type'), \
               bytes: Array.from(new Uint8Array(b)) }))) \
             .catch(e => done({ status: 0, type: String(e), bytes: [] }));",
            vec![json!(url)],
        )
        .await
        .expect("the fetch runs");
    let bytes = reply["bytes"]
        .as_array()
        .expect("bytes")
        .iter()
        .map(|b| u8::try_from(b.as_u64().expect("a byte")).expect("a byte"))
        .collect();
    (
        reply["status"].as_u64().unwrap_or_default(),
        reply["type"].as_str().unwrap_or_default().to_owned(),
        bytes,
    )
}

/// Picks `path` in the cache modal's file field and submits the import form.
async fn import_file(client: &Client, path: &std::path::Path) {
    client
        .find(Locator::Css("#fixtures-file"))
        .await
        .expect("the file field")
        .send_keys(&path.display().to_string())
        .await
        .expect("the file is picked");
    click(client, "#import-fixtures-form button[type=submit]").await;
}

#[actix_web::test]
async fn export_import_and_reload_fixtures_from_actions_cache() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let recorder = super::pages::proxy_with_two_answers(&app, &mock.url, "Recorder").await;
    let recorder_id = id_of(&recorder);
    let target_id = id_of(
        &app.create(json!({"name": "Target", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
            .await,
    );
    let fixtures = tempfile::tempdir().expect("tmp");
    let dir = fixtures.path().join("fixtures");
    let bound_id = id_of(
        &app.create(json!({
            "name": "Bound", "provider": "openai", "upstream_url": format!("{}/v1", mock.url),
            "cache": {"fixtures_dir": dir.display().to_string()}
        }))
        .await,
    );

    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    let recorder_card = format!("#proxy-{recorder_id}");
    wait_for(&client, &recorder_card, "the recorder's card").await;

    // Actions → Cache links the downloads; following them with the session gets the files.
    click(&client, &format!("{recorder_card} details.menu summary")).await;
    let href = |class: &'static str| {
        let client = client.clone();
        let css = format!("{recorder_card} a.{class}");
        async move {
            client
                .find(Locator::Css(&css))
                .await
                .expect("the link")
                .attr("href")
                .await
                .expect("attr")
                .expect("an href")
        }
    };
    let tar_link = href("export-fixtures").await;
    assert_eq!(tar_link, format!("/proxies/{recorder_id}/cache/export"));
    let jsonl_link = href("export-jsonl").await;
    assert_eq!(
        jsonl_link,
        format!("/proxies/{recorder_id}/cache/export?format=jsonl")
    );
    save_screenshot(&client, "cache-actions-menu.png").await;
    let (status, content_type, archive) = fetch_in_page(&client, &tar_link).await;
    assert_eq!((status, content_type.as_str()), (200, "application/gzip"));
    let files = super::pages::unpacked(&archive);
    assert_eq!(files.len(), 2, "one fixture file per entry: {files:?}");
    assert!(
        files.iter().all(|(path, _)| path.starts_with("chat-")),
        "{files:?}"
    );
    let (status, _, jsonl) = fetch_in_page(&client, &jsonl_link).await;
    assert_eq!(status, 200);
    let uploads = tempfile::tempdir().expect("tmp");
    let jsonl_file = uploads.path().join("recorder.jsonl");
    std::fs::write(&jsonl_file, &jsonl).expect("saved");
    click(&client, &format!("{recorder_card} details.menu summary")).await;

    // Import fixtures… opens the cache modal; the upload's report shows in it.
    let target_card = format!("#proxy-{target_id}");
    click(&client, &format!("{target_card} details.menu summary")).await;
    click(&client, &format!("{target_card} a.import-fixtures")).await;
    wait_for(&client, "#import-fixtures-form", "the import form").await;
    import_file(&client, &jsonl_file).await;
    wait_for(&client, "#fixtures-report", "the import's report").await;
    let report = text_of(&client, "#fixtures-report").await;
    assert!(report.contains("added 2"), "{report}");
    assert!(
        report.contains("replaced 0") && report.contains("rejected 0"),
        "{report}"
    );
    assert_eq!(
        text_of(&client, "#cache-facts [data-stat='entries']").await,
        "2"
    );
    save_screenshot(&client, "cache-import-report.png").await;
    let (_, cache) = app.get(&format!("/api/proxies/{target_id}/cache")).await;
    assert_eq!(cache["entries"], 2);

    // A bad file: the reason inline, in the same modal.
    let broken = uploads.path().join("broken.tar.gz");
    std::fs::write(&broken, b"\x1f\x8b\x08\x00not a tar at all").expect("saved");
    import_file(&client, &broken).await;
    wait_for(&client, "#fixtures-error", "the inline error").await;
    let error = text_of(&client, "#fixtures-error").await;
    assert!(error.contains("not a readable .tar.gz"), "{error}");
    assert!(
        client
            .find_all(Locator::Css("#toast .toast"))
            .await
            .expect("query")
            .is_empty(),
        "no error toast: the answer was the form again"
    );
    let notes = uploads.path().join("notes.txt");
    std::fs::write(&notes, "remember the milk\n").expect("saved");
    import_file(&client, &notes).await;
    wait_for(
        &client,
        "#fixtures-report.nothing",
        "the nothing-imported report",
    )
    .await;
    let report = text_of(&client, "#fixtures-report").await;
    assert!(
        report.contains("Nothing was imported from notes.txt") && report.contains("line 1"),
        "{report}"
    );
    save_screenshot(&client, "cache-import-bad-file.png").await;
    click(&client, ".modal-head .modal-close").await;

    // A bound proxy: its directory holds the files (an import writes them), reloaded on demand.
    let (status, imported) = send_raw(
        &app,
        &format!("/api/proxies/{bound_id}/cache/import"),
        jsonl,
    )
    .await;
    assert_eq!(status, 200, "{imported}");
    app.delete(&format!("/api/proxies/{bound_id}/cache")).await;
    let bound_card = format!("#proxy-{bound_id}");
    click(&client, &format!("{bound_card} details.menu summary")).await;
    click(&client, &format!("{bound_card} button.reload-fixtures")).await;
    wait_for(&client, "#fixtures-report", "the reload's report").await;
    let report = text_of(&client, "#fixtures-report").await;
    assert!(
        report.contains("loaded 2 from 2 files") && report.contains("rejected 0"),
        "{report}"
    );
    assert_eq!(
        text_of(&client, "#fixtures-dir").await,
        dir.display().to_string()
    );
    let last_load = text_of(&client, "#fixtures-last-load").await;
    assert!(
        last_load.starts_with("2 entries from 2 files in"),
        "{last_load}"
    );
    save_screenshot(&client, "cache-reload-report.png").await;
    click(&client, "#modal button.reload-fixtures").await;
    wait_for_text(
        &client,
        "#fixtures-report [data-stat='loaded']",
        "loaded 2",
        "the modal's own reload button",
    )
    .await;

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}

/// Posts raw bytes to the API with the test token: status and JSON answer.
async fn send_raw(app: &TestApp, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut response = super::support::authorized(awc::Client::new().post(app.url(path)))
        .send_body(body)
        .await
        .expect("sent");
    let json = response.json().await.expect("JSON");
    (response.status().as_u16(), json)
}

#[actix_web::test]
async fn refresh_mode_and_fixtures_directory_save_and_declared_cards_say_the_file_wins() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Declared", "provider": "openai", "start": false}))
        .await;
    let id = id_of(&proxy);
    app.shutdown().await;
    {
        let db = rubberduck::db::open(app.data_dir()).expect("the database opens");
        let mut conn = db.get().expect("a connection");
        let row = i32::try_from(id).expect("an id");
        rubberduck::db::proxies::set_declared_in(&mut conn, row, Some("/srv/ci/rubberduck.toml"))
            .expect("declared");
    }
    app.restart().await;

    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    let card = format!("#proxy-{id}");
    wait_for(
        &client,
        &format!("{card} .tag-declared"),
        "the declared badge",
    )
    .await;
    assert_eq!(
        text_of(&client, &format!("{card} .tag-declared")).await,
        "from rubberduck.toml"
    );
    let title = client
        .find(Locator::Css(&format!("{card} .tag-declared")))
        .await
        .expect("badge")
        .attr("title")
        .await
        .expect("attr")
        .unwrap_or_default();
    assert_eq!(
        title,
        "Declared in /srv/ci/rubberduck.toml: edits made here are replaced by the file at the next start."
    );
    save_screenshot(&client, "proxies-declared-badge.png").await;

    click(&client, &format!("{card} .btn-configure")).await;
    wait_for(&client, "#edit-cache-mode", "the Configure modal").await;
    assert!(
        text_of(&client, "#declared-warning")
            .await
            .contains("replaced by the file at the next start")
    );
    let refresh = "#edit-cache-mode option[value='refresh']";
    assert!(
        text_of(&client, refresh)
            .await
            .contains("every request goes upstream"),
        "the option says what it does"
    );
    click(&client, refresh).await;
    set_field(&client, "#edit-fixtures-dir", "relative/fixtures").await;
    click(&client, "#edit-proxy-form button[type=submit]").await;
    wait_for(&client, "#edit-fixtures-dir-error", "an inline error").await;
    assert!(
        text_of(&client, "#edit-fixtures-dir-error")
            .await
            .contains("must be an absolute path"),
    );
    assert_eq!(
        client
            .find(Locator::Css("#edit-cache-mode"))
            .await
            .expect("the select")
            .prop("value")
            .await
            .expect("value"),
        Some("refresh".to_owned()),
        "the form keeps the chosen mode"
    );

    let fixtures = tempfile::tempdir().expect("tmp");
    let dir = fixtures.path().display().to_string();
    set_field(&client, "#edit-fixtures-dir", &dir).await;
    click(&client, "#edit-proxy-form button[type=submit]").await;
    let deadline = std::time::Instant::now() + WAIT;
    while !text_of(&client, &format!("{card} .cache-facts"))
        .await
        .contains("refresh")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the card never showed refresh"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, saved) = app.get(&format!("/api/proxies/{id}")).await;
    assert_eq!(saved["cache"]["mode"], "refresh");
    assert_eq!(saved["cache"]["fixtures_dir"], dir.as_str());
    // Bound now: the card offers the reload.
    click(&client, &format!("{card} details.menu summary")).await;
    wait_for(
        &client,
        &format!("{card} button.reload-fixtures"),
        "the reload action",
    )
    .await;

    client.close().await.expect("browser closes");
    app.shutdown().await;
}

#[actix_web::test]
async fn the_daily_spend_cap_saves_from_configure_and_the_card_shows_the_badge_live() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(
            json!({"name": "Capped", "provider": "openai", "upstream_url": "emulator",
            "emulator": {"ttft_ms": 0, "tokens_per_second": 100_000}}),
        )
        .await;
    let id = id_of(&proxy);
    let port = super::support::port_of(&proxy);
    let card = format!("#proxy-{id}");

    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    wait_for(&client, &format!("{card} .card-title"), "the card").await;
    assert!(
        client
            .find(Locator::Css(&format!("{card} .spend-facts")))
            .await
            .is_err(),
        "no cap, no spend line"
    );

    click(&client, &format!("{card} .btn-configure")).await;
    wait_for(&client, "#edit-spend-cap", "the Configure modal").await;
    set_field(&client, "#edit-spend-cap", "a few dollars").await;
    click(&client, "#edit-proxy-form button[type=submit]").await;
    wait_for(&client, "#edit-spend-cap-error", "an inline error").await;
    assert!(
        text_of(&client, "#edit-spend-cap-error")
            .await
            .contains("between 0 and 1,000,000 US dollars"),
    );
    let (_, unsaved) = app.get(&format!("/api/proxies/{id}")).await;
    assert_eq!(unsaved["daily_spend_cap_usd"], serde_json::Value::Null);

    set_field(&client, "#edit-spend-cap", "0.0000001").await;
    click(&client, "#edit-proxy-form button[type=submit]").await;
    wait_for_text(
        &client,
        &format!("{card} .spend-facts"),
        "cap $0.0000001 · $0.00 today",
        "the card shows the cap",
    )
    .await;
    let (_, saved) = app.get(&format!("/api/proxies/{id}")).await;
    assert_eq!(saved["daily_spend_cap_usd"], 0.000_000_1);
    assert_eq!(saved["upstream_url"], "emulator", "the rest is kept");

    // One live answer passes the cap; the open page learns of it by itself.
    proxy_request(
        port,
        "/v1/chat/completions",
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
    )
    .await;
    wait_for(
        &client,
        &format!("{card} .spend-cap-reached"),
        "the badge arrives live",
    )
    .await;
    assert_eq!(
        text_of(&client, &format!("{card} .spend-cap-reached")).await,
        "spend cap reached"
    );
    let facts = text_of(&client, &format!("{card} .spend-facts")).await;
    assert!(
        facts.starts_with("cap $0.0000001 · $0.0") && facts.contains(" today"),
        "{facts}"
    );
    save_screenshot(&client, "proxies-spend-cap-reached.png").await;

    client.close().await.expect("browser closes");
    app.shutdown().await;
}

/// How many entries the cache modal lists now.
async fn entry_rows(client: &Client) -> usize {
    client
        .find_all(Locator::Css("#entry-rows tr.entry-row"))
        .await
        .map(|rows| rows.len())
        .unwrap_or(0)
}

async fn wait_for_entry_rows(client: &Client, n: usize, what: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while entry_rows(client).await != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {} rows, not {n}",
            entry_rows(client).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn browse_the_cache_entries_open_one_and_delete_it() {
    let mock = super::upstream::MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Looked into", "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}))
        .await;
    let (id, port) = (id_of(&proxy), super::support::port_of(&proxy));
    for n in 0..22 {
        let body = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": format!("Tell me about number {n}")}
        ]});
        let mut response = awc::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .insert_header(("x-mock-stamp", "json"))
            .send_json(&body)
            .await
            .expect("proxied");
        response.body().await.expect("body");
    }
    let stream = json!({"model": "gpt-4o", "stream": true, "messages": [
        {"role": "user", "content": "Stream a story"}
    ]});
    let mut response = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .insert_header(("x-mock-stamp", "sse"))
        .send_json(&stream)
        .await
        .expect("proxied");
    response.body().await.expect("body");
    let deadline = std::time::Instant::now() + WAIT;
    while app.get(&format!("/api/proxies/{id}/cache/entries")).await.1["total"] != 23 {
        assert!(
            std::time::Instant::now() < deadline,
            "the entries were never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_driver, client, _profile) = browser().await;
    sign_in_at(&client, &app, "/proxies").await;
    wait_for(&client, "article.card", "the card").await;
    click(&client, "article.card details.menu summary").await;
    click(&client, "article.card a[href$='/cache']").await;
    wait_for(
        &client,
        "#cache-entries",
        "the cache modal with its entries",
    )
    .await;
    wait_for_entry_rows(&client, 20, "the first page").await;
    assert_eq!(
        text_of(&client, "#entries-count").await,
        "1–20 of 23 entries"
    );
    let newest = text_of(&client, "#entry-rows tr.entry-row").await;
    assert!(
        newest.contains("chat") && newest.contains("stream") && newest.contains("gpt-4o"),
        "the stream is the newest: {newest}"
    );
    assert!(newest.contains("Stream a story"), "{newest}");
    save_screenshot(&client, "cache-entries.png").await;

    // The next page, and back.
    click(&client, "#entries-older").await;
    wait_for_entry_rows(&client, 3, "the second page").await;
    assert_eq!(
        text_of(&client, "#entries-count").await,
        "21–23 of 23 entries"
    );
    click(&client, "#entries-newer").await;
    wait_for_entry_rows(&client, 20, "the first page again").await;

    // A search, server-side, as one types.
    set_field(&client, "#cache-q", "number 7").await;
    wait_for_entry_rows(&client, 1, "the search").await;
    assert!(
        text_of(&client, "#entry-rows tr.entry-row")
            .await
            .contains("Tell me about number 7")
    );

    click(&client, "#entry-rows .view-entry").await;
    wait_for(&client, "#cache-entry", "the entry opened").await;
    let request = text_of(&client, "#entry-request").await;
    assert!(
        request.contains("\"content\": \"Tell me about number 7\""),
        "the request, pretty: {request}"
    );
    let answer = text_of(&client, "#entry-response").await;
    assert!(answer.contains("\"n\":"), "the answer: {answer}");
    assert!(
        text_of(&client, "#cache-entry .entry-target")
            .await
            .contains("POST /v1/chat/completions")
    );
    save_screenshot(&client, "cache-entry.png").await;

    click(&client, "#cache-entry .delete-entry").await;
    client
        .accept_alert()
        .await
        .expect("the confirmation is accepted");
    wait_for(&client, "#entries-notice", "a notice after deleting").await;
    wait_for_entry_rows(&client, 0, "the deleted entry leaves the search").await;
    assert!(
        client
            .find_all(Locator::Css("#cache-entry"))
            .await
            .expect("query")
            .is_empty(),
        "the entry view closed"
    );
    assert_eq!(
        text_of(&client, "#cache-facts [data-stat='entries']").await,
        "22",
        "the modal's count follows"
    );
    let (_, now) = app.get(&format!("/api/proxies/{id}/cache")).await;
    assert_eq!(
        text_of(&client, "#cache-stat-size").await,
        format!("{} bytes", now["bytes"]),
        "and its size"
    );
    save_screenshot(&client, "cache-entry-deleted.png").await;

    // Emptied, then Enter: the search form is submitted.
    set_field(&client, "#cache-q", "").await;
    client
        .find(Locator::Css("#cache-q"))
        .await
        .expect("the search field")
        .send_keys("\u{E007}")
        .await
        .expect("Enter");
    wait_for_text(
        &client,
        "#entries-count",
        "1–20 of 22 entries",
        "the whole list, one fewer",
    )
    .await;
    let (_, searched) = app
        .get(&format!("/api/proxies/{id}/cache/entries?q=number%207"))
        .await;
    assert_eq!(searched["total"], 0, "deleted for good: {searched}");

    client.close().await.expect("browser closes");
    app.shutdown().await;
    mock.stop().await;
}
