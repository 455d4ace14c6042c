//! Single sign-on: a mock OpenID Connect provider on 127.0.0.1 (discovery, keys, authorize,
//! token, user info) and the browser's round trip through it, followed by hand over HTTP.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use awc::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, IssuerUrl, JsonWebKeyId, Nonce,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::support::{ADMIN_EMAIL, Reply, TestApp, no_redirects, port_block};

const CLIENT_ID: &str = "rubberduck-test";
const CLIENT_SECRET: &str = "mock-client-secret";
/// Both keys carry the same key id, so a token signed with the wrong one fails on its
/// signature, not on an unknown key id.
const KEY_ID: &str = "test-key";
const ROTATED_KEY_ID: &str = "rotated-key";
/// Throwaway RSA keys made for these tests (`openssl genrsa -traditional 2048`).
const PROVIDER_KEY: &str = include_str!("oidc_keys/idp.pem");
const OTHER_KEY: &str = include_str!("oidc_keys/other.pem");

/// Whom the mock provider signs in next, and how its ID token may be wrong.
#[derive(Clone)]
struct Person {
    email: String,
    email_verified: Option<bool>,
    /// The email is left out of the ID token and given only by the user-info endpoint.
    email_in_user_info_only: bool,
    signed_by_other_key: bool,
    nonce: Option<String>,
    audience: Option<String>,
}

impl Person {
    fn new(email: &str) -> Person {
        Person {
            email: email.to_owned(),
            email_verified: Some(true),
            email_in_user_info_only: false,
            signed_by_other_key: false,
            nonce: None,
            audience: None,
        }
    }
}

struct Grant {
    person: Person,
    nonce: String,
    code_challenge: String,
    redirect_uri: String,
}

struct Provider {
    issuer: String,
    next: Mutex<Option<Person>>,
    grants: Mutex<HashMap<String, Grant>>,
    access_tokens: Mutex<HashMap<String, Person>>,
    /// What the token endpoint refused, for assertions.
    refusals: Mutex<Vec<String>>,
    /// The key the provider signs with and publishes, and its key id.
    current_key: Mutex<(&'static str, &'static str)>,
    key_sets_served: AtomicUsize,
}

struct MockProvider {
    issuer: String,
    provider: Arc<Provider>,
    handle: ServerHandle,
}

impl MockProvider {
    async fn start() -> MockProvider {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("mock provider binds");
        let issuer = format!(
            "http://{}/realms/test",
            listener.local_addr().expect("addr")
        );
        let provider = Arc::new(Provider {
            issuer: issuer.clone(),
            next: Mutex::new(None),
            grants: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(HashMap::new()),
            refusals: Mutex::new(Vec::new()),
            current_key: Mutex::new((PROVIDER_KEY, KEY_ID)),
            key_sets_served: AtomicUsize::new(0),
        });
        let data = web::Data::from(Arc::clone(&provider));
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).service(
                web::scope("/realms/test")
                    .route(
                        "/.well-known/openid-configuration",
                        web::get().to(discovery),
                    )
                    .route("/keys", web::get().to(keys))
                    .route("/authorize", web::get().to(authorize))
                    .route("/token", web::post().to(token))
                    .route("/userinfo", web::get().to(user_info)),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("mock provider listens")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        MockProvider {
            issuer,
            provider,
            handle,
        }
    }

    fn signs_in_next(&self, person: Person) {
        *self.provider.next.lock().expect("lock") = Some(person);
    }

    /// From now on the provider signs with a new key and publishes only that one.
    fn rotate_keys(&self) {
        *self.provider.current_key.lock().expect("lock") = (OTHER_KEY, ROTATED_KEY_ID);
    }

    fn key_sets_served(&self) -> usize {
        self.provider.key_sets_served.load(Ordering::SeqCst)
    }

    fn refusals(&self) -> Vec<String> {
        self.provider.refusals.lock().expect("lock").clone()
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn discovery(provider: web::Data<Provider>) -> HttpResponse {
    let issuer = &provider.issuer;
    HttpResponse::Ok().json(serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile"],
    }))
}

