use actix_web::HttpResponse;

use crate::emulator;

use super::{
    ChatCall, Provider, ProviderKind, ProxyErrorKind, RateLimitCounters, SAMPLE_MAX_TOKENS,
    SdkHint, Usage, anthropic_usage, injected_message, json_error,
};

pub struct Anthropic;

/// What a user pastes to call a proxy of this provider. The SDKs read `ANTHROPIC_API_KEY`. The
/// TypeScript program narrows on the block type because a message's content may also hold tool
/// calls.
const PYTHON_SNIPPET: &str = r#"from anthropic import Anthropic

client = Anthropic(base_url="{base_url}")
message = client.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=1024,
    messages=[{"role": "user", "content": "Say hello"}],
)
print(message.content[0].text)"#;

const TYPESCRIPT_SNIPPET: &str = r#"import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: "{base_url}" });
const message = await client.messages.create({
  model: "claude-sonnet-4-5",
  max_tokens: 1024,
  messages: [{ role: "user", content: "Say hello" }],
});
for (const block of message.content) {
  if (block.type === "text") console.log(block.text);
}"#;

const CURL_SNIPPET: &str = r#"curl "{base_url}/v1/messages" \
  -H "x-api-key: $ANTHROPIC_API_KEY" \
  -H "anthropic-version: 2023-06-01" \
  -H "Content-Type: application/json" \
  -d '{"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Say hello"}]}'"#;

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

    fn snippets(&self, base_url: &str) -> super::Snippets {
        super::Snippets::fill(PYTHON_SNIPPET, TYPESCRIPT_SNIPPET, CURL_SNIPPET, base_url)
    }

    fn emulate(&self, request: &emulator::Request<'_>) -> emulator::Reply {
        emulator::anthropic(request)
    }

    fn sample_model(&self) -> &'static str {
        "claude-3-5-haiku-latest"
    }

    fn chat_path(&self, _call: &ChatCall<'_>) -> String {
        "/v1/messages".to_owned()
    }

    fn chat_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", "2023-06-01")]
    }

    fn chat_body(&self, call: &ChatCall<'_>, prompt: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "model": call.model,
            "max_tokens": SAMPLE_MAX_TOKENS,
            "messages": [{"role": "user", "content": prompt}]
        });
        if call.stream {
            body["stream"] = serde_json::Value::Bool(true);
        }
        body
    }

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        anthropic_usage(json)
    }

    /// After the Claude API "Errors" page (400 `invalid_request_error`, also for 4xx it does not
    /// list; 401 `authentication_error`; 403 `permission_error`; 404 `not_found_error`; 413
    /// `request_too_large`; 429 `rate_limit_error`; 500 `api_error`; 504 `timeout_error`; 529
    /// `overloaded_error`) and its "Rate limits" page (`retry-after`,
    /// `anthropic-ratelimit-requests-*` with the reset as an RFC 3339 time). The anthropic SDK
    /// picks its exception by status:
    ///
    /// | status | `error.type` | anthropic exception |
    /// |---|---|---|
    /// | 400 | `invalid_request_error` | `BadRequestError` |
    /// | 401 | `authentication_error` | `AuthenticationError` |
    /// | 403 | `permission_error` | `PermissionDeniedError` |
    /// | 404 | `not_found_error` | `NotFoundError` |
    /// | 408 | `invalid_request_error` | `RequestTimeoutError` |
    /// | 429 | `rate_limit_error` | `RateLimitError` |
    /// | 500, 502 | `api_error` | `InternalServerError` |
    /// | 503 | `api_error` | `ServiceUnavailableError` |
    /// | 504 | `timeout_error` | `GatewayTimeoutError` |
    /// | 529 | `overloaded_error` | `OverloadedError` |
    ///
    /// Errors are `{"type":"error","error":{"type","message"},"request_id"}`, the id also in the
    /// `request-id` header, which the SDK exposes as `request_id`.
    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        let error_type = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        error(
            status,
            Some(retry_after_seconds),
            error_type,
            &injected_message(status),
        )
    }

    /// Anthropic's `overloaded_error` event, as it sends one mid-stream when it is overloaded.
    fn stream_error_event(&self) -> actix_web::web::Bytes {
        let error = serde_json::json!({"type": "error", "error": {
            "type": "overloaded_error",
            "message": super::STREAM_ERROR_MESSAGE,
        }});
        actix_web::web::Bytes::from(format!("event: error\ndata: {error}\n\n"))
    }

    fn stream_mark(&self, event: &super::StreamEvent<'_>) -> super::StreamMark {
        super::anthropic_stream_mark(event)
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let error_type = match kind {
            ProxyErrorKind::BadRequest => "invalid_request_error",
            ProxyErrorKind::Unauthorized => "authentication_error",
            ProxyErrorKind::BadGateway => "api_error",
            ProxyErrorKind::GatewayTimeout => "timeout_error",
            ProxyErrorKind::PayloadTooLarge => "request_too_large",
            ProxyErrorKind::RequestTimeout => "invalid_request_error",
            ProxyErrorKind::Overloaded => "overloaded_error",
            ProxyErrorKind::NotCached => "invalid_request_error",
            ProxyErrorKind::SpendCapReached => "rate_limit_error",
        };
        error(kind.status(), None, error_type, message)
    }
}

/// Anthropic's error answer; `retry_after_seconds` is set for injected failures.
fn error(
    status: actix_web::http::StatusCode,
    retry_after_seconds: Option<u64>,
    error_type: &str,
    message: &str,
) -> HttpResponse {
    let request_id = request_id();
    json_error(
        status,
        retry_after_seconds,
        RateLimitCounters::Anthropic,
        &[("request-id", request_id.clone())],
        &serde_json::json!({
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }),
    )
}

/// Anthropic's request ids: `req_` and 24 letters and digits (`req_018EeWyXxfu5pfWkrYcMdjWG`).
fn request_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("req_{tail}")
}
