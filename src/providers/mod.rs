//! Everything provider-specific sits behind [`Provider`]; the rest of the product never matches
//! on provider names.

mod anthropic;
mod azure_openai;
mod bedrock;
mod deepseek;
mod openai;
mod vertex_ai;

use std::fmt;
use std::str::FromStr;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};

/// The providers a proxy can front. The serialized form is the id used in the API and the DB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    AzureOpenai,
    Bedrock,
    VertexAi,
    Deepseek,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::Openai,
        ProviderKind::Anthropic,
        ProviderKind::AzureOpenai,
        ProviderKind::Bedrock,
        ProviderKind::VertexAi,
        ProviderKind::Deepseek,
    ];

    pub fn id(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::AzureOpenai => "azure_openai",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::VertexAi => "vertex_ai",
            ProviderKind::Deepseek => "deepseek",
        }
    }

    pub fn provider(self) -> &'static dyn Provider {
        match self {
            ProviderKind::Openai => &openai::OpenAi,
            ProviderKind::Anthropic => &anthropic::Anthropic,
            ProviderKind::AzureOpenai => &azure_openai::AzureOpenAi,
            ProviderKind::Bedrock => &bedrock::Bedrock,
            ProviderKind::VertexAi => &vertex_ai::VertexAi,
            ProviderKind::Deepseek => &deepseek::DeepSeek,
        }
    }

    pub fn name(self) -> &'static str {
        self.provider().display_name()
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown provider “{0}”; expected one of openai, anthropic, azure_openai, bedrock, vertex_ai, deepseek"
)]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.id() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

/// Why the proxy itself (not the upstream) answers with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyErrorKind {
    NotImplemented,
    BadGateway,
    GatewayTimeout,
    PayloadTooLarge,
    ServiceUnavailable,
}

impl ProxyErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ProxyErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ProxyErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyErrorKind::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// How an SDK user points their client at a proxy.
pub struct SdkHint {
    /// The client setting that takes the proxy URL (`base_url`, `endpoint_url`, …).
    pub setting: &'static str,
    /// Path appended to the proxy's address, e.g. `/v1` for OpenAI-style SDKs.
    pub path: &'static str,
}

pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    fn display_name(&self) -> &'static str;

    /// The upstream base URL used when the proxy has no override; `None` when it depends on the
    /// user's own resource (Azure).
    fn default_upstream(&self) -> Option<&'static str>;

    fn sdk_hint(&self) -> SdkHint;

    /// An error the proxy itself produces, in this provider's real error shape so that the
    /// provider's SDK raises its own typed exception.
    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse;
}

/// The OpenAI error shape, shared by every OpenAI-compatible provider.
pub(crate) fn openai_style_error(kind: ProxyErrorKind, message: &str) -> HttpResponse {
    let (error_type, code) = match kind {
        ProxyErrorKind::NotImplemented => ("invalid_request_error", "not_implemented"),
        ProxyErrorKind::BadGateway => ("server_error", "bad_gateway"),
        ProxyErrorKind::GatewayTimeout => ("server_error", "timeout"),
        ProxyErrorKind::PayloadTooLarge => ("invalid_request_error", "request_too_large"),
        ProxyErrorKind::ServiceUnavailable => ("server_error", "service_unavailable"),
    };
    HttpResponse::build(kind.status()).json(serde_json::json!({
        "error": {"message": message, "type": error_type, "param": null, "code": code}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.id().parse::<ProviderKind>().ok(), Some(kind));
            assert_eq!(kind.provider().kind(), kind);
        }
        assert!("openai ".parse::<ProviderKind>().is_err());
    }
}