fn signing_key(pem: &str, key_id: &str) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(key_id.to_owned())))
        .expect("test key reads")
}

async fn keys(provider: web::Data<Provider>) -> HttpResponse {
    provider.key_sets_served.fetch_add(1, Ordering::SeqCst);
    let (pem, key_id) = *provider.current_key.lock().expect("lock");
    HttpResponse::Ok().json(serde_json::json!({
        "keys": [signing_key(pem, key_id).as_verification_key()]
    }))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: String,
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
}

/// Signs in whoever the test chose and sends the browser back with a code, as a provider
/// does after its login form.
async fn authorize(
    provider: web::Data<Provider>,
    query: web::Query<AuthorizeQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    let well_formed = query.response_type == "code"
        && query.client_id == CLIENT_ID
        && query.code_challenge_method == "S256"
        && !query.code_challenge.is_empty()
        && query.scope.split(' ').any(|s| s == "openid");
    if !well_formed {
        return HttpResponse::BadRequest().body("malformed authorization request");
    }
    let Some(person) = provider.next.lock().expect("lock").clone() else {
        return HttpResponse::BadRequest().body("the test chose nobody to sign in");
    };
    let code = format!("code-{}", rand_text());
    let location = format!(
        "{}?code={code}&state={}",
        query.redirect_uri,
        percent_encoding::utf8_percent_encode(&query.state, percent_encoding::NON_ALPHANUMERIC)
    );
    provider.grants.lock().expect("lock").insert(
        code,
        Grant {
            person,
            nonce: query.nonce,
            code_challenge: query.code_challenge,
            redirect_uri: query.redirect_uri,
        },
    );
    HttpResponse::Found()
        .insert_header(("Location", location))
        .finish()
}

fn rand_text() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
}

fn refuse(provider: &Provider, why: &str) -> HttpResponse {
    provider.refusals.lock().expect("lock").push(why.to_owned());
    HttpResponse::BadRequest().json(serde_json::json!({
        "error": "invalid_grant",
        "error_description": why,
    }))
}

/// Checks the client's credentials, the code, its redirect URI and the PKCE verifier, then
/// answers with an RS256-signed ID token.
async fn token(
    req: HttpRequest,
    provider: web::Data<Provider>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let expected_auth = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let presented_auth = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok());
    if presented_auth != Some(expected_auth.as_str()) {
        return refuse(&provider, "wrong client credentials");
    }
    if form.grant_type != "authorization_code" {
        return refuse(&provider, "wrong grant type");
    }
    let Some(grant) = provider.grants.lock().expect("lock").remove(&form.code) else {
        return refuse(&provider, "unknown or used code");
    };
    if grant.redirect_uri != form.redirect_uri {
        return refuse(
            &provider,
            "redirect_uri differs from the authorization request",
        );
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(form.code_verifier.as_bytes()));
    if challenge != grant.code_challenge {
        return refuse(&provider, "PKCE verifier does not match the challenge");
    }
    let person = grant.person;
    let now = chrono::Utc::now();
    let mut standard = StandardClaims::new(SubjectIdentifier::new(format!(
        "subject-of-{}",
        person.email
    )));
    if !person.email_in_user_info_only {
        standard = standard
            .set_email(Some(EndUserEmail::new(person.email.clone())))
            .set_email_verified(person.email_verified);
    }
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(provider.issuer.clone()).expect("issuer URL"),
        vec![Audience::new(
            person
                .audience
                .clone()
                .unwrap_or_else(|| CLIENT_ID.to_owned()),
        )],
        now + chrono::TimeDelta::minutes(5),
        now,
        standard,
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(
        person.nonce.clone().unwrap_or(grant.nonce),
    )));
    let (pem, key_id) = if person.signed_by_other_key {
        (OTHER_KEY, KEY_ID)
    } else {
        *provider.current_key.lock().expect("lock")
    };
    let id_token = CoreIdToken::new(
        claims,
        &signing_key(pem, key_id),
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .expect("ID token signs");
    let access_token = format!("at-{}", rand_text());
    provider
        .access_tokens
        .lock()
        .expect("lock")
        .insert(access_token.clone(), person);
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
}

