//! Signing in and out, and self-registration when an admin allows it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::AppState;
use super::guard::{SESSION_COOKIE, client_address, expired_session_cookie, session_cookie};
use super::pages::{PageResult, html, see_other};
use crate::auth::AuthError;

#[derive(Template)]
#[template(path = "account/login.html")]
pub struct LoginPage {
    pub email: String,
    pub next: String,
    pub error: Option<String>,
    pub registration_open: bool,
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
/// user elsewhere.
fn safe_next(next: &str) -> String {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
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
    let page = LoginPage {
        email: String::new(),
        next: safe_next(&query.next),
        error: None,
        registration_open: state.settings.get().self_registration,
    };
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
        Err(error @ (AuthError::WrongCredentials | AuthError::Throttled(_))) => {
            let status = match error {
                AuthError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            log::warn!("failed sign-in for {} from {address}", form.email.trim());
            let page = LoginPage {
                email: form.email,
                next: safe_next(&form.next),
                error: Some(error.to_string()),
                registration_open: state.settings.get().self_registration,
            };
            html(&req, status, &page)
        }
        Err(other) => Err(other.into()),
    }
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
    }
}
