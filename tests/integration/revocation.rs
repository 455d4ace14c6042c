//! Taking access away: password resets and changes revoke tokens, admins disable and delete
//! accounts (their proxies stop, their proxies and logs stay for admins) and revoke any token;
//! members can do none of that to others.

use awc::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::accounts::{
    Session, add_user, allow_loopback_for_members, login_attempt, password_form,
    proxy_with_one_request, wait_for_total,
};
use super::support::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, accepts_connections, no_redirects};
use super::upstream::MockUpstream;

const ADA: &str = "ada@example.com";
const ADA_PASSWORD: &str = "ada's long password";
const BOB: &str = "bob@example.com";
const BOB_PASSWORD: &str = "bob's long password";

/// Creates an API token on `session`'s Settings page and returns its secret.
async fn new_token(session: &Session, name: &str) -> String {
    let created = session
        .post_form("/settings/tokens", &[("name", name)])
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    created
        .body
        .split("id=\"revealed-secret\" class=\"secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token is shown")
        .to_owned()
}

/// What `GET path` with `token` as the bearer answers.
async fn with_token(app: &TestApp, token: &str, method: Method, path: &str) -> (StatusCode, Value) {
    let mut response = no_redirects()
        .request(method, app.url(path))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("sent");
    let body = response.body().limit(1 << 20).await.expect("body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (response.status(), json)
}

async fn token_works(app: &TestApp, token: &str) -> bool {
    let (status, _) = with_token(app, token, Method::GET, "/api/proxies").await;
    assert!(
        status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
        "{status}"
    );
    status == StatusCode::OK
}

/// Whether the session still opens a page (a dead one is sent to the login page).
async fn signed_in(session: &Session) -> bool {
    let reply = session.get("/settings").await;
    match reply.status {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert!(reply.header("location").starts_with("/login"));
            false
        }
        other => panic!("/settings answered {other}: {}", reply.body),
    }
}

/// The id of the account with `email`, from the admin's user list (its row's forms name it).
async fn user_id(app: &TestApp, email: &str) -> i64 {
    let (status, page) = app.get_text("/settings", false).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page.split(&format!("<td>{email}</td>"))
        .nth(1)
        .and_then(|row| row.split("/settings/users/").nth(1))
        .and_then(|rest| rest.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no row for {email} in {page}"))
}

/// The id of the token named `name` among `session`'s own tokens.
async fn token_id(session: &Session, name: &str) -> i64 {
    let tokens = session.get("/api/tokens").await.json();
    tokens
        .as_array()
        .and_then(|tokens| tokens.iter().find(|t| t["name"] == name))
        .and_then(|t| t["id"].as_i64())
        .unwrap_or_else(|| panic!("no token {name} in {tokens}"))
}

/// An app with the members Ada and Bob, and the admin, signed in.
async fn app_with_members() -> (TestApp, Session, Session, Session) {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, ADA, ADA_PASSWORD, "member").await;
    add_user(&admin, BOB, BOB_PASSWORD, "member").await;
    allow_loopback_for_members(&admin).await;
    let ada = Session::sign_in(&app, ADA, ADA_PASSWORD).await;
    let bob = Session::sign_in(&app, BOB, BOB_PASSWORD).await;
    (app, admin, ada, bob)
}

#[actix_web::test]
async fn a_password_reset_revokes_the_users_api_tokens() {
    let (app, admin, ada, bob) = app_with_members().await;
    let token = new_token(&ada, "Ada's CI").await;
    let bobs = new_token(&bob, "Bob's CI").await;
    assert!(token_works(&app, &token).await);

    let id = user_id(&app, ADA).await;
    let reset = admin
        .post_form(&format!("/settings/users/{id}/reset-password"), &[])
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    assert!(
        !token_works(&app, &token).await,
        "whoever had Ada's token is locked out with whoever had her password"
    );
    assert!(
        reset.body.contains("API tokens are revoked"),
        "{}",
        reset.body
    );
    assert!(!signed_in(&ada).await);
    assert!(token_works(&app, &bobs).await, "Bob is not affected");
    assert!(signed_in(&bob).await);
}

