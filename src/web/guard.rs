//! The door of the admin server: every request but the login page, `/healthz` and static files
//! needs a signed-in caller (a session cookie or an API token), and every state-changing
//! browser request must come from our own pages (same-origin, with the session's CSRF token).

use std::future::{Ready, ready};
use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::BoxBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::AppState;
use super::fixtures_api::MAX_UPLOAD_BYTES;
use crate::auth::{Caller, Presented};
use crate::forwarded;

pub const SESSION_COOKIE: &str = "rubberduck_session";
pub const CSRF_HEADER: &str = "X-CSRF-Token";
pub const CSRF_FIELD: &str = "csrf_token";
/// A form body larger than this is not read for its CSRF token (forms here are small).
const MAX_FORM_BYTES: usize = 64 * 1024;
/// An upload form (multipart) may be this large: the largest import plus the form around it.
const MAX_UPLOAD_FORM_BYTES: usize = MAX_UPLOAD_BYTES + 64 * 1024;

/// Pages anyone may open.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/login"
            | "/login/oidc"
            | "/login/oidc/callback"
            | "/register"
            | "/favicon.ico"
    ) || path.starts_with("/static/")
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics"
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub async fn authenticate(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.into_response(HttpResponse::InternalServerError().finish()));
    };
    let path = req.path().to_owned();
    if !is_safe(req.method()) && !same_origin(req.request()) {
        return Ok(req.into_response(refuse(
            &path,
            StatusCode::FORBIDDEN,
            "Cross-site request refused: state-changing requests must come from Rubberduck's own pages.",
        )));
    }
    if is_public(&path) {
        return next.call(req).await;
    }

    let caller = match identify(&req, &state).await {
        Ok(caller) => caller,
        Err(response) => return Ok(req.into_response(response)),
    };
    let Some(caller) = caller else {
        let response = sign_in_first(req.request());
        return Ok(req.into_response(response));
    };
    if !is_safe(req.method())
        && let Some(expected) = caller.csrf_token()
    {
        let presented = match presented_csrf_token(&mut req).await {
            Ok(token) => token,
            Err(response) => return Ok(req.into_response(response)),
        };
        if !presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
            return Ok(req.into_response(refuse(
                &path,
                StatusCode::FORBIDDEN,
                "The form's security token is missing or out of date; reload the page and try again.",
            )));
        }
    }
    req.extensions_mut().insert(caller);
    next.call(req).await
}

/// The token of an `Authorization` header: empty when the header is not `Bearer …` (which the
/// token check then refuses), `None` without the header.
fn bearer_of(headers: &header::HeaderMap) -> Option<&str> {
    let authorization = headers.get(header::AUTHORIZATION)?;
    Some(
        authorization
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default(),
    )
}

