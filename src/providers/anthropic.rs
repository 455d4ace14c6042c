use actix_web::HttpResponse;

use super::{
    Provider, ProviderKind, ProxyErrorKind, SdkHint, Usage, anthropic_usage, injected_message,
    rate_limit_headers,
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

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        anthropic_usage(json)
    }

    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        let error_type = match status.as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            408 => "timeout_error",
            429 => "rate_limit_error",
            529 | 503 => "overloaded_error",
            _ => "api_error",
        };
        let mut response = HttpResponse::build(status);
        rate_limit_headers(
            &mut response,
            status,
            retry_after_seconds,
            &[
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ],
        );
        response.json(serde_json::json!({
            "type": "error",
            "error": {"type": error_type, "message": injected_message(status)}
        }))
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let error_type = match kind {
            ProxyErrorKind::BadRequest => "invalid_request_error",
            ProxyErrorKind::Unauthorized => "authentication_error",
            ProxyErrorKind::BadGateway => "api_error",
            ProxyErrorKind::GatewayTimeout => "timeout_error",
            ProxyErrorKind::PayloadTooLarge => "request_too_large",
            ProxyErrorKind::NotCached => "invalid_request_error",
        };
        HttpResponse::build(kind.status()).json(serde_json::json!({
            "type": "error",
            "error": {"type": error_type, "message": message}
        }))
    }
}