#[actix_web::test]
async fn changing_your_password_revokes_your_tokens_unless_you_untick_it() {
    let (app, _admin, ada, _bob) = app_with_members().await;
    let token = new_token(&ada, "laptop").await;
    // As the form posts it by default: the box ticked.
    let mut form = password_form(ADA_PASSWORD, "ada's second password").to_vec();
    form.extend([("sign_out_offered", "1"), ("sign_out_everywhere", "on")]);
    let changed = ada.post_form("/settings/password", &form).await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    assert!(!signed_in(&ada).await, "signed out here too");
    assert!(!token_works(&app, &token).await, "the token is revoked");

    // The page offers the choice, ticked.
    let here = Session::sign_in(&app, ADA, "ada's second password").await;
    let page = here.get("/settings").await;
    assert!(
        page.body.contains(
            "name=\"sign_out_everywhere\" checked> Sign out everywhere and revoke my API tokens"
        ),
        "the form offers the choice, ticked: {}",
        page.body
    );

    // Unticked: this session and the tokens stay, other sessions end.
    let elsewhere = Session::sign_in(&app, ADA, "ada's second password").await;
    let kept = new_token(&here, "kept").await;
    let mut form = password_form("ada's second password", "ada's third password").to_vec();
    form.push(("sign_out_offered", "1"));
    let changed = here.post_form("/settings/password", &form).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert!(
        changed.body.contains("Your other sessions have ended"),
        "{}",
        changed.body
    );
    assert!(signed_in(&here).await);
    assert!(!signed_in(&elsewhere).await);
    assert!(token_works(&app, &kept).await);
    assert_eq!(
        login_attempt(&app, ADA, "ada's second password")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // A form without the choice (a script, an old page) gets the default: everything ends.
    let changed = here
        .post_form(
            "/settings/password",
            &password_form("ada's third password", "ada's fourth password"),
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    assert!(!signed_in(&here).await);
    assert!(!token_works(&app, &kept).await);
}

#[actix_web::test]
async fn a_disabled_account_is_locked_out_at_once_and_its_proxies_stop() {
    let upstream = MockUpstream::start().await;
    let (app, _admin, ada, bob) = app_with_members().await;
    let token = new_token(&ada, "Ada's CI").await;
    let (proxy, port) = proxy_with_one_request(&ada, "Ada's project", &upstream.url).await;
    let logs = wait_for_total(&ada, "/api/logs", 1).await;
    assert_eq!(logs["total"], 1, "{logs}");
    assert!(accepts_connections(port));

    // Through the API, with the admin's token.
    let id = user_id(&app, ADA).await;
    let (status, disabled) = app.post_empty(&format!("/api/users/{id}/disable")).await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["disabled"], true, "{disabled}");
    assert_eq!(disabled["proxies_stopped"], 1, "{disabled}");

    assert!(!signed_in(&ada).await, "her session ends at once");
    let (status, refused) = with_token(&app, &token, Method::GET, "/api/proxies").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert!(!accepts_connections(port), "her proxy stopped at once");
    let denied = login_attempt(&app, ADA, ADA_PASSWORD).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    assert!(
        denied.body.contains("This account is disabled"),
        "{}",
        denied.body
    );
    assert!(denied.cookie("rubberduck_session").is_none());
    assert!(signed_in(&bob).await, "Bob is not affected");

    // The admin still sees the proxy and what it did, and may start it.
    let (_, seen) = app.get(&format!("/api/proxies/{proxy}")).await;
    assert_eq!(seen["status"], "stopped", "{seen}");
    assert_eq!(seen["name"], "Ada's project");
    let (_, logs) = app.get(&format!("/api/logs?proxy_id={proxy}")).await;
    assert_eq!(logs["total"], 1, "{logs}");
    let (_, users) = app.get("/api/users").await;
    assert!(
        users
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["email"] == ADA && u["disabled"] == true)),
        "{users}"
    );

    // Enabled again: she signs in; the old token stays revoked, the proxy stopped.
    let (status, enabled) = app.post_empty(&format!("/api/users/{id}/enable")).await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["disabled"], false);
    let ada = Session::sign_in(&app, ADA, ADA_PASSWORD).await;
    assert!(signed_in(&ada).await);
    assert!(!token_works(&app, &token).await);
    let (_, seen) = app.get(&format!("/api/proxies/{proxy}")).await;
    assert_eq!(seen["status"], "stopped");
}

