use actix_web::HttpResponse;
use actix_web::http::header::HeaderMap;

use super::openai_style_chat_body;
use super::{
    ChatCall, Provider, ProviderError, ProviderKind, ProviderState, ProxyErrorKind,
    RateLimitCounters, SdkHint, UpstreamTarget, Usage, injected_message, json_error,
    openai_style_body, openai_style_cache_path, openai_style_proxy_error, openai_style_url,
    openai_usage,
};
use crate::emulator;

/// DeepSeek speaks the OpenAI API, errors included.
pub struct DeepSeek;

/// DeepSeek's models, as its model list names them.
const CATALOGUE: emulator::Catalogue = emulator::Catalogue {
    models: &["deepseek-chat", "deepseek-reasoner"],
    owned_by: "deepseek",
};

/// What a user pastes to call a proxy of this provider. DeepSeek is called through the `openai`
/// SDKs, which read `OPENAI_API_KEY` by default, so the key is passed from `DEEPSEEK_API_KEY`.
const PYTHON_SNIPPET: &str = r#"import os

from openai import OpenAI

client = OpenAI(base_url="{base_url}/v1", api_key=os.environ["DEEPSEEK_API_KEY"])
response = client.chat.completions.create(
    model="deepseek-chat",
    messages=[{"role": "user", "content": "Say hello"}],
)
print(response.choices[0].message.content)"#;

const TYPESCRIPT_SNIPPET: &str = r#"import OpenAI from "openai";

const client = new OpenAI({ baseURL: "{base_url}/v1", apiKey: process.env.DEEPSEEK_API_KEY });
const response = await client.chat.completions.create({
  model: "deepseek-chat",
  messages: [{ role: "user", content: "Say hello" }],
});
console.log(response.choices[0].message.content);"#;

const CURL_SNIPPET: &str = r#"curl "{base_url}/v1/chat/completions" \
  -H "Authorization: Bearer $DEEPSEEK_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "deepseek-chat", "messages": [{"role": "user", "content": "Say hello"}]}'"#;

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

    fn snippets(&self, base_url: &str) -> super::Snippets {
        super::Snippets::fill(PYTHON_SNIPPET, TYPESCRIPT_SNIPPET, CURL_SNIPPET, base_url)
    }

    fn upstream_url(
        &self,
        target: &UpstreamTarget<'_>,
        _state: &ProviderState,
        path: &str,
        query: Option<&str>,
        _headers: &HeaderMap,
    ) -> Result<String, ProviderError> {
        let base = target.base_or(self.default_upstream())?;
        Ok(openai_style_url(base, path, query))
    }

    fn emulate(&self, request: &emulator::Request<'_>) -> emulator::Reply {
        emulator::openai(request, &CATALOGUE)
    }

    fn sample_model(&self) -> &'static str {
        "deepseek-chat"
    }

    fn chat_path(&self, _call: &ChatCall<'_>) -> String {
        "/chat/completions".to_owned()
    }

    fn chat_body(&self, call: &ChatCall<'_>, prompt: &str) -> serde_json::Value {
        openai_style_chat_body(Some(call.model), call.stream, prompt)
    }

    fn cache_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        openai_style_cache_path(path)
    }

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        openai_usage(json)
    }

    /// DeepSeek's "Error Codes" page lists 400 Invalid Format, 401 Authentication Fails, 402
    /// Insufficient Balance, 422 Invalid Parameters, 429 Rate Limit Reached, 500 Server Error and
    /// 503 Server Overloaded. Its bodies are OpenAI-shaped with `error.code` set to
    /// `invalid_request_error` for client errors; the openai SDK picks its exception by status:
    ///
    /// | status | `error.type` | `error.code` |
    /// |---|---|---|
    /// | 400 (also 403, 404, 408, not on DeepSeek's list) | `invalid_request_error` | `invalid_request_error` |
    /// | 401 | `authentication_error` | `invalid_request_error` |
    /// | 429 | `requests` | `rate_limit_exceeded` (the page gives no body: OpenAI's) |
    /// | 500, 502, 503, 504, 529 | `server_error` | null |
    ///
    /// `Retry-After` comes with 429, 503 and 529, and a 429 carries OpenAI's
    /// `x-ratelimit-*-requests` counters, which OpenAI-compatible clients read.
    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        let (error_type, code) = match status.as_u16() {
            401 => ("authentication_error", Some("invalid_request_error")),
            429 => ("requests", Some("rate_limit_exceeded")),
            400..=499 => ("invalid_request_error", Some("invalid_request_error")),
            _ => ("server_error", None),
        };
        json_error(
            status,
            Some(retry_after_seconds),
            RateLimitCounters::OpenAi,
            &[],
            &openai_style_body(&injected_message(status), error_type, code),
        )
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let (error_type, code) = openai_style_proxy_error(kind);
        json_error(
            kind.status(),
            None,
            RateLimitCounters::None,
            &[],
            &openai_style_body(message, error_type, Some(code)),
        )
    }
}
