//! What every HTML page shares: rendering with the caller's values, HTMX or whole-page answers,
//! redirects, and form errors. Each fragment URL answers HTMX with the fragment and a plain
//! browser with the whole page; each form also works as a plain POST followed by a redirect.

use std::borrow::Cow;
use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;

use super::error::PageError;
use crate::auth::{Access, Caller};
use crate::validation::FieldError;

pub(super) type PageResult = Result<HttpResponse, PageError>;

pub fn form_config() -> web::FormConfig {
    web::FormConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req| PageError::BadRequest(format!("invalid form: {err}")).into())
}

/// An HTMX request wants a fragment; anything else (a reload, a plain form) the whole page.
pub(super) fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("HX-Request") && !req.headers().contains_key("HX-Boosted")
}

pub(super) fn html(req: &HttpRequest, status: StatusCode, template: &impl Template) -> PageResult {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(render(req, template)?))
}

/// Renders with the caller at hand: the layout shows who is signed in, and forms and HTMX
/// requests carry the session's CSRF token.
pub(super) fn render(req: &HttpRequest, template: &impl Template) -> Result<String, askama::Error> {
    let values = req.extensions().get::<Caller>().map(PageValues::of);
    render_for(values.as_ref(), template)
}

pub(super) fn render_for(
    values: Option<&PageValues>,
    template: &impl Template,
) -> Result<String, askama::Error> {
    match values {
        Some(values) => template.render_with_values(values),
        None => template.render(),
    }
}

/// What every page may show of the caller (`askama::get_value` in templates).
#[derive(Debug, Clone)]
pub(super) struct PageValues {
    csrf_token: String,
    email: String,
    is_admin: bool,
}

impl PageValues {
    pub(super) fn of(caller: &Caller) -> Self {
        PageValues {
            csrf_token: caller.csrf_token().unwrap_or_default().to_owned(),
            email: caller.user.email.clone(),
            is_admin: caller.is_admin(),
        }
    }
}

impl askama::Values for PageValues {
    fn get_value<'a>(&'a self, key: &str) -> Option<&'a dyn std::any::Any> {
        match key {
            "csrf_token" if !self.csrf_token.is_empty() => Some(&self.csrf_token),
            "email" => Some(&self.email),
            "is_admin" => Some(&self.is_admin),
            _ => None,
        }
    }
}

/// What the signed-in caller may see. The guard put the caller there before any page handler
/// runs.
pub(super) fn access(req: &HttpRequest) -> Result<Access, PageError> {
    req.extensions()
        .get::<Caller>()
        .map(Caller::access)
        .ok_or_else(|| PageError::BadRequest("sign in first".into()))
}

pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .finish()
}

pub async fn close_modal() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body("")
}

pub async fn not_found(req: HttpRequest) -> PageResult {
    Err(PageError::NotFound(format!(
        "There is no page at {}.",
        req.path()
    )))
}

#[derive(Debug, Default)]
pub struct FormErrors(BTreeMap<Cow<'static, str>, String>);

impl FormErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// The errors whose field starts with `prefix` (a script row's: `script[2].`).
    pub fn starting_with(&self, prefix: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(field, _)| field.starts_with(prefix))
            .map(|(_, message)| message.as_str())
            .collect()
    }

    /// Errors about fields the form does not show (a failed save, say).
    pub fn general(&self) -> Vec<&str> {
        self.general_except(&[])
    }

    /// Like `general`, for a form that also shows the fields in `shown`.
    pub fn general_except(&self, shown: &[&str]) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(field, _)| {
                !FORM_FIELDS.contains(&field.as_ref()) && !shown.contains(&field.as_ref())
            })
            .map(|(_, message)| message.as_str())
            .collect()
    }
}

const FORM_FIELDS: [&str; 8] = [
    "name",
    "provider",
    "port",
    "description",
    "tags",
    "upstream_url",
    "emulator.ttft_ms",
    "emulator.tokens_per_second",
];

impl From<Vec<FieldError>> for FormErrors {
    fn from(errors: Vec<FieldError>) -> Self {
        let mut map = BTreeMap::new();
        for error in errors {
            map.entry(error.field).or_insert(error.message);
        }
        FormErrors(map)
    }
}
