//! Google Vertex AI (and Gemini-API-style paths). When the client sends no credentials, the
//! proxy mints an OAuth token from the service-account key file named in its configuration.

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use futures_util::future::LocalBoxFuture;
use yup_oauth2::authenticator::DefaultAuthenticator;

use super::{
    ChatCall, Provider, ProviderError, ProviderKind, ProviderState, ProxyErrorKind,
    RateLimitCounters, SdkHint, UpstreamRequest, UpstreamTarget, Usage, anthropic_usage, count_at,
    injected_message, is_provider_host, join_url, json_error, path_name,
};
use crate::emulator;

const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const GEMINI_API_HOST: &str = "https://generativelanguage.googleapis.com";

pub struct VertexAi;

/// One authenticator per key file; it caches and refreshes tokens itself.
#[derive(Default)]
pub struct TokenSource {
    authenticator: tokio::sync::Mutex<Option<(String, Arc<DefaultAuthenticator>)>>,
}

impl TokenSource {
    async fn token(&self, key_file: &str) -> Result<String, ProviderError> {
        let failed = |e: &dyn std::fmt::Display| {
            ProviderError::Credentials(format!(
                "cannot get a Google access token with the service-account key {key_file}: {e}"
            ))
        };
        let authenticator = {
            let mut cached = self.authenticator.lock().await;
            match cached.as_ref() {
                Some((path, authenticator)) if path == key_file => Arc::clone(authenticator),
                _ => {
                    let key = yup_oauth2::read_service_account_key(key_file)
                        .await
                        .map_err(|e| failed(&e))?;
                    let authenticator = Arc::new(
                        yup_oauth2::ServiceAccountAuthenticator::builder(key)
                            .build()
                            .await
                            .map_err(|e| failed(&e))?,
                    );
                    *cached = Some((key_file.to_owned(), Arc::clone(&authenticator)));
                    authenticator
                }
            }
        };
        let token = authenticator
            .token(&[CLOUD_PLATFORM_SCOPE])
            .await
            .map_err(|e| failed(&e))?;
        token
            .token()
            .map(str::to_owned)
            .ok_or_else(|| failed(&"the token endpoint returned no access token"))
    }
}

/// `/v1/projects/p/locations/us-central1/publishers/...` → `us-central1`.
fn location(path: &str) -> Option<&str> {
    let mut segments = path.split('/');
    segments.find(|s| *s == "locations")?;
    segments.next().filter(|l| !l.is_empty())
}

fn default_base(path: &str) -> String {
    match location(path) {
        Some("global") => "https://aiplatform.googleapis.com".to_owned(),
        Some(location) => format!("https://{location}-aiplatform.googleapis.com"),
        None => GEMINI_API_HOST.to_owned(),
    }
}

/// What a user pastes to call a proxy of this provider. The SDKs use Application Default
/// Credentials (`GOOGLE_APPLICATION_CREDENTIALS`); curl takes a token from gcloud, as Google's own
/// REST examples do.
const PYTHON_SNIPPET: &str = r#"from google import genai
from google.genai import types

client = genai.Client(
    vertexai=True,
    project="my-project",
    location="us-central1",
    http_options=types.HttpOptions(base_url="{base_url}"),
)
response = client.models.generate_content(model="gemini-2.0-flash", contents="Say hello")
print(response.text)"#;

const TYPESCRIPT_SNIPPET: &str = r#"import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({
  vertexai: true,
  project: "my-project",
  location: "us-central1",
  httpOptions: { baseUrl: "{base_url}" },
});
const response = await ai.models.generateContent({ model: "gemini-2.0-flash", contents: "Say hello" });
console.log(response.text);"#;

const CURL_SNIPPET: &str = r#"curl "{base_url}/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent" \
  -H "Authorization: Bearer $(gcloud auth print-access-token)" \
  -H "Content-Type: application/json" \
  -d '{"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}'"#;

