use actix_web::HttpResponse;

use super::openai::openai_error;
use super::openai_style_chat_body;
use super::path_segment_after;
use super::{
    ChatCall, Provider, ProviderKind, ProxyErrorKind, RateLimitCounters, SdkHint, Usage,
    injected_message, json_error, openai_style_body, openai_style_proxy_error, openai_usage,
    path_name, random_uuid,
};
use crate::emulator;

/// Azure OpenAI: the upstream is the user's own resource endpoint, so there is no default.
pub struct AzureOpenAi;

/// The API version load tests send.
const SAMPLE_API_VERSION: &str = "2024-10-21";

/// What a user pastes to call a proxy of this provider. The SDKs read `AZURE_OPENAI_API_KEY`; the
/// model names the deployment, which the SDKs put in the path.
const PYTHON_SNIPPET: &str = r#"from openai import AzureOpenAI

client = AzureOpenAI(azure_endpoint="{base_url}", api_version="2024-10-21")
response = client.chat.completions.create(
    model="gpt-4o-mini",  # your deployment's name
    messages=[{"role": "user", "content": "Say hello"}],
)
print(response.choices[0].message.content)"#;

const TYPESCRIPT_SNIPPET: &str = r#"import { AzureOpenAI } from "openai";

const client = new AzureOpenAI({ endpoint: "{base_url}", apiVersion: "2024-10-21" });
const response = await client.chat.completions.create({
  model: "gpt-4o-mini", // your deployment's name
  messages: [{ role: "user", content: "Say hello" }],
});
console.log(response.choices[0].message.content);"#;

const CURL_SNIPPET: &str = r#"curl "{base_url}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21" \
  -H "api-key: $AZURE_OPENAI_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"messages": [{"role": "user", "content": "Say hello"}]}'"#;

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

    fn snippets(&self, base_url: &str) -> super::Snippets {
        super::Snippets::fill(PYTHON_SNIPPET, TYPESCRIPT_SNIPPET, CURL_SNIPPET, base_url)
    }

    fn upstream_url_required(&self) -> Option<&'static str> {
        Some(
            "Azure OpenAI needs your resource endpoint as upstream URL, e.g. https://my-resource.openai.azure.com (or the built-in emulator).",
        )
    }

    /// `/openai/deployments/{deployment}/…` names the model by its deployment.
    fn model_in_path(&self, path: &str) -> Option<String> {
        path_segment_after(path, "/models/")
            .or_else(|| path_segment_after(path, "/deployments/"))
            .map(str::to_owned)
    }

    fn emulate(&self, request: &emulator::Request<'_>) -> emulator::Reply {
        emulator::openai(request, &emulator::Catalogue::OPENAI)
    }

    fn sample_model(&self) -> &'static str {
        "gpt-4o-mini"
    }

    fn chat_path(&self, call: &ChatCall<'_>) -> String {
        format!(
            "/openai/deployments/{}/chat/completions?api-version={SAMPLE_API_VERSION}",
            path_name(call.model)
        )
    }

    /// The deployment in the path names the model.
    fn chat_body(&self, call: &ChatCall<'_>, prompt: &str) -> serde_json::Value {
        openai_style_chat_body(None, call.stream, prompt)
    }

    fn cache_query_params(&self) -> &'static [&'static str] {
        &["api-version"]
    }

    fn usage_in(&self, json: &serde_json::Value) -> Usage {
        openai_usage(json)
    }

    /// Azure's own front end answers authentication, routing and quota failures in its short
    /// shape, `{"error":{"code","message"}}` with the status as text in `code`; the model service
    /// behind it answers the rest in OpenAI's shape (Azure's REST reference lets `error` carry
    /// `code`, `message`, `param`, `type`). After Azure OpenAI's quota and rate-limit pages and
    /// the bodies Azure sends; `AzureOpenAI` picks its exception by status, as `OpenAI` does:
    ///
    /// | status | body | headers |
    /// |---|---|---|
    /// | 401 | `code: "401"`, "Access denied due to invalid subscription key or wrong API endpoint" | |
    /// | 404 | `code: "DeploymentNotFound"` | |
    /// | 429 | `code: "429"`, "… Please retry after N seconds" | `retry-after`, `retry-after-ms`, `x-ratelimit-*-requests` |
    /// | others | OpenAI's (see `OpenAi::injected_error`) | `retry-after(-ms)` on 503 and 529 |
    ///
    /// Every answer has `x-request-id` and `apim-request-id` (one UUID).
    fn injected_error(
        &self,
        status: actix_web::http::StatusCode,
        retry_after_seconds: u64,
    ) -> HttpResponse {
        let note = "(failure injected by Rubberduck)";
        let front_door = match status.as_u16() {
            401 => Some((
                "401".to_owned(),
                format!(
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource. {note}"
                ),
            )),
            404 => Some((
                "DeploymentNotFound".to_owned(),
                format!(
                    "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again. {note}"
                ),
            )),
            429 => Some((
                "429".to_owned(),
                format!(
                    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded call rate limit of your current pricing tier. Please retry after {retry_after_seconds} {}. {note}",
                    if retry_after_seconds == 1 {
                        "second"
                    } else {
                        "seconds"
                    }
                ),
            )),
            _ => None,
        };
        let body = match front_door {
            Some((code, message)) => {
                serde_json::json!({"error": {"code": code, "message": message}})
            }
            None => {
                let (error_type, code) = openai_error(status.as_u16());
                openai_style_body(&injected_message(status), error_type, code)
            }
        };
        json_error(
            status,
            Some(retry_after_seconds),
            RateLimitCounters::Azure,
            &request_ids(),
            &body,
        )
    }

    fn error_response(&self, kind: ProxyErrorKind, message: &str) -> HttpResponse {
        let (error_type, code) = openai_style_proxy_error(kind);
        json_error(
            kind.status(),
            None,
            RateLimitCounters::None,
            &request_ids(),
            &openai_style_body(message, error_type, Some(code)),
        )
    }
}

/// Azure names a request twice, the same UUID in both headers; the openai SDK reads
/// `x-request-id`.
fn request_ids() -> [(&'static str, String); 2] {
    let id = random_uuid();
    [("x-request-id", id.clone()), ("apim-request-id", id)]
}
