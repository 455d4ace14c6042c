//! Errors mapped to responses at the edge: JSON for the API, an HTML page for the pages.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::auth::AuthError;
use crate::db::DbError;
use crate::registry::RegistryError;
use crate::validation::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", .0.message)]
    Invalid(FieldError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(field) => ApiError::Invalid(field),
            AuthError::Forbidden | AuthError::NoAccount(_) | AuthError::Disabled => {
                ApiError::Forbidden(e.to_string())
            }
            AuthError::NotFound(_) => ApiError::NotFound(e.to_string()),
            AuthError::Database(db) => db.into(),
            AuthError::Hashing(_) | AuthError::WeakBootstrap { .. } => {
                ApiError::Internal(e.to_string())
            }
            AuthError::WrongCredentials | AuthError::Throttled(_) => {
                ApiError::BadRequest(e.to_string())
            }
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(_) | RegistryError::EntryNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            RegistryError::Invalid(mut errors) if !errors.is_empty() => {
                ApiError::Invalid(errors.swap_remove(0))
            }
            RegistryError::Invalid(_) => ApiError::BadRequest("invalid input".into()),
            RegistryError::Running(_) => ApiError::Conflict(e.to_string()),
            RegistryError::Database(db) => db.into(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        log::error!("database: {e}");
        ApiError::Internal(format!("database error: {e}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let field = match self {
            ApiError::Invalid(e) => Some(e.field.as_ref()),
            _ => None,
        };
        HttpResponse::build(self.status_code()).json(serde_json::json!({
            "error": {"message": self.to_string(), "field": field}
        }))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

impl From<RegistryError> for PageError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(_) | RegistryError::EntryNotFound(_) => {
                PageError::NotFound(e.to_string())
            }
            RegistryError::Invalid(_) | RegistryError::Running(_) => {
                PageError::BadRequest(e.to_string())
            }
            RegistryError::Database(db) => db.into(),
        }
    }
}

impl From<AuthError> for PageError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden | AuthError::NoAccount(_) | AuthError::Disabled => {
                PageError::Forbidden(e.to_string())
            }
            AuthError::NotFound(_) => PageError::NotFound(e.to_string()),
            AuthError::Database(db) => db.into(),
            AuthError::Hashing(_) | AuthError::WeakBootstrap { .. } => {
                PageError::Internal(e.to_string())
            }
            AuthError::WrongCredentials | AuthError::Throttled(_) | AuthError::Invalid(_) => {
                PageError::BadRequest(e.to_string())
            }
        }
    }
}

impl From<DbError> for PageError {
    fn from(e: DbError) -> Self {
        log::error!("database: {e}");
        PageError::Internal(format!("database error: {e}"))
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        log::error!("template: {e}");
        PageError::Internal(format!("cannot render the page: {e}"))
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let page = ErrorPage {
            status: self.status_code().as_u16(),
            message: self.to_string(),
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("<h1>{}</h1>", self.status_code()));
        HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .body(body)
    }
}
