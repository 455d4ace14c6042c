//! A problem with one field of what a user submitted, shared by every form and API that
//! validates input.

use std::borrow::Cow;
use std::ops::RangeInclusive;

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

pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("“{text}” is not a port range such as 8001-9999"))?;
    let parse = |port: &str| {
        port.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("“{port}” is not a port number"))
    };
    let (first, last) = (parse(first)?, parse(last)?);
    if first > last {
        return Err(format!("the range {first}-{last} is empty"));
    }
    Ok(first..=last)
}
