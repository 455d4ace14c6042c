//! Members cannot step outside their own proxies: no server-side key files, no internal upstreams,
//! no server credentials sent to a host a member chose.

use awc::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::accounts::{Session, add_user, allow_loopback_for_members, settings_form};
use super::support::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, id_of, port_of};
use super::upstream::MockUpstream;

const MIA: (&str, &str) = ("mia@example.com", "mia's long password");

async fn admin_and_member(app: &TestApp) -> (Session, Session) {
    let admin = Session::sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, MIA.0, MIA.1, "member").await;
    let mia = Session::sign_in(app, MIA.0, MIA.1).await;
    (admin, mia)
}

async fn create(session: &Session, body: Value) -> (StatusCode, Value) {
    let reply = session.send_json(Method::POST, "/api/proxies", body).await;
    let json = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

fn field_error(body: &Value) -> (&str, &str) {
    (
        body["error"]["field"].as_str().unwrap_or_default(),
        body["error"]["message"].as_str().unwrap_or_default(),
    )
}

/// A chat request whose prompt says `what`: each prompt is new to the cache.
async fn chat(port: u16, what: &str) -> (StatusCode, String) {
    let mut response = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .send_json(
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": what}]}),
        )
        .await
        .expect("the proxy answers");
    let body = response.body().await.expect("a body");
    (
        response.status(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn only_admins_set_key_files_and_members_never_learn_which_files_exist() {
    let app = TestApp::start().await;
    let (admin, mia) = admin_and_member(&app).await;
    let key_file = app.data_dir().join("key.json");
    std::fs::write(&key_file, "{}").expect("a file");
    let existing = key_file.to_string_lossy().into_owned();

    let mut answers = Vec::new();
    for path in [existing.as_str(), "/no/such/key.json", "/etc/hostname"] {
        let (status, body) = create(
            &mia,
            json!({"name": "mine", "provider": "vertex_ai", "vertex_service_account_file": path}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        let (field, message) = field_error(&body);
        assert_eq!(field, "vertex_service_account_file");
        assert!(!message.contains(path), "the path is not echoed: {message}");
        answers.push(message.to_owned());
    }
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "one answer whether or not the file exists: {answers:?}"
    );

    // Her own proxy cannot get one by an edit either, and an admin's key file stays hers to use.
    let (status, proxy) = create(&mia, json!({"name": "mine", "provider": "vertex_ai"})).await;
    assert_eq!(status, StatusCode::CREATED, "{proxy}");
    let id = id_of(&proxy);
    let edit = mia
        .send_json(
            Method::PATCH,
            &format!("/api/proxies/{id}"),
            json!({"vertex_service_account_file": existing}),
        )
        .await;
    assert_eq!(
        edit.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        edit.body
    );
    let by_admin = admin
        .send_json(
            Method::PATCH,
            &format!("/api/proxies/{id}"),
            json!({"vertex_service_account_file": existing}),
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.body);
    let renamed = mia
        .send_json(
            Method::PATCH,
            &format!("/api/proxies/{id}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(
        renamed.status,
        StatusCode::OK,
        "an unrelated edit keeps the admin's key file: {}",
        renamed.body
    );

    // Pointed at a host of her own, the proxy mints no token with the admin's key for it.
    let mock = MockUpstream::start().await;
    allow_loopback_for_members(&admin).await;
    let moved = mia
        .send_json(
            Method::PATCH,
            &format!("/api/proxies/{id}"),
            json!({"upstream_url": mock.url}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    let mut response = awc::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent",
            port_of(&proxy)
        ))
        .send_json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .await
        .expect("the proxy answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = String::from_utf8_lossy(&response.body().await.expect("a body")).into_owned();
    assert!(text.contains("only for Google endpoints"), "{text}");
    assert!(mock.requests().is_empty(), "nothing was sent to her host");
}

#[actix_web::test]
async fn members_reach_public_addresses_and_what_an_admin_allows() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    let (admin, mia) = admin_and_member(&app).await;
    let port = mock.url.rsplit(':').next().expect("a port").to_owned();

    // Addresses written in the URL are refused when the proxy is saved.
    for upstream in [
        format!("http://127.0.0.1:{port}/v1"),
        format!("http://[::1]:{port}/v1"),
        "http://169.254.169.254/latest".to_owned(),
        "http://10.0.0.7:8080/v1".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{port}/v1"),
    ] {
        let (status, body) = create(
            &mia,
            json!({"name": "inside", "provider": "openai", "upstream_url": upstream}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{upstream}: {body}"
        );
        let (field, message) = field_error(&body);
        assert_eq!(field, "upstream_url", "{upstream}");
        assert!(message.contains("public addresses"), "{message}");
    }

    // A name is checked on the addresses it resolves to, when the proxy connects.
    let (status, proxy) = create(
        &mia,
        json!({"name": "by name", "provider": "openai", "upstream_url": format!("http://localhost:{port}/v1")}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{proxy}");
    let (status, body) = chat(port_of(&proxy), "by name").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("may only reach public addresses"), "{body}");
    assert!(
        body.contains("127.0.0.1") || body.contains("::1"),
        "names the address: {body}"
    );
    assert!(
        mock.requests().is_empty(),
        "nothing reached the loopback upstream"
    );

    // Admins keep full freedom.
    let (status, admins) = create(
        &admin,
        json!({"name": "admin's", "provider": "openai", "upstream_url": format!("http://127.0.0.1:{port}/v1")}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{admins}");
    assert_eq!(chat(port_of(&admins), "admin's").await.0, StatusCode::OK);
    assert_eq!(mock.requests().len(), 1);

    // An allowed network opens the same name at once, without a restart.
    allow_loopback_for_members(&admin).await;
    let (status, body) = chat(port_of(&proxy), "allowed").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(mock.requests().len(), 2);
    let (status, body) = create(
        &mia,
        json!({"name": "allowed", "provider": "openai", "upstream_url": format!("http://127.0.0.1:{port}/v1")}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Taking the network away closes it again for new connections.
    let closed = admin
        .post_form("/settings", &settings_form(&[("member_upstreams", "")]))
        .await;
    assert!(!closed.body.contains("field-error"), "{}", closed.body);

    let restarted = mia
        .send_json(
            Method::POST,
            &format!("/api/proxies/{}/restart", id_of(&proxy)),
            json!({}),
        )
        .await;
    assert_eq!(restarted.status, StatusCode::OK, "{}", restarted.body);
    assert_eq!(
        chat(port_of(&proxy), "closed again").await.0,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(mock.requests().len(), 2);
}

#[actix_web::test]
async fn the_servers_aws_identity_signs_only_for_aws_endpoints_on_members_proxies() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start().await;
    let (admin, mia) = admin_and_member(&app).await;
    allow_loopback_for_members(&admin).await;
    let (status, proxy) = create(
        &mia,
        json!({"name": "bedrock", "provider": "bedrock", "upstream_url": mock.url, "aws_region": "us-east-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{proxy}");
    let url = format!(
        "http://127.0.0.1:{}/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        port_of(&proxy)
    );
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});

    let mut refused = awc::Client::new()
        .post(&url)
        .send_json(&body)
        .await
        .expect("the proxy answers");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let text = String::from_utf8_lossy(&refused.body().await.expect("a body")).into_owned();
    assert!(text.contains("signs only for AWS endpoints"), "{text}");
    assert!(
        mock.requests().is_empty(),
        "nothing was sent to the member's host"
    );

    // The member's own credentials still work: the proxy signs with them.
    let signed = awc::Client::new()
        .post(&url)
        .insert_header(("x-aws-access-key", "AKIDMEMBERSOWN"))
        .insert_header(("x-aws-secret-key", "members-own-secret"))
        .send_json(&body)
        .await
        .expect("the proxy answers");
    assert_eq!(signed.status(), StatusCode::OK);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let authorization = requests[0].header("authorization").unwrap_or_default();
    assert!(
        authorization.contains("Credential=AKIDMEMBERSOWN/"),
        "{authorization}"
    );
}
