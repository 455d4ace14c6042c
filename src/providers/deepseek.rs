use actix_web::HttpResponse;

use super::{Provider, ProviderKind, ProxyErrorKind, SdkHint, openai_style_error};

/// DeepSeek speaks the OpenAI API, errors included.
pub struct DeepSeek;

impl Provider for DeepSeek {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Deepseek
    }

    fn display_name(&self) -> &'static str {
        "DeepSeek"
    }

    fn default_upstream(&self) -> Option<&'static str> {
        Some("https://api.deepseek.com")
    }

    fn sdk_hint(&self) -> SdkHint {
        SdkHint {
            setting: "base_url",
            path: "/v1",
        }
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        openai_style_error(kind, message)
    }
}
