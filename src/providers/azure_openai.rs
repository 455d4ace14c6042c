use actix_web::HttpResponse;

use super::{
    Provider, ProviderKind, ProxyErrorKind, SdkHint, Usage, openai_style_error,
    openai_style_injected, openai_usage,
};

/// Azure OpenAI: the upstream is the user's own resource endpoint, so there is no default.
pub struct AzureOpenAi;

impl Provider for AzureOpenAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::AzureOpenai
    }

    fn display_name(&self) -> &'static str {
        "Azure OpenAI"
    }

    fn default_upstream(&self) -> Option<&'static str> {
        None
    }

    fn sdk_hint(&self) -> SdkHint {
        SdkHint {
            setting: "azure_endpoint",
            path: "",
        }
    }

    fn cache_query_params(&self) -> &'static [&'static str] {
        &["api-version"]
    }

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        openai_usage(json)
    }

    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        openai_style_injected(status, retry_after_seconds)
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        openai_style_error(kind, message)
    }
}
