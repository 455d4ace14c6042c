//! Accounts: nothing without signing in, sessions and CSRF, API tokens, members kept apart.

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Reply, TEST_TOKEN, TestApp, authorized, id_of, no_redirects,
    port_of,
};
use super::upstream::MockUpstream;

/// A signed-in browser, as far as HTTP goes: the session cookie and the page's CSRF token.
pub(super) struct Session {
    pub(super) base: String,
    pub(super) cookie: String,
    pub(super) csrf: String,
}

pub(super) async fn login_attempt(app: &TestApp, email: &str, password: &str) -> Reply {
    let response = no_redirects()
        .post(app.url("/login"))
        .send_form(&[
            ("email", email),
            ("password", password),
            ("next", "/settings"),
        ])
        .await
        .expect("login posted");
    Reply::read(response).await
}

fn session_cookie_of(reply: &Reply) -> Option<String> {
    reply.cookie("rubberduck_session")
}

/// The CSRF token a page hands to HTMX.
fn csrf_of(html: &str) -> Option<String> {
    html.split("\"X-CSRF-Token\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
}

impl Session {
    pub(super) async fn sign_in(app: &TestApp, email: &str, password: &str) -> Session {
        let reply = login_attempt(app, email, password).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        assert_eq!(reply.header("location"), "/settings");
        let set_cookie = reply.header("set-cookie").to_owned();
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
        let cookie = session_cookie_of(&reply).expect("a session cookie");
        let mut session = Session {
            base: app.base.clone(),
            cookie,
            csrf: String::new(),
        };
        let page = session.get("/settings").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        session.csrf = csrf_of(&page.body).expect("the page carries a CSRF token");
        session
    }

    pub(super) fn request(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        no_redirects()
            .request(method, format!("{}{path}", self.base))
            .insert_header(("Cookie", format!("rubberduck_session={}", self.cookie)))
    }

    pub(super) async fn get(&self, path: &str) -> Reply {
        Reply::read(
            self.request(awc::http::Method::GET, path)
                .send()
                .await
                .expect("sent"),
        )
        .await
    }

    /// A form as a browser without scripts posts it: the token is a hidden field.
    pub(super) async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut fields = fields.to_vec();
        fields.push(("csrf_token", &self.csrf));
        Reply::read(
            self.request(awc::http::Method::POST, path)
                .send_form(&fields)
                .await
                .expect("sent"),
        )
        .await
    }

    /// JSON as a script in the page would send it: the token in the header.
    pub(super) async fn send_json(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Value,
    ) -> Reply {
        Reply::read(
            self.request(method, path)
                .insert_header(("X-CSRF-Token", self.csrf.as_str()))
                .send_json(&body)
                .await
                .expect("sent"),
        )
        .await
    }
}

/// A page or API call without any credential.
async fn anonymous_get(app: &TestApp, path: &str) -> Reply {
    let response = no_redirects()
        .get(app.url(path))
        .send()
        .await
        .expect("sent");
    Reply::read(response).await
}

/// Self-registration as a signed-out browser posts it.
async fn register(app: &TestApp, email: &str, password: &str) -> Reply {
    let form = [
        ("email", email),
        ("password", password),
        ("confirm_password", password),
    ];
    let response = no_redirects()
        .post(app.url("/register"))
        .send_form(&form)
        .await
        .expect("sent");
    Reply::read(response).await
}

/// The admin's settings form as it comes filled in, with `changes` made.
pub(super) fn settings_form<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("session_idle_hours", "24"),
        ("max_proxies_per_user", "0"),
        ("log_retention_days", "30"),
        ("proxy_host", "127.0.0.1"),
        ("trusted_proxies", ""),
    ];
    for (name, value) in changes {
        fields.retain(|(field, _)| field != name);
        fields.push((name, value));
    }
    fields
}

/// The change-password form.
pub(super) fn password_form<'a>(current: &'a str, new: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("current_password", current),
        ("password", new),
        ("confirm_password", new),
    ]
}

/// Lets members' proxies reach the loopback mock upstreams (members reach only public addresses
/// unless an admin allows more).
pub(super) async fn allow_loopback_for_members(admin: &Session) {
    let reply = admin
        .post_form(
            "/settings",
            &settings_form(&[("member_upstreams", "127.0.0.0/8")]),
        )
        .await;
    assert!(
        reply.status.is_success() || reply.status.is_redirection(),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("field-error"), "{}", reply.body);
}