async fn user_info(req: HttpRequest, provider: web::Data<Provider>) -> HttpResponse {
    let person = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| {
            provider
                .access_tokens
                .lock()
                .expect("lock")
                .get(token)
                .cloned()
        });
    match person {
        Some(person) => HttpResponse::Ok().json(serde_json::json!({
            "sub": format!("subject-of-{}", person.email),
            "email": person.email,
            "email_verified": person.email_verified,
        })),
        None => HttpResponse::Unauthorized().finish(),
    }
}

// ---------------------------------------------------------------------------------------------
// The browser's side.

async fn get(url: &str, cookie: Option<&str>) -> Reply {
    let mut request = no_redirects().get(url);
    if let Some(cookie) = cookie {
        request = request.insert_header(("Cookie", cookie.to_owned()));
    }
    Reply::read(request.send().await.expect("request sent")).await
}

/// A sign-in up to the provider's redirect back: the callback URL and the cookie that ties the
/// attempt to this browser.
struct Started {
    authorize_url: String,
    sso_cookie: String,
}

async fn start_sign_in(app: &TestApp, next: &str) -> Started {
    let reply = get(&app.url(&format!("/login/oidc?next={next}")), None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let sso_cookie = reply
        .cookie("rubberduck_oidc")
        .expect("the attempt is tied to the browser");
    Started {
        authorize_url: reply.header("location").to_owned(),
        sso_cookie,
    }
}

/// The provider's login, which answers with a redirect to the app's callback.
async fn provider_login(started: &Started) -> String {
    let reply = get(&started.authorize_url, None).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    reply.header("location").to_owned()
}

async fn callback(url: &str, sso_cookie: Option<&str>) -> Reply {
    let cookie = sso_cookie.map(|value| format!("rubberduck_oidc={value}"));
    get(url, cookie.as_deref()).await
}

/// The whole round trip for `person`, ending with the app's answer to the callback.
async fn sign_in(app: &TestApp, idp: &MockProvider, person: Person) -> Reply {
    idp.signs_in_next(person);
    let started = start_sign_in(app, "/settings").await;
    let back = provider_login(&started).await;
    callback(&back, Some(&started.sso_cookie)).await
}

/// `url` with its `state` parameter replaced.
fn with_state(url: &str, state: &str) -> String {
    let mut url = openidconnect::url::Url::parse(url).expect("a URL");
    let others: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(name, _)| name != "state")
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("state", state);
    url.to_string()
}

/// Asserts a signed-in answer and returns the session cookie.
fn signed_in(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.header("location"), "/settings");
    reply
        .cookie("rubberduck_session")
        .expect("a session cookie")
}

fn refused(reply: &Reply, status: StatusCode, says: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert!(reply.cookie("rubberduck_session").is_none());
    assert!(
        reply.body.contains(says),
        "expected “{says}” in {}",
        reply.body
    );
    assert!(
        reply.body.contains("Sign in with Test IdP"),
        "{}",
        reply.body
    );
}

async fn settings(app: &TestApp, session: &str) -> Reply {
    get(
        &app.url("/settings"),
        Some(&format!("rubberduck_session={session}")),
    )
    .await
}

async fn app_with_sso(
    idp: &MockProvider,
    adjust: impl FnOnce(&mut rubberduck::config::OidcArgs),
) -> TestApp {
    let issuer = idp.issuer.clone();
    TestApp::start_configured(port_block(), move |args| {
        args.oidc.issuer = Some(issuer);
        args.oidc.client_id = Some(CLIENT_ID.to_owned());
        args.oidc.client_secret = Some(rubberduck::config::Secret(CLIENT_SECRET.to_owned()));
        args.oidc.name = "Test IdP".to_owned();
        adjust(&mut args.oidc);
    })
    .await
}

