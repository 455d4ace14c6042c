//! A problem with one field of what a user submitted, shared by every form and API that
//! validates input.

use std::borrow::Cow;

use serde::Serialize;

/// One problem with one field, shown inline in forms and as `{"error":{"message","field"}}` in
/// the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: Cow<'static, str>,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field: Cow::Borrowed(field),
            message: message.into(),
        }
    }

    /// For fields whose name is built at run time (`errors.rates.429`).
    pub fn owned(field: String, message: impl Into<String>) -> Self {
        FieldError {
            field: Cow::Owned(field),
            message: message.into(),
        }
    }
}
