use actix_web::HttpResponse;

use super::{Provider, ProviderKind, ProxyErrorKind, SdkHint};

pub struct VertexAi;

impl Provider for VertexAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::VertexAi
    }

    fn display_name(&self) -> &'static str {
        "Google Vertex AI"
    }

    /// The host carries the location named in each request's path; the gateway fills it in.
    fn default_upstream(&self) -> Option<&'static str> {
        Some("https://{location}-aiplatform.googleapis.com")
    }

    fn sdk_hint(&self) -> SdkHint {
        SdkHint {
            setting: "base_url",
            path: "",
        }
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let status_name = match kind {
            ProxyErrorKind::NotImplemented => "UNIMPLEMENTED",
            ProxyErrorKind::BadGateway => "UNAVAILABLE",
            ProxyErrorKind::GatewayTimeout => "DEADLINE_EXCEEDED",
            ProxyErrorKind::PayloadTooLarge => "INVALID_ARGUMENT",
            ProxyErrorKind::ServiceUnavailable => "UNAVAILABLE",
        };
        HttpResponse::build(kind.status()).json(serde_json::json!({
            "error": {"code": kind.status().as_u16(), "message": message, "status": status_name}
        }))
    }
}