/// How many rows of the admin's user list show `email`.
async fn accounts_named(app: &TestApp, email: &str) -> usize {
    let (status, page) = app.get_text("/settings", false).await;
    assert_eq!(status, StatusCode::OK);
    page.matches(&format!("<td>{email}</td>")).count()
}

// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn without_configuration_there_is_no_button_and_no_route() {
    let app = TestApp::start().await;
    let login = get(&app.url("/login"), None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(!login.body.contains("/login/oidc"), "{}", login.body);
    assert!(!login.body.contains("Sign in with"), "{}", login.body);
    for path in ["/login/oidc", "/login/oidc/callback?code=x&state=y"] {
        let reply = get(&app.url(path), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[actix_web::test]
async fn a_new_person_signs_in_as_a_member_and_comes_back_as_the_same_account() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |_| {}).await;

    let login = get(&app.url("/login?next=/settings"), None).await;
    assert!(
        login.body.contains("Sign in with Test IdP"),
        "{}",
        login.body
    );
    assert!(
        login.body.contains("href=\"/login/oidc?next=%2Fsettings\""),
        "{}",
        login.body
    );

    idp.signs_in_next(Person::new("ada@example.com"));
    let started = start_sign_in(&app, "/settings").await;
    let authorize = openidconnect::url::Url::parse(&started.authorize_url).expect("a URL");
    assert!(
        started
            .authorize_url
            .starts_with(&format!("{}/authorize?", idp.issuer)),
        "{}",
        started.authorize_url
    );
    let params: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(
        params["redirect_uri"],
        app.url("/login/oidc/callback"),
        "the default redirect URL is the dashboard's address"
    );
    assert_eq!(params["scope"], "openid email profile");
    assert!(!params["nonce"].is_empty() && !params["state"].is_empty());
    let back = provider_login(&started).await;
    let reply = callback(&back, Some(&started.sso_cookie)).await;
    let session = signed_in(&reply);
    assert!(
        reply.header("set-cookie").contains("HttpOnly"),
        "the session cookie is the usual one"
    );
    let page = settings(&app, &session).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<dd id=\"account-email\">ada@example.com</dd>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<dt>Role</dt><dd>member</dd>"));
    assert_eq!(accounts_named(&app, "ada@example.com").await, 1);

    // The same person again, the provider spelling the address differently: same account.
    let again = sign_in(&app, &idp, Person::new("ada@EXAMPLE.com")).await;
    let second = signed_in(&again);
    assert_ne!(second, session, "a session of its own");
    assert_eq!(accounts_named(&app, "ada@example.com").await, 1);
    assert!(idp.refusals().is_empty(), "{:?}", idp.refusals());
    idp.stop().await;
}

#[actix_web::test]
async fn an_existing_admin_signs_in_as_admin_whatever_the_case_of_the_email() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |_| {}).await;
    let reply = sign_in(&app, &idp, Person::new(&ADMIN_EMAIL.to_uppercase())).await;
    let session = signed_in(&reply);
    let page = settings(&app, &session).await;
    assert!(
        page.body
            .contains(&format!("<dd id=\"account-email\">{ADMIN_EMAIL}</dd>")),
        "{}",
        page.body
    );
    assert!(page.body.contains("<dt>Role</dt><dd>admin</dd>"));
    assert_eq!(accounts_named(&app, ADMIN_EMAIL).await, 1);
    idp.stop().await;
}

#[actix_web::test]
async fn keys_the_provider_rotates_are_fetched_again() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |_| {}).await;
    signed_in(&sign_in(&app, &idp, Person::new("ada@example.com")).await);
    let fetched = idp.key_sets_served();
    assert!(fetched >= 1);
    idp.rotate_keys();
    signed_in(&sign_in(&app, &idp, Person::new("ada@example.com")).await);
    assert_eq!(
        idp.key_sets_served(),
        fetched + 1,
        "a token signed with an unknown key makes the app read the keys again, once"
    );
    idp.stop().await;
}

