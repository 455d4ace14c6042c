use actix_web::HttpResponse;
use actix_web::http::header::HeaderMap;

use super::{
    Provider, ProviderKind, ProviderState, ProxyErrorKind, SdkHint, Usage, openai_style_cache_path,
    openai_style_error, openai_style_injected, openai_style_url, openai_usage,
};
use crate::gateway::GatewayError;
use crate::registry::spec::ProxySpec;

pub struct OpenAi;

/// What a user pastes to call a proxy of this provider. The SDKs read `OPENAI_API_KEY`.
const PYTHON_SNIPPET: &str = r#"from openai import OpenAI

client = OpenAI(base_url="{base_url}/v1")
response = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
)
print(response.choices[0].message.content)"#;

const TYPESCRIPT_SNIPPET: &str = r#"import OpenAI from "openai";

const client = new OpenAI({ baseURL: "{base_url}/v1" });
const response = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello" }],
});
console.log(response.choices[0].message.content);"#;

const CURL_SNIPPET: &str = r#"curl "{base_url}/v1/chat/completions" \
  -H "Authorization: Bearer $OPENAI_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}'"#;

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

    fn snippets(&self, base_url: &str) -> super::Snippets {
        super::Snippets::fill(PYTHON_SNIPPET, TYPESCRIPT_SNIPPET, CURL_SNIPPET, base_url)
    }

    fn upstream_url(
        &self,
        spec: &ProxySpec,
        _state: &ProviderState,
        path: &str,
        query: Option<&str>,
        _headers: &HeaderMap,
    ) -> Result<String, GatewayError> {
        openai_style_url(spec, path, query)
    }

    fn cache_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        openai_style_cache_path(path)
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
