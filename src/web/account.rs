//! Signing in and out (with a password or through single sign-on), and self-registration
//! when an admin allows it.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::AppState;
use super::guard::{
    SESSION_COOKIE, client_address, expired_session_cookie, is_https, session_cookie,
};
use super::pages::{PageResult, html, not_found, see_other};
use crate::auth::AuthError;
use crate::auth::oidc::{Callback, OidcError};

/// Ties a single sign-on to the browser that started it, for the minutes it takes.
const SSO_COOKIE: &str = "rubberduck_oidc";
const SSO_COOKIE_PATH: &str = "/login/oidc";
const SSO_COOKIE_MINUTES: i64 = 10;

#[derive(Template)]
#[template(path = "account/login.html")]
pub struct LoginPage {
    pub email: String,
    pub next: String,
    pub error: Option<String>,
    pub registration_open: bool,
    pub sso: Option<SsoButton>,
}

/// "Sign in with …", when single sign-on is configured.
pub struct SsoButton {
    pub label: String,
    pub href: String,
    /// A configuration mistake: the button is shown disabled, with this reason.
    pub broken: Option<String>,
    /// The provider could not be reached last time; the button still tries again.
    pub unreachable: bool,
}

impl LoginPage {
    fn new(state: &AppState, email: String, next: String, error: Option<String>) -> LoginPage {
        let sso = state.oidc.as_deref().map(|oidc| {
            let button = oidc.button();
            SsoButton {
                label: button.label,
                href: format!(
                    "/login/oidc?next={}",
                    percent_encoding::utf8_percent_encode(
                        &next,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ),
                broken: button.broken,
                unreachable: button.unreachable,
            }
        });
        LoginPage {
            email,
            next,
            error,
            registration_open: state.settings.get().self_registration,
            sso,
        }
    }
}

#[derive(Template)]
#[template(path = "account/register.html")]
pub struct RegisterPage {
    pub email: String,
    pub errors: Vec<(String, String)>,
}

impl RegisterPage {
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, message)| message.as_str())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Only a path on this server: `next=https://evil.example` must not send a freshly signed-in
/// user elsewhere. Browsers drop tabs and line breaks from a URL (`/\t/evil.example` becomes
/// `//evil.example`) and treat `\` as `/`, so a path with any control character or backslash is
/// refused too (which also keeps it a valid `Location` header); anything else is `/`.
fn safe_next(next: &str) -> String {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if local {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

pub async fn login_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NextQuery>,
) -> PageResult {
    let page = LoginPage::new(&state, String::new(), safe_next(&query.next), None);
    html(&req, StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> PageResult {
    let form = form.into_inner();
    let address = client_address(&req, &state).to_string();
    match state
        .accounts
        .login(&form.email, &form.password, &address)
        .await
    {
        Ok(session) => {
            log::info!("{} signed in from {address}", session.user.email);
            Ok(HttpResponse::SeeOther()
                .cookie(session_cookie(&req, &state, session.cookie_secret))
                .insert_header(("Location", safe_next(&form.next)))
                .finish())
        }
        Err(
            error @ (AuthError::WrongCredentials | AuthError::Throttled(_) | AuthError::Disabled),
        ) => {
            let status = match error {
                AuthError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                AuthError::Disabled => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            log::warn!("failed sign-in for {} from {address}", form.email.trim());
            let next = safe_next(&form.next);
            let page = LoginPage::new(&state, form.email, next, Some(error.to_string()));
            html(&req, status, &page)
        }
        Err(other) => Err(other.into()),
    }
}

/// `GET /login/oidc`: off to the identity provider, with this browser marked by a cookie.
pub async fn oidc_start(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NextQuery>,
) -> PageResult {
    let Some(oidc) = state.oidc.as_deref() else {
        return not_found(req).await;
    };
    let next = safe_next(&query.next);
    match oidc.begin(next.clone()).await {
        Ok(authorization) => Ok(HttpResponse::SeeOther()
            .cookie(sso_cookie(&req, &state, authorization.browser_key))
            .insert_header((header::LOCATION, authorization.url))
            .finish()),
        Err(error) => sso_refused(&req, &state, next, sso_status(&error), error.to_string()),
    }
}

/// `GET /login/oidc/callback`: the provider sends the browser back here with a code.
pub async fn oidc_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Callback>,
) -> PageResult {
    let Some(oidc) = state.oidc.as_deref() else {
        return not_found(req).await;
    };
    let browser_key = req.cookie(SSO_COOKIE).map(|c| c.value().to_owned());
    let identity = match oidc
        .finish(query.into_inner(), browser_key.as_deref())
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            let status = sso_status(&error);
            return sso_refused(&req, &state, "/".to_owned(), status, error.to_string());
        }
    };
    match state
        .accounts
        .sign_in_vouched(&identity.email, oidc.auto_create())
        .await
    {
        Ok(session) => {
            log::info!(
                "{} signed in through single sign-on from {}",
                session.user.email,
                client_address(&req, &state)
            );
            let mut response = HttpResponse::SeeOther()
                .cookie(session_cookie(&req, &state, session.cookie_secret))
                .insert_header((header::LOCATION, safe_next(&identity.next)))
                .finish();
            response
                .add_removal_cookie(&sso_cookie(&req, &state, String::new()))
                .map_err(|e| super::PageError::Internal(e.to_string()))?;
            Ok(response)
        }
        Err(error @ (AuthError::NoAccount(_) | AuthError::Disabled)) => sso_refused(
            &req,
            &state,
            identity.next,
            StatusCode::FORBIDDEN,
            error.to_string(),
        ),
        Err(other) => Err(other.into()),
    }
}

fn sso_status(error: &OidcError) -> StatusCode {
    match error {
        OidcError::Misconfigured(_) | OidcError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OidcError::StaleAttempt => StatusCode::BAD_REQUEST,
        OidcError::Denied { .. } | OidcError::Unverifiable(_) => StatusCode::UNAUTHORIZED,
        OidcError::NoEmail | OidcError::UnverifiedEmail(_) | OidcError::DomainNotAllowed { .. } => {
            StatusCode::FORBIDDEN
        }
    }
}

/// A single sign-on that did not work: the login page says why.
fn sso_refused(
    req: &HttpRequest,
    state: &AppState,
    next: String,
    status: StatusCode,
    message: String,
) -> PageResult {
    log::warn!(
        "single sign-on refused for {}: {message}",
        client_address(req, state)
    );
    let page = LoginPage::new(state, String::new(), safe_next(&next), Some(message));
    html(req, status, &page)
}

fn sso_cookie(req: &HttpRequest, state: &AppState, browser_key: String) -> Cookie<'static> {
    Cookie::build(SSO_COOKIE, browser_key)
        .path(SSO_COOKIE_PATH)
        .http_only(true)
        // Lax still rides along on the provider's redirect back, a top-level GET.
        .same_site(SameSite::Lax)
        .secure(is_https(req, state))
        .max_age(actix_web::cookie::time::Duration::minutes(
            SSO_COOKIE_MINUTES,
        ))
        .finish()
}

pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> PageResult {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        state.accounts.logout(cookie.value()).await?;
    }
    let mut response = see_other("/login");
    response
        .add_removal_cookie(&expired_session_cookie(&req, &state))
        .map_err(|e| super::PageError::Internal(e.to_string()))?;
    Ok(response)
}

pub async fn register_page(req: HttpRequest, state: web::Data<AppState>) -> PageResult {
    if !state.settings.get().self_registration {
        return Ok(see_other("/login"));
    }
    let page = RegisterPage {
        email: String::new(),
        errors: Vec::new(),
    };
    html(&req, StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
}

pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RegisterForm>,
) -> PageResult {
    let form = form.into_inner();
    match state
        .accounts
        .register(&form.email, &form.password, &form.confirm_password)
        .await
    {
        Ok(session) => {
            log::info!("{} registered", session.user.email);
            Ok(HttpResponse::SeeOther()
                .cookie(session_cookie(&req, &state, session.cookie_secret))
                .insert_header(("Location", "/"))
                .finish())
        }
        Err(AuthError::Forbidden) => Ok(see_other("/login")),
        Err(AuthError::Invalid(error)) => {
            let page = RegisterPage {
                email: form.email,
                errors: vec![(error.field.into_owned(), error.message)],
            };
            html(&req, StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next("/logs?status=4xx"), "/logs?status=4xx");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next(""), "/");
        for sneaky in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\0",
            "/logs\u{7f}",
            "/\u{85}/evil.example",
            "evil.example",
        ] {
            assert_eq!(safe_next(sneaky), "/", "{sneaky:?}");
        }
        assert_eq!(safe_next("/logs?q=a%09b"), "/logs?q=a%09b");
    }
}
