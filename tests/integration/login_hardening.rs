//! Signing in under attack: parallel guesses, a guesser locking the admin out, `next=` tricks,
//! live streams after sign-out, weak bootstrap secrets, one-time secrets in caches.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use awc::http::StatusCode;
use futures_util::StreamExt;

use super::accounts::{Session, add_user, login_attempt, settings_form};
use super::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Reply, TEST_TOKEN, TestApp, port_block};

/// The limit of failed sign-ins per account and address.
const PAIR_LIMIT: usize = 5;
/// How long a stream may take to end after its credential stopped working (it is checked every
/// few seconds).
const STREAM_END_WITHIN: Duration = Duration::from_secs(20);

/// A sign-in as it reaches us through the trusted reverse proxy from `address`.
async fn login_from(
    app: &TestApp,
    address: &str,
    email: &str,
    password: &str,
    next: &str,
) -> Reply {
    let response = awc::Client::builder()
        .disable_redirects()
        .finish()
        .post(app.url("/login"))
        .insert_header(("X-Forwarded-For", address))
        .send_form(&[("email", email), ("password", password), ("next", next)])
        .await
        .expect("login posted");
    Reply::read(response).await
}

fn is_wrong_password(reply: &Reply) -> bool {
    reply.status == StatusCode::UNAUTHORIZED && reply.body.contains("Wrong email or password")
}

fn is_locked(reply: &Reply) -> bool {
    reply.status == StatusCode::TOO_MANY_REQUESTS && reply.body.contains("Too many failed sign-ins")
}

#[actix_web::test]
async fn parallel_guesses_verify_at_most_the_limit() {
    let app = TestApp::start().await;
    let guesses = (0..50).map(|n| {
        let app = &app;
        async move { login_attempt(app, ADMIN_EMAIL, &format!("parallel guess {n}")).await }
    });
    let replies = futures_util::future::join_all(guesses).await;
    let wrong = replies.iter().filter(|r| is_wrong_password(r)).count();
    let locked = replies.iter().filter(|r| is_locked(r)).count();
    assert_eq!(
        wrong + locked,
        replies.len(),
        "every guess is answered as wrong or locked"
    );
    assert!(
        (1..=PAIR_LIMIT).contains(&wrong),
        "{wrong} passwords were checked, {locked} refused"
    );
    let right = login_attempt(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(is_locked(&right), "{}: {}", right.status, right.body);
}

#[actix_web::test]
async fn a_guessers_failures_do_not_lock_the_admin_out_from_elsewhere() {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_user(&admin, "ada@example.com", "ada's long password", "member").await;
    let trusted = admin
        .post_form(
            "/settings",
            &settings_form(&[("trusted_proxies", "127.0.0.1")]),
        )
        .await;
    assert_eq!(trusted.status, StatusCode::OK, "{}", trusted.body);

    let guesser = "203.0.113.66";
    // More than enough for both limits: the pair's and the address's (5 accounts × 5).
    let targets = [
        ADMIN_EMAIL,
        "nobody1@example.com",
        "nobody2@example.com",
        "nobody3@example.com",
        "nobody4@example.com",
    ];
    for email in targets {
        for n in 0..PAIR_LIMIT + 2 {
            let reply = login_from(&app, guesser, email, &format!("guess {n}"), "/").await;
            assert!(
                is_wrong_password(&reply) || is_locked(&reply),
                "{}: {}",
                reply.status,
                reply.body
            );
        }
    }
    let guessers_right = login_from(&app, guesser, ADMIN_EMAIL, ADMIN_PASSWORD, "/").await;
    assert!(
        is_locked(&guessers_right),
        "the guesser's address stays locked for the admin: {}",
        guessers_right.status
    );
    let slowed = login_from(&app, guesser, "ada@example.com", "ada's long password", "/").await;
    assert!(
        is_locked(&slowed),
        "the guesser's address is slowed for every account: {}",
        slowed.status
    );

    let owner = login_from(&app, "198.51.100.7", ADMIN_EMAIL, ADMIN_PASSWORD, "/").await;
    assert_eq!(
        owner.status,
        StatusCode::SEE_OTHER,
        "the admin still signs in from elsewhere: {}",
        owner.body
    );
    assert!(owner.cookie("rubberduck_session").is_some());
    let member = login_from(
        &app,
        "198.51.100.8",
        "ada@example.com",
        "ada's long password",
        "/",
    )
    .await;
    assert_eq!(member.status, StatusCode::SEE_OTHER, "{}", member.body);
}

#[actix_web::test]
async fn next_stays_on_this_server_and_never_fails() {
    let app = TestApp::start().await;
    for sneaky in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/\0",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
    ] {
        let reply = login_from(&app, "127.0.0.1", ADMIN_EMAIL, ADMIN_PASSWORD, sneaky).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{sneaky:?}: {}",
            reply.body
        );
        assert_eq!(reply.header("location"), "/", "{sneaky:?}");
    }
    let kept = login_from(
        &app,
        "127.0.0.1",
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
        "/logs?status=4xx",
    )
    .await;
    assert_eq!(kept.header("location"), "/logs?status=4xx");

    for query in ["%2F%09%2Fevil.example", "%2F%0A%2Fevil.example", "%2F%00"] {
        let page = awc::Client::new()
            .get(app.url(&format!("/login?next={query}")))
            .send()
            .await
            .expect("sent");
        let page = Reply::read(page).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        assert!(
            page.body.contains("name=\"next\" value=\"/\""),
            "{query}: {}",
            page.body
        );
    }
}