#[actix_web::test]
async fn an_admin_disables_and_enables_an_account_on_the_settings_page() {
    let (app, admin, ada, _bob) = app_with_members().await;
    let id = user_id(&app, ADA).await;
    let page = admin.get("/settings").await;
    assert!(
        page.body
            .contains(&format!("action=\"/settings/users/{id}/disable\"")),
        "a Disable button for Ada: {}",
        page.body
    );
    let disabled = admin
        .post_form(&format!("/settings/users/{id}/disable"), &[])
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert!(disabled.body.contains("is disabled"), "{}", disabled.body);
    assert!(
        disabled
            .body
            .contains(&format!("action=\"/settings/users/{id}/enable\"")),
        "{}",
        disabled.body
    );
    assert!(!signed_in(&ada).await);
    assert_eq!(
        login_attempt(&app, ADA, ADA_PASSWORD).await.status,
        StatusCode::FORBIDDEN
    );
    let enabled = admin
        .post_form(&format!("/settings/users/{id}/enable"), &[])
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    Session::sign_in(&app, ADA, ADA_PASSWORD).await;
}

#[actix_web::test]
async fn admins_see_and_revoke_every_token_members_only_their_own() {
    let (app, admin, ada, bob) = app_with_members().await;
    let adas = new_token(&ada, "Ada's CI").await;
    let bobs = new_token(&bob, "Bob's CI").await;
    let adas_id = token_id(&ada, "Ada's CI").await;
    let bobs_id = token_id(&bob, "Bob's CI").await;

    // Bob sees only his token and cannot touch Ada's.
    let mine = bob.get("/api/tokens").await.json();
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine[0]["name"], "Bob's CI");
    let all = bob.get("/api/tokens?all=true").await;
    assert_eq!(all.status, StatusCode::FORBIDDEN, "{}", all.body);
    assert!(!all.body.contains("Ada"), "{}", all.body);
    let (status, _) = with_token(
        &app,
        &bobs,
        Method::DELETE,
        &format!("/api/tokens/{adas_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let page_revoke = bob
        .post_form(&format!("/settings/tokens/{adas_id}/revoke"), &[])
        .await;
    assert_eq!(page_revoke.status, StatusCode::NOT_FOUND);
    assert!(token_works(&app, &adas).await, "Ada's token survived Bob");
    assert!(!bob.get("/settings").await.body.contains("Ada's CI"));

    // The admin sees both, with their owners, and revokes them.
    let (status, every) = app.get("/api/tokens?all=true").await;
    assert_eq!(status, StatusCode::OK, "{every}");
    let listed = every.as_array().cloned().unwrap_or_default();
    let ada_row = listed
        .iter()
        .find(|t| t["id"] == adas_id)
        .unwrap_or_else(|| panic!("{every}"));
    assert_eq!(ada_row["owner_email"], ADA);
    assert_eq!(ada_row["name"], "Ada's CI");
    assert!(
        ada_row["prefix"]
            .as_str()
            .is_some_and(|p| adas.starts_with(p))
    );
    assert!(ada_row.get("token_hash").is_none(), "{ada_row}");
    assert!(
        !every.to_string().contains(&adas),
        "secrets are never listed"
    );
    let page = admin.get("/settings").await;
    assert!(
        page.body
            .contains("<td class=\"token-owner\">ada@example.com</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Bob&#39;s CI"), "{}", page.body);

    let (status, _) = app.delete(&format!("/api/tokens/{adas_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!token_works(&app, &adas).await);
    let revoked = admin
        .post_form(&format!("/settings/tokens/{bobs_id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(!token_works(&app, &bobs).await);
    let (status, _) = app.delete(&format!("/api/tokens/{adas_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already gone");
}

#[actix_web::test]
async fn members_cannot_manage_accounts() {
    let (app, _admin, ada, bob) = app_with_members().await;
    let ada_id = user_id(&app, ADA).await;
    let bobs = new_token(&bob, "Bob's CI").await;

    for (method, path) in [
        (Method::GET, "/api/users".to_owned()),
        (Method::POST, format!("/api/users/{ada_id}/disable")),
        (Method::POST, format!("/api/users/{ada_id}/enable")),
        (Method::DELETE, format!("/api/users/{ada_id}")),
        (Method::GET, "/api/tokens?all=true".to_owned()),
    ] {
        let by_session = bob.send_json(method.clone(), &path, Value::Null).await;
        assert_eq!(
            by_session.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            by_session.body
        );
        assert!(
            by_session.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Only an admin")),
            "{}",
            by_session.body
        );
        let (status, _) = with_token(&app, &bobs, method.clone(), &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} by token");
    }
    for path in [
        format!("/settings/users/{ada_id}/disable"),
        format!("/settings/users/{ada_id}/enable"),
        format!("/settings/users/{ada_id}/delete"),
        format!("/settings/users/{ada_id}/reset-password"),
    ] {
        let reply = bob.post_form(&path, &[]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    let confirm = bob.get(&format!("/settings/users/{ada_id}/delete")).await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
    assert!(!confirm.body.contains(ADA));
    let settings = bob.get("/settings").await;
    assert!(
        !settings.body.contains("/settings/users/"),
        "no account controls"
    );
    assert!(signed_in(&ada).await, "Ada is untouched");
}

#[actix_web::test]
async fn a_deleted_account_is_gone_but_its_proxies_and_logs_stay_for_admins() {
    let upstream = MockUpstream::start().await;
    let (mut app, admin, ada, _bob) = app_with_members().await;
    let token = new_token(&ada, "Ada's CI").await;
    let (proxy, port) = proxy_with_one_request(&ada, "Ada's project", &upstream.url).await;
    let logs = wait_for_total(&ada, "/api/logs", 1).await;
    assert_eq!(logs["total"], 1, "{logs}");
    let id = user_id(&app, ADA).await;

    let confirm = admin.get(&format!("/settings/users/{id}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(
        confirm.body.contains("Its 1 proxy stops"),
        "{}",
        confirm.body
    );
    let deleted = admin
        .post_form(&format!("/settings/users/{id}/delete"), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(deleted.body.contains("is deleted"), "{}", deleted.body);
    assert!(
        !deleted.body.contains(&format!("<td>{ADA}</td>")),
        "no longer listed: {}",
        deleted.body
    );

    assert!(!signed_in(&ada).await);
    assert!(!token_works(&app, &token).await);
    assert!(!accepts_connections(port));
    assert_eq!(
        login_attempt(&app, ADA, ADA_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app.delete(&format!("/api/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted once");

    // Its proxy and logs stay, across a restart too, and the admin still manages the proxy.
    app.restart().await;
    let (_, seen) = app.get(&format!("/api/proxies/{proxy}")).await;
    assert_eq!(seen["status"], "stopped", "{seen}");
    let (_, logs) = app.get(&format!("/api/logs?proxy_id={proxy}")).await;
    assert_eq!(logs["total"], 1, "{logs}");
    let (status, started) = app.post_empty(&format!("/api/proxies/{proxy}/start")).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["status"], "running");

    // The email is free again, and the new account inherits nothing.
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, ADA, "ada's new password", "member").await;
    let new_ada = Session::sign_in(&app, ADA, "ada's new password").await;
    assert_eq!(new_ada.get("/api/proxies").await.json(), json!([]));
    assert_eq!(new_ada.get("/api/logs").await.json()["total"], 0);
}

#[actix_web::test]
async fn admins_cannot_lock_themselves_or_the_last_admin_out() {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let me = user_id_as(&admin, ADMIN_EMAIL).await;

    for (method, path) in [
        (Method::POST, format!("/api/users/{me}/disable")),
        (Method::DELETE, format!("/api/users/{me}")),
    ] {
        let reply = admin.send_json(method.clone(), &path, Value::Null).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path}: {}",
            reply.body
        );
        let error = &reply.json()["error"];
        assert_eq!(error["field"], "user", "{}", reply.body);
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("your own account")),
            "{}",
            reply.body
        );
    }
    for path in [
        format!("/settings/users/{me}/disable"),
        format!("/settings/users/{me}/delete"),
    ] {
        let reply = admin.post_form(&path, &[]).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(
            reply.body.contains("You cannot") && reply.body.contains("your own account"),
            "an inline error: {}",
            reply.body
        );
    }
    assert!(signed_in(&admin).await);

    // A second admin may disable the first; then the second is the last active admin, and the
    // first, disabled, can no longer act.
    add_user(&admin, "ann@example.com", "ann's long password", "admin").await;
    let ann = Session::sign_in(&app, "ann@example.com", "ann's long password").await;
    let disabled = ann
        .send_json(
            Method::POST,
            &format!("/api/users/{me}/disable"),
            Value::Null,
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert!(!signed_in(&admin).await);
    let (status, _) = app.get("/api/users").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the first admin's bootstrap token stopped too"
    );
    let ann_id = user_id_as(&ann, "ann@example.com").await;
    let refused = ann
        .send_json(Method::DELETE, &format!("/api/users/{ann_id}"), Value::Null)
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(signed_in(&ann).await, "Ann still manages Rubberduck");
}

/// The id of `email` as an admin's session lists users.
async fn user_id_as(admin: &Session, email: &str) -> i64 {
    let users = admin.get("/api/users").await.json();
    users
        .as_array()
        .and_then(|users| users.iter().find(|u| u["email"] == email))
        .and_then(|u| u["id"].as_i64())
        .unwrap_or_else(|| panic!("no {email} in {users}"))
}