#[actix_web::test]
async fn state_must_be_one_this_browser_started_and_is_used_once() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |_| {}).await;
    idp.signs_in_next(Person::new("ada@example.com"));
    let started = start_sign_in(&app, "/settings").await;
    let back = provider_login(&started).await;
    let forged = with_state(&back, "forged-state");
    assert_ne!(forged, back);
    let reply = callback(&forged, Some(&started.sso_cookie)).await;
    refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "expired or was started in another browser",
    );

    // The right state from a browser that did not start the sign-in.
    let reply = callback(&back, Some("another-browser")).await;
    refused(&reply, StatusCode::BAD_REQUEST, "another browser");

    // Spent by that attempt: not even the right browser can use it now.
    let reply = callback(&back, Some(&started.sso_cookie)).await;
    refused(&reply, StatusCode::BAD_REQUEST, "another browser");
    idp.stop().await;
}

#[actix_web::test]
async fn an_error_from_the_provider_is_shown_on_the_login_page() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |_| {}).await;
    let started = start_sign_in(&app, "/settings").await;
    let state = openidconnect::url::Url::parse(&started.authorize_url)
        .expect("a URL")
        .query_pairs()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.into_owned())
        .expect("a state");
    let reply = callback(
        &app.url(&format!(
            "/login/oidc/callback?error=access_denied&error_description=User+cancelled&state={state}"
        )),
        Some(&started.sso_cookie),
    )
    .await;
    refused(&reply, StatusCode::UNAUTHORIZED, "cancelled or refused");

    // Not the provider's words for a sign-in this browser did not start.
    let reply = callback(
        &app.url(
            "/login/oidc/callback?error=server_error&error_description=Call+0800+to+unlock&state=made-up",
        ),
        None,
    )
    .await;
    refused(&reply, StatusCode::BAD_REQUEST, "another browser");
    assert!(!reply.body.contains("0800"), "{}", reply.body);
    idp.stop().await;
}

#[actix_web::test]
async fn tokens_that_do_not_verify_are_refused() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |_| {}).await;
    let cases = [
        (
            Person {
                signed_by_other_key: true,
                ..Person::new("mallory@example.com")
            },
            "Signature verification failed",
        ),
        (
            Person {
                nonce: Some("a-replayed-nonce".to_owned()),
                ..Person::new("mallory@example.com")
            },
            "nonce",
        ),
        (
            Person {
                audience: Some("some-other-client".to_owned()),
                ..Person::new("mallory@example.com")
            },
            "audience",
        ),
    ];
    for (person, says) in cases {
        let reply = sign_in(&app, &idp, person).await;
        refused(&reply, StatusCode::UNAUTHORIZED, says);
        assert!(
            reply.body.contains("could not be verified"),
            "{}",
            reply.body
        );
    }
    assert!(idp.refusals().is_empty(), "the code exchange itself worked");
    assert_eq!(accounts_named(&app, "mallory@example.com").await, 0);
    idp.stop().await;
}

#[actix_web::test]
async fn the_policy_wants_a_verified_email_in_an_allowed_domain() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |oidc| {
        oidc.allowed_domains = "example.com, corp.example".to_owned();
    })
    .await;
    let reply = sign_in(&app, &idp, Person::new("eve@elsewhere.example")).await;
    refused(
        &reply,
        StatusCode::FORBIDDEN,
        "eve@elsewhere.example may not sign in here: only addresses at example.com, corp.example may.",
    );
    let unverified = Person {
        email_verified: Some(false),
        ..Person::new("bob@example.com")
    };
    let reply = sign_in(&app, &idp, unverified).await;
    refused(
        &reply,
        StatusCode::FORBIDDEN,
        "bob@example.com is not verified",
    );
    assert_eq!(accounts_named(&app, "eve@elsewhere.example").await, 0);
    assert_eq!(accounts_named(&app, "bob@example.com").await, 0);

    // An allowed domain, the email only behind the user-info endpoint.
    let reply = sign_in(
        &app,
        &idp,
        Person {
            email_in_user_info_only: true,
            ..Person::new("carol@corp.example")
        },
    )
    .await;
    signed_in(&reply);
    assert_eq!(accounts_named(&app, "carol@corp.example").await, 1);
    idp.stop().await;
}