/// Creates an account through the admin's Settings page.
pub(super) async fn add_user(admin: &Session, email: &str, password: &str, role: &str) {
    let reply = admin
        .post_form(
            "/settings/users",
            &[("email", email), ("role", role), ("password", password)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("created"), "{}", reply.body);
}

#[actix_web::test]
async fn nothing_but_the_login_page_is_reachable_signed_out() {
    let app = TestApp::start().await;
    for path in [
        "/",
        "/proxies",
        "/logs?status=4xx",
        "/settings",
        "/proxies/new",
    ] {
        let reply = anonymous_get(&app, path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        let location = reply.header("location");
        assert!(location.starts_with("/login"), "{path} → {location}");
        if path != "/" {
            assert!(location.contains("next="), "{path} → {location}");
        }
    }
    let htmx = Reply::read(
        no_redirects()
            .get(app.url("/proxies/new"))
            .insert_header(("HX-Request", "true"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(htmx.status, StatusCode::UNAUTHORIZED);
    assert!(htmx.header("hx-redirect").starts_with("/login"));

    let post = Reply::read(
        no_redirects()
            .post(app.url("/proxies"))
            .send_form(&[("name", "sneaky"), ("provider", "openai")])
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    let (_, proxies) = app.get("/api/proxies").await;
    assert_eq!(proxies, json!([]), "nothing was created");

    for open in ["/healthz", "/login", "/static/app.css"] {
        let reply = anonymous_get(&app, open).await;
        assert_eq!(reply.status, StatusCode::OK, "{open}");
    }
    let login = anonymous_get(&app, "/login").await;
    let csp = login.header("content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(login.header("x-frame-options"), "DENY");
    assert_eq!(login.header("x-content-type-options"), "nosniff");
}

#[actix_web::test]
async fn the_api_wants_a_valid_token() {
    let app = TestApp::start().await;
    for path in ["/api/proxies", "/api/logs", "/api/metrics", "/metrics"] {
        let anonymous = anonymous_get(&app, path).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(anonymous.header("www-authenticate"), "Bearer");
        if path.starts_with("/api") {
            assert!(
                anonymous.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Bearer")),
                "{}",
                anonymous.body
            );
        }
        let wrong = Reply::read(
            no_redirects()
                .get(app.url(path))
                .insert_header(("Authorization", "Bearer rd_not-a-real-token"))
                .send()
                .await
                .expect("sent"),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
        let right = Reply::read(
            authorized(no_redirects().get(app.url(path)))
                .send()
                .await
                .expect("sent"),
        )
        .await;
        assert_eq!(right.status, StatusCode::OK, "{path}: {}", right.body);
    }
}

#[actix_web::test]
async fn personal_tokens_are_shown_once_and_can_be_revoked() {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let created = admin
        .post_form("/settings/tokens", &[("name", "CI pipeline")])
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let token = created
        .body
        .split("id=\"revealed-secret\" class=\"secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token is shown")
        .to_owned();
    assert!(token.starts_with("rd_"), "{token}");
    let list = |token: String| {
        let url = app.url("/api/proxies");
        async move {
            no_redirects()
                .get(url)
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send()
                .await
                .expect("sent")
                .status()
        }
    };
    assert_eq!(list(token.clone()).await, StatusCode::OK);

    let settings = admin.get("/settings").await;
    assert!(settings.body.contains("CI pipeline"));
    assert!(
        !settings.body.contains(&token),
        "a token is shown only once"
    );
    let ids: Vec<i32> = settings
        .body
        .split("/settings/tokens/")
        .skip(1)
        .filter_map(|rest| rest.split('/').next()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 2, "the bootstrap token and the new one: {ids:?}");
    assert!(ids[0] > ids[1], "newest first: {ids:?}");
    let newest = ids[0];
    let revoked = admin
        .post_form(&format!("/settings/tokens/{newest}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(list(token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(list(TEST_TOKEN.to_owned()).await, StatusCode::OK);
}

#[actix_web::test]
async fn guessing_passwords_is_throttled() {
    let app = TestApp::start().await;
    for attempt in 0..5 {
        let reply = login_attempt(&app, ADMIN_EMAIL, &format!("wrong guess {attempt}")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert!(
            reply.body.contains("Wrong email or password"),
            "{}",
            reply.body
        );
        assert!(session_cookie_of(&reply).is_none());
    }
    let locked = login_attempt(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    assert!(
        locked.body.contains("Too many failed sign-ins"),
        "{}",
        locked.body
    );
    assert!(
        session_cookie_of(&locked).is_none(),
        "even the right password waits"
    );
    let unknown = login_attempt(&app, "nobody@example.com", "whatever it is").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(
        unknown.body.contains("Wrong email or password"),
        "{}",
        unknown.body
    );
}

#[actix_web::test]
async fn state_changes_need_the_csrf_token_and_our_origin() {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let create = [("name", "From a form"), ("provider", "openai")];

    let forged = Reply::read(
        admin
            .request(awc::http::Method::POST, "/proxies")
            .send_form(&create)
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "no token: {}",
        forged.body
    );
    let mut wrong = create.to_vec();
    wrong.push(("csrf_token", "not-the-token"));
    let forged = Reply::read(
        admin
            .request(awc::http::Method::POST, "/proxies")
            .send_form(&wrong)
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "wrong token");
    let cross_site = Reply::read(
        admin
            .request(awc::http::Method::POST, "/proxies")
            .insert_header(("X-CSRF-Token", admin.csrf.as_str()))
            .insert_header(("Origin", "http://evil.example"))
            .send_form(&create)
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN, "another origin");
    let fetch_metadata = Reply::read(
        admin
            .request(
                awc::http::Method::DELETE,
                "/api/logs?before=2100-01-01T00:00:00Z&confirm=true",
            )
            .insert_header(("X-CSRF-Token", admin.csrf.as_str()))
            .insert_header(("Sec-Fetch-Site", "cross-site"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(fetch_metadata.status, StatusCode::FORBIDDEN);
    let api_without_token = Reply::read(
        admin
            .request(awc::http::Method::POST, "/api/proxies")
            .send_json(&json!({"name": "x", "provider": "openai"}))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(
        api_without_token.status,
        StatusCode::FORBIDDEN,
        "a session calling the API needs the token too"
    );
    let (_, proxies) = app.get("/api/proxies").await;
    assert_eq!(proxies, json!([]), "nothing forged was created");

    let plain = admin.post_form("/proxies", &create).await;
    assert_eq!(plain.status, StatusCode::SEE_OTHER, "{}", plain.body);
    let htmx = Reply::read(
        admin
            .request(awc::http::Method::POST, "/proxies")
            .insert_header(("X-CSRF-Token", admin.csrf.as_str()))
            .insert_header(("HX-Request", "true"))
            .insert_header(("Origin", app.base.as_str()))
            .send_form(&[("name", "From HTMX"), ("provider", "anthropic")])
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(htmx.status, StatusCode::OK, "{}", htmx.body);
    let (_, proxies) = app.get("/api/proxies").await;
    assert_eq!(proxies.as_array().map(Vec::len), Some(2), "{proxies}");
    let page = admin.get("/proxies").await;
    assert!(
        page.body
            .contains(&format!("name=\"csrf_token\" value=\"{}\"", admin.csrf)),
        "plain forms carry the token"
    );
}

/// Creates an OpenAI proxy as `owner` and sends one chat request through it: its id and port.
pub(super) async fn proxy_with_one_request(
    owner: &Session,
    name: &str,
    upstream: &str,
) -> (i64, u16) {
    let created = owner
        .send_json(
            awc::http::Method::POST,
            "/api/proxies",
            json!({"name": name, "provider": "openai", "upstream_url": upstream}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let proxy = created.json();
    let (id, port) = (id_of(&proxy), port_of(&proxy));
    let sent = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .send_json(
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .expect("proxied");
    assert!(sent.status().is_success());
    (id, port)
}

#[actix_web::test]
async fn members_see_and_touch_only_their_own_proxies_and_logs() {
    let upstream = MockUpstream::start().await;
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, "ada@example.com", "ada's long password", "member").await;
    add_user(&admin, "bob@example.com", "bob's long password", "member").await;
    allow_loopback_for_members(&admin).await;
    let ada = Session::sign_in(&app, "ada@example.com", "ada's long password").await;
    let bob = Session::sign_in(&app, "bob@example.com", "bob's long password").await;

    let (id, port) = proxy_with_one_request(&ada, "Ada's secret project", &upstream.url).await;

    // Bob: the API pretends Ada's proxy does not exist, whatever he tries.
    let get = awc::http::Method::GET;
    let post = awc::http::Method::POST;
    for (method, path) in [
        (get.clone(), format!("/api/proxies/{id}")),
        (get.clone(), format!("/api/proxies/{id}/cache")),
        (get.clone(), format!("/api/proxies/{id}/failure-config")),
        (get.clone(), format!("/api/proxies/{id}/snippets")),
        (post.clone(), format!("/api/proxies/{id}/stop")),
        (post.clone(), format!("/api/proxies/{id}/restart")),
        (awc::http::Method::PATCH, format!("/api/proxies/{id}")),
        (awc::http::Method::DELETE, format!("/api/proxies/{id}")),
        (
            awc::http::Method::DELETE,
            format!("/api/proxies/{id}/cache"),
        ),
        (
            awc::http::Method::PUT,
            format!("/api/proxies/{id}/failure-config"),
        ),
    ] {
        let reply = bob
            .send_json(method.clone(), &path, json!({"name": "mine now"}))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            reply.body
        );
        assert!(!reply.body.contains("secret project"), "{}", reply.body);
    }
    // … and so do the pages.
    for path in [
        format!("/proxies/{id}/edit"),
        format!("/proxies/{id}/cache"),
        format!("/proxies/{id}/failures"),
        format!("/proxies/{id}/delete"),
    ] {
        let reply = bob.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        format!("/proxies/{id}/stop"),
        format!("/proxies/{id}/delete"),
    ] {
        let reply = bob.post_form(&path, &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, still) = app.get(&format!("/api/proxies/{id}")).await;
    assert_eq!(still["status"], "running", "Bob's attempts changed nothing");
    assert_eq!(still["name"], "Ada's secret project");

    let list = bob.get("/api/proxies").await;
    assert_eq!(list.json(), json!([]));
    for page in ["/proxies", "/", "/logs", "/settings"] {
        let reply = bob.get(page).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}");
        assert!(
            !reply.body.contains("secret project"),
            "{page} shows Ada's proxy"
        );
    }
    // A port is global, but whose proxy holds it is not Bob's business.
    let clash = bob
        .send_json(
            post.clone(),
            "/api/proxies",
            json!({"name": "Bob's", "provider": "openai", "port": port}),
        )
        .await;
    assert_eq!(clash.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = clash.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("another user's proxy"), "{message}");
    assert!(!message.contains("Ada"), "{message}");
    let check = bob.get(&format!("/proxies/port-check?port={port}")).await;
    assert!(!check.body.contains("Ada"), "{}", check.body);

    // Logs and numbers: Ada's traffic is Ada's.
    let mut ada_logs = Value::Null;
    for _ in 0..50 {
        ada_logs = ada.get("/api/logs").await.json();
        if ada_logs["total"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ada_logs["total"], 1, "{ada_logs}");
    assert_eq!(bob.get("/api/logs").await.json()["total"], 0);
    assert_eq!(
        bob.get(&format!("/api/logs?proxy_id={id}")).await.json()["total"],
        0
    );
    let export = bob.get("/api/logs/export?format=jsonl").await;
    assert_eq!(export.body.trim(), "", "Bob's export is empty");
    assert_eq!(ada.get("/api/metrics").await.json()["requests_total"], 1);
    assert_eq!(bob.get("/api/metrics").await.json()["requests_total"], 0);
    assert!(!bob.get("/metrics").await.body.contains("secret project"));
    let purge = bob
        .send_json(
            awc::http::Method::DELETE,
            "/api/logs?before=2100-01-01T00:00:00Z&confirm=true",
            Value::Null,
        )
        .await;
    assert_eq!(purge.json()["deleted"], 0, "Bob cannot purge Ada's logs");

    // The admin sees everything.
    let (_, all) = app.get("/api/proxies").await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let (_, logs) = app.get("/api/logs").await;
    assert_eq!(logs["total"], 1);
    // Members manage no accounts.
    let refused = bob
        .post_form(
            "/settings/users",
            &[
                ("email", "eve@example.com"),
                ("role", "admin"),
                ("password", "eve's long password"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!bob.get("/settings").await.body.contains("ada@example.com"));
}

/// Polls `path` until its JSON `total` is `expected`: log entries reach the database through a
/// batch writer, a moment after the request.
pub(super) async fn wait_for_total(session: &Session, path: &str, expected: u64) -> Value {
    let mut reply = Value::Null;
    for _ in 0..50 {
        reply = session.get(path).await.json();
        if reply["total"] == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    reply
}

#[actix_web::test]
async fn a_deleted_proxys_logs_stay_readable_to_its_owner_only() {
    let upstream = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, "ada@example.com", "ada's long password", "member").await;
    add_user(&admin, "bob@example.com", "bob's long password", "member").await;
    allow_loopback_for_members(&admin).await;
    let ada = Session::sign_in(&app, "ada@example.com", "ada's long password").await;
    let post = awc::http::Method::POST;

    let (id, _) = proxy_with_one_request(&ada, "Ada's old experiment", &upstream.url).await;
    let logs = wait_for_total(&ada, "/api/logs", 1).await;
    assert_eq!(logs["total"], 1, "{logs}");

    let stopped = ada
        .send_json(post, &format!("/api/proxies/{id}/stop"), Value::Null)
        .await;
    assert!(stopped.status.is_success(), "{}", stopped.body);
    let deleted = ada
        .send_json(
            awc::http::Method::DELETE,
            &format!("/api/proxies/{id}"),
            Value::Null,
        )
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    assert_eq!(ada.get("/api/proxies").await.json(), json!([]));

    // What the proxy did stays Ada's, across a restart too; Bob still sees none of it.
    app.restart().await;
    let ada = Session::sign_in(&app, "ada@example.com", "ada's long password").await;
    let bob = Session::sign_in(&app, "bob@example.com", "bob's long password").await;
    let logs = ada.get("/api/logs").await.json();
    assert_eq!(logs["total"], 1, "{logs}");
    assert_eq!(logs["logs"][0]["proxy_name"], "Ada's old experiment");
    let only_that_proxy = ada.get(&format!("/api/logs?proxy_id={id}")).await.json();
    assert_eq!(only_that_proxy["total"], 1, "{only_that_proxy}");
    assert_eq!(ada.get("/api/metrics").await.json()["requests_total"], 1);
    let page = ada.get(&format!("/logs?proxy_id={id}")).await;
    assert!(
        page.body.contains(&format!(
            "<option value=\"{id}\" selected>Ada&#39;s old experiment (deleted)</option>"
        )),
        "the logs page offers the deleted proxy as a filter: {}",
        page.body
    );
    assert_eq!(bob.get("/api/logs").await.json()["total"], 0);
    assert_eq!(
        bob.get(&format!("/api/logs?proxy_id={id}")).await.json()["total"],
        0
    );
    assert_eq!(bob.get("/api/metrics").await.json()["requests_total"], 0);
    assert!(!bob.get("/logs").await.body.contains("old experiment"));
}

#[actix_web::test]
async fn passwords_tokens_and_sessions_are_not_stored_in_clear() {
    let mut app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(
        &admin,
        "carol@example.com",
        "carol-canary-password-91",
        "member",
    )
    .await;
    let token_page = admin
        .post_form("/settings/tokens", &[("name", "scan me")])
        .await;
    let token = token_page
        .body
        .split("class=\"secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("token shown")
        .to_owned();
    // Everything written reaches the files.
    app.shutdown().await;
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(app.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        stored.extend(std::fs::read(&path).expect("readable"));
    }
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("carol@example.com"), "the scan reads the database");
    for secret in [
        "carol-canary-password-91",
        ADMIN_PASSWORD,
        TEST_TOKEN,
        token.as_str(),
        admin.cookie.as_str(),
    ] {
        assert!(!contains(secret), "“{secret}” is stored in clear");
    }
    assert!(contains("$argon2id$"), "passwords are argon2id hashes");
}

#[actix_web::test]
async fn a_session_survives_a_restart_until_sign_out() {
    let mut app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.restart().await;
    let admin = Session {
        base: app.base.clone(),
        ..admin
    };
    let page = admin.get("/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(ADMIN_EMAIL));

    let out = admin.post_form("/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location"), "/login");
    assert!(
        out.header("set-cookie").contains("Max-Age=0"),
        "{}",
        out.header("set-cookie")
    );
    let after = admin.get("/settings").await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works"
    );
}

#[actix_web::test]
async fn passwords_change_and_reset_end_old_sessions() {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, "dan@example.com", "dan's first password", "member").await;
    let dan = Session::sign_in(&app, "dan@example.com", "dan's first password").await;

    let weak = dan
        .post_form(
            "/settings/password",
            &password_form("dan's first password", "short"),
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.body.contains("at least 10 characters"),
        "{}",
        weak.body
    );
    let wrong = dan
        .post_form(
            "/settings/password",
            &password_form("not it at all", "dan's second password"),
        )
        .await;
    assert!(
        wrong.body.contains("current password is not right"),
        "{}",
        wrong.body
    );
    let changed = dan
        .post_form(
            "/settings/password",
            &password_form("dan's first password", "dan's second password"),
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    assert_eq!(
        dan.get("/settings").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    assert_eq!(
        login_attempt(&app, "dan@example.com", "dan's first password")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let dan = Session::sign_in(&app, "dan@example.com", "dan's second password").await;

    let settings = admin.get("/settings").await;
    let user_id = settings
        .body
        .split("/settings/users/")
        .skip(1)
        .filter_map(|rest| rest.split('/').next()?.parse::<i32>().ok())
        .max()
        .expect("a reset form for dan");
    let reset = admin
        .post_form(&format!("/settings/users/{user_id}/reset-password"), &[])
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    let generated = reset
        .body
        .split("class=\"secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new password is shown once")
        .to_owned();
    assert_eq!(
        dan.get("/settings").await.status,
        StatusCode::SEE_OTHER,
        "reset ends sessions"
    );
    Session::sign_in(&app, "dan@example.com", &generated).await;
}

#[actix_web::test]
async fn registration_is_off_until_an_admin_opens_it_and_limits_apply() {
    let app = TestApp::start().await;
    let closed = anonymous_get(&app, "/register").await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER);
    let refused = register(&app, "eve@example.com", "eve's long password").await;
    assert!(session_cookie_of(&refused).is_none());
    assert_eq!(
        login_attempt(&app, "eve@example.com", "eve's long password")
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "no account was made"
    );

    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let invalid = admin
        .post_form("/settings", &settings_form(&[("session_idle_hours", "0")]))
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        invalid.body.contains("Session lifetime must be"),
        "{}",
        invalid.body
    );
    let saved = admin
        .post_form(
            "/settings",
            &settings_form(&[
                ("self_registration", "on"),
                ("session_idle_hours", "8"),
                ("max_proxies_per_user", "1"),
                ("log_retention_days", "7"),
                ("trusted_proxies", "10.0.0.0/8"),
            ]),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(saved.body.contains("Saved."));
    assert!(saved.body.contains("10.0.0.0/8"));

    let registered = register(&app, "eve@example.com", "eve's long password").await;
    assert_eq!(
        registered.status,
        StatusCode::SEE_OTHER,
        "{}",
        registered.body
    );
    assert!(
        session_cookie_of(&registered).is_some(),
        "signed in at once"
    );
    let eve = Session::sign_in(&app, "eve@example.com", "eve's long password").await;
    assert!(eve.get("/settings").await.body.contains("member"));
    let first = eve
        .send_json(
            awc::http::Method::POST,
            "/api/proxies",
            json!({"name": "one", "provider": "openai", "start": false}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = eve
        .send_json(
            awc::http::Method::POST,
            "/api/proxies",
            json!({"name": "two", "provider": "openai", "start": false}),
        )
        .await;
    assert_eq!(
        second.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        second.body
    );
    assert!(second.body.contains("1 proxies"), "{}", second.body);
    let admin_second = app
        .post(
            "/api/proxies",
            json!({"name": "admins are not limited", "provider": "openai", "start": false}),
        )
        .await;
    assert_eq!(admin_second.0, StatusCode::CREATED);
}

#[actix_web::test]
async fn trusted_reverse_proxies_reveal_the_client_address_in_logs() {
    let upstream = MockUpstream::start().await;
    let app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Behind nginx", "provider": "openai", "upstream_url": upstream.url}))
        .await;
    let port = port_of(&proxy);
    let send = || async move {
        let response = awc::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .insert_header(("X-Forwarded-For", "203.0.113.77"))
            .send_json(&json!({"model": "gpt-4o-mini", "messages": []}))
            .await
            .expect("proxied");
        assert!(response.status().is_success());
    };
    let logged_ips = || async {
        let mut ips = Vec::new();
        for _ in 0..50 {
            let (_, logs) = app.get("/api/logs").await;
            ips = logs["logs"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| r["client_ip"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if !ips.is_empty() && ips.len() == logs["total"].as_u64().unwrap_or(0) as usize {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        ips
    };
    send().await;
    let untrusted = logged_ips().await;
    assert_eq!(
        untrusted,
        ["127.0.0.1"],
        "X-Forwarded-For from anyone is ignored"
    );

    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let saved = admin
        .post_form(
            "/settings",
            &settings_form(&[("trusted_proxies", "127.0.0.1")]),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    send().await;
    let mut ips = Vec::new();
    for _ in 0..50 {
        ips = logged_ips().await;
        if ips.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ips, ["203.0.113.77", "127.0.0.1"], "newest first");
}
