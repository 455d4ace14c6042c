use actix_web::HttpResponse;
use actix_web::http::header::HeaderMap;

use super::openai_style_chat_body;
use super::{
    ChatCall, Provider, ProviderError, ProviderKind, ProviderState, ProxyErrorKind,
    RateLimitCounters, SdkHint, UpstreamTarget, Usage, injected_message, json_error,
    openai_style_body, openai_style_cache_path, openai_style_proxy_error, openai_style_url,
    openai_usage, random_hex,
};
use crate::emulator;

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
        emulator::openai(request, &emulator::Catalogue::OPENAI)
    }

    fn sample_model(&self) -> &'static str {
        "gpt-4o-mini"
    }

    fn chat_path(&self, _call: &ChatCall<'_>) -> String {
        "/v1/chat/completions".to_owned()
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

    /// OpenAI's answer to each injectable status, after OpenAI's "Error codes" guide (401 Invalid
    /// Authentication / Incorrect API key, 403 Country, region, or territory not supported, 429
    /// Rate limit reached for requests, 500 The server had an error, 503 server_is_overloaded)
    /// and the bodies the API really sends. The openai SDK picks its exception by status alone:
    ///
    /// | status | `error.type` | `error.code` | openai exception |
    /// |---|---|---|---|
    /// | 400 | `invalid_request_error` | null | `BadRequestError` |
    /// | 401 | `invalid_request_error` | `invalid_api_key` | `AuthenticationError` |
    /// | 403 | `request_forbidden` | `unsupported_country_region_territory` | `PermissionDeniedError` |
    /// | 404 | `invalid_request_error` | `model_not_found` | `NotFoundError` |
    /// | 408 | `server_error` | `timeout` (not in OpenAI's list) | `APIStatusError`, retried |
    /// | 429 | `requests` | `rate_limit_exceeded` + `x-ratelimit-*-requests` | `RateLimitError` |
    /// | 503 | `service_unavailable_error` | `server_is_overloaded` | `InternalServerError` |
    /// | 500, 502, 504, 529 | `server_error` | null | `InternalServerError` |
    ///
    /// `Retry-After` comes with 429, 503 and 529; every answer has an `x-request-id` (`req_…`),
    /// which the SDK exposes as `request_id`.
    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        let (error_type, code) = openai_error(status.as_u16());
        json_error(
            status,
            Some(retry_after_seconds),
            RateLimitCounters::OpenAi,
            &[request_id()],
            &openai_style_body(&injected_message(status), error_type, code),
        )
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let (error_type, code) = openai_style_proxy_error(kind);
        json_error(
            kind.status(),
            None,
            RateLimitCounters::None,
            &[request_id()],
            &openai_style_body(message, error_type, Some(code)),
        )
    }
}

/// `error.type` and `error.code` OpenAI sends with `status` (the table on `injected_error`).
pub(crate) fn openai_error(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        400 => ("invalid_request_error", None),
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => (
            "request_forbidden",
            Some("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", Some("model_not_found")),
        408 => ("server_error", Some("timeout")),
        429 => ("requests", Some("rate_limit_exceeded")),
        503 => ("service_unavailable_error", Some("server_is_overloaded")),
        _ => ("server_error", None),
    }
}

/// OpenAI's request id header: `req_` and 32 hex digits.
fn request_id() -> (&'static str, String) {
    ("x-request-id", format!("req_{}", random_hex(16)))
}