/// `Ok(None)` when the request carries no credential at all.
async fn identify(req: &ServiceRequest, state: &AppState) -> Result<Option<Caller>, HttpResponse> {
    let path = req.path();
    if let Some(bearer) = bearer_of(req.headers()) {
        return match state.accounts.token(bearer).await {
            Ok(Some(caller)) => Ok(Some(caller)),
            Ok(None) => Err(refuse(
                path,
                StatusCode::UNAUTHORIZED,
                "The API token is not valid (unknown or revoked). Create one under Settings → API tokens.",
            )),
            Err(e) => Err(refuse(
                path,
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            )),
        };
    }
    let Some(cookie) = req.request().cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    state
        .accounts
        .session(cookie.value())
        .await
        .map_err(|e| refuse(path, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

/// The credential a request carries, as `identify` reads it: an `Authorization` header wins
/// over a session cookie.
pub fn presented(req: &HttpRequest) -> Option<Presented> {
    if let Some(bearer) = bearer_of(req.headers()) {
        return Some(Presented::Bearer(bearer.to_owned()));
    }
    req.cookie(SESSION_COOKIE)
        .map(|cookie| Presented::Session(cookie.value().to_owned()))
}

/// Browsers say where a request comes from: `Sec-Fetch-Site` (all current browsers), else
/// `Origin`. A request with neither comes from a program, not a page, and cannot be forged
/// by another site.
fn same_origin(req: &HttpRequest) -> bool {
    if let Some(site) = req.headers().get("Sec-Fetch-Site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The CSRF token from the `X-CSRF-Token` header (HTMX) or from the `csrf_token` field of a
/// plain form (URL-encoded, or multipart for a file upload), whose body is put back for the
/// handler.
async fn presented_csrf_token(req: &mut ServiceRequest) -> Result<Option<String>, HttpResponse> {
    if let Some(token) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return Ok(Some(token.to_owned()));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("multipart/form-data") {
        return multipart_csrf_token(req).await;
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok(None);
    }
    let (http_req, payload) = req.parts_mut();
    let body = Bytes::from_request(http_req, payload).await.map_err(|e| {
        refuse(
            req.path(),
            StatusCode::BAD_REQUEST,
            &format!("cannot read the form: {e}"),
        )
    })?;
    if body.len() > MAX_FORM_BYTES {
        return Err(refuse(
            req.path(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large.",
        ));
    }
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(name, _)| name == CSRF_FIELD))
        .map(|(_, value)| value);
    req.set_payload(Payload::Stream {
        payload: Box::pin(futures_util::stream::once(async move { Ok(body) })),
    });
    Ok(token)
}

/// A plain upload form's token: the body is read (bounded by the largest upload a page takes)
/// and put back whole. Uploads from the pages' scripts send the header instead and never come
/// here.
async fn multipart_csrf_token(req: &mut ServiceRequest) -> Result<Option<String>, HttpResponse> {
    let path = req.path().to_owned();
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            refuse(
                &path,
                StatusCode::BAD_REQUEST,
                &format!("cannot read the form: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_UPLOAD_FORM_BYTES {
            return Err(refuse(
                &path,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The upload is too large.",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    let parts = body.clone();
    let mut form = actix_multipart::Multipart::new(
        req.headers(),
        futures_util::stream::once(async move { Ok::<_, PayloadError>(parts) }),
    );
    let mut token = None;
    while let Some(Ok(mut field)) = form.next().await {
        if field.name() != Some(CSRF_FIELD) {
            continue;
        }
        let mut value = Vec::new();
        while let Some(Ok(chunk)) = field.next().await {
            value.extend_from_slice(&chunk);
        }
        token = String::from_utf8(value).ok();
        break;
    }
    drop(form);
    req.set_payload(Payload::Stream {
        payload: Box::pin(futures_util::stream::once(async move { Ok(body) })),
    });
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// No credential: the API answers 401; a page sends the browser to the login page and back.
fn sign_in_first(req: &HttpRequest) -> HttpResponse {
    if is_api(req.path()) {
        return refuse(
            req.path(),
            StatusCode::UNAUTHORIZED,
            "Authentication required: send Authorization: Bearer <API token> (create one under Settings → API tokens).",
        );
    }
    let back = match req.method() {
        &Method::GET => req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .filter(|pq| pq != "/"),
        _ => None,
    };
    let login = match back {
        Some(back) => format!(
            "/login?next={}",
            percent_encoding::utf8_percent_encode(&back, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => "/login".to_owned(),
    };
    if req.headers().contains_key("HX-Request") {
        return HttpResponse::Unauthorized()
            .insert_header(("HX-Redirect", login))
            .finish();
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, login))
        .finish()
}

fn refuse(path: &str, status: StatusCode, message: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
    }
    if is_api(path) {
        response.json(serde_json::json!({ "error": { "message": message } }))
    } else {
        response
            .content_type("text/plain; charset=utf-8")
            .body(message.to_owned())
    }
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Caller, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or_else(|| actix_web::error::ErrorUnauthorized("sign in first")),
        )
    }
}

/// The session cookie: HttpOnly, SameSite=Lax, Secure when the browser reached us over HTTPS
/// (through a trusted reverse proxy).
pub fn session_cookie(req: &HttpRequest, state: &AppState, secret: String) -> Cookie<'static> {
    let settings = state.settings.get();
    let max_age = actix_web::cookie::time::Duration::seconds(
        i64::try_from(settings.session_idle().as_secs()).unwrap_or(i64::MAX),
    );
    Cookie::build(SESSION_COOKIE, secret)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(is_https(req, state))
        .max_age(max_age)
        .finish()
}

pub fn expired_session_cookie(req: &HttpRequest, state: &AppState) -> Cookie<'static> {
    let mut cookie = session_cookie(req, state, String::new());
    cookie.make_removal();
    cookie
}

fn peer(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip())
}

pub(super) fn is_https(req: &HttpRequest, state: &AppState) -> bool {
    state.settings.get().trusts(peer(req))
        && req
            .headers()
            .get("X-Forwarded-Proto")
            .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The client's address, looking through trusted reverse proxies.
pub fn client_address(req: &HttpRequest, state: &AppState) -> IpAddr {
    let forwarded_for = forwarded::forwarded_for(req.headers());
    state
        .settings
        .get()
        .client_ip(peer(req), forwarded_for.as_deref())
}

/// Headers every admin response carries: scripts, styles and frames only from ourselves.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
             frame-ancestors 'none'",
        ))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
}
