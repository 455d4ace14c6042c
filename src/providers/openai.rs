use actix_web::HttpResponse;

use super::{Provider, ProviderKind, ProxyErrorKind, SdkHint, openai_style_error};

pub struct OpenAi;

impl Provider for OpenAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Openai
    }

    fn display_name(&self) -> &'static str {
        "OpenAI"
    }

    fn default_upstream(&self) -> Option<&'static str> {
        Some("https://api.openai.com/v1")
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
