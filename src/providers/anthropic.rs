use actix_web::HttpResponse;

use super::{Provider, ProviderKind, ProxyErrorKind, SdkHint, Usage, anthropic_usage};

pub struct Anthropic;

impl Provider for Anthropic {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn display_name(&self) -> &'static str {
        "Anthropic"
    }

    fn default_upstream(&self) -> Option<&'static str> {
        Some("https://api.anthropic.com")
    }

    fn sdk_hint(&self) -> SdkHint {
        SdkHint {
            setting: "base_url",
            path: "",
        }
    }

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        anthropic_usage(json)
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let error_type = match kind {
            ProxyErrorKind::BadRequest => "invalid_request_error",
            ProxyErrorKind::Unauthorized => "authentication_error",
            ProxyErrorKind::BadGateway => "api_error",
            ProxyErrorKind::GatewayTimeout => "timeout_error",
            ProxyErrorKind::PayloadTooLarge => "request_too_large",
            ProxyErrorKind::ServiceUnavailable => "overloaded_error",
            ProxyErrorKind::NotCached => "invalid_request_error",
        };
        HttpResponse::build(kind.status()).json(serde_json::json!({
            "type": "error",
            "error": {"type": error_type, "message": message}
        }))
    }
}