impl Provider for VertexAi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::VertexAi
    }

    fn display_name(&self) -> &'static str {
        "Google Vertex AI"
    }

    /// The host carries the location named in each request's path.
    fn default_upstream(&self) -> Option<&'static str> {
        Some("https://{location}-aiplatform.googleapis.com")
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

    fn upstream_url(
        &self,
        target: &UpstreamTarget<'_>,
        _state: &ProviderState,
        path: &str,
        query: Option<&str>,
        _headers: &HeaderMap,
    ) -> Result<String, ProviderError> {
        Ok(match target.base_url {
            Some(base) => join_url(base, path, query),
            None => join_url(&default_base(path), path, query),
        })
    }

    fn authorize<'a>(
        &'a self,
        target: &'a UpstreamTarget<'a>,
        state: &'a ProviderState,
        request: &'a mut UpstreamRequest,
    ) -> LocalBoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let has_credentials = request.headers.contains_key("authorization")
                || request.headers.contains_key("x-goog-api-key");
            let Some(key_file) = target.key_file else {
                return Ok(());
            };
            if has_credentials {
                return Ok(());
            }
            if target.restricted && !is_provider_host(&request.url, ".googleapis.com") {
                return Err(ProviderError::Credentials(
                    "Rubberduck mints tokens with this proxy's key file only for Google endpoints, and this proxy's upstream is not one: send your own credentials, or ask an admin".into(),
                ));
            }
            let token = state.vertex_tokens.token(key_file).await?;
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| ProviderError::Credentials(format!("unusable access token: {e}")))?;
            request
                .headers
                .insert(HeaderName::from_static("authorization"), value);
            Ok(())
        })
    }

    /// `alt=sse` turns an answer into a stream.
    fn takes_key_file(&self) -> bool {
        true
    }

    fn emulate(&self, request: &emulator::Request<'_>) -> emulator::Reply {
        emulator::gemini(request)
    }

    fn sample_model(&self) -> &'static str {
        "gemini-2.0-flash"
    }

    fn chat_path(&self, call: &ChatCall<'_>) -> String {
        let action = if call.stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        format!(
            "/v1beta1/projects/{}/locations/{}/publishers/google/models/{}:{action}",
            path_name(call.project),
            path_name(call.location),
            path_name(call.model),
        )
    }

    /// The path says whether to stream.
    fn chat_body(&self, _call: &ChatCall<'_>, prompt: &str) -> serde_json::Value {
        serde_json::json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}]})
    }

    fn cache_query_params(&self) -> &'static [&'static str] {
        &["alt"]
    }

    /// Gemini's `usageMetadata`, or Anthropic's shape from `rawPredict` on Claude models. A
    /// stream without `alt=sse` is one JSON array whose last chunk has the totals.
    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        if let Some(last) = json.as_array().and_then(|chunks| chunks.last()) {
            return self.usage_in(last);
        }
        let mut usage = anthropic_usage(json);
        usage.update(Usage {
            input_tokens: count_at(json, &[&["usageMetadata", "promptTokenCount"]]),
            output_tokens: count_at(json, &[&["usageMetadata", "candidatesTokenCount"]]),
        });
        usage
    }

    /// Google's error model (Cloud API design guide "Errors": `{"error":{"code","message",
    /// "status","details"}}` with the `google.rpc.Code` HTTP mapping), as the Gemini API
    /// "API errors" page lists it for generateContent (400 INVALID_ARGUMENT, 403
    /// PERMISSION_DENIED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 499 CANCELLED, 500 INTERNAL, 503
    /// UNAVAILABLE, 504 DEADLINE_EXCEEDED) and Vertex AI answers a bad token (401
    /// UNAUTHENTICATED). google-genai raises `errors.ClientError` for 4xx and `errors.ServerError`
    /// for 5xx, with `code` the HTTP status and `status` the name below:
    ///
    /// | status | `error.status` |
    /// |---|---|
    /// | 400 | `INVALID_ARGUMENT` |
    /// | 401 | `UNAUTHENTICATED` |
    /// | 403 | `PERMISSION_DENIED` |
    /// | 404 | `NOT_FOUND` |
    /// | 408, 504 | `DEADLINE_EXCEEDED` (Google maps it to 504 and sends no 408) |
    /// | 429 | `RESOURCE_EXHAUSTED`, with a `google.rpc.RetryInfo` detail |
    /// | 500 | `INTERNAL` |
    /// | 502, 503, 529 | `UNAVAILABLE` (the transient-failure code; Google maps it to 503) |
    ///
    /// Google names the wait in `RetryInfo.retryDelay`, not in headers; `Retry-After` comes too
    /// (429, 503, 529), for clients that read only that.
    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        let status_name = match status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            408 | 504 => "DEADLINE_EXCEEDED",
            429 => "RESOURCE_EXHAUSTED",
            502 | 503 | 529 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        let mut error = serde_json::json!({
            "code": status.as_u16(), "message": injected_message(status), "status": status_name
        });
        if status == actix_web::http::StatusCode::TOO_MANY_REQUESTS {
            error["details"] = serde_json::json!([{
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{retry_after_seconds}s"),
            }]);
        }
        json_error(
            status,
            Some(retry_after_seconds),
            RateLimitCounters::None,
            &[],
            &serde_json::json!({ "error": error }),
        )
    }

    /// Gemini's error JSON as a stream chunk, as the API sends one when a stream fails.
    fn stream_error_event(&self) -> actix_web::web::Bytes {
        let error = serde_json::json!({"error": {
            "code": 503,
            "message": super::STREAM_ERROR_MESSAGE,
            "status": "UNAVAILABLE",
        }});
        actix_web::web::Bytes::from(format!("data: {error}\n\n"))
    }

    /// Gemini chunks carry candidates until one has a `finishReason`; Anthropic models on
    /// Vertex stream as Anthropic does.
    fn stream_mark(&self, event: &super::StreamEvent<'_>) -> super::StreamMark {
        let Some(candidates) = event
            .json
            .and_then(|json| json.get("candidates"))
            .and_then(|c| c.as_array())
        else {
            return super::anthropic_stream_mark(event);
        };
        if candidates.iter().any(|c| c.get("finishReason").is_some()) {
            super::StreamMark::Closes
        } else {
            super::StreamMark::Opens
        }
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let status_name = match kind {
            ProxyErrorKind::BadRequest => "INVALID_ARGUMENT",
            ProxyErrorKind::Unauthorized => "UNAUTHENTICATED",
            ProxyErrorKind::BadGateway => "UNAVAILABLE",
            ProxyErrorKind::GatewayTimeout => "DEADLINE_EXCEEDED",
            ProxyErrorKind::PayloadTooLarge => "INVALID_ARGUMENT",
            ProxyErrorKind::RequestTimeout => "DEADLINE_EXCEEDED",
            ProxyErrorKind::Overloaded => "UNAVAILABLE",
            ProxyErrorKind::NotCached => "FAILED_PRECONDITION",
            ProxyErrorKind::SpendCapReached => "RESOURCE_EXHAUSTED",
        };
        json_error(
            kind.status(),
            None,
            RateLimitCounters::None,
            &[],
            &serde_json::json!({
                "error": {"code": kind.status().as_u16(), "message": message, "status": status_name}
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_follows_the_location_in_the_path() {
        assert_eq!(
            default_base(
                "/v1beta1/projects/p/locations/europe-west4/publishers/google/models/g:generateContent"
            ),
            "https://europe-west4-aiplatform.googleapis.com"
        );
        assert_eq!(
            default_base(
                "/v1/projects/p/locations/global/publishers/google/models/g:generateContent"
            ),
            "https://aiplatform.googleapis.com"
        );
        assert_eq!(
            default_base("/v1beta/models/gemini:generateContent"),
            GEMINI_API_HOST
        );
    }
}