#[actix_web::test]
async fn without_auto_create_only_existing_accounts_sign_in() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |oidc| oidc.auto_create = false).await;
    let reply = sign_in(&app, &idp, Person::new("newcomer@example.com")).await;
    refused(
        &reply,
        StatusCode::FORBIDDEN,
        "There is no Rubberduck account for newcomer@example.com; ask an admin to create one",
    );
    assert_eq!(accounts_named(&app, "newcomer@example.com").await, 0);
    let reply = sign_in(&app, &idp, Person::new(ADMIN_EMAIL)).await;
    signed_in(&reply);
    idp.stop().await;
}

#[actix_web::test]
async fn an_unreachable_provider_neither_stops_the_app_nor_breaks_the_login_page() {
    // A port nothing listens on: bound, then closed.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("binds")
        .local_addr()
        .expect("addr");
    let app = TestApp::start_configured(port_block(), move |args| {
        args.oidc.issuer = Some(format!("http://{closed}/realms/gone"));
        args.oidc.client_id = Some(CLIENT_ID.to_owned());
        args.oidc.name = "Test IdP".to_owned();
    })
    .await;
    let reply = get(&app.url("/login/oidc?next=/settings"), None).await;
    refused(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "the identity provider could not be reached",
    );
    assert!(
        !reply.body.contains(&closed.to_string()),
        "network details stay in the log: {}",
        reply.body
    );
    let login = get(&app.url("/login"), None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.body.contains("could not be reached last time"),
        "{}",
        login.body
    );
    // The rest of the app works as before.
    let (status, _) = app.get("/api/proxies").await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_web::test]
async fn a_plain_http_issuer_on_another_machine_is_refused_with_a_reason() {
    let app = TestApp::start_configured(port_block(), |args| {
        args.oidc.issuer = Some("http://idp.corp.example/realms/dev".to_owned());
        args.oidc.client_id = Some(CLIENT_ID.to_owned());
        args.oidc.name = "Test IdP".to_owned();
    })
    .await;
    let login = get(&app.url("/login"), None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.body.contains("disabled>Sign in with Test IdP"),
        "{}",
        login.body
    );
    assert!(
        login.body.contains("must be an https URL"),
        "{}",
        login.body
    );
    let reply = get(&app.url("/login/oidc"), None).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
}

#[actix_web::test]
async fn a_disabled_account_cannot_sign_in_through_the_provider_either() {
    let idp = MockProvider::start().await;
    let app = app_with_sso(&idp, |_| {}).await;
    let session = signed_in(&sign_in(&app, &idp, Person::new("ada@example.com")).await);
    let (_, users) = app.get("/api/users").await;
    let id = users
        .as_array()
        .and_then(|users| users.iter().find(|u| u["email"] == "ada@example.com"))
        .and_then(|u| u["id"].as_i64())
        .unwrap_or_else(|| panic!("{users}"));

    let (status, reply) = app.post_empty(&format!("/api/users/{id}/disable")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        settings(&app, &session).await.status,
        StatusCode::SEE_OTHER,
        "her session ended"
    );
    let reply = sign_in(&app, &idp, Person::new("ada@example.com")).await;
    refused(&reply, StatusCode::FORBIDDEN, "This account is disabled");
    assert_eq!(
        accounts_named(&app, "ada@example.com").await,
        1,
        "no second account was made for her"
    );

    let (status, reply) = app.post_empty(&format!("/api/users/{id}/enable")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    signed_in(&sign_in(&app, &idp, Person::new("ada@example.com")).await);
    idp.stop().await;
}