/// A client whose response bodies may stream for long (awc's default would cut them at 5 s).
fn streaming_client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(120))
        .finish()
}

async fn open_stream(
    request: awc::ClientRequest,
) -> impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin {
    let response = request.send().await.expect("stream opens");
    assert_eq!(response.status(), StatusCode::OK);
    response
}

/// True when the stream ends (cleanly) within `within`.
async fn ends_within(
    stream: &mut (impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin),
    within: Duration,
) -> bool {
    tokio::time::timeout(within, async {
        while let Some(chunk) = stream.next().await {
            chunk.expect("the stream ends, not fails");
        }
    })
    .await
    .is_ok()
}

#[actix_web::test]
async fn live_streams_end_soon_after_sign_out_or_revocation() {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let with_session = |path: &str| {
        streaming_client()
            .get(app.url(path))
            .insert_header(("Cookie", format!("rubberduck_session={}", admin.cookie)))
    };
    let mut cards = open_stream(with_session("/proxies/events")).await;
    let mut logs = open_stream(with_session("/logs/events")).await;

    let created = admin
        .post_form("/settings/tokens", &[("name", "live stream")])
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let token = created
        .body
        .split("id=\"revealed-secret\" class=\"secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token is shown")
        .to_owned();
    let with_token = |token: &str, path: &str| {
        streaming_client()
            .get(app.url(path))
            .insert_header(("Authorization", format!("Bearer {token}")))
    };
    let mut by_token = open_stream(with_token(&token, "/logs/events")).await;
    let mut bootstrap = open_stream(with_token(TEST_TOKEN, "/proxies/events")).await;

    let started = Instant::now();
    let out = admin.post_form("/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert!(
        ends_within(&mut cards, STREAM_END_WITHIN).await,
        "the Proxies page's stream outlived sign-out"
    );
    assert!(
        ends_within(&mut logs, STREAM_END_WITHIN).await,
        "the live logs outlived sign-out"
    );
    assert!(started.elapsed() < STREAM_END_WITHIN);

    let revoked = app
        .get("/api/tokens")
        .await
        .1
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "live stream")
        .and_then(|t| t["id"].as_i64())
        .expect("the token is listed");
    let (status, body) = app.delete(&format!("/api/tokens/{revoked}")).await;
    assert!(status.is_success(), "{status}: {body}");
    assert!(
        ends_within(&mut by_token, STREAM_END_WITHIN).await,
        "a stream outlived its revoked token"
    );

    // A stream whose token still works is still open (it has been checked several times by now).
    assert!(
        !ends_within(&mut bootstrap, Duration::from_millis(300)).await,
        "a stream with a working token stays open"
    );
}

#[actix_web::test]
async fn one_time_secrets_are_not_stored_by_caches() {
    let app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let no_store = |reply: &Reply| reply.header("cache-control").contains("no-store");

    let token = admin
        .post_form("/settings/tokens", &[("name", "cached?")])
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    assert!(token.body.contains("revealed-secret"));
    assert!(no_store(&token), "a new token's page: {:?}", token.headers);

    let user = admin
        .post_form(
            "/settings/users",
            &[
                ("email", "grace@example.com"),
                ("role", "member"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.body);
    assert!(user.body.contains("revealed-secret"));
    assert!(no_store(&user), "a generated password's page");

    let (_, users) = app.get("/api/users").await;
    let id = users
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["email"] == "grace@example.com")
        .and_then(|u| u["id"].as_i64())
        .expect("the user is listed");
    let reset = admin
        .post_form(&format!("/settings/users/{id}/reset-password"), &[])
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    assert!(reset.body.contains("revealed-secret"));
    assert!(no_store(&reset), "a reset password's page");
}

/// Starts the real binary with these bootstrap secrets; its exit status and what it printed, or
/// `None` when it was still running after `within` (then it is stopped).
fn start_binary(envs: &[(&str, &str)], within: Duration) -> Option<(bool, String)> {
    let data = tempfile::tempdir().expect("temp dir");
    let ports = port_block();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rubberduck"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("data"))
        .env(
            "RUBBERDUCK_PROXY_PORTS",
            format!("{}-{}", ports.start(), ports.end()),
        )
        .env_remove("RUBBERDUCK_ADMIN_PASSWORD")
        .env_remove("RUBBERDUCK_BOOTSTRAP_TOKEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut printed = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut printed);
    }
    status.map(|status| (status.success(), printed))
}

#[test]
fn weak_bootstrap_secrets_stop_the_start_naming_the_variable() {
    for (variable, weak, strong_other) in [
        (
            "RUBBERDUCK_ADMIN_PASSWORD",
            "Zq9",
            ("RUBBERDUCK_BOOTSTRAP_TOKEN", TEST_TOKEN),
        ),
        (
            "RUBBERDUCK_BOOTSTRAP_TOKEN",
            "x7Qw",
            ("RUBBERDUCK_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ),
    ] {
        let (succeeded, printed) =
            start_binary(&[(variable, weak), strong_other], Duration::from_secs(30))
                .unwrap_or_else(|| {
                    panic!("a weak {variable} was accepted: the server kept running")
                });
        assert!(!succeeded, "{variable}: {printed}");
        assert!(
            printed.contains(variable) && printed.contains("too weak"),
            "{variable}: {printed}"
        );
        assert!(
            !printed.contains(weak),
            "the value is never shown: {printed}"
        );
    }
}
